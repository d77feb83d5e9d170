//! Doing no harm on bad data: a truncated attendance book (or a partial export) revokes
//! nobody until an operator confirms; a few refunds are revoked at once, as before; an
//! explicit cancellation is never held.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use autopilot_core::access::{AccessService, Authorizer, Entitlements, FileGuestList};
use autopilot_core::api::{Api, HttpRequest};
use autopilot_core::contacts::{ContactKey, Sealer};
use autopilot_core::deidentify::PrivacyRules;
use autopilot_core::pii::Sensitive;
use autopilot_core::reconcile::{
    ConfirmError, ImportRequest, ReconcileOptions, Reconciler, RunOutcome, Vault,
};
use autopilot_core::selection::{CatalogEntry, CatalogEvent, CategoryRules, Door, EventSelector};
use autopilot_core::store::{Ledger, RevokeHoldState, SqliteStore};
use autopilot_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use autopilot_test_support::sandbox;
use bytes::Bytes;
use serde_json::Value;

/// One registration event of 45 paid buyers: the report's truncated book.
const EVENT: u64 = 90_001;

struct World {
    sandbox: Sandbox,
    _running: RunningSandbox,
    base_url: String,
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    access: Arc<dyn AccessService>,
}

impl World {
    async fn new(attendees: usize) -> Self {
        let sandbox = Sandbox::new(SandboxConfig::single_event(3, attendees));
        let running = sandbox
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("autopilot.db")).unwrap());
        let access: Arc<dyn AccessService> = Arc::new(Authorizer::new(
            Arc::new(FileGuestList::new(dir.path().join("guestlist.json"))),
            Entitlements::default(),
        ));
        Self {
            base_url: running.base_url.clone(),
            sandbox,
            _running: running,
            dir,
            store,
            access,
        }
    }

    fn api_reconciler(&self) -> Reconciler {
        sandbox::reconciler(&self.base_url, &self.sandbox.access_token(), &self.store)
            .with_access(self.access.clone())
            .with_options(ReconcileOptions {
                step_backoff: Duration::ZERO,
                ..ReconcileOptions::default()
            })
    }

    fn csv_reconciler(&self) -> Reconciler {
        let mut selector = EventSelector::default();
        selector.catalog.insert(
            "bench".into(),
            CatalogEntry::Event(CatalogEvent {
                id: EVENT,
                name: Some("Bench Conf 2026 Registration: Individual".into()),
                source: Some(Door::Csv),
                start_at: None,
                end_at: None,
            }),
        );
        Reconciler::without_api(
            self.store.clone(),
            self.store.clone(),
            selector,
            CategoryRules::default(),
            PrivacyRules::default(),
        )
        .with_vault(Vault {
            store: self.store.clone(),
            sealer: Sealer::new(ContactKey::from_bytes([4; 32]), None),
        })
        .with_access(self.access.clone())
    }

    fn guests(&self) -> usize {
        let text =
            std::fs::read_to_string(self.dir.path().join("guestlist.json")).unwrap_or_default();
        serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn paid(&self) -> usize {
        self.sandbox
            .attendees(EVENT)
            .iter()
            .filter(|a| a.paid && !a.refunded)
            .count()
    }
}

#[tokio::test]
async fn a_truncated_book_revokes_nobody_alerts_once_and_waits_for_an_operator() {
    let world = World::new(45).await;
    let reconciler = world.api_reconciler();
    let first = reconciler.run().await;
    assert_eq!((first.new_paid, first.granted), (45, 45), "{first:?}");
    assert_eq!(world.guests(), 45);

    // KKTIX answers a book with 3 of the 45.
    world.sandbox.truncate_book(EVENT, Some(3));
    let glitch = reconciler.run().await;
    assert_eq!(
        (glitch.refunded, glitch.revoked, glitch.held),
        (0, 0, 42),
        "{glitch:?}"
    );
    assert_eq!(world.guests(), 45, "nobody locked out");
    assert_eq!(glitch.sold, 45, "they still hold tickets");
    assert_eq!(glitch.alerts.len(), 1, "{:?}", glitch.alerts);
    assert!(
        glitch.alerts[0].contains("42 of its 45 admitted"),
        "{}",
        glitch.alerts[0]
    );
    assert!(glitch.alerts[0].contains(&format!("autopilot revoke --confirm {EVENT}")));
    let again = reconciler.run().await;
    assert!(again.alerts.is_empty(), "alerted once, not every run");
    assert_eq!((again.revoked, again.held), (0, 42));

    // The operator confirms while the book is still short: those 42 go now.
    let confirmed = reconciler.confirm_revoke(&EVENT.to_string()).await.unwrap();
    assert_eq!(confirmed.kind, "confirm");
    assert_eq!(
        (confirmed.refunded, confirmed.revoked),
        (42, 42),
        "{confirmed:?}"
    );
    assert_eq!(world.guests(), 3);
    let hold = world.store.revoke_hold(EVENT).await.unwrap().unwrap();
    assert_eq!(hold.state, RevokeHoldState::Cleared);
    assert!(matches!(
        reconciler.confirm_revoke(&EVENT.to_string()).await,
        Err(ConfirmError::NothingHeld(EVENT))
    ));
}

#[tokio::test]
async fn attendees_who_come_back_are_never_revoked_and_a_few_refunds_go_at_once() {
    let world = World::new(45).await;
    let reconciler = world.api_reconciler();
    reconciler.run().await;
    world.sandbox.truncate_book(EVENT, Some(0));
    let empty = reconciler.run().await;
    assert_eq!(
        (empty.revoked, empty.held),
        (0, 45),
        "an empty book is the same glitch"
    );
    world.sandbox.truncate_book(EVENT, None);
    let back = reconciler.run().await;
    assert_eq!(
        (back.refunded, back.revoked, back.held),
        (0, 0, 0),
        "{back:?}"
    );
    assert!(back.warnings.iter().any(|w| w.contains("hold is lifted")));
    assert!(matches!(
        reconciler.confirm_revoke(&EVENT.to_string()).await,
        Err(ConfirmError::NothingHeld(_))
    ));

    // Three real refunds: fewer than max_revokes_per_run, revoked at once as before.
    let ids: Vec<u64> = world
        .sandbox
        .attendees(EVENT)
        .iter()
        .take(3)
        .map(|a| a.id)
        .collect();
    for id in &ids {
        assert!(world.sandbox.refund(EVENT, *id));
    }
    let refunds = reconciler.run().await;
    assert_eq!(
        (refunds.refunded, refunds.revoked, refunds.held),
        (3, 3, 0),
        "{refunds:?}"
    );
    assert!(refunds.alerts.is_empty());
    assert_eq!(world.guests(), 42);
}

#[tokio::test]
async fn a_partial_export_is_held_but_its_explicit_cancellations_are_not() {
    let world = World::new(45).await;
    let reconciler = world.csv_reconciler();
    let export = |sandbox: &Sandbox| ImportRequest {
        event: "bench".into(),
        attendees: sandbox.attendees_export(EVENT).unwrap(),
        orders: Some(sandbox.orders_export(EVENT).unwrap()),
    };
    let first = reconciler.import(export(&world.sandbox)).await.unwrap();
    assert_eq!(first.granted, 45);

    // One real refund, and an attendees export cut after 3 rows (the orders export is whole).
    let refunded = world.sandbox.attendees(EVENT)[10].id;
    world.sandbox.refund(EVENT, refunded);
    let mut request = export(&world.sandbox);
    let text = String::from_utf8(request.attendees).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    request.attendees = format!("{}\r\n", lines[..4].join("\r\n")).into_bytes();
    let summary = reconciler.import(request).await.unwrap();
    assert_eq!((summary.refunded, summary.revoked), (1, 1), "{summary:?}");
    assert_eq!(summary.held, 41, "{summary:?}");
    assert_eq!(summary.alerts.len(), 1);
    assert_eq!(world.guests(), 44);

    // A full export later: they are back, the hold is lifted.
    let whole = reconciler.import(export(&world.sandbox)).await.unwrap();
    assert_eq!((whole.refunded, whole.held), (0, 0), "{whole:?}");
    assert_eq!(world.paid(), 44);
}

fn confirm(body: &str) -> HttpRequest {
    http::Request::builder()
        .method("POST")
        .uri("/revoke/confirm")
        .header("authorization", "Bearer ops")
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn post_revoke_confirm_is_the_operators_word() {
    let world = World::new(45).await;
    let reconciler = Arc::new(world.api_reconciler());
    let api = Api::new(Some(Sensitive::new("ops".into()))).with_poller(reconciler.clone());
    reconciler.run().await;
    let body = format!(r#"{{"event": "{EVENT}"}}"#);
    let nothing = api.handle(confirm(&body)).await;
    assert_eq!(nothing.status(), 409);
    assert!(String::from_utf8_lossy(nothing.body()).contains("no vanished attendees"));

    world.sandbox.truncate_book(EVENT, Some(20));
    assert_eq!(reconciler.run().await.held, 25);
    let bad = api
        .handle(confirm(r#"{"event": "1", "force": true}"#))
        .await;
    assert_eq!(bad.status(), 400);
    assert!(String::from_utf8_lossy(bad.body()).contains("unknown field `force`"));
    assert_eq!(api.handle(confirm(r#"{}"#)).await.status(), 400);
    assert_eq!(
        api.handle(confirm(r#"{"event": "no-such"}"#))
            .await
            .status(),
        404
    );
    let done = api.handle(confirm(&body)).await;
    assert_eq!(done.status(), 200);
    let summary: Value = serde_json::from_slice(done.body()).unwrap();
    assert_eq!(summary["revoked"], 25);
    assert_eq!(summary["outcome"], RunOutcome::Ok.as_str());
    assert_eq!(world.guests(), 20);
}
