//! The Gather guest list against a fake Gather (`wiremock`) in Gather's wire format, and the
//! local file that mirrors it: merging adds, the careful removal (only entries this system
//! wrote, everything else written back as read, vanished entries re-added), retries,
//! timeouts, malformed lists, and personal data kept out of errors.
//!
//! Every test asserts what the guest list returned *and* which requests reached the server.

use std::time::Duration;

use autopilot_core::access::{
    FileGuestList, GatherGuestList, Guest, GuestList, Removal, RemovalOutcome,
};
use autopilot_core::pii::{sha256_hex, EmailAddress, Sensitive};
use autopilot_core::upstream::{HttpOptions, UpstreamError};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const API_KEY: &str = "gather-s3cret-api-key";
const SPACE_ID: &str = "oxrhEtb3sV7VutbQ\\MySpace";
const GET: &str = "/api/getEmailGuestlist";
const SET: &str = "/api/setEmailGuestlist";
const ROLE: &str = "guest";
const AFFILIATION: &str = "KKTIX Autopilot";

fn options() -> HttpOptions {
    autopilot_test_support::fast::http(300, 3)
}

fn gather(server: &MockServer) -> GatherGuestList {
    GatherGuestList::new(
        &server.uri(),
        Sensitive::new(API_KEY.to_owned()),
        SPACE_ID,
        options(),
    )
    .expect("client builds")
}

fn guest(email: &str, name: &str) -> Guest {
    Guest {
        email: EmailAddress::parse(email).expect("valid email"),
        name: Sensitive::new(name.to_owned()),
        role: ROLE.to_owned(),
        affiliation: AFFILIATION.to_owned(),
    }
}

fn removal(email: &str) -> Removal {
    Removal {
        email_hash: sha256_hex(email),
        role: ROLE.to_owned(),
        affiliation: AFFILIATION.to_owned(),
    }
}

fn ours(name: &str) -> Value {
    json!({"name": name, "role": ROLE, "affiliation": AFFILIATION})
}

/// A list with two of our entries, a guest added by hand (other affiliation, an extra
/// attribute) and a hand-added entry whose email nobody removes.
fn listed() -> Value {
    json!({
        "ours@example.com": ours("李xx"),
        "also.ours@example.com": ours("Also Ours"),
        "hand@example.com": {"name": "Hand Added", "role": "guest", "affiliation": "Staff", "extra": [1, {"x": true}]},
        "vip@example.com": {"name": "VIP", "role": "guest", "affiliation": AFFILIATION, "note": "by hand"},
    })
}

fn json_body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("request body is JSON")
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("recording is on")
}

async fn mount_get(server: &MockServer, list: Value) {
    Mock::given(method("GET"))
        .and(path(GET))
        .respond_with(ResponseTemplate::new(200).set_body_json(list))
        .mount(server)
        .await;
}

async fn mount_set(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(SET))
        .respond_with(ResponseTemplate::new(200))
        .mount(server)
        .await;
}

fn assert_no_pii(error: &UpstreamError) {
    let shown = format!("{error} {error:?}");
    for secret in [
        API_KEY,
        "ours@example.com",
        "hand@example.com",
        "李xx",
        "Hand Added",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

// ---- add ------------------------------------------------------------------------------

#[tokio::test]
async fn add_posts_one_merging_batch() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SET))
        .and(body_json(json!({
            "apiKey": API_KEY,
            "spaceId": SPACE_ID,
            "guestlist": {
                "ours@example.com": ours("李xx"),
                "Second@Example.com": ours("Second"),
            },
            "overwrite": false,
        })))
        .respond_with(ResponseTemplate::new(200).set_body_string("OK"))
        .expect(1)
        .mount(&server)
        .await;
    let list = gather(&server);
    list.add(&[
        guest("ours@example.com", "李xx"),
        guest("Second@Example.com", "Second"),
    ])
    .await
    .expect("added");
    assert_eq!(requests(&server).await.len(), 1);
    assert_eq!(list.requests_sent(), 1);
}

#[tokio::test]
async fn add_of_nothing_sends_nothing() {
    let server = MockServer::start().await;
    gather(&server).add(&[]).await.expect("nothing to add");
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn any_2xx_is_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SET))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    gather(&server)
        .add(&[guest("ours@example.com", "李xx")])
        .await
        .expect("204 is fine");
}

// ---- failures ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_key_is_unauthorized_and_not_retried() {
    for status in [401, 403] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(SET))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_string(format!("bad key {API_KEY} for ours@example.com")),
            )
            .mount(&server)
            .await;
        let error = gather(&server)
            .add(&[guest("ours@example.com", "李xx")])
            .await
            .expect_err("rejected");
        assert_eq!(
            error,
            UpstreamError::Unauthorized {
                upstream: "Gather",
                status
            }
        );
        assert_no_pii(&error);
        assert_eq!(requests(&server).await.len(), 1);
    }
}

#[tokio::test]
async fn bad_request_is_rejected_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SET))
        .respond_with(ResponseTemplate::new(400).set_body_string("ours@example.com is invalid"))
        .mount(&server)
        .await;
    let error = gather(&server)
        .add(&[guest("ours@example.com", "李xx")])
        .await
        .expect_err("rejected");
    assert!(
        matches!(error, UpstreamError::Rejected { status: 400, .. }),
        "{error:?}"
    );
    assert_no_pii(&error);
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn rate_limit_is_waited_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SET))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_set(&server).await;
    let started = std::time::Instant::now();
    gather(&server)
        .add(&[guest("ours@example.com", "李xx")])
        .await
        .expect("second attempt succeeds");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(json_body(&sent[0]), json_body(&sent[1]));
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SET))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom ours@example.com"))
        .mount(&server)
        .await;
    let error = gather(&server)
        .add(&[guest("ours@example.com", "李xx")])
        .await
        .expect_err("fails");
    assert_eq!(
        error,
        UpstreamError::Server {
            upstream: "Gather",
            status: 500
        }
    );
    assert_no_pii(&error);
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn slow_answers_time_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(GET))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(listed())
                .set_delay(Duration::from_millis(600)),
        )
        .mount(&server)
        .await;
    let error = gather(&server)
        .remove(&[removal("ours@example.com")])
        .await
        .expect_err("times out");
    assert_eq!(error, UpstreamError::Timeout { upstream: "Gather" });
    assert_no_pii(&error);
    let sent = requests(&server).await;
    assert!(
        sent.iter().all(|r| r.method.as_str() == "GET"),
        "no write after a failed read"
    );
}

// ---- remove -----------------------------------------------------------------------------

#[tokio::test]
async fn remove_rewrites_only_what_we_wrote() {
    let server = MockServer::start().await;
    mount_get(&server, listed()).await;
    mount_set(&server).await;
    let outcomes = gather(&server)
        .remove(&[
            removal("ours@example.com"),
            removal("hand@example.com"),
            removal("never@example.com"),
            removal("also.ours@example.com"),
        ])
        .await
        .expect("removed");
    assert_eq!(
        outcomes,
        vec![
            RemovalOutcome::Removed,
            RemovalOutcome::KeptNotOurs,
            RemovalOutcome::Absent,
            RemovalOutcome::Removed,
        ]
    );
    let sent = requests(&server).await;
    let kinds: Vec<&str> = sent.iter().map(|r| r.method.as_str()).collect();
    // The second read finds the fake's list unchanged, so nothing vanished: no re-add.
    assert_eq!(kinds, ["GET", "POST", "GET"]);
    let mut expected = listed();
    let entries = expected.as_object_mut().expect("object");
    entries.remove("ours@example.com");
    entries.remove("also.ours@example.com");
    assert_eq!(
        json_body(&sent[1]),
        json!({
            "apiKey": API_KEY,
            "spaceId": SPACE_ID,
            "guestlist": expected,
            "overwrite": true,
        })
    );
}

#[tokio::test]
async fn remove_matches_gathers_lowercased_email() {
    let server = MockServer::start().await;
    mount_get(
        &server,
        json!({"Mixed@Example.com": ours("Mixed"), "hand@example.com": {"name": "Hand Added"}}),
    )
    .await;
    mount_set(&server).await;
    // Listed with capitals, typed in lowercase: the listed form's lowercase matches.
    let outcomes = gather(&server)
        .remove(&[Removal {
            email_hash: sha256_hex("mixed@example.com"),
            role: ROLE.to_owned(),
            affiliation: AFFILIATION.to_owned(),
        }])
        .await
        .expect("removed");
    assert_eq!(outcomes, vec![RemovalOutcome::Removed]);
    let sent = requests(&server).await;
    assert_eq!(
        json_body(&sent[1])["guestlist"],
        json!({"hand@example.com": {"name": "Hand Added"}})
    );
}

#[tokio::test]
async fn nothing_to_remove_reads_once_and_writes_nothing() {
    let server = MockServer::start().await;
    mount_get(&server, listed()).await;
    mount_set(&server).await;
    let outcomes = gather(&server)
        .remove(&[removal("hand@example.com"), removal("never@example.com")])
        .await
        .expect("answered");
    assert_eq!(
        outcomes,
        vec![RemovalOutcome::KeptNotOurs, RemovalOutcome::Absent]
    );
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method.as_str(), "GET");
}

#[tokio::test]
async fn malformed_lists_are_reported_and_never_written() {
    for body in [
        "not json ours@example.com",
        r#"["ours@example.com"]"#,
        "null",
        "",
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(GET))
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .mount(&server)
            .await;
        mount_set(&server).await;
        let error = gather(&server)
            .remove(&[removal("ours@example.com")])
            .await
            .expect_err("malformed");
        assert!(
            matches!(
                error,
                UpstreamError::Malformed {
                    upstream: "Gather",
                    ..
                }
            ),
            "{body}: {error:?}"
        );
        assert_no_pii(&error);
        let sent = requests(&server).await;
        assert_eq!(sent.len(), 1, "{body}");
        assert_eq!(sent[0].method.as_str(), "GET");
    }
}

#[tokio::test]
async fn verify_re_adds_an_entry_that_vanished() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(GET))
        .respond_with(ResponseTemplate::new(200).set_body_json(listed()))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    // Someone else's rewrite raced ours: the hand-added guest is gone on the second read.
    mount_get(
        &server,
        json!({
            "also.ours@example.com": ours("Also Ours"),
            "vip@example.com": {"name": "VIP", "role": "guest", "affiliation": AFFILIATION, "note": "by hand"},
        }),
    )
    .await;
    mount_set(&server).await;
    let outcomes = gather(&server)
        .remove(&[removal("ours@example.com")])
        .await
        .expect("removed");
    assert_eq!(outcomes, vec![RemovalOutcome::Removed]);
    let sent = requests(&server).await;
    let kinds: Vec<&str> = sent.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(kinds, ["GET", "POST", "GET", "POST"]);
    assert_eq!(json_body(&sent[1])["overwrite"], json!(true));
    assert_eq!(
        json_body(&sent[3]),
        json!({
            "apiKey": API_KEY,
            "spaceId": SPACE_ID,
            "guestlist": {
                "hand@example.com": listed()["hand@example.com"].clone(),
            },
            "overwrite": false,
        })
    );
}

#[tokio::test]
async fn failed_overwrite_is_reported() {
    let server = MockServer::start().await;
    mount_get(&server, listed()).await;
    Mock::given(method("POST"))
        .and(path(SET))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    let error = gather(&server)
        .remove(&[removal("ours@example.com")])
        .await
        .expect_err("forbidden");
    assert!(matches!(
        error,
        UpstreamError::Unauthorized { status: 403, .. }
    ));
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn space_id_with_a_backslash_is_query_encoded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(GET))
        .and(query_param("spaceId", SPACE_ID))
        .and(query_param("apiKey", API_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let outcomes = gather(&server)
        .remove(&[removal("ours@example.com")])
        .await
        .expect("read");
    assert_eq!(outcomes, vec![RemovalOutcome::Absent]);
    let sent = requests(&server).await;
    let query = sent[0].url.query().expect("query");
    assert!(
        query.contains("spaceId=oxrhEtb3sV7VutbQ%5CMySpace"),
        "{query}"
    );
}

#[tokio::test]
async fn base_url_path_prefix_is_kept() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/prefix{SET}")))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let list = GatherGuestList::new(
        &format!("{}/prefix/", server.uri()),
        Sensitive::new(API_KEY.to_owned()),
        SPACE_ID,
        options(),
    )
    .expect("client builds");
    list.add(&[guest("ours@example.com", "李xx")])
        .await
        .expect("added");
}

#[test]
fn debug_output_hides_the_key() {
    let list = GatherGuestList::new(
        "https://api.gather.town",
        Sensitive::new(API_KEY.to_owned()),
        SPACE_ID,
        HttpOptions::default(),
    )
    .expect("client builds");
    assert!(!format!("{list:?}").contains(API_KEY));
}

// ---- the local file ------------------------------------------------------------------

fn read_file(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("file exists")).expect("file is JSON")
}

#[tokio::test]
async fn file_add_creates_dirs_and_merges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested/deeper/guests.json");
    let list = FileGuestList::new(&path);
    list.add(&[guest("ours@example.com", "李xx")])
        .await
        .expect("added");
    list.add(&[guest("also.ours@example.com", "Also Ours")])
        .await
        .expect("added");
    list.add(&[]).await.expect("nothing to add");
    assert_eq!(
        read_file(&path),
        json!({
            "ours@example.com": ours("李xx"),
            "also.ours@example.com": ours("Also Ours"),
        })
    );
    let text = std::fs::read_to_string(&path).expect("text");
    assert!(text.contains("\n  "), "pretty-printed: {text}");
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
        .expect("dir")
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");
}

#[tokio::test]
async fn file_remove_keeps_hand_added_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("guests.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&listed()).expect("json")).expect("write");
    let list = FileGuestList::new(&path);
    let outcomes = list
        .remove(&[
            removal("ours@example.com"),
            removal("hand@example.com"),
            removal("never@example.com"),
        ])
        .await
        .expect("removed");
    assert_eq!(
        outcomes,
        vec![
            RemovalOutcome::Removed,
            RemovalOutcome::KeptNotOurs,
            RemovalOutcome::Absent
        ]
    );
    let mut expected = listed();
    expected
        .as_object_mut()
        .expect("object")
        .remove("ours@example.com");
    assert_eq!(read_file(&path), expected);
}

#[tokio::test]
async fn file_missing_is_an_empty_list() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.json");
    let list = FileGuestList::new(&path);
    let outcomes = list
        .remove(&[removal("ours@example.com")])
        .await
        .expect("answered");
    assert_eq!(outcomes, vec![RemovalOutcome::Absent]);
    assert!(!path.exists(), "nothing removed, nothing written");
}

#[tokio::test]
async fn file_corrupt_is_malformed_and_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    for content in ["{not json ours@example.com", r#"["ours@example.com"]"#] {
        let path = dir.path().join("corrupt.json");
        std::fs::write(&path, content).expect("write");
        let list = FileGuestList::new(&path);
        let error = list
            .remove(&[removal("ours@example.com")])
            .await
            .expect_err("corrupt");
        assert!(
            matches!(
                error,
                UpstreamError::Malformed {
                    upstream: "guest-list file",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_no_pii(&error);
        let error = list
            .add(&[guest("ours@example.com", "李xx")])
            .await
            .expect_err("corrupt");
        assert!(matches!(error, UpstreamError::Malformed { .. }));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), content);
    }
}

#[tokio::test]
async fn file_concurrent_adds_all_land() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("guests.json");
    let list = std::sync::Arc::new(FileGuestList::new(&path));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let list = list.clone();
            tokio::spawn(async move {
                list.add(&[guest(&format!("g{i}@example.com"), &format!("G{i}"))])
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("joined").expect("added");
    }
    assert_eq!(read_file(&path).as_object().expect("object").len(), 16);
}
