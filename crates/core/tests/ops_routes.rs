//! The operators' routes over the whole stack: ops-token auth, `GET /events…` in JSON and CSV,
//! and hostile input answered 4xx with no side effect.

use std::net::SocketAddr;
use std::sync::Arc;

use autopilot_core::api::{Api, HttpRequest, HttpResponse};
use autopilot_core::app::{build_reconciler, Stores};
use autopilot_core::config::Settings;
use autopilot_core::pii::Sensitive;
use autopilot_core::reconcile::RunSummary;
use autopilot_core::report::ReportSettings;
use autopilot_core::store::{Ledger, SqliteStore};
use autopilot_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use bytes::Bytes;
use serde_json::Value;

const TOKEN: &str = "ops-secret";

async fn stack() -> (Api, Arc<SqliteStore>, RunningSandbox, String) {
    let mut config = SandboxConfig::demo(5);
    config.purchases_per_step = 0.0;
    let sandbox = Sandbox::new(config);
    let running = sandbox
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let stores = Stores::sqlite(store.clone());
    let settings = Settings::load(&|_| None).unwrap();
    let reconciler = Arc::new(
        build_reconciler(
            &settings,
            &stores,
            &running.base_url,
            Sensitive::new(sandbox.access_token()),
        )
        .unwrap(),
    );
    reconciler.run().await;
    let slug = sandbox
        .events()
        .into_iter()
        .find(|e| !e.ended && e.name.contains("Individual"))
        .unwrap()
        .slug;
    let api = Api::new(Some(Sensitive::new(TOKEN.into())))
        .with_report_settings(ReportSettings::default(), 30)
        .with_poller(reconciler);
    (api, store, running, slug)
}

fn get(path: &str, token: Option<&str>) -> HttpRequest {
    let mut builder = http::Request::builder().method("GET").uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Bytes::new()).unwrap()
}

fn body(response: &HttpResponse) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

#[tokio::test]
async fn ops_routes_need_the_token_and_answer_json_errors() {
    let (api, _, _sandbox, _) = stack().await;
    for token in [None, Some("wrong"), Some("")] {
        let response = api.handle(get("/events", token)).await;
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert!(body(&response)["error"].is_string());
    }
}

#[tokio::test]
async fn events_status_and_report_in_json_and_csv() {
    let (api, _, _sandbox, slug) = stack().await;
    let events = body(&api.handle(get("/events", Some(TOKEN))).await);
    let listed = events["events"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "the three registration events");
    assert!(listed
        .iter()
        .all(|e| e["state"] == "on_sale" && e["sold"].as_u64().unwrap() > 0));

    let status = body(
        &api.handle(get(&format!("/events/{slug}/status"), Some(TOKEN)))
            .await,
    );
    let sold: u64 = status["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["sold"].as_u64().unwrap())
        .sum();
    assert_eq!(sold, status["sold"].as_u64().unwrap());
    assert_eq!(status["currency"], "TWD");

    let path = format!("/events/{slug}/report?from=2026-01-01&to=2026-03-31");
    let report = body(&api.handle(get(&path, Some(TOKEN))).await);
    assert_eq!(report["days"].as_array().unwrap().len(), 90);
    assert_eq!(report["timezone"], "Asia/Taipei");

    let csv = api
        .handle(get(&format!("{path}&format=csv"), Some(TOKEN)))
        .await;
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = String::from_utf8(csv.body().to_vec()).unwrap();
    assert!(
        text.starts_with("ticket,2026-01-01,") && text.lines().next().unwrap().ends_with(",total")
    );
    assert!(text.lines().last().unwrap().starts_with("total,"));
}

#[tokio::test]
async fn hostile_slugs_and_dates_are_4xx_with_no_side_effect() {
    let (api, store, _sandbox, slug) = stack().await;
    let ledger_before = store.ledger_len().await.unwrap();
    let runs_before = store.recent_runs(100).await.unwrap().len();
    let cases = [
        ("/events/x'%20OR%201=1;--/status", 400),
        ("/events/..%2F..%2Fetc%2Fpasswd/status", 400),
        ("/events/%2e%2e/status", 400),
        ("/events/no-such-event/status", 404),
        (
            &*format!("/events/{slug}/report?from=2026-03-01'%3B%20DROP%20TABLE%20x&to=2026-03-02"),
            400,
        ),
        (
            &*format!("/events/{slug}/report?from=2026-03-09&to=2026-03-01"),
            400,
        ),
        (
            &*format!("/events/{slug}/report?from=2026-01-01&to=2026-12-31"),
            400,
        ),
        (&*format!("/events/{slug}/report?to=2026-03-01"), 400),
        (
            &*format!("/events/{slug}/report?from=2026-03-01&to=2026-03-02&format=xlsx"),
            400,
        ),
    ];
    for (path, status) in cases {
        let response = api.handle(get(path, Some(TOKEN))).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        let message = body(&response)["error"].as_str().unwrap().to_owned();
        assert!(
            message.len() < 200 && !message.contains("DROP"),
            "{path}: {message}"
        );
    }
    let oversized = http::Request::builder()
        .method("POST")
        .uri("/poll")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Bytes::from(vec![b'{'; 2 * 1024 * 1024]))
        .unwrap();
    assert_eq!(api.handle(oversized).await.status(), 413);
    let malformed = http::Request::builder()
        .method("POST")
        .uri("/poll")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Bytes::from_static(b"{\"resend\": 5"))
        .unwrap();
    assert_eq!(api.handle(malformed).await.status(), 400);
    assert_eq!(
        store.ledger_len().await.unwrap(),
        ledger_before,
        "no side effect"
    );
    assert_eq!(
        store.recent_runs(100).await.unwrap().len(),
        runs_before,
        "no run started"
    );
}

fn head(path: &str) -> HttpRequest {
    http::Request::builder()
        .method("HEAD")
        .uri(path)
        .body(Bytes::new())
        .unwrap()
}

/// A recorded run of `kind` that started `minutes_ago`.
fn run(run_id: &str, kind: &str, outcome: &str, minutes_ago: i64) -> RunSummary {
    serde_json::from_value(serde_json::json!({
        "run_id": run_id, "kind": kind,
        "started_at": chrono::Utc::now() - chrono::Duration::minutes(minutes_ago),
        "duration_ms": 12, "outcome": outcome, "events": 1, "live": 2, "fetched": 0,
        "new_paid": 0, "pending": 0, "refunded": 0, "expired": 0, "skipped": [],
        "errors": [], "warnings": [], "upstream_requests": 3, "new_by_ticket": {}
    }))
    .unwrap()
}

#[tokio::test]
async fn healthz_goes_503_when_the_schedule_stops_and_answers_head() {
    let (api, store, _sandbox, _) = stack().await;
    let response = api.handle(get("/healthz", None)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(body(&response)["status"], "ok");
    let response = api.handle(head("/healthz")).await;
    assert_eq!(response.status(), 200);
    assert!(response.body().is_empty());

    // A fresh store: nothing has run yet.
    let empty = Arc::new(SqliteStore::in_memory().unwrap());
    let settings = Settings::load(&|_| None).unwrap();
    let reconciler = Arc::new(
        build_reconciler(
            &settings,
            &Stores::sqlite(empty.clone()),
            "http://127.0.0.1:9",
            Sensitive::new("unused".into()),
        )
        .unwrap(),
    );
    let fresh = Api::new(None).with_poller(reconciler.clone());
    let response = fresh.handle(get("/healthz", None)).await;
    assert_eq!(response.status(), 503);
    assert_eq!(body(&response)["status"], "stale");
    assert_eq!(fresh.handle(head("/healthz")).await.status(), 503);

    // The schedule stopped 20 minutes ago; an import since does not count, a failed run
    // neither; a partial run does (it ran).
    empty
        .record_run(&run("old", "poll", "ok", 20))
        .await
        .unwrap();
    empty
        .record_run(&run("imp", "import", "ok", 1))
        .await
        .unwrap();
    empty
        .record_run(&run("bad", "poll", "failed", 1))
        .await
        .unwrap();
    let response = fresh.handle(get("/healthz", None)).await;
    assert_eq!(response.status(), 503);
    let answer = body(&response);
    assert_eq!(answer["last_successful_run"]["run_id"], "old");
    assert_eq!(answer["last_run"]["run_id"], "bad");
    assert!(answer["reason"].as_str().unwrap().contains("stale_after"));
    let lenient = Api::new(None)
        .with_poller(reconciler.clone())
        .with_stale_after(std::time::Duration::from_secs(3600));
    assert_eq!(lenient.handle(get("/healthz", None)).await.status(), 200);
    empty
        .record_run(&run("part", "poll", "partial", 0))
        .await
        .unwrap();
    assert_eq!(fresh.handle(get("/healthz", None)).await.status(), 200);
    let _ = store;
}
