//! The authorizer reached over HTTP (`AUTHORIZER_URL`), with the ops token.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    AccessRequest, AccessService, GrantOutcome, GrantResult, RevokeOutcome, RevokeRequest,
    RevokeResult,
};
use crate::pii::{serialize_exposed, Sensitive};
use crate::store::AttendeeKey;
use crate::upstream::{build_client, join_url, HttpOptions, Upstream, UpstreamError};

const UPSTREAM: &str = "authorizer";

/// `POST /authorize` request body.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuthorizeBody {
    pub admissions: Vec<AdmissionWire>,
}

/// One admission on the wire. Clear contact details exist here only between the poller and
/// the authorizer; `Debug` stays redacted.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdmissionWire {
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
}

/// `POST /revoke` request body.
#[derive(Debug, Serialize, Deserialize)]
pub struct RevokeBody {
    pub revocations: Vec<RevokeRequest>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Results<T> {
    pub results: Vec<T>,
}

impl From<&AccessRequest> for AdmissionWire {
    fn from(request: &AccessRequest) -> Self {
        Self {
            key: request.key,
            email: Sensitive::new(request.email.expose().to_owned()),
            name: request.name.clone(),
            event_name: request.event_name.clone(),
            ticket_name: request.ticket_name.clone(),
        }
    }
}

pub struct RemoteAccess {
    http: reqwest::Client,
    authorize_url: url::Url,
    revoke_url: url::Url,
    ops_token: Sensitive<String>,
    upstream: Upstream,
}

impl RemoteAccess {
    pub fn new(
        base_url: &str,
        ops_token: Sensitive<String>,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        Ok(Self {
            http: build_client(UPSTREAM, options.timeout)?,
            authorize_url: join_url(UPSTREAM, base_url, "/authorize")?,
            revoke_url: join_url(UPSTREAM, base_url, "/revoke")?,
            ops_token,
            // Granting and revoking are idempotent, so any transient failure may be retried.
            upstream: Upstream::new(UPSTREAM, options.retry),
        })
    }

    async fn post<B: Serialize, R: for<'de> Deserialize<'de>>(
        &self,
        url: &url::Url,
        body: &B,
    ) -> Result<Results<R>, UpstreamError> {
        let success = self
            .upstream
            .send(url.path(), || {
                self.http
                    .post(url.clone())
                    .bearer_auth(self.ops_token.expose())
                    .json(body)
            })
            .await?;
        serde_json::from_slice(&success.body).map_err(|e| UpstreamError::Malformed {
            upstream: UPSTREAM,
            reason: format!("{:?} error in the answer", e.classify()),
        })
    }
}

/// Pairs answers with requests by key; an attendee the answer left out failed (transiently).
pub(crate) fn match_results<R: Clone>(
    keys: impl Iterator<Item = AttendeeKey>,
    answers: &[R],
    key_of: impl Fn(&R) -> AttendeeKey,
    missing: impl Fn(AttendeeKey) -> R,
) -> Vec<R> {
    keys.map(|key| {
        answers
            .iter()
            .find(|answer| key_of(answer) == key)
            .cloned()
            .unwrap_or_else(|| missing(key))
    })
    .collect()
}

#[async_trait]
impl AccessService for RemoteAccess {
    async fn authorize(&self, batch: Vec<AccessRequest>) -> Vec<GrantResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        let body = AuthorizeBody {
            admissions: batch.iter().map(AdmissionWire::from).collect(),
        };
        let failed = |reason: String, transient: bool| {
            move |key| GrantResult {
                key,
                outcome: GrantOutcome::Failed {
                    reason: reason.clone(),
                    transient,
                },
            }
        };
        match self
            .post::<_, GrantResult>(&self.authorize_url, &body)
            .await
        {
            Ok(answer) => match_results(
                batch.iter().map(|r| r.key),
                &answer.results,
                |r| r.key,
                failed(
                    "the authorizer gave no answer for this attendee".into(),
                    true,
                ),
            ),
            Err(error) => {
                let make = failed(error.to_string(), error.is_transient());
                batch.iter().map(|r| make(r.key)).collect()
            }
        }
    }

    async fn revoke(&self, batch: Vec<RevokeRequest>) -> Vec<RevokeResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        let keys: Vec<AttendeeKey> = batch.iter().map(|r| r.key).collect();
        let failed = |reason: String, transient: bool| {
            move |key| RevokeResult {
                key,
                outcome: RevokeOutcome::Failed {
                    reason: reason.clone(),
                    transient,
                },
            }
        };
        let body = RevokeBody { revocations: batch };
        match self.post::<_, RevokeResult>(&self.revoke_url, &body).await {
            Ok(answer) => match_results(
                keys.into_iter(),
                &answer.results,
                |r| r.key,
                failed(
                    "the authorizer gave no answer for this attendee".into(),
                    true,
                ),
            ),
            Err(error) => {
                let make = failed(error.to_string(), error.is_transient());
                keys.into_iter().map(make).collect()
            }
        }
    }
}
