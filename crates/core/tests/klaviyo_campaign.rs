//! The Klaviyo campaigns client against a fake of Klaviyo's JSON:API (`wiremock`,
//! `autopilot_test_support::klaviyo`): lists, profile bulk-import jobs, templates, campaigns,
//! template assignment and send jobs.
//!
//! The fake keeps state like Klaviyo does (duplicate names allowed, campaign names filtered
//! with `contains` only, a send job only for a draft), so a wave sent again meets what the
//! first send made. Every test checks the answers *and* the requests that reached the server,
//! and no failure reason may carry an address, a name or the key.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use autopilot_core::access::Link;
use autopilot_core::mail::{
    CampaignLetter, CampaignWave, Invitation, KlaviyoCampaigns, MailOutcome, MailResult,
    MailSettings, MailTemplate,
};
use autopilot_core::pii::{EmailAddress, Sensitive};
use autopilot_core::store::AttendeeKey;
use autopilot_core::upstream::HttpOptions;
use autopilot_test_support::klaviyo::{bodies, count, error, KlaviyoFake};
use chrono::TimeZone;
use serde_json::{json, Value};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "pk_s3cret-klaviyo-key";
const FROM: &str = "PyCon Taiwan <registration@pycon.tw>";
const EMAIL: &str = "xxx@gmail.com";
const NAME: &str = "李xx";
const REGULAR: &str = "Regular 一般票";
const STUDENT: &str = "Student 學生票";

/// A server whose only answers come from the fake, to requests with Klaviyo's headers; faults
/// mounted later (default priority) answer before it.
async fn klaviyo() -> (MockServer, KlaviyoFake) {
    KlaviyoFake::start(KEY).await
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn options() -> HttpOptions {
    autopilot_test_support::fast::http(2_000, 3)
}

fn provider(server: &MockServer, from: &str) -> KlaviyoCampaigns {
    KlaviyoCampaigns::new(
        &server.uri(),
        Sensitive::new(KEY.to_owned()),
        from,
        options(),
    )
    .expect("client builds")
    .with_import_poll(Duration::from_millis(10))
}

fn template() -> MailTemplate {
    MailTemplate::from_settings(&MailSettings {
        from: FROM.into(),
        ..MailSettings::default()
    })
    .expect("the default template compiles")
}

fn wave(intent: &str) -> CampaignWave {
    CampaignWave {
        campaign: "day1-reminder".into(),
        intent: intent.into(),
        deliver_at: None,
    }
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

/// `count` invitations, odd attendees on one ticket type and even ones on the other.
fn two_types(count: u64) -> Vec<Invitation> {
    (1..=count)
        .map(|i| {
            let ticket = if i % 2 == 1 { REGULAR } else { STUDENT };
            invitation(i, &format!("buyer{i}@example.com"), ticket)
        })
        .collect()
}

fn one_type(count: u64) -> Vec<Invitation> {
    let mut batch = vec![invitation(1, EMAIL, REGULAR)];
    batch.extend((2..=count).map(|i| invitation(i, &format!("buyer{i}@example.com"), REGULAR)));
    batch
}

async fn send(
    client: &KlaviyoCampaigns,
    wave: &CampaignWave,
    template: &MailTemplate,
    batch: &[Invitation],
) -> Vec<MailResult> {
    let results = client.send(CampaignLetter { wave, template }, batch).await;
    assert_eq!(results.len(), batch.len());
    for (result, invitation) in results.iter().zip(batch) {
        assert_eq!(result.key, invitation.key, "in input order");
    }
    results
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

fn sent_id(result: &MailResult) -> &str {
    match &result.outcome {
        MailOutcome::Sent {
            provider,
            message_id: Some(id),
        } if provider == "klaviyo" => id,
        other => panic!("expected sent by klaviyo, got {other:?}"),
    }
}

/// A failure and whether it is for now: a transient one leaves the letters in flight
/// (`Uncertain`), to be resumed under the same intent, which Klaviyo recognises by name.
fn failed(result: &MailResult) -> (&str, bool) {
    match &result.outcome {
        MailOutcome::Failed {
            reason,
            transient: false,
        } => (reason.as_str(), false),
        MailOutcome::Uncertain { reason } => (reason.as_str(), true),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A failure reason must name no personal data and no secret.
fn assert_clean(reason: &str) {
    for secret in [EMAIL, NAME, KEY, "buyer2@example.com", "@example.com"] {
        assert!(!reason.contains(secret), "{reason:?} leaks {secret}");
    }
}

fn is_hex8(text: &str) -> bool {
    text.len() == 8 && text.chars().all(|c| c.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_wave_of_1000_goes_out_as_one_campaign_per_ticket_type() {
    let (server, fake) = klaviyo().await;
    // Blank sender: the template's.
    let client = provider(&server, "");
    let batch = two_types(1000);
    let results = send(&client, &wave("run-42.1"), &template(), &batch).await;

    let received = requests(&server).await;
    let expected = [
        ("GET", "/api/campaigns", 2),
        ("GET", "/api/lists", 2),
        ("POST", "/api/lists", 2),
        ("POST", "/api/profile-bulk-import-jobs", 2),
        // Each job answers `processing` once, then `complete`.
        ("GET", "/api/profile-bulk-import-jobs/*", 4),
        ("GET", "/api/templates", 2),
        ("POST", "/api/templates", 2),
        ("POST", "/api/campaigns", 2),
        ("POST", "/api/campaign-message-assign-template", 2),
        ("POST", "/api/campaign-send-jobs", 2),
    ];
    for (verb, at, n) in expected {
        assert_eq!(count(&received, verb, at), n, "{verb} {at}");
    }
    assert_eq!(received.len(), 22, "nothing else");
    assert_eq!(client.attempts(), 22);
    assert_eq!(count(&received, "GET", "/api/campaigns/*"), 0);

    // Names: list and campaign per wave and shape, template per campaign and shape.
    let campaigns = fake.campaigns_by_name();
    assert_eq!(campaigns.len(), 2);
    let lists = fake.lists();
    let mut shapes = BTreeSet::new();
    for (name, (_, list)) in &campaigns {
        let shape = name
            .strip_prefix("autopilot day1-reminder run-42.1 ")
            .expect("named after campaign and intent");
        assert!(is_hex8(shape), "{name}");
        shapes.insert(shape.to_owned());
        let list_name = &lists.iter().find(|l| l.id == *list).unwrap().name;
        assert_eq!(list_name, name, "the list is named like its campaign");
    }
    let template_names: BTreeSet<String> =
        fake.templates().iter().map(|t| t.name.clone()).collect();
    let expected_names: BTreeSet<String> = shapes
        .iter()
        .map(|s| format!("autopilot day1-reminder {s}"))
        .collect();
    assert_eq!(template_names, expected_names);

    // Every invitation sent, with its group's campaign id.
    let mut by_ticket: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (result, invitation) in results.iter().zip(&batch) {
        by_ticket
            .entry(invitation.ticket_name.as_str())
            .or_default()
            .insert(sent_id(result));
    }
    assert_eq!(by_ticket[REGULAR].len(), 1);
    assert_eq!(by_ticket[STUDENT].len(), 1);
    assert_ne!(by_ticket[REGULAR], by_ticket[STUDENT]);

    // The send jobs name the campaigns.
    let jobs = bodies(&received, "POST", "/api/campaign-send-jobs");
    let ids: BTreeSet<String> = campaigns.values().map(|(id, _)| id.clone()).collect();
    let job_ids: BTreeSet<String> = jobs
        .iter()
        .map(|job| {
            assert_eq!(job["data"]["type"], "campaign-send-job");
            assert_eq!(job.as_object().unwrap().len(), 1);
            job["data"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(job_ids, ids);

    // Profiles carry the values the template reads, into the group's list.
    let lists: BTreeSet<String> = campaigns.values().map(|(_, l)| l.clone()).collect();
    let mut seen = 0;
    for import in bodies(&received, "POST", "/api/profile-bulk-import-jobs") {
        assert_eq!(import["data"]["type"], "profile-bulk-import-job");
        let list = import["data"]["relationships"]["lists"]["data"][0]["id"]
            .as_str()
            .unwrap();
        assert!(lists.contains(list));
        let profiles = import["data"]["attributes"]["profiles"]["data"]
            .as_array()
            .unwrap();
        assert_eq!(profiles.len(), 500);
        for profile in profiles {
            assert_eq!(profile["type"], "profile");
            let attributes = &profile["attributes"];
            let email = attributes["email"].as_str().unwrap();
            let i: u64 = email
                .strip_prefix("buyer")
                .and_then(|rest| rest.strip_suffix("@example.com"))
                .and_then(|n| n.parse().ok())
                .expect("one of the batch");
            assert_eq!(attributes["first_name"], format!("{NAME}{i}"));
            assert_eq!(
                attributes["properties"],
                json!({
                    "autopilot_checkin_code": format!("C{i}"),
                    "autopilot_reg_no": 100 + i,
                    "autopilot_key": format!("7/{i}"),
                })
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 1000);

    // One template per shape, with Klaviyo placeholders and nobody's values.
    for created in bodies(&received, "POST", "/api/templates") {
        let attributes = &created["data"]["attributes"];
        assert_eq!(created["data"]["type"], "template");
        assert_eq!(attributes["editor_type"], "CODE");
        let (html, text) = (
            attributes["html"].as_str().unwrap(),
            attributes["text"].as_str().unwrap(),
        );
        for part in [html, text] {
            assert!(part.contains("{{ first_name }}"));
            assert!(part.contains("{{ person.autopilot_checkin_code }}"));
            assert!(part.contains("{{ person.autopilot_reg_no }}"));
            assert!(!part.contains("@example.com") && !part.contains(NAME));
        }
    }

    // The campaigns: the group's list, at once, Smart Sending off, the template's sender.
    for created in bodies(&received, "POST", "/api/campaigns") {
        let attributes = &created["data"]["attributes"];
        assert_eq!(created["data"]["type"], "campaign");
        let name = attributes["name"].as_str().unwrap();
        let (_, list) = &campaigns[name];
        assert_eq!(attributes["audiences"], json!({"included": [list]}));
        assert_eq!(attributes["send_strategy"], json!({"method": "immediate"}));
        assert_eq!(attributes["send_options"]["use_smart_sending"], false);
        let message = &attributes["campaign-messages"]["data"][0];
        assert_eq!(message["type"], "campaign-message");
        let definition = &message["attributes"]["definition"];
        assert_eq!(definition["channel"], "email");
        let content = &definition["content"];
        assert_eq!(content["from_email"], "registration@pycon.tw");
        assert_eq!(content["from_label"], "PyCon Taiwan");
        assert!(content["subject"]
            .as_str()
            .unwrap()
            .contains("PyCon Taiwan 2026"));
    }

    // Each message got its shape's template.
    let templates = fake.templates();
    for campaign in &fake.campaigns() {
        let template = campaign.template.as_deref().expect("assigned");
        let template = templates.iter().find(|t| t.id == template).unwrap();
        assert!(campaign.name.ends_with(
            template
                .name
                .strip_prefix("autopilot day1-reminder ")
                .unwrap()
        ));
        assert_eq!(campaign.status, "Sending");
    }
}

#[tokio::test]
async fn a_wave_sent_again_finds_its_campaigns_and_sends_nothing() {
    let (server, fake) = klaviyo().await;
    let client = provider(&server, FROM);
    let batch = two_types(40);
    let first = send(&client, &wave("run-42.1"), &template(), &batch).await;
    fake.set_status("Sent");
    let before = requests(&server).await.len();

    let again = send(&client, &wave("run-42.1"), &template(), &batch).await;
    for (first, again) in first.iter().zip(&again) {
        assert_eq!(sent_id(first), sent_id(again), "the same campaign");
    }
    let received = requests(&server).await;
    let new = &received[before..];
    assert_eq!(new.len(), 2, "one campaign lookup per group");
    assert_eq!(count(new, "GET", "/api/campaigns"), 2);
    assert_eq!(count(new, "POST", "/api/campaign-send-jobs"), 0);
    assert_eq!(count(new, "POST", "/api/lists"), 0);
    assert_eq!(fake.campaigns().len(), 2);
    assert_eq!(fake.lists().len(), 2);
}

#[tokio::test]
async fn a_scheduled_wave_gets_the_static_send_strategy() {
    let (server, fake) = klaviyo().await;
    let client = provider(&server, "Ops Team <ops@example.org>");
    let mut wave = wave("run-43.1");
    wave.deliver_at = Some(chrono::Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap());
    let results = send(&client, &wave, &template(), &one_type(3)).await;
    for result in &results {
        sent_id(result);
    }
    let received = requests(&server).await;
    let created = bodies(&received, "POST", "/api/campaigns");
    assert_eq!(created.len(), 1);
    let attributes = &created[0]["data"]["attributes"];
    assert_eq!(
        attributes["send_strategy"],
        json!({"method": "static", "datetime": "2030-01-02T03:04:05+00:00",
               "options": {"is_local": false}})
    );
    let content =
        &attributes["campaign-messages"]["data"][0]["attributes"]["definition"]["content"];
    assert_eq!(content["from_email"], "ops@example.org");
    assert_eq!(content["from_label"], "Ops Team");
    assert_eq!(fake.campaigns()[0].status, "Scheduled");
}

#[tokio::test]
async fn a_rate_limited_list_creation_is_retried_after_retry_after() {
    let (server, fake) = klaviyo().await;
    Mock::given(method("POST"))
        .and(path("/api/lists"))
        .respond_with(
            error(
                429,
                "Request was throttled. Expected available in 1 second.",
            )
            .insert_header("retry-after", "1"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let client = provider(&server, FROM);
    let started = Instant::now();
    let results = send(&client, &wave("run-44.1"), &template(), &one_type(5)).await;
    for result in &results {
        sent_id(result);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited out Retry-After"
    );
    let received = requests(&server).await;
    assert_eq!(count(&received, "POST", "/api/lists"), 2);
    assert_eq!(fake.lists().len(), 1, "no duplicate list");
    assert_eq!(count(&received, "POST", "/api/campaign-send-jobs"), 1);
}

#[tokio::test]
async fn bad_credentials_fail_every_invitation_transiently_without_personal_data() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(error(
            401,
            &format!("Incorrect authentication credentials for {EMAIL}"),
        ))
        .mount(&server)
        .await;
    let client = provider(&server, FROM);
    let results = send(&client, &wave("run-45.1"), &template(), &one_type(3)).await;
    for result in &results {
        let (reason, transient) = failed(result);
        assert!(transient, "fixable credentials, retry-safe steps");
        assert!(
            reason.contains("Klaviyo") && reason.contains("401"),
            "{reason}"
        );
        assert_clean(reason);
    }
    assert_eq!(requests(&server).await.len(), 1, "not retried");
}

#[tokio::test]
async fn a_failing_klaviyo_is_not_asked_about_the_other_groups() {
    let (server, _fake) = klaviyo().await;
    Mock::given(method("GET"))
        .and(path("/api/campaigns"))
        .respond_with(error(503, "unavailable"))
        .mount(&server)
        .await;
    let client = provider(&server, FROM);
    let batch = two_types(6);
    let results = send(&client, &wave("run-46.1"), &template(), &batch).await;
    for (result, invitation) in results.iter().zip(&batch) {
        if invitation.ticket_name == REGULAR {
            let (reason, transient) = failed(result);
            assert!(transient && reason.contains("503"), "{reason}");
            assert_clean(reason);
        } else {
            match &result.outcome {
                MailOutcome::NotAttempted { reason } => {
                    assert!(reason.contains("not attempted"), "{reason}");
                    assert_clean(reason);
                }
                other => panic!("expected not attempted, got {other:?}"),
            }
        }
    }
    assert_eq!(
        requests(&server).await.len(),
        3,
        "the first lookup, retried"
    );
    assert_eq!(client.attempts(), 3);
}

#[tokio::test]
async fn a_lost_send_job_answer_is_settled_by_reading_the_campaign() {
    let (server, fake) = klaviyo().await;
    fake.lose_send_job_answers(true);
    let client = provider(&server, FROM);
    let results = send(&client, &wave("run-47.1"), &template(), &one_type(4)).await;
    let id = fake.campaigns()[0].id.clone();
    for result in &results {
        assert_eq!(sent_id(result), id);
    }
    let received = requests(&server).await;
    assert_eq!(
        count(&received, "POST", "/api/campaign-send-jobs"),
        1,
        "never repeated blindly"
    );
    assert_eq!(count(&received, "GET", &format!("/api/campaigns/{id}")), 1);
}

#[tokio::test]
async fn a_draft_left_by_a_failed_send_job_is_sent_on_the_next_attempt() {
    let (server, fake) = klaviyo().await;
    Mock::given(method("POST"))
        .and(path("/api/campaign-send-jobs"))
        .respond_with(error(503, "unavailable"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let client = provider(&server, FROM);
    let batch = one_type(4);
    let first = send(&client, &wave("run-48.1"), &template(), &batch).await;
    for result in &first {
        let (reason, transient) = failed(result);
        assert!(transient && reason.contains("503"), "{reason}");
    }
    assert_eq!(fake.campaigns()[0].status, "Draft");

    let again = send(&client, &wave("run-48.1"), &template(), &batch).await;
    let id = fake.campaigns()[0].id.clone();
    for result in &again {
        assert_eq!(sent_id(result), id);
    }
    let received = requests(&server).await;
    assert_eq!(count(&received, "POST", "/api/lists"), 1);
    assert_eq!(
        count(&received, "GET", "/api/lists"),
        1,
        "the draft knows its list"
    );
    assert_eq!(count(&received, "POST", "/api/templates"), 1);
    assert_eq!(
        count(&received, "POST", "/api/campaigns"),
        1,
        "no duplicate"
    );
    assert_eq!(
        count(&received, "GET", "/api/campaigns/*/campaign-messages"),
        1
    );
    assert_eq!(count(&received, "POST", "/api/profile-bulk-import-jobs"), 2);
    assert_eq!(count(&received, "POST", "/api/campaign-send-jobs"), 2);
    assert_eq!(fake.campaigns()[0].status, "Sending");
}

#[tokio::test]
async fn a_campaign_cancelled_in_klaviyo_fails_for_good() {
    let (server, fake) = klaviyo().await;
    let client = provider(&server, FROM);
    let batch = one_type(2);
    send(&client, &wave("run-49.1"), &template(), &batch).await;
    fake.set_status("Cancelled");
    let results = send(&client, &wave("run-49.1"), &template(), &batch).await;
    for result in &results {
        let (reason, transient) = failed(result);
        assert!(!transient);
        assert!(reason.contains("cancelled in Klaviyo"), "{reason}");
    }
}

#[tokio::test]
async fn a_malformed_list_lookup_fails_transiently() {
    let (server, _fake) = klaviyo().await;
    Mock::given(method("GET"))
        .and(path("/api/lists"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(format!("<html>{EMAIL}</html>").into_bytes(), "text/html"),
        )
        .mount(&server)
        .await;
    let client = provider(&server, FROM);
    let results = send(&client, &wave("run-50.1"), &template(), &one_type(2)).await;
    for result in &results {
        let (reason, transient) = failed(result);
        assert!(transient);
        assert!(
            reason.contains("could not read") && reason.contains("does not read as JSON"),
            "{reason}"
        );
        assert_clean(reason);
    }
    let received = requests(&server).await;
    assert_eq!(count(&received, "GET", "/api/lists"), 1);
    assert_eq!(count(&received, "POST", "/api/lists"), 0);
}

#[tokio::test]
async fn a_cancelled_import_job_fails_transiently_and_sends_nothing() {
    let (server, fake) = klaviyo().await;
    fake.set_import_outcome("cancelled");
    let client = provider(&server, FROM);
    let results = send(&client, &wave("run-51.1"), &template(), &one_type(3)).await;
    for result in &results {
        let (reason, transient) = failed(result);
        assert!(transient && reason.contains("cancelled"), "{reason}");
        assert_clean(reason);
    }
    let received = requests(&server).await;
    assert_eq!(count(&received, "POST", "/api/campaigns"), 0);
    assert_eq!(count(&received, "POST", "/api/campaign-send-jobs"), 0);
    assert_eq!(
        count(&received, "GET", "/api/profile-bulk-import-jobs/*"),
        2
    );
}

#[tokio::test]
async fn templates_are_reused_across_waves_and_follow_template_changes() {
    let (server, fake) = klaviyo().await;
    let client = provider(&server, FROM);
    let batch = one_type(3);
    send(&client, &wave("run-52.1"), &template(), &batch).await;
    // The same content next wave: found, left alone.
    send(&client, &wave("run-53.1"), &template(), &batch).await;
    let mut changed = template();
    changed.html = "<p>{{ event }}: {{ checkin_code }}</p>\n".into();
    let results = send(&client, &wave("run-54.1"), &changed, &batch).await;
    for result in &results {
        sent_id(result);
    }
    let received = requests(&server).await;
    assert_eq!(count(&received, "POST", "/api/templates"), 1);
    assert_eq!(count(&received, "PATCH", "/api/templates/*"), 1);
    assert_eq!(
        count(&received, "POST", "/api/campaigns"),
        3,
        "one per wave"
    );
    assert_eq!(count(&received, "POST", "/api/lists"), 3, "one per wave");
    let templates = fake.templates();
    assert_eq!(templates.len(), 1);
    assert_eq!(
        templates[0].html,
        "<p>PyCon Taiwan 2026: {{ person.autopilot_checkin_code }}</p>\n"
    );
}

#[tokio::test]
async fn two_invitations_to_one_address_get_a_slot_each() {
    let (server, fake) = klaviyo().await;
    let client = provider(&server, FROM);
    // Given in reverse: slots go by attendee key, not by order.
    let batch = vec![
        invitation(2, EMAIL, REGULAR),
        invitation(3, "other@example.com", REGULAR),
        invitation(1, EMAIL, REGULAR),
    ];
    let results = send(&client, &wave("run-55.1"), &template(), &batch).await;
    let (second, other, first) = (
        sent_id(&results[0]),
        sent_id(&results[1]),
        sent_id(&results[2]),
    );
    assert_eq!(first, other);
    assert_ne!(first, second);

    let campaigns = fake.campaigns_by_name();
    let second_name = campaigns
        .iter()
        .find(|(_, (id, _))| id == second)
        .map(|(name, _)| name.clone())
        .unwrap();
    let first_name = campaigns
        .iter()
        .find(|(_, (id, _))| id == first)
        .map(|(name, _)| name.clone())
        .unwrap();
    assert_eq!(second_name, format!("{first_name}-2"));

    let received = requests(&server).await;
    let imports = bodies(&received, "POST", "/api/profile-bulk-import-jobs");
    assert_eq!(imports.len(), 2);
    let mut profiles: Vec<Vec<Value>> = imports
        .iter()
        .map(|import| {
            import["data"]["attributes"]["profiles"]["data"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    profiles.sort_by_key(Vec::len);
    let slot_two = &profiles[0];
    assert_eq!(slot_two.len(), 1);
    assert_eq!(profiles[1].len(), 2, "slot one: both addresses");
    assert_eq!(
        slot_two[0]["attributes"],
        json!({
            "email": EMAIL,
            "properties": {
                "autopilot_checkin_code_2": "C2",
                "autopilot_reg_no_2": 102,
                "autopilot_key_2": "7/2",
                "autopilot_name_2": format!("{NAME}2"),
            }
        })
    );
    let templates = bodies(&received, "POST", "/api/templates");
    assert_eq!(templates.len(), 2);
    let slot_two = templates
        .iter()
        .find(|t| {
            t["data"]["attributes"]["name"]
                .as_str()
                .unwrap()
                .ends_with("-2")
        })
        .expect("a template of its own");
    let html = slot_two["data"]["attributes"]["html"].as_str().unwrap();
    assert!(html.contains("{{ person.autopilot_checkin_code_2 }}"));
    assert!(html.contains("{{ person.autopilot_name_2 }}"));
    assert!(!html.contains("{{ first_name }}"));
}

#[tokio::test]
async fn a_template_that_does_not_render_fails_for_good_before_any_request() {
    let (server, _fake) = klaviyo().await;
    let client = provider(&server, FROM);
    let mut broken = template();
    broken.subject = "{{ event | no_such_filter }}".into();
    let results = send(&client, &wave("run-56.1"), &broken, &one_type(2)).await;
    for result in &results {
        let (reason, transient) = failed(result);
        assert!(!transient);
        assert!(reason.starts_with("mail template:"), "{reason}");
        assert_clean(reason);
    }
    assert!(requests(&server).await.is_empty());
}
