//! The mailer Lambda driven by an API Gateway v2 fixture event, against the outbox provider.

use std::sync::Arc;

use autopilot_core::api::Api;
use autopilot_core::mail::{MailSettings, MailTemplate, Mailer, OutboxProvider};
use serde_json::Value;

fn fixture() -> Value {
    let path = format!("{}/fixtures/apigw-v2-mail.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn api(outbox: &std::path::Path) -> Api {
    let settings = MailSettings::default();
    let mailer = Mailer::new(
        Arc::new(OutboxProvider::new(outbox, &settings.from)),
        MailTemplate::from_settings(&settings).unwrap(),
    );
    Api::new(Some(autopilot_core::pii::Sensitive::new(
        "fixture-ops-token".into(),
    )))
    .with_mailer(Arc::new(mailer))
}

async fn call(api: &Api, event: &Value) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = mailer::handle(api, request).await;
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(response.body().as_ref()).unwrap(),
    )
}

#[tokio::test]
async fn mail_renders_and_sends_through_the_provider_once_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path());
    let (status, body) = call(&api, &fixture()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "sent");
    assert_eq!(body["results"][0]["provider"], "outbox");
    let files = || std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files(), 1);
    let eml = std::fs::read_to_string(dir.path().join("84296-84748358.eml")).unwrap();
    assert!(eml.contains("To: ") && eml.contains("xxx@gmail.com"));

    call(&api, &fixture()).await;
    assert_eq!(
        files(),
        1,
        "the outbox does not send the same invitation twice"
    );

    let mut forced = fixture();
    let mut body: Value = serde_json::from_str(forced["body"].as_str().unwrap()).unwrap();
    body["force"] = true.into();
    forced["body"] = body.to_string().into();
    let (_, answer) = call(&api, &forced).await;
    assert_eq!(answer["results"][0]["status"], "sent");
    assert_eq!(files(), 2, "an explicit resend is a new message");
}

#[tokio::test]
async fn a_malformed_body_is_a_400_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path());
    let mut event = fixture();
    event["body"] = "{\"invitations\": [".into();
    let (status, body) = call(&api, &event).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("not valid JSON"));
}
