//! Streaming inserts (`tabledata.insertAll`, chunked, `insertErrors` handled row by row) and
//! parameterised queries (all pages, bounded by the query timeout).

use super::*;

impl BigQueryStore {
    /// Streams rows in chunks; retries a chunk on transient failures (its insertIds make
    /// that safe). With `skipInvalidRows` the valid rows of a request land even when some
    /// are refused; after a partial `insertErrors` only the rows refused with a reason of
    /// their own are resent. Rows marked `stopped` (refused only because another row was,
    /// which BigQuery does without `skipInvalidRows`) are not resent into the same failure:
    /// they make the insert fail so the next run, level-triggered, writes them again.
    pub(super) async fn insert(
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
    pub(super) async fn query<'a>(
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
}

/// The tail of an insert failure that also left `stopped` rows out.
fn stopped_note(stopped: usize) -> String {
    if stopped == 0 {
        String::new()
    } else {
        format!("; {stopped} rows stopped by them are left for the next run")
    }
}
