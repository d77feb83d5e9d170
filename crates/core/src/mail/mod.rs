//! Invitations: rendered from a template and sent through an email service provider —
//! Mailgun, Klaviyo, or (locally) an outbox folder of `.eml` files. Never hand-rolled SMTP.
//!
//! [`Mailer`] is the mailer function's logic. The poller reaches it through [`MailService`]:
//! in process locally, over `POST /mail` when deployed.

mod klaviyo;
mod mailgun;
mod outbox;
pub mod remote;
mod template;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use klaviyo::{KlaviyoProvider, KLAVIYO_DEFAULT_API_BASE, KLAVIYO_REVISION};
pub use mailgun::{MailgunProvider, MAILGUN_BATCH_LIMIT, MAILGUN_DEFAULT_API_BASE};
pub use outbox::OutboxProvider;
pub use remote::RemoteMailer;
pub use template::{MailTemplate, RenderedMail, TemplateError};

use crate::access::Link;
use crate::pii::{EmailAddress, Sensitive};
use crate::store::AttendeeKey;

/// One invitation to send. Holds the buyer's address and name in clear, redacted in `Debug`.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub key: AttendeeKey,
    pub email: EmailAddress,
    pub name: Sensitive<String>,
    pub event_name: String,
    pub ticket_name: String,
    pub links: Vec<Link>,
    pub venue_url: Option<String>,
    pub checkin_code: Option<String>,
    pub reg_no: Option<u64>,
}

/// What `POST /mail` answers per invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum MailOutcome {
    /// The provider accepted it (queued for delivery, or written to the outbox).
    Sent {
        provider: String,
        /// The provider's id for the message or batch, when it gives one.
        message_id: Option<String>,
    },
    Failed {
        reason: String,
        /// Worth retrying later (upstream fault) rather than a problem with the invitation.
        transient: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailResult {
    #[serde(flatten)]
    pub key: AttendeeKey,
    #[serde(flatten)]
    pub outcome: MailOutcome,
}

/// An email service provider. `send` answers one result per invitation, in order; it never
/// fails as a whole, so one bad invitation cannot sink the batch.
#[async_trait]
pub trait MailProvider: Send + Sync {
    fn name(&self) -> &'static str;
    /// `resend` marks an explicit operator resend: providers that deduplicate (Klaviyo's
    /// `unique_id`, the outbox's file names) must let it through as a new message.
    async fn send(
        &self,
        template: &MailTemplate,
        batch: &[Invitation],
        resend: bool,
    ) -> Vec<MailResult>;
}

/// How the poller reaches the mailer: in process or over HTTP.
#[async_trait]
pub trait MailService: Send + Sync {
    async fn send(&self, batch: Vec<Invitation>, force: bool) -> Vec<MailResult>;
}

/// The mailer function's logic: the provider `MAIL_PROVIDER` names and the template.
pub struct Mailer {
    provider: Arc<dyn MailProvider>,
    template: MailTemplate,
}

impl Mailer {
    pub fn new(provider: Arc<dyn MailProvider>, template: MailTemplate) -> Self {
        Self { provider, template }
    }

    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }
}

#[async_trait]
impl MailService for Mailer {
    async fn send(&self, batch: Vec<Invitation>, force: bool) -> Vec<MailResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        self.provider.send(&self.template, &batch, force).await
    }
}

/// `MAIL_PROVIDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Mailgun,
    Klaviyo,
    Outbox,
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "mailgun" => Ok(Self::Mailgun),
            "klaviyo" => Ok(Self::Klaviyo),
            "outbox" => Ok(Self::Outbox),
            other => Err(format!(
                "expected mailgun, klaviyo or outbox, got {other:?}"
            )),
        }
    }
}

/// `[mail]` in the TOML file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// The sender, e.g. `PyCon Taiwan <registration@pycon.tw>`.
    pub from: String,
    /// Template overrides; unset parts use the built-in bilingual (zh-TW / English) template.
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Where the outbox provider writes `.eml` files.
    pub outbox_dir: String,
    /// Klaviyo metric that a Klaviyo flow turns into the invitation email.
    pub klaviyo_metric: String,
    /// Extra Mailgun tags beside the event and ticket ones.
    pub tags: Vec<String>,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            from: "KKTIX Autopilot <noreply@example.com>".into(),
            subject: None,
            text: None,
            html: None,
            outbox_dir: "./outbox".into(),
            klaviyo_metric: "KKTIX Autopilot Invitation".into(),
            tags: Vec::new(),
        }
    }
}
