//! The AWS clients against fakes that speak the AWS JSON protocols: SQS (the intake queue),
//! Lambda's asynchronous Invoke (waking the poller) and Secrets Manager. Requests are signed;
//! throttling (SQS's 403 `RequestThrottled`, 429, 5xx) is retried; other errors are named.

use std::time::Duration;

use autopilot_core::aws::{
    AwsClient, AwsCredentials, DrainEvent, LambdaTrigger, SecretsManager, SqsQueue,
};
use autopilot_core::intake::{Envelope, IntakeQueue};
use autopilot_core::pii::Sensitive;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const QUEUE: &str = "https://sqs.ap-northeast-1.amazonaws.com/123456789012/kktix-autopilot-intake";

fn client() -> AwsClient {
    AwsClient::new(
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Sensitive::new("secret".into()),
            session_token: Some(Sensitive::new("session".into())),
            region: "ap-northeast-1".into(),
        },
        Duration::from_secs(2),
    )
    .unwrap()
}

fn queue(server: &MockServer) -> SqsQueue {
    SqsQueue::new(
        client(),
        server.uri().parse().unwrap(),
        QUEUE,
        Duration::from_secs(360),
    )
}

fn envelope() -> Envelope {
    Envelope::KktixWebhook {
        batch_id: "7:abcd".into(),
        received_at: Utc.with_ymd_and_hms(2026, 4, 18, 6, 0, 54).unwrap(),
        sealed_body: Some("v1.0123abcd.sealed".into()),
        events: vec!["pycontw-2026".into()],
    }
}

fn sqs(target: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", target))
        .and(header("content-type", "application/x-amz-json-1.0"))
        .and(header("x-amz-security-token", "session"))
        .and(header_exists("authorization"))
        .and(header_exists("x-amz-date"))
}

#[tokio::test]
async fn sqs_send_receive_and_delete_in_the_json_protocol() {
    let server = MockServer::start().await;
    sqs("AmazonSQS.SendMessage")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "MD5OfMessageBody": "x", "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let queue = queue(&server);
    queue.push(&envelope()).await.unwrap();
    let sent = &server.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["QueueUrl"], QUEUE);
    let message: Envelope = serde_json::from_str(body["MessageBody"].as_str().unwrap()).unwrap();
    assert_eq!(message, envelope());
    let authorization = sent.headers.get("authorization").unwrap().to_str().unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && authorization.contains("/ap-northeast-1/sqs/aws4_request")
            && authorization.contains(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
            ),
        "{authorization}"
    );

    sqs("AmazonSQS.ReceiveMessage")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"Messages": [{
                "MessageId": "m1", "ReceiptHandle": "AQEB-receipt", "MD5OfBody": "x",
                "Body": serde_json::to_string(&envelope()).unwrap(),
                "Attributes": {"ApproximateReceiveCount": "3"}
            }]})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    sqs("AmazonSQS.ReceiveMessage")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let messages = queue.pull(25).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].receipt, "AQEB-receipt");
    assert_eq!(messages[0].receive_count, 3);
    assert_eq!(messages[0].envelope().unwrap(), envelope());
    let receive = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.headers.get("x-amz-target").unwrap() == "AmazonSQS.ReceiveMessage")
        .unwrap();
    let body: Value = serde_json::from_slice(&receive.body).unwrap();
    assert_eq!(body["MaxNumberOfMessages"], 10, "SQS hands out at most 10");
    assert_eq!(body["VisibilityTimeout"], 360);
    assert!(
        queue.pull(10).await.unwrap().is_empty(),
        "no Messages member"
    );

    sqs("AmazonSQS.DeleteMessage")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    queue.ack("AQEB-receipt").await.unwrap();
}

#[tokio::test]
async fn sqs_throttling_is_retried_and_other_errors_are_named() {
    let server = MockServer::start().await;
    // SQS throttles with 403 and a code; a second attempt goes through.
    sqs("AmazonSQS.SendMessage")
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-amzn-query-error", "RequestThrottled;Sender")
                .set_body_json(json!({"__type": "com.amazonaws.sqs#RequestThrottled", "message": "Rate exceeded"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    sqs("AmazonSQS.SendMessage")
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    sqs("AmazonSQS.SendMessage")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"MessageId": "m"})))
        .mount(&server)
        .await;
    queue(&server).push(&envelope()).await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 3);

    let server = MockServer::start().await;
    sqs("AmazonSQS.SendMessage")
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "The specified queue does not exist."}),
        ))
        .mount(&server)
        .await;
    let error = queue(&server).push(&envelope()).await.unwrap_err();
    assert!(
        error.to_string().contains("SQS answered HTTP 400"),
        "{error}"
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "not retried"
    );

    let server = MockServer::start().await;
    sqs("AmazonSQS.SendMessage")
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"__type": "com.amazonaws.sqs#InvalidSecurity", "message": "denied"}),
        ))
        .mount(&server)
        .await;
    let error = queue(&server).push(&envelope()).await.unwrap_err();
    assert!(
        error.to_string().contains("rejected our credentials"),
        "{error}"
    );

    let server = MockServer::start().await;
    sqs("AmazonSQS.ReceiveMessage")
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>not json</html>"))
        .mount(&server)
        .await;
    assert!(queue(&server).pull(10).await.is_err());
}

#[tokio::test]
async fn the_poller_is_woken_with_an_asynchronous_invoke() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/2015-03-31/functions/kktix-autopilot-kktix-poller/invocations",
        ))
        .and(header("x-amz-invocation-type", "Event"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let trigger = LambdaTrigger::new(
        client(),
        server.uri().parse().unwrap(),
        "kktix-autopilot-kktix-poller",
    );
    trigger.invoke().await.unwrap();
    let request = &server.received_requests().await.unwrap()[0];
    let payload: Value = serde_json::from_slice(&request.body).unwrap();
    assert!(DrainEvent::matches(&payload), "{payload}");
    let authorization = request
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        authorization.contains("/lambda/aws4_request"),
        "{authorization}"
    );

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-amzn-errortype", "TooManyRequestsException")
                .set_body_json(json!({"Type": "User", "message": "Rate exceeded", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"})),
        )
        .mount(&server)
        .await;
    let trigger = LambdaTrigger::new(client(), server.uri().parse().unwrap(), "poller");
    assert!(trigger.invoke().await.is_err());
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        3,
        "retried, then left to the schedule"
    );
}

#[tokio::test]
async fn secrets_are_read_with_get_secret_value() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
        .and(header("content-type", "application/x-amz-json-1.1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:ops-AbCdEf",
            "Name": "kktix-autopilot/ops-token", "SecretString": "s3cret", "VersionId": "v1",
            "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.7e9
        })))
        .mount(&server)
        .await;
    let secrets = SecretsManager::new(client(), server.uri().parse().unwrap());
    let value = secrets.get("kktix-autopilot/ops-token").await.unwrap();
    assert_eq!(value.expose(), "s3cret");
    let body: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(body, json!({"SecretId": "kktix-autopilot/ops-token"}));

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the specified secret."
        })))
        .mount(&server)
        .await;
    let secrets = SecretsManager::new(client(), server.uri().parse().unwrap());
    let error = secrets.get("missing").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Secrets Manager answered HTTP 400"),
        "{error}"
    );
}

/// A Secrets Manager fake holding `secrets` (name → SecretString); others are not found.
async fn secrets_server(secrets: &[(&str, &str)]) -> MockServer {
    let server = MockServer::start().await;
    for (name, value) in secrets {
        Mock::given(method("POST"))
            .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
            .and(wiremock::matchers::body_json(json!({"SecretId": name})))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"Name": name, "SecretString": value})),
            )
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "__type": "ResourceNotFoundException",
            "message": "Secrets Manager can't find the specified secret."
        })))
        .mount(&server)
        .await;
    server
}

fn lambda_env<'a>(
    server: &'a MockServer,
    vars: &'a [(&'a str, &'a str)],
) -> impl Fn(&str) -> Option<String> + 'a {
    move |name: &str| {
        let fixed = [
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session"),
            ("AWS_REGION", "ap-northeast-1"),
        ];
        if name == "AWS_ENDPOINT_URL_SECRETS_MANAGER" {
            return Some(server.uri());
        }
        fixed
            .iter()
            .chain(vars.iter())
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

#[tokio::test]
async fn settings_read_each_named_secret_at_start() {
    use autopilot_core::config::Settings;
    let server = secrets_server(&[
        ("autopilot/ops-token", "ops-s3cret"),
        (
            "autopilot/shared",
            r#"{"mailgun": "key-mg", "gather": "key-g"}"#,
        ),
    ])
    .await;
    let vars = [
        ("OPS_TOKEN_SECRET", "autopilot/ops-token"),
        ("MAILGUN_API_KEY_SECRET", "autopilot/shared#mailgun"),
    ];
    let settings = Settings::load_with_secrets(&lambda_env(&server, &vars))
        .await
        .unwrap();
    assert_eq!(settings.ops_token.unwrap().expose(), "ops-s3cret");
    assert_eq!(settings.mailgun_api_key.unwrap().expose(), "key-mg");
    assert!(
        settings.gather_api_key.is_none(),
        "only what is named is read"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // A local run names none and makes no call.
    let server = secrets_server(&[]).await;
    let settings = Settings::load_with_secrets(&lambda_env(&server, &[("OPS_TOKEN", "plain")]))
        .await
        .unwrap();
    assert_eq!(settings.ops_token.unwrap().expose(), "plain");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_secret_that_cannot_be_had_is_a_clear_start_error() {
    use autopilot_core::config::Settings;
    let server = secrets_server(&[("autopilot/shared", r#"{"mailgun": "key-mg"}"#)]).await;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("OPS_TOKEN_SECRET", "autopilot/missing")],
            "OPS_TOKEN_SECRET: the secret \"autopilot/missing\" cannot be read",
        ),
        (
            &[("GATHER_API_KEY_SECRET", "autopilot/shared#gather")],
            "GATHER_API_KEY_SECRET: the secret \"autopilot/shared\" has no key \"gather\"",
        ),
        (
            &[("OPS_TOKEN_SECRET", "autopilot/x"), ("OPS_TOKEN", "plain")],
            "OPS_TOKEN_SECRET: set OPS_TOKEN or OPS_TOKEN_SECRET, not both",
        ),
        (
            &[("CONTACT_KEY_SECRET", "autopilot/shared#mailgun")],
            "CONTACT_KEY is invalid",
        ),
        (&[("KLAVIYO_API_KEY_SECRET", "autopilot/shared")], ""),
    ];
    for (vars, expected) in cases {
        let result = Settings::load_with_secrets(&lambda_env(&server, vars)).await;
        if expected.is_empty() {
            // A whole JSON secret is a fine string value.
            assert!(result.is_ok());
            continue;
        }
        let error = result.unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains("key-mg"), "no value in the error: {error}");
    }

    // No credentials (not on Lambda): said so, naming the variable.
    let error = Settings::load_with_secrets(&|name: &str| {
        (name == "OPS_TOKEN_SECRET").then(|| "autopilot/ops-token".to_owned())
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with(
            "OPS_TOKEN_SECRET: names a Secrets Manager secret, but there are no AWS credentials"
        ),
        "{error}"
    );
}
