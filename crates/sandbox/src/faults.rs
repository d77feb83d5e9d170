//! Seeded fault injection for the sandbox's HTTP API (chaos tests).
//!
//! When a [`FaultConfig`] is set with [`crate::Sandbox::set_faults`], every request first
//! draws from a seeded RNG: with the probability configured for its kind of request it is
//! answered with a fault instead of (or, for slow answers, before) the real answer. Without a
//! configuration the layer passes every request straight through, so the sandbox behaves
//! exactly as before.
//!
//! A server-side connection drop is not among the kinds: axum 0.8 has no per-request way to
//! abort a connection without an extra crate, and a short body under a longer
//! `Content-Length` trips a debug assertion in hyper. Dropped connections are exercised from
//! the client side instead (the crash test kills the poller mid-request).
//!
//! The draws are deterministic per seed for a given order of requests; concurrent requests
//! may arrive in a different order from run to run, so a seed fixes the fault *mix*, not the
//! exact request each fault lands on.

use std::time::Duration;

use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Sandbox;

/// The kinds of KKTIX request, each with its own fault probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `GET /api/v2/hosting_events`
    HostingEvents,
    /// `GET .../attendance_books`
    AttendanceBooks,
    /// `GET .../attendance_books/{book_id}`
    AttendanceBook,
    /// `GET .../attendees/{attendee_id}`
    Attendee,
    /// Anything else.
    Other,
}

impl RequestKind {
    fn of(path: &str) -> Self {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            ["api", "v2", "hosting_events"] => Self::HostingEvents,
            ["api", "v2", "hosting_events", _, "attendance_books"] => Self::AttendanceBooks,
            ["api", "v2", "hosting_events", _, "attendance_books", _] => Self::AttendanceBook,
            ["api", "v2", "hosting_events", _, "attendees", _] => Self::Attendee,
            _ => Self::Other,
        }
    }
}

/// How a faulty answer is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// `500 Internal Server Error` with a JSON error body.
    ServerError,
    /// `429 Too Many Requests` with `Retry-After: 0` or `1`.
    RateLimited,
    /// The real answer, after a delay drawn from [`FaultConfig::slow`].
    Slow,
    /// The real answer after [`FaultConfig::stall`], meant to exceed the client's timeout.
    Timeout,
    /// A `200` JSON body cut in the middle (the declared length matches what is sent).
    Truncated,
    /// A `200` whose body is not JSON at all.
    Malformed,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::ServerError,
        FaultKind::RateLimited,
        FaultKind::Slow,
        FaultKind::Timeout,
        FaultKind::Truncated,
        FaultKind::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerError => "500",
            Self::RateLimited => "429",
            Self::Slow => "slow",
            Self::Timeout => "timeout",
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
        }
    }
}

/// What to inject and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    pub seed: u64,
    /// Probability that a `hosting_events` request is faulted.
    pub hosting_events: f64,
    /// Probability for the attendance-book list and the book itself.
    pub books: f64,
    /// Probability for an attendee detail request.
    pub attendee: f64,
    /// Relative weights of the fault kinds (missing kinds are never drawn).
    pub weights: Vec<(FaultKind, u32)>,
    /// Delay range of a [`FaultKind::Slow`] answer, in milliseconds (inclusive).
    pub slow: (u64, u64),
    /// Delay of a [`FaultKind::Timeout`] answer.
    pub stall: Duration,
    /// Largest `Retry-After` (seconds) a 429 announces; a quarter of the 429s announce it,
    /// the rest `0`.
    pub max_retry_after: u64,
}

impl FaultConfig {
    /// Every kind with equal weight, probability `p` for every kind of request.
    pub fn uniform(seed: u64, p: f64) -> Self {
        Self {
            seed,
            hosting_events: p,
            books: p,
            attendee: p,
            weights: FaultKind::ALL.iter().map(|k| (*k, 1)).collect(),
            slow: (20, 200),
            stall: Duration::from_secs(1),
            max_retry_after: 1,
        }
    }
}

/// Faults injected so far, by kind, and requests seen by the layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultStats {
    pub requests: u64,
    pub injected: std::collections::BTreeMap<FaultKind, u64>,
}

impl FaultStats {
    pub fn total(&self) -> u64 {
        self.injected.values().sum()
    }
}

#[derive(Debug)]
pub(crate) struct Injector {
    config: FaultConfig,
    rng: StdRng,
    stats: FaultStats,
}

/// One decision: what to do with a request.
enum Plan {
    Pass,
    Delay(Duration),
    Answer(Response),
}

impl Injector {
    pub(crate) fn new(config: FaultConfig) -> Self {
        Self {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            stats: FaultStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> FaultStats {
        self.stats.clone()
    }

    fn plan(&mut self, kind: RequestKind) -> Plan {
        self.stats.requests += 1;
        let p = match kind {
            RequestKind::HostingEvents => self.config.hosting_events,
            RequestKind::AttendanceBooks | RequestKind::AttendanceBook => self.config.books,
            RequestKind::Attendee => self.config.attendee,
            RequestKind::Other => 0.0,
        };
        let p = if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if p <= 0.0 || !self.rng.random_bool(p) {
            return Plan::Pass;
        }
        let total: u32 = self.config.weights.iter().map(|(_, w)| *w).sum();
        if total == 0 {
            return Plan::Pass;
        }
        let mut pick = self.rng.random_range(0..total);
        let mut fault = FaultKind::ServerError;
        for (kind, weight) in &self.config.weights {
            if pick < *weight {
                fault = *kind;
                break;
            }
            pick -= weight;
        }
        *self.stats.injected.entry(fault).or_default() += 1;
        match fault {
            FaultKind::ServerError => Plan::Answer(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"error":"internal server error"}"#,
                )
                    .into_response(),
            ),
            FaultKind::RateLimited => {
                let wait = if self.rng.random_bool(0.25) {
                    self.config.max_retry_after
                } else {
                    0
                };
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"error":"rate limited"}"#,
                )
                    .into_response();
                if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                Plan::Answer(response)
            }
            FaultKind::Slow => {
                let (low, high) = self.config.slow;
                let ms = self.rng.random_range(low.min(high)..=high.max(low));
                Plan::Delay(Duration::from_millis(ms))
            }
            FaultKind::Timeout => Plan::Delay(self.config.stall),
            FaultKind::Truncated => Plan::Answer(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"data":[{"id":1,"name":"cut he"#,
                )
                    .into_response(),
            ),
            FaultKind::Malformed => Plan::Answer(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    "<html><body>502 Bad Gateway</body></html>",
                )
                    .into_response(),
            ),
        }
    }
}

/// The middleware: no configuration, no effect.
pub(crate) async fn inject(
    AxState(sandbox): AxState<Sandbox>,
    request: Request,
    next: Next,
) -> Response {
    let plan = {
        let mut state = sandbox.lock();
        match state.faults.as_mut() {
            None => Plan::Pass,
            Some(injector) => injector.plan(RequestKind::of(request.uri().path())),
        }
    };
    match plan {
        Plan::Pass => next.run(request).await,
        Plan::Delay(wait) => {
            tokio::time::sleep(wait).await;
            next.run(request).await
        }
        Plan::Answer(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_paths() {
        assert_eq!(
            RequestKind::of("/api/v2/hosting_events"),
            RequestKind::HostingEvents
        );
        assert_eq!(
            RequestKind::of("/api/v2/hosting_events/1/attendance_books"),
            RequestKind::AttendanceBooks
        );
        assert_eq!(
            RequestKind::of("/api/v2/hosting_events/1/attendance_books/13"),
            RequestKind::AttendanceBook
        );
        assert_eq!(
            RequestKind::of("/api/v2/hosting_events/1/attendees/2"),
            RequestKind::Attendee
        );
        assert_eq!(RequestKind::of("/nope"), RequestKind::Other);
    }

    #[test]
    fn same_seed_same_faults() {
        let draw = || {
            let mut injector = Injector::new(FaultConfig::uniform(7, 0.5));
            (0..200)
                .map(|_| !matches!(injector.plan(RequestKind::Attendee), Plan::Pass))
                .collect::<Vec<_>>()
        };
        let first = draw();
        assert_eq!(first, draw());
        let faulted = first.iter().filter(|f| **f).count();
        assert!((60..140).contains(&faulted), "{faulted}");
    }
}
