//! `autopilot dev`: every route on one local server plus the scheduler. With `--sandbox`,
//! KKTIX is the built-in simulator, so the whole flow runs with no accounts at all; `--source`
//! picks the door the simulator feeds (hosting API, CSV exports, or webhook batches).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use autopilot_core::app::{
    build_reconciler, build_reconciler_without_api, check_doors, discord_bot, open_stores, Pipeline,
};
use autopilot_core::config::Settings;
use autopilot_core::contacts::ContactKey;
use autopilot_core::discord::bot::SpawnDeferrer;
use autopilot_core::discord::operations::Operations;
use autopilot_core::intake::{IntakeQueue, LocalTrigger};
use autopilot_core::pii::Sensitive;
use autopilot_core::reconcile::{ImportRequest, Reconciler};
use autopilot_core::selection::{CatalogEntry, CatalogEvent, Door};
use autopilot_core::store::{SqliteStore, StoreSpec};
use autopilot_sandbox::{Sandbox, SandboxConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::{parse_duration, print_summary, server};

/// Where sandbox runs keep their data (ledger, guest-list file, outbox) unless STORE says
/// otherwise: never mixed with a real deployment's.
const SANDBOX_DIR: &str = "./autopilot-sandbox";

#[derive(clap::Args)]
pub struct DevArgs {
    /// Address of the local server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Time between scheduled reconcile runs (the first runs at start).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    every: Duration,
    /// Use the built-in KKTIX simulator instead of the KKTIX the environment names.
    #[arg(long)]
    sandbox: bool,
    /// The door the simulator feeds: its hosting API, CSV exports imported on every step, or
    /// webhook batches POSTed to this server.
    #[arg(long, value_enum, default_value = "api", requires = "sandbox")]
    source: SourceArg,
    /// Seed of the simulator's generated buyers.
    #[arg(long, default_value_t = 42, requires = "sandbox")]
    seed: u64,
    /// How often the simulator's buyers act (new orders, ATM payments, refunds).
    #[arg(long, default_value = "10s", value_parser = parse_duration, requires = "sandbox")]
    sandbox_every: Duration,
    /// Mean number of new orders per simulator step.
    #[arg(long, default_value_t = 3.0, requires = "sandbox")]
    purchase_rate: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SourceArg {
    Api,
    Csv,
    Webhook,
}

/// What a sandbox restart needs to find its buyers again: the same seed and rate, replayed
/// for as many steps as it had taken.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SandboxState {
    seed: u64,
    purchase_rate: f64,
    steps: u64,
}

fn state_path() -> PathBuf {
    Path::new(SANDBOX_DIR).join("sandbox-state.json")
}

fn load_state(seed: u64, purchase_rate: f64) -> anyhow::Result<u64> {
    let path = state_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(0);
    };
    let state: SandboxState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a sandbox state file", path.display()))?;
    if state.seed != seed || state.purchase_rate != purchase_rate {
        anyhow::bail!(
            "{SANDBOX_DIR} holds a sandbox run made with --seed {} --purchase-rate {}: start with the same flags to continue it, or remove {SANDBOX_DIR} to start over (its ledger would otherwise see every earlier buyer vanish)",
            state.seed,
            state.purchase_rate
        );
    }
    Ok(state.steps)
}

fn save_state(seed: u64, purchase_rate: f64, steps: u64) {
    let state = SandboxState {
        seed,
        purchase_rate,
        steps,
    };
    if let Ok(text) = serde_json::to_string(&state) {
        let path = state_path();
        let temporary = path.with_extension("json.tmp");
        if std::fs::write(&temporary, text).is_ok() {
            let _ = std::fs::rename(temporary, path);
        }
    }
}

/// A throwaway key for the sandbox's sealed contacts, kept beside its data so a restart can
/// read them (the sandbox's buyers are generated, not real).
fn sandbox_contact_key() -> anyhow::Result<ContactKey> {
    let path = Path::new(SANDBOX_DIR).join("contact.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return ContactKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let key = ContactKey::generate();
    std::fs::create_dir_all(SANDBOX_DIR).with_context(|| format!("creating {SANDBOX_DIR}"))?;
    std::fs::write(&path, key.to_hex().expose())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let mut settings = Settings::from_env()?;
    let mut notes = Vec::new();
    let mut sandbox_setup = None;
    if args.sandbox {
        if std::env::var_os("STORE").is_none() {
            // The sandbox's own folder is the one directory made on the user's behalf.
            std::fs::create_dir_all(SANDBOX_DIR)
                .with_context(|| format!("creating {SANDBOX_DIR}"))?;
            settings.store = StoreSpec::Sqlite(format!("{SANDBOX_DIR}/autopilot.db"));
        }
        let steps = load_state(args.seed, args.purchase_rate)?;
        let mut config = SandboxConfig::demo(args.seed);
        config.purchases_per_step = args.purchase_rate.max(0.0);
        config.multi_ticket_share = 0.15;
        let sandbox = Sandbox::new(config);
        sandbox.replay(steps);
        if steps > 0 {
            notes.push(format!(
                "KKTIX sandbox resumed after {steps} steps (state in {})",
                state_path().display()
            ));
        }
        if args.source != SourceArg::Api {
            if settings.contact_key.is_none() {
                settings.contact_key = Some(sandbox_contact_key()?);
            }
            let door = match args.source {
                SourceArg::Csv => Door::Csv,
                _ => Door::Webhook,
            };
            // The simulator's selected events, named in the catalog as a team would.
            let pattern = settings.file.events.name_contains.to_lowercase();
            for event in sandbox
                .events()
                .iter()
                .filter(|e| !e.ended && e.name.to_lowercase().contains(&pattern))
            {
                settings.file.events.catalog.insert(
                    event.slug.clone(),
                    CatalogEntry::Event(CatalogEvent {
                        id: event.id,
                        name: Some(event.name.clone()),
                        source: Some(door),
                        start_at: None,
                        end_at: None,
                    }),
                );
            }
            settings.file.events.source = Some(door);
            if door == Door::Webhook && settings.kktix_webhook_token.is_none() {
                settings.kktix_webhook_token = Some(Sensitive::new(random_token()));
            }
        }
        sandbox_setup = Some(sandbox);
    }
    // Checked before the store is opened: a start that fails creates no files.
    if !args.sandbox {
        check_doors(&settings)?;
    }
    let stores = open_stores(&settings)?;

    let (running_sandbox, reconciler) = match &sandbox_setup {
        Some(sandbox) => {
            let running = sandbox
                .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .context("starting the KKTIX sandbox")?;
            notes.push(format!(
                "KKTIX sandbox at {} (seed {}, buyers act every {}, door: {})",
                running.base_url,
                args.seed,
                humantime::format_duration(args.sandbox_every),
                match args.source {
                    SourceArg::Api => "hosting API",
                    SourceArg::Csv => "CSV exports imported on every step",
                    SourceArg::Webhook => "webhook batches POSTed to this server",
                }
            ));
            let reconciler = if args.source == SourceArg::Api {
                let token = Sensitive::new(sandbox.access_token());
                build_reconciler(&settings, &stores, &running.base_url, token)?
            } else {
                build_reconciler_without_api(&settings, &stores)
            };
            (Some(running), reconciler)
        }
        None => {
            let reconciler = match settings.kktix_access_token.clone() {
                Some(token) => {
                    notes.push(format!("KKTIX at {}", settings.kktix_api_base));
                    build_reconciler(&settings, &stores, &settings.kktix_api_base, token)?
                }
                None => {
                    notes.push("KKTIX hosting API: off (no KKTIX_ACCESS_TOKEN); CSV imports and the webhook only".into());
                    build_reconciler_without_api(&settings, &stores)
                }
            };
            (None, reconciler)
        }
    };
    let pipeline = if args.sandbox {
        Pipeline::local(&settings, Path::new(SANDBOX_DIR))?
    } else {
        Pipeline::from_settings(&settings)?
    };
    notes.extend(pipeline.description.iter().cloned());
    let access = pipeline.access.clone();
    let mail = pipeline.mail.clone();

    // The queue the receiver fills and the poller drains: in the store's file with SQLite.
    let queue: Arc<dyn IntakeQueue> = match &stores.queue {
        Some(queue) => queue.clone(),
        None => Arc::new(
            SqliteStore::open("./autopilot-queue.db").context("opening the local intake queue")?,
        ),
    };
    let reconciler = Arc::new(pipeline.attach(reconciler.with_queue(queue.clone())));
    let trigger = Arc::new(LocalTrigger::default());
    let receiver = Arc::new(autopilot_core::app::receiver(
        &settings,
        queue,
        trigger.clone(),
    ));

    let (ops_token, generated) = match settings.ops_token.clone() {
        Some(token) => (token, false),
        None => (Sensitive::new(random_token()), true),
    };
    let mut api = autopilot_core::app::settings_api(Some(ops_token.clone()), &settings)
        .map_err(anyhow::Error::msg)?
        .with_poller(reconciler.clone())
        .with_authorizer(access)
        .with_mailer(mail)
        .with_receiver(receiver.clone());
    if settings.discord_public_key.is_some() {
        let operations: Arc<dyn Operations> = reconciler.clone();
        let bot = discord_bot(
            &settings,
            &stores,
            Some(operations),
            Arc::new(SpawnDeferrer),
        )?;
        api = api.with_discord(Arc::new(bot));
        notes.push("Discord interactions: POST /discord/interactions".into());
    } else {
        notes.push(
            "Discord interactions: off (set DISCORD_PUBLIC_KEY and DISCORD_APPLICATION_ID)".into(),
        );
    }
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let address = listener.local_addr().context("reading the bound address")?;

    println!("KKTIX Autopilot dev server on http://{address}");
    for note in notes {
        println!("  {note}");
    }
    println!("  store: {}", settings.store);
    match (&settings.kktix_webhook_token, args.sandbox) {
        (Some(token), true) => println!(
            "  KKTIX webhook: POST http://{address}/kktix/webhook/{}",
            token.expose()
        ),
        (Some(_), false) => {
            println!("  KKTIX webhook: POST http://{address}/kktix/webhook/$KKTIX_WEBHOOK_TOKEN")
        }
        (None, _) => println!("  KKTIX webhook: off (set KKTIX_WEBHOOK_TOKEN)"),
    }
    if generated {
        // Printed on purpose: a local, throwaway token the operator needs to call /poll.
        println!(
            "  ops token (generated; set OPS_TOKEN to choose one): {}",
            ops_token.expose()
        );
    } else {
        println!("  ops token: from OPS_TOKEN");
    }
    println!(
        "  try: curl -s -X POST -H 'Authorization: Bearer {}' http://{address}/poll",
        if generated {
            ops_token.expose().as_str()
        } else {
            "$OPS_TOKEN"
        }
    );
    println!(
        "  reconcile every {}; Ctrl-C stops",
        humantime::format_duration(args.every)
    );

    let scheduler = tokio::spawn(schedule(reconciler.clone(), args.every));
    let drainer = tokio::spawn(drain(reconciler.clone(), trigger));
    let feeder = sandbox_setup.map(|sandbox| {
        let feed = Feed {
            sandbox,
            reconciler: reconciler.clone(),
            source: args.source,
            webhook_url: settings
                .kktix_webhook_token
                .as_ref()
                .map(|token| format!("http://{address}/kktix/webhook/{}", token.expose())),
            seed: args.seed,
            purchase_rate: args.purchase_rate,
        };
        tokio::spawn(feed.run(args.sandbox_every))
    });
    let served = server::serve(api, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    scheduler.abort();
    drainer.abort();
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    drop(running_sandbox);
    served.context("local server")?;
    println!("stopped");
    Ok(())
}

async fn schedule(reconciler: Arc<Reconciler>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match reconciler.try_run().await {
            Ok(summary) => {
                if let Err(error) = print_summary(&summary, false) {
                    eprintln!("error: {error:#}");
                }
            }
            Err(busy) => println!("skipping a scheduled run: {busy}"),
        }
    }
}

/// The receiver's wake-ups: each drains the queue in a run of its own.
async fn drain(reconciler: Arc<Reconciler>, trigger: Arc<LocalTrigger>) {
    loop {
        trigger.notify.notified().await;
        if let Some(summary) = reconciler.drain().await {
            if let Err(error) = print_summary(&summary, false) {
                eprintln!("error: {error:#}");
            }
        }
    }
}

/// The simulator's clock, and (for the CSV and webhook doors) what it sends after each step.
struct Feed {
    sandbox: Sandbox,
    reconciler: Arc<Reconciler>,
    source: SourceArg,
    webhook_url: Option<String>,
    seed: u64,
    purchase_rate: f64,
}

impl Feed {
    async fn run(self, period: Duration) {
        let http = reqwest::Client::new();
        if self.source == SourceArg::Webhook {
            self.sandbox.record_changes();
        }
        save_state(self.seed, self.purchase_rate, self.sandbox.steps());
        let mut first = true;
        let mut interval = tokio::time::interval(period.max(Duration::from_millis(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if !first {
                self.sandbox.step();
                save_state(self.seed, self.purchase_rate, self.sandbox.steps());
            }
            match self.source {
                SourceArg::Api => {}
                SourceArg::Csv => self.import_exports().await,
                SourceArg::Webhook => {
                    let mut changes = if first {
                        self.sandbox.paid_as_changes()
                    } else {
                        Vec::new()
                    };
                    changes.extend(self.sandbox.take_changes());
                    self.post_batch(&http, &changes).await;
                }
            }
            first = false;
        }
    }

    async fn import_exports(&self) {
        for (slug, entry) in &self.reconciler.selector().catalog {
            let event_id = entry.id();
            let (Some(attendees), orders) = (
                self.sandbox.attendees_export(event_id),
                self.sandbox.orders_export(event_id),
            ) else {
                continue;
            };
            write_export(slug, "attendees", &attendees);
            if let Some(orders) = &orders {
                write_export(slug, "orders", orders);
            }
            let request = ImportRequest {
                event: slug.clone(),
                attendees,
                orders,
            };
            match self.reconciler.import(request).await {
                Ok(summary)
                    if summary.new_paid > 0
                        || summary.refunded > 0
                        || !summary.errors.is_empty() =>
                {
                    if let Err(error) = print_summary(&summary, false) {
                        eprintln!("error: {error:#}");
                    }
                }
                Ok(_) => {}
                Err(error) => eprintln!("error: importing the sandbox's {slug} export: {error}"),
            }
        }
    }

    async fn post_batch(&self, http: &reqwest::Client, changes: &[autopilot_sandbox::Change]) {
        // KKTIX's webhooks are set up per event: only the catalog's events send.
        let hooked: Vec<u64> = self
            .reconciler
            .selector()
            .catalog
            .values()
            .map(CatalogEntry::id)
            .collect();
        let changes: Vec<autopilot_sandbox::Change> = changes
            .iter()
            .filter(|change| match change {
                autopilot_sandbox::Change::Paid { event_id, .. }
                | autopilot_sandbox::Change::Refunded { event_id, .. } => hooked.contains(event_id),
            })
            .cloned()
            .collect();
        let (Some(url), Some(body)) = (&self.webhook_url, self.sandbox.webhook_batch(&changes))
        else {
            return;
        };
        let sent = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => eprintln!(
                "error: the local webhook answered HTTP {}",
                response.status().as_u16()
            ),
            Err(_) => eprintln!("error: could not POST to the local webhook"),
        }
    }
}

/// The exports the simulator "downloads", kept where an operator would look for them.
fn write_export(slug: &str, kind: &str, bytes: &[u8]) {
    let dir = Path::new(SANDBOX_DIR).join("exports");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{slug}-{kind}.csv")), bytes);
    }
}

fn random_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
