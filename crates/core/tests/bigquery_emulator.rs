//! The BigQuery backend against the `bqemulator` PyPI package (DuckDB behind BigQuery's REST
//! API), running the trait-level scenario of the SQLite tests. Skipped, with a notice, when
//! no emulator is available. Ways to provide one:
//!
//! - `BIGQUERY_EMULATOR_URL=http://127.0.0.1:9050`: one already running (project `test-project`);
//! - `BIGQUERY_EMULATOR_CMD='…'`: a shell command that starts it; it gets the port to listen
//!   on in `BQEMU_REST_PORT`;
//! - otherwise `BIGQUERY_EMULATOR_PYTHON` (default `python3`) is probed for `import bqemulator`
//!   and runs `scripts/bqemulator-launch.py` (which skips the DuckDB spatial download).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use autopilot_core::contacts::{ContactCard, ContactKey, Sealer};
use autopilot_core::reconcile::RunSummary;
use autopilot_core::store::{
    AttendeeKey, AttendeeRow, BatchRecord, BigQueryAuth, BigQueryOptions, BigQuerySettings,
    BigQueryStore, ContactVault, EventRecord, Ledger, LedgerEntry, LookupField, PipelineTable,
    SealedContact, Stages, Step, Warehouse,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

const PROJECT: &str = "test-project";

struct Emulator {
    url: String,
    child: Option<Child>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_emulator() -> Option<Emulator> {
    if let Ok(url) = std::env::var("BIGQUERY_EMULATOR_URL") {
        return Some(Emulator { url, child: None });
    }
    let port = free_port();
    let log = std::env::temp_dir().join(format!("bqemulator-{port}.log"));
    let output = || {
        std::fs::File::create(&log)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    };
    let mut command = if let Ok(cmd) = std::env::var("BIGQUERY_EMULATOR_CMD") {
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!("exec {cmd}"));
        command
    } else {
        let python = std::env::var("BIGQUERY_EMULATOR_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&python)
            .args(["-c", "import bqemulator"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(probe, Ok(status) if status.success()) {
            return None;
        }
        let launcher =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bqemulator-launch.py");
        let mut command = Command::new(python);
        command.arg(launcher).args([
            "--rest-port",
            &port.to_string(),
            "--grpc-port",
            "0",
            "--project",
            PROJECT,
            "--log-level",
            "warning",
        ]);
        command
    };
    let child = command
        .env("BQEMU_REST_PORT", port.to_string())
        .env("BQEMU_REST_HOST", "127.0.0.1")
        .stdout(output())
        .stderr(output())
        .spawn()
        .ok()?;
    let emulator = Emulator {
        url: format!("http://127.0.0.1:{port}"),
        child: Some(child),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(emulator);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "the BigQuery emulator did not listen on {port} within 60 s (log: {})",
        log.display()
    );
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_709_000_000 + seconds, 0).unwrap()
}

fn entry(attendee_id: u64, step: Step, seconds: i64) -> LedgerEntry {
    LedgerEntry {
        key: AttendeeKey {
            event_id: 1,
            attendee_id,
        },
        step,
        email_hash: Some("hash".into()),
        detail: None,
        run_id: "run".into(),
        at: at(seconds),
    }
}

fn row(loaded_at: DateTime<Utc>, state: &str) -> AttendeeRow {
    AttendeeRow {
        table: "ods_kktix_ticket_individual_attendees".into(),
        event_id: 1,
        event_name: "Conf Registration".into(),
        attendee_id: 9,
        attendee_infos: r#"{"reg_no": 1001, "order_no": 55}"#.into(),
        ticket_name: "Regular".into(),
        paid_at: at(0),
        price: 100.0,
        currency: "TWD".into(),
        state: state.into(),
        loaded_at,
    }
}

fn summary(run_id: &str, seconds: i64, outcome: &str) -> RunSummary {
    serde_json::from_value(json!({
        "run_id": run_id, "started_at": at(seconds), "duration_ms": 12,
        "outcome": outcome, "events": 1, "live": 2, "fetched": 2, "new_paid": 1, "pending": 0,
        "refunded": 0, "expired": 0, "skipped": [], "errors": [], "warnings": [],
        "upstream_requests": 3, "new_by_ticket": {}
    }))
    .unwrap()
}

#[tokio::test]
async fn the_sqlite_scenario_runs_on_the_emulator() {
    let Some(emulator) = start_emulator() else {
        eprintln!(
            "SKIPPED: no BigQuery emulator (set BIGQUERY_EMULATOR_URL or BIGQUERY_EMULATOR_CMD, \
             or install `bqemulator` for BIGQUERY_EMULATOR_PYTHON / python3)"
        );
        return;
    };
    // Fresh datasets per run, in case the emulator is shared or persistent.
    let suffix = format!("{}", Utc::now().timestamp_micros());
    let store = BigQueryStore::new(
        PROJECT,
        BigQuerySettings {
            dataset: format!("ods_{suffix}"),
            ledger_dataset: format!("autopilot_{suffix}"),
            location: "US".into(),
        },
        BigQueryAuth::static_token("emulator"),
        BigQueryOptions {
            api_base: Some(emulator.url.clone()),
            max_attempts: 2,
            base_delay: Duration::from_millis(50),
            ..BigQueryOptions::default()
        },
    )
    .unwrap();

    // Ledger: append, fold.
    store
        .append(&[
            entry(5, Step::AwaitingPayment, 1),
            entry(5, Step::Loaded, 2),
            entry(6, Step::Loaded, 2),
        ])
        .await
        .unwrap();
    store.append(&[entry(6, Step::Cancelled, 3)]).await.unwrap();
    let admissions = store.admissions(1).await.unwrap();
    assert!(admissions[&5].is_complete(Stages::default()));
    assert!(!admissions[&5].awaiting_payment);
    assert!(admissions[&6].cancelled);
    assert!(store.admissions(2).await.unwrap().is_empty());

    // Warehouse: loading twice (and a third time) leaves one latest row.
    let table = "ods_kktix_ticket_individual_attendees";
    let first = row(at(10), "activated");
    store
        .upsert_attendees(&[first.clone(), first.clone()])
        .await
        .unwrap();
    store
        .upsert_attendees(std::slice::from_ref(&first))
        .await
        .unwrap();
    let sales = store.sales(table, 1).await.unwrap();
    assert_eq!(sales.len(), 1, "{sales:?}");
    assert!(!sales[0].cancelled);
    assert_eq!(sales[0].paid_at, at(0));
    assert_eq!(sales[0].price, 100.0);
    let key = AttendeeKey {
        event_id: 1,
        attendee_id: 9,
    };
    assert_eq!(
        store
            .find_attendees(&[table.into()], LookupField::RegNo, 1001)
            .await
            .unwrap(),
        vec![key]
    );
    assert_eq!(
        store
            .find_attendees(&[table.into()], LookupField::OrderNo, 55)
            .await
            .unwrap(),
        vec![key]
    );
    assert!(store
        .find_attendees(&[table.into()], LookupField::RegNo, 55)
        .await
        .unwrap()
        .is_empty());

    // Cancel, then a re-load (a reinstated attendee) un-cancels, as in SQLite.
    store.mark_cancelled(table, &[key], at(20)).await.unwrap();
    let sales = store.sales(table, 1).await.unwrap();
    assert_eq!(sales.len(), 1);
    assert!(sales[0].cancelled, "marked cancelled");
    store
        .upsert_attendees(&[row(at(30), "activated")])
        .await
        .unwrap();
    let sales = store.sales(table, 1).await.unwrap();
    assert_eq!(sales.len(), 1);
    assert!(!sales[0].cancelled, "reloaded after the cancellation");
    assert!(store.sales(table, 2).await.unwrap().is_empty());

    // Events: the newest sighting per id, newest first.
    let event = |id: u64, seen: i64, name: &str| EventRecord {
        id,
        slug: format!("e{id}"),
        name: name.into(),
        start_at: Some("2024-05-01T09:00:00+08:00".into()),
        end_at: None,
        last_seen: at(seen),
        source: Some("api".into()),
    };
    store
        .upsert_events(&[event(1, 1, "old"), event(2, 5, "two")])
        .await
        .unwrap();
    store.upsert_events(&[event(1, 9, "new")]).await.unwrap();
    let events = store.events().await.unwrap();
    assert_eq!(events, vec![event(1, 9, "new"), event(2, 5, "two")]);

    // Runs.
    assert!(store.last_run(false).await.unwrap().is_none());
    store.record_run(&summary("a", 1, "ok")).await.unwrap();
    store.record_run(&summary("b", 2, "failed")).await.unwrap();
    assert_eq!(store.last_run(false).await.unwrap().unwrap().run_id, "b");
    assert_eq!(store.last_run(true).await.unwrap().unwrap().run_id, "a");
    let recent: Vec<String> = store
        .recent_runs(5)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(recent, ["b", "a"]);
    assert_eq!(store.recent_runs(1).await.unwrap().len(), 1);
    // Only scheduled runs count as successful, partial ones too.
    let mut import = summary("c", 3, "ok");
    import.kind = "import".into();
    store.record_run(&import).await.unwrap();
    assert_eq!(store.last_run(true).await.unwrap().unwrap().run_id, "a");
    store.record_run(&summary("d", 4, "partial")).await.unwrap();
    assert_eq!(store.last_run(true).await.unwrap().unwrap().run_id, "d");
    assert_eq!(store.last_run(false).await.unwrap().unwrap().run_id, "d");

    // Intake batches: a repeat is recognised.
    assert_eq!(store.intake_outcome("7:abcd").await.unwrap(), None);
    store
        .record_intake(&BatchRecord {
            batch_id: "7:abcd".into(),
            received_at: at(40),
            processed_at: at(41),
            outcome: "processed".into(),
            detail: None,
        })
        .await
        .unwrap();
    assert_eq!(
        store.intake_outcome("7:abcd").await.unwrap().as_deref(),
        Some("processed")
    );

    // Sealed contacts: the newest per attendee, counted, shredded by event.
    let sealer = Sealer::new(ContactKey::from_bytes([3; 32]), None);
    let card = |email: &str| ContactCard {
        email: email.into(),
        name: "Ann".into(),
        ticket_name: "Regular".into(),
        checkin_code: None,
        reg_no: Some(1),
    };
    let sealed = |attendee_id: u64, email: &str, seconds: i64| SealedContact {
        key: AttendeeKey {
            event_id: 1,
            attendee_id,
        },
        sealed: sealer.seal(
            AttendeeKey {
                event_id: 1,
                attendee_id,
            },
            &card(email),
        ),
        sealed_at: at(seconds),
    };
    store
        .put_contacts(&[
            sealed(5, "old@example.com", 50),
            sealed(6, "b@example.com", 50),
        ])
        .await
        .unwrap();
    store
        .put_contacts(&[sealed(5, "new@example.com", 51)])
        .await
        .unwrap();
    let contacts = store.contacts(1).await.unwrap();
    assert_eq!(contacts.len(), 2);
    let five = AttendeeKey {
        event_id: 1,
        attendee_id: 5,
    };
    assert_eq!(
        sealer.open(five, &contacts[&5]).unwrap().email,
        "new@example.com"
    );
    assert_eq!(store.contact_counts().await.unwrap(), vec![(1, 2)]);
    assert_eq!(
        store.contact_key_ids().await.unwrap(),
        vec![sealer.current_id().to_owned()]
    );
    assert_eq!(store.shred_contacts(1).await.unwrap(), 2);
    assert!(store.contacts(1).await.unwrap().is_empty());
    assert!(store.contact_counts().await.unwrap().is_empty());

    // The team's pipeline table: one row per attendee, refunded in place.
    let layout = PipelineTable {
        enabled: true,
        ..PipelineTable::default()
    };
    store
        .upsert_pipeline_rows(&layout, &[row(at(60), "activated")])
        .await
        .unwrap();
    store
        .upsert_pipeline_rows(&layout, &[row(at(61), "activated")])
        .await
        .unwrap();
    let rows = store.pipeline_rows(&layout).await.unwrap();
    assert_eq!(rows.len(), 1, "replaced, not appended: {rows:?}");
    assert!(!rows[0].3);
    store.mark_pipeline_refunded(&layout, &[key]).await.unwrap();
    let rows = store.pipeline_rows(&layout).await.unwrap();
    assert_eq!(
        rows,
        vec![(
            1,
            "Conf Registration".to_owned(),
            first.attendee_infos.clone(),
            true
        )]
    );
    drop(emulator);
}
