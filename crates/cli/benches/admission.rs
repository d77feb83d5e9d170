//! Access-and-invitation benchmark: `cargo bench -p autopilot-cli --bench admission`.
//!
//! 1,000 new paid attendees, and every upstream 20 ms away: the KKTIX sandbox behind a delay
//! layer, and wiremock fakes of Gather Town, Mailgun and the Discord webhook in their wire
//! formats. Runs the real `autopilot poll --once --json` (configured only through its
//! environment variables, as deployed) against a fresh store, several times, and reports the
//! end-to-end run time and the upstream calls per provider.
//!
//! Targets: one Gather call and one Mailgun call per 1,000 attendees (exact: a wrong count
//! exits non-zero), under 5 s per run (reported).

use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use autopilot_sandbox::{Sandbox, SandboxConfig};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ATTENDEES: usize = 1_000;
const LATENCY: Duration = Duration::from_millis(20);
const REPEATS: usize = 3;
const TARGET_MS: f64 = 5_000.0;
const DOMAIN: &str = "mg.bench.example";
const WEBHOOK: &str = "/api/webhooks/1/bench-token";

struct Measured {
    wall_ms: f64,
    duration_ms: u64,
    kktix: u64,
    gather: usize,
    mailgun: usize,
    recipients: usize,
    discord: usize,
    granted: u64,
    mailed: u64,
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

async fn fake(path_is: String, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(path_is))
        .respond_with(response.set_delay(LATENCY))
        .mount(&server)
        .await;
    server
}

async fn bench() -> Result<bool, String> {
    // One ticket type: Mailgun tags each message with its ticket, so a batch is one call per
    // ticket type (and per 1,000 recipients).
    let mut config = SandboxConfig::single_event(21, ATTENDEES);
    for event in &mut config.events {
        event.tickets.truncate(1);
    }
    let sandbox = Sandbox::new(config);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| e.to_string())?;
    let kktix = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let router = sandbox.router().layer(axum::middleware::from_fn(
        |request, next: axum::middleware::Next| async move {
            tokio::time::sleep(LATENCY).await;
            next.run(request).await
        },
    ));
    tokio::spawn(async move { axum::serve(listener, router).await });

    let gather = fake("/api/setEmailGuestlist".into(), ResponseTemplate::new(200)).await;
    let mailgun = fake(
        format!("/v3/{DOMAIN}/messages"),
        ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"id": "<bench@mg>", "message": "Queued. Thank you."}),
        ),
    )
    .await;
    let discord = fake(WEBHOOK.into(), ResponseTemplate::new(204)).await;

    println!("{}", autopilot_test_support::bench::machine());
    println!(
        "{ATTENDEES} new paid attendees; every upstream {} ms away\n",
        LATENCY.as_millis()
    );
    let mut runs = Vec::new();
    for repeat in 1..=REPEATS {
        sandbox.reset_stats();
        for server in [&gather, &mailgun, &discord] {
            // Counters only: the mocks stay mounted.
            let _ = server.received_requests().await;
        }
        let before = (
            count(&gather).await,
            count(&mailgun).await,
            count(&discord).await,
            recipients(&mailgun).await,
        );
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_autopilot"));
        command
            .args(["poll", "--once", "--json"])
            .current_dir(dir.path())
            .env_clear()
            .env("KKTIX_API_BASE", &kktix)
            .env("KKTIX_ACCESS_TOKEN", sandbox.access_token())
            .env("STORE", "sqlite:bench.db")
            .env("GATHER_API_BASE", gather.uri())
            .env("GATHER_API_KEY", "bench-key")
            .env("GATHER_SPACE_ID", "bench\\space")
            .env("MAIL_PROVIDER", "mailgun")
            .env("MAILGUN_API_BASE", mailgun.uri())
            .env("MAILGUN_API_KEY", "bench-key")
            .env("MAILGUN_DOMAIN", DOMAIN)
            .env("DISCORD_WEBHOOK_URL", format!("{}{WEBHOOK}", discord.uri()));
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
        if !output.status.success() {
            return Err(format!(
                "run {repeat} exited {:?}: {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stdout)
            ));
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&output.stdout).map_err(|e| format!("summary: {e}"))?;
        let measured = Measured {
            wall_ms,
            duration_ms: summary["duration_ms"].as_u64().unwrap_or_default(),
            kktix: sandbox.stats().total(),
            gather: count(&gather).await - before.0,
            mailgun: count(&mailgun).await - before.1,
            discord: count(&discord).await - before.2,
            recipients: recipients(&mailgun).await - before.3,
            granted: summary["granted"].as_u64().unwrap_or_default(),
            mailed: summary["mailed"].as_u64().unwrap_or_default(),
        };
        println!(
            "run {repeat}: wall {:.0} ms, reconcile {} ms; KKTIX {} calls, Gather {}, Mailgun {} ({} recipients), Discord {}; granted {}, mailed {}",
            measured.wall_ms,
            measured.duration_ms,
            measured.kktix,
            measured.gather,
            measured.mailgun,
            measured.recipients,
            measured.discord,
            measured.granted,
            measured.mailed
        );
        runs.push(measured);
    }

    let mut walls: Vec<f64> = runs.iter().map(|r| r.wall_ms).collect();
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    let max = walls[walls.len() - 1];
    println!("\n| runs | KKTIX calls | Gather calls | Mailgun calls (recipients) | Discord calls | wall ms median | wall ms max |");
    println!("|---:|---:|---:|---|---:|---:|---:|");
    let first = &runs[0];
    println!(
        "| {} | {} | {} | {} ({}) | {} | {median:.0} | {max:.0} |",
        runs.len(),
        first.kktix,
        first.gather,
        first.mailgun,
        first.recipients,
        first.discord
    );

    let exact = runs.iter().all(|r| {
        r.kktix == 3 + ATTENDEES as u64
            && r.gather == 1
            && r.mailgun == 1
            && r.recipients == ATTENDEES
            && r.discord == 1
            && r.granted == ATTENDEES as u64
            && r.mailed == ATTENDEES as u64
    });
    println!("\nTargets:");
    println!(
        "- {}: one Gather call and one Mailgun call (1,000 recipients) per 1,000 new attendees, one Discord notice",
        if exact { "PASS" } else { "FAIL" }
    );
    println!(
        "- {}: end-to-end run under {TARGET_MS:.0} ms (max {max:.0} ms)",
        if max < TARGET_MS { "PASS" } else { "FAIL" }
    );
    Ok(exact)
}

async fn count(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .map(|r| r.len())
        .unwrap_or(0)
}

async fn recipients(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            url::form_urlencoded::parse(&r.body)
                .filter(|(key, _)| key == "to")
                .count()
        })
        .sum()
}
