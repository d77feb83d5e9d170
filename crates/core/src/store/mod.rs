//! The two storage roles. Each is a trait with an embedded SQLite backend (the default) and,
//! for deployments, a BigQuery one.
//!
//! - [`Warehouse`]: de-identified attendee rows for analysis and reports.
//! - [`Ledger`]: an append-only log of what was done for each attendee and of every poll run;
//!   the current state of an admission is derived from it, never stored beside it.

mod bigquery;
mod sqlite;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use bigquery::{
    is_project_id, BigQueryAuth, BigQueryOptions, BigQueryStore, StaticToken, MAX_ROWS_PER_INSERT,
};
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
            if !crate::selection::is_identifier(name) {
                return Err(format!(
                    "[warehouse.pipeline_table] {name:?} must be letters, digits and underscores"
                ));
            }
        }
        Ok(())
    }
}

/// A buyer's contact details as the store keeps them: sealed text, never clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedContact {
    pub key: AttendeeKey,
    /// `crate::contacts` text form; names the key that sealed it.
    pub sealed: String,
    pub sealed_at: DateTime<Utc>,
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

/// Where an event's revoke hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeHoldState {
    /// Too many vanished at once: nobody revoked, the channel told.
    Held,
    /// An operator confirmed: the next reconcile of the event revokes those still gone.
    Confirmed,
    /// Done, or they came back.
    Cleared,
}

impl RevokeHoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Cleared => "cleared",
        }
    }
}

impl FromStr for RevokeHoldState {
    type Err = StoreError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "held" => Ok(Self::Held),
            "confirmed" => Ok(Self::Confirmed),
            "cleared" => Ok(Self::Cleared),
            other => Err(StoreError::Corrupt(format!(
                "unknown revoke hold state {other:?}"
            ))),
        }
    }
}

/// One event's revoke hold: which admitted attendees vanished at once (ids only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeHold {
    pub event_id: u64,
    pub state: RevokeHoldState,
    pub attendee_ids: Vec<u64>,
    /// Admitted attendees of the event when it was recorded.
    pub admitted: u64,
    pub at: DateTime<Utc>,
}

/// One intake batch (a webhook body) as the ledger remembers it: a repeated batch is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub batch_id: String,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
    /// `processed`, `unknown_shape`, `trigger` …
    pub outcome: String,
    /// Counts and key paths only.
    pub detail: Option<String>,
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

/// A step of an admission, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Seen in the book but not paid yet (an ATM order, say).
    AwaitingPayment,
    /// Its de-identified row is in the warehouse.
    Loaded,
    /// On the venue's guest list; `detail` holds the [`GrantRecord`] as JSON.
    Granted,
    /// The invitation was accepted by the email provider (`detail` "resend" for a resend).
    Mailed,
    /// About to send the invitation; `detail` is the intent's id. Until `mailed` or
    /// `mail_failed` follows, an outcome is unknown and is settled from the provider's events,
    /// never by sending again.
    MailIntent,
    /// Gone from the attendance book: refunded or cancelled.
    Cancelled,
    /// Off the guest list again (or never needed removing); `detail` says which.
    Revoked,
    GrantFailed,
    MailFailed,
    RevokeFailed,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::AwaitingPayment,
        Step::Loaded,
        Step::Granted,
        Step::Mailed,
        Step::MailIntent,
        Step::Cancelled,
        Step::Revoked,
        Step::GrantFailed,
        Step::MailFailed,
        Step::RevokeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "awaiting_payment",
            Self::Loaded => "loaded",
            Self::Granted => "granted",
            Self::Mailed => "mailed",
            Self::MailIntent => "mail_intent",
            Self::Cancelled => "cancelled",
            Self::Revoked => "revoked",
            Self::GrantFailed => "grant_failed",
            Self::MailFailed => "mail_failed",
            Self::RevokeFailed => "revoke_failed",
        }
    }
}

impl FromStr for Step {
    type Err = StoreError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown ledger step {text:?}")))
    }
}

/// What a grant gave, kept with the `granted` step so the invitation can be (re)sent and the
/// access revoked without asking the authorizer again. No personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub event_name: String,
    pub ticket_name: String,
    pub gather: bool,
    #[serde(default)]
    pub links: Vec<crate::access::Link>,
    #[serde(default)]
    pub venue_url: Option<String>,
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

/// The prefix of a failure's `detail` when the provider refused it for good (an invalid
/// address): only those wait a backoff. Any other failure was the provider's, and the next
/// run tries again (`transient: …`, or a detail written before this distinction).
pub const PERMANENT: &str = "permanent: ";
pub const TRANSIENT: &str = "transient: ";

/// Consecutive failures of one step since it last succeeded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failures {
    pub count: u32,
    pub last_at: Option<DateTime<Utc>>,
    pub last_reason: Option<String>,
    /// The last failure was a permanent rejection (backs off per attendee).
    pub permanent: bool,
}

impl Failures {
    fn record(&mut self, at: DateTime<Utc>, reason: Option<&str>) {
        self.count += 1;
        self.last_at = Some(at);
        self.last_reason = reason.map(str::to_owned);
        self.permanent = reason.is_some_and(|r| r.starts_with(PERMANENT));
    }

    /// Whether the step may be tried again at `now`. A provider's failure (an outage) never
    /// waits here: the next run tries again and, if the provider answers, everything pending
    /// goes out. A permanent rejection backs off exponentially from `base` (base, 2·base, …
    /// capped at 64·base).
    pub fn due(&self, now: DateTime<Utc>, base: std::time::Duration) -> bool {
        if !self.permanent {
            return true;
        }
        let Some(last) = self.last_at else {
            return true;
        };
        let factor = 1u32 << self.count.saturating_sub(1).min(6);
        let wait = chrono::Duration::from_std(base * factor).unwrap_or(chrono::Duration::MAX);
        now >= last + wait
    }
}

/// The state of one admission, folded from its ledger entries in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    pub awaiting_payment: bool,
    pub loaded: bool,
    pub granted: Option<GrantRecord>,
    pub mailed: bool,
    /// An intent to mail whose outcome is not recorded yet: `(intent id, when)`.
    pub mail_intent: Option<(String, DateTime<Utc>)>,
    pub cancelled: bool,
    pub revoked: bool,
    pub email_hash: Option<String>,
    pub grant_failures: Failures,
    pub mail_failures: Failures,
    pub revoke_failures: Failures,
}

impl Admission {
    pub fn apply(
        &mut self,
        entry_step: Step,
        email_hash: Option<&str>,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) {
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
            Step::Granted => {
                // A grant whose record cannot be read still counts as granted.
                self.granted = Some(
                    detail
                        .and_then(|text| serde_json::from_str(text).ok())
                        .unwrap_or(GrantRecord {
                            event_name: String::new(),
                            ticket_name: String::new(),
                            gather: true,
                            links: Vec::new(),
                            venue_url: None,
                        }),
                );
                self.revoked = false;
                self.grant_failures = Failures::default();
            }
            Step::Mailed => {
                self.mailed = true;
                self.mail_intent = None;
                self.mail_failures = Failures::default();
            }
            Step::MailIntent => {
                self.mail_intent = detail.map(|intent| (intent.to_owned(), at));
            }
            Step::Cancelled => self.cancelled = true,
            Step::Revoked => {
                self.revoked = true;
                self.revoke_failures = Failures::default();
            }
            Step::GrantFailed => self.grant_failures.record(at, detail),
            Step::MailFailed => {
                self.mail_intent = None;
                self.mail_failures.record(at, detail);
            }
            Step::RevokeFailed => self.revoke_failures.record(at, detail),
        }
        if let Some(hash) = email_hash {
            self.email_hash = Some(hash.to_owned());
        }
    }

    /// Still to do for an attendee in the book, given which stages this deployment runs.
    pub fn pending(&self, stages: Stages) -> bool {
        !self.loaded || (stages.grant && self.granted.is_none()) || (stages.mail && !self.mailed)
    }

    /// Nothing is left to do for this attendee while they stay in the book.
    pub fn is_complete(&self, stages: Stages) -> bool {
        !self.cancelled && !self.pending(stages)
    }

    /// Access was granted and the attendee has left the book: it must go.
    pub fn needs_revoke(&self) -> bool {
        self.cancelled && self.granted.as_ref().is_some_and(|g| g.gather) && !self.revoked
    }
}

/// Which admission stages run after loading: granting access and mailing the invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stages {
    pub grant: bool,
    pub mail: bool,
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
