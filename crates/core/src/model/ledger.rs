//! The ledger's nouns: an attendee's key, the steps of an admission and its folded state.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Link, UnknownValue};

/// An attendee of an event: the key of everything the ledger records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttendeeKey {
    pub event_id: u64,
    pub attendee_id: u64,
}

impl fmt::Display for AttendeeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.event_id, self.attendee_id)
    }
}

/// A step of an admission, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Seen in the book but not paid yet (an ATM order, say).
    AwaitingPayment,
    /// Its de-identified row is in the warehouse.
    Loaded,
    /// On the venue's guest list; `detail` holds the [`GrantRecord`] as JSON.
    Granted,
    /// The invitation was accepted by the email provider (`detail` "resend" for a resend).
    Mailed,
    /// About to send the invitation; `detail` is the intent's id. Until `mailed` or
    /// `mail_failed` follows, an outcome is unknown and is settled from the provider's events,
    /// never by sending again.
    MailIntent,
    /// Gone from the attendance book: refunded or cancelled.
    Cancelled,
    /// Off the guest list again (or never needed removing); `detail` says which.
    Revoked,
    GrantFailed,
    MailFailed,
    RevokeFailed,
    /// About to send a campaign's letter; `detail` is `CAMPAIGN INTENT`. Until
    /// `campaign_sent` or `campaign_failed` follows, the letter may be out: it is settled or
    /// sent again within the same intent, which the provider recognises.
    CampaignIntent,
    /// The provider accepted the campaign's letter; `detail` is `CAMPAIGN PROVIDER INTENT`.
    CampaignSent,
    /// `detail` is `CAMPAIGN permanent: …` or `CAMPAIGN transient: …`.
    CampaignFailed,
}

impl Step {
    pub const ALL: [Step; 13] = [
        Step::AwaitingPayment,
        Step::Loaded,
        Step::Granted,
        Step::Mailed,
        Step::MailIntent,
        Step::Cancelled,
        Step::Revoked,
        Step::GrantFailed,
        Step::MailFailed,
        Step::RevokeFailed,
        Step::CampaignIntent,
        Step::CampaignSent,
        Step::CampaignFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "awaiting_payment",
            Self::Loaded => "loaded",
            Self::Granted => "granted",
            Self::Mailed => "mailed",
            Self::MailIntent => "mail_intent",
            Self::Cancelled => "cancelled",
            Self::Revoked => "revoked",
            Self::GrantFailed => "grant_failed",
            Self::MailFailed => "mail_failed",
            Self::RevokeFailed => "revoke_failed",
            Self::CampaignIntent => "campaign_intent",
            Self::CampaignSent => "campaign_sent",
            Self::CampaignFailed => "campaign_failed",
        }
    }
}

impl FromStr for Step {
    type Err = UnknownValue;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == text)
            .ok_or_else(|| UnknownValue(format!("unknown ledger step {text:?}")))
    }
}

/// What a grant gave, kept with the `granted` step so the invitation can be (re)sent and the
/// access revoked without asking the authorizer again. No personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub event_name: String,
    pub ticket_name: String,
    pub gather: bool,
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub venue_url: Option<String>,
}

/// One line of the ledger. `detail` is for operators and never holds personal data.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub key: AttendeeKey,
    pub step: Step,
    /// SHA-256 of the buyer's email, the only form the ledger keeps.
    pub email_hash: Option<String>,
    pub detail: Option<String>,
    pub run_id: String,
    pub at: DateTime<Utc>,
}

/// The prefix of a failure's `detail` when the provider refused it for good (an invalid
/// address): only those wait a backoff. Any other failure was the provider's, and the next
/// run tries again (`transient: …`, or a detail written before this distinction).
pub const PERMANENT: &str = "permanent: ";
pub const TRANSIENT: &str = "transient: ";

/// Consecutive failures of one step since it last succeeded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failures {
    pub count: u32,
    pub last_at: Option<DateTime<Utc>>,
    pub last_reason: Option<String>,
    /// The last failure was a permanent rejection (backs off per attendee).
    pub permanent: bool,
}

impl Failures {
    pub fn record(&mut self, at: DateTime<Utc>, reason: Option<&str>) {
        self.count += 1;
        self.last_at = Some(at);
        self.last_reason = reason.map(str::to_owned);
        self.permanent = reason.is_some_and(|r| r.starts_with(PERMANENT));
    }

    /// Whether the step may be tried again at `now`. A provider's failure (an outage) never
    /// waits here: the next run tries again and, if the provider answers, everything pending
    /// goes out. A permanent rejection backs off exponentially from `base` (base, 2·base, …
    /// capped at 64·base).
    pub fn due(&self, now: DateTime<Utc>, base: std::time::Duration) -> bool {
        if !self.permanent {
            return true;
        }
        let Some(last) = self.last_at else {
            return true;
        };
        let factor = 1u32 << self.count.saturating_sub(1).min(6);
        let wait = chrono::Duration::from_std(base * factor).unwrap_or(chrono::Duration::MAX);
        now >= last + wait
    }
}

/// The state of one admission, folded from its ledger entries in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    pub awaiting_payment: bool,
    pub loaded: bool,
    pub granted: Option<GrantRecord>,
    pub mailed: bool,
    /// An intent to mail whose outcome is not recorded yet: `(intent id, when)`.
    pub mail_intent: Option<(String, DateTime<Utc>)>,
    pub cancelled: bool,
    pub revoked: bool,
    pub email_hash: Option<String>,
    pub grant_failures: Failures,
    pub mail_failures: Failures,
    pub revoke_failures: Failures,
    /// Each campaign's letter to this attendee, by campaign name.
    pub campaigns: std::collections::BTreeMap<String, CampaignLetterState>,
    /// When the attendee page last resent the invitation.
    pub last_self_service: Option<DateTime<Utc>>,
}

/// The `mailed` detail of an attendee-page resend (then the provider's name).
pub const SELF_SERVICE: &str = "self-service";

/// Where one campaign's letter to one attendee stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CampaignLetterState {
    /// The provider accepted it: never sent again.
    pub sent: bool,
    /// The wave it went out in (when the record names it): a wave sent again is sent whole,
    /// so a provider that recognises it sees the same wave.
    pub sent_intent: Option<String>,
    /// A wave that holds this letter and whose outcome is not recorded: `(intent, when)`.
    pub intent: Option<(String, DateTime<Utc>)>,
    pub failures: Failures,
}

/// `campaign_*` details: the campaign's name, a space, the rest.
pub fn campaign_detail(campaign: &str, rest: &str) -> String {
    format!("{campaign} {rest}")
}

fn split_campaign_detail(detail: Option<&str>) -> Option<(&str, &str)> {
    let detail = detail?;
    Some(detail.split_once(' ').unwrap_or((detail, "")))
}

impl Admission {
    pub fn apply(
        &mut self,
        entry_step: Step,
        email_hash: Option<&str>,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) {
        match entry_step {
            Step::AwaitingPayment => {
                self.awaiting_payment = true;
                self.cancelled = false;
            }
            Step::Loaded => {
                self.loaded = true;
                self.awaiting_payment = false;
                self.cancelled = false;
            }
            Step::Granted => {
                // A grant whose record cannot be read still counts as granted.
                self.granted = Some(
                    detail
                        .and_then(|text| serde_json::from_str(text).ok())
                        .unwrap_or(GrantRecord {
                            event_name: String::new(),
                            ticket_name: String::new(),
                            gather: true,
                            links: Vec::new(),
                            venue_url: None,
                        }),
                );
                self.revoked = false;
                self.grant_failures = Failures::default();
            }
            Step::Mailed => {
                if detail.is_some_and(|d| d.starts_with(SELF_SERVICE)) {
                    self.last_self_service = Some(at);
                }
                self.mailed = true;
                self.mail_intent = None;
                self.mail_failures = Failures::default();
            }
            Step::MailIntent => {
                self.mail_intent = detail.map(|intent| (intent.to_owned(), at));
            }
            Step::Cancelled => self.cancelled = true,
            Step::Revoked => {
                self.revoked = true;
                self.revoke_failures = Failures::default();
            }
            Step::GrantFailed => self.grant_failures.record(at, detail),
            Step::MailFailed => {
                self.mail_intent = None;
                self.mail_failures.record(at, detail);
            }
            Step::RevokeFailed => self.revoke_failures.record(at, detail),
            Step::CampaignIntent => {
                if let Some((campaign, intent)) = split_campaign_detail(detail) {
                    let state = self.campaigns.entry(campaign.to_owned()).or_default();
                    if !state.sent {
                        state.intent = Some((intent.to_owned(), at));
                    }
                }
            }
            Step::CampaignSent => {
                if let Some((campaign, rest)) = split_campaign_detail(detail) {
                    let state = self.campaigns.entry(campaign.to_owned()).or_default();
                    // `PROVIDER INTENT` (or `settled INTENT`); older records name no intent.
                    state.sent_intent = rest.split_whitespace().nth(1).map(str::to_owned);
                    state.sent = true;
                    state.intent = None;
                    state.failures = Failures::default();
                }
            }
            Step::CampaignFailed => {
                if let Some((campaign, reason)) = split_campaign_detail(detail) {
                    let state = self.campaigns.entry(campaign.to_owned()).or_default();
                    state.intent = None;
                    state.failures.record(at, Some(reason));
                }
            }
        }
        if let Some(hash) = email_hash {
            self.email_hash = Some(hash.to_owned());
        }
    }

    /// Still to do for an attendee in the book, given which stages this deployment runs.
    pub fn pending(&self, stages: Stages) -> bool {
        !self.loaded || (stages.grant && self.granted.is_none()) || (stages.mail && !self.mailed)
    }

    /// Nothing is left to do for this attendee while they stay in the book.
    pub fn is_complete(&self, stages: Stages) -> bool {
        !self.cancelled && !self.pending(stages)
    }

    /// Access was granted and the attendee has left the book: it must go.
    pub fn needs_revoke(&self) -> bool {
        self.cancelled && self.granted.as_ref().is_some_and(|g| g.gather) && !self.revoked
    }
}

/// Which admission stages run after loading: granting access and mailing the invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stages {
    pub grant: bool,
    pub mail: bool,
}

/// A buyer's contact details as the store keeps them: sealed text, never clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedContact {
    pub key: AttendeeKey,
    /// The sealer's text form; names the key that sealed it.
    pub sealed: String,
    pub sealed_at: DateTime<Utc>,
}

/// Where an event's revoke hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeHoldState {
    /// Too many vanished at once: nobody revoked, the channel told.
    Held,
    /// An operator confirmed: the next reconcile of the event revokes those still gone.
    Confirmed,
    /// Done, or they came back.
    Cleared,
}

impl RevokeHoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Cleared => "cleared",
        }
    }
}

impl FromStr for RevokeHoldState {
    type Err = UnknownValue;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "held" => Ok(Self::Held),
            "confirmed" => Ok(Self::Confirmed),
            "cleared" => Ok(Self::Cleared),
            other => Err(UnknownValue(format!("unknown revoke hold state {other:?}"))),
        }
    }
}

/// One event's revoke hold: which admitted attendees vanished at once (ids only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeHold {
    pub event_id: u64,
    pub state: RevokeHoldState,
    pub attendee_ids: Vec<u64>,
    /// Admitted attendees of the event when it was recorded.
    pub admitted: u64,
    pub at: DateTime<Utc>,
}

/// One intake batch (a webhook body) as the ledger remembers it: a repeated batch is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub batch_id: String,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
    /// `processed`, `unknown_shape`, `trigger` …
    pub outcome: String,
    /// Counts and key paths only.
    pub detail: Option<String>,
}

/// `[safety]` in the TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetySettings {
    /// More vanished admitted attendees than this in one run…
    pub max_revokes_per_run: u64,
    /// …that are also more than this share of the event's admitted attendees: held.
    pub max_revoke_share: f64,
}

impl Default for SafetySettings {
    fn default() -> Self {
        Self {
            max_revokes_per_run: 10,
            max_revoke_share: 0.05,
        }
    }
}

impl SafetySettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.max_revoke_share) || self.max_revoke_share.is_nan() {
            return Err("[safety] max_revoke_share must be a fraction between 0 and 1".into());
        }
        Ok(())
    }

    /// Whether `vanished` of `admitted` attendees gone in one run looks like a glitch.
    pub fn holds(&self, vanished: u64, admitted: u64) -> bool {
        vanished > self.max_revokes_per_run
            && (vanished as f64) > self.max_revoke_share * admitted as f64
    }
}
