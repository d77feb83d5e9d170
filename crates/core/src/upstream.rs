//! One way to talk to every upstream (KKTIX, Gather, Mailgun, Klaviyo, Discord): a timeout on
//! every request, retries with exponential backoff and full jitter on 429, 5xx and transport
//! failures, and `Retry-After` honoured when the upstream names a wait.
//!
//! Errors carry the upstream's name, the status and a short reason, never a request or
//! response body: bodies may hold personal data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::{RequestBuilder, StatusCode};

/// The transport failure that proves the request never reached the upstream.
const CONNECT_FAILED: &str = "connection failed";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    #[error("{upstream} rejected our credentials (HTTP {status})")]
    Unauthorized { upstream: &'static str, status: u16 },
    #[error("{upstream} has no such resource: {what}")]
    NotFound {
        upstream: &'static str,
        what: String,
    },
    #[error("{upstream} is rate limiting us{}", retry_hint(.retry_after))]
    RateLimited {
        upstream: &'static str,
        retry_after: Option<Duration>,
    },
    #[error("{upstream} failed with HTTP {status}")]
    Server { upstream: &'static str, status: u16 },
    #[error("{upstream} answered HTTP {status}")]
    Rejected { upstream: &'static str, status: u16 },
    #[error("{upstream} did not answer in time")]
    Timeout { upstream: &'static str },
    #[error("could not reach {upstream}: {reason}")]
    Transport {
        upstream: &'static str,
        reason: String,
    },
    #[error("{upstream} sent a body we could not read: {reason}")]
    Malformed {
        upstream: &'static str,
        reason: String,
    },
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(" (asked to wait {}s)", wait.as_secs()),
        None => String::new(),
    }
}

impl UpstreamError {
    pub fn upstream(&self) -> &'static str {
        match self {
            Self::Unauthorized { upstream, .. }
            | Self::NotFound { upstream, .. }
            | Self::RateLimited { upstream, .. }
            | Self::Server { upstream, .. }
            | Self::Rejected { upstream, .. }
            | Self::Timeout { upstream }
            | Self::Transport { upstream, .. }
            | Self::Malformed { upstream, .. } => upstream,
        }
    }

    /// The request may have been processed although no answer came back (a timeout, or a
    /// connection lost after sending). Retrying such a request is only safe when the upstream
    /// call is idempotent.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Transport { reason, .. } => reason != CONNECT_FAILED,
            _ => false,
        }
    }

    /// Worth another attempt later: the fault is on the wire or the upstream's side.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Transport { .. }
        )
    }
}

/// Timeouts after which a request is given up, whatever `max_attempts` allows.
pub const MAX_TIMEOUTS: u32 = 2;

/// How hard to try before giving up on one request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited out: the run moves on and the level-
    /// triggered loop picks the work up next time.
    pub max_retry_after: Duration,
    /// Retry requests whose outcome is unknown ([`UpstreamError::is_ambiguous`]). Off for
    /// calls that are not idempotent, such as sending mail through Mailgun.
    pub retry_ambiguous: bool,
    /// Retry 5xx answers. Off for Mailgun's sends: a 5xx can come back for a batch Mailgun did
    /// queue, so it is as ambiguous as a timeout.
    pub retry_server_errors: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            retry_ambiguous: true,
            retry_server_errors: true,
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a uniform wait in `[0, min(max, base·2^retry)]`, so many clients that failed
    /// together do not come back together.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// Timeout and retry settings of one upstream client.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// The HTTP client every upstream uses: request and connect timeouts, our user agent, and no
/// redirects (none of our upstreams redirect API calls, and a redirect could carry a request
/// — or hand back an answer — from another host).
pub fn build_client(
    upstream: &'static str,
    timeout: Duration,
) -> Result<reqwest::Client, UpstreamError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("kktix-autopilot/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| UpstreamError::Transport {
            upstream,
            reason: format!("cannot build HTTP client: {e}"),
        })
}

/// Joins `path` onto a configured base URL, keeping any path prefix the base has.
pub fn join_url(upstream: &'static str, base: &str, path: &str) -> Result<url::Url, UpstreamError> {
    let mut url = url::Url::parse(base).map_err(|e| UpstreamError::Transport {
        upstream,
        reason: format!("invalid base URL: {e}"),
    })?;
    let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    Ok(url)
}

/// A response that arrived whole with a 2xx status.
#[derive(Debug)]
pub struct Success {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Sends requests for one upstream with the policy above and counts every attempt.
#[derive(Debug)]
pub struct Upstream {
    pub name: &'static str,
    pub policy: RetryPolicy,
    attempts: AtomicU64,
    /// When the upstream said its rate-limit bucket is empty (`X-RateLimit-Remaining: 0`),
    /// the instant it refills (`X-RateLimit-Reset-After`): the next request waits for it
    /// instead of drawing a 429.
    refill_at: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Upstream {
    pub fn new(name: &'static str, policy: RetryPolicy) -> Self {
        Self {
            name,
            policy,
            attempts: AtomicU64::new(0),
            refill_at: std::sync::Mutex::new(None),
        }
    }

    /// HTTP requests sent so far, retries included.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Sends the request built by `build` until it succeeds, fails for good, or the policy's
    /// attempts run out. `what` names the resource for a 404 message.
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Success, UpstreamError> {
        let mut attempt = 0;
        let mut timeouts = 0;
        loop {
            attempt += 1;
            self.wait_for_refill().await;
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let outcome = self.attempt_once(what, build()).await;
            let error = match outcome {
                Ok(success) => return Ok(success),
                Err(error) => error,
            };
            let unsafe_to_repeat = (error.is_ambiguous() && !self.policy.retry_ambiguous)
                || (matches!(error, UpstreamError::Server { .. })
                    && !self.policy.retry_server_errors);
            // An upstream that hung twice will not answer a third time within a run's
            // patience: a hung KKTIX fails in two timeouts, not four.
            if matches!(error, UpstreamError::Timeout { .. }) {
                timeouts += 1;
            }
            if !error.is_transient()
                || unsafe_to_repeat
                || attempt >= self.policy.max_attempts
                || timeouts >= MAX_TIMEOUTS
            {
                return Err(error);
            }
            let wait = match &error {
                UpstreamError::RateLimited {
                    retry_after: Some(wait),
                    ..
                } => {
                    if *wait > self.policy.max_retry_after {
                        return Err(error);
                    }
                    *wait
                }
                _ => self.policy.backoff(attempt - 1),
            };
            tracing::debug!(upstream = self.name, attempt, wait_ms = wait.as_millis() as u64, %error, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt_once(
        &self,
        what: &str,
        request: RequestBuilder,
    ) -> Result<Success, UpstreamError> {
        let upstream = self.name;
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        self.note_rate_limit(response.headers());
        if status.is_success() {
            let body = response
                .bytes()
                .await
                .map_err(|e| self.transport_error(&e))?;
            return Ok(Success { status, body });
        }
        // Drain the body so the connection can be reused; its contents are never reported.
        let body = response.bytes().await.unwrap_or_default();
        Err(match status.as_u16() {
            401 | 403 => UpstreamError::Unauthorized {
                upstream,
                status: status.as_u16(),
            },
            404 => UpstreamError::NotFound {
                upstream,
                what: what.to_owned(),
            },
            429 => UpstreamError::RateLimited {
                upstream,
                retry_after: retry_after.or_else(|| json_retry_after(&body)),
            },
            408 => UpstreamError::Timeout { upstream },
            500..=599 => UpstreamError::Server {
                upstream,
                status: status.as_u16(),
            },
            other => UpstreamError::Rejected {
                upstream,
                status: other,
            },
        })
    }

    /// Waits until an emptied rate-limit bucket refills (Discord's `X-RateLimit-*`).
    async fn wait_for_refill(&self) {
        let refill_at = *self.refill_at.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = refill_at {
            if at > tokio::time::Instant::now() {
                tracing::debug!(
                    upstream = self.name,
                    "rate-limit bucket empty, waiting for it"
                );
                tokio::time::sleep_until(at).await;
            }
        }
    }

    /// Remembers an empty bucket's refill time; a bucket with requests left clears it. A
    /// refill further off than the policy's patience is capped there: the 429 that may follow
    /// is handled like any other.
    fn note_rate_limit(&self, headers: &reqwest::header::HeaderMap) {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(remaining) =
            text("x-ratelimit-remaining").and_then(|v| v.trim().parse::<f64>().ok())
        else {
            return;
        };
        let mut refill_at = self.refill_at.lock().unwrap_or_else(|e| e.into_inner());
        if remaining > 0.0 {
            *refill_at = None;
            return;
        }
        if let Some(wait) = text("x-ratelimit-reset-after")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .and_then(wait_of)
        {
            *refill_at = Some(tokio::time::Instant::now() + wait.min(self.policy.max_retry_after));
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> UpstreamError {
        if error.is_timeout() {
            UpstreamError::Timeout {
                upstream: self.name,
            }
        } else {
            // reqwest's message names the URL (ids only, no personal data) and the cause.
            let reason = if error.is_connect() {
                CONNECT_FAILED.to_owned()
            } else if error.is_body() || error.is_decode() {
                "response body was cut short".to_owned()
            } else {
                "request failed".to_owned()
            };
            UpstreamError::Transport {
                upstream: self.name,
                reason,
            }
        }
    }
}

/// `Retry-After` as delay-seconds (the form rate limiters use) or as an HTTP date.
fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return wait_of(seconds);
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Discord and some others put the hint in the body: `{"retry_after": 1.5}` (seconds).
fn json_retry_after(body: &[u8]) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    wait_of(value.get("retry_after")?.as_f64()?)
}

/// A hint in seconds as a wait; an absurd one (1e20 s) is a very long wait, not a panic.
fn wait_of(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let policy = RetryPolicy::default();
        for retry in 0..40 {
            assert!(policy.backoff(retry) <= policy.max_delay);
        }
        assert!(policy.backoff(0) <= policy.base_delay);
    }

    #[test]
    fn retry_after_forms() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), None);
        assert_eq!(
            json_retry_after(
                br#"{"message":"You are being rate limited.","retry_after":0.25,"global":false}"#
            ),
            Some(Duration::from_millis(250))
        );
    }
}
