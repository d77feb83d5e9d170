//! The discord-interactions Lambda driven by Discord-shaped payloads kept in the repo
//! (`crates/core/tests/fixtures/discord/`), signed with a generated key pair, wrapped in API
//! Gateway v2 events. Deferred work goes through the same `LambdaDeferrer` the deployed
//! function uses, and edits `@original` on a fake Discord API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use autopilot_core::api::Api;
use autopilot_core::discord::bot::{BotSettings, DiscordBot};
use autopilot_core::discord::operations::Operations;
use autopilot_core::discord::rest::DiscordApi;
use autopilot_core::model::{CampaignReport, CampaignStatus};
use autopilot_core::reconcile::{ImportRequest, ResendReport, RunSummary};
use autopilot_core::report::ReportSettings;
use autopilot_core::selection::CategoryRules;
use autopilot_core::store::{
    AttendeeKey, AttendeeRow, EventRecord, LookupField, PipelineTable, SaleRecord, SqliteStore,
    StoreError, Warehouse,
};
use autopilot_core::upstream::HttpOptions;
use chrono::{TimeZone, Utc};
use discord_interactions::{finish, handle, LambdaDeferrer};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OPERATOR_ROLE: &str = "111111111111111111";
const EVENT_ID: u64 = 84296;
const SLUG: &str = "pycon-tw-2026-individual";
const TABLE: &str = "ods_kktix_ticket_individual_attendees";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../crates/core/tests/fixtures/discord/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

/// Warehouse reads that take their time, as a busy BigQuery might.
struct SlowWarehouse {
    inner: Arc<SqliteStore>,
    delay: Duration,
}

#[async_trait]
impl Warehouse for SlowWarehouse {
    async fn upsert_events(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        self.inner.upsert_events(events).await
    }
    async fn events(&self) -> Result<Vec<EventRecord>, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.events().await
    }
    async fn sales(&self, table: &str, event_id: u64) -> Result<Vec<SaleRecord>, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.sales(table, event_id).await
    }
    async fn find_attendees(
        &self,
        t: &[String],
        f: LookupField,
        v: u64,
    ) -> Result<Vec<AttendeeKey>, StoreError> {
        self.inner.find_attendees(t, f, v).await
    }
    async fn upsert_attendees(&self, rows: &[AttendeeRow]) -> Result<(), StoreError> {
        self.inner.upsert_attendees(rows).await
    }
    async fn order_numbers(
        &self,
        table: &str,
        event_id: u64,
    ) -> Result<std::collections::HashMap<u64, String>, StoreError> {
        self.inner.order_numbers(table, event_id).await
    }
    async fn mark_cancelled(
        &self,
        table: &str,
        keys: &[AttendeeKey],
        at: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.mark_cancelled(table, keys, at).await
    }
    async fn upsert_pipeline_rows(
        &self,
        layout: &PipelineTable,
        rows: &[AttendeeRow],
    ) -> Result<(), StoreError> {
        self.inner.upsert_pipeline_rows(layout, rows).await
    }
    async fn mark_pipeline_refunded(
        &self,
        layout: &PipelineTable,
        keys: &[AttendeeKey],
    ) -> Result<(), StoreError> {
        self.inner.mark_pipeline_refunded(layout, keys).await
    }
}

#[derive(Default)]
struct FakeOperations {
    polls: AtomicUsize,
    resends: AtomicUsize,
    /// What `/autopilot import` handed over.
    imports: std::sync::Mutex<Vec<ImportRequest>>,
    /// Events `/autopilot confirm-revoke` confirmed.
    confirms: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Operations for FakeOperations {
    async fn poll(&self) -> Result<RunSummary, String> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        serde_json::from_value(json!({
            "run_id": "20261122T000000.000Z-abcd", "started_at": "2026-11-22T00:00:00Z",
            "duration_ms": 42, "outcome": "ok", "events": 3, "live": 120, "fetched": 2,
            "new_paid": 2, "pending": 1, "refunded": 0, "expired": 0, "skipped": [], "errors": [],
            "warnings": [], "upstream_requests": 9, "new_by_ticket": {"Regular 一般票": 2}
        }))
        .map_err(|e| e.to_string())
    }
    async fn resend(&self, reference: &str) -> Result<ResendReport, String> {
        self.resends.fetch_add(1, Ordering::SeqCst);
        assert_eq!(reference, "104");
        Ok(ResendReport {
            key: AttendeeKey {
                event_id: EVENT_ID,
                attendee_id: 84748358,
            },
            provider: "mailgun".into(),
            message_id: Some("<1@mg>".into()),
        })
    }
    async fn import(&self, request: ImportRequest) -> Result<RunSummary, String> {
        self.imports.lock().unwrap().push(request);
        let mut summary = self.poll().await?;
        summary.kind = "import".into();
        Ok(summary)
    }
    async fn confirm_revoke(&self, event: &str) -> Result<RunSummary, String> {
        self.confirms.lock().unwrap().push(event.to_owned());
        let mut summary = self.poll().await?;
        summary.kind = "confirm".into();
        summary.revoked = 42;
        Ok(summary)
    }
    async fn campaigns(&self) -> Result<Vec<CampaignStatus>, String> {
        Ok(Vec::new())
    }
    async fn send_campaign(&self, name: &str, dry_run: bool) -> Result<CampaignReport, String> {
        Ok(CampaignReport {
            campaign: name.to_owned(),
            dry_run,
            ..CampaignReport::default()
        })
    }
}

struct Bot {
    api: Api,
    deferrer: Arc<LambdaDeferrer>,
    key: SigningKey,
    discord: MockServer,
    operations: Arc<FakeOperations>,
}

async fn store_with_sales() -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    store
        .upsert_events(&[EventRecord {
            id: EVENT_ID,
            slug: SLUG.into(),
            name: "PyCon Taiwan 2026 Registration: Individual".into(),
            start_at: None,
            end_at: None,
            last_seen: Utc::now(),
            source: None,
        }])
        .await
        .unwrap();
    // 2026-03-01 08:00 Taipei onwards: Regular on days 1–3, Student on day 2, one refund.
    let row = |attendee_id: u64, ticket: &str, day: u32, state: &str| AttendeeRow {
        table: TABLE.into(),
        event_id: EVENT_ID,
        event_name: "PyCon Taiwan 2026 Registration: Individual".into(),
        attendee_id,
        attendee_infos: "{}".into(),
        ticket_name: ticket.into(),
        paid_at: Utc.with_ymd_and_hms(2026, 3, day, 0, 0, 0).unwrap(),
        price: 2600.0,
        currency: "TWD".into(),
        state: state.into(),
        loaded_at: Utc::now(),
    };
    store
        .upsert_attendees(&[
            row(1, "Regular 一般票", 1, "activated"),
            row(2, "Regular 一般票", 2, "activated"),
            row(3, "Regular 一般票", 3, "activated"),
            row(4, "Student 學生票", 2, "activated"),
            row(5, "Student 學生票", 2, "cancelled"),
        ])
        .await
        .unwrap();
    store
}

async fn bot(warehouse: Arc<dyn Warehouse>, inline_budget_ms: u64) -> Bot {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let discord = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path_regex(
            r"^/webhooks/1300000000000000000/[^/]+/messages/@original$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .mount(&discord)
        .await;
    let rest = DiscordApi::new(
        &discord.uri(),
        "1300000000000000000",
        None,
        HttpOptions {
            timeout: Duration::from_secs(2),
            retry: autopilot_test_support::fast::retry(2),
        },
    )
    .unwrap();
    let deferrer = Arc::new(LambdaDeferrer::default());
    let operations = Arc::new(FakeOperations::default());
    let bot = DiscordBot::new(
        key.verifying_key(),
        warehouse,
        CategoryRules::default(),
        ReportSettings::default(),
        BotSettings {
            operator_role_id: Some(OPERATOR_ROLE.into()),
            inline_budget_ms,
            ..BotSettings::default()
        },
        Some(operations.clone()),
        Arc::new(rest),
        deferrer.clone(),
    );
    Bot {
        api: Api::new(None).with_discord(Arc::new(bot)),
        deferrer,
        key,
        discord,
        operations,
    }
}

/// An API Gateway v2 event carrying `body`, signed (or with the given headers).
fn gateway_event(body: &str, headers: Value) -> String {
    json!({
        "version": "2.0", "routeKey": "POST /discord/interactions",
        "rawPath": "/discord/interactions", "rawQueryString": "",
        "headers": headers, "body": body, "isBase64Encoded": false,
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5", "domainName": "example.com",
            "domainPrefix": "a1b2c3d4e5", "requestId": "Dq1aYgJ8tjMEPkA=", "routeKey": "POST /discord/interactions",
            "stage": "$default", "time": "22/Nov/2026:00:00:00 +0000", "timeEpoch": 1795305600000u64,
            "http": {"method": "POST", "path": "/discord/interactions", "protocol": "HTTP/1.1",
                     "sourceIp": "162.159.128.233", "userAgent": "Discord-Interactions/1.0"}
        }
    })
    .to_string()
}

impl Bot {
    fn signed(&self, body: &str) -> Value {
        let timestamp = Utc::now().timestamp().to_string();
        let signature = self.key.sign(format!("{timestamp}{body}").as_bytes());
        json!({
            "content-type": "application/json",
            "x-signature-ed25519": hex::encode(signature.to_bytes()),
            "x-signature-timestamp": timestamp,
        })
    }

    /// Sends a fixture; returns the HTTP status and JSON answer, and finishes deferred work
    /// the way the Lambda extension does.
    async fn send(&self, body: &str, headers: Value) -> (u16, Value) {
        let request = lambda_http::request::from_str(&gateway_event(body, headers)).unwrap();
        let started = std::time::Instant::now();
        let response = handle(&self.api, request).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "inside Discord's 3-second window"
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        let status = response.status().as_u16();
        let answer = serde_json::from_slice(response.body().as_ref()).unwrap();
        finish(self.deferrer.take()).await;
        (status, answer)
    }

    async fn send_fixture(&self, name: &str) -> (u16, Value) {
        let body = fixture(name);
        self.send(&body, self.signed(&body)).await
    }

    async fn edits(&self) -> Vec<wiremock::Request> {
        self.discord.received_requests().await.unwrap_or_default()
    }
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let bot = bot(store_with_sales().await, 2000).await;
    let (status, answer) = bot.send_fixture("ping.json").await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"type": 1}));
}

#[tokio::test]
async fn a_bad_missing_or_stale_signature_is_401() {
    let bot = bot(store_with_sales().await, 2000).await;
    let body = fixture("ping.json");
    let mut headers = bot.signed(&body);
    headers["x-signature-ed25519"] = hex::encode([7u8; 64]).into();
    assert_eq!(bot.send(&body, headers).await.0, 401);
    assert_eq!(
        bot.send(&body, json!({"content-type": "application/json"}))
            .await
            .0,
        401
    );

    let stale = (Utc::now().timestamp() - 301).to_string();
    let signature = bot.key.sign(format!("{stale}{body}").as_bytes());
    let headers = json!({"x-signature-ed25519": hex::encode(signature.to_bytes()), "x-signature-timestamp": stale});
    assert_eq!(bot.send(&body, headers).await.0, 401);

    // Signed for one body, sent with another.
    let headers = bot.signed(&body);
    assert_eq!(bot.send(&body.replace("1", "2"), headers).await.0, 401);
}

#[tokio::test]
async fn event_list_answers_inline() {
    let bot = bot(store_with_sales().await, 2000).await;
    let (status, answer) = bot.send_fixture("event_list.json").await;
    assert_eq!(status, 200);
    assert_eq!(answer["type"], 4);
    let content = answer["data"]["content"].as_str().unwrap();
    assert!(
        content.contains(SLUG) && content.contains("開賣中 On sale") && content.contains("sold 4"),
        "{content}"
    );
    assert_eq!(answer["data"]["allowed_mentions"], json!({"parse": []}));
    assert!(bot.edits().await.is_empty());
}

#[tokio::test]
async fn event_status_shows_each_ticket_type_and_totals() {
    let bot = bot(store_with_sales().await, 2000).await;
    let (_, answer) = bot.send_fixture("event_status.json").await;
    assert_eq!(answer["type"], 4);
    let embed = &answer["data"]["embeds"][0];
    let fields = embed["fields"].as_array().unwrap();
    assert_eq!(fields[0]["name"], "Regular 一般票");
    assert!(fields[0]["value"].as_str().unwrap().contains("sold **3**"));
    assert!(fields[1]["value"].as_str().unwrap().contains("sold **1**"));
    let description = embed["description"].as_str().unwrap();
    assert!(
        description.contains("sold **4**")
            && description.contains("TWD 10,400")
            && description.contains("refunded 1"),
        "{description}"
    );
}

#[tokio::test]
async fn a_slow_store_gets_a_deferred_reply_and_one_edit_of_original() {
    let slow = Arc::new(SlowWarehouse {
        inner: store_with_sales().await,
        delay: Duration::from_millis(400),
    });
    let bot = bot(slow, 200).await;
    let (status, answer) = bot.send_fixture("event_status.json").await;
    assert_eq!(status, 200);
    assert_eq!(answer["type"], 5, "deferred: {answer}");
    let edits = bot.edits().await;
    assert_eq!(edits.len(), 1, "exactly one edit of @original");
    assert_eq!(edits[0].method.as_str(), "PATCH");
    let body = String::from_utf8_lossy(&edits[0].body);
    assert!(
        body.contains("name=\"payload_json\"") && body.contains("Regular 一般票"),
        "{body}"
    );
}

#[tokio::test]
async fn event_report_is_deferred_and_attaches_the_csv_and_chart() {
    let bot = bot(store_with_sales().await, 2000).await;
    let (_, answer) = bot.send_fixture("event_report.json").await;
    assert_eq!(answer["type"], 5);
    let edits = bot.edits().await;
    assert_eq!(edits.len(), 1);
    let body = &edits[0].body;
    let text = String::from_utf8_lossy(body);
    assert!(text.contains("name=\"files[0]\"; filename=\"report-pycon-tw-2026-individual-2026-03-01-2026-03-07.csv\""), "{text}");
    assert!(text.contains(
        "name=\"files[1]\"; filename=\"report-pycon-tw-2026-individual-2026-03-01-2026-03-07.png\""
    ));
    let expected_csv = "ticket,2026-03-01,2026-03-02,2026-03-03,2026-03-04,2026-03-05,2026-03-06,2026-03-07,total\n\
        Regular 一般票,1,1,1,0,0,0,0,3\n\
        Student 學生票,0,1,0,0,0,0,0,1\n\
        total,1,2,1,0,0,0,0,4\n";
    assert!(text.contains(expected_csv), "{text}");
    assert!(
        body.windows(8).any(|w| w == b"\x89PNG\r\n\x1a\n"),
        "a PNG is attached"
    );
    // Attachment ids are snowflake strings: the index of each files[n] part.
    assert!(
        text.contains(r#""id":"0""#) && text.contains(r#""id":"1""#),
        "{text}"
    );
    assert!(
        !text.contains("\"flags\""),
        "a public reply's edit carries no flags"
    );
}

#[tokio::test]
async fn a_bad_report_range_is_refused_inline_and_privately() {
    let bot = bot(store_with_sales().await, 2000).await;
    let body = fixture("event_report.json").replace("2026-03-07", "2026-02-07");
    let (_, answer) = bot.send(&body, bot.signed(&body)).await;
    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64);
    assert!(bot.edits().await.is_empty());
}

#[tokio::test]
async fn slugs_autocomplete_from_the_events_seen() {
    let bot = bot(store_with_sales().await, 2000).await;
    let (_, answer) = bot.send_fixture("event_status_autocomplete.json").await;
    assert_eq!(answer["type"], 8);
    assert_eq!(answer["data"]["choices"][0]["value"], SLUG);
}

#[tokio::test]
async fn operator_commands_need_the_role() {
    let bot = bot(store_with_sales().await, 2000).await;
    let (_, answer) = bot.send_fixture("autopilot_poll_no_role.json").await;
    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64, "refused privately");
    assert_eq!(bot.operations.polls.load(Ordering::SeqCst), 0);

    let (_, answer) = bot.send_fixture("autopilot_poll.json").await;
    assert_eq!(answer["type"], 5);
    assert_eq!(bot.operations.polls.load(Ordering::SeqCst), 1);
    let edits = bot.edits().await;
    assert_eq!(edits.len(), 1);
    assert!(String::from_utf8_lossy(&edits[0].body).contains("2 new paid"));
}

#[tokio::test]
async fn resend_is_ephemeral_and_shows_no_personal_data() {
    let bot = bot(store_with_sales().await, 2000).await;
    let (_, answer) = bot.send_fixture("autopilot_resend.json").await;
    assert_eq!(answer["type"], 5);
    assert_eq!(answer["data"]["flags"], 64, "only the operator sees it");
    assert_eq!(bot.operations.resends.load(Ordering::SeqCst), 1);
    let edits = bot.edits().await;
    let text = String::from_utf8_lossy(&edits[0].body).into_owned();
    assert!(
        text.contains("Invitation resent: attendee 84296/84748358 via mailgun"),
        "{text}"
    );
    // Ephemeral by the deferral; the edit of @original may not carry flags.
    assert!(!text.contains("\"flags\""), "{text}");
    assert!(!text.contains('@') || text.contains("@original") || !text.contains(".com"));
}

/// `/autopilot import` with the attendees (and orders) exports attached, served by `base`.
fn import_interaction(base: &str, attendees_url: Option<&str>) -> String {
    let mut interaction: Value = serde_json::from_str(&fixture("autopilot_resend.json")).unwrap();
    let attendees_url = attendees_url.map_or_else(
        || format!("{base}/attachments/1/attendees.csv"),
        str::to_owned,
    );
    interaction["data"]["options"] = json!([{
        "name": "import", "type": 1, "options": [
            {"name": "event", "type": 3, "value": "pycontw-2026-individual"},
            {"name": "attendees", "type": 11, "value": "1351000000000000001"},
            {"name": "orders", "type": 11, "value": "1351000000000000002"}
        ]
    }]);
    interaction["data"]["resolved"] = json!({"attachments": {
        "1351000000000000001": {
            "id": "1351000000000000001", "filename": "attendees.csv", "size": 19,
            "url": attendees_url, "proxy_url": attendees_url, "content_type": "text/csv; charset=utf-8"
        },
        "1351000000000000002": {
            "id": "1351000000000000002", "filename": "orders.csv", "size": 17,
            "url": format!("{base}/attachments/2/orders.csv"), "proxy_url": "", "content_type": "text/csv"
        }
    }});
    interaction.to_string()
}

#[tokio::test]
async fn import_fetches_the_attachments_and_hands_them_to_the_poller() {
    let bot = bot(store_with_sales().await, 2000).await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path("/attachments/1/attendees.csv"))
        .respond_with(ResponseTemplate::new(200).set_body_string("Id,票種,票券付款狀態\n"))
        .mount(&bot.discord)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path("/attachments/2/orders.csv"))
        .respond_with(ResponseTemplate::new(200).set_body_string("訂單編號,付款狀態\n"))
        .mount(&bot.discord)
        .await;
    let body = import_interaction(&bot.discord.uri(), None);
    let (status, answer) = bot.send(&body, bot.signed(&body)).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["type"], 5,
        "deferred: downloads and an import take time"
    );
    let imports = bot.operations.imports.lock().unwrap().clone();
    assert_eq!(imports.len(), 1);
    assert_eq!(imports[0].event, "pycontw-2026-individual");
    assert_eq!(imports[0].attendees, "Id,票種,票券付款狀態\n".as_bytes());
    assert_eq!(
        imports[0].orders.as_deref(),
        Some("訂單編號,付款狀態\n".as_bytes())
    );
    let edits: Vec<_> = bot
        .edits()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .collect();
    let text = String::from_utf8_lossy(&edits[0].body).into_owned();
    assert!(
        text.contains("Imported") && text.contains("(import)"),
        "{text}"
    );
}

#[tokio::test]
async fn import_refuses_attachments_outside_discords_cdn_and_non_operators() {
    let bot = bot(store_with_sales().await, 2000).await;
    let body = import_interaction(
        &bot.discord.uri(),
        Some("http://169.254.169.254/latest/meta-data"),
    );
    bot.send(&body, bot.signed(&body)).await;
    assert!(bot.operations.imports.lock().unwrap().is_empty());
    let edits = bot.edits().await;
    let text = String::from_utf8_lossy(&edits.last().unwrap().body).into_owned();
    assert!(text.contains("outside Discord's CDN"), "{text}");

    let mut interaction: Value =
        serde_json::from_str(&import_interaction(&bot.discord.uri(), None)).unwrap();
    interaction["member"]["roles"] = json!([]);
    let body = interaction.to_string();
    let (_, answer) = bot.send(&body, bot.signed(&body)).await;
    assert_eq!(answer["data"]["flags"], 64);
    assert!(answer["data"]["content"]
        .as_str()
        .unwrap()
        .contains("operators only"));
    assert!(bot.operations.imports.lock().unwrap().is_empty());
}
