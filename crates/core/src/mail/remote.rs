//! The mailer reached over HTTP (`MAILER_URL`), with the ops token.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    CampaignWave, Invitation, MailOutcome, MailResult, MailService, SettleQuery, SettleResult,
    Settlement,
};
use crate::model::AttendeeKey;
use crate::model::Link;
use crate::pii::{serialize_exposed, Sensitive};
use crate::remote::{KeyedResult, OpsClient};
use crate::upstream::{join_url, HttpOptions, RetryPolicy, UpstreamError};

const UPSTREAM: &str = "mailer";

/// `POST /mail` request body: invitations to send, or intents to settle.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailBody {
    /// An explicit operator resend: providers that deduplicate let it through.
    #[serde(default)]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invitations: Vec<InvitationWire>,
    /// The invitations are the recipients of this campaign wave, not invitations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignWave>,
    /// Which recipients of these intents the provider accepted (after uncertain sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<Vec<SettleQuery>>,
}

/// `POST /mail` answer to a `settle` request.
#[derive(Debug, Serialize, Deserialize)]
pub struct Settlements {
    pub settlements: Vec<SettleResult>,
}

/// One invitation on the wire; `Debug` stays redacted.
#[derive(Debug, Serialize, Deserialize)]
pub struct InvitationWire {
    #[serde(flatten)]
    pub key: AttendeeKey,
    #[serde(serialize_with = "serialize_exposed")]
    pub email: Sensitive<String>,
    #[serde(serialize_with = "serialize_exposed", default)]
    pub name: Sensitive<String>,
    #[serde(default)]
    pub event_name: String,
    #[serde(default)]
    pub ticket_name: String,
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub venue_url: Option<String>,
    #[serde(default)]
    pub checkin_code: Option<String>,
    #[serde(default)]
    pub reg_no: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
}

impl From<&Invitation> for InvitationWire {
    fn from(invitation: &Invitation) -> Self {
        Self {
            key: invitation.key,
            email: Sensitive::new(invitation.email.expose().to_owned()),
            name: invitation.name.clone(),
            event_name: invitation.event_name.clone(),
            ticket_name: invitation.ticket_name.clone(),
            links: invitation.links.clone(),
            venue_url: invitation.venue_url.clone(),
            checkin_code: invitation.checkin_code.clone(),
            reg_no: invitation.reg_no,
            intent: invitation.intent.clone(),
        }
    }
}

impl KeyedResult for MailResult {
    fn key(&self) -> AttendeeKey {
        self.key
    }
    fn failed(key: AttendeeKey, reason: String, transient: bool) -> Self {
        Self {
            key,
            outcome: MailOutcome::Failed { reason, transient },
        }
    }
    fn uncertain(key: AttendeeKey, reason: String) -> Self {
        Self {
            key,
            outcome: MailOutcome::Uncertain { reason },
        }
    }
}

pub struct RemoteMailer {
    url: url::Url,
    client: OpsClient,
}

impl RemoteMailer {
    pub fn new(
        base_url: &str,
        ops_token: Sensitive<String>,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        Ok(Self {
            url: join_url(UPSTREAM, base_url, "/mail")?,
            // Sending is not idempotent with every provider: a call whose outcome is unknown is
            // not repeated here; the ledger retries it on a later run.
            client: OpsClient::new(
                UPSTREAM,
                ops_token,
                HttpOptions {
                    retry: RetryPolicy {
                        retry_ambiguous: false,
                        retry_server_errors: false,
                        ..options.retry
                    },
                    ..options
                },
            )?,
        })
    }
}

#[async_trait]
impl MailService for RemoteMailer {
    async fn send(&self, batch: Vec<Invitation>, force: bool) -> Vec<MailResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        let keys: Vec<AttendeeKey> = batch.iter().map(|i| i.key).collect();
        let body = MailBody {
            force,
            invitations: batch.iter().map(InvitationWire::from).collect(),
            campaign: None,
            settle: None,
        };
        self.client.exchange(&self.url, &body, &keys).await
    }

    async fn send_campaign(&self, wave: CampaignWave, batch: Vec<Invitation>) -> Vec<MailResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        let keys: Vec<AttendeeKey> = batch.iter().map(|i| i.key).collect();
        let body = MailBody {
            force: false,
            invitations: batch.iter().map(InvitationWire::from).collect(),
            campaign: Some(wave),
            settle: None,
        };
        self.client.exchange(&self.url, &body, &keys).await
    }

    async fn settle(&self, queries: Vec<SettleQuery>) -> Vec<SettleResult> {
        if queries.is_empty() {
            return Vec::new();
        }
        let body = MailBody {
            force: false,
            invitations: Vec::new(),
            campaign: None,
            settle: Some(queries.clone()),
        };
        match self.client.post::<_, Settlements>(&self.url, &body).await {
            Ok(answer) => queries
                .iter()
                .map(|query| {
                    answer
                        .settlements
                        .iter()
                        .find(|s| s.intent == query.intent)
                        .cloned()
                        .unwrap_or_else(|| pending(query, "the mailer gave no answer for it"))
                })
                .collect(),
            Err(error) => queries
                .iter()
                .map(|query| pending(query, &format!("the mailer: {error}")))
                .collect(),
        }
    }
}

fn pending(query: &SettleQuery, reason: &str) -> SettleResult {
    SettleResult {
        intent: query.intent.clone(),
        settlement: Settlement::Pending {
            accepted: Vec::new(),
            reason: reason.to_owned(),
            failed: true,
        },
    }
}
