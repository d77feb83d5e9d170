//! `/autopilot campaign list|send` through `POST /discord/interactions`: signed fixture
//! interactions, a fake poller (`Operations`) that records what it was asked, and a fake
//! Discord (`wiremock`) whose `@original` edit carries the answer of the deferred reply.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use autopilot_core::api::{Api, HttpRequest};
use autopilot_core::discord::bot::{BotSettings, DiscordBot, SpawnDeferrer};
use autopilot_core::discord::operations::Operations;
use autopilot_core::discord::rest::DiscordApi;
use autopilot_core::model::{
    CampaignReport, CampaignStatus, ImportRequest, ResendReport, RunSummary,
};
use autopilot_core::report::ReportSettings;
use autopilot_core::selection::CategoryRules;
use autopilot_core::store::SqliteStore;
use autopilot_core::upstream::HttpOptions;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OPERATOR_ROLE: &str = "111111111111111111";
const APPLICATION_ID: &str = "1300000000000000000";
const REFUSAL: &str = "🔒 此指令限營運人員 / This command is for operators only.";

/// What the fake poller was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Campaigns,
    Send { name: String, dry_run: bool },
    Other(&'static str),
}

/// A poller whose campaigns are fixed: `newsletter` has 150 letters to send, `reminder` 5,
/// `welcome` none; any other name is unknown, with the reconciler's wording.
#[derive(Default)]
struct FakePoller {
    statuses: Vec<CampaignStatus>,
    calls: Mutex<Vec<Call>>,
}

impl FakePoller {
    fn with_statuses(statuses: Vec<CampaignStatus>) -> Arc<Self> {
        Arc::new(Self {
            statuses,
            calls: Mutex::default(),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

fn send(name: &str, dry_run: bool) -> Call {
    Call::Send {
        name: name.to_owned(),
        dry_run,
    }
}

#[async_trait]
impl Operations for FakePoller {
    async fn poll(&self) -> Result<RunSummary, String> {
        self.record(Call::Other("poll"));
        Err("not in this test".into())
    }

    async fn resend(&self, _reference: &str) -> Result<ResendReport, String> {
        self.record(Call::Other("resend"));
        Err("not in this test".into())
    }

    async fn import(&self, _request: ImportRequest) -> Result<RunSummary, String> {
        self.record(Call::Other("import"));
        Err("not in this test".into())
    }

    async fn confirm_revoke(&self, _event: &str) -> Result<RunSummary, String> {
        self.record(Call::Other("confirm_revoke"));
        Err("not in this test".into())
    }

    async fn campaigns(&self) -> Result<Vec<CampaignStatus>, String> {
        self.record(Call::Campaigns);
        Ok(self.statuses.clone())
    }

    async fn send_campaign(&self, name: &str, dry_run: bool) -> Result<CampaignReport, String> {
        self.record(send(name, dry_run));
        let (audience, already_sent, to_send) = match name {
            "newsletter" => (180, 30, 150),
            "reminder" => (12, 7, 5),
            "welcome" => (40, 38, 0),
            _ => {
                let known = "newsletter, reminder, welcome";
                return Err(format!(
                    "no campaign {name:?} in [[campaigns]] (configured: {known})"
                ));
            }
        };
        let mut report = CampaignReport {
            campaign: name.to_owned(),
            dry_run,
            audience,
            already_sent,
            to_send,
            no_contact: 2,
            ..CampaignReport::default()
        };
        if !dry_run {
            report.sent = to_send;
            report.waves = 1;
            report.duration_ms = 840;
        }
        Ok(report)
    }
}

struct Harness {
    api: Api,
    key: SigningKey,
    discord: MockServer,
}

impl Harness {
    async fn new(poller: Arc<FakePoller>) -> Self {
        let discord = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path_regex(format!(
                r"^/webhooks/{APPLICATION_ID}/[^/]+/messages/@original$"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
            .mount(&discord)
            .await;
        let key = SigningKey::from_bytes(&[21u8; 32]);
        let rest =
            DiscordApi::new(&discord.uri(), APPLICATION_ID, None, HttpOptions::default()).unwrap();
        let bot = DiscordBot::new(
            key.verifying_key(),
            Arc::new(SqliteStore::in_memory().unwrap()),
            CategoryRules::default(),
            ReportSettings::default(),
            BotSettings {
                operator_role_id: Some(OPERATOR_ROLE.to_owned()),
                ..BotSettings::default()
            },
            Some(poller),
            Arc::new(rest),
            Arc::new(SpawnDeferrer),
        );
        Self {
            api: Api::new(None).with_discord(Arc::new(bot)),
            key,
            discord,
        }
    }

    /// Posts `interaction`, signed as Discord signs it; the response's JSON.
    async fn post(&self, interaction: &Value) -> Value {
        let body = serde_json::to_vec(interaction).unwrap();
        let timestamp = Utc::now().timestamp().to_string();
        let mut message = timestamp.clone().into_bytes();
        message.extend_from_slice(&body);
        let signature = hex::encode(self.key.sign(&message).to_bytes());
        let request: HttpRequest = http::Request::builder()
            .method("POST")
            .uri("/discord/interactions")
            .header("x-signature-ed25519", signature)
            .header("x-signature-timestamp", timestamp)
            .body(Bytes::from(body))
            .unwrap();
        let response = self.api.handle(request).await;
        assert_eq!(response.status(), 200);
        serde_json::from_slice(response.body()).unwrap()
    }

    /// Posts `interaction`, expects a deferred reply (type 5), and returns the `content` the
    /// later edit of `@original` carried.
    async fn deferred(&self, interaction: &Value) -> String {
        let response = self.post(interaction).await;
        assert_eq!(response, json!({"type": 5}));
        let edits = self.edits_within(Duration::from_secs(5)).await;
        assert_eq!(edits.len(), 1, "one edit of @original");
        let token = interaction["token"].as_str().unwrap();
        assert_eq!(
            edits[0].url.path(),
            format!("/webhooks/{APPLICATION_ID}/{token}/messages/@original")
        );
        let payload = payload_json(&edits[0].body);
        // The edit may not carry flags: ephemerality was fixed by the deferral.
        assert!(payload.get("flags").is_none(), "{payload}");
        assert_eq!(payload["allowed_mentions"], json!({"parse": []}));
        payload["content"].as_str().unwrap_or_default().to_owned()
    }

    /// The PATCHes of `@original` received, waiting up to `limit` for the first.
    async fn edits_within(&self, limit: Duration) -> Vec<wiremock::Request> {
        let started = Instant::now();
        loop {
            let edits: Vec<wiremock::Request> = self
                .discord
                .received_requests()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|request| request.method.as_str() == "PATCH")
                .collect();
            if !edits.is_empty() || started.elapsed() > limit {
                return edits;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The `payload_json` part of a multipart edit (the only part when nothing is attached).
fn payload_json(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    assert!(text.contains("name=\"payload_json\""), "{text}");
    let start = text.find('{').expect("a JSON payload");
    let end = text.rfind('}').expect("a JSON payload");
    serde_json::from_str(&text[start..=end]).unwrap()
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/discord")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `autopilot_campaign_send.json` for campaign `name`.
fn send_fixture(name: &str) -> Value {
    let mut interaction = fixture("autopilot_campaign_send.json");
    interaction["data"]["options"][0]["options"][0]["options"][0]["value"] = json!(name);
    interaction
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn campaign_list_shows_one_line_per_campaign() {
    let poller = FakePoller::with_statuses(vec![
        CampaignStatus {
            name: "newsletter".into(),
            schedule: "at 2026-07-30T01:00:00Z".into(),
            catch_up: false,
            events: 2,
            audience: 180,
            sent: 30,
            pending: 150,
            in_flight: 4,
            failed: 1,
            next_due: Some(at("2026-07-30T01:00:00Z")),
        },
        CampaignStatus {
            name: "reminder".into(),
            schedule: "manual".into(),
            catch_up: true,
            events: 1,
            audience: 12,
            sent: 12,
            pending: 0,
            in_flight: 0,
            failed: 0,
            next_due: None,
        },
    ]);
    let harness = Harness::new(poller.clone()).await;
    let content = harness
        .deferred(&fixture("autopilot_campaign_list.json"))
        .await;
    assert_eq!(
        content,
        "**活動信 / Campaigns**\n\
         • `newsletter` · at 2026-07-30T01:00:00Z · 名單 audience 180 · 已寄 sent 30 · 待寄 pending 150 · 寄送中 in flight 4 · 失敗 failed 1 · 下次 next due 2026-07-30 09:00（Asia/Taipei）\n\
         • `reminder` · manual · 名單 audience 12 · 已寄 sent 12 · 待寄 pending 0"
    );
    assert_eq!(poller.calls(), [Call::Campaigns]);
}

#[tokio::test]
async fn campaign_list_without_campaigns_says_none_are_configured() {
    let poller = FakePoller::with_statuses(Vec::new());
    let harness = Harness::new(poller.clone()).await;
    let content = harness
        .deferred(&fixture("autopilot_campaign_list.json"))
        .await;
    assert!(content.contains("No campaigns are configured"), "{content}");
    assert!(content.contains("`[[campaigns]]`"), "{content}");
    assert_eq!(poller.calls(), [Call::Campaigns]);
}

#[tokio::test]
async fn campaign_list_of_many_stays_within_2000_characters() {
    let statuses = (0..120)
        .map(|index| CampaignStatus {
            name: format!("letter-{index:03}"),
            schedule: "3d before each event's start".into(),
            audience: 2_000,
            sent: 1_000,
            pending: 1_000,
            ..CampaignStatus::default()
        })
        .collect();
    let harness = Harness::new(FakePoller::with_statuses(statuses)).await;
    let content = harness
        .deferred(&fixture("autopilot_campaign_list.json"))
        .await;
    assert!(content.chars().count() <= 2_000, "{}", content.len());
    let shown = content.lines().filter(|line| line.starts_with('•')).count();
    assert!(
        content.ends_with(&format!("and {} more", 120 - shown)),
        "{content}"
    );
}

#[tokio::test]
async fn campaign_send_to_more_than_100_asks_for_confirm_and_sends_nothing() {
    let poller = FakePoller::with_statuses(Vec::new());
    let harness = Harness::new(poller.clone()).await;
    let content = harness
        .deferred(&fixture("autopilot_campaign_send.json"))
        .await;
    assert_eq!(
        content,
        "✋ 尚未寄出 / Nothing sent: campaign `newsletter` would go to 150 people. \
         Run `/autopilot campaign send name:newsletter confirm:True` to send it."
    );
    // Only the dry run: nothing was sent.
    assert_eq!(poller.calls(), [send("newsletter", true)]);
}

#[tokio::test]
async fn campaign_send_with_confirm_sends_and_shows_the_summary() {
    let poller = FakePoller::with_statuses(Vec::new());
    let harness = Harness::new(poller.clone()).await;
    let content = harness
        .deferred(&fixture("autopilot_campaign_send_confirm.json"))
        .await;
    assert_eq!(
        content,
        "📬 已寄出 / Sent: campaign newsletter: audience 180, already sent 30, sent 150, \
         failed 0, uncertain 0, not attempted 0, no contact 2 (1 waves, 840 ms)"
    );
    assert_eq!(
        poller.calls(),
        [send("newsletter", true), send("newsletter", false)]
    );
}

#[tokio::test]
async fn campaign_send_to_a_few_sends_without_confirm() {
    let poller = FakePoller::with_statuses(Vec::new());
    let harness = Harness::new(poller.clone()).await;
    let content = harness.deferred(&send_fixture("reminder")).await;
    assert!(
        content.starts_with(
            "📬 已寄出 / Sent: campaign reminder: audience 12, already sent 7, sent 5,"
        ),
        "{content}"
    );
    assert_eq!(
        poller.calls(),
        [send("reminder", true), send("reminder", false)]
    );
}

#[tokio::test]
async fn campaign_send_when_everyone_has_it_sends_nothing() {
    let poller = FakePoller::with_statuses(Vec::new());
    let harness = Harness::new(poller.clone()).await;
    let content = harness.deferred(&send_fixture("welcome")).await;
    assert_eq!(
        content,
        "✅ 無需寄送 / Nothing to send: everyone selected already has campaign `welcome` \
         (audience 40, already sent 38, no contact 2)."
    );
    assert_eq!(poller.calls(), [send("welcome", true)]);
}

#[tokio::test]
async fn campaign_commands_refuse_non_operators_without_calling_the_poller() {
    let poller = FakePoller::with_statuses(Vec::new());
    let harness = Harness::new(poller.clone()).await;
    let send = fixture("autopilot_campaign_send_no_role.json");
    // The same fixture's member asking for the list.
    let mut list = send.clone();
    list["data"] = fixture("autopilot_campaign_list.json")["data"].clone();
    for interaction in [send, list] {
        let response = harness.post(&interaction).await;
        assert_eq!(
            response,
            json!({"type": 4, "data": {
                "content": REFUSAL, "flags": 64, "allowed_mentions": {"parse": []}
            }})
        );
    }
    // The same refusal as the other operator commands.
    let poll = harness.post(&fixture("autopilot_poll_no_role.json")).await;
    assert_eq!(poll["data"]["content"], REFUSAL);
    assert!(poller.calls().is_empty(), "{:?}", poller.calls());
    assert!(harness
        .edits_within(Duration::from_millis(200))
        .await
        .is_empty());
}

#[tokio::test]
async fn an_unknown_campaign_is_shown_to_the_operator() {
    let poller = FakePoller::with_statuses(Vec::new());
    let harness = Harness::new(poller.clone()).await;
    let content = harness.deferred(&send_fixture("newsleter")).await;
    assert_eq!(
        content,
        "⚠️ 未寄出 / Nothing sent: no campaign \"newsleter\" in [[campaigns]] \
         (configured: newsletter, reminder, welcome)"
    );
    assert_eq!(poller.calls(), [send("newsleter", true)]);
}
