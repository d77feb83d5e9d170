//! The KKTIX client against a fake KKTIX (`wiremock`): authentication, pagination, retries,
//! timeouts, malformed bodies, personal data kept out of errors, and bounded concurrency.
//!
//! Every test asserts what the client returned *and* how many requests reached the server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autopilot_core::kktix::{AttendeeFetch, EventListing, KktixClient, KktixOptions};
use autopilot_core::pii::Sensitive;
use autopilot_core::upstream::{RetryPolicy, UpstreamError};
use serde_json::{json, Value};
use wiremock::matchers::{any, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "s3cret-hosting-token";
const EVENTS: &str = "/api/v2/hosting_events";
const EMAIL: &str = "xxx@gmail.com";
const NAME: &str = "李xx";

fn policy() -> RetryPolicy {
    autopilot_test_support::fast::retry(3)
}

fn options(concurrency: usize) -> KktixOptions {
    KktixOptions {
        timeout: Duration::from_millis(300),
        retry: policy(),
        concurrency,
    }
}

fn client_with(server: &MockServer, options: KktixOptions) -> KktixClient {
    KktixClient::new(&server.uri(), Sensitive::new(TOKEN.to_owned()), options)
        .expect("client builds")
}

fn client(server: &MockServer) -> KktixClient {
    client_with(server, options(4))
}

fn event(id: u64) -> Value {
    json!({"id": id, "name": format!("Event {id}"), "slug": format!("event-{id}")})
}

fn attendee_path(event_id: u64, attendee_id: u64) -> String {
    format!("{EVENTS}/{event_id}/attendees/{attendee_id}")
}

/// A full attendee record as KKTIX sends it, personal answers included.
fn attendee_record(id: u64) -> Value {
    json!({
        "id": id, "ticket_id": 449116, "ticket_name": "Regular 一般票", "reg_no": 104,
        "state": "activated", "checkin_code": "BC7B", "qrcode": "bc7b", "is_paid": true,
        "price": 2600, "currency": "TWD", "payment_method": "WEBSITE",
        "data": [["聯絡人 姓名", NAME], ["聯絡人 Email", EMAIL], ["Nickname / 暱稱", null]],
        "kyc": {}, "id_number": null, "search_string": format!("{NAME} {EMAIL}"),
        "updated_at": 1730000000.5, "ticket_type": "qrcode", "slot": null, "order_no": 1234
    })
}

/// A body full of personal data, as an error page might echo a record back.
fn pii_body() -> Value {
    json!({"error": "boom", "attendee": {"name": NAME, "email": EMAIL}, "token": TOKEN})
}

fn ids(listing: &EventListing) -> Vec<u64> {
    listing.events.iter().map(|event| event.id).collect()
}

fn assert_no_pii(text: &str) {
    for secret in [EMAIL, NAME, TOKEN] {
        assert!(!text.contains(secret), "{secret:?} leaked into {text:?}");
    }
}

async fn received(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

fn page_of(request: &Request) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(key, _)| key == "page")
        .map(|(_, value)| value.into_owned())
}

// ---------------------------------------------------------------------------------------------
// 1. Authentication and the listing filter
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sends_bearer_token_and_only_not_ended_filter() {
    let server = MockServer::start().await;
    let bearer = format!("bearer {TOKEN}");
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .and(header("authorization", bearer.as_str()))
        .and(query_param("only_not_ended_event", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [event(1)]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{EVENTS}/1/attendance_books")))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 9, "name": "main"}])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{EVENTS}/1/attendance_books/9")))
        .and(header("authorization", bearer.as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 9, "signin_status": [[11, false], ["12", true]]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 11)))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(attendee_record(11)))
        .expect(1)
        .mount(&server)
        .await;
    // Anything without the token (or the filter) is turned away.
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401))
        .expect(0)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let listing = kktix.hosting_events().await.expect("listing");
    assert_eq!(ids(&listing), vec![1]);
    assert_eq!(listing.events[0].name, "Event 1");
    assert_eq!(listing.events[0].slug, "event-1");
    assert!(listing.skipped.is_empty());

    let books = kktix.attendance_books(1).await.expect("books");
    assert_eq!(books.len(), 1);
    assert_eq!(books[0].id, 9);
    assert_eq!(books[0].name.as_deref(), Some("main"));

    assert_eq!(
        kktix.attendance_book(1, 9).await.expect("book"),
        vec![11, 12]
    );

    match kktix.attendee(1, 11).await {
        AttendeeFetch::Fetched(attendee) => {
            assert_eq!(attendee.id, 11);
            assert_eq!(attendee.ticket_id, Some(449116));
            assert_eq!(attendee.ticket_name, "Regular 一般票");
            assert_eq!(attendee.reg_no, Some(104));
            assert_eq!(attendee.order_no, Some(1234));
            assert!(attendee.is_paid);
            assert_eq!(attendee.price, Some(2600.0));
            assert_eq!(attendee.currency.as_deref(), Some("TWD"));
            assert_eq!(attendee.updated_at, Some(1730000000.5));
            assert_eq!(attendee.data.len(), 3);
            assert_eq!(attendee.data[1].label, "聯絡人 Email");
            assert_eq!(attendee.data[1].value.expose(), EMAIL);
            assert_eq!(attendee.data[2].value.expose(), "");
            // The raw record is kept whole, but Debug never shows an answer.
            assert!(attendee.raw.expose().contains_key("checkin_code"));
            assert_no_pii(&format!("{attendee:?}"));
        }
        other => panic!("expected Fetched, got {other:?}"),
    }

    let requests = received(&server).await;
    assert_eq!(requests.len(), 4);
    assert_eq!(kktix.requests_sent(), 4);
    for request in &requests {
        assert_eq!(
            request
                .headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap(),
            bearer
        );
    }
    // The listing carries the filter; the per-event endpoints carry no query at all.
    assert_eq!(requests[0].url.query(), Some("only_not_ended_event=true"));
    server.verify().await;
}

#[tokio::test]
async fn base_url_with_a_path_prefix_is_kept() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/kktix{EVENTS}")))
        .and(query_param("only_not_ended_event", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [event(5)]})))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = KktixClient::new(
        &format!("{}/kktix/", server.uri()),
        Sensitive::new(TOKEN.to_owned()),
        options(4),
    )
    .unwrap();
    let listing = kktix.hosting_events().await.expect("listing");
    assert_eq!(ids(&listing), vec![5]);
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn invalid_base_url_is_a_transport_error() {
    let error = KktixClient::new("not a url", Sensitive::new(TOKEN.to_owned()), options(4))
        .expect_err("invalid base URL must be refused");
    assert!(
        matches!(
            error,
            UpstreamError::Transport {
                upstream: "KKTIX",
                ..
            }
        ),
        "{error:?}"
    );
    assert_no_pii(&error.to_string());
}

// ---------------------------------------------------------------------------------------------
// 2. Pagination
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn paginates_via_meta_pagination() {
    let server = MockServer::start().await;
    for page in [2u64, 3] {
        Mock::given(method("GET"))
            .and(path(EVENTS))
            .and(query_param("only_not_ended_event", "true"))
            .and(query_param("page", page.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "data": [event(page * 10), event(page * 10 + 1)],
                "meta": {"pagination": {"current_page": page, "total_pages": 3, "per_page": 2}}
            })))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .and(query_param("only_not_ended_event", "true"))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [event(10), event(11)],
            "meta": {"pagination": {"current_page": 1, "total_pages": 3, "per_page": 2}}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let listing = kktix.hosting_events().await.expect("listing");
    assert_eq!(ids(&listing), vec![10, 11, 20, 21, 30, 31]);
    assert!(listing.skipped.is_empty());

    let requests = received(&server).await;
    assert_eq!(requests.len(), 3);
    assert_eq!(kktix.requests_sent(), 3);
    let pages: Vec<Option<String>> = requests.iter().map(page_of).collect();
    assert_eq!(
        pages,
        vec![None, Some("2".to_owned()), Some("3".to_owned())]
    );
    server.verify().await;
}

#[tokio::test]
async fn paginates_via_links_next_relative_and_absolute() {
    let server = MockServer::start().await;
    // Page 1 → root-relative link; page 2 → path-relative link; page 3 → absolute same-host
    // link; page 4 → `next: null`, the end.
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [event(1)],
            "links": {"next": format!("{EVENTS}?only_not_ended_event=true&page=2")}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [event(2)],
            "links": {"next": "hosting_events?only_not_ended_event=true&page=3"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .and(query_param("page", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [event(3)],
            "links": {"next": format!("{}{EVENTS}?only_not_ended_event=true&page=4", server.uri())}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .and(query_param("page", "4"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [event(4)],
            "links": {"next": null}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let listing = kktix.hosting_events().await.expect("listing");
    assert_eq!(ids(&listing), vec![1, 2, 3, 4]);

    let requests = received(&server).await;
    assert_eq!(requests.len(), 4);
    assert_eq!(kktix.requests_sent(), 4);
    for request in &requests {
        assert_eq!(request.url.path(), EVENTS);
        assert!(request.headers.contains_key("authorization"));
    }
    server.verify().await;
}

#[tokio::test]
async fn links_next_to_another_host_is_refused() {
    for shape in ["absolute", "protocol-relative"] {
        let server = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
            .expect(0)
            .mount(&elsewhere)
            .await;
        let other = elsewhere.address();
        let next = match shape {
            "absolute" => format!("http://{other}{EVENTS}?page=2"),
            _ => format!("//{other}{EVENTS}?page=2"),
        };
        Mock::given(method("GET"))
            .and(path(EVENTS))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"data": [event(1)], "links": {"next": next}})),
            )
            .expect(1)
            .mount(&server)
            .await;

        let kktix = client(&server);
        let error = kktix
            .hosting_events()
            .await
            .expect_err("a next link to another host must be refused");
        assert!(
            matches!(
                error,
                UpstreamError::Malformed {
                    upstream: "KKTIX",
                    ..
                }
            ),
            "{shape}: {error:?}"
        );
        assert!(error.to_string().contains("another host"), "{error}");
        assert_no_pii(&error.to_string());

        assert_eq!(received(&server).await.len(), 1, "{shape}");
        assert!(received(&elsewhere).await.is_empty(), "{shape}");
        assert_eq!(kktix.requests_sent(), 1, "{shape}");
        server.verify().await;
        elsewhere.verify().await;
    }
}

#[tokio::test]
async fn redirect_to_another_host_never_carries_the_token() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [event(1)]})))
        .mount(&elsewhere)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(302).insert_header(
            "location",
            format!(
                "http://{}{EVENTS}?only_not_ended_event=true",
                elsewhere.address()
            ),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    // Redirects are not followed: the other host's listing is never taken as KKTIX's.
    let error = kktix.hosting_events().await.unwrap_err();
    assert!(
        matches!(error, UpstreamError::Rejected { status: 302, .. }),
        "{error:?}"
    );
    assert!(
        received(&elsewhere).await.is_empty(),
        "the redirect was followed"
    );
    assert_eq!(received(&server).await.len(), 1);
    server.verify().await;
}

#[tokio::test]
async fn links_next_pointing_to_itself_terminates() {
    let server = MockServer::start().await;
    let myself = format!("{EVENTS}?only_not_ended_event=true");
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [event(1), event(2)], "links": {"next": myself}})),
        )
        .mount(&server)
        .await;

    let kktix = client(&server);
    let listing = tokio::time::timeout(Duration::from_secs(5), kktix.hosting_events())
        .await
        .expect("a self-referencing next link must not loop")
        .expect("listing");
    assert_eq!(ids(&listing), vec![1, 2]);
    assert_eq!(received(&server).await.len(), 1);
    assert_eq!(kktix.requests_sent(), 1);
}

#[tokio::test]
async fn two_page_cycle_terminates() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [event(2)],
            "links": {"next": format!("{EVENTS}?only_not_ended_event=true")}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [event(1)],
            "links": {"next": format!("{EVENTS}?only_not_ended_event=true&page=2")}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let listing = tokio::time::timeout(Duration::from_secs(5), kktix.hosting_events())
        .await
        .expect("a page cycle must not loop")
        .expect("listing");
    assert_eq!(ids(&listing), vec![1, 2]);
    assert_eq!(received(&server).await.len(), 2);
    server.verify().await;
}

#[tokio::test]
async fn stuck_meta_pagination_terminates() {
    // Every page claims to be page 1 of 5: the client asks for page 2 once, then stops, and
    // the repeated event counts once.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [event(1)],
            "meta": {"pagination": {"current_page": 1, "total_pages": 5}}
        })))
        .mount(&server)
        .await;

    let kktix = client(&server);
    let listing = tokio::time::timeout(Duration::from_secs(5), kktix.hosting_events())
        .await
        .expect("stuck pagination must not loop")
        .expect("listing");
    assert_eq!(ids(&listing), vec![1]);
    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    assert_eq!(page_of(&requests[1]).as_deref(), Some("2"));
}

#[tokio::test]
async fn endless_distinct_pages_are_cut_off() {
    // Each page links to the next one, forever: the client gives up at its page cap.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(|request: &Request| {
            let page: u64 = page_of(request)
                .and_then(|page| page.parse().ok())
                .unwrap_or(1);
            ResponseTemplate::new(200).set_body_json(json!({
                "data": [event(page)],
                "links": {"next": format!("{EVENTS}?only_not_ended_event=true&page={}", page + 1)}
            }))
        })
        .mount(&server)
        .await;

    let kktix = client(&server);
    let error = tokio::time::timeout(Duration::from_secs(20), kktix.hosting_events())
        .await
        .expect("endless pagination must be cut off")
        .expect_err("endless pagination is an error");
    assert!(
        matches!(error, UpstreamError::Malformed { .. }),
        "{error:?}"
    );
    let sent = received(&server).await.len();
    assert_eq!(sent, 100, "the page cap");
    assert_eq!(kktix.requests_sent(), 100);
}

// ---------------------------------------------------------------------------------------------
// 3. Tolerant listing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unparsable_listing_entries_are_skipped_and_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [
                event(1),
                {"id": "x"},
                {"id": 3, "name": "Three", "brand_new_field": {"nested": [1, 2]},
                 "start_at": "2025-01-01T00:00:00+08:00", "end_at": null},
                {"id": EMAIL, "name": NAME},
                {"id": 5}
            ],
            "something_else": true
        })))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let listing = kktix.hosting_events().await.expect("listing");
    assert_eq!(ids(&listing), vec![1, 3]);
    assert_eq!(listing.events[1].slug_or_id(), "3");
    assert_eq!(
        listing.events[1].start_at.as_deref(),
        Some("2025-01-01T00:00:00+08:00")
    );
    assert_eq!(listing.events[1].end_at, None);
    assert_eq!(listing.skipped.len(), 3, "{:?}", listing.skipped);
    assert!(listing.skipped[0].contains("#1"), "{:?}", listing.skipped);
    assert!(listing.skipped[0].contains("`id`"), "{:?}", listing.skipped);
    assert!(listing.skipped[1].contains("#3"), "{:?}", listing.skipped);
    assert!(listing.skipped[2].contains("#4"), "{:?}", listing.skipped);
    for skipped in &listing.skipped {
        assert_no_pii(skipped);
    }
    assert_eq!(received(&server).await.len(), 1);
    server.verify().await;
}

#[tokio::test]
async fn null_slug_is_tolerated_like_a_missing_one() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": 5, "name": "Five", "slug": null}, {"id": 6, "name": "Six"}]
        })))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let listing = kktix.hosting_events().await.expect("listing");
    assert!(listing.skipped.is_empty(), "{:?}", listing.skipped);
    assert_eq!(ids(&listing), vec![5, 6]);
    assert_eq!(listing.events[0].slug_or_id(), "5");
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Errors that must not be retried
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unauthorized_is_not_retried() {
    for status in [401u16, 403] {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(status).set_body_json(pii_body()))
            .expect(1)
            .mount(&server)
            .await;

        let kktix = client(&server);
        let error = kktix.hosting_events().await.expect_err("unauthorized");
        assert_eq!(
            error,
            UpstreamError::Unauthorized {
                upstream: "KKTIX",
                status
            }
        );
        assert!(!error.is_transient());
        assert_no_pii(&error.to_string());
        assert_no_pii(&format!("{error:?}"));
        assert_eq!(received(&server).await.len(), 1);
        assert_eq!(kktix.requests_sent(), 1);
        server.verify().await;
    }
}

#[tokio::test]
async fn missing_attendee_is_not_found_without_retry() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(attendee_path(7, 42)))
        .respond_with(ResponseTemplate::new(404).set_body_json(pii_body()))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    match kktix.attendee(7, 42).await {
        AttendeeFetch::Failed(error) => {
            assert_eq!(
                error,
                UpstreamError::NotFound {
                    upstream: "KKTIX",
                    what: "attendee 42 of event 7".to_owned()
                }
            );
            assert!(!error.is_transient());
            assert_no_pii(&error.to_string());
        }
        other => panic!("expected Failed(NotFound), got {other:?}"),
    }
    assert_eq!(received(&server).await.len(), 1);
    assert_eq!(kktix.requests_sent(), 1);
    server.verify().await;
}

#[tokio::test]
async fn other_client_errors_are_rejected_without_retry() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(422).set_body_json(pii_body()))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let error = kktix.attendance_books(1).await.expect_err("422");
    assert_eq!(
        error,
        UpstreamError::Rejected {
            upstream: "KKTIX",
            status: 422
        }
    );
    assert_no_pii(&error.to_string());
    assert_eq!(kktix.requests_sent(), 1);
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Rate limiting
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_with_retry_after_is_waited_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(pii_body()),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [event(1)]})))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let started = Instant::now();
    let listing = kktix
        .hosting_events()
        .await
        .expect("listing after the wait");
    let elapsed = started.elapsed();
    assert_eq!(ids(&listing), vec![1]);
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    assert_eq!(kktix.requests_sent(), 2);
    server.verify().await;
}

#[tokio::test]
async fn rate_limit_with_retry_after_in_json_body_is_waited_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 2)))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"retry_after": 0.3})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 2)))
        .respond_with(ResponseTemplate::new(200).set_body_json(attendee_record(2)))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let started = Instant::now();
    let fetched = kktix.attendee(1, 2).await;
    let elapsed = started.elapsed();
    assert!(matches!(fetched, AttendeeFetch::Fetched(_)), "{fetched:?}");
    assert!(elapsed >= Duration::from_millis(280), "{elapsed:?}");
    assert_eq!(kktix.requests_sent(), 2);
    server.verify().await;
}

#[tokio::test]
async fn rate_limit_longer_than_the_cap_is_not_waited_out() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "120")
                .set_body_json(pii_body()),
        )
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let started = Instant::now();
    let error = kktix.hosting_events().await.expect_err("rate limited");
    let elapsed = started.elapsed();
    assert_eq!(
        error,
        UpstreamError::RateLimited {
            upstream: "KKTIX",
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert!(error.is_transient());
    assert!(error.to_string().contains("120s"), "{error}");
    assert_no_pii(&error.to_string());
    assert!(
        elapsed < Duration::from_millis(900),
        "did not wait: {elapsed:?}"
    );
    assert_eq!(received(&server).await.len(), 1);
    assert_eq!(kktix.requests_sent(), 1);
    server.verify().await;
}

#[tokio::test]
async fn absurd_retry_after_is_rate_limited_not_a_panic() {
    for hint in ["1e20", "99999999999999999999"] {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", hint))
            .expect(1)
            .mount(&server)
            .await;

        let kktix = client(&server);
        let error = kktix.hosting_events().await.expect_err("rate limited");
        assert!(
            matches!(error, UpstreamError::RateLimited { .. }),
            "{hint}: {error:?}"
        );
        assert_eq!(kktix.requests_sent(), 1, "{hint}");
        server.verify().await;
    }
    // The same hint in a JSON body (`json_retry_after`).
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"retry_after": 1e20})))
        .expect(1)
        .mount(&server)
        .await;
    let kktix = client(&server);
    let error = kktix.hosting_events().await.expect_err("rate limited");
    assert!(
        matches!(error, UpstreamError::RateLimited { .. }),
        "{error:?}"
    );
    assert_eq!(kktix.requests_sent(), 1);
    server.verify().await;
}

#[tokio::test]
async fn rate_limit_without_hint_retries_until_attempts_run_out() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(429).set_body_json(pii_body()))
        .expect(3)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let started = Instant::now();
    let error = kktix.hosting_events().await.expect_err("rate limited");
    assert_eq!(
        error,
        UpstreamError::RateLimited {
            upstream: "KKTIX",
            retry_after: None
        }
    );
    assert_no_pii(&error.to_string());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(received(&server).await.len(), 3);
    assert_eq!(kktix.requests_sent(), 3);
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Server errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(500).set_body_json(pii_body()))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [event(8)]})))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let listing = kktix.hosting_events().await.expect("third time lucky");
    assert_eq!(ids(&listing), vec![8]);
    assert_eq!(received(&server).await.len(), 3);
    assert_eq!(kktix.requests_sent(), 3);
    server.verify().await;
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_max_attempts() {
    for status in [500u16, 502, 503] {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(status).set_body_json(pii_body()))
            .expect(3)
            .mount(&server)
            .await;

        let kktix = client(&server);
        let error = kktix.attendance_book(1, 2).await.expect_err("server error");
        assert_eq!(
            error,
            UpstreamError::Server {
                upstream: "KKTIX",
                status
            }
        );
        assert!(error.is_transient());
        assert_no_pii(&error.to_string());
        assert_eq!(received(&server).await.len(), 3);
        assert_eq!(kktix.requests_sent(), 3);
        server.verify().await;
    }
}

#[tokio::test]
async fn attendee_server_error_is_failed_not_broken() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500).set_body_json(attendee_record(3)))
        .expect(3)
        .mount(&server)
        .await;

    let kktix = client(&server);
    match kktix.attendee(1, 3).await {
        AttendeeFetch::Failed(UpstreamError::Server { status: 500, .. }) => {}
        other => panic!("expected Failed(Server), got {other:?}"),
    }
    assert_eq!(kktix.requests_sent(), 3);
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Timeouts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_hung_upstream_is_given_up_after_two_timeouts() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [event(1)]}))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(2)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let started = Instant::now();
    let error = kktix.hosting_events().await.expect_err("timeout");
    let elapsed = started.elapsed();
    assert_eq!(error, UpstreamError::Timeout { upstream: "KKTIX" });
    assert!(error.is_transient());
    // Two timeouts of ~300ms each end it (MAX_TIMEOUTS), never the server's full 2s.
    assert!(elapsed >= Duration::from_millis(550), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(received(&server).await.len(), 2);
    assert_eq!(kktix.requests_sent(), 2);
    server.verify().await;
}

#[tokio::test]
async fn attendee_timeout_is_failed() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(attendee_record(4))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(2)
        .mount(&server)
        .await;

    let kktix = client(&server);
    match kktix.attendee(1, 4).await {
        AttendeeFetch::Failed(UpstreamError::Timeout { upstream: "KKTIX" }) => {}
        other => panic!("expected Failed(Timeout), got {other:?}"),
    }
    assert_eq!(kktix.requests_sent(), 2);
    server.verify().await;
}

#[tokio::test]
async fn slow_but_in_time_answer_succeeds() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [event(1)]}))
                .set_delay(Duration::from_millis(100)),
        )
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let started = Instant::now();
    let listing = kktix.hosting_events().await.expect("in time");
    assert_eq!(ids(&listing), vec![1]);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(kktix.requests_sent(), 1);
    server.verify().await;
}

#[tokio::test]
async fn http_408_counts_as_a_timeout_and_is_retried() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(408))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 1}])))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let books = kktix.attendance_books(1).await.expect("second attempt");
    assert_eq!(books.len(), 1);
    assert_eq!(books[0].name, None);
    assert_eq!(kktix.requests_sent(), 2);
    server.verify().await;
}

#[tokio::test]
async fn unreachable_upstream_is_a_transport_error_after_retries() {
    // Bind a port, then free it: nothing listens there.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let kktix = KktixClient::new(
        &format!("http://{address}"),
        Sensitive::new(TOKEN.to_owned()),
        options(4),
    )
    .unwrap();
    let error = kktix.hosting_events().await.expect_err("nothing listens");
    assert!(
        matches!(
            error,
            UpstreamError::Transport { .. } | UpstreamError::Timeout { .. }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_no_pii(&error.to_string());
    assert_eq!(kktix.requests_sent(), 3);
}

// ---------------------------------------------------------------------------------------------
// 8. Malformed bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hosting_events_body_that_is_not_json_is_malformed() {
    for body in ["not json", r#"{"data": 5}"#, r#"{"events": []}"#, "[]"] {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .expect(1)
            .mount(&server)
            .await;

        let kktix = client(&server);
        let error = kktix.hosting_events().await.expect_err(body);
        assert!(
            matches!(
                error,
                UpstreamError::Malformed {
                    upstream: "KKTIX",
                    ..
                }
            ),
            "{body}: {error:?}"
        );
        assert!(!error.is_transient());
        // A malformed body is not retried.
        assert_eq!(kktix.requests_sent(), 1, "{body}");
        server.verify().await;
    }
}

#[tokio::test]
async fn attendance_books_with_wrong_shape_are_malformed() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([{"id": EMAIL, "name": NAME}])),
        )
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let error = kktix.attendance_books(6).await.expect_err("wrong shape");
    assert!(
        matches!(error, UpstreamError::Malformed { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("id"), "{error}");
    assert_no_pii(&error.to_string());
    assert_eq!(kktix.requests_sent(), 1);
    server.verify().await;
}

#[tokio::test]
async fn attendance_book_with_wrong_shape_is_malformed() {
    for body in [
        json!({"signin_status": 5}),
        json!({"signin_status": [[EMAIL, NAME]]}),
        json!({"signin_status": [[null]]}),
        json!({"no_signin_status": []}),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("{EVENTS}/6/attendance_books/2")))
            .respond_with(ResponseTemplate::new(200).set_body_json(&body))
            .expect(1)
            .mount(&server)
            .await;

        let kktix = client(&server);
        let error = kktix.attendance_book(6, 2).await.expect_err("wrong shape");
        assert!(
            matches!(
                error,
                UpstreamError::Malformed {
                    upstream: "KKTIX",
                    ..
                }
            ),
            "{body}: {error:?}"
        );
        assert!(error.to_string().contains("event 6"), "{error}");
        assert_no_pii(&error.to_string());
        assert_eq!(kktix.requests_sent(), 1);
        server.verify().await;
    }
}

#[tokio::test]
async fn truncated_attendee_body_is_broken_without_values() {
    let server = MockServer::start().await;
    let full = attendee_record(5).to_string();
    let truncated = &full[..full.find(EMAIL).unwrap() + EMAIL.len()];
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 5)))
        .respond_with(ResponseTemplate::new(200).set_body_string(truncated.to_owned()))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    match kktix.attendee(1, 5).await {
        AttendeeFetch::Broken(error) => {
            assert!(error.reason.contains("not valid JSON"), "{error}");
            assert_no_pii(&error.to_string());
            assert_no_pii(&format!("{error:?}"));
        }
        other => panic!("expected Broken, got {other:?}"),
    }
    assert_eq!(kktix.requests_sent(), 1);
    server.verify().await;
}

#[tokio::test]
async fn attendee_with_a_wrong_field_is_broken_naming_the_field_only() {
    let server = MockServer::start().await;
    let mut record = attendee_record(6);
    record["is_paid"] = json!(EMAIL);
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 6)))
        .respond_with(ResponseTemplate::new(200).set_body_json(record))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    match kktix.attendee(1, 6).await {
        AttendeeFetch::Broken(error) => {
            assert!(error.reason.contains("is_paid"), "{error}");
            assert_no_pii(&error.to_string());
            assert_no_pii(&format!("{error:?}"));
        }
        other => panic!("expected Broken, got {other:?}"),
    }
    assert_eq!(kktix.requests_sent(), 1);
    server.verify().await;
}

#[tokio::test]
async fn attendee_with_a_broken_answer_is_broken_naming_data() {
    let server = MockServer::start().await;
    let mut record = attendee_record(6);
    record["data"] = json!([["聯絡人 Email", {"value": EMAIL}]]);
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(record))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    match kktix.attendee(1, 6).await {
        AttendeeFetch::Broken(error) => {
            assert!(error.reason.contains("data"), "{error}");
            assert_no_pii(&error.to_string());
        }
        other => panic!("expected Broken, got {other:?}"),
    }
    server.verify().await;
}

#[tokio::test]
async fn attendee_record_for_another_id_is_broken() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 7)))
        .respond_with(ResponseTemplate::new(200).set_body_json(attendee_record(8)))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    match kktix.attendee(1, 7).await {
        AttendeeFetch::Broken(error) => {
            assert!(error.reason.contains("different attendee id"), "{error}");
            assert_no_pii(&error.to_string());
        }
        other => panic!("expected Broken, got {other:?}"),
    }
    assert_eq!(kktix.requests_sent(), 1);
    server.verify().await;
}

#[tokio::test]
async fn attendee_body_that_is_not_an_object_is_broken() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([EMAIL, NAME])))
        .expect(1)
        .mount(&server)
        .await;

    let kktix = client(&server);
    match kktix.attendee(1, 9).await {
        AttendeeFetch::Broken(error) => assert_no_pii(&error.to_string()),
        other => panic!("expected Broken, got {other:?}"),
    }
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Personal data never reaches an error message
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn error_messages_never_quote_a_body() {
    let statuses = [400u16, 401, 404, 429, 500, 503];
    for status in statuses {
        let server = MockServer::start().await;
        for body in [
            pii_body().to_string(),
            format!("<html>{NAME} {EMAIL}</html>"),
        ] {
            server.reset().await;
            Mock::given(any())
                .respond_with(
                    ResponseTemplate::new(status)
                        .insert_header("x-attendee", EMAIL)
                        .set_body_string(body),
                )
                .mount(&server)
                .await;

            let kktix = client(&server);
            let listing = kktix.hosting_events().await.expect_err("error status");
            let book = kktix.attendance_book(1, 2).await.expect_err("error status");
            let fetched = kktix.attendee(1, 3).await;
            let AttendeeFetch::Failed(attendee) = &fetched else {
                panic!("{status}: expected Failed, got {fetched:?}");
            };
            for error in [&listing, &book, attendee] {
                assert_no_pii(&error.to_string());
                assert_no_pii(&format!("{error:?}"));
            }
        }
    }

    // A body that does parse but carries personal data in the wrong places.
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": EMAIL, "name": NAME}, {"id": 1, "name": 5, "slug": EMAIL}],
            "signin_status": [[EMAIL]]
        })))
        .mount(&server)
        .await;
    let kktix = client(&server);
    let listing = kktix.hosting_events().await.expect("listing");
    assert_eq!(listing.skipped.len(), 2);
    for skipped in &listing.skipped {
        assert_no_pii(skipped);
    }
    let book = kktix.attendance_book(1, 2).await.expect_err("not ids");
    assert_no_pii(&book.to_string());
    let books = kktix.attendance_books(1).await.expect_err("not a list");
    assert_no_pii(&books.to_string());
}

// ---------------------------------------------------------------------------------------------
// 10. Bounded concurrency
// ---------------------------------------------------------------------------------------------

/// Mounts an attendee endpoint answering after `delay` and recording when each request
/// arrived. A request's answer leaves the server no earlier than `arrival + delay`, so with at
/// most `limit` requests in flight, request `i + limit` (by arrival) cannot arrive before
/// request `i`'s answer left: `arrival[i + limit] - arrival[i] >= delay`.
async fn timed_attendees(server: &MockServer, delay: Duration) -> Arc<Mutex<Vec<Instant>>> {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&arrivals);
    Mock::given(method("GET"))
        .respond_with(move |request: &Request| {
            recorded.lock().unwrap().push(Instant::now());
            let id: u64 = request
                .url
                .path_segments()
                .and_then(|mut segments| segments.next_back())
                .and_then(|last| last.parse().ok())
                .unwrap_or(0);
            ResponseTemplate::new(200)
                .set_body_json(attendee_record(id))
                .set_delay(delay)
        })
        .mount(server)
        .await;
    arrivals
}

/// Largest number of arrivals within any window shorter than `delay`: an upper bound on the
/// requests that were in flight together is `limit` iff this is at most `limit`.
fn max_arrivals_within(arrivals: &[Instant], delay: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    let mut best = 0;
    for (i, start) in sorted.iter().enumerate() {
        let within = sorted[i..]
            .iter()
            .take_while(|at| at.duration_since(*start) < delay)
            .count();
        best = best.max(within);
    }
    best
}

#[tokio::test]
async fn attendees_respects_the_concurrency_bound_and_input_order() {
    let server = MockServer::start().await;
    let delay = Duration::from_millis(50);
    let arrivals = timed_attendees(&server, delay).await;

    let kktix = client_with(&server, options(4));
    // Not sorted: the output must follow the input, not the ids.
    let ids: Vec<u64> = (0..40u64).map(|i| 1000 + (i * 7) % 40).collect();
    let started = Instant::now();
    let results = kktix.attendees(77, &ids).await;
    let elapsed = started.elapsed();

    assert_eq!(results.len(), 40);
    for ((id, fetched), expected) in results.iter().zip(&ids) {
        assert_eq!(id, expected);
        match fetched {
            AttendeeFetch::Fetched(attendee) => assert_eq!(attendee.id, *expected),
            other => panic!("{id}: expected Fetched, got {other:?}"),
        }
    }
    let requests = received(&server).await;
    assert_eq!(requests.len(), 40);
    assert_eq!(kktix.requests_sent(), 40);
    for request in &requests {
        assert!(request
            .url
            .path()
            .starts_with(&format!("{EVENTS}/77/attendees/")));
    }

    // 40 requests, 4 at a time, 50ms each: at least 10 rounds; fully serial would be 2s.
    assert!(
        elapsed >= Duration::from_millis(450),
        "faster than 4 in flight allows: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1900),
        "no concurrency at all: {elapsed:?}"
    );
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 40);
    let peak = max_arrivals_within(&arrivals, delay);
    assert!(peak <= 4, "{peak} requests in flight at once");
    assert!(peak >= 2, "requests never overlapped: {peak}");
}

#[tokio::test]
async fn default_concurrency_is_eight() {
    let defaults = KktixOptions::default();
    assert_eq!(defaults.concurrency, 8);
    assert_eq!(defaults.timeout, Duration::from_secs(10));
    assert_eq!(defaults.retry.max_attempts, 4);

    let server = MockServer::start().await;
    let delay = Duration::from_millis(50);
    let arrivals = timed_attendees(&server, delay).await;
    let kktix = client_with(&server, KktixOptions::default());
    let ids: Vec<u64> = (1..=32).collect();
    let results = kktix.attendees(1, &ids).await;
    assert_eq!(results.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    assert!(results
        .iter()
        .all(|(_, fetched)| matches!(fetched, AttendeeFetch::Fetched(_))));
    assert_eq!(received(&server).await.len(), 32);
    let arrivals = arrivals.lock().unwrap().clone();
    let peak = max_arrivals_within(&arrivals, delay);
    assert!(peak <= 8, "{peak} requests in flight at once");
    assert!(peak > 4, "the default allows 8 at once, saw at most {peak}");
}

#[tokio::test]
async fn zero_concurrency_still_makes_progress() {
    let server = MockServer::start().await;
    let delay = Duration::from_millis(20);
    let arrivals = timed_attendees(&server, delay).await;
    let kktix = client_with(&server, options(0));
    let results = tokio::time::timeout(Duration::from_secs(5), kktix.attendees(1, &[3, 1, 2]))
        .await
        .expect("concurrency 0 must not hang");
    assert_eq!(
        results.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![3, 1, 2]
    );
    assert!(results
        .iter()
        .all(|(_, fetched)| matches!(fetched, AttendeeFetch::Fetched(_))));
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(max_arrivals_within(&arrivals, delay), 1);
}

#[tokio::test]
async fn attendees_reports_each_outcome_in_input_order() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 10)))
        .respond_with(ResponseTemplate::new(200).set_body_json(attendee_record(10)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 11)))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 12)))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"id\": 12, "))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 13)))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&server)
        .await;

    let kktix = client(&server);
    let results = kktix.attendees(1, &[13, 12, 11, 10]).await;
    let order: Vec<u64> = results.iter().map(|(id, _)| *id).collect();
    assert_eq!(order, vec![13, 12, 11, 10]);
    assert!(matches!(
        results[0].1,
        AttendeeFetch::Failed(UpstreamError::Server { status: 503, .. })
    ));
    assert!(matches!(results[1].1, AttendeeFetch::Broken(_)));
    assert!(matches!(
        results[2].1,
        AttendeeFetch::Failed(UpstreamError::NotFound { .. })
    ));
    assert!(matches!(results[3].1, AttendeeFetch::Fetched(_)));
    assert_eq!(kktix.requests_sent(), 6);
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 11. Request accounting
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_sent_counts_retries() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(attendee_path(1, 2)))
        .respond_with(ResponseTemplate::new(200).set_body_json(attendee_record(2)))
        .mount(&server)
        .await;

    let kktix = client(&server);
    assert_eq!(kktix.requests_sent(), 0);
    let listing = kktix.hosting_events().await.expect("listing");
    assert!(listing.events.is_empty() && listing.skipped.is_empty());
    assert_eq!(kktix.requests_sent(), 3);
    assert!(matches!(
        kktix.attendee(1, 2).await,
        AttendeeFetch::Fetched(_)
    ));
    assert_eq!(kktix.requests_sent(), 4);
    assert_eq!(kktix.requests_sent(), received(&server).await.len() as u64);
}
