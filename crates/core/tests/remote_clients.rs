//! The poller's clients for the deployed authorizer and mailer (`AUTHORIZER_URL`,
//! `MAILER_URL`) against fakes of those routes: ops token, per-attendee results, an attendee
//! the answer left out, whole-call failures, and no repeat of a mail call whose outcome is
//! unknown.

use std::time::Duration;

use autopilot_core::access::{
    AccessRequest, AccessService, GrantOutcome, RemoteAccess, RevokeOutcome, RevokeRequest,
};
use autopilot_core::mail::{
    Invitation, MailOutcome, MailService, RemoteMailer, SettleQuery, Settlement,
};
use autopilot_core::pii::{EmailAddress, Sensitive};
use autopilot_core::store::AttendeeKey;
use autopilot_core::upstream::HttpOptions;
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn options() -> HttpOptions {
    autopilot_test_support::fast::http(300, 3)
}

fn key(attendee_id: u64) -> AttendeeKey {
    AttendeeKey {
        event_id: 1,
        attendee_id,
    }
}

fn request(attendee_id: u64) -> AccessRequest {
    AccessRequest {
        key: key(attendee_id),
        email: EmailAddress::parse(&format!("buyer{attendee_id}@example.com")).unwrap(),
        name: Sensitive::new("李xx".into()),
        event_name: "Conf Registration".into(),
        ticket_name: "Regular".into(),
    }
}

fn invitation(attendee_id: u64) -> Invitation {
    Invitation {
        key: key(attendee_id),
        email: EmailAddress::parse(&format!("buyer{attendee_id}@example.com")).unwrap(),
        name: Sensitive::new("李xx".into()),
        event_name: "Conf Registration".into(),
        ticket_name: "Regular".into(),
        links: Vec::new(),
        venue_url: None,
        checkin_code: Some("BC7B".into()),
        reg_no: Some(attendee_id),
        intent: None,
    }
}

#[tokio::test]
async fn authorize_sends_the_batch_and_pairs_results_by_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/authorize"))
        .and(header("authorization", "Bearer ops"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [
            {"event_id": 1, "attendee_id": 2, "status": "granted", "gather": true, "links": [], "venue_url": null}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    let access = RemoteAccess::new(&server.uri(), Sensitive::new("ops".into()), options()).unwrap();
    let results = access.authorize(vec![request(1), request(2)]).await;
    assert_eq!(
        results.iter().map(|r| r.key).collect::<Vec<_>>(),
        vec![key(1), key(2)]
    );
    assert!(matches!(
        &results[0].outcome,
        GrantOutcome::Failed { transient: true, reason } if reason.contains("no answer")
    ));
    assert!(matches!(
        results[1].outcome,
        GrantOutcome::Granted { gather: true, .. }
    ));

    let sent: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        sent["admissions"][0]["email"], "buyer1@example.com",
        "clear only on the wire"
    );
    assert_eq!(sent["admissions"][1]["attendee_id"], 2);
}

#[tokio::test]
async fn a_failed_call_fails_every_attendee_with_its_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(500))
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/authorize"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    let access = RemoteAccess::new(&server.uri(), Sensitive::new("ops".into()), options()).unwrap();
    let revoke = |id| RevokeRequest {
        key: key(id),
        email_hash: "0".repeat(64),
        event_name: "E".into(),
        ticket_name: "T".into(),
    };
    let results = access.revoke(vec![revoke(1), revoke(2)]).await;
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| matches!(
        r.outcome,
        RevokeOutcome::Failed {
            transient: true,
            ..
        }
    )));

    // A refused OPS_TOKEN is the deployment's fault: no attendee backs off for it, the next
    // run tries again (after the operator fixes the token).
    let results = access.authorize(vec![request(3)]).await;
    assert!(matches!(
        &results[0].outcome,
        GrantOutcome::Failed { transient: true, reason } if reason.contains("credentials")
    ));
    assert!(
        access.authorize(Vec::new()).await.is_empty(),
        "an empty batch makes no call"
    );
}

#[tokio::test]
async fn a_mail_call_whose_outcome_is_unknown_is_not_repeated() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/mail"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .expect(1)
        .mount(&server)
        .await;
    let mailer = RemoteMailer::new(&server.uri(), Sensitive::new("ops".into()), options()).unwrap();
    let results = mailer.send(vec![invitation(1)], false).await;
    assert!(
        matches!(results[0].outcome, MailOutcome::Uncertain { .. }),
        "settled later from the provider's events, not retried: {:?}",
        results[0].outcome
    );
}

#[tokio::test]
async fn a_mailer_5xx_is_uncertain_and_settle_travels_over_post_mail() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/mail"))
        .and(body_string_contains("\"invitations\""))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mail"))
        .and(body_string_contains("\"settle\""))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"settlements": [
            {"intent": "run-1.1", "status": "settled", "accepted": [{"event_id": 1, "attendee_id": 1}]}
        ]})))
        .mount(&server)
        .await;
    let mailer = RemoteMailer::new(&server.uri(), Sensitive::new("ops".into()), options()).unwrap();
    let results = mailer.send(vec![invitation(1)], false).await;
    assert!(matches!(results[0].outcome, MailOutcome::Uncertain { .. }));
    let query = SettleQuery {
        intent: "run-1.1".into(),
        since: chrono::Utc::now(),
        keys: vec![AttendeeKey {
            event_id: 1,
            attendee_id: 1,
        }],
    };
    let settled = mailer.settle(vec![query.clone()]).await;
    assert_eq!(
        settled[0].settlement,
        Settlement::Settled {
            accepted: query.keys.clone()
        }
    );
    // A mailer that cannot answer leaves the intent waiting: never "nothing was accepted".
    let gone = RemoteMailer::new(
        "http://127.0.0.1:9",
        Sensitive::new("ops".into()),
        options(),
    )
    .unwrap();
    let waiting = gone.settle(vec![query]).await;
    assert!(matches!(
        waiting[0].settlement,
        Settlement::Pending { failed: true, .. }
    ));
}

#[tokio::test]
async fn mail_pairs_results_and_carries_force() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/mail"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [
            {"event_id": 1, "attendee_id": 1, "status": "sent", "provider": "mailgun", "message_id": "<1@mg>"}
        ]})))
        .mount(&server)
        .await;
    let mailer = RemoteMailer::new(&server.uri(), Sensitive::new("ops".into()), options()).unwrap();
    let results = mailer.send(vec![invitation(1)], true).await;
    assert!(
        matches!(&results[0].outcome, MailOutcome::Sent { provider, .. } if provider == "mailgun")
    );
    let sent: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["force"], true);
    assert_eq!(sent["invitations"][0]["reg_no"], 1);
}
