//! The receiver Lambda: `POST /kktix/webhook/{token}`. It is not the poller, so it is never
//! throttled by the poller's reserved concurrency of 1: it seals the batch, puts it on SQS,
//! wakes the poller with an asynchronous invocation and answers 200. Adapts API Gateway
//! requests to `autopilot_core::api::Api`; all behaviour lives in core.

use autopilot_core::api::Api;
use bytes::Bytes;
use lambda_http::{Body, Request, Response};

pub async fn handle(api: &Api, request: Request) -> Response<Body> {
    let request = request.map(|body| Bytes::copy_from_slice(&body));
    api.handle(request)
        .await
        .map(|body| Body::Text(String::from_utf8_lossy(&body).into_owned()))
}
