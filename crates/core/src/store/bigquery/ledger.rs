//! [`Ledger`] and [`ContactVault`] on BigQuery: the admission log, poll runs, intake batches,
//! revoke holds, sealed contacts and their shreds, all append-only.

use super::*;

#[async_trait]
impl Ledger for BigQueryStore {
    async fn admissions(&self, event_id: u64) -> Result<HashMap<u64, Admission>, StoreError> {
        self.ensure_ledger_table(ADMISSION_LOG, ADMISSION_LOG_COLUMNS)
            .await?;
        // DISTINCT drops a duplicate that BigQuery's best-effort insertId dedup let through.
        let sql = format!(
            "SELECT DISTINCT attendee_id, step, email_hash, detail, recorded_at, seq, run_id
             FROM {}
             WHERE event_id = @event_id
             ORDER BY recorded_at, seq",
            self.ledger_ref(ADMISSION_LOG)
        );
        let parameters = vec![parameter(
            "event_id",
            "INT64",
            int64(event_id, "the event id")?.to_string(),
        )];
        let rows = self.query("reading the ledger", sql, parameters, 7).await?;
        let mut admissions: HashMap<u64, Admission> = HashMap::new();
        for row in &rows {
            let attendee_id = row.uint(0, "attendee_id")?;
            let step: Step = row.text(1, "step")?.parse()?;
            let at = row.timestamp(4, "recorded_at")?;
            admissions.entry(attendee_id).or_default().apply(
                step,
                row.opt_text(2),
                row.opt_text(3),
                at,
            );
        }
        Ok(admissions)
    }

    async fn append(&self, entries: &[LedgerEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.ensure_ledger_table(ADMISSION_LOG, ADMISSION_LOG_COLUMNS)
            .await?;
        let rows = entries
            .iter()
            .map(|entry| {
                let seq = next_seq();
                Ok(InsertRow {
                    insert_id: format!(
                        "{}:{}:{}:{}:{seq}",
                        entry.run_id,
                        entry.key.event_id,
                        entry.key.attendee_id,
                        entry.step.as_str()
                    ),
                    json: json!({
                        "event_id": int64(entry.key.event_id, "an event id")?,
                        "attendee_id": int64(entry.key.attendee_id, "an attendee id")?,
                        "step": entry.step.as_str(),
                        "email_hash": entry.email_hash,
                        "detail": entry.detail,
                        "run_id": entry.run_id,
                        "recorded_at": timestamp_text(entry.at),
                        "seq": int64(seq, "a ledger sequence number")?,
                    }),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.insert(&dataset, ADMISSION_LOG, rows).await
    }

    async fn record_run(&self, run: &RunSummary) -> Result<(), StoreError> {
        self.ensure_ledger_table(POLL_RUNS, POLL_RUNS_COLUMNS)
            .await?;
        let summary = serde_json::to_string(run)
            .map_err(|e| StoreError::Backend(format!("encoding the run summary: {e}")))?;
        let row = InsertRow {
            insert_id: run.run_id.clone(),
            json: json!({
                "run_id": run.run_id,
                "started_at": timestamp_text(run.started_at),
                "outcome": run.outcome.as_str(),
                "summary": summary,
            }),
        };
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.insert(&dataset, POLL_RUNS, vec![row]).await
    }

    async fn intake_outcome(&self, batch_id: &str) -> Result<Option<String>, StoreError> {
        self.ensure_ledger_table(INTAKE_BATCHES, INTAKE_BATCHES_COLUMNS)
            .await?;
        let sql = format!(
            "SELECT outcome FROM {} WHERE batch_id = @batch_id
             ORDER BY processed_at DESC LIMIT 1",
            self.ledger_ref(INTAKE_BATCHES)
        );
        let parameters = vec![parameter("batch_id", "STRING", batch_id.to_owned())];
        let rows = self
            .query("reading intake batches", sql, parameters, 1)
            .await?;
        rows.first().map(|row| row.text(0, "outcome")).transpose()
    }

    async fn record_intake(&self, record: &BatchRecord) -> Result<(), StoreError> {
        self.ensure_ledger_table(INTAKE_BATCHES, INTAKE_BATCHES_COLUMNS)
            .await?;
        let row = InsertRow {
            insert_id: format!("{}:{}", record.batch_id, micros(record.processed_at)),
            json: json!({
                "batch_id": record.batch_id,
                "received_at": timestamp_text(record.received_at),
                "processed_at": timestamp_text(record.processed_at),
                "outcome": record.outcome,
                "detail": record.detail,
            }),
        };
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.insert(&dataset, INTAKE_BATCHES, vec![row]).await
    }

    async fn revoke_hold(&self, event_id: u64) -> Result<Option<RevokeHold>, StoreError> {
        self.ensure_ledger_table(REVOKE_HOLDS, REVOKE_HOLDS_COLUMNS)
            .await?;
        let sql = format!(
            "SELECT state, attendee_ids, admitted, recorded_at FROM {} WHERE event_id = @event_id
             ORDER BY recorded_at DESC, seq DESC LIMIT 1",
            self.ledger_ref(REVOKE_HOLDS)
        );
        let parameters = vec![parameter(
            "event_id",
            "INT64",
            int64(event_id, "the event id")?.to_string(),
        )];
        let rows = self
            .query("reading revoke holds", sql, parameters, 4)
            .await?;
        rows.first()
            .map(|row| {
                Ok(RevokeHold {
                    event_id,
                    state: row.text(0, "state")?.parse()?,
                    attendee_ids: serde_json::from_str(&row.text(1, "attendee_ids")?)
                        .map_err(|e| StoreError::Corrupt(format!("revoke hold ids: {e}")))?,
                    admitted: row.uint(2, "admitted")?,
                    at: row.timestamp(3, "recorded_at")?,
                })
            })
            .transpose()
    }

    async fn record_revoke_hold(&self, hold: &RevokeHold) -> Result<(), StoreError> {
        self.ensure_ledger_table(REVOKE_HOLDS, REVOKE_HOLDS_COLUMNS)
            .await?;
        let seq = next_seq();
        let row = InsertRow {
            insert_id: format!("{}:{}:{seq}", hold.event_id, hold.state.as_str()),
            json: json!({
                "event_id": int64(hold.event_id, "an event id")?,
                "state": hold.state.as_str(),
                "attendee_ids": serde_json::to_string(&hold.attendee_ids)
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
                "admitted": int64(hold.admitted, "a count")?,
                "recorded_at": timestamp_text(hold.at),
                "seq": int64(seq, "a sequence number")?,
            }),
        };
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.insert(&dataset, REVOKE_HOLDS, vec![row]).await
    }

    async fn last_run(&self, successful_only: bool) -> Result<Option<RunSummary>, StoreError> {
        let filter = if successful_only {
            "outcome != 'failed' AND COALESCE(JSON_VALUE(summary, '$.kind'), 'poll') = 'poll'"
        } else {
            "TRUE"
        };
        let sql = format!(
            "SELECT summary FROM {} WHERE {filter}
             ORDER BY started_at DESC, run_id DESC LIMIT 1",
            self.ledger_ref(POLL_RUNS)
        );
        Ok(self.summaries(sql, Vec::new()).await?.into_iter().next())
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT summary FROM {}
             WHERE TRUE
             QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY started_at DESC) = 1
             ORDER BY started_at DESC, run_id DESC LIMIT @limit",
            self.ledger_ref(POLL_RUNS)
        );
        self.summaries(sql, vec![parameter("limit", "INT64", limit.to_string())])
            .await
    }
}

#[async_trait]
impl ContactVault for BigQueryStore {
    async fn put_contacts(&self, contacts: &[SealedContact]) -> Result<(), StoreError> {
        if contacts.is_empty() {
            return Ok(());
        }
        self.ensure_contact_tables().await?;
        let rows = contacts
            .iter()
            .map(|contact| {
                let seq = next_seq();
                Ok(InsertRow {
                    insert_id: format!(
                        "{}:{}:{seq}",
                        contact.key.event_id, contact.key.attendee_id
                    ),
                    json: json!({
                        "event_id": int64(contact.key.event_id, "an event id")?,
                        "attendee_id": int64(contact.key.attendee_id, "an attendee id")?,
                        "key_id": sealed_key_id(&contact.sealed).unwrap_or("unknown"),
                        "sealed": contact.sealed,
                        "sealed_at": timestamp_text(contact.sealed_at),
                        "seq": int64(seq, "a sequence number")?,
                    }),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.insert(&dataset, SEALED_CONTACTS, rows).await
    }

    async fn contacts(&self, event_id: u64) -> Result<HashMap<u64, String>, StoreError> {
        self.ensure_contact_tables().await?;
        let sql = self.live_contacts_sql("event_id = @event_id");
        let parameters = vec![parameter(
            "event_id",
            "INT64",
            int64(event_id, "the event id")?.to_string(),
        )];
        let rows = self
            .query("reading sealed contacts", sql, parameters, 4)
            .await?;
        rows.iter()
            .map(|row| Ok((row.uint(1, "attendee_id")?, row.text(3, "sealed")?)))
            .collect()
    }

    async fn contact_counts(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        self.ensure_contact_tables().await?;
        let sql = format!(
            "SELECT event_id, COUNT(*) FROM ({}) GROUP BY event_id ORDER BY event_id",
            self.live_contacts_sql("TRUE")
        );
        let rows = self
            .query("counting sealed contacts", sql, Vec::new(), 2)
            .await?;
        rows.iter()
            .map(|row| Ok((row.uint(0, "event_id")?, row.uint(1, "count")?)))
            .collect()
    }

    async fn contact_key_ids(&self) -> Result<Vec<String>, StoreError> {
        self.ensure_contact_tables().await?;
        let sql = format!(
            "SELECT DISTINCT key_id FROM ({}) ORDER BY key_id",
            self.live_contacts_sql("TRUE")
        );
        let rows = self
            .query("reading contact key ids", sql, Vec::new(), 1)
            .await?;
        rows.iter().map(|row| row.text(0, "key_id")).collect()
    }

    async fn shred_contacts(&self, event_id: u64) -> Result<u64, StoreError> {
        let live = self.contacts(event_id).await?.len() as u64;
        let now = Utc::now();
        let row = InsertRow {
            insert_id: format!("{event_id}:{}", micros(now)),
            json: json!({
                "event_id": int64(event_id, "an event id")?,
                "shredded_at": timestamp_text(now),
            }),
        };
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.insert(&dataset, CONTACT_SHREDS, vec![row]).await?;
        // Readers ignore them from now on; the rows go as soon as BigQuery allows DML on them
        // (not while they sit in the streaming buffer, up to about 90 minutes).
        let delete = format!(
            "DELETE FROM {} WHERE event_id = @event_id AND sealed_at <= @shredded_at",
            self.ledger_ref(SEALED_CONTACTS)
        );
        let parameters = vec![
            parameter(
                "event_id",
                "INT64",
                int64(event_id, "the event id")?.to_string(),
            ),
            parameter("shredded_at", "TIMESTAMP", timestamp_text(now)),
        ];
        if let Err(error) = self
            .query("deleting shredded contacts", delete, parameters, 0)
            .await
        {
            tracing::warn!(event_id, %error, "shredded contacts are hidden from now on; their rows are deleted by a later shred");
        }
        Ok(live)
    }
}
