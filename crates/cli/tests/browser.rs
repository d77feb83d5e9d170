//! The attendee page in a real browser: `autopilot dev --sandbox` serves it, headless
//! Chromium (Debian's, driven through ChromeDriver's WebDriver protocol by `fantoccini`)
//! opens it, fills the form, submits it and reads the answer, in both languages — and the
//! buyer's invitation lands in the outbox again. Screenshots go to `AUTOPILOT_SCREENSHOTS`
//! (a folder) when it is set: `docs/screenshots/` holds the README's.
//!
//! Ignored by a plain `cargo test`: it needs `/usr/bin/chromium` and `chromedriver`
//! (packages `chromium` and `chromium-driver`), which `.ci/run` installs before running it
//! with `--ignored`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

fn wait_for_port(port: u16, deadline: Duration) {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on port {port}");
}

/// The local stack on the sandbox, after its first run has mailed the first invitations.
fn start_dev(dir: &Path, port: u16) -> Killed {
    let mut child = Command::new(env!("CARGO_BIN_EXE_autopilot"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPS_TOKEN", "local-ops")
        .args([
            "dev",
            "--sandbox",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--every",
            "1h",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let dev = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the first run did not finish");
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            if line.contains(" ok: ") && line.contains("new paid") {
                break;
            }
        }
    }
    // The rest of the output is read and dropped so the child never blocks on a full pipe.
    std::thread::spawn(move || while received.recv().is_ok() {});
    wait_for_port(port, Duration::from_secs(10));
    dev
}

/// One invited buyer: the outbox file's stem (`EVENT-ATTENDEE`) and its `To:` address.
fn invited_buyer(outbox: &Path) -> (String, String) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(outbox)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".eml") && !name.contains("-resend-") && !name.starts_with('.')
        })
        .collect();
    files.sort();
    let file = files.first().expect("the first run mailed someone");
    let text = std::fs::read_to_string(file).unwrap();
    let to = text
        .lines()
        .find_map(|line| line.strip_prefix("To: "))
        .expect("a To: header");
    let address = match (to.rfind('<'), to.rfind('>')) {
        (Some(start), Some(end)) if start < end => to[start + 1..end].to_owned(),
        _ => to.trim().to_owned(),
    };
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    (stem, address)
}

fn chromium_capabilities(profile: &Path) -> serde_json::Map<String, serde_json::Value> {
    let mut options = json!({
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // A phone-sized screen.
            "--window-size=390,844",
            format!("--user-data-dir={}", profile.display()),
        ]
    });
    if Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".into(), options);
    capabilities
}

async fn save_screenshot(client: &fantoccini::Client, name: &str, fallback: &Path) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = std::env::var_os("AUTOPILOT_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| fallback.to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Types `address` into the form, submits it, and answers the status line of the page that
/// comes back under `answer_heading`.
async fn submit(client: &fantoccini::Client, address: &str, answer_heading: &str) -> String {
    client
        .find(Locator::Css("#email"))
        .await
        .unwrap()
        .send_keys(address)
        .await
        .unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    heading(client, answer_heading).await;
    client
        .find(Locator::Css("[role=status]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn heading(client: &fantoccini::Client, text: &str) {
    let xpath = format!("//h1[normalize-space()='{text}']");
    if let Err(error) = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(&xpath))
        .await
    {
        let source = client.source().await.unwrap_or_default();
        panic!("no heading {text:?} ({error}); the page is:\n{source}");
    }
}

#[tokio::test]
#[ignore = "needs Debian's chromium and chromium-driver: .ci/run installs them and runs it with --ignored"]
async fn a_buyer_asks_the_page_in_a_real_browser_and_gets_the_invitation_again() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _dev = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || start_dev(&dir, port)
    })
    .await
    .unwrap();
    let outbox = dir.path().join("autopilot-sandbox/outbox");
    let (stem, address) = invited_buyer(&outbox);

    let driver_port = free_port();
    let _driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian: chromium-driver) on PATH"),
    );
    wait_for_port(driver_port, Duration::from_secs(15));
    let profile = dir.path().join("chromium-profile");
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(chromium_capabilities(&profile))
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a Chromium session");
    let page = format!("http://127.0.0.1:{port}/invitation");

    // English: the buyer's own address, typed with a capital and a trailing space.
    client.goto(&format!("{page}?lang=en")).await.unwrap();
    heading(&client, "Find my invitation").await;
    let label = client
        .find(Locator::Css("label[for=email]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(label, "Email address");
    save_screenshot(&client, "invitation-en.png", dir.path()).await;
    let mut typed = address.clone();
    typed[..1].make_ascii_uppercase();
    typed.push(' ');
    let answer_en = submit(&client, &typed, "Check your inbox").await;
    assert!(
        answer_en.contains("If this address holds a valid ticket"),
        "{answer_en}"
    );
    save_screenshot(&client, "invitation-en-answer.png", dir.path()).await;

    // 中文: the switch link, then an address that holds nothing — the same answer.
    client.goto(&format!("{page}?lang=en")).await.unwrap();
    client
        .find(Locator::LinkText("中文"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    heading(&client, "找回參加資訊").await;
    save_screenshot(&client, "invitation-zh-TW.png", dir.path()).await;
    let answer_zh = submit(&client, "nobody-here@example.net", "請查看您的信箱").await;
    assert!(
        answer_zh.contains("如果這個地址持有有效的票券"),
        "{answer_zh}"
    );
    save_screenshot(&client, "invitation-zh-TW-answer.png", dir.path()).await;
    client.close().await.unwrap();

    // The poller drained the request: the buyer's invitation is in the outbox again.
    let resent = outbox.join(format!("{stem}-resend-1.eml"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !resent.exists() {
        assert!(
            Instant::now() < deadline,
            "no resend of {stem} in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resends = std::fs::read_dir(&outbox)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("-resend-"))
        .count();
    assert_eq!(resends, 1, "only the buyer's invitation went out again");
}
