//! Invitations: rendered from a template and sent through an email service provider —
//! Mailgun, Klaviyo, or (locally) an outbox folder of `.eml` files. Never hand-rolled SMTP.
//!
//! [`Mailer`] is the mailer function's logic. The poller reaches it through [`MailService`]:
//! in process locally, over `POST /mail` when deployed.

#[cfg(feature = "mail-providers")]
mod klaviyo;
#[cfg(feature = "mail-providers")]
mod mailgun;
#[cfg(feature = "mail-providers")]
mod outbox;
pub mod remote;
#[cfg(feature = "mail-providers")]
mod template;

#[cfg(feature = "mail-providers")]
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[cfg(feature = "mail-providers")]
pub use klaviyo::{KlaviyoProvider, KLAVIYO_REVISION};
#[cfg(feature = "mail-providers")]
pub use mailgun::{MailgunProvider, MAILGUN_BATCH_LIMIT};
#[cfg(feature = "mail-providers")]
pub use outbox::OutboxProvider;
pub use remote::RemoteMailer;
#[cfg(feature = "mail-providers")]
pub use template::{MailTemplate, RenderedMail, TemplateError};

/// Mailgun's US region (`MAILGUN_API_BASE` unless set).
pub const MAILGUN_DEFAULT_API_BASE: &str = "https://api.mailgun.net";
/// Klaviyo's API (`KLAVIYO_API_BASE` unless set).
pub const KLAVIYO_DEFAULT_API_BASE: &str = "https://a.klaviyo.com";

use crate::model::AttendeeKey;
use crate::model::Link;
use crate::pii::{EmailAddress, Sensitive};

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
    /// The poller's record of this send, made before it: a provider that cannot deduplicate
    /// (Mailgun) carries it with the message, so an uncertain outcome can be settled later
    /// from the provider's own events instead of by sending again.
    pub intent: Option<String>,
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
    /// The provider may or may not have queued it (a 5xx, a timeout, a connection lost after
    /// sending): never sent again on a guess, settled from the provider's events instead.
    Uncertain { reason: String },
    /// Not sent: the provider failed on an earlier part of the same request.
    NotAttempted { reason: String },
}

impl MailOutcome {
    /// The provider is failing: stop sending to it for the rest of the run.
    pub fn provider_failing(&self) -> bool {
        match self {
            Self::Failed { transient, .. } => *transient,
            Self::Uncertain { .. } | Self::NotAttempted { .. } => true,
            Self::Sent { .. } => false,
        }
    }
}

/// Which recipients of one intent the provider accepted, asked after an uncertain send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleQuery {
    pub intent: String,
    /// When the intent was recorded: the provider's events are searched from shortly before.
    pub since: chrono::DateTime<chrono::Utc>,
    pub keys: Vec<AttendeeKey>,
}

/// The provider's word on one intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Settlement {
    /// Final: these were accepted; the intent's other recipients were not.
    Settled { accepted: Vec<AttendeeKey> },
    /// Not complete yet (the provider's events lag: `accepted` are those found so far) or not
    /// knowable now (its events API failed): the rest wait, and nothing is sent again.
    Pending {
        #[serde(default)]
        accepted: Vec<AttendeeKey>,
        reason: String,
        failed: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleResult {
    pub intent: String,
    #[serde(flatten)]
    pub settlement: Settlement,
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
#[cfg(feature = "mail-providers")]
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

    /// Which recipients of each intent were accepted. Providers that deduplicate never answer
    /// [`MailOutcome::Uncertain`], so an intent left open (a crash before its outcome was
    /// recorded) is settled as "nothing accepted" and sent again — harmlessly.
    async fn settle(&self, queries: &[SettleQuery]) -> Vec<SettleResult> {
        queries
            .iter()
            .map(|query| SettleResult {
                intent: query.intent.clone(),
                settlement: Settlement::Settled {
                    accepted: Vec::new(),
                },
            })
            .collect()
    }
}

/// How the poller reaches the mailer: in process or over HTTP.
#[async_trait]
pub trait MailService: Send + Sync {
    async fn send(&self, batch: Vec<Invitation>, force: bool) -> Vec<MailResult>;
    async fn settle(&self, queries: Vec<SettleQuery>) -> Vec<SettleResult>;
}

#[cfg(feature = "mail-providers")]
/// The mailer function's logic: the provider `MAIL_PROVIDER` names and the template.
pub struct Mailer {
    provider: Arc<dyn MailProvider>,
    template: MailTemplate,
}

#[cfg(feature = "mail-providers")]
impl Mailer {
    pub fn new(provider: Arc<dyn MailProvider>, template: MailTemplate) -> Self {
        Self { provider, template }
    }

    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }
}

#[cfg(feature = "mail-providers")]
#[async_trait]
impl MailService for Mailer {
    async fn send(&self, batch: Vec<Invitation>, force: bool) -> Vec<MailResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        self.provider.send(&self.template, &batch, force).await
    }

    async fn settle(&self, queries: Vec<SettleQuery>) -> Vec<SettleResult> {
        if queries.is_empty() {
            return Vec::new();
        }
        self.provider.settle(&queries).await
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
    /// How long after an uncertain Mailgun send its events are trusted to be complete:
    /// recipients not accepted by then are sent again. Mailgun's accepted events appear within
    /// seconds, but it vouches for completeness only after about 30 minutes; the default
    /// trusts the next run (5 minutes later) so an outage's probe goes out on recovery.
    pub settle_after: String,
}

impl MailSettings {
    /// `settle_after` as a duration (`30m`, `90s`, `0s`).
    pub fn settle_after(&self) -> Result<std::time::Duration, String> {
        humantime::parse_duration(self.settle_after.trim()).map_err(|e| {
            format!(
                "[mail] settle_after {:?} is not a duration like 30m ({e})",
                self.settle_after
            )
        })
    }
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
            settle_after: "0s".into(),
        }
    }
}
