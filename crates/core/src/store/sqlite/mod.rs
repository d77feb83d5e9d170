//! The embedded backend: one SQLite file holds both the warehouse tables and the ledger.
//! Nothing to install; migrations run when the store opens.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    Admission, AttendeeKey, AttendeeRow, BatchRecord, ContactVault, EventRecord, Ledger,
    LedgerEntry, LookupField, PipelineTable, RevokeHold, SaleRecord, SealedContact, Step,
    StoreError, Warehouse,
};
use crate::contacts::sealed_key_id;
use crate::intake::{Envelope, IntakeQueue, QueueError, QueuedMessage};
use crate::model::is_identifier;
use crate::model::RunSummary;

mod contacts;
mod ledger;
mod warehouse;

/// Schema versions, applied in order; `PRAGMA user_version` remembers how far a file got.
const MIGRATIONS: &[&str] = &[
    // 1: the ledger. Append-only is enforced by the database itself, not by convention.
    "CREATE TABLE admission_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id INTEGER NOT NULL,
        attendee_id INTEGER NOT NULL,
        step TEXT NOT NULL,
        email_hash TEXT,
        detail TEXT,
        run_id TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX admission_log_by_attendee ON admission_log (event_id, attendee_id);
    CREATE TRIGGER admission_log_no_update BEFORE UPDATE ON admission_log
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
    CREATE TRIGGER admission_log_no_delete BEFORE DELETE ON admission_log
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
    CREATE TABLE poll_runs (
        run_id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE INDEX poll_runs_by_start ON poll_runs (started_at);",
    // 2: the events catalog that `/event list` and reports read.
    "CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL,
        name TEXT NOT NULL,
        start_at TEXT,
        end_at TEXT,
        last_seen TEXT NOT NULL
    );
    CREATE INDEX events_by_slug ON events (slug);",
    // 3: more than one door: which door an event uses, sealed contacts, intake batches seen,
    // and the local intake queue.
    "ALTER TABLE events ADD COLUMN source TEXT;
    CREATE TABLE sealed_contacts (
        event_id INTEGER NOT NULL,
        attendee_id INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        sealed TEXT NOT NULL,
        sealed_at TEXT NOT NULL,
        PRIMARY KEY (event_id, attendee_id)
    );
    CREATE TABLE intake_batches (
        batch_id TEXT PRIMARY KEY,
        received_at TEXT NOT NULL,
        processed_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT
    );
    CREATE TABLE intake_queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        body TEXT NOT NULL,
        enqueued_at TEXT NOT NULL
    );",
    // 4: revoke holds (absence is not always a refund).
    "CREATE TABLE revoke_holds (
        event_id INTEGER PRIMARY KEY,
        state TEXT NOT NULL,
        attendee_ids TEXT NOT NULL,
        admitted INTEGER NOT NULL,
        recorded_at TEXT NOT NULL
    );",
];

#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    known_tables: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

impl SqliteStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let open_error = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        // A missing directory is a typo more often than a wish: say so, create nothing.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(open_error(format!(
                    "the directory {} does not exist (create it, or point STORE=sqlite:PATH elsewhere)",
                    parent.display()
                )));
            }
        }
        let connection = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        Self::with_connection(connection).map_err(|e| open_error(e.to_string()))
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory().map_err(backend)?)
    }

    fn with_connection(mut connection: Connection) -> Result<Self, StoreError> {
        // WAL lets `autopilot` read (healthz, reports) while a run writes; the busy timeout
        // covers a second process touching the same file.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        // Deleted rows (shredded contacts, handled queue messages) are overwritten, not left
        // in free pages.
        connection
            .pragma_update(None, "secure_delete", "ON")
            .map_err(backend)?;
        migrate(&mut connection)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            known_tables: Arc::default(),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut guard = connection
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    fn ensure_table(&self, connection: &Connection, table: &str) -> Result<(), StoreError> {
        if !is_identifier(table) {
            return Err(StoreError::Backend(format!("invalid table name {table:?}")));
        }
        let mut known = self.known_tables.lock().unwrap_or_else(|p| p.into_inner());
        if known.contains(table) {
            return Ok(());
        }
        connection
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    event_id INTEGER NOT NULL,
                    event_name TEXT NOT NULL,
                    attendee_id INTEGER NOT NULL,
                    attendee_infos TEXT NOT NULL,
                    ticket_name TEXT NOT NULL,
                    paid_at TEXT NOT NULL,
                    price REAL NOT NULL,
                    currency TEXT NOT NULL,
                    state TEXT NOT NULL,
                    loaded_at TEXT NOT NULL,
                    cancelled_at TEXT,
                    PRIMARY KEY (event_id, attendee_id)
                );"
            ))
            .map_err(backend)?;
        known.insert(table.to_owned());
        Ok(())
    }

    /// Every warehouse row of one table, for tests and local inspection.
    pub async fn warehouse_rows(&self, table: &str) -> Result<Vec<AttendeeRow>, StoreError> {
        let table = table.to_owned();
        let store = self.clone();
        self.with(move |connection| {
            store.ensure_table(connection, &table)?;
            let mut statement = connection
                .prepare(&format!(
                    "SELECT event_id, event_name, attendee_id, attendee_infos, ticket_name, paid_at,
                            price, currency, state, loaded_at FROM {table} ORDER BY event_id, attendee_id"
                ))
                .map_err(backend)?;
            let rows = statement
                .query_map([], |row| {
                    Ok(AttendeeRow {
                        table: table.clone(),
                        event_id: row.get::<_, i64>(0)? as u64,
                        event_name: row.get(1)?,
                        attendee_id: row.get::<_, i64>(2)? as u64,
                        attendee_infos: row.get(3)?,
                        ticket_name: row.get(4)?,
                        paid_at: row.get(5)?,
                        price: row.get(6)?,
                        currency: row.get(7)?,
                        state: row.get(8)?,
                        loaded_at: row.get(9)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    /// Number of ledger entries, for tests that assert a run changed nothing.
    pub async fn ledger_len(&self) -> Result<u64, StoreError> {
        self.count_rows("admission_log").await
    }

    /// Rows in one of our own tables (a fixed name, never input).
    async fn count_rows(&self, table: &'static str) -> Result<u64, StoreError> {
        self.with(move |connection| {
            connection
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(backend)?;
    let applied = usize::try_from(version).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "schema version {version} is newer than this build knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let transaction = connection.transaction().map_err(backend)?;
        transaction.execute_batch(sql).map_err(backend)?;
        transaction
            .pragma_update(None, "user_version", (index + 1) as i64)
            .map_err(backend)?;
        transaction.commit().map_err(backend)?;
    }
    Ok(())
}

impl SqliteStore {
    fn ensure_pipeline_table(
        &self,
        connection: &Connection,
        layout: &PipelineTable,
    ) -> Result<(), StoreError> {
        layout.validate().map_err(StoreError::Backend)?;
        let mut known = self.known_tables.lock().unwrap_or_else(|p| p.into_inner());
        if known.contains(&layout.table) {
            return Ok(());
        }
        connection
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    {id} INTEGER NOT NULL,
                    {name} TEXT NOT NULL,
                    {info} TEXT NOT NULL,
                    {refunded} INTEGER NOT NULL,
                    {attendee} INTEGER,
                    PRIMARY KEY ({id}, {attendee})
                );",
                table = layout.table,
                id = layout.id_column,
                name = layout.name_column,
                info = layout.attendee_info_column,
                refunded = layout.refunded_column,
                attendee = layout.attendee_id_column,
            ))
            .map_err(backend)?;
        known.insert(layout.table.clone());
        Ok(())
    }

    /// Every row of the pipeline table: (event id, event name, record JSON, refunded).
    pub async fn pipeline_rows(
        &self,
        layout: &PipelineTable,
    ) -> Result<Vec<(u64, String, String, bool)>, StoreError> {
        let layout = layout.clone();
        let store = self.clone();
        self.with(move |connection| {
            store.ensure_pipeline_table(connection, &layout)?;
            let mut statement = connection
                .prepare(&format!(
                    "SELECT {id}, {name}, {info}, {refunded} FROM {table} ORDER BY {id}, {attendee}",
                    table = layout.table,
                    id = layout.id_column,
                    name = layout.name_column,
                    info = layout.attendee_info_column,
                    refunded = layout.refunded_column,
                    attendee = layout.attendee_id_column,
                ))
                .map_err(backend)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)? as u64,
                        row.get(1)?,
                        row.get(2)?,
                        row.get::<_, i64>(3)? != 0,
                    ))
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    /// Messages waiting on the local intake queue.
    pub async fn intake_queue_len(&self) -> Result<u64, StoreError> {
        self.count_rows("intake_queue").await
    }

    async fn upsert_pipeline(
        &self,
        layout: &PipelineTable,
        rows: &[AttendeeRow],
    ) -> Result<(), StoreError> {
        let layout = layout.clone();
        let rows = rows.to_vec();
        let store = self.clone();
        self.with(move |connection| {
            let transaction = connection.transaction().map_err(backend)?;
            store.ensure_pipeline_table(&transaction, &layout)?;
            for row in &rows {
                transaction
                    .prepare_cached(&format!(
                        "INSERT INTO {table} ({id}, {name}, {info}, {refunded}, {attendee})
                         VALUES (?1, ?2, ?3, 0, ?4)
                         ON CONFLICT ({id}, {attendee}) DO UPDATE SET
                            {name} = excluded.{name}, {info} = excluded.{info}, {refunded} = 0",
                        table = layout.table,
                        id = layout.id_column,
                        name = layout.name_column,
                        info = layout.attendee_info_column,
                        refunded = layout.refunded_column,
                        attendee = layout.attendee_id_column,
                    ))
                    .map_err(backend)?
                    .execute(params![
                        row.event_id as i64,
                        row.event_name,
                        row.attendee_infos,
                        row.attendee_id as i64
                    ])
                    .map_err(backend)?;
            }
            transaction.commit().map_err(backend)
        })
        .await
    }

    async fn refund_pipeline(
        &self,
        layout: &PipelineTable,
        keys: &[AttendeeKey],
    ) -> Result<(), StoreError> {
        let layout = layout.clone();
        let keys = keys.to_vec();
        let store = self.clone();
        self.with(move |connection| {
            let transaction = connection.transaction().map_err(backend)?;
            store.ensure_pipeline_table(&transaction, &layout)?;
            for key in &keys {
                transaction
                    .prepare_cached(&format!(
                        "UPDATE {table} SET {refunded} = 1 WHERE {id} = ?1 AND {attendee} = ?2",
                        table = layout.table,
                        id = layout.id_column,
                        refunded = layout.refunded_column,
                        attendee = layout.attendee_id_column,
                    ))
                    .map_err(backend)?
                    .execute(params![key.event_id as i64, key.attendee_id as i64])
                    .map_err(backend)?;
            }
            transaction.commit().map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attendee_id: u64, step: Step) -> LedgerEntry {
        LedgerEntry {
            key: AttendeeKey {
                event_id: 1,
                attendee_id,
            },
            step,
            email_hash: Some("hash".into()),
            detail: None,
            run_id: "run".into(),
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn ledger_derives_state_and_refuses_rewrites() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .append(&[
                entry(5, Step::AwaitingPayment),
                entry(5, Step::Loaded),
                entry(6, Step::Loaded),
            ])
            .await
            .unwrap();
        store.append(&[entry(6, Step::Cancelled)]).await.unwrap();
        let admissions = store.admissions(1).await.unwrap();
        assert!(admissions[&5].is_complete(super::super::Stages::default()));
        assert!(admissions[&6].cancelled);
        assert!(store.admissions(2).await.unwrap().is_empty());

        let tampered = store
            .with(|c| c.execute("DELETE FROM admission_log", []).map_err(backend))
            .await;
        assert!(tampered.is_err(), "deleting from the ledger must fail");
        assert_eq!(store.ledger_len().await.unwrap(), 4);
    }

    #[tokio::test]
    async fn migrations_are_idempotent_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/autopilot.db");
        let Err(refused) = SqliteStore::open(&path) else {
            panic!("a missing directory is refused");
        };
        assert!(refused.to_string().contains("does not exist"), "{refused}");
        assert!(!dir.path().join("nested").exists(), "and is not created");
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        let store = SqliteStore::open(&path).unwrap();
        store.append(&[entry(1, Step::Loaded)]).await.unwrap();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.ledger_len().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn warehouse_upsert_is_idempotent_and_cancel_marks() {
        let store = SqliteStore::in_memory().unwrap();
        let row = AttendeeRow {
            table: "ods_kktix_ticket_individual_attendees".into(),
            event_id: 1,
            event_name: "Conf Registration".into(),
            attendee_id: 9,
            attendee_infos: "{}".into(),
            ticket_name: "Regular".into(),
            paid_at: Utc::now(),
            price: 100.0,
            currency: "TWD".into(),
            state: "activated".into(),
            loaded_at: Utc::now(),
        };
        store
            .upsert_attendees(&[row.clone(), row.clone()])
            .await
            .unwrap();
        store
            .upsert_attendees(std::slice::from_ref(&row))
            .await
            .unwrap();
        let rows = store.warehouse_rows(&row.table).await.unwrap();
        assert_eq!(rows.len(), 1);
        store
            .mark_cancelled(
                &row.table,
                &[AttendeeKey {
                    event_id: 1,
                    attendee_id: 9,
                }],
                Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(
            store.warehouse_rows(&row.table).await.unwrap()[0].state,
            "cancelled"
        );
    }
}
