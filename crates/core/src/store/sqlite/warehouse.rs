//! [`Warehouse`] on SQLite: events, attendee rows, cancellations, sales and the team's
//! pipeline tables.

use super::*;

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
