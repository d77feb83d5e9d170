//! The warehouse's nouns: de-identified rows, events, sales and the team's pipeline table.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::is_identifier;

/// One de-identified attendee row, with what reports need beside the legacy columns
/// (`ID` = event id, `NAME` = event name, `ATTENDEE_INFOS` = the record as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttendeeRow {
    pub table: String,
    pub event_id: u64,
    pub event_name: String,
    pub attendee_id: u64,
    /// The de-identified KKTIX record, as JSON text.
    pub attendee_infos: String,
    pub ticket_name: String,
    pub paid_at: DateTime<Utc>,
    pub price: f64,
    pub currency: String,
    pub state: String,
    pub loaded_at: DateTime<Utc>,
}

/// An event as the last runs saw it in KKTIX's listing: what `/event list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub start_at: Option<String>,
    pub end_at: Option<String>,
    /// When a run last saw it listed as not ended.
    pub last_seen: DateTime<Utc>,
    /// The door its attendees came through last (`api`, `csv`, `webhook`); unset on rows
    /// written before there was more than one door.
    #[serde(default)]
    pub source: Option<String>,
}

/// `[warehouse.pipeline_table]`: the table the team's current pipeline writes and its later
/// stages and dashboards read (`ods.ods_kktix_attendeeId_datetime`: the event's id and name,
/// the de-identified record as JSON, and whether it was refunded; all REQUIRED). Its rows are
/// written with DML, not streamed, so a refund can be marked at once. An `attendee_id`
/// column is added beside them (NULLABLE) so a row can be found without parsing its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineTable {
    pub enabled: bool,
    pub table: String,
    pub id_column: String,
    pub name_column: String,
    pub attendee_info_column: String,
    pub refunded_column: String,
    pub attendee_id_column: String,
}

impl Default for PipelineTable {
    fn default() -> Self {
        Self {
            enabled: false,
            table: "ods_kktix_attendeeId_datetime".into(),
            id_column: "id".into(),
            name_column: "name".into(),
            attendee_info_column: "attendee_info".into(),
            refunded_column: "refunded".into(),
            attendee_id_column: "attendee_id".into(),
        }
    }
}

impl PipelineTable {
    pub fn validate(&self) -> Result<(), String> {
        for name in [
            &self.table,
            &self.id_column,
            &self.name_column,
            &self.attendee_info_column,
            &self.refunded_column,
            &self.attendee_id_column,
        ] {
            if !is_identifier(name) {
                return Err(format!(
                    "[warehouse.pipeline_table] {name:?} must be letters, digits and underscores"
                ));
            }
        }
        Ok(())
    }
}

/// One sale for reports: no personal data, only what was sold, when, for how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaleRecord {
    pub ticket_name: String,
    pub paid_at: DateTime<Utc>,
    pub price: f64,
    pub currency: String,
    /// Refunded or cancelled since: not counted as sold.
    pub cancelled: bool,
}
