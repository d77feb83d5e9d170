//! The CSV and webhook doors end to end: the sandbox's exports and webhook batches, imported
//! and drained into a SQLite store, with the guest list as a file and Mailgun as a fake that
//! can be switched off. Nothing admitted twice, nothing lost, contacts only ever sealed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use autopilot_core::access::{AccessService, Authorizer, Entitlements, FileGuestList};
use autopilot_core::api::{Api, HttpRequest};
use autopilot_core::contacts::{ContactKey, Sealer};
use autopilot_core::deidentify::PrivacyRules;
use autopilot_core::intake::{
    CsvMapping, DrainTrigger, ImportError, IntakeQueue, LocalTrigger, Receiver, WebhookMapping,
};
use autopilot_core::mail::{MailService, MailSettings, MailTemplate, Mailer, MailgunProvider};
use autopilot_core::pii::{sha256_hex, Sensitive};
use autopilot_core::reconcile::{
    ImportFailure, ImportRequest, IntakeMappings, ReconcileOptions, Reconciler, RunOutcome, Vault,
};
use autopilot_core::selection::{CatalogEntry, CatalogEvent, CategoryRules, Door, EventSelector};
use autopilot_core::store::{ContactVault, Ledger, PipelineTable, SqliteStore, Warehouse};
use autopilot_core::upstream::HttpOptions;
use autopilot_sandbox::{AttendeeTruth, Sandbox, SandboxConfig};
use autopilot_test_support::mailgun::{MailgunFake, SendFault};
use bytes::Bytes;
use serde_json::{json, Value};
use wiremock::MockServer;

const DOMAIN: &str = "mg.example.org";
const INDIVIDUAL: u64 = 80_101;
const CORPORATE: u64 = 80_102;
const SLUG: &str = "pycontw-2026-individual";
const TOKEN: &str = "webhook-token-0123456789";

fn fast() -> HttpOptions {
    autopilot_test_support::fast::http(500, 2)
}

struct World {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    mailgun: Arc<MailgunFake>,
    _mailgun_server: MockServer,
    access: Arc<dyn AccessService>,
    mail: Arc<dyn MailService>,
    key: ContactKey,
}

fn catalog(door: Door) -> EventSelector {
    let mut selector = EventSelector {
        source: Some(door),
        ..EventSelector::default()
    };
    for (slug, id, name) in [
        (
            SLUG,
            INDIVIDUAL,
            "PyCon Taiwan 2026 Registration: Individual",
        ),
        (
            "pycontw-2026-corporate",
            CORPORATE,
            "PyCon Taiwan 2026 Registration: Corporate",
        ),
    ] {
        selector.catalog.insert(
            slug.into(),
            CatalogEntry::Event(CatalogEvent {
                id,
                name: Some(name.into()),
                source: Some(door),
                start_at: None,
                end_at: None,
            }),
        );
    }
    selector
}

impl World {
    async fn new() -> Self {
        let mut config = SandboxConfig::demo(21);
        config.purchases_per_step = 2.0;
        config.refund_share = 0.0;
        config.atm_pay_per_step = 0.0;
        config.multi_ticket_share = 0.5;
        let sandbox = Sandbox::new(config);
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
        let mail: Arc<dyn MailService> = Arc::new(Mailer::new(
            Arc::new(
                MailgunProvider::new(
                    &server.uri(),
                    Sensitive::new("mailgun-key".into()),
                    DOMAIN,
                    &settings.from,
                    Vec::new(),
                    fast(),
                )
                .unwrap(),
            ),
            MailTemplate::from_settings(&settings).unwrap(),
        ));
        Self {
            sandbox,
            dir,
            store,
            mailgun,
            _mailgun_server: server,
            access,
            mail,
            key: ContactKey::from_bytes([7; 32]),
        }
    }

    fn reconciler_with(&self, door: Door, sealer: Sealer, categories: CategoryRules) -> Reconciler {
        Reconciler::without_api(
            self.store.clone(),
            self.store.clone(),
            catalog(door),
            categories,
            PrivacyRules::default(),
        )
        .with_vault(Vault {
            store: self.store.clone(),
            sealer,
        })
        .with_queue(self.store.clone())
        .with_mappings(IntakeMappings {
            csv: CsvMapping::default(),
            webhook: WebhookMapping::default(),
        })
        .with_access(self.access.clone())
        .with_mail(self.mail.clone())
        .with_options(ReconcileOptions {
            step_backoff: Duration::ZERO,
            ..ReconcileOptions::default()
        })
    }

    fn reconciler(&self, door: Door) -> Reconciler {
        self.reconciler_with(
            door,
            Sealer::new(self.key.clone(), None),
            CategoryRules::default(),
        )
    }

    fn request(&self, event: &str, event_id: u64, with_orders: bool) -> ImportRequest {
        ImportRequest {
            event: event.into(),
            attendees: self.sandbox.attendees_export(event_id).unwrap(),
            orders: with_orders.then(|| self.sandbox.orders_export(event_id).unwrap()),
        }
    }

    fn truth(&self, event_id: u64) -> Vec<AttendeeTruth> {
        self.sandbox.attendees(event_id)
    }

    fn paid(&self, event_id: u64) -> Vec<AttendeeTruth> {
        self.truth(event_id)
            .into_iter()
            .filter(|a| a.paid && !a.refunded)
            .collect()
    }

    fn mails(&self) -> usize {
        self.mailgun.queued_per_address().values().sum()
    }

    fn guests(&self) -> serde_json::Map<String, Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("guestlist.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }
}

#[tokio::test]
async fn an_import_admits_every_paid_buyer_once_and_a_reimport_changes_nothing() {
    let world = World::new().await;
    for _ in 0..4 {
        world.sandbox.step();
    }
    let reconciler = world.reconciler(Door::Csv);
    let paid = world.paid(INDIVIDUAL);
    let unpaid = world
        .truth(INDIVIDUAL)
        .iter()
        .filter(|a| !a.paid && !a.refunded)
        .count() as u64;
    assert!(paid.len() > 30 && unpaid > 0);

    let summary = reconciler
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Ok, "{summary:?}");
    assert_eq!(summary.kind, "import");
    assert_eq!(summary.new_paid, paid.len() as u64);
    assert_eq!(summary.pending, unpaid, "ATM orders not yet paid wait");
    assert_eq!(summary.granted, paid.len() as u64);
    assert_eq!(summary.mailed, paid.len() as u64);
    assert_eq!(world.mails(), paid.len());
    // Every paid buyer is on the guest list, by the address they registered with.
    let guests = world.guests();
    for buyer in &paid {
        assert!(
            guests.contains_key(&buyer.email.to_lowercase()),
            "{}",
            buyer.email
        );
    }
    // The rows are de-identified: the contact columns hold hashes.
    let rows = world
        .store
        .warehouse_rows("ods_kktix_ticket_individual_attendees")
        .await
        .unwrap();
    assert_eq!(rows.len(), paid.len());
    let record: Value = serde_json::from_str(&rows[0].attendee_infos).unwrap();
    let email = record["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == "聯絡人 Email")
        .unwrap();
    let buyer = paid.iter().find(|a| a.id == rows[0].attendee_id).unwrap();
    assert_eq!(email[1], sha256_hex(&buyer.email));

    let before = world.store.ledger_len().await.unwrap();
    let again = reconciler
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    assert_eq!(again.outcome, RunOutcome::Ok, "{again:?}");
    assert_eq!(
        (again.new_paid, again.granted, again.mailed, again.refunded),
        (0, 0, 0, 0)
    );
    assert_eq!(world.store.ledger_len().await.unwrap(), before);
    assert_eq!(world.mails(), paid.len(), "nobody mailed twice");
}

#[tokio::test]
async fn a_cancelled_order_or_an_absence_from_a_later_export_is_a_refund() {
    let world = World::new().await;
    let reconciler = world.reconciler(Door::Csv);
    reconciler
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    let paid = world.paid(INDIVIDUAL);
    let (first, second) = (&paid[0], &paid[1]);
    assert!(world.guests().contains_key(&first.email.to_lowercase()));

    // Refunded at KKTIX: the orders export marks it cancelled, the attendees export drops it.
    assert!(world.sandbox.refund(INDIVIDUAL, first.id));
    let summary = reconciler
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    assert_eq!((summary.refunded, summary.revoked), (1, 1), "{summary:?}");
    assert!(!world.guests().contains_key(&first.email.to_lowercase()));

    // Without the orders export, an absence from the full export says the same.
    assert!(world.sandbox.refund(INDIVIDUAL, second.id));
    let summary = reconciler
        .import(world.request(SLUG, INDIVIDUAL, false))
        .await
        .unwrap();
    assert_eq!((summary.refunded, summary.revoked), (1, 1), "{summary:?}");
    let sales = world
        .store
        .sales("ods_kktix_ticket_individual_attendees", INDIVIDUAL)
        .await
        .unwrap();
    assert_eq!(sales.iter().filter(|s| s.cancelled).count(), 2);
}

#[tokio::test]
async fn a_mail_outage_during_an_import_is_mailed_by_a_later_poll_from_the_sealed_contacts() {
    let world = World::new().await;
    world.mailgun.set_default(SendFault::Unavailable);
    let reconciler = world.reconciler(Door::Csv);
    let summary = reconciler
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    let paid = world.paid(INDIVIDUAL).len() as u64;
    assert_eq!(summary.outcome, RunOutcome::Partial, "{summary:?}");
    assert_eq!((summary.granted, summary.mailed), (paid, 0));
    assert_eq!(world.mails(), 0);

    // The file is gone; the next scheduled run (no KKTIX token) does the pending mail.
    world.mailgun.set_default(SendFault::None);
    let run = world.reconciler(Door::Csv).run().await;
    assert_eq!(run.outcome, RunOutcome::Ok, "{run:?}");
    assert_eq!((run.mailed, run.new_paid, run.granted), (paid, 0, 0));
    assert_eq!(world.mails() as u64, paid);
    let quiet = world.reconciler(Door::Csv).run().await;
    assert_eq!(quiet.mailed, 0);
}

#[tokio::test]
async fn a_file_that_is_not_an_export_is_refused_before_anything_is_written() {
    let world = World::new().await;
    let reconciler = world.reconciler(Door::Csv);
    let error = reconciler
        .import(ImportRequest {
            event: SLUG.into(),
            attendees: "name,email\nAlice,alice@example.com\n".into(),
            orders: None,
        })
        .await
        .unwrap_err();
    match &error {
        ImportFailure::File(ImportError::MissingColumns { missing, .. }) => {
            assert_eq!(missing, &["Id", "票種", "票券付款狀態"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(!error.to_string().contains("alice"));
    assert_eq!(world.store.ledger_len().await.unwrap(), 0);
    assert!(world.store.recent_runs(5).await.unwrap().is_empty());

    let error = reconciler
        .import(world.request("no-such-event", INDIVIDUAL, false))
        .await
        .unwrap_err();
    assert!(matches!(error, ImportFailure::UnknownEvent(_)), "{error}");
}

#[tokio::test]
async fn a_broken_row_is_reported_by_its_id_and_the_rest_proceed() {
    let world = World::new().await;
    let reconciler = world.reconciler(Door::Csv);
    let export = String::from_utf8(world.sandbox.attendees_export(INDIVIDUAL).unwrap()).unwrap();
    let paid = world.paid(INDIVIDUAL);
    let victim = &paid[3];
    // Its registration number becomes text; its name and email stay in the row.
    let broken = export.replacen(
        &format!("{},", victim.id),
        &format!("{},x,not-a-number,", victim.id),
        1,
    );
    let broken = broken.replacen(&format!(",{},", victim.order_no), ",", 1);
    let summary = reconciler
        .import(ImportRequest {
            event: SLUG.into(),
            attendees: broken.into_bytes(),
            orders: None,
        })
        .await
        .unwrap();
    assert_eq!(summary.skipped.len(), 1, "{summary:?}");
    assert_eq!(summary.skipped[0].attendee_id, victim.id);
    let shown = serde_json::to_string(&summary).unwrap();
    assert!(!shown.contains(&victim.email) && !shown.contains(&victim.name));
    assert_eq!(summary.new_paid, paid.len() as u64 - 1);
}

#[tokio::test]
async fn an_event_can_move_from_the_api_to_csv_without_anyone_admitted_twice() {
    let world = World::new().await;
    let running = world
        .sandbox
        .serve(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let client = autopilot_core::kktix::KktixClient::new(
        &running.base_url,
        Sensitive::new(world.sandbox.access_token()),
        autopilot_core::kktix::KktixOptions::default(),
    )
    .unwrap();
    let api = Reconciler::new(
        client,
        world.store.clone(),
        world.store.clone(),
        EventSelector::default(),
        CategoryRules::default(),
        PrivacyRules::default(),
    )
    .with_access(world.access.clone())
    .with_mail(world.mail.clone());
    let first = api.run().await;
    assert_eq!(first.outcome, RunOutcome::Ok, "{first:?}");
    let mailed = world.mails();
    assert!(mailed > 50);

    world.sandbox.step();
    let new_buyers = world.paid(INDIVIDUAL).len() as u64
        - world
            .store
            .admissions(INDIVIDUAL)
            .await
            .unwrap()
            .values()
            .filter(|a| a.loaded)
            .count() as u64;
    let summary = world
        .reconciler(Door::Csv)
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    assert_eq!(summary.new_paid, new_buyers, "{summary:?}");
    assert_eq!(summary.mailed, new_buyers);
    assert_eq!(world.mails() as u64, mailed as u64 + new_buyers);
}

#[tokio::test]
async fn the_pipeline_table_gets_each_buyer_once_and_their_refund() {
    let world = World::new().await;
    let layout = PipelineTable {
        enabled: true,
        ..PipelineTable::default()
    };
    let categories = CategoryRules {
        pipeline_table: layout.clone(),
        ..CategoryRules::default()
    };
    let reconciler =
        world.reconciler_with(Door::Csv, Sealer::new(world.key.clone(), None), categories);
    reconciler
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    let paid = world.paid(INDIVIDUAL);
    let rows = world.store.pipeline_rows(&layout).await.unwrap();
    assert_eq!(rows.len(), paid.len());
    assert!(rows.iter().all(|(id, name, _, refunded)| *id == INDIVIDUAL
        && name.ends_with("Individual")
        && !refunded));
    let info: Value = serde_json::from_str(&rows[0].2).unwrap();
    assert!(info["id"].is_u64());
    world.sandbox.refund(INDIVIDUAL, paid[0].id);
    reconciler
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    let rows = world.store.pipeline_rows(&layout).await.unwrap();
    assert_eq!(
        rows.len(),
        paid.len(),
        "refunded in place, not a second row"
    );
    assert_eq!(rows.iter().filter(|r| r.3).count(), 1);
}

#[tokio::test]
async fn contacts_are_sealed_rotated_and_shredded() {
    let world = World::new().await;
    world.mailgun.set_default(SendFault::Unavailable);
    world
        .reconciler(Door::Csv)
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    let paid = world.paid(INDIVIDUAL);
    let sealed = world.store.contacts(INDIVIDUAL).await.unwrap();
    assert!(sealed.len() >= paid.len());
    for buyer in &paid {
        let text = &sealed[&buyer.id];
        assert!(!text.contains(&buyer.email) && !text.contains(&buyer.name));
    }

    // Another key alone cannot open them: a clear error naming CONTACT_KEY, nothing mailed.
    let stranger = world.reconciler_with(
        Door::Csv,
        Sealer::new(ContactKey::from_bytes([9; 32]), None),
        CategoryRules::default(),
    );
    world.mailgun.set_default(SendFault::None);
    let refused = stranger.run().await;
    assert_eq!(refused.outcome, RunOutcome::Failed);
    assert!(
        refused.errors[0].contains("CONTACT_KEY"),
        "{:?}",
        refused.errors
    );
    assert_eq!(world.mails(), 0);

    // Rotation: the new key with the old one as CONTACT_KEY_PREVIOUS opens and mails them;
    // reseal moves every record to the new key, after which the old one can go.
    let new_key = ContactKey::from_bytes([8; 32]);
    let rotating = world.reconciler_with(
        Door::Csv,
        Sealer::new(new_key.clone(), Some(world.key.clone())),
        CategoryRules::default(),
    );
    let run = rotating.run().await;
    assert_eq!(run.mailed, paid.len() as u64, "{run:?}");
    assert!(rotating.reseal().await.unwrap() >= paid.len() as u64);
    let rotated = world.reconciler_with(
        Door::Csv,
        Sealer::new(new_key, None),
        CategoryRules::default(),
    );
    assert_eq!(rotated.check_contact_key().await, Ok(()));

    // Shredding one event leaves no sealed contact of it behind, in the file either.
    let report = rotated.shred(Some(SLUG)).await.unwrap();
    assert_eq!(report.events, vec![(INDIVIDUAL, sealed.len() as u64)]);
    assert!(world.store.contacts(INDIVIDUAL).await.unwrap().is_empty());
}

#[tokio::test]
async fn contacts_are_shredded_once_the_event_is_over_for_the_retention_period() {
    let world = World::new().await;
    let mut selector = catalog(Door::Csv);
    let ended = (chrono::Utc::now() - chrono::Duration::days(20)).to_rfc3339();
    if let Some(CatalogEntry::Event(event)) = selector.catalog.get_mut(SLUG) {
        event.end_at = Some(ended);
    }
    let reconciler = Reconciler::without_api(
        world.store.clone(),
        world.store.clone(),
        selector,
        CategoryRules::default(),
        PrivacyRules::default(),
    )
    .with_vault(Vault {
        store: world.store.clone(),
        sealer: Sealer::new(world.key.clone(), None),
    });
    reconciler
        .import(world.request(SLUG, INDIVIDUAL, false))
        .await
        .unwrap();
    assert!(!world.store.contacts(INDIVIDUAL).await.unwrap().is_empty());
    let run = reconciler.run().await;
    assert!(
        run.warnings.iter().any(|w| w.contains("shredded")),
        "{:?}",
        run.warnings
    );
    assert!(world.store.contacts(INDIVIDUAL).await.unwrap().is_empty());
}

/// What a webhook set up on the catalog's events would have announced (KKTIX's webhooks
/// are per event).
fn catalog_changes(world: &World) -> Vec<autopilot_sandbox::Change> {
    world
        .sandbox
        .paid_as_changes()
        .into_iter()
        .filter(|change| match change {
            autopilot_sandbox::Change::Paid { event_id, .. }
            | autopilot_sandbox::Change::Refunded { event_id, .. } => {
                [INDIVIDUAL, CORPORATE].contains(event_id)
            }
        })
        .collect()
}

fn webhook_request(token: &str, body: Vec<u8>) -> HttpRequest {
    http::Request::builder()
        .method("POST")
        .uri(format!("/kktix/webhook/{token}"))
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .unwrap()
}

struct Hook {
    api: Api,
    reconciler: Arc<Reconciler>,
}

fn hook(world: &World, door: Door) -> Hook {
    let reconciler = Arc::new(world.reconciler(door));
    let queue: Arc<dyn IntakeQueue> = world.store.clone();
    let trigger: Arc<dyn DrainTrigger> = Arc::new(LocalTrigger::default());
    let receiver = Receiver::new(
        Some(Sensitive::new(TOKEN.into())),
        Some(Sealer::new(world.key.clone(), None)),
        queue,
        trigger,
        WebhookMapping::default(),
    );
    Hook {
        api: Api::new(Some(Sensitive::new("ops".into()))).with_receiver(Arc::new(receiver)),
        reconciler,
    }
}

#[tokio::test]
async fn webhook_batches_are_accepted_at_once_and_a_repeat_is_a_no_op() {
    let world = World::new().await;
    world.sandbox.record_changes();
    let hook = hook(&world, Door::Webhook);
    let body = world
        .sandbox
        .webhook_batch(&catalog_changes(&world))
        .unwrap();

    let started = std::time::Instant::now();
    let response = hook.api.handle(webhook_request(TOKEN, body.clone())).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(response.status(), 200);
    let answer: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(answer["accepted"], true);
    // Durably queued, sealed: the queue's bytes hold no clear address.
    assert_eq!(world.store.intake_queue_len().await.unwrap(), 1);

    let summary = hook.reconciler.drain().await.unwrap();
    assert_eq!(summary.kind, "webhook");
    assert_eq!(summary.outcome, RunOutcome::Ok, "{summary:?}");
    let paid = world.paid(INDIVIDUAL).len() + world.paid(CORPORATE).len();
    assert_eq!(summary.mailed as usize, paid, "{summary:?}");
    assert_eq!(world.store.intake_queue_len().await.unwrap(), 0);

    // KKTIX retries a batch it thinks failed: the same body again changes nothing.
    let mails = world.mails();
    let before = world.store.ledger_len().await.unwrap();
    let response = hook.api.handle(webhook_request(TOKEN, body)).await;
    assert_eq!(response.status(), 200);
    let again = hook.reconciler.drain().await.unwrap();
    assert_eq!((again.new_paid, again.mailed), (0, 0), "{again:?}");
    assert_eq!(world.store.ledger_len().await.unwrap(), before);
    assert_eq!(world.mails(), mails);

    // A refund announced by the hook revokes at once.
    let victim = &world.paid(INDIVIDUAL)[0];
    world.sandbox.take_changes();
    world.sandbox.refund(INDIVIDUAL, victim.id);
    let body = world
        .sandbox
        .webhook_batch(&world.sandbox.take_changes())
        .unwrap();
    hook.api.handle(webhook_request(TOKEN, body)).await;
    let refund = hook.reconciler.drain().await.unwrap();
    assert_eq!((refund.refunded, refund.revoked), (1, 1), "{refund:?}");
    assert!(!world.guests().contains_key(&victim.email.to_lowercase()));
}

#[tokio::test]
async fn an_unknown_webhook_token_is_a_404_with_no_side_effect() {
    let world = World::new().await;
    let hook = hook(&world, Door::Webhook);
    for token in ["wrong-token-0123456789", "webhook-token-012345678", ""] {
        let response = hook
            .api
            .handle(webhook_request(token, br#"{"batch_id":"1"}"#.to_vec()))
            .await;
        assert_eq!(response.status(), 404, "{token:?}");
        let text = String::from_utf8_lossy(response.body()).into_owned();
        assert!(!text.contains(TOKEN));
    }
    assert_eq!(world.store.intake_queue_len().await.unwrap(), 0);
    assert!(hook.reconciler.drain().await.is_none());
}

#[tokio::test]
async fn a_body_not_understood_is_accepted_alerted_by_its_key_paths_and_never_its_values() {
    let world = World::new().await;
    let hook = hook(&world, Door::Webhook);
    let body = br#"{"payload": {"buyer": {"email": "secret@example.com", "name": "Secret Name"}}, "count": 1}"#;
    let response = hook.api.handle(webhook_request(TOKEN, body.to_vec())).await;
    assert_eq!(response.status(), 200);
    let summary = hook.reconciler.drain().await.unwrap();
    assert_eq!(summary.alerts.len(), 1, "{summary:?}");
    let alert = &summary.alerts[0];
    assert!(alert.contains("/payload/buyer/email (string)"), "{alert}");
    let shown = serde_json::to_string(&summary).unwrap();
    assert!(!shown.contains("secret@example.com") && !shown.contains("Secret Name"));
    assert_eq!(world.store.intake_queue_len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_batch_naming_an_unmapped_event_waits_until_the_catalog_names_it() {
    let world = World::new().await;
    let hook = hook(&world, Door::Webhook);
    let body = json!({"batch_id": "77", "notifications": [{
        "type": "order_activated_paid",
        "event": {"name": "PyCon Sprint", "slug": "not-in-the-catalog"},
        "order": {"id": 5, "state": "activated", "paid_at": "2026-04-18T14:00:54.442+08:00"},
        "contact": {"name": "Ann", "email": "ann@example.com", "mobile": ""},
        "tickets": [{"id": 99, "name": "Sprint", "price_cents": 0, "price_currency": "TWD"}]
    }]});
    hook.api
        .handle(webhook_request(TOKEN, serde_json::to_vec(&body).unwrap()))
        .await;
    let first = hook.reconciler.drain().await.unwrap();
    assert_eq!(first.alerts.len(), 1, "{first:?}");
    assert!(first.alerts[0].contains("not-in-the-catalog"));
    assert_eq!(world.store.intake_queue_len().await.unwrap(), 1, "kept");
    // Alerted once, not on every run.
    let second = hook.reconciler.run().await;
    assert!(second.alerts.is_empty(), "{second:?}");

    let mut selector = catalog(Door::Webhook);
    selector
        .catalog
        .insert("not-in-the-catalog".into(), CatalogEntry::Id(80_199));
    let mapped = Reconciler::without_api(
        world.store.clone(),
        world.store.clone(),
        selector,
        CategoryRules::default(),
        PrivacyRules::default(),
    )
    .with_vault(Vault {
        store: world.store.clone(),
        sealer: Sealer::new(world.key.clone(), None),
    })
    .with_queue(world.store.clone())
    .with_mail(world.mail.clone());
    let applied = mapped.run().await;
    assert_eq!((applied.new_paid, applied.mailed), (1, 1), "{applied:?}");
    assert_eq!(world.store.intake_queue_len().await.unwrap(), 0);
}

#[tokio::test]
async fn no_clear_contact_value_reaches_the_store_file() {
    let world = World::new().await;
    world.sandbox.record_changes();
    world.mailgun.set_default(SendFault::Unavailable);
    let reconciler = world.reconciler(Door::Csv);
    reconciler
        .import(world.request(SLUG, INDIVIDUAL, true))
        .await
        .unwrap();
    let hook = hook(&world, Door::Webhook);
    let body = world
        .sandbox
        .webhook_batch(&catalog_changes(&world))
        .unwrap();
    hook.api.handle(webhook_request(TOKEN, body)).await;
    // Scanned while the batch is still queued (sealed) and after it was handled.
    let mut scans = Vec::new();
    scans.push(read_store(&world));
    hook.reconciler.drain().await.unwrap();
    scans.push(read_store(&world));

    let mut clear: HashMap<String, &str> = HashMap::new();
    let truth: Vec<AttendeeTruth> = [INDIVIDUAL, CORPORATE, 80_103]
        .iter()
        .flat_map(|id| world.truth(*id))
        .collect();
    for buyer in &truth {
        clear.insert(buyer.email.clone(), "email");
        clear.insert(buyer.phone.clone(), "phone");
        if buyer.name.chars().count() >= 3 {
            clear.insert(buyer.name.clone(), "name");
        }
    }
    for bytes in scans {
        let text = String::from_utf8_lossy(&bytes);
        for (value, kind) in &clear {
            assert!(
                !text.contains(value.as_str()),
                "a clear {kind} in the store"
            );
        }
    }
}

/// The SQLite file and its write-ahead log, as bytes.
fn read_store(world: &World) -> Vec<u8> {
    let mut bytes = std::fs::read(world.dir.path().join("autopilot.db")).unwrap();
    bytes.extend(std::fs::read(world.dir.path().join("autopilot.db-wal")).unwrap_or_default());
    bytes
}

fn multipart(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "autopilot-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = if *name == "event" {
            format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n")
        } else {
            format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}.csv\"\r\nContent-Type: text/csv\r\n\r\n"
            )
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn import_request(token: &str, content_type: &str, body: Vec<u8>) -> HttpRequest {
    http::Request::builder()
        .method("POST")
        .uri("/import")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(Bytes::from(body))
        .unwrap()
}

#[tokio::test]
async fn post_import_takes_the_exports_as_a_multipart_form() {
    let world = World::new().await;
    let api = Api::new(Some(Sensitive::new("ops".into())))
        .with_poller(Arc::new(world.reconciler(Door::Csv)));
    let attendees = world.sandbox.attendees_export(INDIVIDUAL).unwrap();
    let orders = world.sandbox.orders_export(INDIVIDUAL).unwrap();
    let (kind, body) = multipart(&[
        ("event", SLUG.as_bytes()),
        ("attendees", &attendees),
        ("orders", &orders),
    ]);
    let response = api.handle(import_request("ops", &kind, body.clone())).await;
    assert_eq!(response.status(), 200);
    let summary: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(summary["kind"], "import");
    assert_eq!(summary["new_paid"], world.paid(INDIVIDUAL).len());

    assert_eq!(
        api.handle(import_request("nope", &kind, body))
            .await
            .status(),
        401
    );
    let (kind, body) = multipart(&[("event", SLUG.as_bytes())]);
    let response = api.handle(import_request("ops", &kind, body)).await;
    assert_eq!(response.status(), 400);
    assert!(String::from_utf8_lossy(response.body()).contains("attendees is missing"));
    let (kind, body) = multipart(&[("event", SLUG.as_bytes()), ("attendees", b"a,b\n1,2\n")]);
    let response = api.handle(import_request("ops", &kind, body)).await;
    assert_eq!(response.status(), 422);
    assert!(String::from_utf8_lossy(response.body()).contains("票券付款狀態"));
    let response = api
        .handle(import_request("ops", "application/json", b"{}".to_vec()))
        .await;
    assert_eq!(response.status(), 400);
    let (kind, body) = multipart(&[("event", b"no-such-event"), ("attendees", &attendees)]);
    assert_eq!(
        api.handle(import_request("ops", &kind, body))
            .await
            .status(),
        404
    );
}
