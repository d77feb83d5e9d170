//! `autopilot dev`: every route on one local server plus the scheduler. With `--sandbox`,
//! KKTIX is the built-in simulator, so the whole flow runs with no accounts at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use autopilot_core::api::Api;
use autopilot_core::app::{build_reconciler, discord_bot, open_stores, Pipeline};
use autopilot_core::config::Settings;
use autopilot_core::discord::bot::SpawnDeferrer;
use autopilot_core::discord::operations::Operations;
use autopilot_core::pii::Sensitive;
use autopilot_core::reconcile::Reconciler;
use autopilot_core::store::StoreSpec;
use autopilot_sandbox::{Sandbox, SandboxConfig};
use rand::Rng;
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

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let mut settings = Settings::from_env()?;
    if args.sandbox && std::env::var_os("STORE").is_none() {
        settings.store = StoreSpec::Sqlite(format!("{SANDBOX_DIR}/autopilot.db"));
    }
    let stores = open_stores(&settings)?;

    let mut notes = Vec::new();
    let (_sandbox, reconciler) = if args.sandbox {
        let mut config = SandboxConfig::demo(args.seed);
        config.purchases_per_step = args.purchase_rate.max(0.0);
        let sandbox = Sandbox::new(config);
        let running = sandbox
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("starting the KKTIX sandbox")?;
        let clock = sandbox.start_clock(args.sandbox_every);
        notes.push(format!(
            "KKTIX sandbox at {} (seed {}, buyers act every {})",
            running.base_url,
            args.seed,
            humantime::format_duration(args.sandbox_every)
        ));
        let token = Sensitive::new(sandbox.access_token());
        let reconciler = build_reconciler(&settings, &stores, &running.base_url, token)?;
        (Some((running, clock)), reconciler)
    } else {
        notes.push(format!("KKTIX at {}", settings.kktix_api_base));
        let token = settings.require_kktix_token()?;
        let reconciler = build_reconciler(&settings, &stores, &settings.kktix_api_base, token)?;
        (None, reconciler)
    };
    let pipeline = if args.sandbox {
        Pipeline::local(&settings, std::path::Path::new(SANDBOX_DIR))?
    } else {
        Pipeline::from_settings(&settings)?
    };
    notes.extend(pipeline.description.iter().cloned());
    let access = pipeline.access.clone();
    let mail = pipeline.mail.clone();
    let reconciler = Arc::new(pipeline.attach(reconciler));

    let (ops_token, generated) = match settings.ops_token.clone() {
        Some(token) => (token, false),
        None => (Sensitive::new(random_token()), true),
    };
    let mut api = Api::new(Some(ops_token.clone()))
        .with_report_settings(
            settings.file.reports.clone(),
            settings.file.discord.recently_ended_days,
        )
        .with_poller(reconciler.clone())
        .with_authorizer(access)
        .with_mailer(mail);
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

    let scheduler = tokio::spawn(schedule(reconciler, args.every));
    let served = server::serve(api, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    scheduler.abort();
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

fn random_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
