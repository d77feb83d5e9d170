//! The Discord webhook client against a fake Discord (`wiremock`): wire format, success
//! statuses, rate limits (body and header hints), permanent failures, retries, timeouts,
//! truncation, and the webhook token kept out of every error and `Debug` output.
//!
//! Every test asserts what the client returned *and* how many requests reached the server.

use std::time::{Duration, Instant};

use autopilot_core::notify::{DiscordWebhook, Notice, Notifier};
use autopilot_core::upstream::{HttpOptions, UpstreamError};
use serde_json::{json, Value};
use wiremock::matchers::{any, body_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "s3cret-webhook-token";
const UPSTREAM: &str = "Discord webhook";

fn hook_path() -> String {
    format!("/api/webhooks/123/{TOKEN}")
}

fn options() -> HttpOptions {
    autopilot_test_support::fast::http(300, 3)
}

fn webhook(server: &MockServer) -> DiscordWebhook {
    DiscordWebhook::new(&format!("{}{}", server.uri(), hook_path()), options())
        .expect("webhook builds")
}

fn notice(content: &str) -> Notice {
    Notice {
        content: content.to_owned(),
    }
}

fn message() -> Value {
    json!({"id": "1", "channel_id": "2", "content": "posted", "type": 0})
}

fn rate_limited(retry_after: f64) -> ResponseTemplate {
    ResponseTemplate::new(429).set_body_json(json!({
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": false,
    }))
}

async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.expect("recording on")
}

fn assert_no_token(text: &str) {
    assert!(!text.contains(TOKEN), "the token leaked into {text:?}");
    assert!(
        !text.contains("/api/webhooks"),
        "the URL leaked into {text:?}"
    );
}

fn assert_error_hides_token(error: &UpstreamError) {
    assert_no_token(&error.to_string());
    assert_no_token(&format!("{error:?}"));
}

#[tokio::test]
async fn posts_content_without_mentions_and_waits() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(hook_path()))
        .and(query_param("wait", "true"))
        .and(body_json(json!({
            "content": "3 tickets sold @everyone",
            "username": "KKTIX Autopilot",
            "allowed_mentions": {"parse": []},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(message()))
        .expect(1)
        .mount(&server)
        .await;

    let hook = webhook(&server);
    hook.notify(&notice("3 tickets sold @everyone"))
        .await
        .expect("posted");

    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body: Value = serde_json::from_slice(&received[0].body).expect("JSON body");
    assert_eq!(body["allowed_mentions"]["parse"], json!([]));
    assert_eq!(hook.attempts(), 1);
}

#[tokio::test]
async fn keeps_an_existing_query() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(hook_path()))
        .and(query_param("wait", "true"))
        .and(query_param("thread_id", "42"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let url = format!("{}{}?thread_id=42", server.uri(), hook_path());
    let hook = DiscordWebhook::new(&url, options()).expect("webhook builds");
    hook.notify(&notice("hello")).await.expect("posted");
}

#[tokio::test]
async fn no_content_204_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(hook_path()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    webhook(&server)
        .notify(&notice("hello"))
        .await
        .expect("posted");
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn rate_limit_in_body_is_waited_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(hook_path()))
        .respond_with(rate_limited(0.2))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(hook_path()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let started = Instant::now();
    webhook(&server)
        .notify(&notice("hello"))
        .await
        .expect("posted after the wait");
    let elapsed = started.elapsed();

    assert_eq!(requests(&server).await.len(), 2);
    assert!(
        elapsed >= Duration::from_millis(190),
        "retried after {elapsed:?}, before the 200ms Discord asked for"
    );
}

#[tokio::test]
async fn long_retry_after_header_is_not_waited_out() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(rate_limited(120.0).insert_header("Retry-After", "120"))
        .mount(&server)
        .await;

    let started = Instant::now();
    let error = webhook(&server)
        .notify(&notice("hello"))
        .await
        .expect_err("rate limited");

    assert_eq!(
        error,
        UpstreamError::RateLimited {
            upstream: UPSTREAM,
            retry_after: Some(Duration::from_secs(120)),
        }
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(requests(&server).await.len(), 1);
    assert_error_hides_token(&error);
}

#[tokio::test]
async fn unauthorized_is_final_and_hides_the_token() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"message": "401: Unauthorized", "code": 0})),
        )
        .mount(&server)
        .await;

    let error = webhook(&server)
        .notify(&notice("hello"))
        .await
        .expect_err("unauthorized");

    assert_eq!(
        error,
        UpstreamError::Unauthorized {
            upstream: UPSTREAM,
            status: 401
        }
    );
    assert_eq!(requests(&server).await.len(), 1);
    assert_error_hides_token(&error);
}

#[tokio::test]
async fn deleted_webhook_is_final_and_hides_the_token() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"message": "Unknown Webhook", "code": 10015})),
        )
        .mount(&server)
        .await;

    let error = webhook(&server)
        .notify(&notice("hello"))
        .await
        .expect_err("not found");

    assert_eq!(
        error,
        UpstreamError::NotFound {
            upstream: UPSTREAM,
            what: "the webhook".to_owned(),
        }
    );
    assert_eq!(requests(&server).await.len(), 1);
    assert_error_hides_token(&error);
}

#[tokio::test]
async fn bad_request_is_final() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"code": 50006})))
        .mount(&server)
        .await;

    let error = webhook(&server)
        .notify(&notice("hello"))
        .await
        .expect_err("rejected");

    assert_eq!(
        error,
        UpstreamError::Rejected {
            upstream: UPSTREAM,
            status: 400
        }
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;

    let error = webhook(&server)
        .notify(&notice("hello"))
        .await
        .expect_err("server error");

    assert_eq!(
        error,
        UpstreamError::Server {
            upstream: UPSTREAM,
            status: 500
        }
    );
    assert_eq!(requests(&server).await.len(), 3);
    assert_error_hides_token(&error);
}

#[tokio::test]
async fn server_error_then_success_recovers() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;

    webhook(&server)
        .notify(&notice("hello"))
        .await
        .expect("posted on retry");
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn slow_discord_times_out_without_posting_twice() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;

    let started = Instant::now();
    let error = webhook(&server)
        .notify(&notice("hello"))
        .await
        .expect_err("timed out");

    assert_eq!(error, UpstreamError::Timeout { upstream: UPSTREAM });
    // It may have been posted: a timed-out notice is not sent again.
    assert_eq!(requests(&server).await.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_error_hides_token(&error);
}

#[tokio::test]
async fn unreachable_discord_hides_the_token() {
    // Nothing listens here once the server is gone.
    let server = MockServer::start().await;
    let hook = webhook(&server);
    drop(server);

    let error = hook
        .notify(&notice("hello"))
        .await
        .expect_err("unreachable");

    assert_eq!(error.upstream(), UPSTREAM);
    assert_error_hides_token(&error);
}

#[tokio::test]
async fn long_content_is_truncated_to_2000_chars() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;

    let long = "票".repeat(2500);
    webhook(&server)
        .notify(&notice(&long))
        .await
        .expect("posted");

    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    let body: Value = serde_json::from_slice(&received[0].body).expect("JSON body");
    let content = body["content"].as_str().expect("content is a string");
    assert_eq!(content.chars().count(), 2000);
    assert!(content.ends_with('…'));
    assert!(content.starts_with(&"票".repeat(1999)));
}

#[tokio::test]
async fn content_at_the_limit_is_sent_whole() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;

    let exact = "票".repeat(2000);
    webhook(&server)
        .notify(&notice(&exact))
        .await
        .expect("posted");

    let received = requests(&server).await;
    let body: Value = serde_json::from_slice(&received[0].body).expect("JSON body");
    assert_eq!(body["content"], json!(exact));
}

#[test]
fn invalid_urls_are_refused_without_echoing_them() {
    for url in [
        "",
        "not a url",
        "discord.com/api/webhooks/123/s3cret-webhook-token",
        "ftp://discord.com/api/webhooks/123/s3cret-webhook-token",
        "javascript:s3cret-webhook-token",
    ] {
        let error = DiscordWebhook::new(url, options()).expect_err("invalid URL refused");
        assert_eq!(
            error,
            UpstreamError::Transport {
                upstream: UPSTREAM,
                reason: "invalid webhook URL".to_owned(),
            }
        );
        assert_error_hides_token(&error);
    }
}

#[test]
fn debug_output_hides_the_token() {
    let hook = DiscordWebhook::new(
        "https://discord.com/api/webhooks/123/s3cret-webhook-token",
        options(),
    )
    .expect("webhook builds");
    let debug = format!("{hook:?}");
    assert_no_token(&debug);
    assert!(debug.contains("discord.com"), "{debug}");
}

#[tokio::test]
async fn an_empty_rate_limit_bucket_is_waited_out_before_a_429() {
    let server = MockServer::start().await;
    // Discord says the bucket is empty and refills in 0.8 s; a request before then would be
    // answered 429.
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(204)
                .insert_header("x-ratelimit-limit", "5")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset-after", "0.8")
                .insert_header("x-ratelimit-bucket", "abcd1234"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let first_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let seen = first_at.clone();
    Mock::given(method("POST"))
        .respond_with(move |_: &wiremock::Request| {
            let refilled = seen
                .lock()
                .unwrap()
                .is_some_and(|at: Instant| at.elapsed() >= Duration::from_millis(750));
            if refilled {
                ResponseTemplate::new(204).insert_header("x-ratelimit-remaining", "4")
            } else {
                rate_limited(0.8)
            }
        })
        .mount(&server)
        .await;
    let hook = webhook(&server);
    hook.notify(&notice("one")).await.expect("posted");
    *first_at.lock().unwrap() = Some(Instant::now());
    let started = Instant::now();
    hook.notify(&notice("two"))
        .await
        .expect("posted after the refill");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(requests(&server).await.len(), 2, "no 429 drawn");
    assert_eq!(hook.attempts(), 2);
    // A bucket with requests left does not hold the next one.
    let started = Instant::now();
    hook.notify(&notice("three")).await.expect("posted");
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn a_webhook_fingerprint_tells_webhooks_apart_and_hides_the_token() {
    let a = DiscordWebhook::new(&format!("https://discord.com{}", hook_path()), options()).unwrap();
    let b = DiscordWebhook::new(
        "https://discord.com/api/webhooks/124/other-token",
        options(),
    )
    .unwrap();
    assert_eq!(a.fingerprint(), a.fingerprint());
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint().len(), 16);
    assert!(!a.fingerprint().contains(TOKEN));
}
