//! The gateway routes as plain `http` request → response functions, with no Lambda or server
//! types, so the function binaries and `autopilot dev` serve exactly the same behaviour.
//!
//! Checks happen at the edge, in this order: body size, route and method, authentication;
//! handlers see only requests that passed. User-facing errors are JSON `{"error": "..."}`
//! with a 4xx status; internal failures are logged in full and answered briefly.

mod poller;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::pii::Sensitive;
use crate::reconcile::Reconciler;

pub type HttpRequest = http::Request<Bytes>;
pub type HttpResponse = http::Response<Bytes>;

/// Larger request bodies are refused with 413 before any parsing.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    OpsToken,
    DiscordSignature,
}

/// One gateway route, as DESIGN.md lists it. `openapi.yaml` is checked against this table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub function: &'static str,
    pub auth: Auth,
}

pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: "POST",
        path: "/poll",
        function: "kktix-poller",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "GET",
        path: "/healthz",
        function: "kktix-poller",
        auth: Auth::None,
    },
];

/// The handlers one deployment serves: a function binary enables its own, `autopilot dev`
/// enables all of them.
#[derive(Clone, Default)]
pub struct Api {
    ops_token: Option<Sensitive<String>>,
    poller: Option<Arc<Reconciler>>,
}

impl Api {
    pub fn new(ops_token: Option<Sensitive<String>>) -> Self {
        Self {
            ops_token,
            poller: None,
        }
    }

    pub fn with_poller(mut self, reconciler: Arc<Reconciler>) -> Self {
        self.poller = Some(reconciler);
        self
    }

    pub async fn handle(&self, request: HttpRequest) -> HttpResponse {
        if request.body().len() > MAX_BODY_BYTES {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        let path = request.uri().path().trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        let candidates: Vec<&RouteSpec> = ROUTES
            .iter()
            .filter(|route| route.path == path && self.serves(route))
            .collect();
        let Some(route) = candidates
            .iter()
            .find(|route| route.method == request.method().as_str())
        else {
            if candidates.is_empty() {
                return error_response(StatusCode::NOT_FOUND, &format!("no route {path}"));
            }
            let allowed = candidates
                .iter()
                .map(|route| route.method)
                .collect::<Vec<_>>()
                .join(", ");
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{path} accepts {allowed}"),
            );
            if let Ok(value) = HeaderValue::from_str(&allowed) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        };
        if route.auth == Auth::OpsToken {
            if let Err(reason) = self.check_ops_token(&request) {
                let mut response = error_response(StatusCode::UNAUTHORIZED, reason);
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        }
        match (route.method, route.path, &self.poller) {
            ("POST", "/poll", Some(reconciler)) => poller::poll(reconciler).await,
            ("GET", "/healthz", Some(reconciler)) => poller::healthz(reconciler).await,
            _ => error_response(StatusCode::NOT_FOUND, &format!("no route {path}")),
        }
    }

    fn serves(&self, route: &RouteSpec) -> bool {
        match route.function {
            "kktix-poller" => self.poller.is_some(),
            _ => false,
        }
    }

    /// Why the request may not use an ops route, if it may not.
    fn check_ops_token(&self, request: &HttpRequest) -> Result<(), &'static str> {
        let Some(expected) = &self.ops_token else {
            return Err("this deployment has no OPS_TOKEN configured");
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let Some(presented) = presented else {
            return Err("missing Authorization: Bearer <OPS_TOKEN>");
        };
        if secrets_match(presented, expected.expose()) {
            Ok(())
        } else {
            Err("invalid ops token")
        }
    }
}

/// Constant time in the secret's contents and length: both sides are hashed first, so the
/// comparison always covers 32 bytes.
pub fn secrets_match(presented: &str, expected: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    presented.ct_eq(&expected).into()
}

pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
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

/// A method the router knows, for adapters that build requests.
pub fn method(name: &str) -> Option<Method> {
    Method::from_bytes(name.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content() {
        assert!(secrets_match("s3cret", "s3cret"));
        assert!(!secrets_match("s3cret ", "s3cret"));
        assert!(!secrets_match("", "s3cret"));
    }
}
