//! The webhook door's route: `POST /kktix/webhook/{token}` queues a KKTIX batch and answers
//! at once (the receiver function).

use http::StatusCode;

use super::{error_response, json, HttpResponse};
use crate::intake::Receiver;

/// An unknown token answers exactly like an unknown route, and does nothing.
pub(super) async fn webhook(receiver: &Receiver, token: &str, body: &[u8]) -> HttpResponse {
    if !receiver.token_matches(token) {
        return error_response(StatusCode::NOT_FOUND, "no such route");
    }
    match receiver.accept_webhook(body).await {
        Ok(accepted) => json(StatusCode::OK, &accepted),
        Err(error) => {
            tracing::error!(%error, "a KKTIX webhook batch could not be queued");
            // KKTIX retries a failed batch: nothing is lost by refusing it now.
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the batch could not be stored; send it again later",
            )
        }
    }
}
