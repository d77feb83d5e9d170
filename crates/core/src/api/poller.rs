//! kktix-poller's routes: `POST /poll` runs one reconcile now; `GET /healthz` reports the
//! last successful run without personal data or sales figures.

use chrono::Utc;
use http::StatusCode;
use serde_json::json;

use super::{error_response, json, parse_json, HttpResponse};
use crate::model::PollRequest;
use crate::model::RunOutcome;
use crate::reconcile::Reconciler;

/// An empty body (or `{}`) runs one reconcile; `{"resend": "REFERENCE"}` resends one
/// invitation instead — both are the poller's, the ledger's only writer.
pub(super) async fn poll(reconciler: &Reconciler, body: &[u8]) -> HttpResponse {
    let request: PollRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PollRequest::default()
    } else {
        match parse_json(body) {
            Ok(request) => request,
            Err(bad) => return bad.response(),
        }
    };
    if let Some(reference) = request.resend {
        return resend(reconciler, &reference).await;
    }
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

/// `{"event": "ID or slug"}`: an operator confirms the revoke held for that event.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    event: String,
}

pub(super) async fn confirm_revoke(reconciler: &Reconciler, body: &[u8]) -> HttpResponse {
    let request: ConfirmRequest = match parse_json(body) {
        Ok(request) => request,
        Err(bad) => return bad.response(),
    };
    match reconciler.confirm_revoke(&request.event).await {
        Ok(summary) => {
            let status = match summary.outcome {
                RunOutcome::Ok | RunOutcome::Partial => StatusCode::OK,
                RunOutcome::Failed => StatusCode::BAD_GATEWAY,
            };
            json(status, &summary)
        }
        Err(error) => error_response(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::CONFLICT),
            &error.to_string(),
        ),
    }
}

async fn resend(reconciler: &Reconciler, reference: &str) -> HttpResponse {
    let outcome = match reconciler.find_attendee(reference).await {
        Ok(key) => reconciler.resend(key).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(report) => json(StatusCode::OK, &report),
        Err(error) => error_response(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY),
            &error.to_string(),
        ),
    }
}

/// 200 while the last successful scheduled run is younger than `stale_after`, else 503: an
/// uptime monitor notices a stopped schedule, a broken deploy or a crash at start-up, which
/// no run can report itself. Counts and times only.
pub(super) async fn healthz(
    reconciler: &Reconciler,
    stale_after: std::time::Duration,
) -> HttpResponse {
    let ledger = reconciler.ledger();
    let (last_ok, last) = match (ledger.last_run(true).await, ledger.last_run(false).await) {
        (Ok(last_ok), Ok(last)) => (last_ok, last),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "healthz cannot read the ledger");
            return error_response(StatusCode::SERVICE_UNAVAILABLE, "the ledger cannot be read");
        }
    };
    let now = Utc::now();
    let stale_seconds = i64::try_from(stale_after.as_secs()).unwrap_or(i64::MAX);
    let age = last_ok
        .as_ref()
        .map(|run| (now - run.started_at).num_seconds());
    let (status, verdict, reason) = match age {
        Some(age) if age <= stale_seconds => (StatusCode::OK, "ok", None),
        Some(age) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "stale",
            Some(format!(
                "the last successful run started {age} s ago, longer than stale_after ({stale_seconds} s)"
            )),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "stale",
            Some("no scheduled run has succeeded yet".to_owned()),
        ),
    };
    let mut body = json!({
        "status": verdict,
        "stale_after_seconds": stale_seconds,
        "last_successful_run": last_ok.map(|run| json!({
            "run_id": run.run_id,
            "started_at": run.started_at,
            "age_seconds": (now - run.started_at).num_seconds(),
            "duration_ms": run.duration_ms,
            "outcome": run.outcome,
        })),
        "last_run": last.map(|run| json!({
            "run_id": run.run_id,
            "kind": run.kind,
            "started_at": run.started_at,
            "outcome": run.outcome,
            "failing": run.failing,
        })),
    });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    json(status, &body)
}
