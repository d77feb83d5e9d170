//! The receiver Lambda driven by an API Gateway v2 fixture event, against fakes of SQS and
//! Lambda: the batch goes on the queue sealed, the poller is woken, KKTIX gets its 200 —
//! and an unknown token is a 404 that touches nothing.

use std::sync::Arc;
use std::time::Duration;

use autopilot_core::api::Api;
use autopilot_core::app::{drain_trigger, intake_queue_for_receiver, receiver};
use autopilot_core::config::Settings;
use autopilot_core::contacts::{ContactKey, Sealer};
use autopilot_core::intake::{Envelope, LocalTrigger};
use serde_json::Value;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "0707070707070707070707070707070707070707070707070707070707070707";

fn fixture() -> Value {
    let path = format!(
        "{}/fixtures/apigw-v2-webhook.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

struct Aws {
    sqs: MockServer,
    lambda: MockServer,
    api: Api,
}

async fn deployed() -> Aws {
    let sqs = MockServer::start().await;
    let lambda = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "AmazonSQS.SendMessage"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"MessageId": "m"})),
        )
        .mount(&sqs)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/2015-03-31/functions/kktix-autopilot-kktix-poller/invocations",
        ))
        .and(header("x-amz-invocation-type", "Event"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&lambda)
        .await;
    // Exactly the environment the SAM template gives the receiver.
    let env = [
        (
            "KKTIX_WEBHOOK_TOKEN",
            "fixture-webhook-token-0123".to_owned(),
        ),
        ("CONTACT_KEY", KEY.to_owned()),
        (
            "INTAKE_QUEUE_URL",
            "https://sqs.ap-northeast-1.amazonaws.com/123456789012/intake".to_owned(),
        ),
        (
            "POLLER_FUNCTION_NAME",
            "kktix-autopilot-kktix-poller".to_owned(),
        ),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "secret".to_owned()),
        ("AWS_SESSION_TOKEN", "session".to_owned()),
        ("AWS_REGION", "ap-northeast-1".to_owned()),
        ("AWS_ENDPOINT_URL_SQS", sqs.uri()),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda.uri()),
    ];
    let settings = Settings::load(&|name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap();
    let queue = intake_queue_for_receiver(&settings).unwrap();
    let trigger = drain_trigger(&settings, Arc::new(LocalTrigger::default())).unwrap();
    let api = Api::new(None).with_receiver(Arc::new(receiver(&settings, queue, trigger)));
    Aws { sqs, lambda, api }
}

async fn call(api: &Api, event: &Value) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = receiver::handle(api, request).await;
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(response.body().as_ref()).unwrap(),
    )
}

#[tokio::test]
async fn a_batch_is_queued_sealed_the_poller_woken_and_kktix_answered_at_once() {
    let aws = deployed().await;
    let started = std::time::Instant::now();
    let (status, answer) = call(&aws.api, &fixture()).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], true);
    assert!(answer["batch"]
        .as_str()
        .unwrap()
        .starts_with("0000000000000042:"));

    let sent = aws.sqs.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1);
    let text = String::from_utf8_lossy(&sent[0].body).into_owned();
    for clear in ["xxx@gmail.com", "李xx", "0900000000"] {
        assert!(!text.contains(clear), "{clear} in the queued message");
    }
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    let envelope: Envelope = serde_json::from_str(body["MessageBody"].as_str().unwrap()).unwrap();
    let Envelope::KktixWebhook {
        batch_id,
        sealed_body,
        events,
        ..
    } = envelope
    else {
        panic!("a webhook envelope")
    };
    assert_eq!(events, vec!["pycontw-2026-individual".to_string()]);
    let sealer = Sealer::new(ContactKey::parse(KEY).unwrap(), None);
    let opened = sealer.open_bytes(&batch_id, &sealed_body.unwrap()).unwrap();
    let original: Value = serde_json::from_str(fixture()["body"].as_str().unwrap()).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&opened).unwrap(), original);
    assert_eq!(aws.lambda.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unknown_token_is_a_404_that_queues_nothing() {
    let aws = deployed().await;
    let mut event = fixture();
    event["rawPath"] = "/kktix/webhook/guessed-token-0123456789".into();
    event["requestContext"]["http"]["path"] = "/kktix/webhook/guessed-token-0123456789".into();
    event["pathParameters"]["token"] = "guessed-token-0123456789".into();
    let (status, answer) = call(&aws.api, &event).await;
    assert_eq!(status, 404, "{answer}");
    assert!(aws.sqs.received_requests().await.unwrap().is_empty());
    assert!(aws.lambda.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_queue_that_refuses_is_a_503_so_kktix_sends_the_batch_again() {
    let aws = deployed().await;
    aws.sqs.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&aws.sqs)
        .await;
    let (status, _) = call(&aws.api, &fixture()).await;
    assert_eq!(status, 503);
    assert!(aws.lambda.received_requests().await.unwrap().is_empty());
}
