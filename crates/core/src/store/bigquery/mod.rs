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

mod io;
mod ledger;
mod schema;
mod warehouse;

use schema::*;

/// Google's endpoint, used when `BIGQUERY_API_BASE` is unset.
const GOOGLE_API_BASE: &str = "https://bigquery.googleapis.com";
/// The OAuth scope of a service-account token.
const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// BigQuery's recommended maximum of rows per `insertAll` request.
pub const MAX_ROWS_PER_INSERT: usize = 500;
/// Rows per DML statement on the pipeline table (three parameters each).
const PIPELINE_DML_ROWS: usize = 200;
const CREDENTIALS_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";

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
