//! The mailer reached over HTTP (`MAILER_URL`), with the ops token.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Invitation, MailOutcome, MailResult, MailService};
use crate::access::remote::Results;
use crate::access::Link;
use crate::pii::{serialize_exposed, Sensitive};
use crate::store::AttendeeKey;
use crate::upstream::{build_client, join_url, HttpOptions, RetryPolicy, Upstream, UpstreamError};

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

pub struct RemoteMailer {
    http: reqwest::Client,
    url: url::Url,
    ops_token: Sensitive<String>,
    upstream: Upstream,
}

impl RemoteMailer {
    pub fn new(
        base_url: &str,
        ops_token: Sensitive<String>,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        Ok(Self {
            http: build_client(UPSTREAM, options.timeout)?,
            url: join_url(UPSTREAM, base_url, "/mail")?,
            ops_token,
            // Sending is not idempotent with every provider: a call whose outcome is unknown is
            // not repeated here; the ledger retries it on a later run.
            upstream: Upstream::new(
                UPSTREAM,
                RetryPolicy {
                    retry_ambiguous: false,
                    ..options.retry
                },
            ),
        })
    }
}

#[async_trait]
impl MailService for RemoteMailer {
    async fn send(&self, batch: Vec<Invitation>, force: bool) -> Vec<MailResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        let body = MailBody {
            force,
            invitations: batch.iter().map(InvitationWire::from).collect(),
        };
        let failed = |reason: String, transient: bool| {
            move |key| MailResult {
                key,
                outcome: MailOutcome::Failed {
                    reason: reason.clone(),
                    transient,
                },
            }
        };
        let answer = self
            .upstream
            .send("/mail", || {
                self.http
                    .post(self.url.clone())
                    .bearer_auth(self.ops_token.expose())
                    .json(&body)
            })
            .await
            .and_then(|success| {
                serde_json::from_slice::<Results<MailResult>>(&success.body).map_err(|e| {
                    UpstreamError::Malformed {
                        upstream: UPSTREAM,
                        reason: format!("{:?} error in the answer", e.classify()),
                    }
                })
            });
        match answer {
            Ok(answer) => crate::access::remote::match_results(
                batch.iter().map(|i| i.key),
                &answer.results,
                |r| r.key,
                failed("the mailer gave no answer for this invitation".into(), true),
            ),
            Err(error) => {
                let make = failed(error.to_string(), error.is_transient());
                batch.iter().map(|i| make(i.key)).collect()
            }
        }
    }
}
