//! The authorizer reached over HTTP (`AUTHORIZER_URL`), with the ops token.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    AccessRequest, AccessService, GrantOutcome, GrantResult, RevokeOutcome, RevokeRequest,
    RevokeResult,
};
use crate::model::AttendeeKey;
use crate::pii::{serialize_exposed, Sensitive};
use crate::remote::{KeyedResult, OpsClient};
use crate::upstream::{join_url, HttpOptions, UpstreamError};

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

impl KeyedResult for GrantResult {
    fn key(&self) -> AttendeeKey {
        self.key
    }
    fn failed(key: AttendeeKey, reason: String, transient: bool) -> Self {
        Self {
            key,
            outcome: GrantOutcome::Failed { reason, transient },
        }
    }
}

impl KeyedResult for RevokeResult {
    fn key(&self) -> AttendeeKey {
        self.key
    }
    fn failed(key: AttendeeKey, reason: String, transient: bool) -> Self {
        Self {
            key,
            outcome: RevokeOutcome::Failed { reason, transient },
        }
    }
}

pub struct RemoteAccess {
    authorize_url: url::Url,
    revoke_url: url::Url,
    client: OpsClient,
}

impl RemoteAccess {
    pub fn new(
        base_url: &str,
        ops_token: Sensitive<String>,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        Ok(Self {
            authorize_url: join_url(UPSTREAM, base_url, "/authorize")?,
            revoke_url: join_url(UPSTREAM, base_url, "/revoke")?,
            // Granting and revoking are idempotent, so any transient failure may be retried.
            client: OpsClient::new(UPSTREAM, ops_token, options)?,
        })
    }
}

#[async_trait]
impl AccessService for RemoteAccess {
    async fn authorize(&self, batch: Vec<AccessRequest>) -> Vec<GrantResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        let keys: Vec<AttendeeKey> = batch.iter().map(|r| r.key).collect();
        let body = AuthorizeBody {
            admissions: batch.iter().map(AdmissionWire::from).collect(),
        };
        self.client
            .exchange(&self.authorize_url, &body, &keys)
            .await
    }

    async fn revoke(&self, batch: Vec<RevokeRequest>) -> Vec<RevokeResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        let keys: Vec<AttendeeKey> = batch.iter().map(|r| r.key).collect();
        let body = RevokeBody { revocations: batch };
        self.client.exchange(&self.revoke_url, &body, &keys).await
    }
}
