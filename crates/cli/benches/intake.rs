//! Intake benchmark: `cargo bench -p autopilot-cli --bench intake`.
//!
//! 1. **Import of a 10,000-attendee export**: the sandbox writes KKTIX's attendees and orders
//!    exports of one event; the real `autopilot import` (configured only by its environment
//!    and a catalog file, as an operator runs it) parses, seals, de-identifies, loads, grants
//!    (a Gather fake) and mails (a Mailgun fake) every buyer. Reported: wall time and peak RSS
//!    of the process (`wait4` → `ru_maxrss`, taken by a small measuring process so that the
//!    bench's own pages do not count), and the same for a re-import (nothing to do).
//!    Targets: under 2 s and 60 MB.
//! 2. **Webhook → invitation**: the real `autopilot dev` serving `POST /kktix/webhook/…`;
//!    each trial POSTs a batch with one new paid order and waits for its invitation in the
//!    outbox. Target: under 5 s end to end.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use autopilot_sandbox::{Sandbox, SandboxConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use wiremock::matchers::{method, path};

use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ATTENDEES: usize = 10_000;
const EVENT: u64 = 90_001;
const KEY: &str = "0707070707070707070707070707070707070707070707070707070707070707";
const TOKEN: &str = "bench-webhook-token-0123456789";
const DOMAIN: &str = "mg.bench.example";
const IMPORT_TARGET_MS: f64 = 2_000.0;
const IMPORT_TARGET_MB: f64 = 60.0;
const WEBHOOK_TARGET_MS: f64 = 5_000.0;
const IMPORT_REPEATS: usize = 3;
const WEBHOOK_TRIALS: usize = 10;

fn main() -> ExitCode {
    // Measuring mode: run the command after `--measure` and report its rusage. The bench
    // measures through this small process because a child's `ru_maxrss` counts the pages of
    // the process that spawned it until it execs — the bench itself, with its sandbox.
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--measure") {
        return measure_child(&args[at + 1..]);
    }
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

fn catalog(dir: &Path, source: &str) -> Result<(), String> {
    std::fs::write(
        dir.join("autopilot.toml"),
        format!(
            "[events.catalog]\n\"bench-conf-2026\" = {{ id = {EVENT}, name = \"Bench Conf 2026 Registration: Individual\", source = \"{source}\" }}\n"
        ),
    )
    .map_err(|e| e.to_string())
}

struct Measured {
    wall_ms: f64,
    rss_mb: f64,
    summary: serde_json::Value,
}

async fn bench() -> Result<bool, String> {
    println!("{}", autopilot_test_support::bench::machine());
    let sandbox = Sandbox::new(SandboxConfig::single_event(31, ATTENDEES));
    // The fakes count requests instead of recording them: a parent holding every Mailgun
    // body would inflate the children's measured RSS (a forked child counts the parent's
    // pages until it execs).
    let (gather, gather_calls) = fake("/api/setEmailGuestlist", ResponseTemplate::new(200)).await;
    let (mailgun, mailgun_calls) = fake(
        &format!("/v3/{DOMAIN}/messages"),
        ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"id": "<bench@mg>", "message": "Queued. Thank you."}),
        ),
    )
    .await;

    let attendees = sandbox.attendees_export(EVENT).ok_or("no export")?;
    let orders = sandbox.orders_export(EVENT).ok_or("no export")?;
    println!(
        "\n## Import of a {ATTENDEES}-attendee export ({:.1} MB attendees + {:.1} MB orders CSV)\n",
        attendees.len() as f64 / 1e6,
        orders.len() as f64 / 1e6
    );
    println!("| run | new paid | granted | mailed | Gather calls | Mailgun calls | wall ms | peak RSS MB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut ok = true;
    let mut first_runs = Vec::new();
    let mut again_runs = Vec::new();
    for repeat in 1..=IMPORT_REPEATS {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("attendees.csv"), &attendees).map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("orders.csv"), &orders).map_err(|e| e.to_string())?;
        catalog(dir.path(), "csv")?;
        for (label, runs) in [("first", &mut first_runs), ("re-import", &mut again_runs)] {
            let gather_before = gather_calls.load(Ordering::SeqCst);
            let mailgun_before = mailgun_calls.load(Ordering::SeqCst);
            let measured = import(dir.path(), &gather.uri(), &mailgun.uri())?;
            let field = |name: &str| measured.summary[name].as_u64().unwrap_or(u64::MAX);
            let (gather_calls, mailgun_calls) = (
                gather_calls.load(Ordering::SeqCst) - gather_before,
                mailgun_calls.load(Ordering::SeqCst) - mailgun_before,
            );
            println!(
                "| {label} #{repeat} | {} | {} | {} | {gather_calls} | {mailgun_calls} | {:.0} | {:.1} |",
                field("new_paid"),
                field("granted"),
                field("mailed"),
                measured.wall_ms,
                measured.rss_mb
            );
            let expected = if label == "first" {
                ATTENDEES as u64
            } else {
                0
            };
            ok &= field("new_paid") == expected && field("mailed") == expected;
            runs.push(measured);
        }
    }
    let first_wall: Vec<f64> = first_runs.iter().map(|r| r.wall_ms).collect();
    let first_rss: Vec<f64> = first_runs.iter().map(|r| r.rss_mb).collect();
    let again_wall: Vec<f64> = again_runs.iter().map(|r| r.wall_ms).collect();

    println!("\n## Webhook → invitation (`autopilot dev`, outbox)\n");
    let latencies = webhook_latency(&sandbox).await?;
    println!("| trials | median ms | max ms |");
    println!("|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {:.0} |",
        latencies.len(),
        median(&latencies),
        max(&latencies)
    );

    println!("\nTargets:");
    println!(
        "- {}: importing {ATTENDEES} attendees (grant + mail included) under {IMPORT_TARGET_MS:.0} ms (max {:.0} ms, median {:.0} ms; a re-import: median {:.0} ms)",
        pass(max(&first_wall) < IMPORT_TARGET_MS),
        max(&first_wall),
        median(&first_wall),
        median(&again_wall)
    );
    println!(
        "- {}: its peak RSS under {IMPORT_TARGET_MB:.0} MB (max {:.1} MB, median {:.1} MB)",
        pass(max(&first_rss) < IMPORT_TARGET_MB),
        max(&first_rss),
        median(&first_rss)
    );
    println!(
        "- {}: webhook → invitation under {WEBHOOK_TARGET_MS:.0} ms (max {:.0} ms)",
        pass(max(&latencies) < WEBHOOK_TARGET_MS),
        max(&latencies)
    );
    if !ok {
        eprintln!("FAIL: an import did not admit exactly the export's buyers once");
    }
    Ok(ok)
}

fn measure_child(command: &[String]) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    let Ok(child) = Command::new(program).args(args).spawn() else {
        return ExitCode::FAILURE;
    };
    match wait4(child.id() as libc::pid_t) {
        Ok((status, rusage)) => {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            };
            println!(
                "@@rusage {} {:.1} {code}",
                rusage.ru_maxrss,
                started.elapsed().as_secs_f64() * 1e3
            );
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::FAILURE,
    }
}

fn import(dir: &Path, gather: &str, mailgun: &str) -> Result<Measured, String> {
    let bench = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(bench)
        .arg("--measure")
        .arg(env!("CARGO_BIN_EXE_autopilot"))
        .args([
            "import",
            "--event",
            "bench-conf-2026",
            "--attendees",
            "attendees.csv",
            "--orders",
            "orders.csv",
            "--json",
        ])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTOPILOT_CONFIG", dir.join("autopilot.toml"))
        .env("STORE", "sqlite:autopilot.db")
        .env("CONTACT_KEY", KEY)
        .env("GATHER_API_BASE", gather)
        .env("GATHER_API_KEY", "bench")
        .env("GATHER_SPACE_ID", "bench\\space")
        .env("MAIL_PROVIDER", "mailgun")
        .env("MAILGUN_API_BASE", mailgun)
        .env("MAILGUN_API_KEY", "bench")
        .env("MAILGUN_DOMAIN", DOMAIN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .ok_or("no stdout")?
        .read_to_string(&mut stdout)
        .map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    let report = stdout
        .lines()
        .find_map(|line| line.strip_prefix("@@rusage "))
        .ok_or_else(|| format!("no measurement: {stdout}"))?;
    let fields: Vec<&str> = report.split_whitespace().collect();
    let (max_rss_kib, wall_ms, code) = match fields.as_slice() {
        [rss, wall, code] => (
            rss.parse::<f64>().map_err(|e| e.to_string())?,
            wall.parse::<f64>().map_err(|e| e.to_string())?,
            *code,
        ),
        _ => return Err(format!("a malformed measurement: {report}")),
    };
    if code != "0" {
        return Err(format!("autopilot import did not exit 0: {stdout}"));
    }
    let last = stdout
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with('{'));
    let summary = serde_json::from_str(last.unwrap_or_default())
        .map_err(|e| format!("the summary is not JSON ({e}): {stdout}"))?;
    Ok(Measured {
        wall_ms,
        // Linux reports ru_maxrss in KiB.
        rss_mb: max_rss_kib * 1024.0 / 1e6,
        summary,
    })
}

struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn webhook_latency(sandbox: &Sandbox) -> Result<Vec<f64>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    catalog(dir.path(), "webhook")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let _dev = Dev(Command::new(env!("CARGO_BIN_EXE_autopilot"))
        .args([
            "dev",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--every",
            "1h",
        ])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTOPILOT_CONFIG", dir.path().join("autopilot.toml"))
        .env("STORE", "sqlite:autopilot.db")
        .env("CONTACT_KEY", KEY)
        .env("KKTIX_WEBHOOK_TOKEN", TOKEN)
        .env("MAIL_PROVIDER", "outbox")
        .env("OPS_TOKEN", "bench")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            return Err("autopilot dev did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outbox = dir.path().join("outbox");
    let attendees = sandbox.attendees(EVENT);
    let mut latencies = Vec::new();
    for (trial, attendee) in attendees.iter().take(WEBHOOK_TRIALS).enumerate() {
        let body = serde_json::json!({
            "batch_id": format!("{:016}", trial + 1),
            "notifications": [{
                "type": "order_activated_paid",
                "event": {"name": "Bench Conf 2026 Registration: Individual", "slug": "bench-conf-2026"},
                "order": {"id": attendee.order_no, "state": "activated", "paid_at": "2026-04-18T14:00:54.442+08:00"},
                "contact": {"name": attendee.name, "email": attendee.email, "mobile": attendee.phone},
                "tickets": [{"id": attendee.id, "name": attendee.ticket_name, "price_cents": attendee.price * 100, "price_currency": "TWD"}]
            }]
        });
        let invitation = outbox.join(format!("{EVENT}-{}.eml", attendee.id));
        let started = Instant::now();
        let answer = http
            .post(format!("{base}/kktix/webhook/{TOKEN}"))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("the webhook answered {}", answer.status()));
        }
        while !invitation.exists() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("no invitation for trial {trial} within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(latencies)
}

struct Counting {
    calls: Arc<AtomicUsize>,
    answer: ResponseTemplate,
}

impl Respond for Counting {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answer.clone()
    }
}

async fn fake(path_is: &str, answer: ResponseTemplate) -> (MockServer, Arc<AtomicUsize>) {
    let server = MockServer::builder()
        .disable_request_recording()
        .start()
        .await;
    let calls = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path(path_is))
        .respond_with(Counting {
            calls: calls.clone(),
            answer,
        })
        .mount(&server)
        .await;
    (server, calls)
}

fn wait4(pid: libc::pid_t) -> Result<(libc::c_int, libc::rusage), String> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct for which all-zero bytes are a valid value.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; both pointers are valid for the call.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
        if reaped == pid {
            return Ok((status, rusage));
        }
        let error = std::io::Error::last_os_error();
        if reaped == -1 && error.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return Err(format!("wait4({pid}): {error}"));
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

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}
