//! The receiver: what answers KKTIX's webhook (and, later, the attendee page) at once, even
//! while the poller is busy. It checks the token, seals the body, puts it on the durable
//! queue, wakes the poller and answers 2xx — the poller, the ledger's only writer, does the
//! rest. It holds `KKTIX_WEBHOOK_TOKEN`, `CONTACT_KEY` and the queue, nothing else.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use sha2::{Digest, Sha256};

use super::page::{PageSettings, RateLimiter};
use super::queue::{Envelope, IntakeQueue, QueueError};
use super::webhook::WebhookMapping;
use crate::contacts::Sealer;
use crate::pii::Sensitive;

/// Wakes the poller to drain the queue now. Locally a notification to the drain task;
/// deployed an asynchronous invocation of the poller function.
#[async_trait]
pub trait DrainTrigger: Send + Sync {
    /// Best effort: when it fails the next scheduled run drains the queue anyway.
    async fn kick(&self);
}

/// In process: the `autopilot dev` drain task waits on this.
#[derive(Default)]
pub struct LocalTrigger {
    pub notify: tokio::sync::Notify,
}

#[async_trait]
impl DrainTrigger for LocalTrigger {
    async fn kick(&self) {
        self.notify.notify_one();
    }
}

#[async_trait]
impl<T: DrainTrigger + ?Sized> DrainTrigger for Arc<T> {
    async fn kick(&self) {
        self.as_ref().kick().await
    }
}

pub struct Receiver {
    webhook_token: Option<Sensitive<String>>,
    sealer: Option<Sealer>,
    queue: Arc<dyn IntakeQueue>,
    trigger: Arc<dyn DrainTrigger>,
    mapping: WebhookMapping,
    page: PageSettings,
    /// Requests per client per hour, and per address per `per_address_minutes` (the poller
    /// keeps the latter durably too; this spares the queue a flood).
    per_client: RateLimiter,
    per_address: RateLimiter,
    /// Keys the client's address before it is counted or queued: never kept in clear.
    client_key: [u8; 32],
}

/// Clients and addresses the in-memory limits remember at most (oldest forgotten first).
const LIMITER_CAPACITY: usize = 50_000;

/// What the webhook route answers, once the batch is on the queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Accepted {
    pub accepted: bool,
    pub batch: String,
}

impl Receiver {
    pub fn new(
        webhook_token: Option<Sensitive<String>>,
        sealer: Option<Sealer>,
        queue: Arc<dyn IntakeQueue>,
        trigger: Arc<dyn DrainTrigger>,
        mapping: WebhookMapping,
    ) -> Self {
        Self {
            webhook_token,
            sealer,
            queue,
            trigger,
            mapping,
            per_client: limiters(&PageSettings::default()).0,
            per_address: limiters(&PageSettings::default()).1,
            page: PageSettings::default(),
            client_key: rand::random(),
        }
    }

    /// The attendee page's branding and limits.
    pub fn with_page(mut self, page: PageSettings) -> Self {
        (self.per_client, self.per_address) = limiters(&page);
        self.page = page;
        self
    }

    pub fn page(&self) -> &PageSettings {
        &self.page
    }

    /// The client's address, keyed: what the per-client limit counts and the queue carries.
    pub fn client_id(&self, client: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.client_key);
        hasher.update(client.as_bytes());
        hex::encode(&hasher.finalize()[..16])
    }

    /// Counts one request of this client; false when it is over the hourly limit.
    pub fn client_allowed(&self, client_id: &str) -> bool {
        self.per_client.allow(client_id, std::time::Instant::now())
    }

    /// Queues an attendee-page request (hashes only) and wakes the poller, unless the same
    /// address asked within `per_address_minutes` (then nothing is queued: the answer is the
    /// same either way).
    pub async fn accept_invitation_request(
        &self,
        email_hashes: Vec<String>,
        client_id: String,
    ) -> Result<(), QueueError> {
        let Some(address) = email_hashes.last().cloned() else {
            return Ok(());
        };
        let address = address.as_str();
        if !self.per_address.allow(address, std::time::Instant::now()) {
            return Ok(());
        }
        let pushed = self
            .queue
            .push(&Envelope::InvitationRequest {
                email_hashes: email_hashes.clone(),
                client: client_id,
                received_at: Utc::now(),
            })
            .await;
        if let Err(error) = pushed {
            // Not queued: the buyer is told to try again, and may.
            self.per_address.release(address);
            return Err(error);
        }
        self.trigger.kick().await;
        Ok(())
    }

    /// Whether `presented` is the webhook's token (constant time); false when none is set.
    pub fn token_matches(&self, presented: &str) -> bool {
        match &self.webhook_token {
            Some(expected) => crate::pii::secrets_match(presented, expected.expose()),
            None => false,
        }
    }

    /// Queues a webhook body and wakes the poller. The batch's key is KKTIX's batch id (when
    /// the body names one) with the body's hash: a retried batch has the same key.
    pub async fn accept_webhook(&self, body: &[u8]) -> Result<Accepted, QueueError> {
        let digest = hex::encode(&Sha256::digest(body)[..16]);
        let batch_id = match self.mapping.batch_id_of(body) {
            Some(id) => format!("{id}:{digest}"),
            None => format!("-:{digest}"),
        };
        let events = self
            .mapping
            .event_refs(body)
            .iter()
            .map(ToString::to_string)
            .collect();
        let sealed_body = self
            .sealer
            .as_ref()
            .map(|sealer| sealer.seal_bytes(&batch_id, body));
        self.queue
            .push(&Envelope::KktixWebhook {
                batch_id: batch_id.clone(),
                received_at: Utc::now(),
                sealed_body,
                events,
            })
            .await?;
        self.trigger.kick().await;
        Ok(Accepted {
            accepted: true,
            batch: batch_id,
        })
    }

    pub fn queue(&self) -> &Arc<dyn IntakeQueue> {
        &self.queue
    }

    pub fn trigger(&self) -> &Arc<dyn DrainTrigger> {
        &self.trigger
    }

    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }
}

fn limiters(page: &PageSettings) -> (RateLimiter, RateLimiter) {
    (
        RateLimiter::new(
            std::time::Duration::from_secs(3600),
            page.per_client_per_hour,
            LIMITER_CAPACITY,
        ),
        RateLimiter::new(
            std::time::Duration::from_secs(page.per_address_minutes * 60),
            1,
            LIMITER_CAPACITY,
        ),
    )
}
