//! [`Ledger`] on SQLite: the append-only admission log (enforced by triggers), poll runs,
//! intake batches and revoke holds.

use super::*;

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
