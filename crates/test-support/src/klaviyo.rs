//! Klaviyo: a stateful fake of the JSON:API endpoints the campaigns client uses — lists,
//! profile bulk-import jobs, templates, campaigns, `campaign-message-assign-template` and
//! `campaign-send-jobs` — and of Create Event (`POST /api/events`), which the invitation
//! provider uses.
//!
//! The fake keeps state like Klaviyo does (duplicate names allowed, campaign names filtered
//! with `contains` only, a send job only for a draft with a template), so a wave sent again
//! meets what the first send made. It answers only requests carrying Klaviyo's headers
//! (`Authorization: Klaviyo-API-Key …`, `revision`, `accept: application/vnd.api+json`);
//! a request without them gets wiremock's 404. It is mounted at a low priority (10): a fault
//! a test mounts afterwards at the default priority answers before it (see [`error`] for
//! Klaviyo's error document).
//!
//! ```no_run
//! # async fn demo() {
//! use autopilot_test_support::klaviyo::{self, KlaviyoFake};
//! let (server, fake) = KlaviyoFake::start("pk_test").await;
//! // … point a client at `server.uri()`, send a wave …
//! let received = server.received_requests().await.unwrap_or_default();
//! assert_eq!(klaviyo::count(&received, "POST", "/api/campaign-send-jobs"), 1);
//! assert_eq!(fake.campaigns()[0].status, "Sending");
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use autopilot_core::mail::KLAVIYO_REVISION;
use serde_json::{json, Value};
use wiremock::matchers::header;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The JSON:API media type: every request's `accept`, every body's `content-type`.
pub const JSON_API: &str = "application/vnd.api+json";

/// A list as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub id: String,
    pub name: String,
}

/// A template as the fake holds it (after any `PATCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub html: String,
    pub text: String,
}

/// A campaign as the fake holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    /// `Draft` when created; `Sending` (or `Scheduled`, for a `static` send strategy) once a
    /// send job is accepted; whatever [`KlaviyoFake::set_status`] set.
    pub status: String,
    /// The id of its one email message.
    pub message: String,
    /// The id of its audience's list.
    pub list: String,
    pub send_strategy: Value,
    /// The template assigned to its message, if any.
    pub template: Option<String>,
}

struct State {
    next_id: u64,
    lists: Vec<List>,
    /// Job id → polls still answered `processing`.
    jobs: HashMap<String, u32>,
    templates: Vec<Template>,
    campaigns: Vec<Campaign>,
    /// `unique_id`s of the events accepted (Klaviyo drops an event whose id it has seen).
    events: HashSet<String>,
    polls_before_done: u32,
    import_ends: String,
    /// The send job is queued, but the answer is a 500.
    lose_send_job_answer: bool,
    /// (method, path) → requests the fake answered.
    calls: BTreeMap<(String, String), usize>,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:04}", self.next_id)
    }
}

/// The fake's state, shared by its clones (cheap: one `Arc`). Ids are a letter and a counter
/// (`L0001` list, `J` job, `T` template, `C` campaign, `M` message), in creation order.
#[derive(Clone)]
pub struct KlaviyoFake(Arc<Mutex<State>>);

impl Default for KlaviyoFake {
    fn default() -> Self {
        Self::new()
    }
}

impl KlaviyoFake {
    /// An empty account: no lists, templates or campaigns; each import job answers
    /// `processing` once, then `complete`.
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(State {
            next_id: 0,
            lists: Vec::new(),
            jobs: HashMap::new(),
            templates: Vec::new(),
            campaigns: Vec::new(),
            events: HashSet::new(),
            polls_before_done: 1,
            import_ends: "complete".into(),
            lose_send_job_answer: false,
            calls: BTreeMap::new(),
        })))
    }

    /// A new server whose only answers come from a new fake, for `api_key`.
    pub async fn start(api_key: &str) -> (MockServer, Self) {
        let server = MockServer::start().await;
        let fake = Self::new();
        fake.mount(&server, api_key).await;
        (server, fake)
    }

    /// Answers, on `server`, every request with Klaviyo's headers and `api_key`, at priority
    /// 10 (faults mounted at the default priority answer first).
    pub async fn mount(&self, server: &MockServer, api_key: &str) {
        Mock::given(header(
            "authorization",
            format!("Klaviyo-API-Key {api_key}").as_str(),
        ))
        .and(header("revision", KLAVIYO_REVISION))
        .and(header("accept", JSON_API))
        .respond_with(self.clone())
        .with_priority(10)
        .mount(server)
        .await;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many polls of each new import job answer `processing` before it ends (default 1).
    pub fn set_polls_before_done(&self, polls: u32) {
        self.state().polls_before_done = polls;
    }

    /// The status an import job ends in (default `complete`; Klaviyo's others: `cancelled`,
    /// `failed`).
    pub fn set_import_outcome(&self, status: &str) {
        self.state().import_ends = status.to_owned();
    }

    /// Whether a send job, although queued (the campaign moves on from `Draft`), is answered
    /// 500.
    pub fn lose_send_job_answers(&self, lose: bool) {
        self.state().lose_send_job_answer = lose;
    }

    /// Sets every campaign's status, as Klaviyo moves them on (`Sent`) or an operator does
    /// (`Cancelled`).
    pub fn set_status(&self, status: &str) {
        for campaign in &mut self.state().campaigns {
            campaign.status = status.into();
        }
    }

    pub fn lists(&self) -> Vec<List> {
        self.state().lists.clone()
    }

    pub fn templates(&self) -> Vec<Template> {
        self.state().templates.clone()
    }

    /// In creation order.
    pub fn campaigns(&self) -> Vec<Campaign> {
        self.state().campaigns.clone()
    }

    /// Campaign name → (campaign id, list id).
    pub fn campaigns_by_name(&self) -> HashMap<String, (String, String)> {
        self.state()
            .campaigns
            .iter()
            .map(|c| (c.name.clone(), (c.id.clone(), c.list.clone())))
            .collect()
    }

    /// Distinct events accepted by `POST /api/events` (by `unique_id`).
    pub fn events(&self) -> usize {
        self.state().events.len()
    }

    /// Requests the fake answered, per (method, path) — not those a fault mounted before it
    /// answered, nor those without Klaviyo's headers. For every request the server received,
    /// use `MockServer::received_requests` with [`count`].
    pub fn calls(&self) -> BTreeMap<(String, String), usize> {
        self.state().calls.clone()
    }

    /// The sum of [`calls`](Self::calls).
    pub fn total_calls(&self) -> usize {
        self.state().calls.values().sum()
    }
}

/// A JSON:API document with Klaviyo's media type.
pub fn document(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(serde_json::to_vec(&body).unwrap(), JSON_API)
}

/// Klaviyo's error document (`{"errors": [{… "detail": detail …}]}`) with `status`.
pub fn error(status: u16, detail: &str) -> ResponseTemplate {
    document(
        status,
        json!({"errors": [{
            "id": "6a1c7f5e", "status": status, "code": "invalid",
            "title": "Invalid input.", "detail": detail, "source": {"pointer": "/data"}
        }]}),
    )
}

/// Requests of `verb` to `path` (one `*` matches any non-empty run of characters).
pub fn count(received: &[Request], verb: &str, path: &str) -> usize {
    matching(received, verb, path).count()
}

/// The requests [`count`] counts.
pub fn matching<'a>(
    received: &'a [Request],
    verb: &'a str,
    path: &'a str,
) -> impl Iterator<Item = &'a Request> + 'a {
    received.iter().filter(move |r| {
        let actual = r.url.path();
        r.method.as_str() == verb
            && match path.split_once('*') {
                Some((prefix, suffix)) => {
                    actual.len() > prefix.len() + suffix.len()
                        && actual.starts_with(prefix)
                        && actual.ends_with(suffix)
                }
                None => actual == path,
            }
    })
}

/// The JSON bodies of the requests [`count`] counts; panics on a body that is not JSON.
pub fn bodies(received: &[Request], verb: &str, path: &str) -> Vec<Value> {
    matching(received, verb, path)
        .map(|r| serde_json::from_slice(&r.body).expect("a JSON body"))
        .collect()
}

/// The quoted value of a filter of exactly the form `{prefix}"value"){suffix}`.
fn filter_value(request: &Request, prefix: &str, suffix: &str) -> Option<String> {
    let filter = request
        .url
        .query_pairs()
        .find(|(k, _)| k == "filter")
        .map(|(_, v)| v.into_owned())?;
    let rest = filter.strip_prefix(prefix)?.strip_prefix('"')?;
    let (value, tail) = rest.split_once('"')?;
    (tail == format!("){suffix}")).then(|| value.to_owned())
}

fn campaign_resource(campaign: &Campaign, linkage: bool) -> Value {
    let messages = if linkage {
        json!({"data": [{"type": "campaign-message", "id": campaign.message}],
               "links": {"self": "x", "related": "x"}})
    } else {
        json!({"links": {"self": "x", "related": "x"}})
    };
    json!({
        "type": "campaign",
        "id": campaign.id,
        "attributes": {
            "name": campaign.name,
            "status": campaign.status,
            "archived": false,
            "audiences": {"included": [campaign.list], "excluded": []},
            "send_options": {"use_smart_sending": false},
            "tracking_options": {"is_tracking_opens": true, "is_tracking_clicks": true},
            "send_strategy": campaign.send_strategy,
            "created_at": "2026-05-01T00:00:00+00:00",
            "scheduled_at": null,
            "updated_at": "2026-05-01T00:00:00+00:00",
            "send_time": null
        },
        "relationships": {"campaign-messages": messages, "tags": {"links": {"self": "x"}}},
        "links": {"self": format!("https://a.klaviyo.com/api/campaigns/{}/", campaign.id)}
    })
}

fn job_resource(id: &str, status: &str, total: usize) -> Value {
    json!({
        "type": "profile-bulk-import-job",
        "id": id,
        "attributes": {
            "status": status, "created_at": "2026-05-01T00:00:00+00:00", "total_count": total,
            "completed_count": if status == "complete" { total } else { 0 }, "failed_count": 0,
            "completed_at": null, "expires_at": null, "started_at": null
        },
        "links": {"self": "x"}
    })
}

impl Respond for KlaviyoFake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state();
        let verb = request.method.as_str().to_owned();
        let url_path = request.url.path().to_owned();
        *state
            .calls
            .entry((verb.clone(), url_path.clone()))
            .or_default() += 1;
        let segments: Vec<&str> = url_path.trim_start_matches('/').split('/').collect();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if verb != "GET"
            && request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                != Some(JSON_API)
        {
            return error(415, "Unsupported media type");
        }
        match (verb.as_str(), segments.as_slice()) {
            ("GET", ["api", "lists"]) => {
                let Some(name) = filter_value(request, "equals(name,", "") else {
                    return error(400, "bad filter");
                };
                let data: Vec<Value> = state
                    .lists
                    .iter()
                    .filter(|l| l.name == name)
                    .map(|l| json!({"type": "list", "id": l.id, "attributes": {"name": l.name}}))
                    .collect();
                document(200, json!({"data": data, "links": {"self": "x"}}))
            }
            ("POST", ["api", "lists"]) => {
                let Some(name) = body
                    .pointer("/data/attributes/name")
                    .and_then(Value::as_str)
                else {
                    return error(400, "name is required");
                };
                let id = state.id("L");
                state.lists.push(List {
                    id: id.clone(),
                    name: name.to_owned(),
                });
                document(
                    201,
                    json!({"data": {"type": "list", "id": id, "attributes": {"name": name,
                           "opt_in_process": "single_opt_in"}, "links": {"self": "x"}}}),
                )
            }
            ("POST", ["api", "profile-bulk-import-jobs"]) => {
                let profiles = body
                    .pointer("/data/attributes/profiles/data")
                    .and_then(Value::as_array);
                let list = body
                    .pointer("/data/relationships/lists/data/0/id")
                    .and_then(Value::as_str);
                let (Some(profiles), Some(list)) = (profiles, list) else {
                    return error(400, "profiles and a list are required");
                };
                if profiles.len() > 10_000 || !state.lists.iter().any(|l| l.id == list) {
                    return error(400, "too many profiles, or no such list");
                }
                let id = state.id("J");
                let polls = state.polls_before_done;
                state.jobs.insert(id.clone(), polls);
                document(
                    202,
                    json!({"data": job_resource(&id, "queued", profiles.len())}),
                )
            }
            ("GET", ["api", "profile-bulk-import-jobs", id]) => {
                let ends = state.import_ends.clone();
                let Some(left) = state.jobs.get_mut(*id) else {
                    return error(404, "no such job");
                };
                let status = if *left > 0 {
                    *left -= 1;
                    "processing"
                } else {
                    ends.as_str()
                };
                document(200, json!({"data": job_resource(id, status, 1)}))
            }
            ("GET", ["api", "templates"]) => {
                let Some(name) = filter_value(request, "equals(name,", "") else {
                    return error(400, "bad filter");
                };
                let data: Vec<Value> = state
                    .templates
                    .iter()
                    .filter(|t| t.name == name)
                    .map(|t| {
                        json!({"type": "template", "id": t.id, "attributes": {
                            "name": t.name, "html": t.html, "text": t.text}})
                    })
                    .collect();
                document(200, json!({"data": data, "links": {"self": "x"}}))
            }
            ("POST", ["api", "templates"]) => {
                let attributes = &body["data"]["attributes"];
                if attributes["editor_type"] != "CODE" || !attributes["html"].is_string() {
                    return error(400, "editor_type CODE needs html");
                }
                let id = state.id("T");
                state.templates.push(Template {
                    id: id.clone(),
                    name: attributes["name"].as_str().unwrap_or_default().into(),
                    html: attributes["html"].as_str().unwrap_or_default().into(),
                    text: attributes["text"].as_str().unwrap_or_default().into(),
                });
                document(
                    201,
                    json!({"data": {"type": "template", "id": id, "attributes": attributes}}),
                )
            }
            ("PATCH", ["api", "templates", id]) => {
                let attributes = &body["data"]["attributes"];
                let Some(template) = state.templates.iter_mut().find(|t| t.id == *id) else {
                    return error(404, "no such template");
                };
                if let Some(html) = attributes["html"].as_str() {
                    template.html = html.into();
                }
                if let Some(text) = attributes["text"].as_str() {
                    template.text = text.into();
                }
                document(200, json!({"data": {"type": "template", "id": id}}))
            }
            ("GET", ["api", "campaigns"]) => {
                // Klaviyo: `messages.channel` is required, `name` takes `contains` only.
                let Some(name) = filter_value(
                    request,
                    "and(equals(messages.channel,'email'),contains(name,",
                    ")",
                ) else {
                    return error(400, "'equals' operator is not allowed for the 'name' field");
                };
                let data: Vec<Value> = state
                    .campaigns
                    .iter()
                    .filter(|c| c.name.contains(&name))
                    .map(|c| campaign_resource(c, false))
                    .collect();
                document(200, json!({"data": data, "links": {"self": "x"}}))
            }
            ("POST", ["api", "campaigns"]) => {
                let attributes = &body["data"]["attributes"];
                let list = attributes["audiences"]["included"][0]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let definition =
                    &attributes["campaign-messages"]["data"][0]["attributes"]["definition"];
                if !state.lists.iter().any(|l| l.id == list)
                    || definition["channel"] != "email"
                    || !attributes["name"].is_string()
                {
                    return error(400, "a campaign needs a name, a list and an email message");
                }
                let id = state.id("C");
                let message = state.id("M");
                let campaign = Campaign {
                    id,
                    name: attributes["name"].as_str().unwrap_or_default().into(),
                    status: "Draft".into(),
                    message,
                    list,
                    send_strategy: attributes
                        .get("send_strategy")
                        .cloned()
                        .unwrap_or(json!({"method": "immediate"})),
                    template: None,
                };
                let resource = campaign_resource(&campaign, true);
                state.campaigns.push(campaign);
                document(201, json!({"data": resource}))
            }
            ("GET", ["api", "campaigns", id]) => {
                match state.campaigns.iter().find(|c| c.id == *id) {
                    Some(campaign) => {
                        document(200, json!({"data": campaign_resource(campaign, false)}))
                    }
                    None => error(404, "no such campaign"),
                }
            }
            ("GET", ["api", "campaigns", id, "campaign-messages"]) => {
                match state.campaigns.iter().find(|c| c.id == *id) {
                    Some(campaign) => document(
                        200,
                        json!({"data": [{"type": "campaign-message", "id": campaign.message,
                                "attributes": {"definition": {"channel": "email"}}}]}),
                    ),
                    None => error(404, "no such campaign"),
                }
            }
            ("POST", ["api", "campaign-message-assign-template"]) => {
                let message = body["data"]["id"].as_str().unwrap_or_default().to_owned();
                let template = body
                    .pointer("/data/relationships/template/data/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if !state.templates.iter().any(|t| t.id == template) {
                    return error(400, "no such template");
                }
                let Some(campaign) = state.campaigns.iter_mut().find(|c| c.message == message)
                else {
                    return error(404, "no such message");
                };
                campaign.template = Some(template.clone());
                document(
                    200,
                    json!({"data": {"type": "campaign-message", "id": message,
                           "relationships": {"template": {"data": {"type": "template", "id": template}}}}}),
                )
            }
            ("POST", ["api", "campaign-send-jobs"]) => {
                let lose = state.lose_send_job_answer;
                let id = body["data"]["id"].as_str().unwrap_or_default().to_owned();
                if body["data"]["type"] != "campaign-send-job" {
                    return error(400, "type must be campaign-send-job");
                }
                let Some(campaign) = state.campaigns.iter_mut().find(|c| c.id == id) else {
                    return error(404, "no such campaign");
                };
                if campaign.status != "Draft" || campaign.template.is_none() {
                    return error(400, "the campaign cannot be sent");
                }
                campaign.status = if campaign.send_strategy["method"] == "static" {
                    "Scheduled".into()
                } else {
                    "Sending".into()
                };
                if lose {
                    return error(500, "internal error");
                }
                document(
                    202,
                    json!({"data": {"type": "campaign-send-job", "id": id,
                           "attributes": {"status": "queued"}, "links": {"self": "x"}}}),
                )
            }
            ("POST", ["api", "events"]) => {
                // Create Event: validated, queued, 202 with no body; a seen `unique_id` is
                // dropped (still 202).
                let attributes = &body["data"]["attributes"];
                let email = attributes
                    .pointer("/profile/data/attributes/email")
                    .and_then(Value::as_str);
                let metric = attributes
                    .pointer("/metric/data/attributes/name")
                    .and_then(Value::as_str);
                if body["data"]["type"] != "event" || email.is_none() || metric.is_none() {
                    return error(400, "an event needs a metric and a profile");
                }
                let unique_id = match attributes["unique_id"].as_str() {
                    Some(id) => id.to_owned(),
                    None => format!("anonymous-{}", state.events.len()),
                };
                state.events.insert(unique_id);
                ResponseTemplate::new(202)
            }
            _ => error(404, "no such endpoint"),
        }
    }
}
