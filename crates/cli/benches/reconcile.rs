//! Reconcile benchmark: `cargo bench -p autopilot-cli --bench reconcile`.
//!
//! Serves the KKTIX sandbox with one registration event of 10,000 paid attendees, then runs
//! the real `autopilot poll --once --json` binary as a child process against it and a
//! temporary SQLite store: first the initial load, then steady-state runs with 0, 20 and
//! 1,000 new paid attendees. For every run it measures the upstream calls (the sandbox's
//! counters and the summary's own count), the child's wall time (spawn to exit), the
//! reconcile's `duration_ms` and the child's peak RSS (`wait4` → `ru_maxrss`).
//!
//! Upstream call counts are exact (1 listing + 2 per event + 1 per attendee to fetch): a
//! wrong count exits non-zero. The time and memory targets are only reported.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use autopilot_sandbox::{Sandbox, SandboxConfig};

/// Paid attendees in the benchmark event.
const ATTENDEES: usize = 10_000;
/// Target for a run with nothing new at [`ATTENDEES`]: wall time of the whole process.
const TARGET_WALL_MS: f64 = 1_000.0;
/// Target for a run with nothing new at [`ATTENDEES`]: peak RSS in MB (10^6 bytes).
const TARGET_RSS_MB: f64 = 50.0;

/// One measured `autopilot poll --once --json` run.
#[derive(Debug, Clone)]
struct Run {
    /// Requests the sandbox answered during the run.
    sandbox_calls: u64,
    /// The summary's own `upstream_requests`.
    summary_calls: u64,
    new_paid: u64,
    fetched: u64,
    events: u64,
    outcome: String,
    /// Spawn to exit, in milliseconds.
    wall_ms: f64,
    /// The reconcile's own `duration_ms`.
    duration_ms: u64,
    /// Peak resident set size of the child, in KiB.
    max_rss_kib: i64,
}

/// One scenario: how many new paid attendees are added before each run.
struct Scenario {
    name: &'static str,
    new: usize,
    repeats: usize,
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

/// Runs every scenario; `Ok(false)` when an exact count was wrong.
fn bench() -> Result<bool, String> {
    print_machine();

    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    let generated = Instant::now();
    let sandbox = Sandbox::new(SandboxConfig::single_event(7, ATTENDEES));
    let generated_ms = generated.elapsed().as_secs_f64() * 1e3;
    let addr: SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let running = runtime
        .block_on(sandbox.serve(addr))
        .map_err(|e| format!("serving the sandbox: {e}"))?;
    let events = sandbox.events();
    let event_count = events.len() as u64;
    let event_id = events
        .first()
        .map(|event| event.id)
        .ok_or("the sandbox has no event")?;

    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let db = dir.path().join("autopilot.sqlite");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_autopilot"));
    let env = ChildEnv {
        binary: &binary,
        dir: dir.path(),
        base_url: &running.base_url,
        token: sandbox.access_token(),
        store: format!("sqlite:{}", db.display()),
    };
    println!(
        "Sandbox: {} event(s), {ATTENDEES} paid attendees (generated in {generated_ms:.0} ms), served at {}",
        event_count, running.base_url
    );
    println!("Binary: {}", binary.display());
    println!();

    let base_calls = 1 + 2 * event_count;
    let mut ok = true;
    let mut rows: Vec<(String, u64, Vec<Run>)> = Vec::new();

    // The initial load: every attendee is new.
    let initial = measure(&sandbox, &env)?;
    ok &= check(
        "initial load",
        &initial,
        base_calls,
        ATTENDEES as u64,
        event_count,
    );
    rows.push((
        format!("initial load ({ATTENDEES} new)"),
        base_calls + ATTENDEES as u64,
        vec![initial],
    ));

    let scenarios = [
        Scenario {
            name: "0 new",
            new: 0,
            repeats: 5,
        },
        Scenario {
            name: "20 new",
            new: 20,
            repeats: 5,
        },
        Scenario {
            name: "1,000 new",
            new: 1_000,
            repeats: 3,
        },
    ];
    for scenario in &scenarios {
        let mut runs = Vec::with_capacity(scenario.repeats);
        for repeat in 0..scenario.repeats {
            for _ in 0..scenario.new {
                sandbox
                    .purchase(event_id, true)
                    .ok_or("the sandbox refused a purchase")?;
            }
            let run = measure(&sandbox, &env)?;
            let label = format!("{} #{}", scenario.name, repeat + 1);
            ok &= check(&label, &run, base_calls, scenario.new as u64, event_count);
            runs.push(run);
        }
        rows.push((
            scenario.name.to_owned(),
            base_calls + scenario.new as u64,
            runs,
        ));
    }
    if running.is_finished() {
        return Err("the sandbox server stopped during the benchmark".into());
    }

    println!();
    println!(
        "| scenario | runs | new_paid | upstream calls (sandbox / summary) | expected calls | wall ms median | wall ms max | duration_ms median | duration_ms max | peak RSS MB median | peak RSS MB max |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, expected, runs) in &rows {
        let wall: Vec<f64> = runs.iter().map(|r| r.wall_ms).collect();
        let duration: Vec<f64> = runs.iter().map(|r| r.duration_ms as f64).collect();
        let rss: Vec<f64> = runs.iter().map(|r| rss_mb(r.max_rss_kib)).collect();
        println!(
            "| {name} | {} | {} | {} | {expected} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} |",
            runs.len(),
            distinct(runs.iter().map(|r| r.new_paid)),
            distinct(
                runs.iter()
                    .map(|r| format!("{} / {}", r.sandbox_calls, r.summary_calls))
            ),
            median(&wall),
            max(&wall),
            median(&duration),
            max(&duration),
            median(&rss),
            max(&rss),
        );
    }

    println!();
    println!("Targets:");
    let counts_note = if ok { "PASS" } else { "FAIL" };
    println!(
        "- {counts_note}: upstream calls are exactly 1 + 2·events + new (events = {event_count}: {base_calls}, {}, {})",
        base_calls + 20,
        base_calls + 1_000
    );
    let quiet = &rows[1].2;
    let quiet_wall: Vec<f64> = quiet.iter().map(|r| r.wall_ms).collect();
    let quiet_rss: Vec<f64> = quiet.iter().map(|r| rss_mb(r.max_rss_kib)).collect();
    let wall_max = max(&quiet_wall);
    let rss_max = max(&quiet_rss);
    println!(
        "- {}: a run with nothing new at {ATTENDEES} attendees takes under {TARGET_WALL_MS:.0} ms wall (max {wall_max:.0} ms, median {:.0} ms)",
        pass(wall_max < TARGET_WALL_MS),
        median(&quiet_wall)
    );
    println!(
        "- {}: a run with nothing new at {ATTENDEES} attendees peaks under {TARGET_RSS_MB:.0} MB RSS (max {rss_max:.1} MB, median {:.1} MB)",
        pass(rss_max < TARGET_RSS_MB),
        median(&quiet_rss)
    );
    if !ok {
        eprintln!("FAIL: an upstream call count or new_paid count was not the exact target");
    }
    drop(running);
    Ok(ok)
}

/// What every child run gets.
struct ChildEnv<'a> {
    binary: &'a Path,
    dir: &'a Path,
    base_url: &'a str,
    token: String,
    store: String,
}

/// Runs `autopilot poll --once --json` once and measures it.
fn measure(sandbox: &Sandbox, env: &ChildEnv<'_>) -> Result<Run, String> {
    sandbox.reset_stats();
    let started = Instant::now();
    let mut child = Command::new(env.binary)
        .args(["poll", "--once", "--json"])
        // No stray autopilot.toml: the child runs in the temp dir with no AUTOPILOT_CONFIG.
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
    let pid = child.id() as libc::pid_t;
    let mut stdout = String::new();
    let read = child
        .stdout
        .take()
        .ok_or("no stdout pipe")?
        .read_to_string(&mut stdout);
    let (status, rusage) = wait4(pid)?;
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    read.map_err(|e| format!("reading the child's stdout: {e}"))?;
    let stats = sandbox.stats();

    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "autopilot poll --once --json did not exit 0 (wait status {status:#x}); stdout: {stdout}"
        ));
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
    Ok(Run {
        sandbox_calls: stats.total(),
        summary_calls: field("upstream_requests")?,
        new_paid: field("new_paid")?,
        fetched: field("fetched")?,
        events: field("events")?,
        outcome: summary
            .get("outcome")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
            .to_owned(),
        wall_ms,
        duration_ms: field("duration_ms")?,
        max_rss_kib: rusage.ru_maxrss,
    })
}

/// Reaps `pid` and returns its wait status and its own resource usage.
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

/// Prints one line per run and checks the exact counts.
fn check(label: &str, run: &Run, base_calls: u64, new: u64, event_count: u64) -> bool {
    let expected = base_calls + new;
    let ok = run.sandbox_calls == expected
        && run.summary_calls == expected
        && run.new_paid == new
        && run.fetched == new
        && run.events == event_count
        && run.outcome == "ok";
    println!(
        "{} {label}: calls {} (summary {}, expected {expected}), new_paid {}, fetched {}, outcome {}, wall {:.0} ms, duration_ms {}, peak RSS {:.1} MB",
        if ok { "ok  " } else { "FAIL" },
        run.sandbox_calls,
        run.summary_calls,
        run.new_paid,
        run.fetched,
        run.outcome,
        run.wall_ms,
        run.duration_ms,
        rss_mb(run.max_rss_kib),
    );
    ok
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
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    println!("# Reconcile benchmark");
    println!();
    println!("Machine: {cpu}, nproc {cpus}, {memory} RAM, Linux {kernel}");
}

fn rss_mb(kib: i64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn pass(met: bool) -> &'static str {
    if met {
        "PASS"
    } else {
        "FAIL"
    }
}

/// The single value when all runs agree, else every value.
fn distinct<T: ToString>(values: impl Iterator<Item = T>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for value in values {
        let value = value.to_string();
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.join(", ")
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
