//! The two storage roles. Each is a trait with an embedded SQLite backend (the default) and,
//! for deployments, a BigQuery one.
//!
//! - [`Warehouse`]: de-identified attendee rows for analysis and reports.
//! - [`Ledger`]: an append-only log of what was done for each attendee and of every poll run;
//!   the current state of an admission is derived from it, never stored beside it.

#[cfg(feature = "bigquery")]
mod bigquery;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(feature = "bigquery")]
pub use bigquery::{
    is_project_id, BigQueryAuth, BigQueryOptions, BigQueryStore, StaticToken, MAX_ROWS_PER_INSERT,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

// The nouns the store keeps, defined with the others in `crate::model`; re-exported here
// where callers have always found them.
pub use crate::model::{
    Admission, AttendeeKey, AttendeeRow, BatchRecord, EventRecord, Failures, GrantRecord,
    LedgerEntry, PipelineTable, RevokeHold, RevokeHoldState, SaleRecord, SealedContact, Stages,
    Step, PERMANENT, TRANSIENT,
};
use crate::model::{RunSummary, UnknownValue};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the store failed: {0}")]
    Backend(String),
    #[error("the store holds data this version cannot read: {0}")]
    Corrupt(String),
}

impl From<UnknownValue> for StoreError {
    fn from(error: UnknownValue) -> Self {
        Self::Corrupt(error.0)
    }
}

/// Where the sealed contacts live: beside the ledger, shredded after the event.
#[async_trait]
pub trait ContactVault: Send + Sync {
    /// Inserts or replaces each attendee's sealed contact.
    async fn put_contacts(&self, contacts: &[SealedContact]) -> Result<(), StoreError>;
    /// The sealed contacts of one event, by attendee id.
    async fn contacts(&self, event_id: u64) -> Result<HashMap<u64, String>, StoreError>;
    /// How many sealed contacts each event holds.
    async fn contact_counts(&self) -> Result<Vec<(u64, u64)>, StoreError>;
    /// Which keys sealed what the store holds (ids only), to tell a wrong key at start.
    async fn contact_key_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Deletes every sealed contact of the event; how many were deleted.
    async fn shred_contacts(&self, event_id: u64) -> Result<u64, StoreError>;
}

/// A field of the KKTIX record an operator may name an attendee by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupField {
    RegNo,
    OrderNo,
}

impl LookupField {
    pub fn json_name(self) -> &'static str {
        match self {
            Self::RegNo => "reg_no",
            Self::OrderNo => "order_no",
        }
    }
}

#[async_trait]
pub trait Warehouse: Send + Sync {
    /// Records the events a run saw (inserted or refreshed by id).
    async fn upsert_events(&self, events: &[EventRecord]) -> Result<(), StoreError>;
    /// Every event ever seen, newest `last_seen` first.
    async fn events(&self) -> Result<Vec<EventRecord>, StoreError>;
    /// Every sale of one event in its table, refunded ones marked.
    async fn sales(&self, table: &str, event_id: u64) -> Result<Vec<SaleRecord>, StoreError>;
    /// Attendees in these tables whose record has `field == value`.
    async fn find_attendees(
        &self,
        tables: &[String],
        field: LookupField,
        value: u64,
    ) -> Result<Vec<AttendeeKey>, StoreError>;
    /// Each loaded attendee's order number (as KKTIX's record gives it), for cancellations
    /// that name orders rather than attendees.
    async fn order_numbers(
        &self,
        table: &str,
        event_id: u64,
    ) -> Result<HashMap<u64, String>, StoreError>;
    /// Inserts or replaces rows by (event id, attendee id): loading twice changes nothing.
    async fn upsert_attendees(&self, rows: &[AttendeeRow]) -> Result<(), StoreError>;
    /// Marks rows of refunded or cancelled attendees so reports stop counting them.
    async fn mark_cancelled(
        &self,
        table: &str,
        keys: &[AttendeeKey],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Writes rows into the pipeline table too (replacing an attendee's earlier row).
    async fn upsert_pipeline_rows(
        &self,
        layout: &PipelineTable,
        rows: &[AttendeeRow],
    ) -> Result<(), StoreError>;
    /// Sets `refunded` on the pipeline table's rows of these attendees.
    async fn mark_pipeline_refunded(
        &self,
        layout: &PipelineTable,
        keys: &[AttendeeKey],
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Every admission of one event, derived from the log.
    async fn admissions(&self, event_id: u64) -> Result<HashMap<u64, Admission>, StoreError>;
    /// Appends entries atomically: all or none.
    async fn append(&self, entries: &[LedgerEntry]) -> Result<(), StoreError>;
    async fn record_run(&self, run: &RunSummary) -> Result<(), StoreError>;
    /// The newest run of any kind, or (`successful_only`) the newest scheduled `poll` run that
    /// did not fail: `ok`, or `partial` (it ran; an upstream left some work pending).
    async fn last_run(&self, successful_only: bool) -> Result<Option<RunSummary>, StoreError>;
    /// The newest `limit` runs, newest first.
    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError>;
    /// How an intake batch was handled, if it was.
    async fn intake_outcome(&self, batch_id: &str) -> Result<Option<String>, StoreError>;
    async fn record_intake(&self, record: &BatchRecord) -> Result<(), StoreError>;
    /// The event's newest revoke hold, if it ever had one.
    async fn revoke_hold(&self, event_id: u64) -> Result<Option<RevokeHold>, StoreError>;
    async fn record_revoke_hold(&self, hold: &RevokeHold) -> Result<(), StoreError>;
}

/// `[bigquery]` in the TOML file: where the BigQuery backend keeps its tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BigQuerySettings {
    /// Dataset of the warehouse tables (`ods.ods_kktix_ticket_*_attendees`).
    pub dataset: String,
    /// Dataset of the ledger, poll runs and events catalog.
    pub ledger_dataset: String,
    /// Location datasets are created in when missing.
    pub location: String,
}

impl Default for BigQuerySettings {
    fn default() -> Self {
        Self {
            dataset: "ods".into(),
            ledger_dataset: "autopilot".into(),
            location: "US".into(),
        }
    }
}

/// Where the warehouse and ledger live: `STORE=sqlite:PATH` or `STORE=bigquery:PROJECT_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Sqlite(String),
    BigQuery(String),
}

impl Default for StoreSpec {
    fn default() -> Self {
        Self::Sqlite("./autopilot.db".into())
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{path}"),
            Self::BigQuery(project) => write!(f, "bigquery:{project}"),
        }
    }
}

impl FromStr for StoreSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(Self::Sqlite(path.into())),
            Some(("bigquery", project)) if !project.is_empty() => {
                Ok(Self::BigQuery(project.into()))
            }
            _ => Err(format!(
                "expected sqlite:PATH or bigquery:PROJECT_ID, got {text:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_spec_parses() {
        assert_eq!(
            "sqlite:./a.db".parse(),
            Ok(StoreSpec::Sqlite("./a.db".into()))
        );
        assert_eq!(
            "bigquery:pycontw-225217".parse(),
            Ok(StoreSpec::BigQuery("pycontw-225217".into()))
        );
        assert!("postgres://x".parse::<StoreSpec>().is_err());
        assert!("sqlite:".parse::<StoreSpec>().is_err());
    }

    #[test]
    fn admission_folds_in_order() {
        let now = Utc::now();
        let all = Stages {
            grant: true,
            mail: true,
        };
        let mut admission = Admission::default();
        admission.apply(Step::AwaitingPayment, Some("h"), None, now);
        assert!(!admission.is_complete(Stages::default()));
        admission.apply(Step::Loaded, None, None, now);
        assert!(admission.is_complete(Stages::default()) && !admission.awaiting_payment);
        assert!(!admission.is_complete(all));
        admission.apply(Step::GrantFailed, None, Some("Gather failed"), now);
        admission.apply(Step::GrantFailed, None, Some("Gather failed"), now);
        assert_eq!(admission.grant_failures.count, 2);
        let record = r#"{"event_name":"E","ticket_name":"T","gather":true,"links":[{"label":"YouTube","url":"u"}]}"#;
        admission.apply(Step::Granted, None, Some(record), now);
        assert_eq!(
            admission.grant_failures.count, 0,
            "a success resets the failures"
        );
        assert_eq!(
            admission.granted.as_ref().unwrap().links[0].label,
            "YouTube"
        );
        admission.apply(Step::Mailed, None, None, now);
        assert!(admission.is_complete(all));
        admission.apply(Step::Cancelled, None, None, now);
        assert!(!admission.is_complete(all));
        assert!(admission.needs_revoke());
        admission.apply(Step::Revoked, None, Some("removed"), now);
        assert!(!admission.needs_revoke());
        assert_eq!(admission.email_hash.as_deref(), Some("h"));
    }

    #[test]
    fn a_providers_failures_never_wait_and_intents_close_on_an_outcome() {
        let start = Utc::now();
        let base = std::time::Duration::from_secs(60);
        let mut failures = Failures::default();
        for _ in 0..12 {
            failures.record(start, Some("transient: Mailgun failed with HTTP 503"));
        }
        assert!(
            failures.due(start, base),
            "an outage does not make anyone wait"
        );
        failures.record(start, Some("old detail without a prefix"));
        assert!(failures.due(start, base));

        let mut admission = Admission::default();
        admission.apply(Step::MailIntent, None, Some("run-1.1"), start);
        assert_eq!(
            admission.mail_intent.as_ref().map(|i| i.0.as_str()),
            Some("run-1.1")
        );
        admission.apply(
            Step::MailFailed,
            None,
            Some("transient: not accepted"),
            start,
        );
        assert!(admission.mail_intent.is_none());
        admission.apply(Step::MailIntent, None, Some("run-2.1"), start);
        admission.apply(Step::Mailed, None, Some("mailgun settled"), start);
        assert!(admission.mail_intent.is_none() && admission.mailed);
    }

    #[test]
    fn permanent_rejections_back_off_exponentially() {
        let start = Utc::now();
        let base = std::time::Duration::from_secs(60);
        let mut failures = Failures::default();
        assert!(failures.due(start, base));
        failures.record(start, Some("permanent: refused"));
        assert!(!failures.due(start + chrono::Duration::seconds(59), base));
        assert!(failures.due(start + chrono::Duration::seconds(60), base));
        failures.record(start, Some("permanent: refused"));
        failures.record(start, Some("permanent: refused"));
        assert!(!failures.due(start + chrono::Duration::seconds(239), base));
        assert!(failures.due(start + chrono::Duration::seconds(240), base));
        for _ in 0..40 {
            failures.record(start, Some("permanent: refused"));
        }
        assert!(
            failures.due(start + chrono::Duration::seconds(64 * 60), base),
            "capped"
        );
        assert!(Step::ALL
            .iter()
            .all(|s| s.as_str().parse::<Step>().unwrap() == *s));
    }
}
