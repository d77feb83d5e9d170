//! The handler from an SNS fixture event against a Discord webhook fake.

use autopilot_core::notify::DiscordWebhook;
use autopilot_core::upstream::HttpOptions;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FIXTURE: &str = include_str!("../fixtures/sns-alarm.json");

#[tokio::test]
async fn an_alarm_from_sns_is_posted_to_the_channel() {
    let discord = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/webhooks/1/token"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&discord)
        .await;
    let notifier = DiscordWebhook::new(
        &format!("{}/api/webhooks/1/token", discord.uri()),
        HttpOptions::default(),
    )
    .unwrap();
    let payload: Value = serde_json::from_str(FIXTURE).unwrap();
    let posted = alarm_notifier::handle_event(&notifier, &payload)
        .await
        .unwrap();
    assert_eq!(posted, 1);
    let body: Value =
        serde_json::from_slice(&discord.received_requests().await.unwrap()[0].body).unwrap();
    let content = body["content"].as_str().unwrap();
    assert!(
        content.contains("kktix-autopilot-no-successful-run"),
        "{content}"
    );
    assert!(content.contains("Threshold Crossed"));
}

#[tokio::test]
async fn a_failing_channel_fails_the_invocation_so_sns_retries() {
    let discord = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&discord)
        .await;
    let notifier = DiscordWebhook::new(
        &format!("{}/api/webhooks/1/token", discord.uri()),
        HttpOptions::default(),
    )
    .unwrap();
    let payload: Value = serde_json::from_str(FIXTURE).unwrap();
    assert!(alarm_notifier::handle_event(&notifier, &payload)
        .await
        .is_err());
    let not_sns = serde_json::json!({"hello": "world"});
    assert!(alarm_notifier::handle_event(&notifier, &not_sns)
        .await
        .is_err());
}
