//! The Lambda handler driven by fixture events kept in the repo: API Gateway HTTP API (v2)
//! requests and an EventBridge Scheduler invocation, against the KKTIX sandbox.

use std::net::SocketAddr;
use std::sync::Arc;

use autopilot_core::api::Api;
use autopilot_core::app::{build_reconciler, Stores};
use autopilot_core::config::Settings;
use autopilot_core::pii::Sensitive;
use autopilot_core::store::{Ledger, SqliteStore};
use autopilot_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use kktix_poller::{handle_event, Poller};
use serde_json::Value;

const OPS_TOKEN: &str = "fixture-ops-token";

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn poller() -> (Poller, Arc<SqliteStore>, RunningSandbox) {
    let sandbox = Sandbox::new(SandboxConfig::demo(7));
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
    let api = Api::new(Some(Sensitive::new(OPS_TOKEN.into()))).with_poller(reconciler.clone());
    (Poller { api, reconciler }, store, running)
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap()).unwrap()
}

#[test]
fn fixtures_are_api_gateway_v2_requests() {
    let path = format!("{}/fixtures/apigw-v2-poll.json", env!("CARGO_MANIFEST_DIR"));
    let request = lambda_http::request::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(request.uri().path(), "/poll");
}

#[tokio::test]
async fn post_poll_runs_one_reconcile() {
    let (poller, store, _sandbox) = poller().await;
    let response = handle_event(&poller, fixture("apigw-v2-poll.json"))
        .await
        .unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["headers"]["content-type"], "application/json");
    let summary = body(&response);
    assert_eq!(summary["outcome"], "ok");
    assert!(summary["new_paid"].as_u64().unwrap() > 0);
    assert!(store.last_run(true).await.unwrap().is_some());
}

#[tokio::test]
async fn post_poll_without_the_ops_token_is_401_and_runs_nothing() {
    let (poller, store, _sandbox) = poller().await;
    let mut event = fixture("apigw-v2-poll.json");
    event["headers"]["authorization"] = "Bearer wrong".into();
    let response = handle_event(&poller, event.clone()).await.unwrap();
    assert_eq!(response["statusCode"], 401);
    assert_eq!(body(&response)["error"], "invalid ops token");

    event["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    let response = handle_event(&poller, event).await.unwrap();
    assert_eq!(response["statusCode"], 401);
    assert!(
        store.last_run(false).await.unwrap().is_none(),
        "no run happened"
    );
}

#[tokio::test]
async fn healthz_reports_the_last_successful_run() {
    let (poller, _store, _sandbox) = poller().await;
    let before = handle_event(&poller, fixture("apigw-v2-healthz.json"))
        .await
        .unwrap();
    // No run yet: an uptime monitor sees 503 until the first scheduled run succeeds.
    assert_eq!(before["statusCode"], 503);
    assert_eq!(body(&before)["status"], "stale");
    assert!(body(&before)["last_successful_run"].is_null());

    handle_event(&poller, fixture("scheduler-event.json"))
        .await
        .unwrap();
    let after = handle_event(&poller, fixture("apigw-v2-healthz.json"))
        .await
        .unwrap();
    let health = body(&after);
    assert_eq!(health["status"], "ok");
    assert!(health["last_successful_run"]["run_id"].is_string());
    assert!(
        health["last_successful_run"].get("new_paid").is_none(),
        "no sales figures in public"
    );
}

#[tokio::test]
async fn a_scheduler_invocation_runs_one_reconcile() {
    let (poller, store, _sandbox) = poller().await;
    let summary = handle_event(&poller, fixture("scheduler-event.json"))
        .await
        .unwrap();
    assert_eq!(summary["outcome"], "ok");
    assert!(summary["new_paid"].as_u64().unwrap() > 0);
    let recorded = store.last_run(true).await.unwrap().unwrap();
    assert_eq!(summary["run_id"], recorded.run_id.as_str());
}

#[tokio::test]
async fn a_failed_scheduled_run_fails_the_invocation() {
    let (poller, _store, running) = poller().await;
    drop(running); // KKTIX is gone
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let outcome = handle_event(&poller, fixture("scheduler-event.json")).await;
    let error = outcome.unwrap_err().to_string();
    assert!(error.contains("failed"), "{error}");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_4xx() {
    let (poller, _store, _sandbox) = poller().await;
    let mut event = fixture("apigw-v2-healthz.json");
    event["rawPath"] = "/nope".into();
    event["requestContext"]["http"]["path"] = "/nope".into();
    let response = handle_event(&poller, event).await.unwrap();
    assert_eq!(response["statusCode"], 404);

    let mut event = fixture("apigw-v2-healthz.json");
    event["requestContext"]["http"]["method"] = "DELETE".into();
    let response = handle_event(&poller, event).await.unwrap();
    assert_eq!(response["statusCode"], 405);
}

#[tokio::test]
async fn the_receivers_wake_up_drains_the_queue_and_reads_the_events_it_names() {
    use autopilot_core::intake::{Envelope, IntakeQueue};
    let (poller, store, _sandbox) = poller().await;
    let empty = handle_event(&poller, fixture("receiver-drain-event.json"))
        .await
        .unwrap();
    assert_eq!(empty["drained"], 0, "nothing queued, no run");
    assert!(store.last_run(false).await.unwrap().is_none());

    // A webhook batch accepted without CONTACT_KEY is a trigger for the API events it names.
    store
        .push(&Envelope::KktixWebhook {
            batch_id: "1:abcd".into(),
            received_at: chrono::Utc::now(),
            sealed_body: None,
            events: vec!["pycontw-2026-individual".into()],
        })
        .await
        .unwrap();
    let summary = handle_event(&poller, fixture("receiver-drain-event.json"))
        .await
        .unwrap();
    assert_eq!(summary["kind"], "webhook", "{summary}");
    assert_eq!(summary["events"], 1);
    assert!(summary["new_paid"].as_u64().unwrap() > 0);
    assert_eq!(store.intake_queue_len().await.unwrap(), 0);
}
