//! The two storage roles. Each is a trait with an embedded SQLite backend (the default) and,
//! for deployments, a BigQuery one.
//!
//! - [`Warehouse`]: de-identified attendee rows for analysis and reports.
//! - [`Ledger`]: an append-only log of what was done for each attendee and of every poll run;
//!   the current state of an admission is derived from it, never stored beside it.

mod sqlite;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use sqlite::SqliteStore;

use crate::reconcile::RunSummary;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the store failed: {0}")]
    Backend(String),
    #[error("the store holds data this version cannot read: {0}")]
    Corrupt(String),
}

/// An attendee of an event: the key of everything the ledger records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttendeeKey {
    pub event_id: u64,
    pub attendee_id: u64,
}

impl fmt::Display for AttendeeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.event_id, self.attendee_id)
    }
}

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

#[async_trait]
pub trait Warehouse: Send + Sync {
    /// Inserts or replaces rows by (event id, attendee id): loading twice changes nothing.
    async fn upsert_attendees(&self, rows: &[AttendeeRow]) -> Result<(), StoreError>;
    /// Marks rows of refunded or cancelled attendees so reports stop counting them.
    async fn mark_cancelled(
        &self,
        table: &str,
        keys: &[AttendeeKey],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// A step of an admission, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Seen in the book but not paid yet (an ATM order, say).
    AwaitingPayment,
    /// Its de-identified row is in the warehouse.
    Loaded,
    /// Gone from the attendance book: refunded or cancelled.
    Cancelled,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "awaiting_payment",
            Self::Loaded => "loaded",
            Self::Cancelled => "cancelled",
        }
    }
}

impl FromStr for Step {
    type Err = StoreError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "awaiting_payment" => Self::AwaitingPayment,
            "loaded" => Self::Loaded,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown ledger step {other:?}"
                )))
            }
        })
    }
}

/// One line of the ledger. `detail` is for operators and never holds personal data.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub key: AttendeeKey,
    pub step: Step,
    /// SHA-256 of the buyer's email, the only form the ledger keeps.
    pub email_hash: Option<String>,
    pub detail: Option<String>,
    pub run_id: String,
    pub at: DateTime<Utc>,
}

/// The state of one admission, folded from its ledger entries in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    pub awaiting_payment: bool,
    pub loaded: bool,
    pub cancelled: bool,
    pub email_hash: Option<String>,
}

impl Admission {
    pub fn apply(&mut self, entry_step: Step, email_hash: Option<&str>) {
        match entry_step {
            Step::AwaitingPayment => {
                self.awaiting_payment = true;
                self.cancelled = false;
            }
            Step::Loaded => {
                self.loaded = true;
                self.awaiting_payment = false;
                self.cancelled = false;
            }
            Step::Cancelled => self.cancelled = true,
        }
        if let Some(hash) = email_hash {
            self.email_hash = Some(hash.to_owned());
        }
    }

    /// Nothing is left to do for this attendee while they stay in the book.
    pub fn is_complete(&self) -> bool {
        self.loaded && !self.cancelled
    }
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Every admission of one event, derived from the log.
    async fn admissions(&self, event_id: u64) -> Result<HashMap<u64, Admission>, StoreError>;
    /// Appends entries atomically: all or none.
    async fn append(&self, entries: &[LedgerEntry]) -> Result<(), StoreError>;
    async fn record_run(&self, run: &RunSummary) -> Result<(), StoreError>;
    /// The newest run, or the newest whose outcome was `ok`.
    async fn last_run(&self, successful_only: bool) -> Result<Option<RunSummary>, StoreError>;
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
        let mut admission = Admission::default();
        admission.apply(Step::AwaitingPayment, Some("h"));
        assert!(!admission.is_complete());
        admission.apply(Step::Loaded, None);
        assert!(admission.is_complete() && !admission.awaiting_payment);
        admission.apply(Step::Cancelled, None);
        assert!(!admission.is_complete());
        assert_eq!(admission.email_hash.as_deref(), Some("h"));
    }
}
