//! The local HTTP server: axum accepts connections and hands every request to the same
//! `autopilot_core::api::Api` the Lambda functions use.

use autopilot_core::api::{error_response, Api, HttpRequest, MAX_ANY_BODY_BYTES};
use autopilot_core::http::ClientAddr;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use http::StatusCode;
use tokio::net::TcpListener;

pub async fn serve(
    api: Api,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new().fallback(dispatch).with_state(api);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn dispatch(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    // The peer, for the attendee page's per-client limit.
    parts.extensions.insert(ClientAddr(peer.ip().to_string()));
    // Read one byte past the limit so the core answers 413 with its own message.
    let bytes = match axum::body::to_bytes(body, MAX_ANY_BODY_BYTES + 1).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return into_axum(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body is larger than {MAX_ANY_BODY_BYTES} bytes"),
            ))
        }
    };
    into_axum(api.handle(HttpRequest::from_parts(parts, bytes)).await)
}

fn into_axum(response: http::Response<bytes::Bytes>) -> Response {
    response.map(Body::from)
}
