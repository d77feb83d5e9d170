//! The plain HTTP types every handler speaks (no Lambda or server types), the JSON answer
//! helpers and the body limits. A leaf: handlers in `api` and `discord` both use it, so they
//! need not use each other.

use bytes::Bytes;
use http::{header, StatusCode};
use serde::Serialize;

pub type HttpRequest = http::Request<Bytes>;

/// The client's address, as the adapter knows it (API Gateway's `sourceIp`, the local
/// server's peer), put in the request's extensions. Without it the rightmost
/// `X-Forwarded-For` entry (the one the gateway appended) is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub String);

/// The attendee page's form is a few hundred bytes: anything much larger is refused (413).
pub const MAX_PAGE_FORM_BYTES: usize = 8 * 1024;
pub type HttpResponse = http::Response<Bytes>;

/// Larger request bodies are refused with 413 before any parsing: room for a batch of
/// [`MAX_BATCH`] admissions or invitations.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `POST /import` carries two CSV exports: up to what a Lambda invocation may carry (6 MB,
/// base64 included); larger exports go through `autopilot import` in process.
pub const MAX_IMPORT_BYTES: usize = 4 * 1024 * 1024;

/// The largest body any route accepts; the local server reads no more than this.
pub const MAX_ANY_BODY_BYTES: usize = MAX_IMPORT_BYTES;

/// A KKTIX webhook batch, sealed and base64-encoded, must fit one queue message (1 MiB).
pub const MAX_WEBHOOK_BYTES: usize = 512 * 1024;

/// Admissions, revocations or invitations per request, as the poller batches them.
pub const MAX_BATCH: usize = 1000;

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => http::Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(bytes))
            .unwrap_or_else(|_| plain_500()),
        Err(e) => {
            tracing::error!(error = %e, "could not encode a response");
            plain_500()
        }
    }
}

pub fn error_response(status: StatusCode, message: &str) -> HttpResponse {
    json(status, &serde_json::json!({ "error": message }))
}

fn plain_500() -> HttpResponse {
    let mut response = http::Response::new(Bytes::from_static(br#"{"error":"internal error"}"#));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
