//! One logging set-up for every function and the CLI: `RUST_LOG` filters (default `info` on
//! Lambda, `warn` for the CLI), no personal data by construction (nothing logs it).

use std::io::IsTerminal;

/// A Lambda function: plain lines on stdout without timestamps (CloudWatch stamps each line)
/// and without colour codes.
pub fn init_function() {
    tracing_subscriber::fmt()
        .with_env_filter(filter("info"))
        .with_ansi(false)
        .without_time()
        .init();
}

/// The `autopilot` CLI: on stderr (stdout is for summaries and JSON), coloured only for a
/// person at a terminal, never into a file or a pipe.
pub fn init_cli() {
    tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into())
}
