//! Campaigns benchmark: `cargo bench -p autopilot-cli --bench campaigns`.
//!
//! A `[[campaigns]]` letter to 1,000 attendees through each provider: Mailgun and Klaviyo
//! (their fakes from `autopilot-test-support`, served by `wiremock` on a local port) and the
//! outbox of `.eml` files. Each sample builds a fresh world — the sandbox's CSV exports of one
//! event imported into a SQLite store, every buyer granted (a guest-list file) and invited
//! through the same provider — then times `Reconciler::campaign_send`. Reported per provider:
//! median and max send time, the provider's HTTP calls made by the send (not the import's
//! invitations), the letters sent, and what a second send of the same campaign does (it is
//! exactly-once: nothing to send).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autopilot_core::access::{AccessService, Authorizer, Entitlements, FileGuestList};
use autopilot_core::campaign::CampaignSettings;
use autopilot_core::contacts::{ContactKey, Sealer};
use autopilot_core::deidentify::PrivacyRules;
use autopilot_core::mail::{
    KlaviyoCampaigns, KlaviyoProvider, MailProvider, MailService, MailSettings, MailTemplate,
    Mailer, MailgunProvider, OutboxProvider,
};
use autopilot_core::pii::Sensitive;
use autopilot_core::reconcile::{
    CampaignReport, ImportRequest, ReconcileOptions, Reconciler, Vault,
};
use autopilot_core::selection::{CategoryRules, Door, EventSelector};
use autopilot_core::store::SqliteStore;
use autopilot_sandbox::{Sandbox, SandboxConfig};
use autopilot_test_support::klaviyo::KlaviyoFake;
use autopilot_test_support::mailgun::MailgunFake;
use wiremock::{MockServer, Request};

const ATTENDEES: usize = 1_000;
const EVENT: u64 = 90_001;
const SLUG: &str = "bench-conf-2026-individual";
const CAMPAIGN: &str = "pre-event";
const DOMAIN: &str = "mg.bench.example";
const KLAVIYO_KEY: &str = "pk_bench-klaviyo-key";
const SAMPLES: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    Mailgun,
    Klaviyo,
    Outbox,
}

impl Provider {
    fn label(self) -> &'static str {
        match self {
            Self::Mailgun => "Mailgun (fake)",
            Self::Klaviyo => "Klaviyo (fake)",
            Self::Outbox => "outbox (.eml files)",
        }
    }
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn campaign(name: &str) -> CampaignSettings {
    CampaignSettings {
        name: name.into(),
        subject: "【{{ event }}】行前信 / Before the day".into(),
        text:
            "{{ name }} 您好, {{ ticket }}{% if checkin_code %} ({{ checkin_code }}){% endif %}\n"
                .into(),
        html: "<p>{{ name }}: {{ ticket }}</p>\n".into(),
        events: Vec::new(),
        tickets: Vec::new(),
        send_at: None,
        before_start: None,
        catch_up: false,
    }
}

/// One provider's fake, or the outbox directory: what the send did there.
enum Upstream {
    Server(MockServer),
    Outbox(std::path::PathBuf),
}

impl Upstream {
    /// HTTP requests the server received (files in the outbox).
    async fn received(&self) -> Vec<String> {
        match self {
            Self::Server(server) => server
                .received_requests()
                .await
                .unwrap_or_default()
                .iter()
                .map(endpoint)
                .collect(),
            Self::Outbox(dir) => std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|name| name.starts_with(&format!("campaign-{CAMPAIGN}-")))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// `METHOD /path`, ids after the resource (`/api/campaigns/C0003/…`) as `*`.
fn endpoint(request: &Request) -> String {
    let path: Vec<&str> = request
        .url
        .path()
        .split('/')
        .enumerate()
        .map(|(i, segment)| if i == 3 { "*" } else { segment })
        .collect();
    let path = if request.url.path().starts_with("/v3/") {
        request.url.path().to_owned()
    } else {
        path.join("/")
    };
    format!("{} {path}", request.method)
}

struct World {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    upstream: Upstream,
    reconciler: Reconciler,
}

impl World {
    async fn new(provider: Provider, seed: u64) -> Result<Self, String> {
        let sandbox = Sandbox::new(SandboxConfig::single_event(seed, ATTENDEES));
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = Arc::new(
            SqliteStore::open(dir.path().join("autopilot.db")).map_err(|e| e.to_string())?,
        );
        let settings = MailSettings::default();
        let options = autopilot_test_support::fast::http(10_000, 3);
        let (provider, upstream): (Arc<dyn MailProvider>, Upstream) = match provider {
            Provider::Mailgun => {
                let server = MockServer::start().await;
                MailgunFake::new(DOMAIN).mount(&server).await;
                let provider = MailgunProvider::new(
                    &server.uri(),
                    Sensitive::new("bench-mailgun-key".into()),
                    DOMAIN,
                    &settings.from,
                    Vec::new(),
                    options,
                )
                .map_err(|e| e.to_string())?;
                (Arc::new(provider), Upstream::Server(server))
            }
            Provider::Klaviyo => {
                let (server, _fake) = KlaviyoFake::start(KLAVIYO_KEY).await;
                let campaigns = KlaviyoCampaigns::new(
                    &server.uri(),
                    Sensitive::new(KLAVIYO_KEY.into()),
                    "",
                    options.clone(),
                )
                .map_err(|e| e.to_string())?
                .with_import_poll(Duration::from_millis(10));
                let provider = KlaviyoProvider::new(
                    &server.uri(),
                    Sensitive::new(KLAVIYO_KEY.into()),
                    "Autopilot Invitation",
                    options,
                )
                .map_err(|e| e.to_string())?
                .with_campaigns(campaigns);
                (Arc::new(provider), Upstream::Server(server))
            }
            Provider::Outbox => {
                let outbox = dir.path().join("outbox");
                (
                    Arc::new(OutboxProvider::new(&outbox, &settings.from)),
                    Upstream::Outbox(outbox),
                )
            }
        };
        let campaigns = vec![campaign(CAMPAIGN)];
        let mail: Arc<dyn MailService> = Arc::new(
            Mailer::new(
                provider,
                MailTemplate::from_settings(&settings).map_err(|e| e.to_string())?,
            )
            .with_campaigns(
                MailTemplate::for_campaigns(&settings, &campaigns).map_err(|e| e.to_string())?,
            ),
        );
        let access: Arc<dyn AccessService> = Arc::new(Authorizer::new(
            Arc::new(FileGuestList::new(dir.path().join("guestlist.json"))),
            Entitlements::default(),
        ));
        let reconciler = Reconciler::without_api(
            store.clone(),
            store.clone(),
            selector(),
            CategoryRules::default(),
            PrivacyRules::default(),
        )
        .with_vault(Vault {
            store: store.clone(),
            sealer: Sealer::new(ContactKey::from_bytes([9; 32]), None),
        })
        .with_access(access)
        .with_mail(mail)
        .with_campaigns(campaigns, Duration::from_secs(600))
        .with_options(ReconcileOptions {
            step_backoff: Duration::ZERO,
            ..ReconcileOptions::default()
        });
        Ok(Self {
            _dir: dir,
            sandbox,
            upstream,
            reconciler,
        })
    }

    async fn import(&self) -> Result<u64, String> {
        let summary = self
            .reconciler
            .import(ImportRequest {
                event: SLUG.into(),
                attendees: self.sandbox.attendees_export(EVENT).ok_or("no export")?,
                orders: Some(self.sandbox.orders_export(EVENT).ok_or("no export")?),
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(summary.mailed)
    }

    /// One send; its report, wall time and what reached the provider during it.
    async fn send(&self) -> Result<(CampaignReport, f64, Vec<String>), String> {
        let before = self.upstream.received().await;
        let started = Instant::now();
        let report = self
            .reconciler
            .campaign_send(CAMPAIGN, false, None)
            .await
            .map_err(|e| e.to_string())?;
        let wall_ms = started.elapsed().as_secs_f64() * 1e3;
        let after = self.upstream.received().await;
        let new = match self.upstream {
            // Requests are recorded in order: the send's are the tail.
            Upstream::Server(_) => after[before.len().min(after.len())..].to_vec(),
            Upstream::Outbox(_) => after.into_iter().filter(|f| !before.contains(f)).collect(),
        };
        Ok((report, wall_ms, new))
    }
}

fn selector() -> EventSelector {
    autopilot_test_support::sandbox::catalog_of(
        Door::Csv,
        SLUG,
        EVENT,
        "Bench Conf 2026 Registration: Individual",
        None,
    )
}

struct Row {
    provider: Provider,
    walls: Vec<f64>,
    calls: Vec<usize>,
    letters: Vec<u64>,
    resend_letters: Vec<u64>,
    resend_calls: Vec<usize>,
    /// The last sample's calls per endpoint.
    endpoints: BTreeMap<String, usize>,
}

async fn bench() -> Result<bool, String> {
    println!("{}", autopilot_test_support::bench::machine());
    println!(
        "\n## A campaign letter to {ATTENDEES} attendees ({SAMPLES} samples per provider, a fresh world each)\n"
    );
    let mut ok = true;
    let mut rows = Vec::new();
    for provider in [Provider::Mailgun, Provider::Klaviyo, Provider::Outbox] {
        let mut row = Row {
            provider,
            walls: Vec::new(),
            calls: Vec::new(),
            letters: Vec::new(),
            resend_letters: Vec::new(),
            resend_calls: Vec::new(),
            endpoints: BTreeMap::new(),
        };
        for _ in 0..SAMPLES {
            let world = World::new(provider, 11).await?;
            let mailed = world.import().await?;
            if mailed != ATTENDEES as u64 {
                eprintln!(
                    "FAIL: {}: the import invited {mailed} of {ATTENDEES}",
                    provider.label()
                );
                ok = false;
            }
            let (report, wall_ms, calls) = world.send().await?;
            if report.sent != ATTENDEES as u64 || !report.errors.is_empty() {
                eprintln!("FAIL: {}: {report}", provider.label());
                ok = false;
            }
            let (again, _, again_calls) = world.send().await?;
            if again.sent != 0 || again.already_sent != ATTENDEES as u64 {
                eprintln!("FAIL: {}: re-send: {again}", provider.label());
                ok = false;
            }
            row.walls.push(wall_ms);
            row.calls.push(calls.len());
            row.letters.push(report.sent);
            row.resend_letters.push(again.sent);
            row.resend_calls.push(again_calls.len());
            if provider != Provider::Outbox {
                row.endpoints.clear();
                for call in calls {
                    *row.endpoints.entry(call).or_default() += 1;
                }
            }
        }
        rows.push(row);
    }

    println!("| provider | median ms | max ms | provider calls | letters sent | re-send |");
    println!("|---|---:|---:|---:|---:|---|");
    for row in &rows {
        let calls = if row.provider == Provider::Outbox {
            format!("0 HTTP ({} files)", span(&row.calls))
        } else {
            span(&row.calls)
        };
        let resend_calls = if row.provider == Provider::Outbox {
            format!("{} files", span(&row.resend_calls))
        } else {
            format!("{} calls", span(&row.resend_calls))
        };
        println!(
            "| {} | {:.0} | {:.0} | {calls} | {} | {} letters, {resend_calls} |",
            row.provider.label(),
            median(&row.walls),
            max(&row.walls),
            span(&row.letters),
            span(&row.resend_letters),
        );
    }
    for row in rows.iter().filter(|r| !r.endpoints.is_empty()) {
        println!("\n{} calls of one send:", row.provider.label());
        for (endpoint, n) in &row.endpoints {
            println!("- {endpoint}: {n}");
        }
    }
    if !ok {
        eprintln!("FAIL: a send did not reach exactly the {ATTENDEES} attendees once");
    }
    Ok(ok)
}

/// `n` when every sample agrees, else `min–max`.
fn span<T: Copy + Ord + std::fmt::Display>(values: &[T]) -> String {
    let (Some(min), Some(max)) = (values.iter().min(), values.iter().max()) else {
        return "-".into();
    };
    if min == max {
        min.to_string()
    } else {
        format!("{min}–{max}")
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}
