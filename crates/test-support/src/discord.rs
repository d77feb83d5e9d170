//! A Discord channel webhook: `POST {webhook}?wait=true` with `{content, username,
//! allowed_mentions}`, answered 204, every message kept.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The path of the webhook the suites post to (`/api/webhooks/{id}/{token}`).
pub const WEBHOOK_PATH: &str = "/api/webhooks/1234/secret-token";

/// The messages a webhook received.
#[derive(Debug, Default)]
pub struct DiscordChannel {
    bodies: Mutex<Vec<Value>>,
}

impl DiscordChannel {
    /// A channel whose webhook answers at [`WEBHOOK_PATH`] on `server`.
    pub async fn mount(server: &MockServer) -> Arc<Self> {
        let channel = Arc::new(Self::default());
        Mock::given(method("POST"))
            .and(path(WEBHOOK_PATH))
            .respond_with(Responder(channel.clone()))
            .mount(server)
            .await;
        channel
    }

    /// Keeps the message of `request`; 204 as Discord answers without `wait`, which the
    /// client accepts as well as 200.
    pub fn receive(&self, request: &Request) -> ResponseTemplate {
        if let Ok(body) = serde_json::from_slice::<Value>(&request.body) {
            self.bodies.lock().unwrap().push(body);
        }
        ResponseTemplate::new(204)
    }

    /// Each message's `content`, in order.
    pub fn messages(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|body| body["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Each message's whole body.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

struct Responder(Arc<DiscordChannel>);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.receive(request)
    }
}
