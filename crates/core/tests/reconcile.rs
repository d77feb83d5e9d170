//! The reconcile loop against the KKTIX sandbox, end to end: HTTP client, de-identification,
//! SQLite warehouse and ledger.

use std::net::SocketAddr;
use std::sync::Arc;

use autopilot_core::pii::sha256_hex;
use autopilot_core::reconcile::{Reconciler, RunOutcome};
use autopilot_core::store::{Ledger, SqliteStore};
use autopilot_sandbox::{AttendeeTruth, Corruption, RunningSandbox, Sandbox, SandboxConfig};

const INDIVIDUAL: &str = "ods_kktix_ticket_individual_attendees";
const CORPORATE: &str = "ods_kktix_ticket_corporate_attendees";
const RESERVED: &str = "ods_kktix_ticket_reserved_attendees";

struct Harness {
    sandbox: Sandbox,
    _running: RunningSandbox,
    store: Arc<SqliteStore>,
    reconciler: Reconciler,
}

/// The demo sandbox with its clock stopped: nothing changes unless a test says so.
async fn harness() -> Harness {
    let mut config = SandboxConfig::demo(42);
    config.purchases_per_step = 0.0;
    config.refund_share = 0.0;
    config.atm_pay_per_step = 0.0;
    harness_with(config, &Sandbox::new).await
}

async fn harness_with(config: SandboxConfig, make: &dyn Fn(SandboxConfig) -> Sandbox) -> Harness {
    let sandbox = make(config);
    let running = sandbox
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let reconciler = reconciler_for(&running.base_url, &sandbox.access_token(), &store);
    Harness {
        sandbox,
        _running: running,
        store,
        reconciler,
    }
}

fn reconciler_for(base_url: &str, token: &str, store: &Arc<SqliteStore>) -> Reconciler {
    autopilot_test_support::sandbox::reconciler(base_url, token, store)
}

impl Harness {
    /// Attendees of the events the default selector keeps (live registration events).
    fn selected_attendees(&self) -> Vec<AttendeeTruth> {
        self.sandbox
            .events()
            .iter()
            .filter(|event| !event.ended && event.name.to_lowercase().contains("registration"))
            .flat_map(|event| self.sandbox.attendees(event.id))
            .collect()
    }

    fn event_id(&self, name_part: &str) -> u64 {
        self.sandbox
            .events()
            .iter()
            .find(|event| !event.ended && event.name.contains(name_part))
            .map(|event| event.id)
            .unwrap()
    }

    async fn all_rows(&self) -> Vec<autopilot_core::store::AttendeeRow> {
        let mut rows = Vec::new();
        for table in [INDIVIDUAL, CORPORATE, RESERVED] {
            rows.extend(self.store.warehouse_rows(table).await.unwrap());
        }
        rows
    }
}

#[tokio::test]
async fn first_run_loads_every_paid_attendee_de_identified_and_routed() {
    let h = harness().await;
    let truth = h.selected_attendees();
    let paid = truth.iter().filter(|a| a.paid && !a.refunded).count() as u64;
    let unpaid = truth.iter().filter(|a| !a.paid && !a.refunded).count() as u64;
    assert!(
        paid > 20 && unpaid > 0,
        "the demo has paid and ATM-unpaid buyers"
    );

    let summary = h.reconciler.run().await;
    assert_eq!(summary.outcome, RunOutcome::Ok, "{summary:?}");
    assert_eq!(
        summary.events, 3,
        "Individual, Corporate, Reserved; not the meetup or 2025"
    );
    assert_eq!(summary.new_paid, paid);
    assert_eq!(summary.pending, unpaid);
    assert_eq!(summary.new_by_ticket.values().sum::<u64>(), paid);

    let rows = h.all_rows().await;
    assert_eq!(rows.len() as u64, paid);
    let corporate = h.event_id("Corporate");
    for row in &rows {
        let expected = if row.event_id == corporate {
            CORPORATE
        } else if row.event_name.contains("Reserved") {
            RESERVED
        } else {
            INDIVIDUAL
        };
        assert_eq!(
            row.table, expected,
            "event {} routed wrongly",
            row.event_name
        );
    }

    // The warehouse holds hashes where the buyer's details were, and no clear value at all.
    let everything: String = rows.iter().map(|row| row.attendee_infos.as_str()).collect();
    for attendee in truth.iter().filter(|a| a.paid) {
        for clear in [&attendee.email, &attendee.name, &attendee.phone] {
            assert!(
                !everything.contains(clear.as_str()),
                "clear contact data in the warehouse"
            );
        }
        if let Some(address) = &attendee.address {
            assert!(
                !everything.contains(address.as_str()),
                "clear address in the warehouse"
            );
        }
        assert!(everything.contains(&sha256_hex(&attendee.email)));
    }
    assert!(!everything.contains("search_string"));
}

#[tokio::test]
async fn second_run_with_no_change_changes_nothing_and_fetches_only_pending() {
    let h = harness().await;
    let first = h.reconciler.run().await;
    let ledger_after_first = h.store.ledger_len().await.unwrap();
    let rows_after_first = h.all_rows().await;

    h.sandbox.reset_stats();
    let second = h.reconciler.run().await;
    assert_eq!(second.outcome, RunOutcome::Ok);
    assert_eq!(second.new_paid, 0);
    assert_eq!(second.refunded, 0);
    assert_eq!(
        second.pending, first.pending,
        "unpaid buyers are looked at again"
    );
    assert_eq!(
        second.fetched, first.pending,
        "only pending attendees are fetched"
    );
    // 1 listing + 2 per event + 1 per pending attendee.
    let expected_calls = 1 + 2 * second.events + second.pending;
    assert_eq!(second.upstream_requests, expected_calls);
    assert_eq!(h.sandbox.stats().total(), expected_calls);
    assert_eq!(h.sandbox.stats().attendees, second.pending);

    assert_eq!(
        h.store.ledger_len().await.unwrap(),
        ledger_after_first,
        "ledger unchanged"
    );
    assert_eq!(h.all_rows().await, rows_after_first, "warehouse unchanged");
}

#[tokio::test]
async fn an_atm_order_that_gets_paid_is_loaded_next_run() {
    let h = harness().await;
    h.reconciler.run().await;
    let waiting = h
        .selected_attendees()
        .into_iter()
        .find(|a| !a.paid && !a.refunded)
        .unwrap();
    assert!(h.sandbox.pay(waiting.event_id, waiting.id));

    let summary = h.reconciler.run().await;
    assert_eq!(summary.new_paid, 1);
    let rows = h.all_rows().await;
    assert!(rows.iter().any(|row| row.attendee_id == waiting.id));

    let admissions = h.store.admissions(waiting.event_id).await.unwrap();
    assert!(admissions[&waiting.id].is_complete(autopilot_core::store::Stages::default()));
    assert_eq!(
        admissions[&waiting.id].email_hash.as_deref(),
        Some(sha256_hex(&waiting.email).as_str()),
        "the ledger keys email only as its hash"
    );
}

#[tokio::test]
async fn a_refund_is_detected_once_and_marked_in_the_warehouse() {
    let h = harness().await;
    h.reconciler.run().await;
    let refunded = h.selected_attendees().into_iter().find(|a| a.paid).unwrap();
    assert!(h.sandbox.refund(refunded.event_id, refunded.id));

    let summary = h.reconciler.run().await;
    assert_eq!(summary.refunded, 1);
    assert_eq!(summary.new_paid, 0);
    let row = h
        .all_rows()
        .await
        .into_iter()
        .find(|row| row.attendee_id == refunded.id)
        .unwrap();
    assert_eq!(row.state, "cancelled");
    let admissions = h.store.admissions(refunded.event_id).await.unwrap();
    assert!(admissions[&refunded.id].cancelled);

    let again = h.reconciler.run().await;
    assert_eq!(again.refunded, 0, "a refund is recorded once");
}

#[tokio::test]
async fn one_broken_record_is_skipped_and_reported_while_the_rest_load() {
    let h = harness().await;
    h.reconciler.run().await;
    let event = h.event_id("Individual");
    let new_ids: Vec<u64> = (0..5)
        .map(|_| h.sandbox.purchase(event, true).unwrap())
        .collect();
    assert!(h.sandbox.corrupt(event, new_ids[1], Corruption::WrongTypes));
    assert!(h.sandbox.corrupt(event, new_ids[3], Corruption::Truncated));

    let summary = h.reconciler.run().await;
    assert_eq!(
        summary.outcome,
        RunOutcome::Ok,
        "a broken record is not a failed run"
    );
    assert_eq!(summary.new_paid, 3);
    assert_eq!(summary.skipped.len(), 2);
    let skipped: Vec<u64> = summary.skipped.iter().map(|s| s.attendee_id).collect();
    assert!(skipped.contains(&new_ids[1]) && skipped.contains(&new_ids[3]));
    assert!(summary.skipped.iter().all(|s| s.event_id == event));

    // The reasons name what was wrong, never the buyer.
    let reasons = serde_json::to_string(&summary).unwrap();
    for attendee in h.sandbox.attendees(event) {
        assert!(!reasons.contains(&attendee.email) && !reasons.contains(&attendee.name));
    }
    let rows = h.all_rows().await;
    for (index, id) in new_ids.iter().enumerate() {
        let loaded = rows.iter().any(|row| row.attendee_id == *id);
        assert_eq!(loaded, index != 1 && index != 3, "attendee #{index}");
    }
}

#[tokio::test]
async fn the_run_is_recorded_and_a_bad_token_fails_it() {
    let h = harness().await;
    let summary = h.reconciler.run().await;
    let recorded = h.store.last_run(true).await.unwrap().unwrap();
    assert_eq!(recorded, summary);

    let wrong = reconciler_for(
        &format!("http://{}", h._running.addr),
        "not-the-token",
        &h.store,
    );
    let failed = wrong.run().await;
    assert_eq!(failed.outcome, RunOutcome::Failed);
    assert!(
        failed.errors[0].contains("credentials"),
        "{:?}",
        failed.errors
    );
    assert_eq!(
        h.store.last_run(false).await.unwrap().unwrap().run_id,
        failed.run_id
    );
    assert_eq!(
        h.store.last_run(true).await.unwrap().unwrap().run_id,
        summary.run_id
    );
}

#[tokio::test]
async fn runs_never_overlap() {
    let h = harness().await;
    let (first, second) = tokio::join!(h.reconciler.try_run(), async {
        tokio::task::yield_now().await;
        h.reconciler.try_run().await
    });
    assert!(first.is_ok());
    assert!(
        second.is_err(),
        "a second run while one is in progress is refused"
    );
}
