//! The `autopilot` binary as operators run it: exit codes, start-up errors, and the local
//! stack serving the routes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use autopilot_sandbox::{Sandbox, SandboxConfig};

fn autopilot(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autopilot"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

#[tokio::test]
async fn poll_once_loads_then_exits_zero_and_names_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig::demo(3));
    let running = sandbox
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    // The store's directory is the operator's to create: it is never made on a guess.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let mut command = autopilot(dir.path());
    command
        .args(["poll", "--once"])
        .env("KKTIX_API_BASE", &running.base_url)
        .env("KKTIX_ACCESS_TOKEN", sandbox.access_token())
        .env("STORE", "sqlite:data/autopilot.db");
    // The sandbox serves on this runtime, so the blocking child runs on another thread.
    let first = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains(" ok: 3 events, "), "{stdout}");
    assert!(
        stdout.contains("new paid") && stdout.contains("pending") && stdout.contains("refunded")
    );
    assert!(dir.path().join("data/autopilot.db").exists());

    // No clear personal data on the console.
    let everything = format!("{stdout}{}", String::from_utf8_lossy(&first.stderr));
    for event in sandbox.events() {
        for attendee in sandbox.attendees(event.id) {
            assert!(!everything.contains(&attendee.email));
        }
    }
}

#[test]
fn poll_once_fails_with_a_named_variable_when_configuration_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let output = autopilot(dir.path())
        .args(["poll", "--once"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("KKTIX_ACCESS_TOKEN"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let output = autopilot(dir.path())
        .args(["poll", "--once"])
        .env("KKTIX_ACCESS_TOKEN", "x")
        .env("KKTIX_API_BASE", "not a url")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("KKTIX_API_BASE is invalid"));
}

/// Every file and directory under `dir`, relative.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        found.push(entry.file_name().to_string_lossy().into_owned());
    }
    found.sort();
    found
}

#[test]
fn a_failed_start_creates_no_files_and_says_each_error_once() {
    let dir = tempfile::tempdir().unwrap();
    // No configuration at all.
    let output = autopilot(dir.path())
        .args(["poll", "--once"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        files(dir.path()),
        Vec::<String>::new(),
        "no autopilot.db left behind"
    );

    // A store in a directory that does not exist: named, not created.
    let missing = dir.path().join("no/such/dir/a.db");
    let output = autopilot(dir.path())
        .args(["poll", "--once"])
        .env("KKTIX_ACCESS_TOKEN", "x")
        .env("STORE", format!("sqlite:{}", missing.display()))
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr.matches("does not exist").count()
        + String::from_utf8_lossy(&output.stdout)
            .matches("does not exist")
            .count();
    assert_eq!(said, 1, "said once: {stderr}");
    assert!(stderr.contains("no/such/dir"), "{stderr}");
    assert_eq!(files(dir.path()), Vec::<String>::new());
    // Logs into a pipe carry no colour codes.
    assert!(!stderr.contains('\u{1b}'), "ANSI codes in {stderr:?}");
}

#[test]
fn a_rejecting_kktix_names_the_token_and_the_host() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let answer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in server.incoming().take(1) {
            let mut stream = stream.unwrap();
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let output = autopilot(dir.path())
        .args(["poll", "--once"])
        .env("KKTIX_ACCESS_TOKEN", "wrong-token")
        .env("KKTIX_API_BASE", format!("http://127.0.0.1:{port}"))
        .env("STORE", "sqlite:autopilot.db")
        .output()
        .unwrap();
    answer.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("check KKTIX_ACCESS_TOKEN")
            && stdout.contains(&format!("127.0.0.1:{port}")),
        "{stdout}"
    );
    assert!(!stdout.contains("wrong-token"));
}

#[test]
fn a_hung_kktix_fails_well_under_forty_seconds_with_the_defaults() {
    // Accepts connections and never answers.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in server.incoming() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = autopilot(dir.path())
        .args(["poll", "--once"])
        .env("KKTIX_ACCESS_TOKEN", "x")
        .env("KKTIX_API_BASE", format!("http://127.0.0.1:{port}"))
        .env("STORE", "sqlite:autopilot.db")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("did not answer in time") && stdout.contains("check KKTIX_API_BASE"),
        "{stdout}"
    );
    assert!(took < Duration::from_secs(25), "took {took:?}");
}

#[test]
fn poll_once_exits_non_zero_when_kktix_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let output = autopilot(dir.path())
        .args(["poll", "--once"])
        .env("KKTIX_ACCESS_TOKEN", "x")
        .env("KKTIX_API_BASE", "http://127.0.0.1:9")
        .env("STORE", "sqlite:autopilot.db")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("failed") && stdout.contains("could not reach KKTIX"),
        "{stdout}"
    );
    assert!(
        stdout.contains("check KKTIX_API_BASE (127.0.0.1:9)"),
        "names the variable and the host: {stdout}"
    );
}

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn dev_sandbox_serves_the_routes_and_runs_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let child = autopilot(dir.path())
        .args([
            "dev",
            "--sandbox",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--every",
            "1s",
        ])
        .env("OPS_TOKEN", "local-ops")
        .stdout(Stdio::piped())
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
    // Two scheduled runs print two summary lines.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut runs = 0;
    while runs < 2 && Instant::now() < deadline {
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains(" ok: ") && line.contains("new paid") {
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 2, "the scheduler printed a line per run");
    let sandbox_dir = dir.path().join("autopilot-sandbox");
    assert!(
        sandbox_dir.join("autopilot.db").exists(),
        "sandbox data kept apart"
    );
    assert!(
        sandbox_dir.join("guestlist.json").exists(),
        "buyers on the local guest list"
    );
    let invitations = std::fs::read_dir(sandbox_dir.join("outbox"))
        .unwrap()
        .count();
    assert!(invitations > 0, "invitations in the outbox");

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let health: serde_json::Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["last_successful_run"]["run_id"].is_string(),
        "{health}"
    );

    let denied = client.post(format!("{base}/poll")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let polled = client
        .post(format!("{base}/poll"))
        .bearer_auth("local-ops")
        .send()
        .await
        .unwrap();
    // 409 only if the scheduler happened to be mid-run; either way the answer is JSON.
    assert!(
        polled.status() == 200 || polled.status() == 409,
        "{}",
        polled.status()
    );
    let body: serde_json::Value = polled.json().await.unwrap();
    assert!(body.get("outcome").is_some() || body.get("error").is_some());

    let too_big = client
        .post(format!("{base}/poll"))
        .bearer_auth("local-ops")
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
}

#[tokio::test]
async fn discord_register_overwrites_once_and_then_reports_no_change() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let discord = MockServer::start().await;
    let commands = "/applications/1300000000000000000/commands";
    Mock::given(method("GET"))
        .and(path(commands))
        .and(header("authorization", "Bot bot-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .up_to_n_times(1)
        .mount(&discord)
        .await;
    Mock::given(method("PUT"))
        .and(path(commands))
        .and(header("authorization", "Bot bot-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .expect(1)
        .mount(&discord)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let register = |dir: &std::path::Path| {
        let mut command = autopilot(dir);
        command
            .args(["discord", "register"])
            .env("DISCORD_API_BASE", discord.uri())
            .env("DISCORD_APPLICATION_ID", "1300000000000000000")
            .env("DISCORD_BOT_TOKEN", "bot-token");
        command
    };
    let mut first = register(dir.path());
    let output = tokio::task::spawn_blocking(move || first.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("added     /event") && stdout.contains("added     /autopilot"),
        "{stdout}"
    );

    // Discord now returns what was registered (with its own extra fields): nothing to do.
    let put = discord
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "PUT")
        .unwrap();
    let mut registered: Vec<serde_json::Value> = serde_json::from_slice(&put.body).unwrap();
    for (n, command) in registered.iter_mut().enumerate() {
        command["id"] = format!("13000000000000000{n:02}").into();
        command["application_id"] = "1300000000000000000".into();
        command["version"] = "1".into();
        command["type"] = 1.into();
    }
    Mock::given(method("GET"))
        .and(path(commands))
        .respond_with(ResponseTemplate::new(200).set_body_json(registered))
        .mount(&discord)
        .await;
    let mut second = register(dir.path());
    let output = tokio::task::spawn_blocking(move || second.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("up to date"), "{stdout}");
    discord.verify().await; // still exactly one PUT
}

#[test]
fn discord_register_names_the_missing_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = autopilot(dir.path())
        .args(["discord", "register"])
        .env("DISCORD_APPLICATION_ID", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DISCORD_BOT_TOKEN"));
}
