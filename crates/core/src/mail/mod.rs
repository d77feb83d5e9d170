//! Invitations: rendered from a template and sent through an email service provider —
//! Mailgun, Klaviyo, or (locally) an outbox folder of `.eml` files. Never hand-rolled SMTP.
//!
//! [`Mailer`] is the mailer function's logic. The poller reaches it through [`MailService`]:
//! in process locally, over `POST /mail` when deployed.

#[cfg(feature = "mail-providers")]
mod klaviyo;
#[cfg(feature = "mail-providers")]
mod klaviyo_campaign;
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
pub use klaviyo_campaign::KlaviyoCampaigns;
#[cfg(feature = "mail-providers")]
pub use mailgun::{MailgunProvider, MAILGUN_BATCH_LIMIT};
#[cfg(feature = "mail-providers")]
pub use outbox::OutboxProvider;
pub use remote::RemoteMailer;
#[cfg(feature = "mail-providers")]
pub use template::{BatchShape, MailTemplate, Placeholders, RenderedMail, TemplateError};

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

/// One wave of a campaign: its letter to a set of attendees, handed to the provider at once.
/// `intent` names the wave: every provider object and message of it carries the intent, so a
/// wave sent again with the same intent (after a crash or an uncertain answer) is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignWave {
    /// The campaign's `name` in `[[campaigns]]` (letters, digits, `-` and `_`).
    pub campaign: String,
    pub intent: String,
    /// A scheduled send: the provider delivers at this time (Mailgun `o:deliverytime`,
    /// Klaviyo's static send strategy, an outbox `Date:`); unset, at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A campaign wave with its compiled template, as the provider sees it.
#[cfg(feature = "mail-providers")]
#[derive(Debug, Clone, Copy)]
pub struct CampaignLetter<'a> {
    pub wave: &'a CampaignWave,
    pub template: &'a MailTemplate,
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

    /// Sends one campaign wave: one result per invitation (the invitation carries the
    /// recipient's values), in order. Sending the same wave again must not mail anyone twice:
    /// providers that cannot recognise a wave answer [`MailOutcome::Uncertain`] for unknown
    /// outcomes and settle them through [`MailProvider::settle`].
    async fn send_campaign(
        &self,
        letter: CampaignLetter<'_>,
        batch: &[Invitation],
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
    /// One campaign wave (see [`MailProvider::send_campaign`]); a campaign the mailer does not
    /// know fails every invitation for good.
    async fn send_campaign(&self, wave: CampaignWave, batch: Vec<Invitation>) -> Vec<MailResult>;
    async fn settle(&self, queries: Vec<SettleQuery>) -> Vec<SettleResult>;
}

#[cfg(feature = "mail-providers")]
/// The mailer function's logic: the provider `MAIL_PROVIDER` names and the template.
pub struct Mailer {
    provider: Arc<dyn MailProvider>,
    template: MailTemplate,
    /// Each `[[campaigns]]` entry's compiled template, by campaign name.
    campaigns: std::collections::HashMap<String, MailTemplate>,
}

#[cfg(feature = "mail-providers")]
impl Mailer {
    pub fn new(provider: Arc<dyn MailProvider>, template: MailTemplate) -> Self {
        Self {
            provider,
            template,
            campaigns: std::collections::HashMap::new(),
        }
    }

    /// The campaigns this mailer can send, by name.
    pub fn with_campaigns(
        mut self,
        campaigns: impl IntoIterator<Item = (String, MailTemplate)>,
    ) -> Self {
        self.campaigns = campaigns.into_iter().collect();
        self
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

    async fn send_campaign(&self, wave: CampaignWave, batch: Vec<Invitation>) -> Vec<MailResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        let Some(template) = self.campaigns.get(&wave.campaign) else {
            let reason = format!(
                "the mailer has no campaign {:?} in its [[campaigns]]",
                wave.campaign
            );
            return batch
                .iter()
                .map(|invitation| MailResult {
                    key: invitation.key,
                    outcome: MailOutcome::Failed {
                        reason: reason.clone(),
                        transient: false,
                    },
                })
                .collect();
        };
        let letter = CampaignLetter {
            wave: &wave,
            template,
        };
        self.provider.send_campaign(letter, &batch).await
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
    /// How long before a scheduled campaign is due a run hands it to the provider with its
    /// delivery time (Mailgun `o:deliverytime`, Klaviyo's static send time), so it arrives on
    /// time rather than up to a run later. `0s`: sent by the first run after it is due.
    pub campaign_lead: String,
}

impl MailSettings {
    /// `campaign_lead` as a duration.
    pub fn campaign_lead(&self) -> Result<std::time::Duration, String> {
        humantime::parse_duration(self.campaign_lead.trim()).map_err(|e| {
            format!(
                "[mail] campaign_lead {:?} is not a duration like 10m ({e})",
                self.campaign_lead
            )
        })
    }

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
            campaign_lead: "10m".into(),
        }
    }
}
