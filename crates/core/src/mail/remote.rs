//! The mailer reached over HTTP (`MAILER_URL`), with the ops token.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Invitation, MailOutcome, MailResult, MailService};
use crate::access::Link;
use crate::pii::{serialize_exposed, Sensitive};
use crate::remote::{KeyedResult, OpsClient};
use crate::store::AttendeeKey;
use crate::upstream::{join_url, HttpOptions, RetryPolicy, UpstreamError};

const UPSTREAM: &str = "mailer";

/// `POST /mail` request body.
#[derive(Debug, Serialize, Deserialize)]
pub struct MailBody {
    /// An explicit operator resend: providers that deduplicate let it through.
    #[serde(default)]
    pub force: bool,
    pub invitations: Vec<InvitationWire>,
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
        };
        self.client.exchange(&self.url, &body, &keys).await
    }
}
