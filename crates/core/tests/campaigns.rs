//! Campaigns end to end: 1,000 buyers imported from the sandbox's CSV exports into a SQLite
//! store, then a `[[campaigns]]` letter through Mailgun's fake or the outbox. Exactly once
//! each under provider faults and a crash between the provider's acceptance and the ledger's
//! record; catch-up for later buyers; refunds excluded; scheduled sends from runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use autopilot_core::access::{AccessService, Authorizer, Entitlements, FileGuestList};
use autopilot_core::api::{Api, HttpRequest};
use autopilot_core::campaign::CampaignSettings;
use autopilot_core::contacts::{ContactKey, Sealer};
use autopilot_core::deidentify::PrivacyRules;
use autopilot_core::mail::{
    KlaviyoCampaigns, KlaviyoProvider, MailProvider, MailService, MailSettings, MailTemplate,
    Mailer, MailgunProvider, OutboxProvider,
};
use autopilot_core::model::{Admission, BatchRecord, LedgerEntry, RevokeHold, RunSummary, Step};
use autopilot_core::pii::Sensitive;
use autopilot_core::reconcile::{ImportRequest, ReconcileOptions, Reconciler, Vault};
use autopilot_core::selection::{CategoryRules, Door, EventSelector};
use autopilot_core::store::{Ledger, SqliteStore, StoreError};
use autopilot_sandbox::{Sandbox, SandboxConfig};
use autopilot_test_support::mailgun::{MailgunFake, SendFault};
use bytes::Bytes;
use wiremock::MockServer;

const DOMAIN: &str = "mg.example.org";
const EVENT: u64 = 90_001;
const SLUG: &str = "bench-conf-2026-individual";
const OPS: &str = "ops-token-0123456789abcdef";
const KLAVIYO_KEY: &str = "pk_campaigns-test";

fn campaign(name: &str) -> CampaignSettings {
    CampaignSettings {
        name: name.into(),
        subject: "【{{ event }}】行前信 / Before the day".into(),
        text:
            "{{ name }} 您好, {{ ticket }}{% if checkin_code %} ({{ checkin_code }}){% endif %}\n"
                .into(),
        html: "<p>{{ name }}: {{ ticket }}</p>\n".into(),
        events: Vec::new(),
        tickets: Vec::new(),
        send_at: None,
        before_start: None,
        catch_up: false,
    }
}

enum Provider {
    Mailgun,
    Outbox,
    /// Klaviyo's campaigns API at this base URL (a `KlaviyoFake`).
    Klaviyo(String),
}

struct World {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    mailgun: Arc<MailgunFake>,
    server: MockServer,
    access: Arc<dyn AccessService>,
    mail: Arc<dyn MailService>,
    campaigns: Vec<CampaignSettings>,
    start_at: Option<String>,
}

impl World {
    async fn new(attendees: usize, provider: Provider, campaigns: Vec<CampaignSettings>) -> Self {
        let sandbox = Sandbox::new(SandboxConfig::single_event(11, attendees));
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("autopilot.db")).unwrap());
        let mailgun = MailgunFake::new(DOMAIN);
        let server = MockServer::start().await;
        mailgun.mount(&server).await;
        let access: Arc<dyn AccessService> = Arc::new(Authorizer::new(
            Arc::new(FileGuestList::new(dir.path().join("guestlist.json"))),
            Entitlements::default(),
        ));
        let settings = MailSettings::default();
        let provider: Arc<dyn MailProvider> = match provider {
            Provider::Mailgun => Arc::new(
                MailgunProvider::new(
                    &server.uri(),
                    Sensitive::new("mailgun-key".into()),
                    DOMAIN,
                    &settings.from,
                    Vec::new(),
                    autopilot_test_support::fast::http(500, 2),
                )
                .unwrap(),
            ),
            Provider::Outbox => Arc::new(OutboxProvider::new(
                dir.path().join("outbox"),
                &settings.from,
            )),
            Provider::Klaviyo(base) => Arc::new(
                KlaviyoProvider::new(
                    &base,
                    Sensitive::new(KLAVIYO_KEY.into()),
                    &settings.klaviyo_metric,
                    autopilot_test_support::fast::http(500, 2),
                )
                .unwrap()
                .with_campaigns(
                    KlaviyoCampaigns::new(
                        &base,
                        Sensitive::new(KLAVIYO_KEY.into()),
                        &settings.from,
                        autopilot_test_support::fast::http(500, 2),
                    )
                    .unwrap()
                    .with_import_poll(Duration::from_millis(5)),
                ),
            ),
        };
        let mail: Arc<dyn MailService> = Arc::new(
            Mailer::new(provider, MailTemplate::from_settings(&settings).unwrap())
                .with_campaigns(MailTemplate::for_campaigns(&settings, &campaigns).unwrap()),
        );
        Self {
            sandbox,
            dir,
            store,
            mailgun,
            server,
            access,
            mail,
            campaigns,
            start_at: None,
        }
    }

    fn selector(&self) -> EventSelector {
        autopilot_test_support::sandbox::catalog_of(
            Door::Csv,
            SLUG,
            EVENT,
            "Bench Conf 2026 Registration: Individual",
            self.start_at.clone(),
        )
    }

    fn reconciler_on(&self, ledger: Arc<dyn Ledger>) -> Reconciler {
        self.reconciler_with(ledger, self.campaigns.clone())
    }

    fn reconciler_with(
        &self,
        ledger: Arc<dyn Ledger>,
        campaigns: Vec<CampaignSettings>,
    ) -> Reconciler {
        Reconciler::without_api(
            self.store.clone(),
            ledger,
            self.selector(),
            CategoryRules::default(),
            PrivacyRules::default(),
        )
        .with_vault(Vault {
            store: self.store.clone(),
            sealer: Sealer::new(ContactKey::from_bytes([9; 32]), None),
        })
        .with_access(self.access.clone())
        .with_mail(self.mail.clone())
        .with_campaigns(campaigns, Duration::from_secs(600))
        .with_options(ReconcileOptions {
            step_backoff: Duration::ZERO,
            ..ReconcileOptions::default()
        })
    }

    fn reconciler(&self) -> Reconciler {
        self.reconciler_on(self.store.clone())
    }

    async fn import(&self, reconciler: &Reconciler) -> RunSummary {
        reconciler
            .import(ImportRequest {
                event: SLUG.into(),
                attendees: self.sandbox.attendees_export(EVENT).unwrap(),
                orders: Some(self.sandbox.orders_export(EVENT).unwrap()),
            })
            .await
            .unwrap()
    }

    fn paid_emails(&self) -> Vec<String> {
        self.sandbox
            .attendees(EVENT)
            .into_iter()
            .filter(|a| a.paid && !a.refunded)
            .map(|a| a.email)
            .collect()
    }

    /// Mailgun message requests tagged for `campaign`, as (recipients, form body).
    async fn campaign_requests(&self, campaign: &str) -> Vec<(usize, String)> {
        let tag = format!("o%3Atag=campaign-{campaign}");
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().ends_with("/messages"))
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .filter(|body| body.contains(&tag))
            .map(|body| (body.matches("&to=").count(), body))
            .collect()
    }

    /// Addresses the campaign reached, counted per address (from what Mailgun queued).
    async fn campaign_recipients(&self, campaign: &str) -> HashMap<String, usize> {
        let intents: Vec<String> = self
            .campaign_requests(campaign)
            .await
            .iter()
            .filter_map(|(_, body)| {
                url::form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "v:autopilot-intent")
                    .map(|(_, v)| v.into_owned())
            })
            .collect();
        let mut counts = HashMap::new();
        for send in self.mailgun.sends() {
            if send.queued && send.intent.as_ref().is_some_and(|i| intents.contains(i)) {
                for to in send.to {
                    *counts.entry(to).or_default() += 1;
                }
            }
        }
        counts
    }

    fn outbox_files(&self, campaign: &str) -> usize {
        std::fs::read_dir(self.dir.path().join("outbox"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("campaign-{campaign}-"))
                    })
                    .count()
            })
            .unwrap_or_default()
    }

    async fn letters_recorded(&self, campaign: &str) -> usize {
        self.store
            .admissions(EVENT)
            .await
            .unwrap()
            .values()
            .filter(|a| a.campaigns.get(campaign).is_some_and(|c| c.sent))
            .count()
    }
}

#[tokio::test]
async fn a_campaign_through_mailgun_reaches_each_of_1000_attendees_once_in_one_request_per_ticket_type(
) {
    let world = World::new(1000, Provider::Mailgun, vec![campaign("pre-event")]).await;
    let reconciler = world.reconciler();
    let imported = world.import(&reconciler).await;
    assert_eq!(imported.mailed, 1000, "{:?}", imported.errors);

    let dry = reconciler
        .campaign_send("pre-event", true, None)
        .await
        .unwrap();
    assert_eq!((dry.audience, dry.to_send, dry.sent), (1000, 1000, 0));
    assert!(world.campaign_requests("pre-event").await.is_empty());

    let progress = std::sync::Mutex::new(Vec::new());
    let record = |p: autopilot_core::reconcile::CampaignProgress| {
        progress.lock().unwrap().push((p.done, p.total))
    };
    let report = reconciler
        .campaign_send("pre-event", false, Some(&record))
        .await
        .unwrap();
    assert_eq!(report.sent, 1000, "{report}");
    assert_eq!(report.errors, Vec::<String>::new());
    // Two ticket types: two batch messages of 1,000 recipients between them.
    let requests = world.campaign_requests("pre-event").await;
    assert_eq!(requests.len(), 2);
    assert_eq!(requests.iter().map(|(n, _)| n).sum::<usize>(), 1000);
    let recipients = world.campaign_recipients("pre-event").await;
    assert_eq!(recipients.len(), 1000);
    assert!(recipients.values().all(|&n| n == 1));
    let mut paid = world.paid_emails();
    paid.sort();
    let mut reached: Vec<String> = recipients.into_keys().collect();
    reached.sort();
    assert_eq!(reached, paid);
    assert_eq!(progress.lock().unwrap().last(), Some(&(1000, 1000)));
    assert_eq!(world.letters_recorded("pre-event").await, 1000);

    // Sending again sends nothing: everyone is recorded.
    let again = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!((again.already_sent, again.sent, again.waves), (1000, 0, 0));
    assert_eq!(world.campaign_requests("pre-event").await.len(), 2);
    let list = reconciler.campaign_list().await.unwrap();
    assert_eq!(
        (list[0].audience, list[0].sent, list[0].pending),
        (1000, 1000, 0)
    );
}

#[tokio::test]
async fn a_mailgun_500_after_queuing_is_settled_from_its_events_and_never_sent_twice() {
    let world = World::new(200, Provider::Mailgun, vec![campaign("pre-event")]).await;
    let reconciler = world.reconciler();
    world.import(&reconciler).await;
    // Both batches (two ticket types) are queued by Mailgun but answered 500.
    world
        .mailgun
        .script([SendFault::QueuedButFailed, SendFault::QueuedButFailed]);
    let first = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!(first.sent, 0);
    assert!(first.uncertain > 0, "{first}");
    assert!(first.not_attempted + first.uncertain == 200, "{first}");

    // The first batch was uncertain, so the second waited. The next send settles the first
    // from Mailgun's events and sends the second, which is uncertain in turn; the one after
    // settles it. Nobody is sent a second letter on a guess.
    let second = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert!(world.mailgun.events_requests() > 0);
    assert_eq!(second.sent + second.uncertain, 200, "{second}");
    let third = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!(third.waves, 0, "{third}");
    assert_eq!(world.letters_recorded("pre-event").await, 200, "{third}");
    let recipients = world.campaign_recipients("pre-event").await;
    assert_eq!(recipients.len(), 200);
    assert!(
        recipients.values().all(|&n| n == 1),
        "someone got the letter twice"
    );
}

#[tokio::test]
async fn an_outage_before_queuing_sends_the_letters_on_the_next_send() {
    let world = World::new(100, Provider::Mailgun, vec![campaign("pre-event")]).await;
    let reconciler = world.reconciler();
    world.import(&reconciler).await;
    world.mailgun.set_default(SendFault::Unavailable);
    let down = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!(down.sent, 0);
    assert!(!down.errors.is_empty());
    world.mailgun.set_default(SendFault::None);
    let up = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!(up.sent, 100, "{up}");
    assert!(world
        .campaign_recipients("pre-event")
        .await
        .values()
        .all(|&n| n == 1));
}

/// The ledger of a process that dies right after the provider accepted a wave: every append
/// that records a letter as sent fails.
struct CrashingLedger {
    inner: Arc<SqliteStore>,
    crashed: AtomicBool,
}

#[async_trait]
impl Ledger for CrashingLedger {
    async fn admissions(&self, event_id: u64) -> Result<HashMap<u64, Admission>, StoreError> {
        self.inner.admissions(event_id).await
    }
    async fn append(&self, entries: &[LedgerEntry]) -> Result<(), StoreError> {
        if entries.iter().any(|e| e.step == Step::CampaignSent) {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(StoreError::Backend("the process died".into()));
        }
        self.inner.append(entries).await
    }
    async fn record_run(&self, run: &RunSummary) -> Result<(), StoreError> {
        self.inner.record_run(run).await
    }
    async fn last_run(&self, successful_only: bool) -> Result<Option<RunSummary>, StoreError> {
        self.inner.last_run(successful_only).await
    }
    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        self.inner.recent_runs(limit).await
    }
    async fn intake_outcome(&self, batch_id: &str) -> Result<Option<String>, StoreError> {
        self.inner.intake_outcome(batch_id).await
    }
    async fn record_intake(&self, record: &BatchRecord) -> Result<(), StoreError> {
        self.inner.record_intake(record).await
    }
    async fn revoke_hold(&self, event_id: u64) -> Result<Option<RevokeHold>, StoreError> {
        self.inner.revoke_hold(event_id).await
    }
    async fn record_revoke_hold(&self, hold: &RevokeHold) -> Result<(), StoreError> {
        self.inner.record_revoke_hold(hold).await
    }
}

#[tokio::test]
async fn a_crash_after_mailgun_accepted_the_wave_is_settled_not_sent_again() {
    let world = World::new(300, Provider::Mailgun, vec![campaign("pre-event")]).await;
    world.import(&world.reconciler()).await;
    let crashing = Arc::new(CrashingLedger {
        inner: world.store.clone(),
        crashed: AtomicBool::new(false),
    });
    let dying = world.reconciler_on(crashing.clone());
    let report = dying.campaign_send("pre-event", false, None).await.unwrap();
    assert!(crashing.crashed.load(Ordering::SeqCst));
    assert!(report.errors.iter().any(|e| e.contains("recording")));
    assert_eq!(world.letters_recorded("pre-event").await, 0);
    assert_eq!(world.campaign_recipients("pre-event").await.len(), 300);

    // The restarted process: the open intents are settled from Mailgun's events.
    let restarted = world.reconciler();
    let settled = restarted
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!(settled.sent, 300, "{settled}");
    assert_eq!(settled.waves, 0, "nothing is sent again");
    assert_eq!(world.letters_recorded("pre-event").await, 300);
    assert!(world
        .campaign_recipients("pre-event")
        .await
        .values()
        .all(|&n| n == 1));
}

#[tokio::test]
async fn a_crash_with_the_outbox_finds_its_files_and_writes_none_twice() {
    let world = World::new(150, Provider::Outbox, vec![campaign("pre-event")]).await;
    world.import(&world.reconciler()).await;
    let crashing = Arc::new(CrashingLedger {
        inner: world.store.clone(),
        crashed: AtomicBool::new(false),
    });
    world
        .reconciler_on(crashing)
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!(world.outbox_files("pre-event"), 150);
    let report = world
        .reconciler()
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!(report.sent, 150, "{report}");
    assert_eq!(world.outbox_files("pre-event"), 150);
    assert_eq!(world.letters_recorded("pre-event").await, 150);
}

#[tokio::test]
async fn a_klaviyo_wave_that_stopped_half_way_is_resumed_not_doubled() {
    let (klaviyo, fake) = autopilot_test_support::klaviyo::KlaviyoFake::start(KLAVIYO_KEY).await;
    // The first send job is refused: the campaigns exist as drafts, nothing went out.
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/api/campaign-send-jobs"))
        .respond_with(autopilot_test_support::klaviyo::error(503, "unavailable"))
        .up_to_n_times(1)
        .mount(&klaviyo)
        .await;
    let world = World::new(
        200,
        Provider::Klaviyo(klaviyo.uri()),
        vec![campaign("pre-event")],
    )
    .await;
    let reconciler = world.reconciler();
    world.import(&reconciler).await;
    let first = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!(first.sent, 0, "{first}");
    assert!(first.uncertain > 0, "{first}");
    assert_eq!(world.letters_recorded("pre-event").await, 0);

    let second = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!(world.letters_recorded("pre-event").await, 200, "{second}");
    // One campaign per ticket type, each sent once: the wave was resumed under its id.
    let campaigns = fake.campaigns();
    assert_eq!(campaigns.len(), 2, "{campaigns:?}");
    assert!(
        campaigns.iter().all(|c| c.status != "Draft"),
        "{campaigns:?}"
    );
    let again = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!((again.sent, again.waves), (0, 0));
    assert_eq!(fake.campaigns().len(), 2);
}

#[tokio::test]
async fn refunded_attendees_get_no_letter_and_tickets_select_the_audience() {
    let mut students = campaign("students");
    students.tickets = vec!["student".into()];
    let world = World::new(100, Provider::Outbox, vec![campaign("pre-event"), students]).await;
    let reconciler = world.reconciler();
    world.import(&reconciler).await;
    let refunded: Vec<u64> = world
        .sandbox
        .attendees(EVENT)
        .into_iter()
        .take(3)
        .map(|a| a.id)
        .collect();
    for id in &refunded {
        assert!(world.sandbox.refund(EVENT, *id));
    }
    let summary = world.import(&reconciler).await;
    assert_eq!(summary.refunded, 3, "{:?}", summary.errors);

    let report = reconciler
        .campaign_send("pre-event", false, None)
        .await
        .unwrap();
    assert_eq!((report.audience, report.sent), (97, 97));
    let admissions = world.store.admissions(EVENT).await.unwrap();
    for id in &refunded {
        assert!(!admissions[id].campaigns.contains_key("pre-event"));
    }
    let students_paid = world
        .sandbox
        .attendees(EVENT)
        .into_iter()
        .filter(|a| a.paid && !a.refunded && a.ticket_name.contains("Student"))
        .count();
    let report = reconciler
        .campaign_send("students", false, None)
        .await
        .unwrap();
    assert_eq!(report.sent as usize, students_paid);
    assert!(students_paid > 0 && students_paid < 97);
}

#[tokio::test]
async fn with_catch_up_a_later_buyer_gets_the_letter_in_the_run_that_invites_them() {
    let mut catching = campaign("catching");
    catching.catch_up = true;
    let once = campaign("once");
    let mut world = World::new(20, Provider::Outbox, vec![catching, once]).await;
    world.start_at = Some((chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339());
    let reconciler = world.reconciler();
    world.import(&reconciler).await;
    // Not sent by anyone yet: a run sends neither.
    let run = world.import(&reconciler).await;
    assert_eq!(run.campaign_letters, 0);
    for name in ["catching", "once"] {
        let report = reconciler.campaign_send(name, false, None).await.unwrap();
        assert_eq!(report.sent, 20);
    }
    let late = world.sandbox.purchase(EVENT, true).unwrap();
    let run = world.import(&reconciler).await;
    assert_eq!(run.mailed, 1);
    assert_eq!(run.campaign_letters, 1, "{:?}", run.warnings);
    let admissions = world.store.admissions(EVENT).await.unwrap();
    assert!(admissions[&late].campaigns["catching"].sent);
    assert!(!admissions[&late].campaigns.contains_key("once"));
    // `once` reaches the late buyer only when an operator sends it again.
    let report = reconciler.campaign_send("once", false, None).await.unwrap();
    assert_eq!((report.already_sent, report.sent), (20, 1));
}

#[tokio::test]
async fn catch_up_stops_when_the_event_starts() {
    let mut catching = campaign("catching");
    catching.catch_up = true;
    let mut world = World::new(5, Provider::Outbox, vec![catching]).await;
    world.start_at = Some((chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339());
    let reconciler = world.reconciler();
    world.import(&reconciler).await;
    reconciler
        .campaign_send("catching", false, None)
        .await
        .unwrap();
    world.sandbox.purchase(EVENT, true).unwrap();
    let run = world.import(&reconciler).await;
    assert_eq!((run.mailed, run.campaign_letters), (1, 0));
}

#[tokio::test]
async fn a_due_campaign_goes_from_the_next_run_and_one_within_the_lead_is_scheduled() {
    let mut due = campaign("due");
    due.send_at = Some((chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339());
    let deliver_at = chrono::Utc::now() + chrono::Duration::minutes(5);
    let mut soon = campaign("soon");
    soon.send_at = Some(deliver_at.to_rfc3339());
    let mut later = campaign("later");
    later.before_start = Some("2d".into());
    let mut world = World::new(10, Provider::Mailgun, vec![due, soon, later]).await;
    world.start_at = Some((chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339());
    let reconciler = world.reconciler();
    let run = world.import(&reconciler).await;
    assert_eq!(run.campaign_letters, 20, "{:?}", run.warnings);
    assert_eq!(world.letters_recorded("due").await, 10);
    assert_eq!(world.letters_recorded("later").await, 0);
    let soon_requests = world.campaign_requests("soon").await;
    assert!(!soon_requests.is_empty());
    let expected = url::form_urlencoded::byte_serialize(deliver_at.to_rfc2822().as_bytes())
        .collect::<String>();
    assert!(soon_requests
        .iter()
        .all(|(_, body)| body.contains(&format!("o%3Adeliverytime={expected}"))));
    // The next run sends none of them again.
    let run = world.import(&reconciler).await;
    assert_eq!(run.campaign_letters, 0);
    let list = reconciler.campaign_list().await.unwrap();
    let later = list.iter().find(|c| c.name == "later").unwrap();
    assert_eq!((later.sent, later.pending), (0, 10));
    assert!(later.next_due.is_some());
}

#[tokio::test]
async fn a_scheduled_send_that_failed_half_way_is_finished_by_the_next_run() {
    let mut due = campaign("due");
    due.send_at = Some((chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339());
    let world = World::new(200, Provider::Mailgun, vec![due]).await;
    // Admitted and invited by a loop that has no campaigns yet.
    world
        .import(&world.reconciler_with(world.store.clone(), Vec::new()))
        .await;
    // The first ticket type's batch is queued, then Mailgun goes down for the second.
    world
        .mailgun
        .script([SendFault::None, SendFault::Unavailable]);
    let reconciler = world.reconciler();
    let first = reconciler.run().await;
    let sent_first = world.letters_recorded("due").await;
    assert!(sent_first > 0 && sent_first < 200, "{:?}", first.warnings);
    // Not a catch-up campaign, but what its own send left undone is finished.
    let second = reconciler.run().await;
    assert_eq!(
        world.letters_recorded("due").await,
        200,
        "{:?}",
        second.warnings
    );
    assert_eq!(first.campaign_letters + second.campaign_letters, 200);
    let recipients = world.campaign_recipients("due").await;
    assert_eq!(recipients.len(), 200);
    assert!(recipients.values().all(|&n| n == 1));
    // And nothing more after that.
    assert_eq!(reconciler.run().await.campaign_letters, 0);
}

#[test]
fn a_broken_template_is_refused_naming_the_campaign_and_the_line() {
    let mut broken = campaign("pre-event");
    broken.text = "line one\n{% if name %}\nno end".into();
    let error = MailTemplate::for_campaigns(&MailSettings::default(), &[broken])
        .unwrap_err()
        .to_string();
    assert!(error.contains("pre-event"), "{error}");
    assert!(error.contains("text"), "{error}");
    assert!(error.contains("line 3"), "{error}");
}

fn ops_request(method: &str, path: &str, body: &str) -> HttpRequest {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {OPS}"))
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn the_campaign_routes_list_send_and_refuse_what_they_cannot_do() {
    let world = World::new(30, Provider::Outbox, vec![campaign("pre-event")]).await;
    let reconciler = Arc::new(world.reconciler());
    world.import(&reconciler).await;
    let api = Api::new(Some(Sensitive::new(OPS.into()))).with_poller(reconciler.clone());

    let listed = api.handle(ops_request("GET", "/campaigns", "")).await;
    assert_eq!(listed.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(listed.body()).unwrap();
    assert_eq!(body["campaigns"][0]["audience"], 30);

    let dry = api
        .handle(ops_request(
            "POST",
            "/campaigns/pre-event/send",
            r#"{"dry_run": true}"#,
        ))
        .await;
    assert_eq!(dry.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(dry.body()).unwrap();
    assert_eq!(
        (body["to_send"].as_u64(), body["sent"].as_u64()),
        (Some(30), Some(0))
    );

    let sent = api
        .handle(ops_request("POST", "/campaigns/pre-event/send", ""))
        .await;
    assert_eq!(sent.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(sent.body()).unwrap();
    assert_eq!(body["sent"], 30);
    let text = String::from_utf8_lossy(sent.body()).to_string();
    for attendee in world.sandbox.attendees(EVENT) {
        assert!(!text.contains(&attendee.email));
    }

    let unknown = api
        .handle(ops_request("POST", "/campaigns/nope/send", ""))
        .await;
    assert_eq!(unknown.status(), 404);
    let malformed = api
        .handle(ops_request(
            "POST",
            "/campaigns/pre-event/send",
            "{not json",
        ))
        .await;
    assert_eq!(malformed.status(), 400);
    let typo = api
        .handle(ops_request(
            "POST",
            "/campaigns/pre-event/send",
            r#"{"dryrun": true}"#,
        ))
        .await;
    assert_eq!(typo.status(), 400);
    let mut anonymous = ops_request("POST", "/campaigns/pre-event/send", "");
    anonymous.headers_mut().remove("authorization");
    assert_eq!(api.handle(anonymous).await.status(), 401);
}
