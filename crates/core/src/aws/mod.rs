//! The AWS calls the deployed functions make, over plain HTTP with SigV4: the intake queue
//! (SQS), waking the poller (Lambda `Invoke`, asynchronous) and reading secrets at start
//! (Secrets Manager). Endpoints follow the SDKs' `AWS_ENDPOINT_URL_<SERVICE>` overrides, so
//! tests point them at fakes.

pub mod secrets;
pub mod sigv4;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::Url;

pub use sigv4::AwsCredentials;

use crate::intake::{DrainTrigger, Envelope, IntakeQueue, QueueError, QueuedMessage};
use crate::pii::Sensitive;
use crate::upstream::{build_client, UpstreamError};

/// An AWS service as this crate calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sqs,
    Lambda,
    SecretsManager,
}

impl Service {
    /// The SigV4 signing name.
    fn signing_name(self) -> &'static str {
        match self {
            Self::Sqs => "sqs",
            Self::Lambda => "lambda",
            Self::SecretsManager => "secretsmanager",
        }
    }

    fn upstream(self) -> &'static str {
        match self {
            Self::Sqs => "SQS",
            Self::Lambda => "Lambda",
            Self::SecretsManager => "Secrets Manager",
        }
    }

    /// The SDKs' per-service endpoint override.
    pub fn endpoint_var(self) -> &'static str {
        match self {
            Self::Sqs => "AWS_ENDPOINT_URL_SQS",
            Self::Lambda => "AWS_ENDPOINT_URL_LAMBDA",
            Self::SecretsManager => "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        }
    }

    /// The endpoint: the override when set, else the region's public one.
    pub fn endpoint(
        self,
        region: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Url, UpstreamError> {
        let text = env(self.endpoint_var())
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| format!("https://{}.{region}.amazonaws.com", self.signing_name()));
        Url::parse(text.trim()).map_err(|e| UpstreamError::Transport {
            upstream: self.upstream(),
            reason: format!("invalid endpoint {}: {e}", self.endpoint_var()),
        })
    }
}

/// Signs and sends AWS JSON requests, retrying throttling and server errors.
pub struct AwsClient {
    http: reqwest::Client,
    credentials: AwsCredentials,
    attempts: u32,
}

/// An AWS error answer, by its code (`__type` without the namespace).
fn error_code(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Option<String> {
    let from_header = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let from_body = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        ["__type", "code", "Type"]
            .iter()
            .find_map(|key| v.get(*key).and_then(Value::as_str).map(str::to_owned))
    });
    let code = from_header.or(from_body)?;
    let code = code.rsplit('#').next().unwrap_or(&code);
    Some(code.split(':').next().unwrap_or(code).to_owned())
}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "LimitExceededException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "InternalFailure",
];

impl AwsClient {
    pub fn new(credentials: AwsCredentials, timeout: Duration) -> Result<Self, UpstreamError> {
        Ok(Self {
            http: build_client("AWS", timeout)?,
            credentials,
            attempts: 3,
        })
    }

    pub fn region(&self) -> &str {
        &self.credentials.region
    }

    /// `POST` a body to `endpoint` + `path`, signed for `service`, with `headers`; the answer's
    /// body on 2xx. Errors name the service, the status and AWS's error code, never the body.
    pub async fn post(
        &self,
        service: Service,
        endpoint: &Url,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<bytes::Bytes, UpstreamError> {
        let upstream = service.upstream();
        let mut url = endpoint.clone();
        let joined = format!("{}{path}", endpoint.path().trim_end_matches('/'));
        url.set_path(if joined.is_empty() { "/" } else { &joined });
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => {
                return Err(UpstreamError::Transport {
                    upstream,
                    reason: "the endpoint has no host".into(),
                })
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let signed = sigv4::sign(
                &self.credentials,
                service.signing_name(),
                &sigv4::Signable {
                    method: "POST",
                    host: &host,
                    path: url.path(),
                    headers,
                    body,
                },
                chrono::Utc::now(),
            );
            let mut request = self.http.post(url.clone()).body(body.to_vec());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            for (name, value) in &signed {
                request = request.header(name.as_str(), value.as_str());
            }
            let error = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let answer = response.bytes().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(answer);
                    }
                    let code = error_code(&headers, &answer).unwrap_or_default();
                    let throttled = THROTTLING.contains(&code.as_str())
                        || status.as_u16() == 429
                        || status.is_server_error();
                    let error = match status.as_u16() {
                        _ if throttled && status.is_server_error() => UpstreamError::Server {
                            upstream,
                            status: status.as_u16(),
                        },
                        _ if throttled => UpstreamError::RateLimited {
                            upstream,
                            retry_after: None,
                        },
                        401 | 403 => UpstreamError::Unauthorized {
                            upstream,
                            status: status.as_u16(),
                        },
                        404 => UpstreamError::NotFound {
                            upstream,
                            what: if code.is_empty() {
                                "the resource".into()
                            } else {
                                code.clone()
                            },
                        },
                        other => UpstreamError::Rejected {
                            upstream,
                            status: other,
                        },
                    };
                    if !throttled {
                        if let UpstreamError::Rejected { .. } = &error {
                            tracing::warn!(upstream, code = %code, "AWS refused a request");
                        }
                        return Err(error);
                    }
                    error
                }
                Err(e) if e.is_timeout() => UpstreamError::Timeout { upstream },
                Err(e) if e.is_connect() => UpstreamError::Transport {
                    upstream,
                    reason: "connection failed".into(),
                },
                Err(_) => UpstreamError::Transport {
                    upstream,
                    reason: "request failed".into(),
                },
            };
            if attempt >= self.attempts {
                return Err(error);
            }
            let wait = Duration::from_millis(100 * (1 << attempt) + rand::random::<u64>() % 100);
            tokio::time::sleep(wait).await;
        }
    }
}

/// The intake queue on SQS (AWS JSON 1.0 protocol). Messages stay invisible for
/// `visibility` after a pull: a message the poller did not acknowledge comes back after it.
pub struct SqsQueue {
    client: AwsClient,
    endpoint: Url,
    queue_url: String,
    visibility: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveAnswer {
    #[serde(default)]
    messages: Vec<SqsMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SqsMessage {
    receipt_handle: String,
    body: String,
    #[serde(default)]
    attributes: std::collections::HashMap<String, String>,
}

impl SqsQueue {
    pub fn new(client: AwsClient, endpoint: Url, queue_url: &str, visibility: Duration) -> Self {
        Self {
            client,
            endpoint,
            queue_url: queue_url.trim().to_owned(),
            visibility,
        }
    }

    async fn call(&self, target: &str, body: Value) -> Result<bytes::Bytes, QueueError> {
        let body = serde_json::to_vec(&body).map_err(|e| QueueError::Malformed(e.to_string()))?;
        self.client
            .post(
                Service::Sqs,
                &self.endpoint,
                "/",
                &[
                    ("content-type", "application/x-amz-json-1.0"),
                    ("x-amz-target", target),
                ],
                &body,
            )
            .await
            .map_err(|e| QueueError::Backend(e.to_string()))
    }
}

#[async_trait]
impl IntakeQueue for SqsQueue {
    async fn push(&self, envelope: &Envelope) -> Result<(), QueueError> {
        let message =
            serde_json::to_string(envelope).map_err(|e| QueueError::Malformed(e.to_string()))?;
        self.call(
            "AmazonSQS.SendMessage",
            json!({"QueueUrl": self.queue_url, "MessageBody": message}),
        )
        .await
        .map(|_| ())
    }

    async fn pull(&self, max: usize) -> Result<Vec<QueuedMessage>, QueueError> {
        let answer = self
            .call(
                "AmazonSQS.ReceiveMessage",
                json!({
                    "QueueUrl": self.queue_url,
                    "MaxNumberOfMessages": max.clamp(1, 10),
                    "WaitTimeSeconds": 0,
                    "VisibilityTimeout": self.visibility.as_secs().clamp(1, 43_200),
                    "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
                }),
            )
            .await?;
        let answer: ReceiveAnswer = serde_json::from_slice(&answer).map_err(|_| {
            QueueError::Malformed("SQS answered a message list that does not read".into())
        })?;
        Ok(answer
            .messages
            .into_iter()
            .map(|message| QueuedMessage {
                receive_count: message
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                receipt: message.receipt_handle,
                body: message.body,
            })
            .collect())
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.call(
            "AmazonSQS.DeleteMessage",
            json!({"QueueUrl": self.queue_url, "ReceiptHandle": receipt}),
        )
        .await
        .map(|_| ())
    }
}

/// What the poller function is invoked with to drain the queue now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainEvent {
    pub source: String,
    pub action: String,
}

impl DrainEvent {
    pub fn new() -> Self {
        Self {
            source: "autopilot.receiver".into(),
            action: "drain".into(),
        }
    }

    /// Whether a Lambda payload is this event.
    pub fn matches(payload: &Value) -> bool {
        payload.get("source").and_then(Value::as_str) == Some("autopilot.receiver")
            && payload.get("action").and_then(Value::as_str) == Some("drain")
    }
}

impl Default for DrainEvent {
    fn default() -> Self {
        Self::new()
    }
}

/// Wakes the poller function with an asynchronous invocation: Lambda queues it (and retries
/// a throttled one for hours), so the receiver never waits on a busy poller.
pub struct LambdaTrigger {
    client: AwsClient,
    endpoint: Url,
    function: String,
}

impl LambdaTrigger {
    pub fn new(client: AwsClient, endpoint: Url, function: &str) -> Self {
        Self {
            client,
            endpoint,
            function: function.trim().to_owned(),
        }
    }

    pub async fn invoke(&self) -> Result<(), UpstreamError> {
        let body = serde_json::to_vec(&DrainEvent::new()).unwrap_or_default();
        let path = format!(
            "/2015-03-31/functions/{}/invocations",
            sigv4::uri_encode(&self.function)
        );
        self.client
            .post(
                Service::Lambda,
                &self.endpoint,
                &path,
                &[
                    ("content-type", "application/json"),
                    ("x-amz-invocation-type", "Event"),
                ],
                &body,
            )
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl DrainTrigger for LambdaTrigger {
    async fn kick(&self) {
        if let Err(error) = self.invoke().await {
            // The batch is on the queue already: the next scheduled run drains it.
            tracing::warn!(%error, "could not wake the poller; the next scheduled run drains the queue");
        }
    }
}

/// Secrets Manager's `GetSecretValue`, for reading each function's secrets at start.
pub struct SecretsManager {
    client: AwsClient,
    endpoint: Url,
}

impl SecretsManager {
    pub fn new(client: AwsClient, endpoint: Url) -> Self {
        Self { client, endpoint }
    }

    /// The secret's string value.
    pub async fn get(&self, secret_id: &str) -> Result<Sensitive<String>, UpstreamError> {
        let body = serde_json::to_vec(&json!({"SecretId": secret_id})).unwrap_or_default();
        let answer = self
            .client
            .post(
                Service::SecretsManager,
                &self.endpoint,
                "/",
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", "secretsmanager.GetSecretValue"),
                ],
                &body,
            )
            .await?;
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "SecretString")]
            secret_string: Option<String>,
        }
        let answer: Answer =
            serde_json::from_slice(&answer).map_err(|_| UpstreamError::Malformed {
                upstream: "Secrets Manager",
                reason: "the answer does not read".into(),
            })?;
        answer
            .secret_string
            .map(Sensitive::new)
            .ok_or(UpstreamError::Malformed {
                upstream: "Secrets Manager",
                reason: "the secret has no string value".into(),
            })
    }
}
