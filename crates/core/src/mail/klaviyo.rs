//! Klaviyo: one event per invitation through the Events API (`POST /api/events`, JSON:API);
//! a Klaviyo flow triggered by the metric turns it into the email, so the template lives in
//! Klaviyo and this side sends the values.
//!
//! Each event carries `unique_id` = the attendee key, and Klaviyo drops an event whose
//! `unique_id` it has seen: a retried request whose first attempt did land does not mail
//! twice. An operator resend gets a fresh `unique_id` so the flow fires again.

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use url::Url;

use super::{
    CampaignLetter, Invitation, KlaviyoCampaigns, MailOutcome, MailProvider, MailResult,
    MailTemplate,
};
use crate::model::Link;
use crate::pii::Sensitive;
use crate::upstream::{build_client, join_url, HttpOptions, Upstream, UpstreamError};

/// The API revision every request names (`revision` header). Klaviyo supports a revision for
/// two years after its release; the Create Event body has kept this shape since 2023-07-15.
pub const KLAVIYO_REVISION: &str = "2026-04-15";

const UPSTREAM: &str = "Klaviyo";
const PROVIDER: &str = "klaviyo";
const EVENTS_PATH: &str = "/api/events";
const JSON_API: &str = "application/vnd.api+json";
/// Event requests in flight at once (Klaviyo's burst limit for this endpoint is far higher).
const CONCURRENCY: usize = 4;

pub struct KlaviyoProvider {
    http: reqwest::Client,
    url: Url,
    api_key: Sensitive<String>,
    metric: String,
    upstream: Upstream,
    /// Campaign waves: lists, templates, campaigns and send jobs.
    campaigns: Option<KlaviyoCampaigns>,
}

#[derive(Serialize)]
struct Body<'a> {
    data: Event<'a>,
}

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: EventAttributes<'a>,
}

#[derive(Serialize)]
struct EventAttributes<'a> {
    properties: Properties<'a>,
    metric: Data<MetricAttributes<'a>>,
    profile: Data<ProfileAttributes<'a>>,
    unique_id: String,
    time: String,
}

#[derive(Serialize)]
struct Properties<'a> {
    event: &'a str,
    ticket: &'a str,
    links: &'a [Link],
    #[serde(skip_serializing_if = "Option::is_none")]
    venue_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkin_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reg_no: Option<u64>,
    attendee_key: String,
}

#[derive(Serialize)]
struct Data<T> {
    data: Resource<T>,
}

#[derive(Serialize)]
struct Resource<T> {
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: T,
}

#[derive(Serialize)]
struct MetricAttributes<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct ProfileAttributes<'a> {
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
}

impl KlaviyoProvider {
    /// `metric` names the Klaviyo metric whose flow sends the invitation.
    pub fn new(
        base_url: &str,
        api_key: Sensitive<String>,
        metric: &str,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        let metric = metric.trim();
        if metric.is_empty() {
            return Err(UpstreamError::Transport {
                upstream: UPSTREAM,
                reason: "no metric name configured".into(),
            });
        }
        Ok(Self {
            http: build_client(UPSTREAM, options.timeout)?,
            url: join_url(UPSTREAM, base_url, EVENTS_PATH)?,
            api_key,
            metric: metric.to_owned(),
            // Safe to repeat even when the outcome is unknown: `unique_id` deduplicates.
            upstream: Upstream::new(UPSTREAM, options.retry),
            campaigns: None,
        })
    }

    /// Sends campaign waves through `campaigns` (without it, they fail).
    pub fn with_campaigns(mut self, campaigns: KlaviyoCampaigns) -> Self {
        self.campaigns = Some(campaigns);
        self
    }

    /// HTTP requests sent so far, retries included (campaign calls too).
    pub fn attempts(&self) -> u64 {
        self.upstream.attempts()
            + self
                .campaigns
                .as_ref()
                .map_or(0, KlaviyoCampaigns::attempts)
    }

    fn body<'a>(&'a self, invitation: &'a Invitation, unique_id: String) -> Body<'a> {
        let name = invitation.name.expose().trim();
        Body {
            data: Event {
                kind: "event",
                attributes: EventAttributes {
                    properties: Properties {
                        event: &invitation.event_name,
                        ticket: &invitation.ticket_name,
                        links: &invitation.links,
                        venue_url: invitation.venue_url.as_deref(),
                        checkin_code: invitation.checkin_code.as_deref(),
                        reg_no: invitation.reg_no,
                        attendee_key: invitation.key.to_string(),
                    },
                    metric: Data {
                        data: Resource {
                            kind: "metric",
                            attributes: MetricAttributes { name: &self.metric },
                        },
                    },
                    profile: Data {
                        data: Resource {
                            kind: "profile",
                            attributes: ProfileAttributes {
                                email: invitation.email.expose(),
                                first_name: (!name.is_empty()).then_some(name),
                            },
                        },
                    },
                    unique_id,
                    time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                },
            },
        }
    }

    async fn send_one(&self, invitation: &Invitation, resend_at: Option<u64>) -> MailResult {
        let unique_id = match resend_at {
            Some(seconds) => format!("{}/resend-{seconds}", invitation.key),
            None => invitation.key.to_string(),
        };
        let body = match serde_json::to_vec(&self.body(invitation, unique_id.clone())) {
            Ok(body) => body,
            Err(_) => {
                return MailResult {
                    key: invitation.key,
                    outcome: MailOutcome::Failed {
                        reason: "cannot encode the Klaviyo event".into(),
                        transient: false,
                    },
                }
            }
        };
        let answer = self
            .upstream
            .send("the events endpoint", || {
                self.http
                    .post(self.url.clone())
                    .header(
                        reqwest::header::AUTHORIZATION,
                        format!("Klaviyo-API-Key {}", self.api_key.expose()),
                    )
                    .header("revision", KLAVIYO_REVISION)
                    .header(reqwest::header::ACCEPT, JSON_API)
                    .header(reqwest::header::CONTENT_TYPE, JSON_API)
                    .body(body.clone())
            })
            .await;
        let outcome = match answer {
            // 202 Accepted with no body: the event is validated and queued.
            Ok(_) => MailOutcome::Sent {
                provider: PROVIDER.into(),
                message_id: Some(unique_id),
            },
            // Klaviyo's error `detail` can echo the address; `UpstreamError` never holds a body.
            Err(error) => MailOutcome::Failed {
                reason: error.to_string(),
                transient: error.is_transient(),
            },
        };
        MailResult {
            key: invitation.key,
            outcome,
        }
    }
}

#[async_trait]
impl MailProvider for KlaviyoProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn send_campaign(
        &self,
        letter: CampaignLetter<'_>,
        batch: &[Invitation],
    ) -> Vec<MailResult> {
        match &self.campaigns {
            Some(campaigns) => campaigns.send(letter, batch).await,
            None => batch
                .iter()
                .map(|invitation| MailResult {
                    key: invitation.key,
                    outcome: MailOutcome::Failed {
                        reason: "Klaviyo campaigns are not configured".into(),
                        transient: false,
                    },
                })
                .collect(),
        }
    }

    /// The template is not used: the Klaviyo flow holds the email's content.
    async fn send(
        &self,
        _template: &MailTemplate,
        batch: &[Invitation],
        resend: bool,
    ) -> Vec<MailResult> {
        let resend_at = resend.then(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs()
        });
        let requests: Vec<_> = batch
            .iter()
            .map(|invitation| self.send_one(invitation, resend_at))
            .collect();
        stream::iter(requests).buffered(CONCURRENCY).collect().await
    }
}
