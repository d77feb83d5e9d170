//! The tables this backend writes, their columns, and creating them (datasets, tables,
//! columns added to legacy warehouse tables) when missing.

use super::*;

pub(super) const ADMISSION_LOG: &str = "admission_log";
pub(super) const POLL_RUNS: &str = "poll_runs";
pub(super) const EVENTS: &str = "events";
pub(super) const CANCELLATIONS: &str = "attendee_cancellations";
pub(super) const SEALED_CONTACTS: &str = "sealed_contacts";
pub(super) const CONTACT_SHREDS: &str = "contact_shreds";
pub(super) const INTAKE_BATCHES: &str = "intake_batches";
pub(super) const REVOKE_HOLDS: &str = "revoke_holds";

/// One column of a table this backend creates: name, type, REQUIRED.
pub(super) type Column = (&'static str, &'static str, bool);

/// The legacy columns first (rows already in BigQuery have only these), then the new ones.
pub(super) const WAREHOUSE_COLUMNS: &[Column] = &[
    ("ID", "INT64", true),
    ("NAME", "STRING", true),
    ("ATTENDEE_INFOS", "STRING", true),
    ("attendee_id", "INT64", false),
    ("ticket_name", "STRING", false),
    ("paid_at", "TIMESTAMP", false),
    ("price", "FLOAT64", false),
    ("currency", "STRING", false),
    ("state", "STRING", false),
    ("loaded_at", "TIMESTAMP", false),
];
pub(super) const ADMISSION_LOG_COLUMNS: &[Column] = &[
    ("event_id", "INT64", true),
    ("attendee_id", "INT64", true),
    ("step", "STRING", true),
    ("email_hash", "STRING", false),
    ("detail", "STRING", false),
    ("run_id", "STRING", true),
    ("recorded_at", "TIMESTAMP", true),
    ("seq", "INT64", true),
];
pub(super) const POLL_RUNS_COLUMNS: &[Column] = &[
    ("run_id", "STRING", true),
    ("started_at", "TIMESTAMP", true),
    ("outcome", "STRING", true),
    ("summary", "STRING", true),
];
pub(super) const EVENTS_COLUMNS: &[Column] = &[
    ("id", "INT64", true),
    ("slug", "STRING", true),
    ("name", "STRING", true),
    ("start_at", "STRING", false),
    ("end_at", "STRING", false),
    ("last_seen", "TIMESTAMP", true),
    ("source", "STRING", false),
];
pub(super) const SEALED_CONTACTS_COLUMNS: &[Column] = &[
    ("event_id", "INT64", true),
    ("attendee_id", "INT64", true),
    ("key_id", "STRING", true),
    ("sealed", "STRING", true),
    ("sealed_at", "TIMESTAMP", true),
    ("seq", "INT64", true),
];
/// A shred appends here at once; readers ignore contacts sealed before an event's newest
/// shred, while the rows themselves are deleted once BigQuery's streaming buffer lets go.
pub(super) const CONTACT_SHREDS_COLUMNS: &[Column] = &[
    ("event_id", "INT64", true),
    ("shredded_at", "TIMESTAMP", true),
];
pub(super) const REVOKE_HOLDS_COLUMNS: &[Column] = &[
    ("event_id", "INT64", true),
    ("state", "STRING", true),
    ("attendee_ids", "STRING", true),
    ("admitted", "INT64", true),
    ("recorded_at", "TIMESTAMP", true),
    ("seq", "INT64", true),
];
pub(super) const INTAKE_BATCHES_COLUMNS: &[Column] = &[
    ("batch_id", "STRING", true),
    ("received_at", "TIMESTAMP", true),
    ("processed_at", "TIMESTAMP", true),
    ("outcome", "STRING", true),
    ("detail", "STRING", false),
];
pub(super) const CANCELLATIONS_COLUMNS: &[Column] = &[
    ("table_name", "STRING", true),
    ("event_id", "INT64", true),
    ("attendee_id", "INT64", true),
    ("cancelled_at", "TIMESTAMP", true),
];

impl BigQueryStore {
    pub(super) async fn ensure_dataset(&self, dataset: &str) -> Result<(), StoreError> {
        if self.is_ensured(dataset) {
            return Ok(());
        }
        let client = self.client().await?;
        let project = self.inner.project.as_str();
        let what = format!("dataset {dataset}");
        match self.call(|| client.dataset().get(project, dataset)).await {
            Ok(_) => {}
            Err(failure) if failure.is_status(404) => {
                let location = self.inner.settings.location.as_str();
                let created = self
                    .call(|| {
                        client
                            .dataset()
                            .create(Dataset::new(project, dataset).location(location))
                    })
                    .await;
                match created {
                    Ok(_) => tracing::info!(dataset, "created the BigQuery dataset"),
                    Err(failure) if failure.is_status(409) => {}
                    Err(failure) => {
                        return Err(failure.into_store(&format!("creating {what}"), true))
                    }
                }
            }
            Err(failure) => return Err(failure.into_store(&format!("reading {what}"), true)),
        }
        self.remember(dataset.to_owned());
        Ok(())
    }

    /// Creates the table when missing; adds missing NULLABLE columns to an existing one.
    pub(super) async fn ensure_table(
        &self,
        dataset: &str,
        table: &str,
        columns: &[(&str, &str, bool)],
    ) -> Result<(), StoreError> {
        if !is_identifier(table) {
            return Err(StoreError::Backend(format!("invalid table name {table:?}")));
        }
        let key = format!("{dataset}.{table}");
        if self.is_ensured(&key) {
            return Ok(());
        }
        self.ensure_dataset(dataset).await?;
        let client = self.client().await?;
        let project = self.inner.project.as_str();
        let wanted: Vec<TableFieldSchema> = columns.iter().map(schema_field).collect();
        match self
            .call(|| client.table().get(project, dataset, table, None))
            .await
        {
            Ok(existing) => {
                let mut fields = existing.schema.fields.clone().unwrap_or_default();
                let have: HashSet<String> =
                    fields.iter().map(|f| f.name.to_ascii_lowercase()).collect();
                let missing: Vec<&(&str, &str, bool)> = columns
                    .iter()
                    .filter(|(name, _, _)| !have.contains(&name.to_ascii_lowercase()))
                    .collect();
                if let Some((name, _, _)) = missing.iter().find(|(_, _, required)| *required) {
                    return Err(StoreError::Backend(format!(
                        "BigQuery table {key} exists without its required column {name}"
                    )));
                }
                if !missing.is_empty() {
                    fields.extend(missing.iter().map(|column| schema_field(column)));
                    let names: Vec<&str> = missing.iter().map(|(name, _, _)| *name).collect();
                    let patched = self
                        .call(|| {
                            client.table().patch(
                                project,
                                dataset,
                                table,
                                Table::new(
                                    project,
                                    dataset,
                                    table,
                                    TableSchema::new(fields.clone()),
                                ),
                            )
                        })
                        .await;
                    patched.map_err(|failure| {
                        failure.into_store(
                            &format!(
                                "adding the columns {} to {key} (or run ALTER TABLE … ADD \
                                 COLUMN once)",
                                names.join(", ")
                            ),
                            true,
                        )
                    })?;
                    tracing::info!(table = %key, columns = ?names, "added columns to the BigQuery table");
                }
            }
            Err(failure) if failure.is_status(404) => {
                let created = self
                    .call(|| {
                        client.table().create(Table::new(
                            project,
                            dataset,
                            table,
                            TableSchema::new(wanted.clone()),
                        ))
                    })
                    .await;
                match created {
                    Ok(_) => tracing::info!(table = %key, "created the BigQuery table"),
                    Err(failure) if failure.is_status(409) => {}
                    Err(failure) => {
                        return Err(failure.into_store(&format!("creating table {key}"), true))
                    }
                }
            }
            Err(failure) => return Err(failure.into_store(&format!("reading table {key}"), true)),
        }
        self.remember(key);
        Ok(())
    }

    pub(super) async fn ensure_ledger_table(
        &self,
        table: &str,
        columns: &[Column],
    ) -> Result<(), StoreError> {
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.ensure_table(&dataset, table, columns).await
    }

    pub(super) async fn ensure_warehouse_table(&self, table: &str) -> Result<(), StoreError> {
        let dataset = self.inner.settings.dataset.clone();
        self.ensure_table(&dataset, table, WAREHOUSE_COLUMNS).await
    }

    /// Every row of the pipeline table: (event id, event name, record JSON, refunded), for
    /// tests and inspection.
    pub async fn pipeline_rows(
        &self,
        layout: &PipelineTable,
    ) -> Result<Vec<(u64, String, String, bool)>, StoreError> {
        self.ensure_pipeline_table(layout).await?;
        let sql = format!(
            "SELECT {id}, {name}, {info}, {refunded} FROM {table} ORDER BY {id}, {attendee}",
            table = self.warehouse_ref(&layout.table),
            id = layout.id_column,
            name = layout.name_column,
            info = layout.attendee_info_column,
            refunded = layout.refunded_column,
            attendee = layout.attendee_id_column,
        );
        let rows = self
            .query("reading the pipeline table", sql, Vec::new(), 4)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.uint(0, &layout.id_column)?,
                    row.text(1, &layout.name_column)?,
                    row.text(2, &layout.attendee_info_column)?,
                    row.boolean(3, &layout.refunded_column)?,
                ))
            })
            .collect()
    }

    /// The team's pipeline table, with the column names its configuration gives.
    pub(super) async fn ensure_pipeline_table(
        &self,
        layout: &PipelineTable,
    ) -> Result<(), StoreError> {
        layout.validate().map_err(StoreError::Backend)?;
        let dataset = self.inner.settings.dataset.clone();
        let columns = [
            (layout.id_column.as_str(), "INT64", true),
            (layout.name_column.as_str(), "STRING", true),
            (layout.attendee_info_column.as_str(), "STRING", true),
            (layout.refunded_column.as_str(), "BOOL", true),
            (layout.attendee_id_column.as_str(), "INT64", false),
        ];
        self.ensure_table(&dataset, &layout.table, &columns).await
    }

    /// Each attendee's newest sealed contact, unless its event was shredded since.
    pub(super) fn live_contacts_sql(&self, filter: &str) -> String {
        format!(
            "SELECT c.event_id, c.attendee_id, c.key_id, c.sealed FROM (
                SELECT event_id, attendee_id, key_id, sealed, sealed_at FROM {contacts}
                WHERE {filter}
                QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id, attendee_id ORDER BY sealed_at DESC, seq DESC) = 1
             ) AS c
             LEFT JOIN (
                SELECT event_id, MAX(shredded_at) AS shredded_at FROM {shreds} GROUP BY event_id
             ) AS s ON s.event_id = c.event_id
             WHERE s.shredded_at IS NULL OR c.sealed_at > s.shredded_at",
            contacts = self.ledger_ref(SEALED_CONTACTS),
            shreds = self.ledger_ref(CONTACT_SHREDS),
        )
    }

    pub(super) async fn ensure_contact_tables(&self) -> Result<(), StoreError> {
        self.ensure_ledger_table(SEALED_CONTACTS, SEALED_CONTACTS_COLUMNS)
            .await?;
        self.ensure_ledger_table(CONTACT_SHREDS, CONTACT_SHREDS_COLUMNS)
            .await
    }
}
