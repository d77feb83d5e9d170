//! The mail providers against fakes of their documented wire formats (`wiremock`): Mailgun
//! batch sending, Klaviyo's Events API, and the local outbox of `.eml` files.
//!
//! Every failure mode is checked for what the provider answered *and* how many requests
//! reached the server, and no failure reason may carry an address, a name or a key.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use autopilot_core::access::Link;
use autopilot_core::mail::{
    Invitation, KlaviyoProvider, MailOutcome, MailProvider, MailResult, MailSettings, MailTemplate,
    MailgunProvider, OutboxProvider, SettleQuery, Settlement, KLAVIYO_REVISION,
    MAILGUN_BATCH_LIMIT,
};
use autopilot_core::pii::{EmailAddress, Sensitive};
use autopilot_core::store::AttendeeKey;
use autopilot_core::upstream::HttpOptions;
use autopilot_test_support::mailgun::{EventsMode, MailgunFake, SendFault};
use serde_json::Value;
use wiremock::matchers::{basic_auth, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "key-s3cret-api-key";
const DOMAIN: &str = "mg.example.com";
const MESSAGES: &str = "/v3/mg.example.com/messages";
const EVENTS: &str = "/api/events";
const FROM: &str = "PyCon Taiwan <registration@pycon.tw>";
const EMAIL: &str = "xxx@gmail.com";
const NAME: &str = "李xx";
const METRIC: &str = "KKTIX Autopilot Invitation";

fn options() -> HttpOptions {
    autopilot_test_support::fast::http(300, 3)
}

fn template() -> MailTemplate {
    MailTemplate::from_settings(&MailSettings {
        from: FROM.into(),
        ..MailSettings::default()
    })
    .expect("the default template compiles")
}

fn invitation(attendee_id: u64, email: &str, ticket: &str) -> Invitation {
    Invitation {
        key: AttendeeKey {
            event_id: 7,
            attendee_id,
        },
        email: EmailAddress::parse(email).expect("address parses"),
        name: Sensitive::new(format!("{NAME}{attendee_id}")),
        event_name: "PyCon Taiwan 2026".into(),
        ticket_name: ticket.into(),
        links: vec![Link {
            label: "YouTube".into(),
            url: "https://youtu.be/abc".into(),
        }],
        venue_url: Some("https://app.gather.town/app/xyz/pycon".into()),
        checkin_code: Some(format!("C{attendee_id}")),
        reg_no: Some(100 + attendee_id),
        intent: None,
    }
}

fn invitations(count: u64, ticket: &str) -> Vec<Invitation> {
    (1..=count)
        .map(|i| invitation(i, &format!("buyer{i}@example.com"), ticket))
        .collect()
}

fn one() -> Vec<Invitation> {
    vec![invitation(1, EMAIL, "Regular 一般票")]
}

fn failed(result: &MailResult) -> (&str, bool) {
    match &result.outcome {
        MailOutcome::Failed { reason, transient } => (reason.as_str(), *transient),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A failure reason must name no personal data and no secret.
fn assert_clean(reason: &str) {
    for secret in [EMAIL, NAME, KEY, "buyer1@example.com"] {
        assert!(!reason.contains(secret), "{reason:?} leaks {secret}");
    }
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Mailgun
// ---------------------------------------------------------------------------------------

fn mailgun(server: &MockServer, tags: &[&str]) -> MailgunProvider {
    MailgunProvider::new(
        &server.uri(),
        Sensitive::new(KEY.to_owned()),
        DOMAIN,
        FROM,
        tags.iter().map(|t| t.to_string()).collect(),
        options(),
    )
    .expect("provider builds")
}

fn queued() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "id": "<20260101000000.1.ABCDEF@mg.example.com>",
        "message": "Queued. Thank you."
    }))
}

/// The form fields of a request, in order.
fn form(request: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

fn all<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn only<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    let values = all(fields, name);
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    values[0]
}

#[tokio::test]
async fn mailgun_sends_a_full_batch_in_one_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(basic_auth("api", KEY))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(queued())
        .expect(1)
        .mount(&server)
        .await;
    let provider = mailgun(&server, &["pycon-2026", "second-is-dropped"]);
    let batch = invitations(MAILGUN_BATCH_LIMIT as u64, "Regular 一般票");
    let results = provider.send(&template(), &batch, false).await;

    assert_eq!(results.len(), batch.len());
    for (result, invitation) in results.iter().zip(&batch) {
        assert_eq!(result.key, invitation.key, "in input order");
        assert_eq!(
            result.outcome,
            MailOutcome::Sent {
                provider: "mailgun".into(),
                message_id: Some("<20260101000000.1.ABCDEF@mg.example.com>".into()),
            }
        );
    }
    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    let fields = form(&received[0]);
    assert_eq!(only(&fields, "from"), FROM);
    let to = all(&fields, "to");
    assert_eq!(to.len(), MAILGUN_BATCH_LIMIT);
    assert_eq!(to.iter().collect::<HashSet<_>>().len(), MAILGUN_BATCH_LIMIT);
    assert_eq!(only(&fields, "o:tracking"), "yes");
    assert_eq!(only(&fields, "o:tracking-clicks"), "htmlonly");
    assert_eq!(only(&fields, "o:tracking-opens"), "yes");
    assert_eq!(only(&fields, "v:autopilot-key"), "%recipient.key%");
    assert_eq!(
        all(&fields, "o:tag"),
        vec![
            "PyCon Taiwan 2026",
            "Regular %E4%B8%80%E8%88%AC%E7%A5%A8",
            "pycon-2026"
        ]
    );

    let variables: BTreeMap<String, Value> =
        serde_json::from_str(only(&fields, "recipient-variables")).expect("a JSON object");
    assert_eq!(variables.len(), MAILGUN_BATCH_LIMIT);
    for invitation in &batch {
        let entry = &variables[invitation.email.expose()];
        let id = invitation.key.attendee_id;
        assert_eq!(entry["key"], format!("7/{id}"));
        assert_eq!(entry["name"], format!("{NAME}{id}"));
        assert_eq!(entry["name_html"], format!("{NAME}{id}"));
        assert_eq!(entry["checkin_code"], format!("C{id}"));
        assert_eq!(entry["reg_no"], format!("{}", 100 + id));
    }

    // Rendered once, with placeholders instead of anyone's values.
    let (subject, text, html) = (
        only(&fields, "subject"),
        only(&fields, "text"),
        only(&fields, "html"),
    );
    assert!(subject.contains("PyCon Taiwan 2026") && !subject.contains('\n'));
    assert!(text.contains("%recipient.name% 您好") && text.contains("Hi %recipient.name%,"));
    assert!(text.contains("%recipient.checkin_code%") && text.contains("%recipient.reg_no%"));
    assert!(html.contains("%recipient.name_html% 您好"));
    assert!(html.contains("%recipient.checkin_code_html%"));
    assert!(!text.contains(NAME) && !html.contains(NAME));
    assert!(html.contains(r#"<a href="https://youtu.be/abc">YouTube</a>"#));
}

#[tokio::test]
async fn mailgun_splits_past_the_batch_limit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(queued())
        .mount(&server)
        .await;
    let provider = mailgun(&server, &[]);
    let batch = invitations(MAILGUN_BATCH_LIMIT as u64 + 1, "Regular");
    let results = provider.send(&template(), &batch, false).await;
    assert!(results
        .iter()
        .all(|r| matches!(r.outcome, MailOutcome::Sent { .. })));
    let received = requests(&server).await;
    assert_eq!(received.len(), 2);
    let sizes: Vec<usize> = received.iter().map(|r| all(&form(r), "to").len()).collect();
    assert_eq!(sizes, vec![MAILGUN_BATCH_LIMIT, 1]);
    assert_eq!(provider.attempts(), 2);
}

#[tokio::test]
async fn mailgun_sends_one_request_per_ticket_type_with_its_tags() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(queued())
        .mount(&server)
        .await;
    let provider = mailgun(&server, &["autopilot"]);
    let mut batch = Vec::new();
    for i in 1..=6 {
        let ticket = if i % 2 == 0 { "Individual" } else { "Regular" };
        batch.push(invitation(i, &format!("buyer{i}@example.com"), ticket));
    }
    let results = provider.send(&template(), &batch, false).await;
    let keys: Vec<u64> = results.iter().map(|r| r.key.attendee_id).collect();
    assert_eq!(keys, vec![1, 2, 3, 4, 5, 6], "results keep the input order");

    let received = requests(&server).await;
    assert_eq!(received.len(), 2);
    let mut seen = BTreeMap::new();
    for request in &received {
        let fields = form(request);
        let tags: Vec<String> = all(&fields, "o:tag")
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[0], "PyCon Taiwan 2026");
        assert_eq!(tags[2], "autopilot");
        let mut to: Vec<String> = all(&fields, "to").iter().map(|t| t.to_string()).collect();
        to.sort();
        seen.insert(tags[1].clone(), to);
        assert!(
            only(&fields, "text").contains(&tags[1]),
            "the ticket's own text"
        );
    }
    assert_eq!(
        seen["Regular"],
        vec![
            "buyer1@example.com",
            "buyer3@example.com",
            "buyer5@example.com"
        ]
    );
    assert_eq!(
        seen["Individual"],
        vec![
            "buyer2@example.com",
            "buyer4@example.com",
            "buyer6@example.com"
        ]
    );
}

#[tokio::test]
async fn mailgun_never_puts_one_address_twice_in_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(queued())
        .mount(&server)
        .await;
    let provider = mailgun(&server, &[]);
    // One buyer, two tickets of one type: each ticket needs its own recipient variables.
    let batch = vec![
        invitation(1, EMAIL, "Regular"),
        invitation(2, "XXX@gmail.com", "Regular"),
        invitation(3, "other@example.com", "Regular"),
    ];
    let results = provider.send(&template(), &batch, false).await;
    assert!(results
        .iter()
        .all(|r| matches!(r.outcome, MailOutcome::Sent { .. })));
    let received = requests(&server).await;
    assert_eq!(received.len(), 2);
    let mut keys = Vec::new();
    for request in &received {
        let fields = form(request);
        let variables: BTreeMap<String, Value> =
            serde_json::from_str(only(&fields, "recipient-variables")).expect("JSON");
        assert_eq!(variables.len(), all(&fields, "to").len());
        keys.extend(
            variables
                .values()
                .map(|v| v["key"].as_str().unwrap_or("").to_owned()),
        );
    }
    keys.sort();
    assert_eq!(keys, vec!["7/1", "7/2", "7/3"]);
}

#[tokio::test]
async fn mailgun_escapes_names_for_the_html_part() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(queued())
        .mount(&server)
        .await;
    let provider = mailgun(&server, &[]);
    let mut script = invitation(1, "a@example.com", "Regular");
    script.name = Sensitive::new("<script>alert(1)</script>".into());
    let mut irish = invitation(2, "b@example.com", "Regular");
    irish.name = Sensitive::new("O'Brien & 陳".into());
    provider.send(&template(), &[script, irish], false).await;
    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    let fields = form(&received[0]);
    let variables: BTreeMap<String, Value> =
        serde_json::from_str(only(&fields, "recipient-variables")).expect("JSON");
    assert_eq!(
        variables["a@example.com"]["name"],
        "<script>alert(1)</script>"
    );
    assert_eq!(
        variables["a@example.com"]["name_html"],
        "&lt;script&gt;alert(1)&lt;/script&gt;"
    );
    assert_eq!(variables["b@example.com"]["name"], "O'Brien & 陳");
    assert_eq!(
        variables["b@example.com"]["name_html"],
        "O&#x27;Brien &amp; 陳"
    );
}

#[tokio::test]
async fn mailgun_leaves_out_what_no_recipient_has() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(queued())
        .mount(&server)
        .await;
    let provider = mailgun(&server, &[]);
    let mut with = invitation(1, "a@example.com", "Regular");
    with.checkin_code = Some("C1".into());
    let mut without = invitation(2, "b@example.com", "Regular");
    without.checkin_code = None;
    provider.send(&template(), &[with, without], false).await;
    let received = requests(&server).await;
    assert_eq!(received.len(), 2, "different content, different messages");
    for request in &received {
        let fields = form(request);
        let to = only(&fields, "to");
        let text = only(&fields, "text");
        assert_eq!(text.contains("報到碼"), to == "a@example.com", "{text}");
    }
}

#[tokio::test]
async fn mailgun_bad_credentials_mark_it_failing_not_the_attendee() {
    for status in [401, 403] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES))
            .respond_with(ResponseTemplate::new(status).set_body_string("Forbidden"))
            .mount(&server)
            .await;
        let results = mailgun(&server, &[]).send(&template(), &one(), false).await;
        let (reason, transient) = failed(&results[0]);
        // The deployment's fault, not the attendee's: no per-attendee backoff, the provider
        // is unhealthy until the key is fixed, and the next run's probe tries again.
        assert!(transient, "{status}");
        assert!(results[0].outcome.provider_failing());
        assert!(reason.contains(&status.to_string()), "{reason}");
        assert_clean(reason);
        assert_eq!(requests(&server).await.len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn mailgun_honours_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_string("Too many requests"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(queued())
        .mount(&server)
        .await;
    let started = Instant::now();
    let results = mailgun(&server, &[]).send(&template(), &one(), false).await;
    assert!(matches!(results[0].outcome, MailOutcome::Sent { .. }));
    assert!(started.elapsed() >= Duration::from_millis(950), "waited");
    assert_eq!(requests(&server).await.len(), 2);
}

fn uncertain(result: &MailResult) -> &str {
    match &result.outcome {
        MailOutcome::Uncertain { reason } => reason.as_str(),
        other => panic!("expected an uncertain outcome, got {other:?}"),
    }
}

#[tokio::test]
async fn mailgun_server_errors_are_uncertain_and_never_retried() {
    for status in [500, 502, 503] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        let results = mailgun(&server, &[]).send(&template(), &one(), false).await;
        let reason = uncertain(&results[0]);
        assert!(reason.contains(&status.to_string()), "{reason}");
        assert_clean(reason);
        assert_eq!(
            requests(&server).await.len(),
            1,
            "Mailgun may have queued it: {status}"
        );
    }
}

#[tokio::test]
async fn mailgun_timeout_is_uncertain_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(queued().set_delay(Duration::from_millis(1000)))
        .mount(&server)
        .await;
    let provider = mailgun(&server, &[]);
    let results = provider.send(&template(), &one(), false).await;
    let reason = uncertain(&results[0]);
    assert!(reason.contains("in time"), "{reason}");
    assert_clean(reason);
    assert_eq!(provider.attempts(), 1, "it may already be queued");
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn mailgun_stops_at_the_first_failure_of_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    // Two ticket types: two requests, the second never tried once the first failed.
    let mut batch = invitations(3, "Regular 一般票");
    batch.extend(invitations(2, "Student 學生票").into_iter().map(|mut i| {
        i.key.attendee_id += 10;
        i
    }));
    let results = mailgun(&server, &[]).send(&template(), &batch, false).await;
    assert_eq!(requests(&server).await.len(), 1);
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| match &r.outcome {
            MailOutcome::Uncertain { .. } => "uncertain",
            MailOutcome::NotAttempted { .. } => "not attempted",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "uncertain",
            "uncertain",
            "uncertain",
            "not attempted",
            "not attempted"
        ]
    );
}

#[tokio::test]
async fn mailgun_halves_a_refused_batch_until_the_bad_address_stands_alone() {
    let server = MockServer::start().await;
    let fake = MailgunFake::new(DOMAIN);
    fake.mount(&server).await;
    fake.refuse("buyer6@example.com");
    let batch = invitations(8, "Regular 一般票");
    let results = mailgun(&server, &[]).send(&template(), &batch, false).await;
    for result in &results {
        match result.key.attendee_id {
            6 => {
                let (reason, transient) = failed(result);
                assert!(!transient, "refused for good");
                assert_clean(reason);
            }
            _ => assert!(
                matches!(result.outcome, MailOutcome::Sent { .. }),
                "{result:?}"
            ),
        }
    }
    // 8 → 4+4 → 2+2 (in the bad half) → 1+1: one request per halving step and side.
    assert_eq!(fake.sends().len(), 7);
    let queued = fake.queued_per_address();
    assert_eq!(queued.len(), 7);
    assert!(queued.values().all(|c| *c == 1), "{queued:?}");
}

fn intent_query(intent: &str, ids: std::ops::RangeInclusive<u64>) -> SettleQuery {
    SettleQuery {
        intent: intent.into(),
        since: chrono::Utc::now() - chrono::Duration::seconds(30),
        keys: ids
            .map(|attendee_id| AttendeeKey {
                event_id: 7,
                attendee_id,
            })
            .collect(),
    }
}

fn with_intent(mut batch: Vec<Invitation>, intent: &str) -> Vec<Invitation> {
    for invitation in &mut batch {
        invitation.intent = Some(intent.into());
    }
    batch
}

#[tokio::test]
async fn mailgun_carries_the_intent_and_settles_it_from_accepted_events() {
    let server = MockServer::start().await;
    let fake = MailgunFake::new(DOMAIN);
    fake.mount(&server).await;
    fake.set_page_size(2);
    let provider = mailgun(&server, &[]);
    // Intent A: queued but answered 500. Intent B: never queued (503).
    fake.script([SendFault::QueuedButFailed, SendFault::Unavailable]);
    let a = provider
        .send(
            &template(),
            &with_intent(invitations(5, "Regular 一般票"), "run-1.1"),
            false,
        )
        .await;
    assert!(a
        .iter()
        .all(|r| matches!(r.outcome, MailOutcome::Uncertain { .. })));
    let mut second = invitations(8, "Regular 一般票");
    second.drain(..5);
    provider
        .send(&template(), &with_intent(second, "run-1.2"), false)
        .await;
    assert_eq!(fake.sends()[0].intent.as_deref(), Some("run-1.1"));
    form(&requests(&server).await[0])
        .iter()
        .find(|(k, v)| k == "v:autopilot-key" && v == "%recipient.key%")
        .expect("each recipient's key rides as a custom variable");

    let settled = provider
        .settle(&[
            intent_query("run-1.1", 1..=5),
            intent_query("run-1.2", 6..=8),
        ])
        .await;
    assert_eq!(settled.len(), 2);
    match &settled[0].settlement {
        Settlement::Settled { accepted } => {
            let ids: Vec<u64> = accepted.iter().map(|k| k.attendee_id).collect();
            assert_eq!(ids, [1, 2, 3, 4, 5]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        settled[1].settlement,
        Settlement::Settled {
            accepted: Vec::new()
        }
    );
    assert!(fake.events_requests() >= 3, "followed paging.next");
}

#[tokio::test]
async fn mailgun_settles_nothing_while_its_events_cannot_be_read() {
    let server = MockServer::start().await;
    let fake = MailgunFake::new(DOMAIN);
    fake.mount(&server).await;
    let provider = mailgun(&server, &[]);
    for mode in [EventsMode::Down, EventsMode::Malformed] {
        fake.set_events(mode);
        let settled = provider.settle(&[intent_query("run-1.1", 1..=2)]).await;
        match &settled[0].settlement {
            Settlement::Pending { failed, reason, .. } => {
                assert!(*failed, "{mode:?}");
                assert_clean(reason);
            }
            other => panic!("{mode:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn mailgun_refuses_a_next_page_on_another_host() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/mg.example.com/events"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "items": [{"event": "accepted", "user-variables": {"autopilot-intent": "run-1.1", "autopilot-key": "7/1"}}],
            "paging": {"next": "https://attacker.example/v3/mg.example.com/events/abc"}
        })))
        .mount(&server)
        .await;
    let settled = mailgun(&server, &[])
        .settle(&[intent_query("run-1.1", 1..=2)])
        .await;
    assert!(
        matches!(
            settled[0].settlement,
            Settlement::Pending { failed: true, .. }
        ),
        "a page cut short is not an answer: {:?}",
        settled[0].settlement
    );
    assert_eq!(
        requests(&server).await.len(),
        1,
        "the key never left for another host"
    );
}

#[tokio::test]
async fn mailgun_waits_for_complete_events_when_told_to() {
    let server = MockServer::start().await;
    let fake = MailgunFake::new(DOMAIN);
    fake.mount(&server).await;
    let provider = mailgun(&server, &[]).with_settle_after(Duration::from_secs(1800));
    let settled = provider.settle(&[intent_query("run-1.1", 1..=2)]).await;
    assert!(
        matches!(
            settled[0].settlement,
            Settlement::Pending { failed: false, .. }
        ),
        "{:?}",
        settled[0].settlement
    );
}

#[tokio::test]
async fn mailgun_connection_refused_is_transient() {
    // A port nothing listens on (a dropped MockServer goes back to wiremock's pool, still up).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let uri = format!("http://127.0.0.1:{port}");
    let provider = MailgunProvider::new(
        &uri,
        Sensitive::new(KEY.to_owned()),
        DOMAIN,
        FROM,
        Vec::new(),
        options(),
    )
    .expect("builds");
    let results = provider.send(&template(), &one(), false).await;
    let (reason, transient) = failed(&results[0]);
    assert!(transient);
    assert_clean(reason);
    assert_eq!(
        provider.attempts(),
        3,
        "never reached Mailgun: safe to retry"
    );
}

#[tokio::test]
async fn mailgun_unreadable_success_is_still_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>ok</html>"))
        .mount(&server)
        .await;
    let results = mailgun(&server, &[]).send(&template(), &one(), false).await;
    assert_eq!(
        results[0].outcome,
        MailOutcome::Sent {
            provider: "mailgun".into(),
            message_id: None
        }
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn mailgun_rejection_never_echoes_the_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "message": format!("'to' parameter is not a valid address: {EMAIL} ({NAME}1)")
        })))
        .mount(&server)
        .await;
    let results = mailgun(&server, &[]).send(&template(), &one(), false).await;
    let (reason, transient) = failed(&results[0]);
    assert!(!transient);
    assert!(reason.contains("400"), "{reason}");
    assert_clean(reason);
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn mailgun_resend_sends_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(queued())
        .mount(&server)
        .await;
    let provider = mailgun(&server, &[]);
    provider.send(&template(), &one(), false).await;
    provider.send(&template(), &one(), true).await;
    assert_eq!(requests(&server).await.len(), 2);
}

#[test]
fn mailgun_rejects_a_domain_that_is_not_one() {
    for domain in ["", "a/b", "mg.example.com?x", "two words"] {
        assert!(
            MailgunProvider::new(
                "https://api.mailgun.net",
                Sensitive::new(KEY.to_owned()),
                domain,
                FROM,
                Vec::new(),
                HttpOptions::default(),
            )
            .is_err(),
            "{domain:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Klaviyo
// ---------------------------------------------------------------------------------------

fn klaviyo(server: &MockServer) -> KlaviyoProvider {
    KlaviyoProvider::new(
        &server.uri(),
        Sensitive::new(KEY.to_owned()),
        METRIC,
        options(),
    )
    .expect("provider builds")
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(202)
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

#[tokio::test]
async fn klaviyo_sends_one_event_per_invitation_in_its_wire_format() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(header(
            "authorization",
            format!("Klaviyo-API-Key {KEY}").as_str(),
        ))
        .and(header("revision", KLAVIYO_REVISION))
        .and(header("accept", "application/vnd.api+json"))
        .and(header("content-type", "application/vnd.api+json"))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let results = klaviyo(&server).send(&template(), &one(), false).await;
    assert_eq!(
        results[0].outcome,
        MailOutcome::Sent {
            provider: "klaviyo".into(),
            message_id: Some("7/1".into()),
        }
    );
    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    let event = body(&received[0]);
    let data = &event["data"];
    assert_eq!(data["type"], "event");
    let attributes = &data["attributes"];
    assert_eq!(attributes["unique_id"], "7/1");
    assert_eq!(attributes["metric"]["data"]["type"], "metric");
    assert_eq!(attributes["metric"]["data"]["attributes"]["name"], METRIC);
    assert_eq!(attributes["profile"]["data"]["type"], "profile");
    assert_eq!(
        attributes["profile"]["data"]["attributes"],
        serde_json::json!({"email": EMAIL, "first_name": format!("{NAME}1")})
    );
    let time = attributes["time"].as_str().expect("a time");
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    assert_eq!(
        attributes["properties"],
        serde_json::json!({
            "event": "PyCon Taiwan 2026",
            "ticket": "Regular 一般票",
            "links": [{"label": "YouTube", "url": "https://youtu.be/abc"}],
            "venue_url": "https://app.gather.town/app/xyz/pycon",
            "checkin_code": "C1",
            "reg_no": 101,
            "attendee_key": "7/1",
        })
    );
}

#[tokio::test]
async fn klaviyo_resend_gets_a_new_unique_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(accepted())
        .mount(&server)
        .await;
    let provider = klaviyo(&server);
    provider.send(&template(), &one(), false).await;
    provider.send(&template(), &one(), false).await;
    let results = provider.send(&template(), &one(), true).await;
    let ids: Vec<String> = requests(&server)
        .await
        .iter()
        .map(|r| {
            body(r)["data"]["attributes"]["unique_id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(ids[0], "7/1");
    assert_eq!(ids[1], "7/1", "a repeat is deduplicated by Klaviyo");
    assert!(ids[2].starts_with("7/1/resend-"), "{}", ids[2]);
    let seconds: u64 = ids[2]["7/1/resend-".len()..].parse().expect("unix seconds");
    assert!(seconds > 1_700_000_000);
    assert!(matches!(
        &results[0].outcome,
        MailOutcome::Sent { message_id: Some(id), .. } if *id == ids[2]
    ));
}

#[tokio::test]
async fn klaviyo_leaves_out_missing_values() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(accepted())
        .mount(&server)
        .await;
    let mut bare = invitation(1, EMAIL, "Regular");
    bare.name = Sensitive::new("  ".into());
    bare.venue_url = None;
    bare.checkin_code = None;
    bare.reg_no = None;
    klaviyo(&server).send(&template(), &[bare], false).await;
    let event = body(&requests(&server).await[0]);
    let attributes = &event["data"]["attributes"];
    assert_eq!(
        attributes["profile"]["data"]["attributes"],
        serde_json::json!({"email": EMAIL})
    );
    let properties = attributes["properties"].as_object().expect("an object");
    for absent in ["venue_url", "checkin_code", "reg_no"] {
        assert!(!properties.contains_key(absent), "{absent}");
    }
}

#[tokio::test]
async fn klaviyo_answers_in_input_order_one_failure_apart() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_string_contains("buyer3@example.com"))
        .respond_with(ResponseTemplate::new(400))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(accepted().set_delay(Duration::from_millis(20)))
        .mount(&server)
        .await;
    let batch = invitations(9, "Regular");
    let results = klaviyo(&server).send(&template(), &batch, false).await;
    let keys: Vec<u64> = results.iter().map(|r| r.key.attendee_id).collect();
    assert_eq!(keys, (1..=9).collect::<Vec<_>>());
    for result in &results {
        let ok = matches!(result.outcome, MailOutcome::Sent { .. });
        assert_eq!(ok, result.key.attendee_id != 3);
    }
    assert_eq!(requests(&server).await.len(), 9);
}

#[tokio::test]
async fn klaviyo_bad_credentials_fail_for_good() {
    for status in [401, 403] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(EVENTS))
            .respond_with(
                ResponseTemplate::new(status).set_body_json(serde_json::json!({
                    "errors": [{"status": status, "code": "not_authenticated",
                                "title": "Authentication credentials were not provided.",
                                "detail": "Missing or invalid private key."}]
                })),
            )
            .mount(&server)
            .await;
        let results = klaviyo(&server).send(&template(), &one(), false).await;
        let (reason, transient) = failed(&results[0]);
        assert!(!transient);
        assert!(reason.contains(&status.to_string()), "{reason}");
        assert_clean(reason);
        assert_eq!(requests(&server).await.len(), 1);
    }
}

#[tokio::test]
async fn klaviyo_posts_to_the_path_without_a_slash_and_refuses_redirects() {
    let server = MockServer::start().await;
    // The spec's path is `/api/events`; a redirect (here to the old slashed path) is not
    // followed: it could carry the key or the body to another place.
    Mock::given(method("POST"))
        .and(path("/api/events"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/api/events/", server.uri())),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/events/"))
        .respond_with(accepted())
        .mount(&server)
        .await;
    let results = klaviyo(&server).send(&template(), &one(), false).await;
    let (reason, transient) = failed(&results[0]);
    assert!(!transient, "a redirect is a misconfiguration, not a blip");
    assert!(reason.contains("307"), "{reason}");
    assert_clean(reason);
    let seen = requests(&server).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].url.path(), "/api/events");
}

#[tokio::test]
async fn klaviyo_honours_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(serde_json::json!({
                    "errors": [{"status": 429, "code": "throttled",
                                "title": "Request was throttled.",
                                "detail": "Request was throttled. Expected available in 1 second."}]
                })),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(accepted())
        .mount(&server)
        .await;
    let started = Instant::now();
    let results = klaviyo(&server).send(&template(), &one(), false).await;
    assert!(matches!(results[0].outcome, MailOutcome::Sent { .. }));
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn klaviyo_server_errors_are_retried_then_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let results = klaviyo(&server).send(&template(), &one(), false).await;
    let (reason, transient) = failed(&results[0]);
    assert!(transient);
    assert!(reason.contains("503"), "{reason}");
    assert_clean(reason);
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn klaviyo_timeout_is_retried_thanks_to_unique_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(accepted().set_delay(Duration::from_millis(1000)))
        .mount(&server)
        .await;
    let provider = klaviyo(&server);
    let results = provider.send(&template(), &one(), false).await;
    let (reason, transient) = failed(&results[0]);
    assert!(transient);
    assert_clean(reason);
    // Retried (its unique_id makes a repeat harmless) until the second timeout.
    assert_eq!(provider.attempts(), 2);
    let received = requests(&server).await;
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(body(request)["data"]["attributes"]["unique_id"], "7/1");
    }
}

#[tokio::test]
async fn klaviyo_rejection_never_echoes_the_detail() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "errors": [{"id": "8f14", "status": 400, "code": "invalid", "title": "Invalid input.",
                        "detail": format!("Invalid email address: {EMAIL} ({NAME}1)"),
                        "source": {"pointer": "/data/attributes/profile/data/attributes/email"}}]
        })))
        .mount(&server)
        .await;
    let results = klaviyo(&server).send(&template(), &one(), false).await;
    let (reason, transient) = failed(&results[0]);
    assert!(!transient);
    assert!(reason.contains("400"), "{reason}");
    assert_clean(reason);
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn klaviyo_accepts_a_body_on_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(202).set_body_string("not json"))
        .mount(&server)
        .await;
    let results = klaviyo(&server).send(&template(), &one(), false).await;
    assert!(matches!(results[0].outcome, MailOutcome::Sent { .. }));
}

// ---------------------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------------------

fn eml_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sent_as(result: &MailResult) -> &str {
    match &result.outcome {
        MailOutcome::Sent {
            provider,
            message_id: Some(id),
        } if provider == "outbox" => id,
        other => panic!("expected an outbox file, got {other:?}"),
    }
}

#[tokio::test]
async fn outbox_writes_one_message_per_invitation() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("nested").join("outbox");
    let provider = OutboxProvider::new(&dir, FROM);
    let batch = vec![
        invitation(1, EMAIL, "Regular 一般票"),
        invitation(2, "b@example.com", "Regular 一般票"),
    ];
    let results = provider.send(&template(), &batch, false).await;
    assert_eq!(sent_as(&results[0]), "7-1.eml");
    assert_eq!(sent_as(&results[1]), "7-2.eml");
    assert_eq!(
        eml_files(&dir),
        vec!["7-1.eml", "7-2.eml"],
        "no temp files left"
    );

    let message = std::fs::read_to_string(dir.join("7-1.eml")).expect("readable");
    for expected in [
        "From: ",
        "To: ",
        "Subject: ",
        "Date: ",
        "Message-ID: <",
        "MIME-Version: 1.0",
        "multipart/alternative",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
        "registration@pycon.tw",
        EMAIL,
    ] {
        assert!(message.contains(expected), "{expected} missing:\n{message}");
    }
    assert!(message.contains("\r\n\r\n"), "headers end before the body");
}

#[tokio::test]
async fn outbox_is_idempotent_and_resend_writes_anew() {
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = OutboxProvider::new(dir.path(), FROM);
    let first = provider.send(&template(), &one(), false).await;
    assert_eq!(sent_as(&first[0]), "7-1.eml");
    let written = std::fs::read(dir.path().join("7-1.eml")).expect("written");

    let again = provider.send(&template(), &one(), false).await;
    assert_eq!(sent_as(&again[0]), "7-1.eml");
    assert_eq!(
        std::fs::read(dir.path().join("7-1.eml")).expect("still there"),
        written,
        "not rewritten"
    );
    assert_eq!(eml_files(dir.path()), vec!["7-1.eml"]);

    let resent = provider.send(&template(), &one(), true).await;
    assert_eq!(sent_as(&resent[0]), "7-1-resend-1.eml");
    let resent = provider.send(&template(), &one(), true).await;
    assert_eq!(sent_as(&resent[0]), "7-1-resend-2.eml");
    assert_eq!(
        eml_files(dir.path()),
        vec!["7-1-resend-1.eml", "7-1-resend-2.eml", "7-1.eml"]
    );
    assert_eq!(
        std::fs::read(dir.path().join("7-1.eml")).expect("still there"),
        written
    );
}

#[tokio::test]
async fn outbox_resend_without_a_first_file_still_writes_a_resend() {
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = OutboxProvider::new(dir.path(), FROM);
    let results = provider.send(&template(), &one(), true).await;
    assert_eq!(sent_as(&results[0]), "7-1-resend-1.eml");
}

#[tokio::test]
async fn outbox_io_errors_are_transient_and_name_no_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"file").expect("written");
    let provider = OutboxProvider::new(&blocker, FROM);
    let results = provider.send(&template(), &one(), false).await;
    let (reason, transient) = failed(&results[0]);
    assert!(transient);
    assert!(reason.contains("not-a-dir"), "names the path: {reason}");
    assert_clean(reason);
}

#[tokio::test]
async fn outbox_rejected_addresses_fail_for_good() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Parses as an EmailAddress (no spaces, one @, dotted domain), but not as RFC 5322.
    let odd = invitation(1, "a(b@example.com", "Regular");
    let results = OutboxProvider::new(dir.path(), FROM)
        .send(&template(), &[odd], false)
        .await;
    let (reason, transient) = failed(&results[0]);
    assert!(!transient);
    assert!(!reason.contains("a(b@example.com"), "{reason}");

    let results = OutboxProvider::new(dir.path(), "not an address")
        .send(&template(), &one(), false)
        .await;
    let (reason, transient) = failed(&results[0]);
    assert!(!transient);
    assert_clean(reason);
    assert!(eml_files(dir.path()).is_empty());
}

#[tokio::test]
async fn outbox_falls_back_to_the_template_sender() {
    let dir = tempfile::tempdir().expect("temp dir");
    let results = OutboxProvider::new(dir.path(), "")
        .send(&template(), &one(), false)
        .await;
    sent_as(&results[0]);
    let message = std::fs::read_to_string(dir.path().join("7-1.eml")).expect("written");
    assert!(message.contains("registration@pycon.tw"));
}
