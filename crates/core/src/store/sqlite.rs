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
        self.with(|connection| {
            connection
                .query_row("SELECT COUNT(*) FROM admission_log", [], |row| {
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

#[async_trait]
impl Warehouse for SqliteStore {
    async fn upsert_events(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.with(move |connection| {
            let transaction = connection.transaction().map_err(backend)?;
            for event in &events {
                transaction
                    .prepare_cached(
                        "INSERT INTO events (id, slug, name, start_at, end_at, last_seen, source)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, name = excluded.name,
                            start_at = excluded.start_at, end_at = excluded.end_at,
                            last_seen = excluded.last_seen,
                            source = COALESCE(excluded.source, events.source)",
                    )
                    .map_err(backend)?
                    .execute(params![
                        event.id as i64,
                        event.slug,
                        event.name,
                        event.start_at,
                        event.end_at,
                        event.last_seen,
                        event.source
                    ])
                    .map_err(backend)?;
            }
            transaction.commit().map_err(backend)
        })
        .await
    }

    async fn events(&self) -> Result<Vec<EventRecord>, StoreError> {
        self.with(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, slug, name, start_at, end_at, last_seen, source FROM events
                     ORDER BY last_seen DESC, id",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map([], |row| {
                    Ok(EventRecord {
                        id: row.get::<_, i64>(0)? as u64,
                        slug: row.get(1)?,
                        name: row.get(2)?,
                        start_at: row.get(3)?,
                        end_at: row.get(4)?,
                        last_seen: row.get(5)?,
                        source: row.get(6)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn sales(&self, table: &str, event_id: u64) -> Result<Vec<SaleRecord>, StoreError> {
        let table = table.to_owned();
        let store = self.clone();
        self.with(move |connection| {
            store.ensure_table(connection, &table)?;
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT ticket_name, paid_at, price, currency, state FROM {table}
                     WHERE event_id = ?1 ORDER BY paid_at"
                ))
                .map_err(backend)?;
            let rows = statement
                .query_map([event_id as i64], |row| {
                    Ok(SaleRecord {
                        ticket_name: row.get(0)?,
                        paid_at: row.get(1)?,
                        price: row.get(2)?,
                        currency: row.get(3)?,
                        cancelled: row.get::<_, String>(4)? == "cancelled",
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn find_attendees(
        &self,
        tables: &[String],
        field: LookupField,
        value: u64,
    ) -> Result<Vec<AttendeeKey>, StoreError> {
        let tables = tables.to_vec();
        let store = self.clone();
        self.with(move |connection| {
            let mut keys = Vec::new();
            for table in &tables {
                store.ensure_table(connection, table)?;
                let mut statement = connection
                    .prepare(&format!(
                        "SELECT event_id, attendee_id FROM {table}
                         WHERE json_extract(attendee_infos, '$.{}') = ?1
                         ORDER BY event_id, attendee_id",
                        field.json_name()
                    ))
                    .map_err(backend)?;
                let found = statement
                    .query_map([value as i64], |row| {
                        Ok(AttendeeKey {
                            event_id: row.get::<_, i64>(0)? as u64,
                            attendee_id: row.get::<_, i64>(1)? as u64,
                        })
                    })
                    .map_err(backend)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(backend)?;
                keys.extend(found);
            }
            Ok(keys)
        })
        .await
    }

    async fn order_numbers(
        &self,
        table: &str,
        event_id: u64,
    ) -> Result<HashMap<u64, String>, StoreError> {
        let table = table.to_owned();
        let store = self.clone();
        self.with(move |connection| {
            store.ensure_table(connection, &table)?;
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT attendee_id, CAST(json_extract(attendee_infos, '$.order_no') AS TEXT)
                     FROM {table} WHERE event_id = ?1"
                ))
                .map_err(backend)?;
            let rows = statement
                .query_map([event_id as i64], |row| {
                    Ok((
                        row.get::<_, i64>(0)? as u64,
                        row.get::<_, Option<String>>(1)?,
                    ))
                })
                .map_err(backend)?;
            let mut orders = HashMap::new();
            for row in rows {
                if let (attendee, Some(order)) = row.map_err(backend)? {
                    orders.insert(attendee, order);
                }
            }
            Ok(orders)
        })
        .await
    }

    async fn upsert_attendees(&self, rows: &[AttendeeRow]) -> Result<(), StoreError> {
        let rows = rows.to_vec();
        let store = self.clone();
        self.with(move |connection| {
            let transaction = connection.transaction().map_err(backend)?;
            for row in &rows {
                store.ensure_table(&transaction, &row.table)?;
                transaction
                    .prepare_cached(&format!(
                        "INSERT INTO {} (event_id, event_name, attendee_id, attendee_infos, ticket_name,
                            paid_at, price, currency, state, loaded_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (event_id, attendee_id) DO UPDATE SET
                            event_name = excluded.event_name, attendee_infos = excluded.attendee_infos,
                            ticket_name = excluded.ticket_name, paid_at = excluded.paid_at,
                            price = excluded.price, currency = excluded.currency,
                            state = excluded.state, loaded_at = excluded.loaded_at,
                            cancelled_at = NULL",
                        row.table
                    ))
                    .map_err(backend)?
                    .execute(params![
                        row.event_id as i64,
                        row.event_name,
                        row.attendee_id as i64,
                        row.attendee_infos,
                        row.ticket_name,
                        row.paid_at,
                        row.price,
                        row.currency,
                        row.state,
                        row.loaded_at,
                    ])
                    .map_err(backend)?;
            }
            transaction.commit().map_err(backend)
        })
        .await
    }

    async fn mark_cancelled(
        &self,
        table: &str,
        keys: &[AttendeeKey],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let table = table.to_owned();
        let keys = keys.to_vec();
        let store = self.clone();
        self.with(move |connection| {
            let transaction = connection.transaction().map_err(backend)?;
            store.ensure_table(&transaction, &table)?;
            for key in &keys {
                transaction
                    .prepare_cached(&format!(
                        "UPDATE {table} SET state = 'cancelled', cancelled_at = ?3
                         WHERE event_id = ?1 AND attendee_id = ?2"
                    ))
                    .map_err(backend)?
                    .execute(params![key.event_id as i64, key.attendee_id as i64, at])
                    .map_err(backend)?;
            }
            transaction.commit().map_err(backend)
        })
        .await
    }

    async fn upsert_pipeline_rows(
        &self,
        layout: &PipelineTable,
        rows: &[AttendeeRow],
    ) -> Result<(), StoreError> {
        self.upsert_pipeline(layout, rows).await
    }

    async fn mark_pipeline_refunded(
        &self,
        layout: &PipelineTable,
        keys: &[AttendeeKey],
    ) -> Result<(), StoreError> {
        self.refund_pipeline(layout, keys).await
    }
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
        self.with(|connection| {
            connection
                .query_row("SELECT COUNT(*) FROM intake_queue", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
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

#[async_trait]
impl ContactVault for SqliteStore {
    async fn put_contacts(&self, contacts: &[SealedContact]) -> Result<(), StoreError> {
        if contacts.is_empty() {
            return Ok(());
        }
        let contacts = contacts.to_vec();
        self.with(move |connection| {
            let transaction = connection.transaction().map_err(backend)?;
            {
                let mut insert = transaction
                    .prepare_cached(
                        "INSERT INTO sealed_contacts (event_id, attendee_id, key_id, sealed, sealed_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (event_id, attendee_id) DO UPDATE SET key_id = excluded.key_id,
                            sealed = excluded.sealed, sealed_at = excluded.sealed_at",
                    )
                    .map_err(backend)?;
                for contact in &contacts {
                    insert
                        .execute(params![
                            contact.key.event_id as i64,
                            contact.key.attendee_id as i64,
                            sealed_key_id(&contact.sealed).unwrap_or("unknown"),
                            contact.sealed,
                            contact.sealed_at,
                        ])
                        .map_err(backend)?;
                }
            }
            transaction.commit().map_err(backend)
        })
        .await
    }

    async fn contacts(&self, event_id: u64) -> Result<HashMap<u64, String>, StoreError> {
        self.with(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT attendee_id, sealed FROM sealed_contacts WHERE event_id = ?1",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map([event_id as i64], |row| {
                    Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?))
                })
                .map_err(backend)?;
            rows.collect::<Result<HashMap<_, _>, _>>().map_err(backend)
        })
        .await
    }

    async fn contact_counts(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        self.with(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT event_id, COUNT(*) FROM sealed_contacts GROUP BY event_id ORDER BY event_id",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64))
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn contact_key_ids(&self) -> Result<Vec<String>, StoreError> {
        self.with(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT DISTINCT key_id FROM sealed_contacts ORDER BY key_id")
                .map_err(backend)?;
            let rows = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn shred_contacts(&self, event_id: u64) -> Result<u64, StoreError> {
        self.with(move |connection| {
            let deleted = connection
                .execute(
                    "DELETE FROM sealed_contacts WHERE event_id = ?1",
                    [event_id as i64],
                )
                .map_err(backend)?;
            // The write-ahead log still holds the pages until a checkpoint rewrites them.
            connection
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(backend)?;
            Ok(deleted as u64)
        })
        .await
    }
}

#[async_trait]
impl IntakeQueue for SqliteStore {
    async fn push(&self, envelope: &Envelope) -> Result<(), QueueError> {
        let body = serde_json::to_string(envelope)
            .map_err(|e| QueueError::Malformed(format!("cannot encode a message: {e}")))?;
        self.with(move |connection| {
            connection
                .execute(
                    "INSERT INTO intake_queue (body, enqueued_at) VALUES (?1, ?2)",
                    params![body, Utc::now()],
                )
                .map(|_| ())
                .map_err(backend)
        })
        .await
        .map_err(|e| QueueError::Backend(e.to_string()))
    }

    async fn pull(&self, max: usize) -> Result<Vec<QueuedMessage>, QueueError> {
        self.with(move |connection| {
            let mut statement = connection
                .prepare_cached("SELECT seq, body FROM intake_queue ORDER BY seq LIMIT ?1")
                .map_err(backend)?;
            let rows = statement
                .query_map([max as i64], |row| {
                    Ok(QueuedMessage {
                        receipt: row.get::<_, i64>(0)?.to_string(),
                        body: row.get(1)?,
                        receive_count: 1,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
        .map_err(|e| QueueError::Backend(e.to_string()))
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        let seq: i64 = receipt
            .parse()
            .map_err(|_| QueueError::Malformed("not a receipt of this queue".into()))?;
        self.with(move |connection| {
            connection
                .execute("DELETE FROM intake_queue WHERE seq = ?1", [seq])
                .map(|_| ())
                .map_err(backend)
        })
        .await
        .map_err(|e| QueueError::Backend(e.to_string()))
    }
}

#[async_trait]
impl Ledger for SqliteStore {
    async fn admissions(&self, event_id: u64) -> Result<HashMap<u64, Admission>, StoreError> {
        self.with(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT attendee_id, step, email_hash, detail, recorded_at FROM admission_log
                     WHERE event_id = ?1 ORDER BY seq",
                )
                .map_err(backend)?;
            let mut rows = statement.query([event_id as i64]).map_err(backend)?;
            let mut admissions: HashMap<u64, Admission> = HashMap::new();
            while let Some(row) = rows.next().map_err(backend)? {
                let attendee_id = row.get::<_, i64>(0).map_err(backend)? as u64;
                let step: Step = row.get::<_, String>(1).map_err(backend)?.parse()?;
                let email_hash: Option<String> = row.get(2).map_err(backend)?;
                let detail: Option<String> = row.get(3).map_err(backend)?;
                let at: DateTime<Utc> = row.get(4).map_err(backend)?;
                admissions.entry(attendee_id).or_default().apply(
                    step,
                    email_hash.as_deref(),
                    detail.as_deref(),
                    at,
                );
            }
            Ok(admissions)
        })
        .await
    }

    async fn append(&self, entries: &[LedgerEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.with(move |connection| {
            let transaction = connection.transaction().map_err(backend)?;
            {
                let mut insert = transaction
                    .prepare_cached(
                        "INSERT INTO admission_log
                            (event_id, attendee_id, step, email_hash, detail, run_id, recorded_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(backend)?;
                for entry in &entries {
                    insert
                        .execute(params![
                            entry.key.event_id as i64,
                            entry.key.attendee_id as i64,
                            entry.step.as_str(),
                            entry.email_hash,
                            entry.detail,
                            entry.run_id,
                            entry.at,
                        ])
                        .map_err(backend)?;
                }
            }
            transaction.commit().map_err(backend)
        })
        .await
    }

    async fn record_run(&self, run: &RunSummary) -> Result<(), StoreError> {
        let summary = serde_json::to_string(run).map_err(backend)?;
        let run_id = run.run_id.clone();
        let started_at = run.started_at;
        let outcome = run.outcome.as_str();
        self.with(move |connection| {
            connection
                .execute(
                    "INSERT OR REPLACE INTO poll_runs (run_id, started_at, outcome, summary)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![run_id, started_at, outcome, summary],
                )
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        self.with(move |connection| {
            let mut statement = connection
                .prepare_cached("SELECT summary FROM poll_runs ORDER BY started_at DESC LIMIT ?1")
                .map_err(backend)?;
            let summaries = statement
                .query_map([limit as i64], |row| row.get::<_, String>(0))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            summaries
                .iter()
                .map(|text| {
                    serde_json::from_str(text)
                        .map_err(|e| StoreError::Corrupt(format!("poll run summary: {e}")))
                })
                .collect()
        })
        .await
    }

    async fn intake_outcome(&self, batch_id: &str) -> Result<Option<String>, StoreError> {
        let batch_id = batch_id.to_owned();
        self.with(move |connection| {
            connection
                .query_row(
                    "SELECT outcome FROM intake_batches WHERE batch_id = ?1",
                    [batch_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn record_intake(&self, record: &BatchRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.with(move |connection| {
            connection
                .execute(
                    "INSERT OR REPLACE INTO intake_batches
                        (batch_id, received_at, processed_at, outcome, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        record.batch_id,
                        record.received_at,
                        record.processed_at,
                        record.outcome,
                        record.detail
                    ],
                )
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn revoke_hold(&self, event_id: u64) -> Result<Option<RevokeHold>, StoreError> {
        self.with(move |connection| {
            let row: Option<(String, String, i64, DateTime<Utc>)> = connection
                .query_row(
                    "SELECT state, attendee_ids, admitted, recorded_at FROM revoke_holds
                     WHERE event_id = ?1",
                    [event_id as i64],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .optional()
                .map_err(backend)?;
            row.map(|(state, ids, admitted, at)| {
                Ok(RevokeHold {
                    event_id,
                    state: state.parse()?,
                    attendee_ids: serde_json::from_str(&ids)
                        .map_err(|e| StoreError::Corrupt(format!("revoke hold ids: {e}")))?,
                    admitted: admitted as u64,
                    at,
                })
            })
            .transpose()
        })
        .await
    }

    async fn record_revoke_hold(&self, hold: &RevokeHold) -> Result<(), StoreError> {
        let hold = hold.clone();
        let ids = serde_json::to_string(&hold.attendee_ids).map_err(backend)?;
        self.with(move |connection| {
            connection
                .execute(
                    "INSERT OR REPLACE INTO revoke_holds
                        (event_id, state, attendee_ids, admitted, recorded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        hold.event_id as i64,
                        hold.state.as_str(),
                        ids,
                        hold.admitted as i64,
                        hold.at
                    ],
                )
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn last_run(&self, successful_only: bool) -> Result<Option<RunSummary>, StoreError> {
        self.with(move |connection| {
            let sql = if successful_only {
                "SELECT summary FROM poll_runs
                 WHERE outcome != 'failed' AND COALESCE(json_extract(summary, '$.kind'), 'poll') = 'poll'
                 ORDER BY started_at DESC LIMIT 1"
            } else {
                "SELECT summary FROM poll_runs ORDER BY started_at DESC LIMIT 1"
            };
            let summary: Option<String> = connection
                .query_row(sql, [], |row| row.get(0))
                .optional()
                .map_err(backend)?;
            summary
                .map(|text| {
                    serde_json::from_str(&text)
                        .map_err(|e| StoreError::Corrupt(format!("poll run summary: {e}")))
                })
                .transpose()
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
