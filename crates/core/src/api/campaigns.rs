//! kktix-poller's campaign routes: `GET /campaigns` (each campaign's audience, sent, pending,
//! schedule) and `POST /campaigns/{name}/send` (an operator's send; `{"dry_run": true}`
//! counts and sends nothing). Counts only, never addresses.

use http::StatusCode;
use serde_json::json;

use super::{error_response, json, parse_json, HttpResponse};
use crate::reconcile::Reconciler;

/// `POST /campaigns/{name}/send`'s optional body.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    #[serde(default)]
    dry_run: bool,
}

pub(super) async fn list(reconciler: &Reconciler) -> HttpResponse {
    match reconciler.campaign_list().await {
        Ok(campaigns) => json(StatusCode::OK, &json!({ "campaigns": campaigns })),
        Err(error) => error_response(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            &error.to_string(),
        ),
    }
}

pub(super) async fn send(reconciler: &Reconciler, name: &str, body: &[u8]) -> HttpResponse {
    let request: SendRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SendRequest::default()
    } else {
        match parse_json(body) {
            Ok(request) => request,
            Err(bad) => return bad.response(),
        }
    };
    match reconciler.campaign_send(name, request.dry_run, None).await {
        // Nothing went out and the provider or the store failed: a gateway-style failure,
        // with the report (what is left is sent by the next send, never twice).
        Ok(report) if report.sent == 0 && report.to_send > 0 && !report.errors.is_empty() => {
            json(StatusCode::BAD_GATEWAY, &report)
        }
        Ok(report) => json(StatusCode::OK, &report),
        Err(error) => error_response(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            &error.to_string(),
        ),
    }
}
