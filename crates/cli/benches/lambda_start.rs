//! Function start and size: `cargo bench -p autopilot-cli --bench lambda_start`.
//!
//! Starts the cargo-lambda `bootstrap`s in `target/lambda/<name>/` when `.ci/lambda-build.sh`
//! has built all four; otherwise first builds the four Lambda binaries with one
//! `cargo build --release -p <name>` each (separately, so each links only its own
//! autopilot-core features), into the same target directory as this benchmark.
//! Then, for each binary, it serves a fake **Lambda Runtime API** (and, for
//! discord-interactions, the Extensions API its internal extension registers with) on
//! `127.0.0.1:0`, starts the binary with `AWS_LAMBDA_RUNTIME_API` pointing at it and the
//! function's environment, hands it one API Gateway v2 event and measures process start →
//! the runtime's `POST …/invocation/{id}/response` (the first response), and process start →
//! the first `GET …/invocation/next` (end of init). Each measurement uses a fresh process,
//! working directory and SQLite file, and kills the process afterwards.
//!
//! Finally it reports the size of each release binary as built and with `strip --strip-all`
//! applied to a copy, and of `target/lambda/<name>/bootstrap` if `cargo lambda build` has
//! produced one.
//!
//! Every measurement must produce a response with the expected status (an `…/error` post,
//! an `init/error`, a timeout or a wrong status exits non-zero).

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autopilot_sandbox::{Sandbox, SandboxConfig};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Measurements per function.
const REPEATS: usize = 10;
/// How long one start may take before it counts as a failure.
const TIMEOUT: Duration = Duration::from_secs(20);
const OPS_TOKEN: &str = "bench-ops-token";
const DISCORD_PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const REQUEST_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";
const TRACE_ID: &str = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0";

/// One function under test.
struct Function {
    name: &'static str,
    /// The API Gateway v2 event it is invoked with.
    event: serde_json::Value,
    /// The `statusCode` its response must carry.
    status: u64,
    /// Registers an internal extension (Extensions API).
    extension: bool,
}

/// What the fake Runtime API saw, in order.
#[derive(Debug)]
enum Seen {
    /// The first `GET /runtime/invocation/next`: init is done.
    Next(Instant),
    /// `POST /runtime/invocation/{id}/response`.
    Response(Instant, Bytes),
    /// `POST …/error` or `POST /runtime/init/error`.
    Error(String),
    /// `POST /extension/register`.
    Registered,
}

#[derive(Clone)]
struct Fake {
    event: Arc<serde_json::Value>,
    function: &'static str,
    seen: mpsc::UnboundedSender<Seen>,
    /// Calls so far to the runtime's and the extension's `next`.
    next_calls: Arc<Mutex<(u32, u32)>>,
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
    let names = [
        "kktix-poller",
        "authorizer",
        "mailer",
        "discord-interactions",
    ];
    let release = release_dir()?;
    // The deployable artefacts when `.ci/lambda-build.sh` has built them (each function with
    // only its own features); otherwise per-function release builds.
    let lambda = target_dir(&release).map(|target| target.join("lambda"));
    let have_bootstraps = lambda.as_ref().is_some_and(|dir| {
        names
            .iter()
            .all(|name| dir.join(name).join("bootstrap").is_file())
    });
    if have_bootstraps {
        println!("Using the cargo-lambda bootstraps in target/lambda (from .ci/lambda-build.sh)");
    } else {
        build(&names, &release)?;
    }
    let binary_of = |name: &str| -> PathBuf {
        match &lambda {
            Some(dir) if dir.join(name).join("bootstrap").is_file() => {
                dir.join(name).join("bootstrap")
            }
            _ => release.join(name),
        }
    };
    let workspace = workspace_root();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    let sandbox = Sandbox::new(SandboxConfig::single_event(7, 10));
    let running = runtime
        .block_on(sandbox.serve(SocketAddr::from(([127, 0, 0, 1], 0))))
        .map_err(|e| format!("serving the sandbox: {e}"))?;

    let functions = [
        Function {
            name: "kktix-poller",
            event: read_json(
                &workspace.join("functions/kktix-poller/fixtures/apigw-v2-healthz.json"),
            )?,
            // A fresh store has no successful run yet: /healthz says so, still a response.
            status: 503,
            extension: false,
        },
        Function {
            name: "authorizer",
            event: gateway_event("POST", "/authorize", r#"{"admissions":[]}"#, &[]),
            status: 200,
            extension: false,
        },
        Function {
            name: "mailer",
            event: gateway_event("POST", "/mail", r#"{"invitations":[]}"#, &[]),
            status: 200,
            extension: false,
        },
        Function {
            name: "discord-interactions",
            event: gateway_event(
                "POST",
                "/discord/interactions",
                r#"{"type":1}"#,
                &[
                    ("x-signature-ed25519", &"0".repeat(128)),
                    ("x-signature-timestamp", "1795262400"),
                ],
            ),
            // A signature that does not verify: still a response.
            status: 401,
            extension: true,
        },
    ];

    let mut ok = true;
    let mut rows = Vec::new();
    for function in &functions {
        let binary = binary_of(function.name);
        println!();
        println!("## {} ({})", function.name, binary.display());
        let mut init = Vec::new();
        let mut first = Vec::new();
        for repeat in 1..=REPEATS {
            match runtime.block_on(measure(function, &binary, &running.base_url, &sandbox)) {
                Ok((init_ms, response_ms, status)) => {
                    let good = status == function.status;
                    ok &= good;
                    println!(
                        "{} #{repeat}: init done {init_ms:.1} ms, first response {response_ms:.1} ms, status {status} (expected {})",
                        if good { "ok  " } else { "FAIL" },
                        function.status
                    );
                    init.push(init_ms);
                    first.push(response_ms);
                }
                Err(error) => {
                    ok = false;
                    println!("FAIL #{repeat}: {error}");
                }
            }
        }
        rows.push((function.name, init, first));
    }
    if running.is_finished() {
        return Err("the sandbox server stopped during the benchmark".into());
    }

    println!();
    println!("| function | runs | start → init done ms median | start → first response ms median | start → first response ms max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, init, first) in &rows {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} |",
            first.len(),
            median(init),
            median(first),
            max(first)
        );
    }

    println!();
    println!("| function | release binary MB (as built) | stripped copy MB | `target/lambda/<name>/bootstrap` MB |");
    println!("|---|---:|---:|---:|");
    let scratch = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    for name in names {
        let binary = release.join(name);
        let built =
            size_mb(&binary).map_or_else(|| "not built".to_owned(), |mb| format!("{mb:.1}"));
        let stripped_path = scratch.path().join(name);
        let stripped = Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&stripped_path)
            .arg(&binary)
            .status()
            .ok()
            .filter(|status| status.success())
            .and_then(|_| size_mb(&stripped_path))
            .map_or_else(|| "n/a".to_owned(), |mb| format!("{mb:.1}"));
        let bootstrap = target_dir(&release)
            .map(|target| target.join("lambda").join(name).join("bootstrap"))
            .and_then(|path| size_mb(&path))
            .map_or_else(|| "not built".to_owned(), |mb| format!("{mb:.2}"));
        println!("| {name} | {built} | {stripped} | {bootstrap} |");
    }
    println!();
    println!(
        "Every start answered with the expected status: {}",
        if ok { "PASS" } else { "FAIL" }
    );
    Ok(ok)
}

/// The release directory (`…/target/release`): this benchmark runs as
/// `target/release/deps/lambda_start-<hash>`.
fn release_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?
        .to_path_buf())
}

/// Builds the functions' release binaries into `release`.
fn build(names: &[&str], release: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    // One invocation per function: together, cargo would unify autopilot-core's features and
    // every binary would link what any of them needs.
    for name in names {
        let mut command = Command::new(&cargo);
        command
            .current_dir(workspace_root())
            .args(["build", "--release", "-p", name]);
        // The same target directory as this benchmark, wherever it is.
        if let Some(target) = target_dir(release) {
            command.env("CARGO_TARGET_DIR", target);
        }
        println!("Building: {command:?}");
        let status = command
            .status()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build --release -p {name} failed: {status}"));
        }
    }
    println!("Built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir(release: &Path) -> Option<PathBuf> {
    release.parent().map(Path::to_path_buf)
}

fn size_mb(path: &Path) -> Option<f64> {
    std::fs::metadata(path)
        .ok()
        .map(|meta| meta.len() as f64 / 1e6)
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
}

/// An API Gateway v2 (HTTP API) event for `method path` with a JSON body and the ops token.
fn gateway_event(
    method: &str,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> serde_json::Value {
    let mut headers = serde_json::json!({
        "accept": "*/*",
        "authorization": format!("Bearer {OPS_TOKEN}"),
        "content-length": body.len().to_string(),
        "content-type": "application/json",
        "host": "a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com",
        "user-agent": "lambda-start-bench",
        "x-forwarded-proto": "https",
    });
    for (name, value) in extra {
        headers[*name] = serde_json::Value::from(*value);
    }
    serde_json::json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "lambda-start-bench"
            },
            "requestId": "BqZ2bHJ9tjMEPkR=",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "21/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795262400000u64
        },
        "isBase64Encoded": false,
        "body": body
    })
}

/// One start: (start → first `next` ms, start → first response ms, the response's status).
async fn measure(
    function: &Function,
    binary: &Path,
    kktix: &str,
    sandbox: &Sandbox,
) -> Result<(f64, f64, u64), String> {
    let (seen, mut observed) = mpsc::unbounded_channel();
    let fake = Fake {
        event: Arc::new(function.event.clone()),
        function: function.name,
        seen,
        next_calls: Arc::new(Mutex::new((0, 0))),
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("binding the fake Runtime API: {e}"))?;
    let api = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, runtime_api(fake)).await;
    });
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let log = File::create(dir.path().join("output.log")).map_err(|e| e.to_string())?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;

    let mut command = Command::new(binary);
    command
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function.name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/21/[$LATEST]0123456789abcdef0123456789abcdef",
        )
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", function.name),
        )
        .env("OPS_TOKEN", OPS_TOKEN)
        .env("KKTIX_API_BASE", kktix)
        .env("KKTIX_ACCESS_TOKEN", sandbox.access_token())
        .env(
            "STORE",
            format!("sqlite:{}", dir.path().join("autopilot.db").display()),
        )
        .env("DISCORD_PUBLIC_KEY", DISCORD_PUBLIC_KEY)
        .env("DISCORD_APPLICATION_ID", "1")
        .env("MAIL_PROVIDER", "outbox")
        .env("GATHER_API_BASE", "http://127.0.0.1:9")
        .env("GATHER_API_KEY", "bench-gather-key")
        .env("GATHER_SPACE_ID", "bench-space\\Bench")
        // As deployed, the poller reaches access and mail through the other functions
        // (its build has no mail providers); never called for /healthz.
        .env("AUTHORIZER_URL", "http://127.0.0.1:9")
        .env("MAILER_URL", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));

    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
    let mut child = Killed(child);

    let outcome = tokio::time::timeout(TIMEOUT, async {
        let mut init_ms = None;
        let mut registered = false;
        loop {
            let seen = tokio::select! {
                seen = observed.recv() => seen.ok_or("the fake Runtime API stopped")?,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    // A function that fails before asking for an event just exits.
                    if let Ok(Some(status)) = child.0.try_wait() {
                        return Err(format!("the process exited ({status}) without a response"));
                    }
                    continue;
                }
            };
            match seen {
                Seen::Registered => registered = true,
                Seen::Next(at) => init_ms = Some(ms(started, at)),
                Seen::Response(at, body) => {
                    let body: serde_json::Value = serde_json::from_slice(&body)
                        .map_err(|e| format!("the response is not JSON: {e}"))?;
                    let status = body
                        .get("statusCode")
                        .and_then(serde_json::Value::as_u64)
                        .ok_or_else(|| format!("the response has no statusCode: {body}"))?;
                    if function.extension && !registered {
                        return Err("the extension never registered".to_owned());
                    }
                    return Ok((init_ms.unwrap_or(f64::NAN), ms(started, at), status));
                }
                Seen::Error(error) => return Err(error),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no response within {TIMEOUT:?}")));

    child.kill();
    server.abort();
    if outcome.is_err() {
        let output = std::fs::read_to_string(dir.path().join("output.log")).unwrap_or_default();
        eprintln!("--- output of {} ---\n{output}---", function.name);
    }
    outcome
}

/// Kills and reaps the child when dropped (also on early returns).
struct Killed(Child);

impl Killed {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ms(started: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(started).as_secs_f64() * 1e3
}

fn runtime_api(fake: Fake) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .route("/2020-01-01/extension/register", post(register_extension))
        .route(
            "/2020-01-01/extension/event/next",
            get(next_extension_event),
        )
        .with_state(fake)
}

fn deadline_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    now + 30_000
}

fn arn(function: &str) -> String {
    format!("arn:aws:lambda:ap-northeast-1:123456789012:function:{function}")
}

/// The first call gets the event; later ones are held open (the process is killed).
async fn next_invocation(State(fake): State<Fake>) -> Response {
    let calls = {
        let mut calls = fake.next_calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.0 += 1;
        calls.0
    };
    if calls > 1 {
        std::future::pending::<()>().await;
    }
    let _ = fake.seen.send(Seen::Next(Instant::now()));
    (
        [
            ("Lambda-Runtime-Aws-Request-Id", REQUEST_ID.to_owned()),
            ("Lambda-Runtime-Deadline-Ms", deadline_ms().to_string()),
            ("Lambda-Runtime-Invoked-Function-Arn", arn(fake.function)),
            ("Lambda-Runtime-Trace-Id", TRACE_ID.to_owned()),
            ("Content-Type", "application/json".to_owned()),
        ],
        fake.event.to_string(),
    )
        .into_response()
}

async fn invocation_response(
    State(fake): State<Fake>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    if id != REQUEST_ID {
        let _ = fake
            .seen
            .send(Seen::Error(format!("response for unknown request {id}")));
        return StatusCode::BAD_REQUEST;
    }
    let _ = fake.seen.send(Seen::Response(at, body));
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(fake): State<Fake>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let _ = fake.seen.send(Seen::Error(format!(
        "invocation {id} failed: {}",
        String::from_utf8_lossy(&body)
    )));
    StatusCode::ACCEPTED
}

async fn init_error(State(fake): State<Fake>, body: Bytes) -> StatusCode {
    let _ = fake.seen.send(Seen::Error(format!(
        "init failed: {}",
        String::from_utf8_lossy(&body)
    )));
    StatusCode::ACCEPTED
}

async fn register_extension(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    if headers.get("Lambda-Extension-Name").is_none() {
        let _ = fake.seen.send(Seen::Error(
            "extension registered without Lambda-Extension-Name".into(),
        ));
        return StatusCode::BAD_REQUEST.into_response();
    }
    let _ = fake.seen.send(Seen::Registered);
    (
        [
            (
                "Lambda-Extension-Identifier",
                "c1d1e5e4-6a9e-4b6f-9f2c-0123456789ab",
            ),
            ("Content-Type", "application/json"),
        ],
        serde_json::json!({
            "functionName": fake.function,
            "functionVersion": "$LATEST",
            "handler": "bootstrap",
        })
        .to_string(),
    )
        .into_response()
}

/// The first call gets the INVOKE event; later ones are held open.
async fn next_extension_event(State(fake): State<Fake>) -> Response {
    let calls = {
        let mut calls = fake.next_calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.1 += 1;
        calls.1
    };
    if calls > 1 {
        std::future::pending::<()>().await;
    }
    (
        [("Content-Type", "application/json")],
        serde_json::json!({
            "eventType": "INVOKE",
            "deadlineMs": deadline_ms(),
            "requestId": REQUEST_ID,
            "invokedFunctionArn": arn(fake.function),
            "tracing": { "type": "X-Amzn-Trace-Id", "value": TRACE_ID },
        })
        .to_string(),
    )
        .into_response()
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
