//! Gather's guest-list API as Gather keeps it: `GET /api/getEmailGuestlist` answers the whole
//! list `{email: {name, role, affiliation}}`; `POST /api/setEmailGuestlist` with
//! `{apiKey, spaceId, guestlist, overwrite}` merges the entries in (emails lowercased), or
//! replaces the list when `overwrite` is true.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const GET_PATH: &str = "/api/getEmailGuestlist";
pub const SET_PATH: &str = "/api/setEmailGuestlist";

/// The guest list and every overwrite posted to it.
#[derive(Debug, Default)]
pub struct GatherFake {
    list: Mutex<Map<String, Value>>,
    overwrites: Mutex<Vec<Value>>,
}

impl GatherFake {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Mounts both calls on `server`, answering without faults.
    pub async fn mount(self: &Arc<Self>, server: &MockServer) {
        Mock::given(method("GET"))
            .and(path(GET_PATH))
            .respond_with(Responder(self.clone()))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path(SET_PATH))
            .respond_with(Responder(self.clone()))
            .mount(server)
            .await;
    }

    /// What Gather answers `request` when nothing goes wrong (a POST is applied first).
    pub fn answer(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "POST" {
            self.apply(&request.body);
            ResponseTemplate::new(200)
        } else {
            ResponseTemplate::new(200).set_body_json(self.listing())
        }
    }

    /// Applies a `setEmailGuestlist` body; one that does not parse changes nothing.
    pub fn apply(&self, body: &[u8]) {
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let mut list = self.list.lock().unwrap();
        if body["overwrite"] == true {
            list.clear();
            self.overwrites.lock().unwrap().push(body.clone());
        }
        if let Some(entries) = body["guestlist"].as_object() {
            for (email, entry) in entries {
                list.insert(email.to_lowercase(), entry.clone());
            }
        }
    }

    /// The list as `getEmailGuestlist` answers it.
    pub fn listing(&self) -> Value {
        Value::Object(self.list.lock().unwrap().clone())
    }

    /// The (lowercased) emails on the list.
    pub fn emails(&self) -> BTreeSet<String> {
        self.list.lock().unwrap().keys().cloned().collect()
    }

    /// Puts an entry on the list as an organiser would by hand.
    pub fn add_by_hand(&self, email: &str, entry: Value) {
        self.list
            .lock()
            .unwrap()
            .insert(email.to_lowercase(), entry);
    }

    /// Every body posted with `overwrite: true`, in order.
    pub fn overwrites(&self) -> Vec<Value> {
        self.overwrites.lock().unwrap().clone()
    }
}

struct Responder(Arc<GatherFake>);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.answer(request)
    }
}
