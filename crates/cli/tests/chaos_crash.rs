//! The crash test: the real `autopilot poll --once` killed with SIGKILL at random points, again
//! and again, while KKTIX (the sandbox, served here, with its seeded fault layer) keeps
//! selling, taking late ATM payments and refunding, and the Gather, Mailgun and Discord fakes
//! answer slowly (under the 10 s timeout the environment configuration gives every client)
//! or, for Discord, with 5xx/429. Then the poller runs to completion and the invariants of
//! docs/RELIABILITY.md are checked.
//!
//! No extra mail at all: a kill after Mailgun queued a batch and before the process appended
//! its `mailed` entries leaves the batch's intent open, and the next process settles it from
//! Mailgun's Events API (the shared fake serves both). The test tags every Mailgun request with
//! the process that made it and reports how many recipients were queued by a process that was
//! then killed: the window the settle closes.
//!
//! Knobs (environment): `CHAOS_KILLS` (default 8), `CHAOS_SEED_BASE` (default 1),
//! `CHAOS_KILL_MAX_MS` (longest delay before a kill; default: 1.5 × a measured clean run).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autopilot_core::reconcile::RunSummary;
use autopilot_core::selection::CategoryRules;
use autopilot_core::store::{Ledger, SqliteStore};
use autopilot_sandbox::faults::{FaultConfig, FaultKind};
use autopilot_sandbox::{AttendeeTruth, Sandbox, SandboxConfig};
use autopilot_test_support::mailgun::{SendFault, SendRecord};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SPACE: &str = "oxrhEtb3sV7VutbQ\\PyConTW";
const DOMAIN: &str = "mg.example.org";
const WEBHOOK: &str = "/api/webhooks/1234/secret-token";

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Seeded slowness (and, for Discord, answered errors) shared by the fakes.
struct Chaos {
    rng: Mutex<StdRng>,
    p: AtomicU64,
    injected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Chaos {
    fn new(seed: u64, p: f64) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            p: AtomicU64::new(p.to_bits()),
            injected: Mutex::default(),
        }
    }

    fn calm(&self) {
        self.p.store(0f64.to_bits(), Ordering::SeqCst);
    }

    /// `Some(roll)` when this request is faulted.
    fn draw(&self) -> Option<u64> {
        let p = f64::from_bits(self.p.load(Ordering::SeqCst));
        let mut rng = self.rng.lock().unwrap();
        let roll: u64 = rng.random();
        (p > 0.0 && rng.random_bool(p.clamp(0.0, 1.0))).then_some(roll)
    }

    fn count(&self, kind: &'static str) {
        *self.injected.lock().unwrap().entry(kind).or_default() += 1;
    }

    /// A slow answer: 50–800 ms, well under the clients' 10 s.
    fn slow(&self, roll: u64) -> Duration {
        self.count("slow");
        Duration::from_millis(50 + roll % 750)
    }
}

struct Fake<T>(Arc<T>);

trait Answer: Send + Sync + 'static {
    fn answer(&self, request: &Request) -> ResponseTemplate;
}

impl<T: Answer> Respond for Fake<T> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.answer(request)
    }
}

/// Gather's guest list (the shared fake), answering slowly at random.
struct GatherFake {
    chaos: Chaos,
    inner: Arc<autopilot_test_support::gather::GatherFake>,
}

impl Answer for GatherFake {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        let delay = self
            .chaos
            .draw()
            .map_or(Duration::ZERO, |r| self.chaos.slow(r));
        self.inner.answer(request).set_delay(delay)
    }
}

/// Mailgun's send and Events APIs (the shared fake): queued the moment a request arrives, so
/// a kill while the answer is on its way leaves an intent the next process must settle.
struct MailgunFake {
    chaos: Chaos,
    inner: Arc<autopilot_test_support::mailgun::MailgunFake>,
}

impl Answer for MailgunFake {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "GET" {
            return self.inner.events_page(request);
        }
        let fault = match self.chaos.draw() {
            None => SendFault::None,
            Some(roll) => SendFault::QueuedButSlow(self.chaos.slow(roll)),
        };
        self.inner.receive(request, fault)
    }
}

struct DiscordFake {
    chaos: Chaos,
    bodies: Mutex<Vec<String>>,
}

impl Answer for DiscordFake {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        self.bodies
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&request.body).into_owned());
        match self.chaos.draw() {
            None => ResponseTemplate::new(204),
            Some(roll) => match roll % 3 {
                0 => {
                    self.chaos.count("5xx");
                    ResponseTemplate::new(500)
                }
                1 => {
                    self.chaos.count("429");
                    ResponseTemplate::new(429)
                        .insert_header("Retry-After", "0")
                        .set_body_json(json!({"message": "You are being rate limited.", "retry_after": 0.1, "global": false}))
                }
                _ => ResponseTemplate::new(204).set_delay(self.chaos.slow(roll)),
            },
        }
    }
}

struct Env {
    vars: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
}

impl Env {
    fn command(&self, process: u64) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_autopilot"));
        command
            .args(["poll", "--once", "--json"])
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "debug")
            .envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(File::create(self.dir.path().join(format!("out-{process}.txt"))).unwrap())
            .stderr(File::create(self.dir.path().join(format!("err-{process}.txt"))).unwrap());
        command
    }
}

async fn wait(child: &mut Child) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_and_never_mails_twice() {
    let seed: u64 = knob("CHAOS_SEED_BASE", 1);
    let kills: u64 = knob("CHAOS_KILLS", 8);
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6b696c6c);

    let mut config = SandboxConfig::demo(seed);
    config.purchases_per_step = 3.0;
    config.refund_share = 0.25;
    let sandbox = Sandbox::new(config);
    let mut faults = FaultConfig::uniform(seed, 0.1);
    // Every kind but the timeout (the configured clients wait 10 s).
    faults.weights = FaultKind::ALL
        .iter()
        .filter(|k| **k != FaultKind::Timeout)
        .map(|k| (*k, 1))
        .collect();
    faults.slow = (20, 400);
    let running = sandbox
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();

    let gather = Arc::new(GatherFake {
        chaos: Chaos::new(seed ^ 1, 0.15),
        inner: autopilot_test_support::gather::GatherFake::new(),
    });
    let mailgun = Arc::new(MailgunFake {
        chaos: Chaos::new(seed ^ 2, 0.15),
        inner: autopilot_test_support::mailgun::MailgunFake::new(DOMAIN),
    });
    let discord = Arc::new(DiscordFake {
        chaos: Chaos::new(seed ^ 3, 0.2),
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
    let db = dir.path().join("data/autopilot.db");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let env = Env {
        vars: vec![
            ("KKTIX_API_BASE", running.base_url.clone()),
            ("KKTIX_ACCESS_TOKEN", sandbox.access_token()),
            ("STORE", format!("sqlite:{}", db.display())),
            ("GATHER_API_BASE", gather_server.uri()),
            ("GATHER_API_KEY", "gather-key".into()),
            ("GATHER_SPACE_ID", SPACE.into()),
            ("MAIL_PROVIDER", "mailgun".into()),
            ("MAILGUN_API_BASE", mailgun_server.uri()),
            ("MAILGUN_API_KEY", "mailgun-key".into()),
            ("MAILGUN_DOMAIN", DOMAIN.into()),
            (
                "DISCORD_WEBHOOK_URL",
                format!("{}{WEBHOOK}", discord_server.uri()),
            ),
        ],
        dir,
    };

    // How long a clean run takes here (no faults yet): the kills land within 1.5× of it.
    let mut process = 1;
    mailgun.inner.set_tag(process);
    let clean_started = Instant::now();
    let mut child = env.command(process).spawn().unwrap();
    let first = wait(&mut child).await;
    let clean_ms = clean_started.elapsed().as_millis() as u64;
    assert!(
        first.code().is_some_and(|c| c == 0 || c == 2),
        "the first run failed: {}",
        read(&env.dir.path().join("err-1.txt"))
    );
    let max_delay: u64 = knob("CHAOS_KILL_MAX_MS", clean_ms * 3 / 2 + 50);
    sandbox.set_faults(Some(faults));

    let store_len = || async {
        let store = SqliteStore::open(&db).unwrap();
        store.ledger_len().await.unwrap()
    };
    let mut ledger_len = store_len().await;
    let mut killed: BTreeSet<u64> = BTreeSet::new();
    let mut finished_on_its_own = 0;
    let mut attempts = 0;
    while (killed.len() as u64) < kills {
        attempts += 1;
        assert!(attempts < kills * 10 + 20, "kills keep missing the runs");
        for _ in 0..rng.random_range(0..=2) {
            sandbox.step();
        }
        process += 1;
        mailgun.inner.set_tag(process);
        let delay = Duration::from_millis(rng.random_range(0..=max_delay));
        let mut child = env.command(process).spawn().unwrap();
        tokio::time::sleep(delay).await;
        if child.try_wait().unwrap().is_some() {
            finished_on_its_own += 1;
        } else {
            child.kill().unwrap(); // SIGKILL on Unix
            wait(&mut child).await;
            killed.insert(process);
        }
        let len = store_len().await;
        assert!(
            len >= ledger_len,
            "the ledger shrank after process {process}"
        );
        ledger_len = len;
    }

    // The storm settles: no faults, no kills, no new buyers; the poller runs to completion.
    let kktix_faults = sandbox.fault_stats();
    sandbox.set_faults(None);
    gather.chaos.calm();
    mailgun.chaos.calm();
    discord.chaos.calm();
    let mut settled = None;
    for _ in 0..5 {
        process += 1;
        mailgun.inner.set_tag(process);
        let mut child = env.command(process).spawn().unwrap();
        let status = wait(&mut child).await;
        let out = read(&env.dir.path().join(format!("out-{process}.txt")));
        let summary: RunSummary = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            panic!(
                "process {process} printed no summary ({e}): {out}\n{}",
                read(&env.dir.path().join(format!("err-{process}.txt")))
            )
        });
        let len = store_len().await;
        assert!(len >= ledger_len, "the ledger shrank");
        ledger_len = len;
        if status.success() && summary.granted + summary.mailed == 0 {
            settled = Some(summary);
            break;
        }
    }
    assert!(
        settled.is_some(),
        "the poller did not settle after the kills"
    );

    // Ground truth and the store.
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
    let event_of: HashMap<String, u64> = truth
        .values()
        .map(|a| (a.email.to_lowercase(), a.event_id))
        .collect();
    let store = SqliteStore::open(&db).unwrap();
    let mut admissions = HashMap::new();
    for event in &selected {
        for (id, admission) in store.admissions(event.id).await.unwrap() {
            assert!(
                truth.contains_key(&(event.id, id)),
                "ledger key {}/{id} is not in KKTIX's ground truth",
                event.id
            );
            admissions.insert((event.id, id), admission);
        }
    }
    let mut rows = HashSet::new();
    let mut warehouse_text = Vec::new();
    let categories = CategoryRules::default();
    for event in &selected {
        for row in store
            .warehouse_rows(&categories.route(&event.name).table)
            .await
            .unwrap()
        {
            warehouse_text.push(serde_json::to_string(&row).unwrap());
            rows.insert((row.event_id, row.attendee_id));
        }
    }
    let guests = gather.inner.emails();
    let log: Vec<SendRecord> = mailgun
        .inner
        .sends()
        .into_iter()
        .filter(|s| s.queued)
        .collect();
    let mut mails: HashMap<String, Vec<u64>> = HashMap::new();
    for record in &log {
        for to in &record.to {
            mails.entry(to.clone()).or_default().push(record.tag);
        }
    }

    let mut paid = 0;
    for (key, buyer) in &truth {
        let email = buyer.email.to_lowercase();
        let sent = mails.get(&email).map_or(0, Vec::len);
        let listed = guests.contains(&email);
        let admission = admissions.get(key);
        // The folded ledger: nothing mailed without a grant, nothing granted without a load.
        if let Some(a) = admission {
            assert!(
                !a.mailed || a.granted.is_some(),
                "{key:?} mailed, not granted"
            );
            assert!(
                a.granted.is_none() || a.loaded,
                "{key:?} granted, not loaded"
            );
        }
        if buyer.paid && !buyer.refunded {
            paid += 1;
            let a = admission.unwrap_or_else(|| panic!("paid attendee {key:?} was lost"));
            assert!(a.loaded && !a.cancelled, "{key:?} not loaded");
            assert!(rows.contains(key), "{key:?} has no warehouse row");
            assert!(a.granted.is_some() && listed, "{key:?} not granted");
            assert!(a.mailed && sent >= 1, "{key:?} not mailed");
        } else if buyer.refunded {
            if let Some(a) = admission.filter(|a| a.loaded) {
                assert!(a.cancelled, "refunded {key:?} still live");
                assert!(rows.contains(key), "{key:?} has no warehouse row");
                if a.granted.is_some() {
                    assert!(a.revoked, "refunded {key:?} not revoked");
                }
            }
            assert!(!listed, "refunded {key:?} still on the guest list");
        } else {
            assert_eq!(sent, 0, "unpaid {key:?} mailed");
            assert!(!listed, "unpaid {key:?} on the guest list");
        }
    }
    for address in mails.keys().chain(guests.iter()) {
        assert!(
            event_of.contains_key(address),
            "a mail or guest entry for someone KKTIX never sold to"
        );
    }

    // Extra mails: none. A kill after Mailgun queued a batch and before the ledger said so
    // leaves an open intent; the next process settles it from Mailgun's events.
    let extra: usize = mails.values().map(|p| p.len().saturating_sub(1)).sum();
    assert_eq!(extra, 0, "{extra} extra mails");
    // How often a kill landed in that window: recipients queued by a killed process, and
    // those whose mail a later process settled as accepted from Mailgun's events (each one a
    // duplicate before intents).
    let exposed: usize = log
        .iter()
        .filter(|r| killed.contains(&r.tag))
        .map(|r| r.to.len())
        .sum();
    let settled: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM admission_log WHERE step = 'mailed' AND detail LIKE 'settled: accepted%'",
            [],
            |row| row.get(0),
        )
        .unwrap();

    // No panic, no clear personal data in any output, file, row, message or summary.
    let mut haystacks: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            haystacks.push((
                entry.file_name().to_string_lossy().into_owned(),
                read(&entry.path()),
            ));
        }
    }
    for entry in std::fs::read_dir(env.dir.path().join("data")).unwrap() {
        let entry = entry.unwrap();
        haystacks.push((
            format!("SQLite {}", entry.file_name().to_string_lossy()),
            read(&entry.path()),
        ));
    }
    for (label, text) in &haystacks {
        assert!(!text.contains("panicked"), "{label} shows a panic:\n{text}");
    }
    haystacks.push(("warehouse rows".into(), warehouse_text.join("\n")));
    for body in discord.bodies.lock().unwrap().iter() {
        haystacks.push(("a Discord message".into(), body.clone()));
    }
    for run in store.recent_runs(100_000).await.unwrap() {
        haystacks.push(("a run summary".into(), serde_json::to_string(&run).unwrap()));
    }
    let mut needles = HashSet::new();
    for event in sandbox.events() {
        for a in sandbox.attendees(event.id) {
            needles.insert(a.email.clone());
            needles.insert(a.email.to_lowercase());
            needles.insert(a.name.clone());
            needles.insert(a.phone.clone());
            needles.extend(a.address.clone());
        }
    }
    needles.retain(|n| !n.trim().is_empty());
    for (label, text) in &haystacks {
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "clear personal data ({} chars) in {label}",
                needle.chars().count()
            );
        }
    }
    let log_bytes: usize = haystacks
        .iter()
        .filter(|(l, _)| l.starts_with("err-") || l.starts_with("out-"))
        .map(|(_, t)| t.len())
        .sum();

    println!(
        "chaos crash seed {seed}: {} kills landed, {finished_on_its_own} runs finished before their kill, {} processes in all, kill delay 0–{max_delay} ms (clean run {clean_ms} ms), {} ledger entries, {paid} paid admitted, {} mails, {extra} extra ({exposed} recipients queued by a process that was then killed; {settled} settled as accepted from {} Events API pages, not resent), kktix faults {:?} of {} requests, gather {:?}, mailgun {:?}, discord {:?}, privacy: {} needles × {} haystacks ({} KiB of debug logs), {:.1}s",
        killed.len(),
        process,
        ledger_len,
        log.iter().map(|r| r.to.len()).sum::<usize>(),
        mailgun.inner.events_requests(),
        kktix_faults
            .injected
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<BTreeMap<_, _>>(),
        kktix_faults.requests,
        gather.chaos.injected.lock().unwrap(),
        mailgun.chaos.injected.lock().unwrap(),
        discord.chaos.injected.lock().unwrap(),
        needles.len(),
        haystacks.len(),
        log_bytes / 1024,
        started.elapsed().as_secs_f64()
    );
}
