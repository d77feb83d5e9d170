//! [`Warehouse`] on BigQuery: events, attendee row versions, cancellations, sales and the
//! team's pipeline tables, all appended and read back newest-first.

use super::*;

#[async_trait]
impl Warehouse for BigQueryStore {
    async fn upsert_events(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.ensure_ledger_table(EVENTS, EVENTS_COLUMNS).await?;
        let rows = events
            .iter()
            .map(|event| {
                Ok(InsertRow {
                    insert_id: format!("{}:{}", event.id, micros(event.last_seen)),
                    json: json!({
                        "id": int64(event.id, "an event id")?,
                        "slug": event.slug,
                        "name": event.name,
                        "start_at": event.start_at,
                        "end_at": event.end_at,
                        "last_seen": timestamp_text(event.last_seen),
                        "source": event.source,
                    }),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.insert(&dataset, EVENTS, rows).await
    }

    async fn events(&self) -> Result<Vec<EventRecord>, StoreError> {
        self.ensure_ledger_table(EVENTS, EVENTS_COLUMNS).await?;
        let sql = format!(
            "SELECT id, slug, name, start_at, end_at, last_seen, source FROM {}
             WHERE TRUE
             QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY last_seen DESC) = 1
             ORDER BY last_seen DESC, id",
            self.ledger_ref(EVENTS)
        );
        let rows = self.query("reading events", sql, Vec::new(), 7).await?;
        rows.iter()
            .map(|row| {
                Ok(EventRecord {
                    id: row.uint(0, "id")?,
                    slug: row.text(1, "slug")?,
                    name: row.text(2, "name")?,
                    start_at: row.opt_text(3).map(str::to_owned),
                    end_at: row.opt_text(4).map(str::to_owned),
                    last_seen: row.timestamp(5, "last_seen")?,
                    source: row.opt_text(6).map(str::to_owned),
                })
            })
            .collect()
    }

    async fn sales(&self, table: &str, event_id: u64) -> Result<Vec<SaleRecord>, StoreError> {
        self.ensure_warehouse_table(table).await?;
        self.ensure_ledger_table(CANCELLATIONS, CANCELLATIONS_COLUMNS)
            .await?;
        let sql = format!(
            "SELECT v.ticket_name, v.paid_at, v.price, v.currency,
                    COALESCE(v.state = 'cancelled', FALSE)
                        OR COALESCE(c.cancelled_at >= v.loaded_at, FALSE) AS cancelled
             FROM (
                SELECT attendee_id, ticket_name, paid_at, price, currency, state, loaded_at
                FROM {warehouse}
                WHERE ID = @event_id AND attendee_id IS NOT NULL
                QUALIFY ROW_NUMBER() OVER (PARTITION BY attendee_id ORDER BY loaded_at DESC) = 1
             ) AS v
             LEFT JOIN (
                SELECT attendee_id, MAX(cancelled_at) AS cancelled_at
                FROM {cancellations}
                WHERE table_name = @table_name AND event_id = @event_id
                GROUP BY attendee_id
             ) AS c ON c.attendee_id = v.attendee_id
             ORDER BY v.paid_at, v.attendee_id",
            warehouse = self.warehouse_ref(table),
            cancellations = self.ledger_ref(CANCELLATIONS),
        );
        let parameters = vec![
            parameter(
                "event_id",
                "INT64",
                int64(event_id, "the event id")?.to_string(),
            ),
            parameter("table_name", "STRING", table.to_owned()),
        ];
        let rows = self.query("reading sales", sql, parameters, 5).await?;
        rows.iter()
            .map(|row| {
                Ok(SaleRecord {
                    ticket_name: row.text(0, "ticket_name")?,
                    paid_at: row.timestamp(1, "paid_at")?,
                    price: row.float(2, "price")?,
                    currency: row.text(3, "currency")?,
                    cancelled: row.boolean(4, "cancelled")?,
                })
            })
            .collect()
    }

    async fn find_attendees(
        &self,
        tables: &[String],
        field: LookupField,
        value: u64,
    ) -> Result<Vec<AttendeeKey>, StoreError> {
        let mut keys = Vec::new();
        for table in tables {
            self.ensure_warehouse_table(table).await?;
            // The JSON path is one of two constants; the value travels as a parameter and is
            // compared as text, whether the record holds it as a number or a string.
            let sql = format!(
                "SELECT ID, attendee_id FROM (
                    SELECT ID, attendee_id, ATTENDEE_INFOS FROM {warehouse}
                    WHERE attendee_id IS NOT NULL
                    QUALIFY ROW_NUMBER() OVER (PARTITION BY ID, attendee_id ORDER BY loaded_at DESC) = 1
                 ) AS latest
                 WHERE JSON_VALUE(ATTENDEE_INFOS, '$.{path}') = @value
                 ORDER BY ID, attendee_id",
                warehouse = self.warehouse_ref(table),
                path = field.json_name(),
            );
            let parameters = vec![parameter("value", "STRING", value.to_string())];
            let rows = self.query("finding attendees", sql, parameters, 2).await?;
            for row in &rows {
                keys.push(AttendeeKey {
                    event_id: row.uint(0, "ID")?,
                    attendee_id: row.uint(1, "attendee_id")?,
                });
            }
        }
        Ok(keys)
    }

    async fn order_numbers(
        &self,
        table: &str,
        event_id: u64,
    ) -> Result<HashMap<u64, String>, StoreError> {
        self.ensure_warehouse_table(table).await?;
        let sql = format!(
            "SELECT attendee_id, JSON_VALUE(ATTENDEE_INFOS, '$.order_no') FROM {warehouse}
             WHERE ID = @event_id AND attendee_id IS NOT NULL
             QUALIFY ROW_NUMBER() OVER (PARTITION BY attendee_id ORDER BY loaded_at DESC) = 1",
            warehouse = self.warehouse_ref(table),
        );
        let parameters = vec![parameter(
            "event_id",
            "INT64",
            int64(event_id, "the event id")?.to_string(),
        )];
        let rows = self
            .query("reading order numbers", sql, parameters, 2)
            .await?;
        let mut orders = HashMap::new();
        for row in &rows {
            if let Some(order) = row.opt_text(1) {
                orders.insert(row.uint(0, "attendee_id")?, order.to_owned());
            }
        }
        Ok(orders)
    }

    async fn upsert_attendees(&self, rows: &[AttendeeRow]) -> Result<(), StoreError> {
        let mut by_table: BTreeMap<&str, Vec<InsertRow>> = BTreeMap::new();
        for row in rows {
            if !is_identifier(&row.table) {
                return Err(StoreError::Backend(format!(
                    "invalid table name {:?}",
                    row.table
                )));
            }
            let insert = InsertRow {
                insert_id: format!(
                    "{}:{}:{}:{}",
                    row.table,
                    row.event_id,
                    row.attendee_id,
                    micros(row.loaded_at)
                ),
                json: json!({
                    "ID": int64(row.event_id, "an event id")?,
                    "NAME": row.event_name,
                    "ATTENDEE_INFOS": row.attendee_infos,
                    "attendee_id": int64(row.attendee_id, "an attendee id")?,
                    "ticket_name": row.ticket_name,
                    "paid_at": timestamp_text(row.paid_at),
                    "price": row.price,
                    "currency": row.currency,
                    "state": row.state,
                    "loaded_at": timestamp_text(row.loaded_at),
                }),
            };
            by_table.entry(row.table.as_str()).or_default().push(insert);
        }
        let dataset = self.inner.settings.dataset.clone();
        for (table, inserts) in by_table {
            self.ensure_warehouse_table(table).await?;
            self.insert(&dataset, table, inserts).await?;
        }
        Ok(())
    }

    async fn mark_cancelled(
        &self,
        table: &str,
        keys: &[AttendeeKey],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !is_identifier(table) {
            return Err(StoreError::Backend(format!("invalid table name {table:?}")));
        }
        if keys.is_empty() {
            return Ok(());
        }
        self.ensure_ledger_table(CANCELLATIONS, CANCELLATIONS_COLUMNS)
            .await?;
        let rows = keys
            .iter()
            .map(|key| {
                Ok(InsertRow {
                    insert_id: format!(
                        "{table}:{}:{}:cancelled:{}",
                        key.event_id,
                        key.attendee_id,
                        micros(at)
                    ),
                    json: json!({
                        "table_name": table,
                        "event_id": int64(key.event_id, "an event id")?,
                        "attendee_id": int64(key.attendee_id, "an attendee id")?,
                        "cancelled_at": timestamp_text(at),
                    }),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.insert(&dataset, CANCELLATIONS, rows).await
    }

    async fn upsert_pipeline_rows(
        &self,
        layout: &PipelineTable,
        rows: &[AttendeeRow],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.ensure_pipeline_table(layout).await?;
        let table = self.warehouse_ref(&layout.table);
        // DML, not streaming, so the refunded flag can be set at once. Per event, in chunks:
        // delete the attendees' earlier rows, then insert the new ones (a crash in between
        // leaves the ledger without `loaded`, so the next run writes them again).
        let mut by_event: BTreeMap<u64, Vec<&AttendeeRow>> = BTreeMap::new();
        for row in rows {
            by_event.entry(row.event_id).or_default().push(row);
        }
        for (event_id, rows) in by_event {
            for chunk in rows.chunks(PIPELINE_DML_ROWS) {
                let mut parameters = vec![parameter(
                    "event_id",
                    "INT64",
                    int64(event_id, "the event id")?.to_string(),
                )];
                let mut ids = Vec::with_capacity(chunk.len());
                let mut values = Vec::with_capacity(chunk.len());
                for (index, row) in chunk.iter().enumerate() {
                    ids.push(format!("@a{index}"));
                    values.push(format!(
                        "(@event_id, @n{index}, @i{index}, FALSE, @a{index})"
                    ));
                    parameters.push(parameter(
                        &format!("a{index}"),
                        "INT64",
                        int64(row.attendee_id, "an attendee id")?.to_string(),
                    ));
                    parameters.push(parameter(
                        &format!("n{index}"),
                        "STRING",
                        row.event_name.clone(),
                    ));
                    parameters.push(parameter(
                        &format!("i{index}"),
                        "STRING",
                        row.attendee_infos.clone(),
                    ));
                }
                let delete = format!(
                    "DELETE FROM {table} WHERE {id} = @event_id AND {attendee} IN ({ids})",
                    id = layout.id_column,
                    attendee = layout.attendee_id_column,
                    ids = ids.join(", "),
                );
                let delete_parameters: Vec<QueryParameter> = parameters
                    .iter()
                    .filter(|p| {
                        p.name
                            .as_deref()
                            .is_some_and(|n| n == "event_id" || n.starts_with('a'))
                    })
                    .cloned()
                    .collect();
                self.query("replacing pipeline rows", delete, delete_parameters, 0)
                    .await?;
                let insert = format!(
                    "INSERT INTO {table} ({id}, {name}, {info}, {refunded}, {attendee}) VALUES {values}",
                    id = layout.id_column,
                    name = layout.name_column,
                    info = layout.attendee_info_column,
                    refunded = layout.refunded_column,
                    attendee = layout.attendee_id_column,
                    values = values.join(", "),
                );
                self.query("writing pipeline rows", insert, parameters, 0)
                    .await?;
            }
        }
        Ok(())
    }

    async fn mark_pipeline_refunded(
        &self,
        layout: &PipelineTable,
        keys: &[AttendeeKey],
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.ensure_pipeline_table(layout).await?;
        let table = self.warehouse_ref(&layout.table);
        let mut by_event: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for key in keys {
            by_event
                .entry(key.event_id)
                .or_default()
                .push(key.attendee_id);
        }
        for (event_id, attendees) in by_event {
            for chunk in attendees.chunks(PIPELINE_DML_ROWS) {
                let mut parameters = vec![parameter(
                    "event_id",
                    "INT64",
                    int64(event_id, "the event id")?.to_string(),
                )];
                let mut ids = Vec::with_capacity(chunk.len());
                for (index, attendee_id) in chunk.iter().enumerate() {
                    ids.push(format!("@a{index}"));
                    parameters.push(parameter(
                        &format!("a{index}"),
                        "INT64",
                        int64(*attendee_id, "an attendee id")?.to_string(),
                    ));
                }
                let update = format!(
                    "UPDATE {table} SET {refunded} = TRUE WHERE {id} = @event_id AND {attendee} IN ({ids})",
                    refunded = layout.refunded_column,
                    id = layout.id_column,
                    attendee = layout.attendee_id_column,
                    ids = ids.join(", "),
                );
                self.query("marking pipeline refunds", update, parameters, 0)
                    .await?;
            }
        }
        Ok(())
    }
}
