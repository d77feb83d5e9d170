//! The receiver Lambda: `POST /kktix/webhook/{token}` and the attendee page
//! (`GET|POST /invitation`). It is not the poller, so it is never
//! throttled by the poller's reserved concurrency of 1: it seals the batch, puts it on SQS,
//! wakes the poller with an asynchronous invocation and answers 200. Adapts API Gateway
//! requests to `autopilot_core::api::Api`; all behaviour lives in core.

use autopilot_core::api::Api;
use autopilot_core::http::ClientAddr;
use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

pub async fn handle(api: &Api, request: Request) -> Response<Body> {
    // The gateway's own view of the caller: the attendee page limits requests per client.
    let source_ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.clone(),
        _ => None,
    };
    let mut request = request.map(|body| Bytes::copy_from_slice(&body));
    if let Some(ip) = source_ip {
        request.extensions_mut().insert(ClientAddr(ip));
    }
    api.handle(request)
        .await
        .map(|body| Body::Text(String::from_utf8_lossy(&body).into_owned()))
}
