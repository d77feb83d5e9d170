//! What operator commands ask of the poller: a reconcile now, or one invitation resent. The
//! poller is the ledger's only writer, so the bot never does this work itself: locally it
//! calls the reconciler in process, deployed it calls the poller's `POST /poll` with the ops
//! token (`POLLER_URL`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{CampaignReport, CampaignStatus, ImportRequest, ResendReport, RunSummary};
use crate::pii::Sensitive;
#[cfg(feature = "reconcile")]
use crate::reconcile::Reconciler;
use crate::upstream::{build_client, join_url, HttpOptions, UpstreamError};

#[async_trait]
pub trait Operations: Send + Sync {
    async fn poll(&self) -> Result<RunSummary, String>;
    /// `reference`: an order number, a registration number or `EVENT_ID/ATTENDEE_ID`.
    async fn resend(&self, reference: &str) -> Result<ResendReport, String>;
    /// One event's CSV exports, imported by the poller.
    async fn import(&self, request: ImportRequest) -> Result<RunSummary, String>;
    /// Confirms the revoke held for an event (id or slug).
    async fn confirm_revoke(&self, event: &str) -> Result<RunSummary, String>;
    /// Every `[[campaigns]]` entry with its audience and progress.
    async fn campaigns(&self) -> Result<Vec<CampaignStatus>, String>;
    /// Sends a campaign to those of its audience not yet recorded (`dry_run`: counts only).
    async fn send_campaign(&self, name: &str, dry_run: bool) -> Result<CampaignReport, String>;
}

/// In process: `autopilot dev`, and tests.
#[cfg(feature = "reconcile")]
#[async_trait]
impl Operations for Reconciler {
    async fn poll(&self) -> Result<RunSummary, String> {
        self.try_run().await.map_err(|busy| busy.to_string())
    }

    async fn resend(&self, reference: &str) -> Result<ResendReport, String> {
        let key = self
            .find_attendee(reference)
            .await
            .map_err(|e| e.to_string())?;
        Reconciler::resend(self, key)
            .await
            .map_err(|e| e.to_string())
    }

    async fn import(&self, request: ImportRequest) -> Result<RunSummary, String> {
        Reconciler::import(self, request)
            .await
            .map_err(|e| e.to_string())
    }

    async fn confirm_revoke(&self, event: &str) -> Result<RunSummary, String> {
        Reconciler::confirm_revoke(self, event)
            .await
            .map_err(|e| e.to_string())
    }

    async fn campaigns(&self) -> Result<Vec<CampaignStatus>, String> {
        self.campaign_list().await.map_err(|e| e.to_string())
    }

    async fn send_campaign(&self, name: &str, dry_run: bool) -> Result<CampaignReport, String> {
        self.campaign_send(name, dry_run, None)
            .await
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl<T: Operations + ?Sized> Operations for Arc<T> {
    async fn poll(&self) -> Result<RunSummary, String> {
        self.as_ref().poll().await
    }

    async fn resend(&self, reference: &str) -> Result<ResendReport, String> {
        self.as_ref().resend(reference).await
    }

    async fn import(&self, request: ImportRequest) -> Result<RunSummary, String> {
        self.as_ref().import(request).await
    }

    async fn confirm_revoke(&self, event: &str) -> Result<RunSummary, String> {
        self.as_ref().confirm_revoke(event).await
    }

    async fn campaigns(&self) -> Result<Vec<CampaignStatus>, String> {
        self.as_ref().campaigns().await
    }

    async fn send_campaign(&self, name: &str, dry_run: bool) -> Result<CampaignReport, String> {
        self.as_ref().send_campaign(name, dry_run).await
    }
}

pub use crate::model::PollRequest;

/// The poller reached over HTTP. One attempt per command: an operator sees the outcome and
/// can ask again, and a resend whose answer was lost must not be repeated blindly.
pub struct RemotePoller {
    http: reqwest::Client,
    url: url::Url,
    import_url: url::Url,
    confirm_url: url::Url,
    campaigns_url: url::Url,
    ops_token: Sensitive<String>,
}

impl RemotePoller {
    pub fn new(
        base_url: &str,
        ops_token: Sensitive<String>,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        Ok(Self {
            http: build_client("poller", options.timeout)?,
            url: join_url("poller", base_url, "/poll")?,
            import_url: join_url("poller", base_url, "/import")?,
            confirm_url: join_url("poller", base_url, "/revoke/confirm")?,
            campaigns_url: join_url("poller", base_url, "/campaigns")?,
            ops_token,
        })
    }

    /// The poller's JSON answer, success or not: its error bodies are ours and carry no
    /// personal data, so their message is worth showing the operator.
    async fn call(&self, request: &PollRequest) -> Result<serde_json::Value, String> {
        let request = self
            .http
            .post(self.url.clone())
            .bearer_auth(self.ops_token.expose())
            .json(request);
        self.answer(request).await
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                "the poller did not answer in time".to_owned()
            } else {
                "could not reach the poller".to_owned()
            }
        })?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|_| format!("the poller answered HTTP {} without JSON", status.as_u16()))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(body
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the poller answered HTTP {}", status.as_u16())))
    }
}

#[async_trait]
impl Operations for RemotePoller {
    async fn poll(&self) -> Result<RunSummary, String> {
        let answer = self.call(&PollRequest::default()).await?;
        serde_json::from_value(answer).map_err(|e| format!("the poller's summary: {e}"))
    }

    async fn resend(&self, reference: &str) -> Result<ResendReport, String> {
        let answer = self
            .call(&PollRequest {
                resend: Some(reference.to_owned()),
            })
            .await?;
        serde_json::from_value(answer).map_err(|e| format!("the poller's answer: {e}"))
    }

    /// `POST /import`, multipart: the same form an operator's curl sends.
    async fn import(&self, request: ImportRequest) -> Result<RunSummary, String> {
        let mut form = reqwest::multipart::Form::new()
            .text("event", request.event)
            .part(
                "attendees",
                reqwest::multipart::Part::bytes(request.attendees).file_name("attendees.csv"),
            );
        if let Some(orders) = request.orders {
            form = form.part(
                "orders",
                reqwest::multipart::Part::bytes(orders).file_name("orders.csv"),
            );
        }
        let request = self
            .http
            .post(self.import_url.clone())
            .bearer_auth(self.ops_token.expose())
            // An import of a large event takes longer than a poll's answer.
            .timeout(std::time::Duration::from_secs(120))
            .multipart(form);
        let answer = self.answer(request).await?;
        serde_json::from_value(answer).map_err(|e| format!("the poller's summary: {e}"))
    }

    async fn confirm_revoke(&self, event: &str) -> Result<RunSummary, String> {
        let request = self
            .http
            .post(self.confirm_url.clone())
            .bearer_auth(self.ops_token.expose())
            .timeout(std::time::Duration::from_secs(120))
            .json(&serde_json::json!({ "event": event }));
        let answer = self.answer(request).await?;
        serde_json::from_value(answer).map_err(|e| format!("the poller's summary: {e}"))
    }

    /// `GET /campaigns`.
    async fn campaigns(&self) -> Result<Vec<CampaignStatus>, String> {
        let request = self
            .http
            .get(self.campaigns_url.clone())
            .bearer_auth(self.ops_token.expose());
        let mut answer = self.answer(request).await?;
        serde_json::from_value(answer["campaigns"].take())
            .map_err(|e| format!("the poller's campaign list: {e}"))
    }

    /// `POST /campaigns/{name}/send`; a large audience takes longer than a poll's answer.
    async fn send_campaign(&self, name: &str, dry_run: bool) -> Result<CampaignReport, String> {
        let mut url = self.campaigns_url.clone();
        url.path_segments_mut()
            .map_err(|_| "the poller's URL cannot take a path".to_owned())?
            .push(name)
            .push("send");
        let request = self
            .http
            .post(url)
            .bearer_auth(self.ops_token.expose())
            .timeout(std::time::Duration::from_secs(120))
            .json(&serde_json::json!({ "dry_run": dry_run }));
        let answer = self.answer(request).await?;
        serde_json::from_value(answer).map_err(|e| format!("the poller's campaign report: {e}"))
    }
}
