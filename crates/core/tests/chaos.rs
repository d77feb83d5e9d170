//! Chaos: the whole admission loop against fakes of every upstream that fail at random.
//!
//! Each seed drives one world: the KKTIX sandbox (with its seeded fault layer) while buyers
//! keep purchasing, paying ATM orders late and refunding, plus wiremock fakes of Gather (a
//! stateful guest list), Mailgun and a Discord webhook that answer each request with a fault
//! with probability `CHAOS_P`: 500/503, 429 with `Retry-After` (Discord also `retry_after` in
//! the body), answers slower than the client's timeout, slow answers, and malformed or
//! truncated 200 bodies. After `CHAOS_RUNS` runs the storm stops, a few fault-free runs let
//! everything settle, and the invariants of docs/RELIABILITY.md are checked: everyone paid is
//! granted and mailed exactly once, refunds are revoked, nothing is lost, the ledger folds
//! consistently and only grows, and no clear personal data reached a log line, the SQLite
//! files, the warehouse, a Discord message or a run summary.
//!
//! Knobs (environment): `CHAOS_RUNS` (runs per seed, default 20), `CHAOS_SEEDS` (seeds,
//! default 1), `CHAOS_SEED_BASE` (first seed, default 1), `CHAOS_P` (fault probability per
//! request, default 0.15). The full suite: see docs/RELIABILITY.md.
//!
//! Mailgun meets every fault its users report, including a 500 or a timeout for a batch it
//! did queue; its Events API fails too. An uncertain send is settled from the events, never
//! sent again on a guess, so extra mails must be zero.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use autopilot_core::access::{AccessService, Authorizer, Entitlements, GatherGuestList};
use autopilot_core::contacts::{ContactKey, Sealer};
use autopilot_core::deidentify::PrivacyRules;
use autopilot_core::kktix::{KktixClient, KktixOptions};
use autopilot_core::mail::{MailService, MailSettings, MailTemplate, Mailer, MailgunProvider};
use autopilot_core::notify::{DiscordWebhook, Notifier};
use autopilot_core::pii::Sensitive;
use autopilot_core::reconcile::{ReconcileOptions, Reconciler, RunOutcome, RunSummary, Vault};
use autopilot_core::selection::{CategoryRules, EventSelector};
use autopilot_core::store::{Ledger, SqliteStore, Warehouse};
use autopilot_core::upstream::HttpOptions;
use autopilot_sandbox::faults::FaultConfig;
use autopilot_sandbox::{AttendeeTruth, Sandbox, SandboxConfig};
use autopilot_test_support::mailgun::SendFault;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SPACE: &str = "oxrhEtb3sV7VutbQ\\PyConTW";
const DOMAIN: &str = "mg.example.org";
const WEBHOOK: &str = "/api/webhooks/1234/secret-token";
/// Client timeout of KKTIX, Gather and Discord in this suite.
const TIMEOUT: Duration = Duration::from_millis(300);

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Log capture: every tracing event and span field of the process, as text.
// ---------------------------------------------------------------------------------------------

fn log_lines() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(Mutex::default)
}

struct Capture {
    next_id: AtomicU64,
}

struct FieldText(String);

impl tracing::field::Visit for FieldText {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        // The product's own lines, at every level it has (wiremock's own logs echo bodies,
        // which are the fakes' business, not the product's).
        !metadata.target().starts_with("wiremock")
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut text = FieldText(format!("span {}", span.metadata().name()));
        span.record(&mut text);
        log_lines().lock().unwrap().push(text.0);
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut text = FieldText("record".into());
        values.record(&mut text);
        log_lines().lock().unwrap().push(text.0);
    }

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut text = FieldText(format!("{} {}", meta.level(), meta.target()));
        event.record(&mut text);
        log_lines().lock().unwrap().push(text.0);
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}

fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = tracing::subscriber::set_global_default(Capture {
            next_id: AtomicU64::new(0),
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Seeded faults for the wiremock fakes.
// ---------------------------------------------------------------------------------------------

/// A fault a fake can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum WireFault {
    /// 500 or 503.
    Server,
    /// 429 with `Retry-After: 0|1` (Discord: also `retry_after` in the body).
    RateLimited,
    /// The answer arrives after the client gave up (it was processed: "sent but unknown").
    Timeout,
    /// The answer arrives late but within the timeout.
    Slow,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with JSON cut in the middle.
    Truncated,
}

impl WireFault {
    fn as_str(self) -> &'static str {
        match self {
            Self::Server => "5xx",
            Self::RateLimited => "429",
            Self::Timeout => "timeout",
            Self::Slow => "slow",
            Self::Malformed => "malformed",
            Self::Truncated => "truncated",
        }
    }
}

/// One upstream's seeded fault source: each request is faulted with probability `p`.
struct Chaos {
    rng: Mutex<StdRng>,
    /// f64 bits; 0 turns the storm off.
    p: AtomicU64,
    kinds: Vec<WireFault>,
    injected: Mutex<BTreeMap<WireFault, u64>>,
    requests: AtomicU64,
}

impl Chaos {
    fn new(seed: u64, p: f64, kinds: &[WireFault]) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            p: AtomicU64::new(p.to_bits()),
            kinds: kinds.to_vec(),
            injected: Mutex::default(),
            requests: AtomicU64::new(0),
        }
    }

    fn calm(&self) {
        self.p.store(0f64.to_bits(), Ordering::SeqCst);
    }

    fn draw(&self) -> Option<(WireFault, u64)> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let p = f64::from_bits(self.p.load(Ordering::SeqCst));
        let mut rng = self.rng.lock().unwrap();
        let extra: u64 = rng.random();
        if p <= 0.0 || self.kinds.is_empty() || !rng.random_bool(p.clamp(0.0, 1.0)) {
            return None;
        }
        let fault = self.kinds[rng.random_range(0..self.kinds.len())];
        *self.injected.lock().unwrap().entry(fault).or_default() += 1;
        Some((fault, extra))
    }

    fn injected(&self) -> BTreeMap<&'static str, u64> {
        self.injected
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

/// A generic faulty answer (`None`: answer normally).
fn fault_answer(fault: WireFault, extra: u64, discord: bool) -> Option<ResponseTemplate> {
    Some(match fault {
        WireFault::Server => ResponseTemplate::new(if extra.is_multiple_of(2) { 500 } else { 503 }),
        WireFault::RateLimited => {
            let wait = u64::from(extra.is_multiple_of(4));
            let template =
                ResponseTemplate::new(429).insert_header("Retry-After", wait.to_string().as_str());
            if discord {
                template.set_body_json(json!({
                    "message": "You are being rate limited.",
                    "retry_after": wait as f64 * 0.5,
                    "global": false,
                }))
            } else {
                template
            }
        }
        WireFault::Malformed => ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .set_body_string("<html>upstream hiccup</html>"),
        WireFault::Truncated => ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .set_body_string(r#"{"id": "<2026.1@mg.exa"#),
        WireFault::Timeout | WireFault::Slow => return None,
    })
}

fn delay_of(fault: Option<(WireFault, u64)>) -> Duration {
    match fault {
        Some((WireFault::Timeout, extra)) => TIMEOUT + Duration::from_millis(100 + extra % 200),
        Some((WireFault::Slow, extra)) => Duration::from_millis(10 + extra % 60),
        _ => Duration::ZERO,
    }
}

/// `Respond` over a shared fake.
struct Fake<T>(Arc<T>);

trait Answer: Send + Sync + 'static {
    fn answer(&self, request: &Request) -> ResponseTemplate;
}

impl<T: Answer> Respond for Fake<T> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.answer(request)
    }
}

/// Gather's guest list (the shared fake), behind this suite's seeded faults.
struct GatherFake {
    chaos: Chaos,
    inner: Arc<autopilot_test_support::gather::GatherFake>,
}

impl Answer for GatherFake {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        let fault = self.chaos.draw();
        if let Some(template) = fault.and_then(|(f, extra)| fault_answer(f, extra, false)) {
            // A 2xx with an odd body still did the write.
            if request.method.as_str() == "POST" && template_is_success(fault) {
                self.inner.apply(&request.body);
            }
            return template;
        }
        self.inner.answer(request).set_delay(delay_of(fault))
    }
}

fn template_is_success(fault: Option<(WireFault, u64)>) -> bool {
    matches!(
        fault,
        Some((WireFault::Malformed | WireFault::Truncated, _))
    )
}

/// Mailgun's send and Events APIs (the shared fake), behind this suite's seeded faults.
struct MailgunFake {
    chaos: Chaos,
    /// Faults of the Events API, drawn apart from the sends'.
    events_chaos: Chaos,
    inner: Arc<autopilot_test_support::mailgun::MailgunFake>,
    /// Sends Mailgun queued although it answered 500, or answered after the client gave up.
    queued_but_failed: AtomicU64,
    queued_but_timed_out: AtomicU64,
}

impl Answer for MailgunFake {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "GET" {
            let fault = self.events_chaos.draw();
            if let Some(template) = fault.and_then(|(f, extra)| fault_answer(f, extra, false)) {
                return template;
            }
            return self.inner.events_page(request).set_delay(delay_of(fault));
        }
        let fault = match self.chaos.draw() {
            None => SendFault::None,
            // Half of the 5xx come after Mailgun queued the batch (its users report both).
            Some((WireFault::Server, extra)) if extra.is_multiple_of(2) => {
                self.queued_but_failed.fetch_add(1, Ordering::Relaxed);
                SendFault::QueuedButFailed
            }
            Some((WireFault::Server, _)) => SendFault::Unavailable,
            Some((WireFault::RateLimited, extra)) => {
                SendFault::RateLimited(u64::from(extra.is_multiple_of(4)))
            }
            Some((WireFault::Malformed | WireFault::Truncated, _)) => SendFault::QueuedMalformed,
            Some((kind @ (WireFault::Timeout | WireFault::Slow), extra)) => {
                if kind == WireFault::Timeout {
                    self.queued_but_timed_out.fetch_add(1, Ordering::Relaxed);
                }
                SendFault::QueuedButSlow(delay_of(Some((kind, extra))))
            }
        };
        self.inner.receive(request, fault)
    }
}

impl MailgunFake {
    fn accepted_per_address(&self) -> HashMap<String, usize> {
        self.inner.queued_per_address()
    }
}

struct DiscordFake {
    chaos: Chaos,
    /// Every message body received, faulted or not.
    bodies: Mutex<Vec<String>>,
}

impl Answer for DiscordFake {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        self.bodies
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&request.body).into_owned());
        let fault = self.chaos.draw();
        if let Some(template) = fault.and_then(|(f, extra)| fault_answer(f, extra, true)) {
            return template;
        }
        ResponseTemplate::new(204).set_delay(delay_of(fault))
    }
}

// ---------------------------------------------------------------------------------------------
// One seed's world.
// ---------------------------------------------------------------------------------------------

fn fast(timeout: Duration) -> HttpOptions {
    HttpOptions {
        timeout,
        retry: autopilot_test_support::fast::retry(3),
    }
}

#[derive(Debug, Default)]
struct SeedReport {
    seed: u64,
    runs: usize,
    settle_runs: usize,
    outcomes: BTreeMap<&'static str, u64>,
    kktix_requests: u64,
    kktix_faults: BTreeMap<&'static str, u64>,
    gather_faults: BTreeMap<&'static str, u64>,
    mailgun_faults: BTreeMap<&'static str, u64>,
    mailgun_events_faults: BTreeMap<&'static str, u64>,
    /// Events API pages the fake answered (faults aside): how often sends were settled.
    mailgun_events_pages: u64,
    discord_faults: BTreeMap<&'static str, u64>,
    upstream_requests: BTreeMap<&'static str, u64>,
    /// Runs in which one event's book was cut to 3 ids, and the absentees the guard held.
    glitches: usize,
    held: u64,
    paid: usize,
    refunded_after_grant: usize,
    mails: usize,
    extra_mails: usize,
    ledger_entries: u64,
    privacy_haystacks: usize,
    privacy_needles: usize,
    needles: Vec<String>,
    elapsed: Duration,
}

/// A raw ledger line, in append order.
struct Line {
    event_id: u64,
    attendee_id: u64,
    step: String,
}

fn raw_ledger(db: &std::path::Path) -> Vec<Line> {
    let connection = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    let mut statement = connection
        .prepare("SELECT event_id, attendee_id, step FROM admission_log ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| {
            Ok(Line {
                event_id: row.get::<_, i64>(0)? as u64,
                attendee_id: row.get::<_, i64>(1)? as u64,
                step: row.get(2)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Folds every admission's raw lines in order and checks each transition.
fn check_ledger(seed: u64, lines: &[Line], truth: &HashMap<(u64, u64), AttendeeTruth>) {
    let mut seen: HashMap<(u64, u64), Vec<&str>> = HashMap::new();
    for line in lines {
        let key = (line.event_id, line.attendee_id);
        assert!(
            truth.contains_key(&key),
            "seed {seed}: ledger key {key:?} is not in KKTIX's ground truth"
        );
        let history = seen.entry(key).or_default();
        let step = line.step.as_str();
        let has = |s: &str| history.contains(&s);
        let cancelled = has("cancelled");
        match step {
            "granted" => assert!(
                has("loaded"),
                "seed {seed}: {key:?} granted before loaded: {history:?}"
            ),
            "mailed" => assert!(
                has("granted"),
                "seed {seed}: {key:?} mailed before granted: {history:?}"
            ),
            _ => {}
        }
        if cancelled {
            assert!(
                matches!(step, "revoked" | "revoke_failed"),
                "seed {seed}: {key:?} has {step} after cancelled: {history:?}"
            );
        }
        if matches!(step, "loaded" | "granted" | "mailed" | "cancelled") {
            assert!(
                !has(step),
                "seed {seed}: {key:?} has {step} twice: {history:?}"
            );
        }
        history.push(step);
    }
    // No wrongful revoke: a buyer who paid and kept the ticket was never cancelled or
    // revoked, whatever KKTIX's book said in between (the glitches below).
    for (key, history) in &seen {
        let buyer = &truth[key];
        if buyer.paid && !buyer.refunded {
            assert!(
                !history
                    .iter()
                    .any(|s| matches!(*s, "cancelled" | "revoked")),
                "seed {seed}: {key:?} paid and kept the ticket, but was revoked: {history:?}"
            );
        }
    }
}

/// The clear personal data the sandbox generated, across every event.
fn needles(sandbox: &Sandbox) -> Vec<String> {
    let mut needles = HashSet::new();
    for event in sandbox.events() {
        for a in sandbox.attendees(event.id) {
            needles.insert(a.email.clone());
            needles.insert(a.email.to_lowercase());
            needles.insert(a.name.clone());
            needles.insert(a.phone.clone());
            if let Some(address) = &a.address {
                needles.insert(address.clone());
            }
        }
    }
    needles.retain(|n| !n.trim().is_empty());
    needles.into_iter().collect()
}

fn scan(seed: u64, needles: &[String], haystacks: &[(String, String)]) {
    for (label, haystack) in haystacks {
        for needle in needles {
            assert!(
                !haystack.contains(needle.as_str()),
                "seed {seed}: clear personal data ({} chars) found in {label}",
                needle.chars().count()
            );
        }
    }
}

async fn storm(seed: u64, runs: usize, p: f64) -> SeedReport {
    let started = Instant::now();
    let mut report = SeedReport {
        seed,
        runs,
        ..SeedReport::default()
    };
    let mut config = SandboxConfig::demo(seed);
    config.purchases_per_step = 2.0;
    config.refund_share = 0.25;
    let sandbox = Sandbox::new(config);
    let mut kktix_faults = FaultConfig::uniform(seed ^ 0x6b6b, p);
    kktix_faults.slow = (10, 120);
    kktix_faults.stall = TIMEOUT + Duration::from_millis(150);
    sandbox.set_faults(Some(kktix_faults));
    let running = sandbox
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();

    use WireFault::*;
    let gather = Arc::new(GatherFake {
        chaos: Chaos::new(
            seed ^ 0x6761,
            p,
            &[Server, RateLimited, Timeout, Slow, Malformed],
        ),
        inner: autopilot_test_support::gather::GatherFake::new(),
    });
    // Every fault Mailgun's users meet: 503 before queuing, 500 after queuing, 429, a timeout
    // after queuing, slow and unreadable answers; and its Events API fails on its own.
    let mailgun = Arc::new(MailgunFake {
        chaos: Chaos::new(
            seed ^ 0x6d67,
            p,
            &[Server, RateLimited, Timeout, Slow, Malformed, Truncated],
        ),
        events_chaos: Chaos::new(
            seed ^ 0x6576,
            p,
            &[Server, RateLimited, Timeout, Slow, Malformed],
        ),
        inner: autopilot_test_support::mailgun::MailgunFake::new(DOMAIN),
        queued_but_failed: AtomicU64::new(0),
        queued_but_timed_out: AtomicU64::new(0),
    });
    let discord = Arc::new(DiscordFake {
        chaos: Chaos::new(
            seed ^ 0x6463,
            p,
            &[Server, RateLimited, Timeout, Slow, Malformed],
        ),
        bodies: Mutex::default(),
    });
    let gather_server = MockServer::start().await;
    let mailgun_server = MockServer::start().await;
    let discord_server = MockServer::start().await;
    Mock::given(path("/api/setEmailGuestlist"))
        .respond_with(Fake(gather.clone()))
        .mount(&gather_server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/getEmailGuestlist"))
        .respond_with(Fake(gather.clone()))
        .mount(&gather_server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v3/{DOMAIN}/messages")))
        .respond_with(Fake(mailgun.clone()))
        .mount(&mailgun_server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(format!("^/v3/{DOMAIN}/events(/[^/]+)?$")))
        .respond_with(Fake(mailgun.clone()))
        .mount(&mailgun_server)
        .await;
    Mock::given(method("POST"))
        .and(path(WEBHOOK))
        .respond_with(Fake(discord.clone()))
        .mount(&discord_server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("autopilot.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let access: Arc<dyn AccessService> = Arc::new(Authorizer::new(
        Arc::new(
            GatherGuestList::new(
                &gather_server.uri(),
                Sensitive::new("gather-key".into()),
                SPACE,
                fast(TIMEOUT),
            )
            .unwrap(),
        ),
        Entitlements::default(),
    ));
    let settings = MailSettings::default();
    let mail: Arc<dyn MailService> = Arc::new(Mailer::new(
        Arc::new(
            MailgunProvider::new(
                &mailgun_server.uri(),
                Sensitive::new("mailgun-key".into()),
                DOMAIN,
                &settings.from,
                Vec::new(),
                fast(TIMEOUT),
            )
            .unwrap(),
        ),
        MailTemplate::from_settings(&settings).unwrap(),
    ));
    let notifier: Arc<dyn Notifier> = Arc::new(
        DiscordWebhook::new(&format!("{}{WEBHOOK}", discord_server.uri()), fast(TIMEOUT)).unwrap(),
    );
    let client = KktixClient::new(
        &running.base_url,
        Sensitive::new(sandbox.access_token()),
        KktixOptions {
            timeout: TIMEOUT,
            retry: fast(TIMEOUT).retry,
            concurrency: 8,
        },
    )
    .unwrap();
    let reconciler = Reconciler::new(
        client,
        store.clone(),
        store.clone(),
        EventSelector::default(),
        CategoryRules::default(),
        PrivacyRules::default(),
    )
    .with_access(access)
    .with_mail(mail)
    .with_notifier(notifier)
    // Contacts sealed at rest, as the CSV and webhook doors keep them: the privacy scan below
    // reads the SQLite files, so a clear one would be found.
    .with_vault(Vault {
        store: store.clone(),
        sealer: Sealer::new(ContactKey::from_bytes([7; 32]), None),
    })
    .with_options(ReconcileOptions {
        step_backoff: Duration::ZERO,
        ..ReconcileOptions::default()
    });

    let mut summaries: Vec<RunSummary> = Vec::new();
    let mut ledger_len = 0;
    let mut step_rng = StdRng::seed_from_u64(seed ^ 0x7374);
    let mut run_once = |summary: RunSummary, report: &mut SeedReport| {
        *report.outcomes.entry(summary.outcome.as_str()).or_default() += 1;
        summaries.push(summary);
    };
    for _ in 0..runs {
        // Buyers act between runs: 0–2 simulated minutes.
        for _ in 0..step_rng.random_range(0..=2) {
            sandbox.step();
        }
        // Now and then a KKTIX glitch: one event's book answers only 3 of its ids for one
        // run, as in the issue that locked 42 of 45 paying attendees out. Only where that is
        // more than the revoke guard's thresholds: fewer vanishing revoke at once, by design.
        let mut glitched = None;
        if step_rng.random_bool(0.05) {
            for event in sandbox
                .events()
                .into_iter()
                .filter(|e| !e.ended && e.name.to_lowercase().contains("registration"))
            {
                let admitted = store
                    .admissions(event.id)
                    .await
                    .unwrap()
                    .values()
                    .filter(|a| a.loaded && !a.cancelled)
                    .count();
                if admitted >= 30 {
                    sandbox.truncate_book(event.id, Some(3));
                    glitched = Some(event.id);
                    report.glitches += 1;
                    break;
                }
            }
        }
        let summary = reconciler.run().await;
        if let Some(event_id) = glitched {
            sandbox.truncate_book(event_id, None);
            report.held += summary.held;
        }
        let len = store.ledger_len().await.unwrap();
        assert!(len >= ledger_len, "seed {seed}: the ledger shrank");
        ledger_len = len;
        run_once(summary, &mut report);
    }

    // The storm settles: no faults, no new buyers, until a run is clean.
    let kktix = sandbox.fault_stats();
    sandbox.set_faults(None);
    gather.chaos.calm();
    mailgun.chaos.calm();
    discord.chaos.calm();
    for attempt in 0..5 {
        let summary = reconciler.run().await;
        report.settle_runs += 1;
        let clean = summary.outcome == RunOutcome::Ok && summary.granted + summary.mailed == 0;
        let len = store.ledger_len().await.unwrap();
        assert!(len >= ledger_len, "seed {seed}: the ledger shrank");
        ledger_len = len;
        run_once(summary, &mut report);
        if clean && attempt > 0 {
            break;
        }
    }
    let last = summaries.last().unwrap();
    assert_eq!(
        last.outcome,
        RunOutcome::Ok,
        "seed {seed}: the settled run is not clean: {:?}",
        last.errors
    );

    // Ground truth: attendees of the events the default selector keeps.
    let selected: Vec<_> = sandbox
        .events()
        .into_iter()
        .filter(|e| !e.ended && e.name.to_lowercase().contains("registration"))
        .collect();
    let truth: HashMap<(u64, u64), AttendeeTruth> = selected
        .iter()
        .flat_map(|e| sandbox.attendees(e.id))
        .map(|a| ((a.event_id, a.id), a))
        .collect();

    // The ledger, line by line and folded.
    let lines = raw_ledger(&db);
    check_ledger(seed, &lines, &truth);
    let mut admissions = HashMap::new();
    for event in &selected {
        for (id, admission) in store.admissions(event.id).await.unwrap() {
            admissions.insert((event.id, id), admission);
        }
    }
    let categories = CategoryRules::default();
    let mut rows = HashMap::new();
    let mut warehouse_text = Vec::new();
    for event in &selected {
        let table = categories.route(&event.name).table;
        for row in store.warehouse_rows(&table).await.unwrap() {
            warehouse_text.push(serde_json::to_string(&row).unwrap());
            rows.insert((row.event_id, row.attendee_id), row);
        }
    }
    let guests = gather.inner.emails();
    let mails = mailgun.accepted_per_address();

    for (key, buyer) in &truth {
        let admission = admissions.get(key);
        let mailed = mails.get(&buyer.email.to_lowercase()).copied().unwrap_or(0);
        let listed = guests.contains(&buyer.email.to_lowercase());
        if buyer.paid && !buyer.refunded {
            report.paid += 1;
            let admission =
                admission.unwrap_or_else(|| panic!("seed {seed}: paid attendee {key:?} was lost"));
            assert!(
                admission.loaded && !admission.cancelled,
                "seed {seed}: {key:?} not loaded"
            );
            assert!(
                rows.contains_key(key),
                "seed {seed}: {key:?} has no warehouse row"
            );
            assert!(
                admission.granted.is_some() && listed,
                "seed {seed}: {key:?} not granted"
            );
            assert!(admission.mailed, "seed {seed}: {key:?} not mailed");
            assert_eq!(mailed, 1, "seed {seed}: {key:?} mailed {mailed} times");
        } else if buyer.refunded {
            assert!(
                mailed <= 1,
                "seed {seed}: refunded {key:?} mailed {mailed}×"
            );
            if let Some(admission) = admission {
                if admission.loaded {
                    assert!(
                        admission.cancelled,
                        "seed {seed}: refunded {key:?} still live"
                    );
                    assert!(
                        rows.contains_key(key),
                        "seed {seed}: {key:?} has no warehouse row"
                    );
                }
                if admission.granted.is_some() {
                    report.refunded_after_grant += 1;
                    assert!(
                        admission.revoked,
                        "seed {seed}: refunded {key:?} not revoked"
                    );
                }
            }
            assert!(
                !listed,
                "seed {seed}: refunded {key:?} is still on the guest list"
            );
        } else {
            assert_eq!(mailed, 0, "seed {seed}: unpaid {key:?} was mailed");
            assert!(!listed, "seed {seed}: unpaid {key:?} is on the guest list");
            assert!(
                admission.is_none_or(|a| !a.loaded),
                "seed {seed}: unpaid {key:?} loaded"
            );
        }
    }
    let known: HashSet<String> = truth.values().map(|a| a.email.to_lowercase()).collect();
    for address in mails.keys().chain(guests.iter()) {
        assert!(
            known.contains(address),
            "seed {seed}: a mail or guest entry for someone KKTIX never sold to"
        );
    }
    report.mails = mails.values().sum();
    report.extra_mails = mails.values().map(|n| n.saturating_sub(1)).sum();
    assert_eq!(report.extra_mails, 0, "seed {seed}: extra mails");
    report.ledger_entries = ledger_len;

    // Privacy: nothing clear outside Gather's and Mailgun's request bodies.
    let mut haystacks: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        haystacks.push((
            format!("SQLite file {}", entry.file_name().to_string_lossy()),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    haystacks.push(("warehouse rows".into(), warehouse_text.join("\n")));
    for body in discord.bodies.lock().unwrap().iter() {
        haystacks.push(("a Discord message".into(), body.clone()));
    }
    for summary in &summaries {
        haystacks.push((
            "a run summary".into(),
            format!("{}\n{}", serde_json::to_string(summary).unwrap(), summary),
        ));
    }
    for run in store.recent_runs(10_000).await.unwrap() {
        haystacks.push((
            "a recorded run".into(),
            serde_json::to_string(&run).unwrap(),
        ));
    }
    for event in store.events().await.unwrap() {
        haystacks.push(("the events catalog".into(), format!("{event:?}")));
    }
    let needles = needles(&sandbox);
    scan(seed, &needles, &haystacks);
    report.privacy_haystacks = haystacks.len();
    report.privacy_needles = needles.len();
    report.needles = needles;

    let stats = sandbox.stats();
    report.kktix_requests = kktix.requests;
    report.kktix_faults = kktix
        .injected
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    report.gather_faults = gather.chaos.injected();
    report.mailgun_faults = mailgun.chaos.injected();
    report.mailgun_faults.insert(
        "500 after queuing",
        mailgun.queued_but_failed.load(Ordering::Relaxed),
    );
    report.mailgun_faults.insert(
        "timeout after queuing",
        mailgun.queued_but_timed_out.load(Ordering::Relaxed),
    );
    report.mailgun_events_faults = mailgun.events_chaos.injected();
    report.mailgun_events_pages = mailgun.inner.events_requests();
    report.discord_faults = discord.chaos.injected();
    report.upstream_requests = BTreeMap::from([
        ("kktix_answered", stats.total()),
        ("gather", gather.chaos.requests.load(Ordering::Relaxed)),
        ("mailgun", mailgun.chaos.requests.load(Ordering::Relaxed)),
        ("discord", discord.chaos.requests.load(Ordering::Relaxed)),
    ]);
    report.elapsed = started.elapsed();
    report
}

fn add(into: &mut BTreeMap<&'static str, u64>, from: &BTreeMap<&'static str, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_survives_a_storm_of_upstream_faults() {
    capture_logs();
    let runs: usize = knob("CHAOS_RUNS", 20);
    let seeds: u64 = knob("CHAOS_SEEDS", 1);
    let base: u64 = knob("CHAOS_SEED_BASE", 1);
    let p: f64 = knob("CHAOS_P", 0.15);
    let started = Instant::now();
    let tasks: Vec<_> = (base..base + seeds)
        .map(|seed| tokio::spawn(storm(seed, runs, p)))
        .collect();
    let mut reports = Vec::new();
    for task in tasks {
        match task.await {
            Ok(report) => reports.push(report),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    // Privacy of every log line the product wrote, across all seeds.
    let lines = log_lines().lock().unwrap().clone();
    assert!(!lines.is_empty(), "the log capture saw nothing");
    let joined = lines.join("\n");
    assert!(!joined.contains("panicked"), "a panic was logged");
    for report in &reports {
        scan(
            report.seed,
            &report.needles,
            &[("the captured log lines".to_owned(), joined.clone())],
        );
    }

    let mut totals: [BTreeMap<&'static str, u64>; 5] = Default::default();
    let (mut paid, mut mails, mut extra, mut revoked, mut entries) = (0, 0, 0, 0, 0);
    let (mut glitches, mut held) = (0, 0);
    for r in &reports {
        println!(
            "chaos seed {}: {} runs + {} settling ({:?}) in {:.1}s; kktix faults {:?} of {} requests; gather {:?}; mailgun {:?}; mailgun events API {:?} ({} pages answered); discord {:?}; requests {:?}; {} paid, {} mails, {} extra, {} revoked after grant, 0 wrongful revokes ({} book glitches, {} held), {} ledger entries; privacy: {} needles × {} haystacks",
            r.seed, r.runs, r.settle_runs, r.outcomes, r.elapsed.as_secs_f64(), r.kktix_faults,
            r.kktix_requests, r.gather_faults, r.mailgun_faults, r.mailgun_events_faults,
            r.mailgun_events_pages, r.discord_faults, r.upstream_requests, r.paid, r.mails, r.extra_mails, r.refunded_after_grant,
            r.glitches, r.held, r.ledger_entries, r.privacy_needles, r.privacy_haystacks
        );
        add(&mut totals[0], &r.kktix_faults);
        add(&mut totals[1], &r.gather_faults);
        add(&mut totals[2], &r.mailgun_faults);
        add(&mut totals[3], &r.discord_faults);
        add(&mut totals[4], &r.outcomes);
        paid += r.paid;
        mails += r.mails;
        extra += r.extra_mails;
        revoked += r.refunded_after_grant;
        entries += r.ledger_entries;
        glitches += r.glitches;
        held += r.held;
    }
    println!(
        "chaos total: {} seeds × {runs} runs (p={p}) in {:.1}s; outcomes {:?}; faults kktix {:?}, gather {:?}, mailgun {:?}, discord {:?}; {paid} paid admitted, {mails} mails, {extra} extra, {revoked} revoked, 0 wrongful revokes ({glitches} book glitches, {held} held), {entries} ledger entries, {} log lines scanned",
        reports.len(),
        started.elapsed().as_secs_f64(),
        totals[4], totals[0], totals[1], totals[2], totals[3],
        lines.len()
    );
}
