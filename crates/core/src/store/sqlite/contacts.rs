//! [`ContactVault`] and the webhook [`IntakeQueue`] on SQLite: sealed contacts, shreds and
//! queued batches.

use super::*;

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
