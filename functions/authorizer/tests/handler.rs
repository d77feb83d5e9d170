//! The authorizer Lambda driven by API Gateway v2 fixture events, against a local
//! guest-list file standing in for Gather.

use std::sync::Arc;

use autopilot_core::access::{Authorizer, Entitlement, Entitlements, FileGuestList, Link};
use autopilot_core::api::Api;
use serde_json::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn api(guest_list: &std::path::Path) -> Api {
    let entitlements = Entitlements {
        entitlements: vec![Entitlement {
            affiliation: Some("PyCon TW 2026".into()),
            links: vec![Link {
                label: "YouTube".into(),
                url: "https://youtube.com/watch?v=private".into(),
            }],
            ..Entitlement::default()
        }],
        ..Entitlements::default()
    };
    let authorizer = Authorizer::new(Arc::new(FileGuestList::new(guest_list)), entitlements);
    Api::new(Some(autopilot_core::pii::Sensitive::new(
        "fixture-ops-token".into(),
    )))
    .with_authorizer(Arc::new(authorizer))
}

async fn call(api: &Api, fixture_name: &str) -> (u16, Value) {
    let request = lambda_http::request::from_str(&fixture(fixture_name)).unwrap();
    let response = authorizer::handle(api, request).await;
    let status = response.status().as_u16();
    let body = serde_json::from_slice(response.body().as_ref()).unwrap();
    (status, body)
}

#[tokio::test]
async fn authorize_grants_each_attendee_and_reports_a_bad_email() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("guestlist.json");
    let (status, body) = call(&api(&list), "apigw-v2-authorize.json").await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["attendee_id"], 84748358);
    assert_eq!(results[0]["status"], "granted");
    assert_eq!(results[0]["links"][0]["label"], "YouTube");
    assert_eq!(results[1]["status"], "failed");
    assert_eq!(results[1]["transient"], false);
    assert!(
        !body.to_string().contains("not-an-email"),
        "the reason never echoes the value"
    );

    let guests: Value = serde_json::from_str(&std::fs::read_to_string(&list).unwrap()).unwrap();
    assert_eq!(guests["xxx@gmail.com"]["affiliation"], "PyCon TW 2026");
    assert_eq!(guests["xxx@gmail.com"]["role"], "guest");
}

#[tokio::test]
async fn revoke_removes_the_guest_this_system_added() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("guestlist.json");
    let api = api(&list);
    call(&api, "apigw-v2-authorize.json").await;
    let (status, body) = call(&api, "apigw-v2-revoke.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "revoked");
    assert_eq!(body["results"][0]["removal"], "removed");
    let guests: Value = serde_json::from_str(&std::fs::read_to_string(&list).unwrap()).unwrap();
    assert!(guests.get("xxx@gmail.com").is_none());
}

#[tokio::test]
async fn requests_need_the_ops_token_and_a_well_formed_body() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir.path().join("guestlist.json"));
    let mut event: Value = serde_json::from_str(&fixture("apigw-v2-authorize.json")).unwrap();
    event["headers"]["authorization"] = "Bearer nope".into();
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert_eq!(authorizer::handle(&api, request).await.status(), 401);

    let mut event: Value = serde_json::from_str(&fixture("apigw-v2-authorize.json")).unwrap();
    event["body"] = r#"{"admissions":[{"event_id":"x@y.z"}]}"#.into();
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = authorizer::handle(&api, request).await;
    assert_eq!(response.status(), 400);
    let text = String::from_utf8_lossy(response.body().as_ref()).into_owned();
    // Flattened keys are checked as a whole, so the path stops at the entry.
    assert!(
        text.contains("admissions[0]") && !text.contains("x@y.z"),
        "{text}"
    );
}
