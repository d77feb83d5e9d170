//! Against the old pipeline: `cargo bench -p autopilot-cli --bench baseline`.
//!
//! The old Airflow pipeline fetched every attendee on every run: 1 listing call, 2 calls per
//! event (the attendance-book list and the book) and 1 detail call per attendee, each run.
//! This benchmark measures, in the same process and the same run, at 1,000 and at 10,000
//! attendees (one event each, served by the KKTIX sandbox on `127.0.0.1:0`):
//!
//! - **ours**: the real `autopilot poll --once --json` child process against a temporary
//!   SQLite store, after its initial load, with nothing new and with 20 new paid attendees;
//! - **baseline**: the old pattern with the same `KktixClient` at concurrency 8 (as the
//!   poller uses it), in process: the listing, every event's books, every book's ids and
//!   every attendee's detail.
//!
//! Both are measured in each repetition against the same sandbox state (for "20 new" the 20
//! purchases are made first, then the baseline and our run are timed one after the other).
//! Call counts are the sandbox's own counters (and the summary's / the client's counts) and
//! are exact: a wrong count exits non-zero. Times are reported.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use autopilot_core::kktix::{AttendeeFetch, KktixClient, KktixOptions};
use autopilot_core::pii::Sensitive;
use autopilot_sandbox::{Sandbox, SandboxConfig};

/// Event sizes measured.
const SIZES: [usize; 2] = [1_000, 10_000];
/// Repetitions of each scenario.
const REPEATS: usize = 5;
/// New paid attendees per repetition in the "20 new" scenario.
const NEW: usize = 20;

/// One timed run of either kind.
#[derive(Debug, Clone, Copy)]
struct Timed {
    /// Requests the sandbox answered during the run.
    calls: u64,
    wall_ms: f64,
}

/// Figures of one scenario at one size.
struct Row {
    attendees: usize,
    scenario: &'static str,
    ours: Vec<Timed>,
    /// The reconcile's own `duration_ms` of our runs.
    ours_duration: Vec<f64>,
    baseline: Vec<Timed>,
}

fn main() -> ExitCode {
    match bench() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> Result<bool, String> {
    print_machine();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_autopilot"));
    println!("Binary: {}", binary.display());
    let mut ok = true;
    let mut rows = Vec::new();
    for size in SIZES {
        ok &= measure_size(&runtime, &binary, size, &mut rows)?;
    }

    println!();
    println!(
        "| attendees | scenario | runs | ours: calls | ours: wall ms median (max) | ours: reconcile ms median | baseline: calls | baseline: wall ms median (max) | calls baseline / ours | time baseline / ours |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let ours_calls: Vec<f64> = row.ours.iter().map(|t| t.calls as f64).collect();
        let ours_wall: Vec<f64> = row.ours.iter().map(|t| t.wall_ms).collect();
        let base_calls: Vec<f64> = row.baseline.iter().map(|t| t.calls as f64).collect();
        let base_wall: Vec<f64> = row.baseline.iter().map(|t| t.wall_ms).collect();
        println!(
            "| {} | {} | {} | {} | {:.0} ({:.0}) | {:.0} | {} | {:.0} ({:.0}) | {:.0}× | {:.1}× |",
            thousands(row.attendees as u64),
            row.scenario,
            row.ours.len(),
            range(row.ours.iter().map(|t| t.calls)),
            median(&ours_wall),
            max(&ours_wall),
            median(&row.ours_duration),
            range(row.baseline.iter().map(|t| t.calls)),
            median(&base_wall),
            max(&base_wall),
            median(&base_calls) / median(&ours_calls),
            median(&base_wall) / median(&ours_wall),
        );
    }
    println!();
    println!(
        "ours: 1 + 2·events + new calls; baseline: 1 + 2·events + every attendee in the book; both exact: {}",
        if ok { "PASS" } else { "FAIL" }
    );
    if !ok {
        eprintln!("FAIL: a call count was not the exact target");
    }
    Ok(ok)
}

/// Serves one sandbox of `size` attendees and measures both patterns against it.
fn measure_size(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    size: usize,
    rows: &mut Vec<Row>,
) -> Result<bool, String> {
    let sandbox = Sandbox::new(SandboxConfig::single_event(7, size));
    let addr: SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let running = runtime
        .block_on(sandbox.serve(addr))
        .map_err(|e| format!("serving the sandbox: {e}"))?;
    let events = sandbox.events();
    let event_count = events.len() as u64;
    let event_id = events.first().map(|e| e.id).ok_or("no sandbox event")?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let env = ChildEnv {
        binary,
        dir: dir.path(),
        base_url: &running.base_url,
        token: sandbox.access_token(),
        store: format!("sqlite:{}", dir.path().join("autopilot.sqlite").display()),
    };
    println!();
    println!(
        "## {} attendees, {event_count} event, sandbox at {}",
        thousands(size as u64),
        running.base_url
    );
    let base_calls = 1 + 2 * event_count;
    let mut ok = true;

    // The initial load, not compared: the old pipeline had no ledger to load.
    let (initial, _) = run_ours(&sandbox, &env)?;
    ok &= expect(
        "initial load",
        initial.calls,
        base_calls + size as u64,
        &initial,
    );

    for (scenario, new) in [("nothing new", 0usize), ("20 new", NEW)] {
        let mut row = Row {
            attendees: size,
            scenario,
            ours: Vec::new(),
            ours_duration: Vec::new(),
            baseline: Vec::new(),
        };
        for repeat in 1..=REPEATS {
            for _ in 0..new {
                sandbox
                    .purchase(event_id, true)
                    .ok_or("the sandbox refused a purchase")?;
            }
            let in_book = sandbox
                .attendees(event_id)
                .iter()
                .filter(|a| !a.refunded)
                .count() as u64;
            let baseline = runtime.block_on(run_baseline(&sandbox, &running.base_url))?;
            ok &= expect(
                &format!("{scenario} #{repeat} baseline"),
                baseline.calls,
                base_calls + in_book,
                &baseline,
            );
            let (ours, duration_ms) = run_ours(&sandbox, &env)?;
            ok &= expect(
                &format!("{scenario} #{repeat} ours"),
                ours.calls,
                base_calls + new as u64,
                &ours,
            );
            row.baseline.push(baseline);
            row.ours.push(ours);
            row.ours_duration.push(duration_ms as f64);
        }
        rows.push(row);
    }
    if running.is_finished() {
        return Err("the sandbox server stopped during the benchmark".into());
    }
    Ok(ok)
}

fn expect(label: &str, calls: u64, expected: u64, run: &Timed) -> bool {
    let ok = calls == expected;
    println!(
        "{} {label}: {calls} calls (expected {expected}), {:.0} ms",
        if ok { "ok  " } else { "FAIL" },
        run.wall_ms
    );
    ok
}

/// The old pipeline's run: listing, books, every attendee, with the poller's client.
async fn run_baseline(sandbox: &Sandbox, base_url: &str) -> Result<Timed, String> {
    let options = KktixOptions {
        concurrency: 8,
        ..KktixOptions::default()
    };
    // Built before the clock starts: only the fetching is timed.
    let client = KktixClient::new(base_url, Sensitive::new(sandbox.access_token()), options)
        .map_err(|e| format!("KKTIX client: {e}"))?;
    sandbox.reset_stats();
    let started = Instant::now();
    let listing = client
        .hosting_events()
        .await
        .map_err(|e| format!("listing: {e}"))?;
    let mut fetched = 0u64;
    let mut expected = 0u64;
    for event in &listing.events {
        let books = client
            .attendance_books(event.id)
            .await
            .map_err(|e| format!("books: {e}"))?;
        for book in books {
            let ids = client
                .attendance_book(event.id, book.id)
                .await
                .map_err(|e| format!("book: {e}"))?;
            expected += ids.len() as u64;
            for (id, fetch) in client.attendees(event.id, &ids).await {
                match fetch {
                    AttendeeFetch::Fetched(_) => fetched += 1,
                    AttendeeFetch::Broken(e) => return Err(format!("attendee {id}: {e:?}")),
                    AttendeeFetch::Failed(e) => return Err(format!("attendee {id}: {e}")),
                }
            }
        }
    }
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let calls = sandbox.stats().total();
    if fetched != expected || client.requests_sent() != calls {
        return Err(format!(
            "baseline fetched {fetched} of {expected} attendees; client sent {}, sandbox answered {calls}",
            client.requests_sent()
        ));
    }
    Ok(Timed { calls, wall_ms })
}

/// What every child run gets.
struct ChildEnv<'a> {
    binary: &'a Path,
    dir: &'a Path,
    base_url: &'a str,
    token: String,
    store: String,
}

/// Runs `autopilot poll --once --json` once; the sandbox's calls and the reconcile's
/// `duration_ms`. The summary's own call count must match the sandbox's.
fn run_ours(sandbox: &Sandbox, env: &ChildEnv<'_>) -> Result<(Timed, u64), String> {
    sandbox.reset_stats();
    let started = Instant::now();
    let mut child = Command::new(env.binary)
        .args(["poll", "--once", "--json"])
        .current_dir(env.dir)
        .env_remove("AUTOPILOT_CONFIG")
        .env_remove("RUST_LOG")
        .env("KKTIX_API_BASE", env.base_url)
        .env("KKTIX_ACCESS_TOKEN", &env.token)
        .env("STORE", &env.store)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", env.binary.display()))?;
    let mut stdout = String::new();
    let read = child
        .stdout
        .take()
        .ok_or("no stdout pipe")?
        .read_to_string(&mut stdout);
    let status = child.wait().map_err(|e| format!("waiting: {e}"))?;
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    read.map_err(|e| format!("reading the child's stdout: {e}"))?;
    let calls = sandbox.stats().total();
    if !status.success() {
        return Err(format!("autopilot poll exited {status}; stdout: {stdout}"));
    }
    // The summary is the last line; console notices (no webhook configured) may precede it.
    let last = stdout.lines().rev().find(|line| !line.trim().is_empty());
    let summary: serde_json::Value = serde_json::from_str(last.unwrap_or_default().trim())
        .map_err(|e| format!("the run summary is not JSON ({e}): {stdout}"))?;
    let field = |name: &str| {
        summary
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("the run summary lacks {name}: {stdout}"))
    };
    let summary_calls = field("upstream_requests")?;
    if summary_calls != calls || summary.get("outcome").and_then(|o| o.as_str()) != Some("ok") {
        return Err(format!(
            "the summary counts {summary_calls} calls, the sandbox {calls}: {stdout}"
        ));
    }
    Ok((Timed { calls, wall_ms }, field("duration_ms")?))
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    println!("# Against the old pipeline");
    println!();
    println!("Machine: {cpu}, nproc {cpus}");
}

/// `min–max` of the values, or the single value when they agree.
fn range(values: impl Iterator<Item = u64>) -> String {
    let values: Vec<u64> = values.collect();
    let lo = values.iter().copied().min().unwrap_or(0);
    let hi = values.iter().copied().max().unwrap_or(0);
    if lo == hi {
        thousands(lo)
    } else {
        format!("{}–{}", thousands(lo), thousands(hi))
    }
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}
