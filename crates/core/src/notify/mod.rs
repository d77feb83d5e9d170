//! Channel notices: after a run with new sales, one message to the team's Discord channel
//! (counts per ticket type and totals, never personal data); an alert when a run fails or an
//! upstream keeps failing, and a note when it recovers. At most one message per run.

pub mod alarm;
mod discord_webhook;

use async_trait::async_trait;

pub use discord_webhook::DiscordWebhook;

use crate::upstream::UpstreamError;

/// A channel message: plain text within Discord's 2,000-character limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub content: String,
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, notice: &Notice) -> Result<(), UpstreamError>;

    /// What tells this destination apart from a replacement (a digest, never the secret
    /// URL): a deleted webhook is remembered by it.
    fn fingerprint(&self) -> String {
        String::new()
    }
}

/// Locally: notices printed to the console — on stderr, so `autopilot poll --once --json`
/// keeps stdout for the summary alone.
pub struct ConsoleNotifier;

#[async_trait]
impl Notifier for ConsoleNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), UpstreamError> {
        eprintln!("[channel] {}", notice.content.replace('\n', "\n[channel] "));
        Ok(())
    }
}
