//! Hostile input at `POST /discord/interactions`: whatever arrives unsigned or badly signed is
//! a 401 — never accepted, never a 5xx, never a panic.

use std::sync::Arc;

use autopilot_core::api::{Api, HttpRequest};
use autopilot_core::discord::bot::{BotSettings, DiscordBot, SpawnDeferrer};
use autopilot_core::discord::rest::DiscordApi;
use autopilot_core::report::ReportSettings;
use autopilot_core::selection::CategoryRules;
use autopilot_core::store::SqliteStore;
use autopilot_core::upstream::HttpOptions;
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;

fn api(key: &SigningKey) -> Api {
    let rest = DiscordApi::new("http://127.0.0.1:9", "1", None, HttpOptions::default()).unwrap();
    let bot = DiscordBot::new(
        key.verifying_key(),
        Arc::new(SqliteStore::in_memory().unwrap()),
        CategoryRules::default(),
        ReportSettings::default(),
        BotSettings::default(),
        None,
        Arc::new(rest),
        Arc::new(SpawnDeferrer),
    );
    Api::new(None).with_discord(Arc::new(bot))
}

fn request(signature: Option<&str>, timestamp: Option<&str>, body: Vec<u8>) -> HttpRequest {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri("/discord/interactions");
    if let Some(signature) = signature {
        builder = builder.header("x-signature-ed25519", signature);
    }
    if let Some(timestamp) = timestamp {
        builder = builder.header("x-signature-timestamp", timestamp);
    }
    builder.body(Bytes::from(body)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn forged_requests_are_always_401(
        signature in proptest::option::of("[0-9a-fA-Fx]{0,140}"),
        timestamp in proptest::option::of("[0-9-]{0,12}"),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let api = api(&key);
        let response = runtime.block_on(api.handle(request(signature.as_deref(), timestamp.as_deref(), body)));
        prop_assert_eq!(response.status().as_u16(), 401);
    }

    #[test]
    fn validly_signed_garbage_is_a_4xx_not_a_5xx(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let api = api(&key);
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut message = timestamp.clone().into_bytes();
        message.extend_from_slice(&body);
        let signature = hex::encode(key.sign(&message).to_bytes());
        let response = runtime.block_on(api.handle(request(Some(&signature), Some(&timestamp), body)));
        let status = response.status().as_u16();
        // A signed PING-shaped accident may be 200; anything else malformed is a 400.
        prop_assert!(status == 200 || status == 400, "status {}", status);
    }
}

#[tokio::test]
async fn a_signature_from_another_key_is_401() {
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let forger = SigningKey::from_bytes(&[10u8; 32]);
    let body = br#"{"type":1,"id":"1","application_id":"1","token":"t","version":1}"#.to_vec();
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let mut message = timestamp.clone().into_bytes();
    message.extend_from_slice(&body);
    let forged = hex::encode(forger.sign(&message).to_bytes());
    let response = api(&key)
        .handle(request(Some(&forged), Some(&timestamp), body.clone()))
        .await;
    assert_eq!(response.status(), 401);
    let genuine = hex::encode(key.sign(&message).to_bytes());
    let response = api(&key)
        .handle(request(Some(&genuine), Some(&timestamp), body))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), br#"{"type":1}"#);
}
