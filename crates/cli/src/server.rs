//! The local HTTP server: axum accepts connections and hands every request to the same
//! `autopilot_core::api::Api` the Lambda functions use.

use autopilot_core::api::{error_response, Api, HttpRequest, MAX_ANY_BODY_BYTES};
use axum::body::Body;
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
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn dispatch(State(api): State<Api>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
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
