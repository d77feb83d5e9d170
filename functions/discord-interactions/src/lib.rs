//! The discord-interactions Lambda: `POST /discord/interactions`. Adapts API Gateway requests
//! to `autopilot_core::api::Api`, and keeps deferred work alive after the response.
//!
//! On Lambda nothing runs after a handler returns unless arranged: the environment is frozen
//! once the runtime and every extension have asked for the next event. We register an
//! *internal extension* (same process) for `INVOKE` events; for each invocation it waits until
//! the handler hands over the work it deferred (the edit of `@original`) and awaits it before
//! asking for the next event. So a deferred reply is finished by the invocation that started
//! it, with no second function, queue or IAM permission to invoke ourselves — the cost is that
//! the invocation is billed until the edit is done (a second or two).

use std::sync::Mutex;

use autopilot_core::api::Api;
use autopilot_core::discord::bot::Deferrer;
use bytes::Bytes;
use futures::future::BoxFuture;
use lambda_http::{Body, Request, Response};
use tokio::task::JoinHandle;

/// Spawns deferred work and remembers it until the invocation's end hands it to the extension.
#[derive(Default)]
pub struct LambdaDeferrer {
    pending: Mutex<Vec<JoinHandle<()>>>,
}

impl LambdaDeferrer {
    /// The work deferred since the last call.
    pub fn take(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Deferrer for LambdaDeferrer {
    fn defer(&self, work: BoxFuture<'static, ()>) {
        let handle = tokio::spawn(work);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }
}

pub async fn handle(api: &Api, request: Request) -> Response<Body> {
    let request = request.map(|body| Bytes::copy_from_slice(&body));
    api.handle(request)
        .await
        .map(|body| Body::Text(String::from_utf8_lossy(&body).into_owned()))
}

/// Waits for every deferred piece of work; a failed one is logged, never fatal.
pub async fn finish(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        if let Err(error) = handle.await {
            tracing::error!(%error, "deferred Discord work failed");
        }
    }
}
