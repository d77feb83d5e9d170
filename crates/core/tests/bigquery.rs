//! The BigQuery backend against a fake speaking BigQuery's REST format (wiremock): table
//! creation, streaming inserts, retries, parameterised queries and result decoding.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use autopilot_core::store::{
    AttendeeKey, AttendeeRow, BigQueryAuth, BigQueryOptions, BigQuerySettings, BigQueryStore,
    ContactVault, EventRecord, Ledger, LedgerEntry, LookupField, Step, StoreError, Warehouse,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PROJECT: &str = "test-project";
const TABLE: &str = "ods_kktix_ticket_individual_attendees";
const BASE: &str = "/bigquery/v2/projects/test-project";

fn options(server: &MockServer) -> BigQueryOptions {
    BigQueryOptions {
        api_base: Some(server.uri()),
        request_timeout: Duration::from_secs(5),
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        insert_error_retries: 2,
        query_timeout: Duration::from_secs(5),
        ..BigQueryOptions::default()
    }
}

fn store(server: &MockServer) -> BigQueryStore {
    BigQueryStore::new(
        PROJECT,
        BigQuerySettings::default(),
        BigQueryAuth::static_token("test-token"),
        options(server),
    )
    .unwrap()
}

fn bq_error(code: u16, reason: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({
        "error": {
            "code": code,
            "message": message,
            "errors": [{"reason": reason, "domain": "global", "message": message}],
            "status": "ERROR"
        }
    }))
}

/// Every column name this backend uses, so an existing table needs no patch.
const ALL_COLUMNS: &[&str] = &[
    "ID",
    "NAME",
    "ATTENDEE_INFOS",
    "attendee_id",
    "ticket_name",
    "paid_at",
    "price",
    "currency",
    "state",
    "loaded_at",
    "event_id",
    "step",
    "email_hash",
    "detail",
    "run_id",
    "recorded_at",
    "seq",
    "started_at",
    "outcome",
    "summary",
    "id",
    "slug",
    "name",
    "start_at",
    "end_at",
    "last_seen",
    "table_name",
    "cancelled_at",
    "source",
    "key_id",
    "sealed",
    "sealed_at",
    "shredded_at",
    "batch_id",
    "received_at",
    "processed_at",
    "attendee_info",
    "refunded",
];

fn table_body(dataset: &str, table: &str, columns: &[&str]) -> Value {
    json!({
        "kind": "bigquery#table",
        "tableReference": {"projectId": PROJECT, "datasetId": dataset, "tableId": table},
        "schema": {"fields": columns.iter().map(|c| json!({"name": c, "type": "STRING", "mode": "NULLABLE"})).collect::<Vec<_>>()}
    })
}

/// Datasets and tables exist already (with every column).
async fn mount_existing(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/bigquery/v2/projects/test-project/datasets/[A-Za-z_]+$",
        ))
        .and(header("authorization", "Bearer test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "kind": "bigquery#dataset",
            "datasetReference": {"projectId": PROJECT, "datasetId": "ods"},
            "location": "US"
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/bigquery/v2/projects/test-project/datasets/[A-Za-z_]+/tables/[A-Za-z_]+$",
        ))
        .and(header("authorization", "Bearer test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(table_body("ods", "t", ALL_COLUMNS)))
        .mount(server)
        .await;
}

async fn mount_insert_ok(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path_regex(r"/insertAll$"))
        .and(header("authorization", "Bearer test-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"kind": "bigquery#tableDataInsertAllResponse"})),
        )
        .mount(server)
        .await;
}

fn query_answer(fields: &[&str], rows: &[Vec<Value>]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "kind": "bigquery#queryResponse",
        "jobComplete": true,
        "jobReference": {"projectId": PROJECT, "jobId": "job_1", "location": "US"},
        "schema": {"fields": fields.iter().map(|f| json!({"name": f, "type": "STRING"})).collect::<Vec<_>>()},
        "rows": rows.iter().map(|r| json!({"f": r.iter().map(|v| json!({"v": v})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "totalRows": rows.len().to_string()
    }))
}

async fn mount_query(server: &MockServer, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/queries")))
        .and(header("authorization", "Bearer test-token"))
        .respond_with(answer)
        .mount(server)
        .await;
}

async fn bodies(server: &MockServer, suffix: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with(suffix))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_709_000_000 + seconds, 0).unwrap()
}

fn row(attendee_id: u64, loaded_at: DateTime<Utc>) -> AttendeeRow {
    AttendeeRow {
        table: TABLE.into(),
        event_id: 7,
        event_name: "PyCon TW".into(),
        attendee_id,
        attendee_infos: r#"{"reg_no": 1001, "secret_marker": "SECRET-INFO"}"#.into(),
        ticket_name: "Regular".into(),
        paid_at: at(0),
        price: 1200.0,
        currency: "TWD".into(),
        state: "activated".into(),
        loaded_at,
    }
}

fn insert_ids(body: &Value) -> Vec<String> {
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["insertId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn creates_the_dataset_and_tables_when_missing_with_explicit_schemas() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/datasets/ods")))
        .respond_with(bq_error(
            404,
            "notFound",
            "Not found: Dataset test-project:ods",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/datasets")))
        .and(header("authorization", "Bearer test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "datasetReference": {"projectId": PROJECT, "datasetId": "ods"}, "location": "US"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/datasets/ods/tables/{TABLE}")))
        .respond_with(bq_error(404, "notFound", "Not found: Table"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/datasets/ods/tables")))
        .and(header("authorization", "Bearer test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(table_body(
            "ods",
            TABLE,
            ALL_COLUMNS,
        )))
        .expect(1)
        .mount(&server)
        .await;
    mount_insert_ok(&server).await;

    let store = store(&server);
    store.upsert_attendees(&[row(1, at(10))]).await.unwrap();
    // Cached: the second load neither reads nor creates again (the `expect(1)`s).
    store.upsert_attendees(&[row(2, at(20))]).await.unwrap();

    let datasets = bodies(&server, "/datasets").await;
    assert_eq!(
        datasets[0],
        json!({"datasetReference": {"projectId": PROJECT, "datasetId": "ods"}, "location": "US"})
    );
    let tables = bodies(&server, "/tables").await;
    assert_eq!(
        tables[0]["tableReference"],
        json!({"projectId": PROJECT, "datasetId": "ods", "tableId": TABLE})
    );
    assert_eq!(
        tables[0]["schema"]["fields"],
        json!([
            {"name": "ID", "type": "INT64", "mode": "REQUIRED"},
            {"name": "NAME", "type": "STRING", "mode": "REQUIRED"},
            {"name": "ATTENDEE_INFOS", "type": "STRING", "mode": "REQUIRED"},
            {"name": "attendee_id", "type": "INT64", "mode": "NULLABLE"},
            {"name": "ticket_name", "type": "STRING", "mode": "NULLABLE"},
            {"name": "paid_at", "type": "TIMESTAMP", "mode": "NULLABLE"},
            {"name": "price", "type": "FLOAT64", "mode": "NULLABLE"},
            {"name": "currency", "type": "STRING", "mode": "NULLABLE"},
            {"name": "state", "type": "STRING", "mode": "NULLABLE"},
            {"name": "loaded_at", "type": "TIMESTAMP", "mode": "NULLABLE"},
        ])
    );
    let inserts = bodies(&server, "/insertAll").await;
    assert_eq!(inserts.len(), 2);
    assert_eq!(
        inserts[0]["rows"][0]["json"],
        json!({
            "ID": 7, "NAME": "PyCon TW",
            "ATTENDEE_INFOS": r#"{"reg_no": 1001, "secret_marker": "SECRET-INFO"}"#,
            "attendee_id": 1, "ticket_name": "Regular", "paid_at": "2024-02-27T02:13:20.000000Z",
            "price": 1200.0, "currency": "TWD", "state": "activated",
            "loaded_at": "2024-02-27T02:13:30.000000Z"
        })
    );
    assert_eq!(
        inserts[0]["rows"][0]["insertId"],
        format!("{TABLE}:7:1:{}", at(10).timestamp_micros())
    );
}

#[tokio::test]
async fn the_ledger_tables_are_created_in_the_ledger_dataset_and_409_races_are_fine() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/datasets/autopilot")))
        .respond_with(bq_error(404, "notFound", "Not found"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/datasets")))
        .respond_with(bq_error(409, "duplicate", "Already Exists: Dataset"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "{BASE}/datasets/autopilot/tables/admission_log"
        )))
        .respond_with(bq_error(404, "notFound", "Not found"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/datasets/autopilot/tables")))
        .respond_with(bq_error(409, "duplicate", "Already Exists: Table"))
        .expect(1)
        .mount(&server)
        .await;
    mount_insert_ok(&server).await;

    let store = store(&server);
    let entry = LedgerEntry {
        key: AttendeeKey {
            event_id: 7,
            attendee_id: 1,
        },
        step: Step::Loaded,
        email_hash: Some("hash".into()),
        detail: None,
        run_id: "run-1".into(),
        at: at(0),
    };
    store.append(&[entry.clone(), entry]).await.unwrap();
    let tables = bodies(&server, "/tables").await;
    assert_eq!(
        tables[0]["schema"]["fields"],
        json!([
            {"name": "event_id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "attendee_id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "step", "type": "STRING", "mode": "REQUIRED"},
            {"name": "email_hash", "type": "STRING", "mode": "NULLABLE"},
            {"name": "detail", "type": "STRING", "mode": "NULLABLE"},
            {"name": "run_id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "recorded_at", "type": "TIMESTAMP", "mode": "REQUIRED"},
            {"name": "seq", "type": "INT64", "mode": "REQUIRED"},
        ])
    );
    let insert = &bodies(&server, "/insertAll").await[0];
    let ids = insert_ids(insert);
    assert!(ids[0].starts_with("run-1:7:1:loaded:"), "{ids:?}");
    let seqs: Vec<i64> = insert["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["json"]["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs[1] > seqs[0], "seq keeps the order within a run");
    assert_ne!(ids[0], ids[1]);
    assert!(server.received_requests().await.unwrap().iter().any(|r| r
        .url
        .path()
        .ends_with("/datasets/autopilot/tables/admission_log/insertAll")));
}

#[tokio::test]
async fn a_legacy_table_gets_the_new_nullable_columns_by_a_schema_patch() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/datasets/ods")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "datasetReference": {"projectId": PROJECT, "datasetId": "ods"}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/datasets/ods/tables/{TABLE}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "tableReference": {"projectId": PROJECT, "datasetId": "ods", "tableId": TABLE},
            "schema": {"fields": [
                {"name": "ID", "type": "INTEGER", "mode": "REQUIRED"},
                {"name": "NAME", "type": "STRING", "mode": "REQUIRED"},
                {"name": "ATTENDEE_INFOS", "type": "STRING", "mode": "REQUIRED"}
            ]}
        })))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{BASE}/datasets/ods/tables/{TABLE}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(table_body(
            "ods",
            TABLE,
            ALL_COLUMNS,
        )))
        .expect(1)
        .mount(&server)
        .await;
    mount_insert_ok(&server).await;

    store(&server)
        .upsert_attendees(&[row(1, at(1))])
        .await
        .unwrap();
    let patch = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "PATCH")
        .unwrap();
    let body: Value = serde_json::from_slice(&patch.body).unwrap();
    let names: Vec<&str> = body["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ID",
            "NAME",
            "ATTENDEE_INFOS",
            "attendee_id",
            "ticket_name",
            "paid_at",
            "price",
            "currency",
            "state",
            "loaded_at"
        ]
    );
    assert_eq!(body["schema"]["fields"][0]["type"], "INTEGER", "kept as is");
    assert_eq!(body["schema"]["fields"][3]["mode"], "NULLABLE");
}

#[tokio::test]
async fn insert_all_sends_chunks_of_at_most_500_with_stable_insert_ids() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    mount_insert_ok(&server).await;
    let store = store(&server);
    let rows: Vec<AttendeeRow> = (1..=1201).map(|id| row(id, at(5))).collect();
    store.upsert_attendees(&rows).await.unwrap();
    let first = bodies(&server, "/insertAll").await;
    assert_eq!(
        first
            .iter()
            .map(|b| b["rows"].as_array().unwrap().len())
            .collect::<Vec<_>>(),
        [500, 500, 201]
    );
    store.upsert_attendees(&rows[..1]).await.unwrap();
    let all = bodies(&server, "/insertAll").await;
    assert_eq!(all.len(), 4);
    assert_eq!(
        insert_ids(&all[3])[0],
        insert_ids(&all[0])[0],
        "same row, same insertId"
    );
    let unique: std::collections::HashSet<String> = first.iter().flat_map(insert_ids).collect();
    assert_eq!(unique.len(), 1201);
}

/// Answers `insertErrors` for the rows whose `attendee_id` is in `refuse`, `times` times.
struct RefuseRows {
    refuse: Vec<i64>,
    reason: &'static str,
    stop_others: bool,
    times: usize,
    calls: Arc<AtomicUsize>,
}

impl Respond for RefuseRows {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        if call >= self.times {
            return ResponseTemplate::new(200)
                .set_body_json(json!({"kind": "bigquery#tableDataInsertAllResponse"}));
        }
        let mut errors = Vec::new();
        for (index, row) in body["rows"].as_array().unwrap().iter().enumerate() {
            let id = row["json"]["attendee_id"].as_i64().unwrap();
            // As BigQuery does without skipInvalidRows: the other rows are "stopped".
            let reason = if self.refuse.contains(&id) {
                self.reason
            } else if self.stop_others {
                "stopped"
            } else {
                continue;
            };
            errors.push(json!({"index": index, "errors": [{"reason": reason, "location": "ATTENDEE_INFOS", "message": "bad value SECRET-INFO"}]}));
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "kind": "bigquery#tableDataInsertAllResponse",
            "insertErrors": errors
        }))
    }
}

/// A BigQuery whose tables exist and whose `insertAll` refuses the rows `refuse` with
/// `reason` (stopping the others when `stop_others`) for the first `times` calls; the calls
/// counted.
async fn refusing_rows(
    refuse: Vec<i64>,
    reason: &'static str,
    stop_others: bool,
    times: usize,
) -> (MockServer, Arc<AtomicUsize>) {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    let calls = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path_regex(r"/insertAll$"))
        .respond_with(RefuseRows {
            refuse,
            reason,
            stop_others,
            times,
            calls: calls.clone(),
        })
        .mount(&server)
        .await;
    (server, calls)
}

#[tokio::test]
async fn partial_insert_errors_retry_only_the_failed_rows() {
    let (server, _) = refusing_rows(vec![2], "backendError", false, 1).await;
    let rows = vec![row(1, at(1)), row(2, at(1)), row(3, at(1))];
    store(&server).upsert_attendees(&rows).await.unwrap();
    let inserts = bodies(&server, "/insertAll").await;
    assert_eq!(inserts.len(), 2);
    assert_eq!(insert_ids(&inserts[0]).len(), 3);
    assert_eq!(
        insert_ids(&inserts[1]),
        [insert_ids(&inserts[0])[1].clone()],
        "only the refused row, with its insertId"
    );
}

#[tokio::test]
async fn rows_refused_every_time_fail_with_counts_and_reasons_never_contents() {
    let (server, calls) = refusing_rows(vec![2], "invalid", true, usize::MAX).await;
    let rows = vec![row(1, at(1)), row(2, at(1)), row(3, at(1))];
    let error = store(&server).upsert_attendees(&rows).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, StoreError::Backend(_)));
    assert!(text.contains("1 of 3 rows refused"), "{text}");
    assert!(text.contains("(reasons: invalid)"), "{text}");
    assert!(text.contains("2 rows stopped"), "{text}");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(!text.contains("PyCon"), "{text}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "first try + 2 retries");
    // The retries carry the refused row alone: the stopped ones are not resent into the
    // same failure (the next run writes them).
    let inserts = bodies(&server, "/insertAll").await;
    assert_eq!(inserts[0]["skipInvalidRows"], true);
    assert_eq!(insert_ids(&inserts[0]).len(), 3);
    for retry in &inserts[1..] {
        assert_eq!(insert_ids(retry), [insert_ids(&inserts[0])[1].clone()]);
    }
}

#[tokio::test]
async fn rows_stopped_by_a_transient_refusal_are_not_resent_but_fail_the_insert() {
    let (server, _) = refusing_rows(vec![2], "backendError", true, 1).await;
    let rows = vec![row(1, at(1)), row(2, at(1)), row(3, at(1))];
    let error = store(&server).upsert_attendees(&rows).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("2 of 3 rows were stopped"), "{text}");
    let inserts = bodies(&server, "/insertAll").await;
    assert_eq!(
        inserts.len(),
        2,
        "the first try and the refused row's retry"
    );
    assert_eq!(
        insert_ids(&inserts[1]),
        [insert_ids(&inserts[0])[1].clone()]
    );
    // The next run sends them all again (same insertIds: BigQuery keeps one of each).
    store(&server).upsert_attendees(&rows).await.unwrap();
    let inserts = bodies(&server, "/insertAll").await;
    assert_eq!(insert_ids(&inserts[2]), insert_ids(&inserts[0]));
}

#[tokio::test]
async fn quota_and_rate_limit_403s_are_retried_then_fail_clearly() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/insertAll$"))
        .respond_with(bq_error(403, "rateLimitExceeded", "Exceeded rate limits"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"/insertAll$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let store = store(&server);
    store.upsert_attendees(&[row(1, at(1))]).await.unwrap();
    assert_eq!(bodies(&server, "/insertAll").await.len(), 2);

    Mock::given(method("POST"))
        .and(path_regex(r"/insertAll$"))
        .respond_with(bq_error(403, "quotaExceeded", "Quota exceeded"))
        .mount(&server)
        .await;
    let error = store
        .upsert_attendees(&[row(2, at(2))])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("HTTP 403"), "{error}");
    assert!(error.contains("quotaExceeded"), "{error}");
    assert!(error.contains("after 3 attempts"), "{error}");
    assert_eq!(bodies(&server, "/insertAll").await.len(), 5);

    // A 403 that is not about quotas is not retried.
    let server = MockServer::start().await;
    mount_existing(&server).await;
    Mock::given(method("POST"))
        .and(path_regex(r"/insertAll$"))
        .respond_with(bq_error(403, "accessDenied", "Access Denied"))
        .mount(&server)
        .await;
    let error = self::store(&server)
        .upsert_attendees(&[row(2, at(2))])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("accessDenied"), "{error}");
    assert_eq!(bodies(&server, "/insertAll").await.len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/queries")))
        .respond_with(bq_error(503, "backendError", "Backend error"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/queries")))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_query(&server, query_answer(&["summary"], &[])).await;
    assert_eq!(store(&server).last_run(false).await.unwrap(), None);
    let queries = bodies(&server, "/queries").await;
    assert_eq!(queries.len(), 3);
    assert_eq!(
        queries[0]["requestId"], queries[2]["requestId"],
        "one query, retried"
    );
}

#[tokio::test]
async fn queries_bind_values_as_parameters() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    mount_query(&server, query_answer(&["a", "b"], &[])).await;
    let store = store(&server);
    assert!(store
        .find_attendees(&[TABLE.into()], LookupField::RegNo, 987_654_321)
        .await
        .unwrap()
        .is_empty());
    let body = &bodies(&server, "/queries").await[0];
    let sql = body["query"].as_str().unwrap();
    assert!(
        sql.contains("JSON_VALUE(ATTENDEE_INFOS, '$.reg_no') = @value"),
        "{sql}"
    );
    assert!(
        sql.contains("`test-project.ods.ods_kktix_ticket_individual_attendees`"),
        "{sql}"
    );
    assert!(!sql.contains("987654321"), "{sql}");
    assert_eq!(body["useLegacySql"], false);
    assert_eq!(body["parameterMode"], "NAMED");
    assert_eq!(
        body["queryParameters"],
        json!([{"name": "value", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "987654321"}}])
    );

    // Names that would change the SQL never reach BigQuery.
    for bad in ["x OR 1=1", "t`; DROP TABLE x; --", "1 OR 1=1"] {
        let error = store
            .find_attendees(&[bad.into()], LookupField::OrderNo, 1)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("invalid table name"), "{error}");
        assert!(store.sales(bad, 1).await.is_err());
        assert!(store.mark_cancelled(bad, &[], Utc::now()).await.is_err());
    }
    assert_eq!(bodies(&server, "/queries").await.len(), 1);
    assert!(BigQueryStore::new(
        "evil`project",
        BigQuerySettings::default(),
        BigQueryAuth::static_token("t"),
        options(&server)
    )
    .is_err());
    let bad_dataset = BigQuerySettings {
        dataset: "ods; DROP".into(),
        ..BigQuerySettings::default()
    };
    assert!(BigQueryStore::new(
        PROJECT,
        bad_dataset,
        BigQueryAuth::static_token("t"),
        options(&server)
    )
    .is_err());
}

#[tokio::test]
async fn admissions_fold_the_ledger_rows_in_order() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    let micros = |s: i64| Value::String(at(s).timestamp_micros().to_string());
    let s = |text: &str| Value::String(text.into());
    let grant = r#"{"event_name":"E","ticket_name":"T","gather":true}"#;
    mount_query(
        &server,
        query_answer(
            &[
                "attendee_id",
                "step",
                "email_hash",
                "detail",
                "recorded_at",
                "seq",
                "run_id",
            ],
            &[
                vec![
                    s("5"),
                    s("awaiting_payment"),
                    s("h5"),
                    Value::Null,
                    micros(1),
                    s("1"),
                    s("r"),
                ],
                vec![
                    s("5"),
                    s("loaded"),
                    Value::Null,
                    Value::Null,
                    micros(2),
                    s("2"),
                    s("r"),
                ],
                vec![
                    s("5"),
                    s("grant_failed"),
                    Value::Null,
                    s("Gather down"),
                    micros(3),
                    s("3"),
                    s("r"),
                ],
                vec![
                    s("5"),
                    s("granted"),
                    Value::Null,
                    s(grant),
                    micros(4),
                    s("4"),
                    s("r"),
                ],
                vec![
                    s("6"),
                    s("loaded"),
                    s("h6"),
                    Value::Null,
                    micros(2),
                    s("5"),
                    s("r"),
                ],
                vec![
                    s("6"),
                    s("cancelled"),
                    Value::Null,
                    Value::Null,
                    micros(5),
                    s("6"),
                    s("r"),
                ],
            ],
        ),
    )
    .await;
    let admissions = store(&server).admissions(42).await.unwrap();
    let five = &admissions[&5];
    assert!(five.loaded && !five.awaiting_payment);
    assert_eq!(five.granted.as_ref().unwrap().event_name, "E");
    assert_eq!(five.grant_failures.count, 0);
    assert_eq!(five.email_hash.as_deref(), Some("h5"));
    assert!(admissions[&6].cancelled);

    let body = &bodies(&server, "/queries").await[0];
    let sql = body["query"].as_str().unwrap();
    assert!(sql.contains("WHERE event_id = @event_id"), "{sql}");
    assert!(sql.contains("ORDER BY recorded_at, seq"), "{sql}");
    assert!(!sql.contains("42"), "{sql}");
    assert_eq!(
        body["queryParameters"],
        json!([{"name": "event_id", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "42"}}])
    );
    assert_eq!(body["formatOptions"], json!({"useInt64Timestamp": true}));
}

#[tokio::test]
async fn sales_map_the_latest_versions() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    let s = |text: &str| Value::String(text.into());
    mount_query(
        &server,
        query_answer(
            &["ticket_name", "paid_at", "price", "currency", "cancelled"],
            &[
                vec![
                    s("Regular"),
                    s("1.709000000E9"),
                    s("1200.0"),
                    s("TWD"),
                    s("false"),
                ],
                vec![
                    s("Student"),
                    s("1709000001000000"),
                    s("600"),
                    s("TWD"),
                    s("true"),
                ],
            ],
        ),
    )
    .await;
    let sales = store(&server).sales(TABLE, 7).await.unwrap();
    assert_eq!(sales.len(), 2);
    assert_eq!(sales[0].ticket_name, "Regular");
    assert_eq!(sales[0].paid_at, at(0));
    assert_eq!(sales[0].price, 1200.0);
    assert!(!sales[0].cancelled);
    assert_eq!(sales[1].paid_at, at(1));
    assert!(sales[1].cancelled);
    let body = &bodies(&server, "/queries").await[0];
    let sql = body["query"].as_str().unwrap();
    assert!(
        sql.contains(
            "QUALIFY ROW_NUMBER() OVER (PARTITION BY attendee_id ORDER BY loaded_at DESC) = 1"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("`test-project.autopilot.attendee_cancellations`"),
        "{sql}"
    );
    assert!(sql.contains("ID = @event_id"), "{sql}");
}

fn summary_json(run_id: &str) -> Value {
    json!({
        "run_id": run_id, "started_at": "2024-02-27T02:13:20Z", "duration_ms": 12,
        "outcome": "ok", "events": 1, "live": 2, "fetched": 2, "new_paid": 1, "pending": 0,
        "refunded": 0, "expired": 0, "skipped": [], "errors": [], "warnings": [],
        "upstream_requests": 3, "new_by_ticket": {"Regular": 1}
    })
}

#[tokio::test]
async fn runs_are_recorded_and_decoded_from_their_summary_json() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    mount_insert_ok(&server).await;
    mount_query(
        &server,
        query_answer(
            &["summary"],
            &[vec![Value::String(summary_json("run-9").to_string())]],
        ),
    )
    .await;
    let store = store(&server);
    let run = store.last_run(true).await.unwrap().unwrap();
    assert_eq!(run.run_id, "run-9");
    assert_eq!(run.new_by_ticket["Regular"], 1);
    let body = &bodies(&server, "/queries").await[0];
    assert!(body["query"]
        .as_str()
        .unwrap()
        .contains("outcome != 'failed'"));

    store.record_run(&run).await.unwrap();
    let insert = &bodies(&server, "/insertAll").await[0];
    assert_eq!(insert_ids(insert), ["run-9"]);
    assert_eq!(insert["rows"][0]["json"]["outcome"], "ok");
    let stored: Value =
        serde_json::from_str(insert["rows"][0]["json"]["summary"].as_str().unwrap()).unwrap();
    assert_eq!(stored["run_id"], "run-9");

    store.recent_runs(5).await.unwrap();
    let body = &bodies(&server, "/queries").await[1];
    assert!(body["query"].as_str().unwrap().contains("LIMIT @limit"));
    assert_eq!(body["queryParameters"][0]["parameterValue"]["value"], "5");
}

#[tokio::test]
async fn an_unfinished_query_is_polled_and_paged() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    mount_query(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "kind": "bigquery#queryResponse",
            "jobComplete": false,
            "jobReference": {"projectId": PROJECT, "jobId": "job_slow", "location": "asia-east1"}
        })),
    )
    .await;
    let event = |id: &str, seen: i64| json!({"f": [{"v": id}, {"v": "slug"}, {"v": "Name"}, {"v": null}, {"v": "2024-05-01"}, {"v": at(seen).timestamp_micros().to_string()}, {"v": "api"}]});
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/queries/job_slow")))
        .and(query_param("pageToken", "page-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "jobComplete": true, "rows": [event("2", 1)], "totalRows": "2"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/queries/job_slow")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"jobComplete": false})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/queries/job_slow")))
        .and(query_param("location", "asia-east1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "jobComplete": true, "rows": [event("1", 2)], "pageToken": "page-2", "totalRows": "2"
        })))
        .mount(&server)
        .await;
    let events = store(&server).events().await.unwrap();
    assert_eq!(
        events,
        vec![
            EventRecord {
                id: 1,
                slug: "slug".into(),
                name: "Name".into(),
                start_at: None,
                end_at: Some("2024-05-01".into()),
                last_seen: at(2),
                source: Some("api".into()),
            },
            EventRecord {
                id: 2,
                slug: "slug".into(),
                name: "Name".into(),
                start_at: None,
                end_at: Some("2024-05-01".into()),
                last_seen: at(1),
                source: Some("api".into()),
            },
        ]
    );
}

#[tokio::test]
async fn an_unexpected_answer_shape_is_a_clear_error() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    mount_query(
        &server,
        query_answer(&["attendee_id"], &[vec![Value::String("5".into())]]),
    )
    .await;
    let error = store(&server).admissions(1).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
    assert!(error.to_string().contains("1 columns"), "{error}");

    let server = MockServer::start().await;
    mount_existing(&server).await;
    let s = |text: &str| Value::String(text.into());
    mount_query(
        &server,
        query_answer(
            &["a", "b", "c", "d", "e"],
            &[vec![s("T"), s("yesterday"), s("1"), s("TWD"), s("false")]],
        ),
    )
    .await;
    let error = store(&server).sales(TABLE, 1).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
    assert!(error.to_string().contains("paid_at"), "{error}");
    assert!(!error.to_string().contains("yesterday"), "{error}");
}

#[tokio::test]
async fn every_request_carries_the_custom_token() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    mount_insert_ok(&server).await;
    mount_query(&server, query_answer(&["id"], &[])).await;
    let store = store(&server);
    store
        .mark_cancelled(
            TABLE,
            &[AttendeeKey {
                event_id: 7,
                attendee_id: 1,
            }],
            at(9),
        )
        .await
        .unwrap();
    store
        .upsert_events(&[EventRecord {
            id: 7,
            slug: "pycontw".into(),
            name: "PyCon TW".into(),
            start_at: None,
            end_at: None,
            last_seen: at(3),
            source: None,
        }])
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert!(requests.len() >= 4);
    for request in &requests {
        assert_eq!(
            request.headers.get("authorization").unwrap(),
            "Bearer test-token",
            "{}",
            request.url
        );
        assert_ne!(
            request
                .headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            Some("gzip")
        );
    }
    let inserts = bodies(&server, "/insertAll").await;
    assert_eq!(
        insert_ids(&inserts[0]),
        [format!(
            "{TABLE}:7:1:cancelled:{}",
            at(9).timestamp_micros()
        )]
    );
    assert_eq!(
        insert_ids(&inserts[1]),
        [format!("7:{}", at(3).timestamp_micros())]
    );
}

#[test]
fn credentials_come_from_a_path_or_the_key_json() {
    let key = json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "abc",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        "client_email": "svc@test-project.iam.gserviceaccount.com",
        "client_id": "1",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token"
    })
    .to_string();
    assert!(BigQueryAuth::from_credentials(&key).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key.json");
    std::fs::write(&file, &key).unwrap();
    assert!(BigQueryAuth::from_credentials(file.to_str().unwrap()).is_ok());
    let error = BigQueryAuth::from_credentials("{\"private_key\": \"TOPSECRET\"")
        .unwrap_err()
        .to_string();
    assert!(error.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{error}");
    assert!(!error.contains("TOPSECRET"), "{error}");
}

#[tokio::test]
async fn a_query_answer_listing_errors_is_a_failure_not_an_empty_result() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    mount_query(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "jobComplete": true, "schema": {"fields": []}, "rows": [], "totalRows": "0",
            "errors": [{"reason": "invalidQuery", "message": "Query execution failed"}]
        })),
    )
    .await;
    let error = store(&server)
        .last_run(false)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalidQuery"), "{error}");
}

#[tokio::test]
async fn the_pipeline_table_is_written_with_parameterised_dml_and_contacts_are_streamed_sealed() {
    let server = MockServer::start().await;
    mount_existing(&server).await;
    mount_insert_ok(&server).await;
    mount_query(&server, query_answer(&[], &[])).await;
    let store = store(&server);
    let layout = autopilot_core::store::PipelineTable {
        enabled: true,
        ..Default::default()
    };
    store
        .upsert_pipeline_rows(&layout, &[row(1, at(1)), row(2, at(1))])
        .await
        .unwrap();
    store
        .mark_pipeline_refunded(
            &layout,
            &[AttendeeKey {
                event_id: 7,
                attendee_id: 2,
            }],
        )
        .await
        .unwrap();
    let queries = bodies(&server, "/queries").await;
    let sql: Vec<&str> = queries
        .iter()
        .map(|b| b["query"].as_str().unwrap())
        .collect();
    assert!(sql[0].starts_with(
        "DELETE FROM `test-project.ods.ods_kktix_attendeeId_datetime` WHERE id = @event_id AND attendee_id IN (@a0, @a1)"
    ), "{}", sql[0]);
    assert!(sql[1].starts_with(
        "INSERT INTO `test-project.ods.ods_kktix_attendeeId_datetime` (id, name, attendee_info, refunded, attendee_id) VALUES (@event_id, @n0, @i0, FALSE, @a0)"
    ), "{}", sql[1]);
    assert!(
        sql[2].starts_with(
            "UPDATE `test-project.ods.ods_kktix_attendeeId_datetime` SET refunded = TRUE"
        ),
        "{}",
        sql[2]
    );
    for statement in &sql {
        assert!(!statement.contains("SECRET-INFO") && !statement.contains("PyCon TW"));
    }
    assert!(queries[1]["queryParameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["parameterValue"]["value"]
            .as_str()
            .is_some_and(|v| v.contains("SECRET-INFO"))));

    // A sealed contact is streamed as it is: the store never sees it in clear.
    let sealer = autopilot_core::contacts::Sealer::new(
        autopilot_core::contacts::ContactKey::from_bytes([1; 32]),
        None,
    );
    let key = AttendeeKey {
        event_id: 7,
        attendee_id: 1,
    };
    let card = autopilot_core::contacts::ContactCard {
        email: "clear@example.com".into(),
        name: "Clear Name".into(),
        ticket_name: "Regular".into(),
        checkin_code: None,
        reg_no: None,
    };
    store
        .put_contacts(&[autopilot_core::store::SealedContact {
            key,
            sealed: sealer.seal(key, &card),
            sealed_at: at(2),
        }])
        .await
        .unwrap();
    let inserts = bodies(&server, "/insertAll").await;
    let text = serde_json::to_string(&inserts).unwrap();
    assert!(text.contains(sealer.current_id()));
    assert!(!text.contains("clear@example.com") && !text.contains("Clear Name"));
}
