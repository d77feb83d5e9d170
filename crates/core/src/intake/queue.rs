//! The durable queue between what must answer at once (the webhook receiver, the attendee
//! page) and the poller, the ledger's only writer, which drains it. Deployed: SQS. Locally: a
//! table in the SQLite file. A message holds no personal data in clear: a webhook body is
//! sealed with `CONTACT_KEY` before it is queued.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One message on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Envelope {
    /// A KKTIX webhook batch, accepted and acknowledged.
    KktixWebhook {
        /// KKTIX's batch id when the body names one, else the body's SHA-256: a repeated
        /// batch has the same id and is a no-op.
        batch_id: String,
        received_at: DateTime<Utc>,
        /// The body sealed with `CONTACT_KEY` (context: the batch id); `None` when this
        /// deployment has no key and the webhook is only a trigger for API reads.
        #[serde(default)]
        sealed_body: Option<String>,
        /// The events the body names (ids or slugs), as far as it could be read.
        #[serde(default)]
        events: Vec<String>,
    },
    /// Someone asked the attendee page to resend an invitation: only hashes travel.
    InvitationRequest {
        /// SHA-256 of the address as typed, and of its trimmed, lower-cased form.
        email_hashes: Vec<String>,
        /// A keyed hash of the client's address, for the per-client limit.
        client: String,
        received_at: DateTime<Utc>,
    },
}

/// A message pulled from the queue, with the receipt that acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub receipt: String,
    pub body: String,
    /// How many times it was handed out (SQS's ApproximateReceiveCount; 1 locally).
    pub receive_count: u32,
}

impl QueuedMessage {
    pub fn envelope(&self) -> Result<Envelope, QueueError> {
        serde_json::from_str(&self.body)
            .map_err(|e| QueueError::Malformed(format!("a queued message does not read: {e}")))
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("the queue failed: {0}")]
    Backend(String),
    #[error("{0}")]
    Malformed(String),
}

#[async_trait]
pub trait IntakeQueue: Send + Sync {
    /// Durably stores the message; once this returns, the sender may be told "accepted".
    async fn push(&self, envelope: &Envelope) -> Result<(), QueueError>;
    /// Up to `max` messages, oldest first where the queue keeps an order.
    async fn pull(&self, max: usize) -> Result<Vec<QueuedMessage>, QueueError>;
    /// Removes a message that was handled.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;
}
