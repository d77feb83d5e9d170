//! The kktix-poller Lambda: an EventBridge Scheduler invocation and `POST /poll` both run one
//! reconcile; `GET /healthz` reports the last successful run. This file only adapts Lambda
//! events to `autopilot_core`; all behaviour lives there.

use std::sync::Arc;

use autopilot_core::api::{Api, HttpRequest, HttpResponse};
use autopilot_core::aws::DrainEvent;
use autopilot_core::reconcile::{Reconciler, RunOutcome};
use bytes::Bytes;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use lambda_http::request::{LambdaRequest, RequestOrigin};
use lambda_http::Body;
use serde_json::Value;

/// Clients and stores, built once per Lambda container and shared by every invocation.
#[derive(Clone)]
pub struct Poller {
    pub api: Api,
    pub reconciler: Arc<Reconciler>,
}

/// What the runtime hands us: an API Gateway request or a scheduler's payload.
pub async fn handle_event(poller: &Poller, payload: Value) -> Result<Value, lambda_http::Error> {
    if is_http_event(&payload) {
        let request: LambdaRequest = serde_json::from_value(payload)?;
        let origin = request.request_origin();
        let request: lambda_http::Request = request.into();
        let response = poller.api.handle(to_core_request(request)).await;
        return Ok(to_gateway_response(&origin, response)?);
    }
    // The receiver's wake-up: drain the intake queue now (webhook batches just accepted).
    if DrainEvent::matches(&payload) {
        let Some(summary) = poller.reconciler.drain().await else {
            return Ok(serde_json::json!({"drained": 0}));
        };
        return Ok(serde_json::to_value(&summary)?);
    }
    // Anything else is the schedule (EventBridge Scheduler sends its configured input).
    // Its report and metrics are logged by the run observer main.rs installs.
    let summary = poller.reconciler.run().await;
    if summary.outcome == RunOutcome::Failed {
        // Failing the invocation makes the failure visible in Lambda's error metrics.
        return Err(format!(
            "reconcile run {} failed: {}",
            summary.run_id,
            summary.errors.join("; ")
        )
        .into());
    }
    Ok(serde_json::to_value(&summary)?)
}

/// What the poller logs after every run, whatever started it: the report (the summary line
/// and each failure, once) and one EMF metrics line.
pub fn log_run(summary: &autopilot_core::reconcile::RunSummary, namespace: &str) {
    for line in summary.report_lines() {
        println!("{line}");
    }
    println!(
        "{}",
        autopilot_core::metrics::emf_line(summary, namespace, chrono::Utc::now())
    );
}

fn is_http_event(payload: &Value) -> bool {
    payload.get("requestContext").is_some() && payload.get("headers").is_some()
}

pub fn to_core_request(request: lambda_http::Request) -> HttpRequest {
    let (parts, body) = request.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(binary) => Bytes::from(binary),
        _ => Bytes::new(),
    };
    HttpRequest::from_parts(parts, bytes)
}

fn to_gateway_response(
    origin: &RequestOrigin,
    response: HttpResponse,
) -> Result<Value, serde_json::Error> {
    let (parts, body) = response.into_parts();
    let textual = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| {
            kind.starts_with("text/") || kind.contains("json") || kind.contains("csv")
        });
    let (body, is_base64_encoded) = match String::from_utf8(body.to_vec()) {
        Ok(text) if textual || body.is_empty() => (Some(Body::Text(text)), false),
        _ => (Some(Body::Binary(body.to_vec())), true),
    };
    match origin {
        RequestOrigin::ApiGatewayV1 => {
            let mut gateway = ApiGatewayProxyResponse::default();
            gateway.status_code = i64::from(parts.status.as_u16());
            gateway.multi_value_headers = parts.headers;
            gateway.body = body;
            gateway.is_base64_encoded = is_base64_encoded;
            serde_json::to_value(gateway)
        }
        _ => {
            let mut gateway = ApiGatewayV2httpResponse::default();
            gateway.status_code = i64::from(parts.status.as_u16());
            gateway.headers = parts.headers;
            gateway.body = body;
            gateway.is_base64_encoded = is_base64_encoded;
            serde_json::to_value(gateway)
        }
    }
}
