//! Retry policies that keep a test's retries to milliseconds. The production defaults wait
//! 200 ms to 5 s between attempts and honour `Retry-After` up to 30 s.

use std::time::Duration;

use autopilot_core::upstream::{HttpOptions, RetryPolicy};

/// `attempts` tries, 1–10 ms apart, `Retry-After` honoured up to 2 s, everything retryable
/// retried.
pub fn retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(2),
        retry_ambiguous: true,
        retry_server_errors: true,
    }
}

/// A request timeout of `timeout_ms` and [`retry`]`(attempts)`.
pub fn http(timeout_ms: u64, attempts: u32) -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_millis(timeout_ms),
        retry: retry(attempts),
    }
}
