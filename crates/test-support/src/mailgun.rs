//! Mailgun: `POST /v3/{domain}/messages` (batch sending with `recipient-variables`) and
//! `GET /v3/{domain}/events` (accepted events with their `user-variables`, paged through
//! absolute `paging.next` URLs until an empty page), as the poller's client uses them.
//!
//! Every send is answered by a scripted [`SendFault`] (then the default one), so a test can
//! say "the next request is answered 500 although Mailgun queued it". What Mailgun queued
//! becomes one `accepted` event per recipient, carrying `v:` variables with `%recipient.…%`
//! substituted from `recipient-variables`, as Mailgun does.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// How one send request is answered, and whether Mailgun queued it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SendFault {
    /// 200 `Queued. Thank you.`
    None,
    /// 503 before queuing anything (an outage).
    Unavailable,
    /// 500 although the batch was queued (reported by Mailgun's users).
    QueuedButFailed,
    /// Queued, then a 200 after `delay` (past the client's timeout: a timeout it may not
    /// tell from an outage).
    QueuedButSlow(Duration),
    /// 429 with `Retry-After` seconds; nothing queued.
    RateLimited(u64),
    /// Queued, and a 200 whose body does not read.
    QueuedMalformed,
}

impl SendFault {
    pub fn queues(self) -> bool {
        matches!(
            self,
            Self::None | Self::QueuedButFailed | Self::QueuedButSlow(_) | Self::QueuedMalformed
        )
    }
}

/// How `GET /v3/{domain}/events` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsMode {
    Up,
    /// 500 for every page.
    Down,
    /// 200 with a body that is not an events page.
    Malformed,
}

/// One send request as Mailgun received it.
#[derive(Debug, Clone)]
pub struct SendRecord {
    pub to: Vec<String>,
    pub queued: bool,
    pub intent: Option<String>,
    /// Whatever the test set with [`MailgunFake::set_tag`] when the request arrived.
    pub tag: u64,
}

#[derive(Debug, Clone)]
struct AcceptedEvent {
    timestamp: f64,
    recipient: String,
    user_variables: Map<String, Value>,
}

struct State {
    script: VecDeque<SendFault>,
    default: SendFault,
    events_mode: EventsMode,
    refused: HashSet<String>,
    sends: Vec<SendRecord>,
    events: Vec<AcceptedEvent>,
    events_requests: u64,
    page_size: usize,
    tag: u64,
}

pub struct MailgunFake {
    domain: String,
    state: Mutex<State>,
}

impl MailgunFake {
    pub fn new(domain: &str) -> Arc<Self> {
        Arc::new(Self {
            domain: domain.to_owned(),
            state: Mutex::new(State {
                script: VecDeque::new(),
                default: SendFault::None,
                events_mode: EventsMode::Up,
                refused: HashSet::new(),
                sends: Vec::new(),
                events: Vec::new(),
                events_requests: 0,
                page_size: 300,
                tag: 0,
            }),
        })
    }

    /// Mounts both endpoints on `server`.
    pub async fn mount(self: &Arc<Self>, server: &MockServer) {
        Mock::given(method("POST"))
            .and(path_regex(r"^/v3/[^/]+/messages$"))
            .respond_with(Sends(self.clone()))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v3/[^/]+/events(/[^/]+)?$"))
            .respond_with(Events(self.clone()))
            .mount(server)
            .await;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answers of the next sends, in order; then the default.
    pub fn script(&self, faults: impl IntoIterator<Item = SendFault>) {
        self.state().script.extend(faults);
    }

    pub fn set_default(&self, fault: SendFault) {
        self.state().default = fault;
    }

    pub fn set_events(&self, mode: EventsMode) {
        self.state().events_mode = mode;
    }

    /// Events per page (Mailgun's `limit`, at most this).
    pub fn set_page_size(&self, size: usize) {
        self.state().page_size = size.max(1);
    }

    /// Sends holding this address are refused with 400, as Mailgun refuses a bad recipient.
    pub fn refuse(&self, address: &str) {
        self.state().refused.insert(address.to_lowercase());
    }

    pub fn set_tag(&self, tag: u64) {
        self.state().tag = tag;
    }

    pub fn sends(&self) -> Vec<SendRecord> {
        self.state().sends.clone()
    }

    pub fn events_requests(&self) -> u64 {
        self.state().events_requests
    }

    /// How many messages Mailgun queued for each address (lower-cased).
    pub fn queued_per_address(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for record in self.state().sends.iter().filter(|s| s.queued) {
            for to in &record.to {
                *counts.entry(to.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Decides and records one send; what the caller answers is up to it (the chaos suites
    /// draw their own faults and tell the fake whether Mailgun queued).
    pub fn receive(&self, request: &Request, fault: SendFault) -> ResponseTemplate {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let to: Vec<String> = form
            .iter()
            .filter(|(k, _)| k == "to")
            .map(|(_, v)| v.to_lowercase())
            .collect();
        let mut state = self.state();
        if to.iter().any(|address| state.refused.contains(address)) {
            let tag = state.tag;
            state.sends.push(SendRecord {
                to,
                queued: false,
                intent: None,
                tag,
            });
            return ResponseTemplate::new(400)
                .set_body_json(json!({"message": "to parameter is not a valid address. please check documentation"}));
        }
        let variables: Map<String, Value> = form
            .iter()
            .find(|(k, _)| k == "recipient-variables")
            .and_then(|(_, v)| serde_json::from_str(v).ok())
            .unwrap_or_default();
        let custom: Vec<(String, String)> = form
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("v:")
                    .map(|name| (name.to_owned(), v.clone()))
            })
            .collect();
        let intent = custom
            .iter()
            .find(|(name, _)| name == "autopilot-intent")
            .map(|(_, v)| v.clone());
        let queued = fault.queues();
        if queued {
            let now = epoch_now();
            for address in &to {
                let own = variables
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(address))
                    .and_then(|(_, v)| v.as_object().cloned())
                    .unwrap_or_default();
                let mut user_variables = Map::new();
                for (name, value) in &custom {
                    user_variables.insert(name.clone(), Value::String(substitute(value, &own)));
                }
                state.events.push(AcceptedEvent {
                    timestamp: now,
                    recipient: address.clone(),
                    user_variables,
                });
            }
        }
        let tag = state.tag;
        state.sends.push(SendRecord {
            to,
            queued,
            intent,
            tag,
        });
        drop(state);
        let queued_body = json!({"id": format!("<{}@{}>", epoch_now(), self.domain), "message": "Queued. Thank you."});
        match fault {
            SendFault::None => ResponseTemplate::new(200).set_body_json(queued_body),
            SendFault::Unavailable => {
                ResponseTemplate::new(503).set_body_string("Service Unavailable")
            }
            SendFault::QueuedButFailed => {
                ResponseTemplate::new(500).set_body_string("Internal Server Error")
            }
            SendFault::QueuedButSlow(delay) => ResponseTemplate::new(200)
                .set_body_json(queued_body)
                .set_delay(delay),
            SendFault::RateLimited(seconds) => ResponseTemplate::new(429)
                .insert_header("Retry-After", seconds.to_string().as_str())
                .set_body_json(json!({"message": "Too many requests"})),
            SendFault::QueuedMalformed => ResponseTemplate::new(200).set_body_string("{\"id\": <"),
        }
    }

    fn next_fault(&self) -> SendFault {
        let mut state = self.state();
        let default = state.default;
        state.script.pop_front().unwrap_or(default)
    }

    /// Answers one `GET /v3/{domain}/events` page (the chaos suites put their faults first).
    pub fn events_page(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state();
        state.events_requests += 1;
        match state.events_mode {
            EventsMode::Up => {}
            EventsMode::Down => {
                return ResponseTemplate::new(500).set_body_string("Internal Server Error")
            }
            EventsMode::Malformed => {
                return ResponseTemplate::new(200).set_body_string("<html>maintenance</html>")
            }
        }
        // The first request carries the filters; `paging.next` carries them in its token.
        let query: HashMap<String, String> = request
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let token = request
            .url
            .path_segments()
            .and_then(|mut segments| segments.nth(3).map(str::to_owned));
        let (offset, begin, end, limit) = match token.as_deref().and_then(parse_token) {
            Some(page) => page,
            None => {
                if query.get("event").map(String::as_str) != Some("accepted") {
                    return ResponseTemplate::new(400)
                        .set_body_json(json!({"message": "this fake serves event=accepted"}));
                }
                let Some(begin) = query.get("begin").and_then(|b| b.parse::<f64>().ok()) else {
                    return ResponseTemplate::new(400)
                        .set_body_json(json!({"message": "begin is required"}));
                };
                let end = query
                    .get("end")
                    .and_then(|e| e.parse::<f64>().ok())
                    .unwrap_or(f64::MAX);
                let limit = query
                    .get("limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(100)
                    .min(300);
                (0, begin, end, limit)
            }
        };
        let limit = limit.min(state.page_size);
        let matching: Vec<&AcceptedEvent> = state
            .events
            .iter()
            // Whole seconds, as the client asks: an event in the same second is in range.
            .filter(|e| e.timestamp >= begin.floor() && e.timestamp < end.floor() + 1.0)
            .collect();
        let items: Vec<Value> = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|e| {
                json!({
                    "event": "accepted",
                    "timestamp": e.timestamp,
                    "recipient": e.recipient,
                    "user-variables": e.user_variables,
                })
            })
            .collect();
        // wiremock's request URL does not carry the host the client used: the header does.
        let host = request
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_owned();
        let base = format!("http://{host}/v3/{}/events", self.domain);
        let next = format!(
            "{base}/{}",
            token_of(offset + items.len(), begin, end, limit)
        );
        ResponseTemplate::new(200).set_body_json(json!({
            "items": items,
            "paging": {
                "next": next,
                "previous": format!("{base}/{}", token_of(offset, begin, end, limit)),
                "first": format!("{base}/{}", token_of(0, begin, end, limit)),
                "last": format!("{base}/{}", token_of(matching.len(), begin, end, limit)),
            }
        }))
    }
}

struct Sends(Arc<MailgunFake>);

impl Respond for Sends {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let fault = self.0.next_fault();
        self.0.receive(request, fault)
    }
}

struct Events(Arc<MailgunFake>);

impl Respond for Events {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.events_page(request)
    }
}

/// `%recipient.NAME%` replaced from one recipient's variables.
fn substitute(value: &str, variables: &Map<String, Value>) -> String {
    let mut out = value.to_owned();
    for (name, v) in variables {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out = out.replace(&format!("%recipient.{name}%"), &text);
    }
    out
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn token_of(offset: usize, begin: f64, end: f64, limit: usize) -> String {
    let end = if end == f64::MAX { -1.0 } else { end };
    format!("p{offset}_{begin}_{end}_{limit}")
}

fn parse_token(token: &str) -> Option<(usize, f64, f64, usize)> {
    let mut parts = token.strip_prefix('p')?.split('_');
    let offset = parts.next()?.parse().ok()?;
    let begin = parts.next()?.parse().ok()?;
    let end: f64 = parts.next()?.parse().ok()?;
    let limit = parts.next()?.parse().ok()?;
    Some((offset, begin, if end < 0.0 { f64::MAX } else { end }, limit))
}
