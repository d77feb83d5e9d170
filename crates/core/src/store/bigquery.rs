//! The BigQuery backend (`STORE=bigquery:PROJECT_ID`): the warehouse tables in
//! `[bigquery] dataset` (default `ods`), the ledger, poll runs, events catalog and
//! cancellations in `[bigquery] ledger_dataset` (default `autopilot`).
//!
//! BigQuery is written through streaming inserts (`tabledata.insertAll`) only, never DML:
//! rows still in the streaming buffer cannot be updated or deleted. So every table is
//! log-structured and the trait semantics of the SQLite backend are derived when reading:
//!
//! - `upsert_attendees` appends a row version; readers keep the newest `loaded_at` per
//!   attendee (`QUALIFY ROW_NUMBER() …`).
//! - `mark_cancelled` appends to `attendee_cancellations`; a version counts as cancelled when
//!   its `state` is `cancelled` or a cancellation was recorded at or after its `loaded_at` (a
//!   re-load after a cancellation, a reinstated attendee, un-cancels, as in SQLite).
//! - `upsert_events` appends; `events()` keeps the newest `last_seen` per id.
//! - The ledger is append-only by construction; entries carry a process-wide monotonic `seq`
//!   so the fold keeps their order within a run.
//!
//! Every row carries a stable `insertId`, so a retried chunk is deduplicated by BigQuery
//! (best effort, about a minute); readers also tolerate a duplicate that slips through.
//! `append` is atomic per chunk of 500 entries (an invalid row fails its whole request), not
//! across chunks: BigQuery has no multi-request transaction for streaming inserts.
//!
//! Datasets and tables are created when missing, with explicit schemas. A warehouse table
//! that exists with only the legacy columns (`ID`, `NAME`, `ATTENDEE_INFOS`) gets the new
//! NULLABLE columns added by a schema patch (`tables.patch`); the account needs
//! `bigquery.tables.update` for that, or an operator runs once per table
//! `ALTER TABLE ods.TABLE ADD COLUMN IF NOT EXISTS attendee_id INT64, …`. Legacy rows (no
//! `attendee_id`) are ignored by `sales` and `find_attendees`.
//!
//! Queries always bind values as named parameters (`@event_id`, `@value`, `@limit`, …); the
//! only names spliced into SQL are the project id (validated) and dataset and table names
//! (validated identifiers). Errors name the operation, the HTTP status and BigQuery's reason
//! codes, never row contents.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::data_format_options::DataFormatOptions;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::error_proto::ErrorProto;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_row::TableRow;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::yup_oauth2::{self, ServiceAccountKey};
use gcp_bigquery_client::Client;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::{
    Admission, AttendeeKey, AttendeeRow, BatchRecord, BigQuerySettings, ContactVault, EventRecord,
    Ledger, LedgerEntry, LookupField, PipelineTable, RevokeHold, SaleRecord, SealedContact, Step,
    StoreError, Warehouse,
};
use crate::contacts::sealed_key_id;
use crate::model::is_identifier;
use crate::model::RunSummary;
use crate::pii::Sensitive;

/// Google's endpoint, used when `BIGQUERY_API_BASE` is unset.
const GOOGLE_API_BASE: &str = "https://bigquery.googleapis.com";
/// The OAuth scope of a service-account token.
const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// BigQuery's recommended maximum of rows per `insertAll` request.
pub const MAX_ROWS_PER_INSERT: usize = 500;
/// Rows per DML statement on the pipeline table (three parameters each).
const PIPELINE_DML_ROWS: usize = 200;
const CREDENTIALS_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";

const ADMISSION_LOG: &str = "admission_log";
const POLL_RUNS: &str = "poll_runs";
const EVENTS: &str = "events";
const CANCELLATIONS: &str = "attendee_cancellations";
const SEALED_CONTACTS: &str = "sealed_contacts";
const CONTACT_SHREDS: &str = "contact_shreds";
const INTAKE_BATCHES: &str = "intake_batches";
const REVOKE_HOLDS: &str = "revoke_holds";

/// One column of a table this backend creates: name, type, REQUIRED.
type Column = (&'static str, &'static str, bool);

/// The legacy columns first (rows already in BigQuery have only these), then the new ones.
const WAREHOUSE_COLUMNS: &[Column] = &[
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
const ADMISSION_LOG_COLUMNS: &[Column] = &[
    ("event_id", "INT64", true),
    ("attendee_id", "INT64", true),
    ("step", "STRING", true),
    ("email_hash", "STRING", false),
    ("detail", "STRING", false),
    ("run_id", "STRING", true),
    ("recorded_at", "TIMESTAMP", true),
    ("seq", "INT64", true),
];
const POLL_RUNS_COLUMNS: &[Column] = &[
    ("run_id", "STRING", true),
    ("started_at", "TIMESTAMP", true),
    ("outcome", "STRING", true),
    ("summary", "STRING", true),
];
const EVENTS_COLUMNS: &[Column] = &[
    ("id", "INT64", true),
    ("slug", "STRING", true),
    ("name", "STRING", true),
    ("start_at", "STRING", false),
    ("end_at", "STRING", false),
    ("last_seen", "TIMESTAMP", true),
    ("source", "STRING", false),
];
const SEALED_CONTACTS_COLUMNS: &[Column] = &[
    ("event_id", "INT64", true),
    ("attendee_id", "INT64", true),
    ("key_id", "STRING", true),
    ("sealed", "STRING", true),
    ("sealed_at", "TIMESTAMP", true),
    ("seq", "INT64", true),
];
/// A shred appends here at once; readers ignore contacts sealed before an event's newest
/// shred, while the rows themselves are deleted once BigQuery's streaming buffer lets go.
const CONTACT_SHREDS_COLUMNS: &[Column] = &[
    ("event_id", "INT64", true),
    ("shredded_at", "TIMESTAMP", true),
];
const REVOKE_HOLDS_COLUMNS: &[Column] = &[
    ("event_id", "INT64", true),
    ("state", "STRING", true),
    ("attendee_ids", "STRING", true),
    ("admitted", "INT64", true),
    ("recorded_at", "TIMESTAMP", true),
    ("seq", "INT64", true),
];
const INTAKE_BATCHES_COLUMNS: &[Column] = &[
    ("batch_id", "STRING", true),
    ("received_at", "TIMESTAMP", true),
    ("processed_at", "TIMESTAMP", true),
    ("outcome", "STRING", true),
    ("detail", "STRING", false),
];
const CANCELLATIONS_COLUMNS: &[Column] = &[
    ("table_name", "STRING", true),
    ("event_id", "INT64", true),
    ("attendee_id", "INT64", true),
    ("cancelled_at", "TIMESTAMP", true),
];

/// How the backend gets its OAuth tokens.
#[derive(Clone)]
pub enum BigQueryAuth {
    /// A service-account key: tokens come from Google's OAuth endpoint.
    ServiceAccountKey(Box<ServiceAccountKey>),
    /// Any token source (a fixed token for tests and emulators, say).
    Authenticator(Arc<dyn Authenticator>),
}

impl fmt::Debug for BigQueryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServiceAccountKey(_) => f.write_str("BigQueryAuth::ServiceAccountKey(..)"),
            Self::Authenticator(_) => f.write_str("BigQueryAuth::Authenticator(..)"),
        }
    }
}

impl BigQueryAuth {
    /// `GOOGLE_APPLICATION_CREDENTIALS`: the path of a service-account key file, or (when it
    /// starts with `{`) the key JSON itself. Errors name the variable, never the key.
    pub fn from_credentials(value: &str) -> Result<Self, StoreError> {
        let trimmed = value.trim();
        let bytes = if trimmed.starts_with('{') {
            trimmed.as_bytes().to_vec()
        } else {
            std::fs::read(trimmed).map_err(|error| {
                credentials_error(format!(
                    "cannot read the service-account key file {trimmed:?}: {}",
                    error.kind()
                ))
            })?
        };
        // The parser's own message can quote the key's values: only the position is kept.
        let key = yup_oauth2::parse_service_account_key(&bytes).map_err(|_| {
            credentials_error(
                "is not a service-account key (expected the JSON key file Google issues, with \
                 client_email and private_key)"
                    .into(),
            )
        })?;
        Ok(Self::ServiceAccountKey(Box::new(key)))
    }

    /// A fixed bearer token: for tests, emulators and tokens minted elsewhere.
    pub fn static_token(token: impl Into<String>) -> Self {
        Self::Authenticator(Arc::new(StaticToken::new(token)))
    }
}

fn credentials_error(reason: String) -> StoreError {
    StoreError::Backend(format!("{CREDENTIALS_VAR} {reason}"))
}

/// A token source that always answers the same bearer token.
#[derive(Clone)]
pub struct StaticToken(Arc<Sensitive<String>>);

impl StaticToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::new(Sensitive::new(token.into())))
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(..)")
    }
}

#[async_trait]
impl Authenticator for StaticToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(self.0.expose().clone())
    }
}

/// Timeouts and retries of the BigQuery client.
#[derive(Debug, Clone)]
pub struct BigQueryOptions {
    /// REST root (`BIGQUERY_API_BASE`), e.g. `http://127.0.0.1:9050` for an emulator;
    /// `/bigquery/v2` is appended unless present. Unset: Google's.
    pub api_base: Option<String>,
    /// Per HTTP request.
    pub request_timeout: Duration,
    /// Attempts of one request on 5xx, 429, quota/rate-limit 403s and transport errors.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Further rounds for rows an `insertAll` answer lists in `insertErrors`.
    pub insert_error_retries: u32,
    /// How long a query may run (polling `getQueryResults`) before the call fails.
    pub query_timeout: Duration,
    /// Rows per `insertAll` request, at most [`MAX_ROWS_PER_INSERT`].
    pub chunk_rows: usize,
}

impl Default for BigQueryOptions {
    fn default() -> Self {
        Self {
            api_base: None,
            request_timeout: Duration::from_secs(30),
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            insert_error_retries: 2,
            query_timeout: Duration::from_secs(120),
            chunk_rows: MAX_ROWS_PER_INSERT,
        }
    }
}

impl BigQueryOptions {
    /// Full jitter: a uniform wait in `[0, min(max, base·2^retry)]`.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// The warehouse and the ledger in one BigQuery project.
#[derive(Clone)]
pub struct BigQueryStore {
    inner: Arc<Inner>,
}

struct Inner {
    project: String,
    settings: BigQuerySettings,
    options: BigQueryOptions,
    auth: BigQueryAuth,
    client: OnceCell<Client>,
    /// Datasets (`ds`) and tables (`ds.table`) known to exist with the right columns.
    ensured: Mutex<HashSet<String>>,
}

impl fmt::Debug for BigQueryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BigQueryStore")
            .field("project", &self.inner.project)
            .field("dataset", &self.inner.settings.dataset)
            .field("ledger_dataset", &self.inner.settings.ledger_dataset)
            .finish_non_exhaustive()
    }
}

/// `^[a-z][a-z0-9-]{4,28}[a-z0-9]$`, or the legacy `domain.example:project` form.
pub fn is_project_id(text: &str) -> bool {
    fn plain(id: &str) -> bool {
        let bytes = id.as_bytes();
        (6..=30).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && matches!(bytes[bytes.len() - 1], b'a'..=b'z' | b'0'..=b'9')
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    }
    match text.split_once(':') {
        Some((domain, project)) => {
            let labels_ok = domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
            domain.len() <= 253 && domain.contains('.') && labels_ok && plain(project)
        }
        None => plain(text),
    }
}

/// Process-wide order of ledger entries: strictly increasing, and never behind the clock in
/// microseconds, so a later process continues above an earlier one.
fn next_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0);
    let mut current = SEQ.load(Ordering::Relaxed);
    loop {
        let next = current.saturating_add(1).max(now);
        match SEQ.compare_exchange_weak(current, next, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => current = actual,
        }
    }
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn timestamp_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn int64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Backend(format!("{what} does not fit BigQuery's INT64")))
}

fn field_type(name: &str) -> FieldType {
    match name {
        "INT64" => FieldType::Int64,
        "BOOL" => FieldType::Bool,
        "FLOAT64" => FieldType::Float64,
        "TIMESTAMP" => FieldType::Timestamp,
        _ => FieldType::String,
    }
}

fn schema_field(column: &(&str, &str, bool)) -> TableFieldSchema {
    let (name, kind, required) = *column;
    let mut field = TableFieldSchema::new(name, field_type(kind));
    field.mode = Some(if required { "REQUIRED" } else { "NULLABLE" }.into());
    field
}

fn parameter(name: &str, kind: &str, value: String) -> QueryParameter {
    QueryParameter {
        name: Some(name.into()),
        parameter_type: Some(QueryParameterType {
            array_type: None,
            struct_types: None,
            r#type: kind.into(),
        }),
        parameter_value: Some(QueryParameterValue {
            array_values: None,
            struct_values: None,
            value: Some(value),
        }),
    }
}

/// A row to stream, with its deduplication id.
struct InsertRow {
    insert_id: String,
    json: Value,
}

/// What went wrong with one BigQuery call, classified for retries.
#[derive(Debug)]
struct Failure {
    status: Option<u16>,
    reasons: Vec<String>,
    /// BigQuery's message or the transport error: names resources, never row values.
    detail: String,
    retryable: bool,
    attempts: u32,
}

impl Failure {
    fn from_error(error: BQError) -> Self {
        match error {
            BQError::ResponseError { error } => {
                let status = u16::try_from(error.error.code).ok();
                let reasons: Vec<String> = error
                    .error
                    .errors
                    .iter()
                    .filter_map(|e| e.get("reason").cloned())
                    .collect();
                let quota = reasons.iter().any(|r| {
                    matches!(
                        r.as_str(),
                        "quotaExceeded" | "rateLimitExceeded" | "backendError" | "internalError"
                    )
                });
                let retryable =
                    matches!(status, Some(429) | Some(500..=599)) || (status == Some(403) && quota);
                Self {
                    status,
                    reasons,
                    detail: error.error.message,
                    retryable,
                    attempts: 1,
                }
            }
            BQError::RequestError(error) => {
                // The crate decodes every answer as JSON, so a 5xx page that is not BigQuery's
                // JSON error arrives as a decode error without its status: retried too.
                let retryable = error.is_timeout()
                    || error.is_connect()
                    || error.is_decode()
                    || error.is_body()
                    || error.is_request();
                let kind = if error.is_timeout() {
                    "timed out"
                } else if error.is_connect() {
                    "could not connect"
                } else if error.is_decode() {
                    "answered something that is not BigQuery's JSON"
                } else {
                    "request failed"
                };
                Self {
                    status: error.status().map(|s| s.as_u16()),
                    reasons: Vec::new(),
                    detail: kind.into(),
                    retryable,
                    attempts: 1,
                }
            }
            BQError::AuthError(error) => Self::auth(error.to_string()),
            BQError::YupAuthError(error) => Self::auth(error.to_string()),
            BQError::NoToken => Self::auth("no token was issued".into()),
            BQError::InvalidServiceAccountAuthenticator(error) => Self::auth(error.to_string()),
            BQError::SerializationError(_) => Self {
                status: None,
                reasons: Vec::new(),
                detail: "could not encode the request".into(),
                retryable: false,
                attempts: 1,
            },
            other => Self {
                status: None,
                reasons: Vec::new(),
                detail: other.to_string(),
                retryable: false,
                attempts: 1,
            },
        }
    }

    fn auth(reason: String) -> Self {
        Self {
            status: None,
            reasons: vec!["authentication".into()],
            detail: format!("authentication with {CREDENTIALS_VAR} failed: {reason}"),
            retryable: false,
            attempts: 1,
        }
    }

    fn is_status(&self, status: u16) -> bool {
        self.status == Some(status)
    }

    /// `echo_detail` is off for calls whose answers could quote row contents (insertAll).
    fn into_store(self, what: &str, echo_detail: bool) -> StoreError {
        let mut text = format!("BigQuery {what} failed");
        if let Some(status) = self.status {
            text.push_str(&format!(": HTTP {status}"));
        }
        if !self.reasons.is_empty() {
            text.push_str(&format!(" ({})", self.reasons.join(", ")));
        }
        if self.attempts > 1 {
            text.push_str(&format!(" after {} attempts", self.attempts));
        }
        if echo_detail || self.status.is_none() {
            text.push_str(&format!(": {}", self.detail));
        }
        StoreError::Backend(text)
    }
}

/// One answered row: the cells of `rows[].f[].v`, as text.
struct Row<'a> {
    what: &'a str,
    cells: Vec<Option<String>>,
}

impl Row<'_> {
    fn corrupt(&self, column: &str, expected: &str) -> StoreError {
        StoreError::Corrupt(format!(
            "BigQuery answered an unexpected {column} for {} (expected {expected})",
            self.what
        ))
    }

    fn opt_text(&self, index: usize) -> Option<&str> {
        self.cells.get(index).and_then(|cell| cell.as_deref())
    }

    fn text(&self, index: usize, column: &str) -> Result<String, StoreError> {
        self.opt_text(index)
            .map(str::to_owned)
            .ok_or_else(|| self.corrupt(column, "a value, got NULL"))
    }

    fn uint(&self, index: usize, column: &str) -> Result<u64, StoreError> {
        self.text(index, column)?
            .parse::<u64>()
            .map_err(|_| self.corrupt(column, "a non-negative INT64"))
    }

    fn float(&self, index: usize, column: &str) -> Result<f64, StoreError> {
        self.text(index, column)?
            .parse::<f64>()
            .map_err(|_| self.corrupt(column, "a FLOAT64"))
    }

    fn boolean(&self, index: usize, column: &str) -> Result<bool, StoreError> {
        match self.text(index, column)?.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.corrupt(column, "a BOOL")),
        }
    }

    fn timestamp(&self, index: usize, column: &str) -> Result<DateTime<Utc>, StoreError> {
        parse_timestamp(&self.text(index, column)?)
            .ok_or_else(|| self.corrupt(column, "a TIMESTAMP"))
    }
}

/// TIMESTAMP cells come as int64 microseconds (`useInt64Timestamp`), as floating seconds
/// (`1.7040672E9`, `getQueryResults` without format options) or, from emulators, as text.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i64>() {
        // Microseconds since 1973 are above 1e14; seconds before the year 5138 below 1e11.
        return if number.unsigned_abs() >= 100_000_000_000 {
            DateTime::from_timestamp_micros(number)
        } else {
            DateTime::from_timestamp(number, 0)
        };
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.to_utc());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f %Z"] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at.to_utc());
        }
    }
    let naive = text.trim_end_matches(" UTC").trim_end_matches('Z');
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(naive, format) {
            return Some(at.and_utc());
        }
    }
    let seconds = text.parse::<f64>().ok().filter(|s| s.is_finite())?;
    let micros = (seconds * 1_000_000.0).round();
    if micros.abs() > 9.0e18 {
        return None;
    }
    DateTime::from_timestamp_micros(micros as i64)
}

/// A query answer that lists errors failed, even with HTTP 200 (emulators answer so; BigQuery
/// itself answers 4xx).
fn query_errors(what: &str, errors: Option<&[ErrorProto]>) -> Result<(), StoreError> {
    let errors = errors.unwrap_or_default();
    if errors.is_empty() {
        return Ok(());
    }
    let reasons: BTreeSet<&str> = errors
        .iter()
        .map(|e| e.reason.as_deref().unwrap_or("unknown"))
        .collect();
    let message = errors
        .iter()
        .find_map(|e| e.message.as_deref())
        .unwrap_or("no message");
    Err(StoreError::Backend(format!(
        "BigQuery {what} failed ({}): {message}",
        reasons.into_iter().collect::<Vec<_>>().join(", ")
    )))
}

fn cell_text(value: Option<Value>) -> Result<Option<String>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(Value::Bool(flag)) => Ok(Some(flag.to_string())),
        Some(_) => Err(()),
    }
}

fn decode_rows<'a>(
    what: &'a str,
    rows: Vec<TableRow>,
    columns: usize,
) -> Result<Vec<Row<'a>>, StoreError> {
    rows.into_iter()
        .map(|row| {
            let cells = row
                .columns
                .unwrap_or_default()
                .into_iter()
                .map(|cell| cell_text(cell.value))
                .collect::<Result<Vec<_>, ()>>()
                .map_err(|()| {
                    StoreError::Corrupt(format!(
                        "BigQuery answered a nested value for {what} where a scalar was expected"
                    ))
                })?;
            if cells.len() != columns {
                return Err(StoreError::Corrupt(format!(
                    "BigQuery answered {} columns for {what}, expected {columns}",
                    cells.len()
                )));
            }
            Ok(Row { what, cells })
        })
        .collect()
}

impl BigQueryStore {
    /// Validates names and keeps the credentials; the client is built on first use.
    pub fn new(
        project: &str,
        settings: BigQuerySettings,
        auth: BigQueryAuth,
        options: BigQueryOptions,
    ) -> Result<Self, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: format!("bigquery:{project}"),
            reason,
        };
        if !is_project_id(project) {
            return Err(open_error(
                "the project id must be 6-30 lowercase letters, digits and hyphens, starting \
                 with a letter (or the legacy domain:project form)"
                    .into(),
            ));
        }
        for (name, dataset) in [
            ("[bigquery] dataset", &settings.dataset),
            ("[bigquery] ledger_dataset", &settings.ledger_dataset),
        ] {
            if !is_identifier(dataset) {
                return Err(open_error(format!(
                    "{name} {dataset:?} must be letters, digits and underscores"
                )));
            }
        }
        if let Some(base) = &options.api_base {
            url::Url::parse(base)
                .map_err(|e| open_error(format!("BIGQUERY_API_BASE is not a URL: {e}")))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                project: project.to_owned(),
                settings,
                options,
                auth,
                client: OnceCell::new(),
                ensured: Mutex::default(),
            }),
        })
    }

    /// `STORE=bigquery:PROJECT`: `GOOGLE_APPLICATION_CREDENTIALS` (required), the API base
    /// (`BIGQUERY_API_BASE`) and the `[bigquery]` section of the TOML file.
    pub fn from_credentials(
        project: &str,
        credentials: Option<&Sensitive<String>>,
        api_base: Option<String>,
        settings: BigQuerySettings,
    ) -> Result<Self, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: format!("bigquery:{project}"),
            reason,
        };
        let credentials = credentials.ok_or_else(|| {
            open_error(format!(
                "{CREDENTIALS_VAR} must be set for the BigQuery store: a service-account key \
                 file path, or the key JSON itself"
            ))
        })?;
        let auth = BigQueryAuth::from_credentials(credentials.expose()).map_err(|e| match e {
            StoreError::Backend(reason) => open_error(reason),
            other => other,
        })?;
        let options = BigQueryOptions {
            api_base,
            ..BigQueryOptions::default()
        };
        Self::new(project, settings, auth, options)
    }

    pub fn project(&self) -> &str {
        &self.inner.project
    }

    fn v2_base(&self) -> String {
        let base = self
            .inner
            .options
            .api_base
            .as_deref()
            .unwrap_or(GOOGLE_API_BASE)
            .trim_end_matches('/');
        if base.ends_with("/bigquery/v2") {
            base.to_owned()
        } else {
            format!("{base}/bigquery/v2")
        }
    }

    async fn client(&self) -> Result<&Client, StoreError> {
        self.inner
            .client
            .get_or_try_init(|| async {
                let http = reqwest::Client::builder()
                    .timeout(self.inner.options.request_timeout)
                    .build()
                    .map_err(|e| StoreError::Backend(format!("BigQuery HTTP client: {e}")))?;
                let mut builder = ClientBuilder::new();
                builder
                    .with_client(http)
                    .with_v2_base_url(self.v2_base())
                    .with_auth_base_url(BIGQUERY_SCOPE.into());
                let built = match &self.inner.auth {
                    BigQueryAuth::Authenticator(auth) => {
                        builder.build_from_authenticator(Arc::clone(auth)).await
                    }
                    BigQueryAuth::ServiceAccountKey(key) => {
                        builder
                            .build_from_service_account_key((**key).clone(), false)
                            .await
                    }
                };
                built.map_err(|e| Failure::from_error(e).into_store("client setup", true))
            })
            .await
    }

    /// Runs one BigQuery call, retrying transient failures with backoff.
    async fn call<T, F, Fut>(&self, mut operation: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BQError>>,
    {
        let options = &self.inner.options;
        let mut attempt = 1;
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let mut failure = Failure::from_error(error);
                    failure.attempts = attempt;
                    if !failure.retryable || attempt >= options.max_attempts.max(1) {
                        return Err(failure);
                    }
                    tracing::debug!(
                        status = ?failure.status,
                        reasons = ?failure.reasons,
                        attempt,
                        "BigQuery call failed, retrying"
                    );
                    tokio::time::sleep(options.backoff(attempt - 1)).await;
                    attempt += 1;
                }
            }
        }
    }

    fn is_ensured(&self, key: &str) -> bool {
        self.inner
            .ensured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    fn remember(&self, key: String) {
        self.inner
            .ensured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
    }

    async fn ensure_dataset(&self, dataset: &str) -> Result<(), StoreError> {
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
    async fn ensure_table(
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

    async fn ensure_ledger_table(&self, table: &str, columns: &[Column]) -> Result<(), StoreError> {
        let dataset = self.inner.settings.ledger_dataset.clone();
        self.ensure_table(&dataset, table, columns).await
    }

    async fn ensure_warehouse_table(&self, table: &str) -> Result<(), StoreError> {
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
    async fn ensure_pipeline_table(&self, layout: &PipelineTable) -> Result<(), StoreError> {
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
    fn live_contacts_sql(&self, filter: &str) -> String {
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

    async fn ensure_contact_tables(&self) -> Result<(), StoreError> {
        self.ensure_ledger_table(SEALED_CONTACTS, SEALED_CONTACTS_COLUMNS)
            .await?;
        self.ensure_ledger_table(CONTACT_SHREDS, CONTACT_SHREDS_COLUMNS)
            .await
    }

    /// Streams rows in chunks; retries a chunk on transient failures (its insertIds make
    /// that safe). With `skipInvalidRows` the valid rows of a request land even when some
    /// are refused; after a partial `insertErrors` only the rows refused with a reason of
    /// their own are resent. Rows marked `stopped` (refused only because another row was,
    /// which BigQuery does without `skipInvalidRows`) are not resent into the same failure:
    /// they make the insert fail so the next run, level-triggered, writes them again.
    async fn insert(
        &self,
        dataset: &str,
        table: &str,
        rows: Vec<InsertRow>,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        let project = self.inner.project.as_str();
        let options = &self.inner.options;
        let chunk_rows = options.chunk_rows.clamp(1, MAX_ROWS_PER_INSERT);
        let what = format!("insert into {dataset}.{table}");
        for chunk in rows.chunks(chunk_rows) {
            let mut pending: Vec<&InsertRow> = chunk.iter().collect();
            let mut stopped = 0usize;
            let mut round = 0;
            loop {
                let mut request = TableDataInsertAllRequest::new();
                request.skip_invalid_rows();
                for row in &pending {
                    request
                        .add_row(Some(row.insert_id.clone()), &row.json)
                        .map_err(|_| StoreError::Backend(format!("{what}: cannot encode a row")))?;
                }
                let answer = self
                    .call(|| {
                        client
                            .tabledata()
                            .insert_all(project, dataset, table, request.clone())
                    })
                    .await
                    .map_err(|failure| failure.into_store(&what, false))?;
                let errors = answer.insert_errors.unwrap_or_default();
                let mut failed = BTreeSet::new();
                let mut reasons = BTreeSet::new();
                for error in &errors {
                    let index = error
                        .index
                        .and_then(|i| usize::try_from(i).ok())
                        .filter(|i| *i < pending.len())
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "BigQuery {what}: insertErrors names a row index outside the request"
                            ))
                        })?;
                    let own: Vec<String> = error
                        .errors
                        .iter()
                        .flatten()
                        .map(|detail| detail.reason.clone().unwrap_or_else(|| "unknown".into()))
                        .filter(|reason| reason != "stopped")
                        .collect();
                    if own.is_empty() && error.errors.iter().flatten().next().is_some() {
                        stopped += 1;
                    } else {
                        failed.insert(index);
                        reasons.extend(own);
                    }
                }
                if failed.is_empty() {
                    break;
                }
                let reasons: Vec<String> = reasons.into_iter().collect();
                if round >= options.insert_error_retries {
                    return Err(StoreError::Backend(format!(
                        "BigQuery {what} failed: {} of {} rows refused after {} attempts \
                         (reasons: {}){}",
                        failed.len(),
                        chunk.len(),
                        round + 1,
                        reasons.join(", "),
                        stopped_note(stopped)
                    )));
                }
                tracing::debug!(
                    rows = failed.len(),
                    stopped,
                    ?reasons,
                    "BigQuery refused rows, retrying them"
                );
                pending = failed.into_iter().map(|i| pending[i]).collect();
                tokio::time::sleep(options.backoff(round)).await;
                round += 1;
            }
            if stopped > 0 {
                return Err(StoreError::Backend(format!(
                    "BigQuery {what} incomplete: {stopped} of {} rows were stopped by another \
                     row's refusal and are left for the next run",
                    chunk.len()
                )));
            }
        }
        Ok(())
    }

    /// Runs a parameterised standard-SQL query and returns every row (all pages).
    async fn query<'a>(
        &self,
        what: &'a str,
        sql: String,
        parameters: Vec<QueryParameter>,
        columns: usize,
    ) -> Result<Vec<Row<'a>>, StoreError> {
        let client = self.client().await?;
        let project = self.inner.project.as_str();
        let options = &self.inner.options;
        let deadline = Instant::now() + options.query_timeout;
        let wait_ms =
            i32::try_from(options.query_timeout.as_millis().min(10_000)).unwrap_or(10_000);
        let mut request = QueryRequest::new(sql);
        request.use_legacy_sql = false;
        request.parameter_mode = Some("NAMED".into());
        request.query_parameters = Some(parameters);
        request.timeout_ms = Some(wait_ms);
        request.format_options = Some(DataFormatOptions {
            use_int64_timestamp: Some(true),
        });
        // The same id on every retry: BigQuery runs the query once.
        request.request_id = Some(format!("{:032x}", rand::rng().random::<u128>()));
        let answer = self
            .call(|| client.job().query(project, request.clone()))
            .await
            .map_err(|failure| failure.into_store(what, true))?;

        query_errors(what, answer.errors.as_deref())?;
        let mut complete = answer.job_complete.unwrap_or(false);
        let job = answer.job_reference;
        let mut page_token = answer.page_token;
        let mut rows = Vec::new();
        if complete {
            rows.extend(answer.rows.unwrap_or_default());
        }
        let mut seen_tokens = HashSet::new();
        while !complete || page_token.is_some() {
            if Instant::now() >= deadline {
                return Err(StoreError::Backend(format!(
                    "BigQuery {what} failed: no complete answer within {} s",
                    options.query_timeout.as_secs()
                )));
            }
            let job_id = job.as_ref().and_then(|j| j.job_id.clone()).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "BigQuery {what}: an unfinished or paged answer without a job reference"
                ))
            })?;
            if let Some(token) = &page_token {
                if !seen_tokens.insert(token.clone()) {
                    return Err(StoreError::Corrupt(format!(
                        "BigQuery {what}: the same page token came back twice"
                    )));
                }
            }
            let parameters = GetQueryResultsParameters {
                location: job.as_ref().and_then(|j| j.location.clone()),
                page_token: page_token.clone(),
                timeout_ms: Some(wait_ms),
                ..GetQueryResultsParameters::default()
            };
            let next = self
                .call(|| {
                    client
                        .job()
                        .get_query_results(project, &job_id, parameters.clone())
                })
                .await
                .map_err(|failure| failure.into_store(what, true))?;
            query_errors(what, next.errors.as_deref())?;
            if next.job_complete.unwrap_or(false) {
                complete = true;
                rows.extend(next.rows.unwrap_or_default());
                page_token = next.page_token;
            }
        }
        decode_rows(what, rows, columns)
    }

    fn table_ref(&self, dataset: &str, table: &str) -> String {
        format!("`{}.{dataset}.{table}`", self.inner.project)
    }

    fn ledger_ref(&self, table: &str) -> String {
        self.table_ref(&self.inner.settings.ledger_dataset, table)
    }

    fn warehouse_ref(&self, table: &str) -> String {
        self.table_ref(&self.inner.settings.dataset, table)
    }

    async fn summaries(
        &self,
        sql: String,
        parameters: Vec<QueryParameter>,
    ) -> Result<Vec<RunSummary>, StoreError> {
        self.ensure_ledger_table(POLL_RUNS, POLL_RUNS_COLUMNS)
            .await?;
        let rows = self.query("reading poll runs", sql, parameters, 1).await?;
        rows.iter()
            .map(|row| {
                let text = row.text(0, "summary")?;
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("poll run summary: {e}")))
            })
            .collect()
    }
}

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

/// The tail of an insert failure that also left `stopped` rows out.
fn stopped_note(stopped: usize) -> String {
    if stopped == 0 {
        String::new()
    } else {
        format!("; {stopped} rows stopped by them are left for the next run")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_are_validated() {
        for good in ["pycontw-225217", "abcdef", "example.com:my-project"] {
            assert!(is_project_id(good), "{good}");
        }
        for bad in [
            "",
            "short",
            "Upper-case",
            "1starts-with-digit",
            "ends-with-",
            "a`b.c",
            "proj; DROP",
            ":my-project",
            "example:my-project",
        ] {
            assert!(!is_project_id(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps_parse_in_every_shape_bigquery_uses() {
        let at = DateTime::parse_from_rfc3339("2024-03-01T12:34:56.123456Z")
            .unwrap()
            .to_utc();
        for text in [
            "1709296496123456",
            "1.709296496123456E9",
            "2024-03-01T12:34:56.123456Z",
            "2024-03-01 12:34:56.123456 UTC",
            "2024-03-01 12:34:56.123456+00:00",
        ] {
            assert_eq!(parse_timestamp(text), Some(at), "{text}");
        }
        assert_eq!(
            parse_timestamp("1709296496"),
            DateTime::from_timestamp(1_709_296_496, 0)
        );
        assert_eq!(parse_timestamp("not a time"), None);
    }

    #[test]
    fn sequence_numbers_increase() {
        let first = next_seq();
        let second = next_seq();
        assert!(second > first);
    }

    #[test]
    fn credentials_errors_never_echo_the_key() {
        let error = BigQueryAuth::from_credentials(r#"{"private_key": "SECRET-VALUE"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains(CREDENTIALS_VAR), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
        let error = BigQueryAuth::from_credentials("/nonexistent/key.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains(CREDENTIALS_VAR), "{error}");
    }
}
