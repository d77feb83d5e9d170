//! kktix-poller's routes: `POST /poll` runs one reconcile now; `GET /healthz` reports the
//! last successful run without personal data or sales figures.

use chrono::Utc;
use http::StatusCode;
use serde_json::json;

use super::{error_response, json, HttpResponse};
use crate::reconcile::{Reconciler, RunOutcome};

pub(super) async fn poll(reconciler: &Reconciler) -> HttpResponse {
    match reconciler.try_run().await {
        Ok(summary) => {
            let status = match summary.outcome {
                RunOutcome::Ok | RunOutcome::Partial => StatusCode::OK,
                // The run could not reach KKTIX or the store: a gateway-style failure.
                RunOutcome::Failed => StatusCode::BAD_GATEWAY,
            };
            json(status, &summary)
        }
        Err(busy) => error_response(StatusCode::CONFLICT, &busy.to_string()),
    }
}

pub(super) async fn healthz(reconciler: &Reconciler) -> HttpResponse {
    let ledger = reconciler.ledger();
    let (last_ok, last) = match (ledger.last_run(true).await, ledger.last_run(false).await) {
        (Ok(last_ok), Ok(last)) => (last_ok, last),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "healthz cannot read the ledger");
            return error_response(StatusCode::SERVICE_UNAVAILABLE, "the ledger cannot be read");
        }
    };
    let now = Utc::now();
    json(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "last_successful_run": last_ok.map(|run| json!({
                "run_id": run.run_id,
                "started_at": run.started_at,
                "age_seconds": (now - run.started_at).num_seconds(),
                "duration_ms": run.duration_ms,
            })),
            "last_run": last.map(|run| json!({
                "run_id": run.run_id,
                "started_at": run.started_at,
                "outcome": run.outcome,
            })),
        }),
    )
}
