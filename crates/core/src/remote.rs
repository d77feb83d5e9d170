//! Calls from the poller to the other functions' routes (`AUTHORIZER_URL`, `MAILER_URL`) with
//! the ops token: one batch out, one result per attendee back. A call that fails as a whole
//! fails every attendee in it, with the reason and whether it is worth retrying.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::AttendeeKey;
use crate::pii::Sensitive;
use crate::upstream::{build_client, HttpOptions, Upstream, UpstreamError};

/// The answer of `POST /authorize`, `/revoke` and `/mail`: one result per attendee, in order.
#[derive(Debug, Serialize, Deserialize)]
pub struct Results<T> {
    pub results: Vec<T>,
}

/// A per-attendee result that can also say "failed".
pub trait KeyedResult: Clone {
    fn key(&self) -> AttendeeKey;
    fn failed(key: AttendeeKey, reason: String, transient: bool) -> Self;
    /// The call may have been carried out (a timeout, a 5xx): for calls that are not
    /// idempotent this is not a failure to retry.
    fn uncertain(key: AttendeeKey, reason: String) -> Self {
        Self::failed(key, reason, true)
    }
}

/// A client for one function's routes, with the ops token.
pub struct OpsClient {
    name: &'static str,
    http: reqwest::Client,
    ops_token: Sensitive<String>,
    upstream: Upstream,
}

impl OpsClient {
    pub fn new(
        name: &'static str,
        ops_token: Sensitive<String>,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        Ok(Self {
            name,
            http: build_client(name, options.timeout)?,
            ops_token,
            upstream: Upstream::new(name, options.retry),
        })
    }

    /// Posts `body` to `url`; answers one result per key, in the keys' order. An attendee the
    /// answer left out failed transiently.
    pub async fn exchange<B: Serialize, R: KeyedResult + DeserializeOwned>(
        &self,
        url: &url::Url,
        body: &B,
        keys: &[AttendeeKey],
    ) -> Vec<R> {
        let answer = self
            .upstream
            .send(url.path(), || {
                self.http
                    .post(url.clone())
                    .bearer_auth(self.ops_token.expose())
                    .json(body)
            })
            .await
            .and_then(|success| {
                serde_json::from_slice::<Results<R>>(&success.body).map_err(|e| {
                    UpstreamError::Malformed {
                        upstream: self.name,
                        reason: format!("{:?} error in the answer", e.classify()),
                    }
                })
            });
        match answer {
            Ok(answer) => keys
                .iter()
                .map(|key| {
                    answer
                        .results
                        .iter()
                        .find(|result| result.key() == *key)
                        .cloned()
                        .unwrap_or_else(|| {
                            R::failed(
                                *key,
                                format!("the {} gave no answer for this attendee", self.name),
                                true,
                            )
                        })
                })
                .collect(),
            // The call may have been carried out: a timeout, a 5xx, or a 2xx whose body did
            // not read.
            Err(error)
                if error.is_ambiguous()
                    || matches!(
                        error,
                        UpstreamError::Server { .. } | UpstreamError::Malformed { .. }
                    ) =>
            {
                keys.iter()
                    .map(|key| R::uncertain(*key, error.to_string()))
                    .collect()
            }
            // Our own function refused the whole call (a rotated OPS_TOKEN, a wrong URL): the
            // deployment's fault, never the attendee's, so no attendee backs off for it.
            Err(error) => keys
                .iter()
                .map(|key| R::failed(*key, error.to_string(), true))
                .collect(),
        }
    }

    /// Posts `body` to `url` and reads the answer as `A`.
    pub async fn post<B: Serialize, A: DeserializeOwned>(
        &self,
        url: &url::Url,
        body: &B,
    ) -> Result<A, UpstreamError> {
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
            upstream: self.name,
            reason: format!("{:?} error in the answer", e.classify()),
        })
    }
}
