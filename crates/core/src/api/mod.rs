//! The gateway routes as plain `http` request → response functions, with no Lambda or server
//! types, so the function binaries and `autopilot dev` serve exactly the same behaviour.
//!
//! Checks happen at the edge, in this order: body size, route and method, authentication;
//! handlers see only requests that passed. User-facing errors are JSON `{"error": "..."}`
//! with a 4xx status; internal failures are logged in full and answered briefly.

mod access;
#[cfg(feature = "reconcile")]
mod campaigns;
#[cfg(feature = "reconcile")]
mod events;
#[cfg(feature = "reconcile")]
mod import;
mod intake;
mod invitation;
mod mail;
#[cfg(feature = "reconcile")]
mod poller;

use std::sync::Arc;

#[cfg(feature = "reconcile")]
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};

use crate::access::AccessService;
#[cfg(feature = "discord")]
use crate::discord::bot::DiscordBot;
use crate::intake::Receiver;
use crate::mail::MailService;
use crate::pii::Sensitive;
#[cfg(feature = "reconcile")]
use crate::reconcile::Reconciler;
use crate::report::ReportSettings;

pub(crate) use crate::http::json;
pub use crate::http::{
    error_response, HttpRequest, HttpResponse, MAX_ANY_BODY_BYTES, MAX_BATCH, MAX_BODY_BYTES,
    MAX_IMPORT_BYTES, MAX_WEBHOOK_BYTES,
};
pub use crate::pii::secrets_match;

/// `[health] stale_after` unless configured: three missed five-minute runs.
pub const DEFAULT_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    OpsToken,
    DiscordSignature,
    /// A secret in the path (`/kktix/webhook/{token}`): an unknown one is a plain 404.
    PathToken,
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
        path: "/discord/interactions",
        function: "discord-interactions",
        auth: Auth::DiscordSignature,
    },
    RouteSpec {
        method: "POST",
        path: "/poll",
        function: "kktix-poller",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "GET",
        path: "/events",
        function: "kktix-poller",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "GET",
        path: "/events/{slug}/status",
        function: "kktix-poller",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "GET",
        path: "/events/{slug}/report",
        function: "kktix-poller",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "GET",
        path: "/healthz",
        function: "kktix-poller",
        auth: Auth::None,
    },
    RouteSpec {
        method: "POST",
        path: "/authorize",
        function: "authorizer",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "POST",
        path: "/revoke",
        function: "authorizer",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "POST",
        path: "/mail",
        function: "mailer",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "POST",
        path: "/import",
        function: "kktix-poller",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "POST",
        path: "/revoke/confirm",
        function: "kktix-poller",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "GET",
        path: "/campaigns",
        function: "kktix-poller",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "POST",
        path: "/campaigns/{name}/send",
        function: "kktix-poller",
        auth: Auth::OpsToken,
    },
    RouteSpec {
        method: "POST",
        path: "/kktix/webhook/{token}",
        function: "receiver",
        auth: Auth::PathToken,
    },
    RouteSpec {
        method: "GET",
        path: "/invitation",
        function: "receiver",
        auth: Auth::None,
    },
    RouteSpec {
        method: "POST",
        path: "/invitation",
        function: "receiver",
        auth: Auth::None,
    },
];

/// The body limit of one route.
fn body_limit(path: &str) -> usize {
    match path {
        "/import" => MAX_IMPORT_BYTES,
        "/kktix/webhook/{token}" => MAX_WEBHOOK_BYTES,
        "/invitation" => crate::http::MAX_PAGE_FORM_BYTES,
        _ => MAX_BODY_BYTES,
    }
}

/// The handlers one deployment serves: a function binary enables its own, `autopilot dev`
/// enables all of them.
#[derive(Clone, Default)]
pub struct Api {
    ops_token: Option<Sensitive<String>>,
    #[cfg(feature = "reconcile")]
    poller: Option<Arc<Reconciler>>,
    authorizer: Option<Arc<dyn AccessService>>,
    mailer: Option<Arc<dyn MailService>>,
    #[cfg(feature = "discord")]
    discord: Option<Arc<DiscordBot>>,
    receiver: Option<Arc<Receiver>>,
    reports: ReportSettings,
    recently_ended_days: i64,
    /// `/healthz` answers 503 once the last successful scheduled run is older than this.
    stale_after: std::time::Duration,
}

impl Api {
    pub fn new(ops_token: Option<Sensitive<String>>) -> Self {
        Self {
            ops_token,
            recently_ended_days: 30,
            stale_after: DEFAULT_STALE_AFTER,
            ..Self::default()
        }
    }

    /// `[health] stale_after`, for `/healthz`.
    pub fn with_stale_after(mut self, stale_after: std::time::Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    /// Quotas and how long ended events stay listed, for the `GET /events…` routes.
    pub fn with_report_settings(
        mut self,
        reports: ReportSettings,
        recently_ended_days: i64,
    ) -> Self {
        self.reports = reports;
        self.recently_ended_days = recently_ended_days;
        self
    }

    pub fn with_authorizer(mut self, authorizer: Arc<dyn AccessService>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    #[cfg(feature = "discord")]
    pub fn with_discord(mut self, bot: Arc<DiscordBot>) -> Self {
        self.discord = Some(bot);
        self
    }

    pub fn with_mailer(mut self, mailer: Arc<dyn MailService>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    #[cfg(feature = "reconcile")]
    pub fn with_poller(mut self, reconciler: Arc<Reconciler>) -> Self {
        self.poller = Some(reconciler);
        self
    }

    /// The routes that must answer at once (the KKTIX webhook) and queue for the poller.
    pub fn with_receiver(mut self, receiver: Arc<Receiver>) -> Self {
        self.receiver = Some(receiver);
        self
    }

    pub async fn handle(&self, request: HttpRequest) -> HttpResponse {
        if request.body().len() > MAX_ANY_BODY_BYTES {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body is larger than {MAX_ANY_BODY_BYTES} bytes"),
            );
        }
        let path = request.uri().path().trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        let candidates: Vec<(&RouteSpec, Option<String>)> = ROUTES
            .iter()
            .filter(|route| self.serves(route))
            .filter_map(|route| match_path(route.path, path).map(|slug| (route, slug)))
            .collect();
        // HEAD is GET without the body (uptime monitors use it).
        let head = request.method() == Method::HEAD;
        let method = if head {
            "GET"
        } else {
            request.method().as_str()
        };
        let Some((route, slug)) = candidates.iter().find(|(route, _)| route.method == method)
        else {
            if candidates.is_empty() {
                return error_response(StatusCode::NOT_FOUND, &format!("no route {path}"));
            }
            let allowed = candidates
                .iter()
                .map(|(route, _)| route.method)
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
        let limit = body_limit(route.path);
        if request.body().len() > limit {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body is larger than {limit} bytes"),
            );
        }
        if route.auth == Auth::OpsToken {
            if let Err(reason) = self.check_ops_token(&request) {
                let mut response = error_response(StatusCode::UNAUTHORIZED, reason);
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        }
        #[cfg(feature = "discord")]
        if let ("/discord/interactions", Some(bot)) = (route.path, &self.discord) {
            return bot.handle(&request).await;
        }
        if let ("/invitation", Some(receiver)) = (route.path, &self.receiver) {
            let mut response = if method == "GET" {
                invitation::form(receiver, &request)
            } else {
                invitation::submit(receiver, &request).await
            };
            if head {
                *response.body_mut() = bytes::Bytes::new();
            }
            return response;
        }
        if let ("/kktix/webhook/{token}", Some(receiver)) = (route.path, &self.receiver) {
            return intake::webhook(
                receiver,
                slug.as_deref().unwrap_or_default(),
                request.body(),
            )
            .await;
        }
        let body = request.body();
        let slug = slug.as_deref().unwrap_or_default();
        #[cfg(not(feature = "reconcile"))]
        let _ = slug;
        #[cfg(feature = "reconcile")]
        if let (Some(reconciler), "kktix-poller") = (&self.poller, route.function) {
            return self
                .poller_route(reconciler, route.path, slug, &request, head)
                .await;
        }
        match (route.path, &self.authorizer, &self.mailer) {
            ("/authorize", Some(authorizer), _) => {
                access::authorize(authorizer.as_ref(), body).await
            }
            ("/revoke", Some(authorizer), _) => access::revoke(authorizer.as_ref(), body).await,
            ("/mail", _, Some(mailer)) => mail::mail(mailer.as_ref(), body).await,
            _ => error_response(StatusCode::NOT_FOUND, &format!("no route {path}")),
        }
    }

    /// The kktix-poller's routes.
    #[cfg(feature = "reconcile")]
    async fn poller_route(
        &self,
        reconciler: &Reconciler,
        route: &str,
        slug: &str,
        request: &HttpRequest,
        head: bool,
    ) -> HttpResponse {
        let body = request.body();
        match route {
            "/events" => events::list(reconciler, self.recently_ended_days).await,
            "/events/{slug}/status" => events::status(reconciler, slug, &self.reports).await,
            "/events/{slug}/report" => {
                events::report(reconciler, slug, request.uri().query()).await
            }
            "/poll" => poller::poll(reconciler, body).await,
            "/import" => import::import(reconciler, request).await,
            "/revoke/confirm" => poller::confirm_revoke(reconciler, body).await,
            "/campaigns" => campaigns::list(reconciler).await,
            "/campaigns/{name}/send" => campaigns::send(reconciler, slug, body).await,
            "/healthz" => {
                let mut response = poller::healthz(reconciler, self.stale_after).await;
                if head {
                    *response.body_mut() = Bytes::new();
                }
                response
            }
            _ => error_response(StatusCode::NOT_FOUND, &format!("no route {route}")),
        }
    }

    fn serves(&self, route: &RouteSpec) -> bool {
        match route.function {
            #[cfg(feature = "reconcile")]
            "kktix-poller" => self.poller.is_some(),
            "authorizer" => self.authorizer.is_some(),
            "mailer" => self.mailer.is_some(),
            #[cfg(feature = "discord")]
            "discord-interactions" => self.discord.is_some(),
            "receiver" => self.receiver.is_some(),
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

/// Whether `path` fits `pattern` (a `{…}` segment matches one non-empty segment,
/// percent-decoded); that segment, if the pattern has one.
fn match_path(pattern: &str, path: &str) -> Option<Option<String>> {
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    let mut slug = None;
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(slug),
            (Some(parameter), Some(segment))
                if parameter.starts_with('{')
                    && parameter.ends_with('}')
                    && !segment.is_empty() =>
            {
                let decoded = url::form_urlencoded::parse(format!("s={segment}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())?;
                slug = Some(decoded);
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

/// A JSON request body, or a 400 naming where it is wrong — never quoting a value, which may
/// be personal.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return BadRequest(format!(
                "request body is not valid JSON (line {} column {})",
                inner.line(),
                inner.column()
            ));
        }
        BadRequest(shape_message(&e.path().to_string(), &inner.to_string()))
    })
}

/// What is wrong with a body, by field and what was expected. serde's own message quotes the
/// offending value for a wrong type ("invalid type: string \"…\""), so only the names it
/// gives (missing and unknown fields) and the expectation are kept, never the value.
fn shape_message(path: &str, serde: &str) -> String {
    let serde = serde.split(" at line ").next().unwrap_or(serde);
    let at = |field: &str| {
        if path.is_empty() || path == "." {
            field.to_owned()
        } else if field.is_empty() {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    let quoted = |text: &str| text.split('`').nth(1).map(str::to_owned);
    if let Some(rest) = serde.strip_prefix("missing field ") {
        let field = quoted(rest).unwrap_or_default();
        return format!("request body: `{}` is missing", at(&field));
    }
    if let Some(rest) = serde.strip_prefix("unknown field ") {
        let field = quoted(rest).unwrap_or_default();
        let expected = rest
            .split_once(", expected ")
            .map(|(_, expected)| expected.to_owned())
            .unwrap_or_else(|| "no other fields".into());
        // The path already ends at the unknown field.
        let field = if path.is_empty() || path == "." {
            field
        } else {
            path.to_owned()
        };
        return format!("request body: unknown field `{field}` (expected {expected})");
    }
    if serde.starts_with("invalid type")
        || serde.starts_with("invalid value")
        || serde.starts_with("invalid length")
    {
        let expected = serde
            .rsplit_once(", expected ")
            .map(|(_, expected)| expected.to_owned())
            .unwrap_or_else(|| "another shape".into());
        return if path.is_empty() || path == "." {
            format!("request body must be {expected}")
        } else {
            format!("request body: `{path}` has the wrong type, expected {expected}")
        };
    }
    if path.is_empty() || path == "." {
        "request body does not have the expected shape".to_owned()
    } else {
        format!("request body: `{path}` does not have the expected shape")
    }
}

/// Why a request body was refused; becomes a 400.
pub(crate) struct BadRequest(String);

impl BadRequest {
    pub(crate) fn response(&self) -> HttpResponse {
        error_response(StatusCode::BAD_REQUEST, &self.0)
    }
}

/// A method the router knows, for adapters that build requests.
pub fn method(name: &str) -> Option<Method> {
    Method::from_bytes(name.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_patterns() {
        assert_eq!(match_path("/events", "/events"), Some(None));
        assert_eq!(
            match_path("/events/{slug}/status", "/events/pycon-2026/status"),
            Some(Some("pycon-2026".into()))
        );
        assert_eq!(
            match_path("/events/{slug}/status", "/events/a%20b/status"),
            Some(Some("a b".into()))
        );
        assert_eq!(match_path("/events/{slug}/status", "/events//status"), None);
        assert_eq!(
            match_path("/events/{slug}/status", "/events/x/report"),
            None
        );
        assert_eq!(match_path("/events", "/events/x"), None);
    }

    #[test]
    fn body_errors_name_the_field_and_the_expectation_never_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            admissions: Vec<Entry>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Entry {
            event_id: u64,
        }
        let message = |body: &str| parse_json::<Body>(body.as_bytes()).unwrap_err().0;
        assert_eq!(message("{}"), "request body: `admissions` is missing");
        assert_eq!(
            message(r#"{"admissions": [], "extra": 1}"#),
            "request body: unknown field `extra` (expected `admissions`)"
        );
        let wrong = message(r#"{"admissions": [{"event_id": "xxx@gmail.com"}]}"#);
        assert_eq!(
            wrong,
            "request body: `admissions[0].event_id` has the wrong type, expected u64"
        );
        assert!(!wrong.contains("xxx"));
        assert_eq!(
            message(r#"{"admissions": [{}]}"#),
            "request body: `admissions[0].event_id` is missing"
        );
        assert_eq!(message("\"text\""), "request body must be struct Body");
        assert!(message("{").starts_with("request body is not valid JSON"));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(secrets_match("s3cret", "s3cret"));
        assert!(!secrets_match("s3cret ", "s3cret"));
        assert!(!secrets_match("", "s3cret"));
    }
}
