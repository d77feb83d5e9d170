//! The CSV and webhook doors as operators use them: `autopilot import` (exit codes and
//! summary like `poll --once`), `poll --once` without a KKTIX token, `autopilot shred`, and
//! `autopilot dev --sandbox --source csv|webhook` — including a restart on an existing
//! `./autopilot-sandbox/`, which must not take earlier buyers for refunds.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use autopilot_sandbox::{Sandbox, SandboxConfig};

const KEY: &str = "0707070707070707070707070707070707070707070707070707070707070707";
const INDIVIDUAL: u64 = 80_101;

fn autopilot(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autopilot"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// A team without the hosting API: one catalog event, imports and the schedule.
fn team(dir: &Path) -> Command {
    std::fs::write(
        dir.join("autopilot.toml"),
        format!(
            "[events.catalog]\n\"pycontw-2026-individual\" = {{ id = {INDIVIDUAL}, name = \"PyCon Taiwan 2026 Registration: Individual\", source = \"csv\" }}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut command = autopilot(dir);
    command
        .env("AUTOPILOT_CONFIG", dir.join("autopilot.toml"))
        .env("STORE", "sqlite:data/autopilot.db")
        .env("CONTACT_KEY", KEY)
        .env("MAIL_PROVIDER", "outbox");
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn import_admits_reports_like_a_run_and_a_reimport_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig::demo(12));
    std::fs::write(
        dir.path().join("attendees.csv"),
        sandbox.attendees_export(INDIVIDUAL).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("orders.csv"),
        sandbox.orders_export(INDIVIDUAL).unwrap(),
    )
    .unwrap();
    let paid = sandbox
        .attendees(INDIVIDUAL)
        .iter()
        .filter(|a| a.paid && !a.refunded)
        .count();
    let import = || {
        team(dir.path())
            .args([
                "import",
                "--event",
                "pycontw-2026-individual",
                "--attendees",
                "attendees.csv",
                "--orders",
                "orders.csv",
            ])
            .output()
            .unwrap()
    };
    let first = import();
    let shown = text(&first);
    assert_eq!(first.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("ok (import): 1 events, ") && shown.contains(&format!("{paid} new paid")),
        "{shown}"
    );
    assert!(shown.contains(&format!("{paid} mailed")), "{shown}");
    let invitations = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .count();
    assert_eq!(invitations, paid);

    let again = import();
    let shown = text(&again);
    assert_eq!(again.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("0 new paid") && shown.contains("0 mailed"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .count(),
        paid
    );
    for attendee in sandbox.attendees(INDIVIDUAL) {
        assert!(!shown.contains(&attendee.email));
    }

    // The schedule of a team without KKTIX_ACCESS_TOKEN runs (nothing pending here).
    let poll = team(dir.path()).args(["poll", "--once"]).output().unwrap();
    assert_eq!(poll.status.code(), Some(0), "{}", text(&poll));

    let shred = team(dir.path())
        .args(["shred", "--event", "pycontw-2026-individual"])
        .output()
        .unwrap();
    let shown = text(&shred);
    assert_eq!(shred.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!("event {INDIVIDUAL}: shredded")),
        "{shown}"
    );
}

#[test]
fn import_refuses_a_file_that_is_not_an_export_and_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("people.csv"),
        "name,email\nAnn,ann@example.com\n",
    )
    .unwrap();
    let output = team(dir.path())
        .args([
            "import",
            "--event",
            "pycontw-2026-individual",
            "--attendees",
            "people.csv",
        ])
        .output()
        .unwrap();
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("missing the column(s) Id, 票種, 票券付款狀態"),
        "{shown}"
    );
    assert!(!shown.contains("ann@example.com"));

    let output = autopilot(dir.path())
        .args(["import", "--event", "1", "--attendees", "people.csv"])
        .env("STORE", "sqlite:data/autopilot.db")
        .output()
        .unwrap();
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("CONTACT_KEY"), "{shown}");
    assert!(
        !dir.path().join("data/autopilot.db").exists(),
        "a failed start creates no files"
    );
}

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `autopilot dev --sandbox --source SOURCE` until `runs` summary lines matching `want`
/// were printed; the lines.
fn dev_until(dir: &Path, source: &str, want: &dyn Fn(&str) -> bool, runs: usize) -> Vec<String> {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let child = autopilot(dir)
        .args([
            "dev",
            "--sandbox",
            "--source",
            source,
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--every",
            "1s",
            "--sandbox-every",
            "300ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut dev = Dev(child);
    let stdout = dev.0.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut matched = 0;
    while matched < runs && Instant::now() < deadline {
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            if want(&line) {
                matched += 1;
            }
            seen.push(line);
        }
    }
    assert_eq!(matched, runs, "{}", seen.join("\n"));
    seen
}

/// The `N refunded` of a summary line.
fn refunded(line: &str) -> u64 {
    line.split(", ")
        .find_map(|part| part.strip_suffix(" refunded"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn dev_sandbox_feeds_the_webhook_and_a_restart_refunds_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let lines = dev_until(
        dir.path(),
        "webhook",
        &|line| line.contains("ok (webhook)") && !line.contains(" 0 mailed"),
        1,
    );
    let outbox = dir.path().join("autopilot-sandbox/outbox");
    let invitations = std::fs::read_dir(&outbox).unwrap().count();
    assert!(invitations > 50, "{invitations}: {}", lines.join("\n"));
    assert!(dir
        .path()
        .join("autopilot-sandbox/sandbox-state.json")
        .exists());

    // Restarted on the same folder: the simulator resumes its buyers, the store keeps them.
    let lines = dev_until(dir.path(), "webhook", &|line| line.contains(" ok: "), 2);
    for line in lines
        .iter()
        .filter(|l| l.contains(" ok") && l.contains("refunded"))
    {
        assert!(refunded(line) <= 3, "a restart refunded buyers: {line}");
    }
    assert!(std::fs::read_dir(&outbox).unwrap().count() >= invitations);
}

#[test]
fn dev_sandbox_imports_fresh_exports_on_every_step() {
    let dir = tempfile::tempdir().unwrap();
    dev_until(
        dir.path(),
        "csv",
        &|line| line.contains("ok (import)") && !line.contains(" 0 mailed"),
        2,
    );
    let exports = dir.path().join("autopilot-sandbox/exports");
    assert!(exports
        .join("pycontw-2026-individual-attendees.csv")
        .exists());
    assert!(exports.join("pycontw-2026-individual-orders.csv").exists());
    assert!(
        std::fs::read_dir(dir.path().join("autopilot-sandbox/outbox"))
            .unwrap()
            .count()
            > 50
    );
}

#[test]
fn dev_sandbox_restarted_on_its_folder_does_not_take_earlier_buyers_for_refunds() {
    let dir = tempfile::tempdir().unwrap();
    let is_run = |line: &str| line.contains(" ok: ") && line.contains("new paid");
    let before = dev_until(dir.path(), "api", &is_run, 2);
    let sold_before: u64 = before
        .iter()
        .filter(|l| is_run(l))
        .map(|l| {
            l.split(", ")
                .find_map(|part| part.strip_suffix(" new paid"))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(sold_before > 50, "{}", before.join("\n"));
    let after = dev_until(dir.path(), "api", &is_run, 2);
    for line in after.iter().filter(|l| is_run(l)) {
        assert!(refunded(line) <= 3, "a restart refunded buyers: {line}");
    }
    assert!(
        after.iter().any(|l| l.contains("resumed after")),
        "{}",
        after.join("\n")
    );
}
