//! Klaviyo campaigns: one campaign wave sent as Klaviyo email campaigns, one per content group,
//! each going to a list that holds that group's recipients (JSON:API, revision
//! [`KLAVIYO_REVISION`]).
//!
//! The batch is grouped by [`BatchShape`] (same event, ticket, links and venue → same content);
//! a group's short id is the first 8 hex digits of SHA-256 over its fields. Per group:
//!
//! 1. the campaign `autopilot {campaign} {intent} {shape}` is looked up by name (Klaviyo
//!    filters campaign names with `contains` only, so the exact name is matched here). Found and
//!    no longer `Draft` (Scheduled, Sending, Sent…): the group counts as sent, nothing else is
//!    called — this is what makes sending a wave again safe. Found `Cancelled…`: the group
//!    fails for good.
//! 2. the list of the same name is looked up (`equals(name,…)`), else created;
//! 3. the recipients are upserted into it by profile bulk-import jobs (≤ 10,000 profiles each,
//!    polled until `complete`): `email`, `first_name`, and the properties
//!    `autopilot_checkin_code`, `autopilot_reg_no`, `autopilot_key` the template reads;
//! 4. the template `autopilot {campaign} {shape}` (reused across waves: an account holds at
//!    most 1,000 API templates) is looked up, updated if its content changed, else created
//!    from [`MailTemplate::render_batch_with`] with [`Placeholders::KLAVIYO`];
//! 5. the campaign is created (immediate, or Klaviyo's static send strategy at
//!    `deliver_at`; Smart Sending off) unless found as a draft, the template is assigned to its
//!    message, and a send job is posted. A send job refused or unanswered is settled by reading
//!    the campaign back: not `Draft` any more means it was queued.
//!
//! Klaviyo allows duplicate names, so every object is looked up before it is created, and a
//! create whose outcome is unknown (a timeout, a 5xx) is not repeated within the run: the next
//! send of the same wave finds what it made. So a step's failure (401, 404, 429, 5xx, timeouts,
//! malformed answers) leaves the group [`MailOutcome::Uncertain`]: its letters stay in flight
//! under the wave's intent, and the poller sends the same wave again later, which resumes
//! where Klaviyo stopped and never creates a second campaign (the later groups are not
//! attempted). Other 4xx answers and template errors fail them for good.
//!
//! A Klaviyo profile is one address with one set of properties, so an address holding several
//! invitations of a wave (a buyer with two tickets) gets one "slot" per invitation: the second
//! goes in its own group (`… {shape}-2`) whose template reads `autopilot_…_2` properties
//! (`autopilot_name_2` instead of `first_name`). Properties outlive the wave: a later wave that
//! gives the address a different attendee in the same slot overwrites the values a campaign
//! still scheduled would read.
//!
//! Errors and reasons name ids, counts and statuses only, never an address or a name.
//!
//! [`MailTemplate::render_batch_with`]: super::MailTemplate::render_batch_with

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::{
    BatchShape, CampaignLetter, Invitation, MailOutcome, MailResult, Placeholders, RenderedMail,
    KLAVIYO_REVISION,
};
use crate::model::AttendeeKey;
use crate::pii::Sensitive;
use crate::upstream::{build_client, join_url, HttpOptions, RetryPolicy, Upstream, UpstreamError};

const UPSTREAM: &str = "Klaviyo";
const PROVIDER: &str = "klaviyo";
const JSON_API: &str = "application/vnd.api+json";
/// Profiles Klaviyo takes in one bulk-import job.
const MAX_PROFILES_PER_JOB: usize = 10_000;
/// Klaviyo refuses a bulk-import payload over 5 MB; this leaves room for the envelope.
const MAX_JOB_BYTES: usize = 4_500_000;
/// Polls of one bulk-import job before the group is given up for this run.
const MAX_IMPORT_POLLS: u32 = 60;
const DEFAULT_IMPORT_POLL: Duration = Duration::from_secs(2);
/// Invitations of one wave one address can hold (see the module doc on slots).
const MAX_SLOTS: usize = 8;

/// Where the recipient's values go, by slot: the first invitation of an address reads the
/// plain properties, the n-th reads `autopilot_…_n`.
macro_rules! slot {
    ($n:literal) => {
        Placeholders {
            name: concat!("{{ person.autopilot_name_", $n, " }}"),
            name_html: concat!("{{ person.autopilot_name_", $n, " }}"),
            checkin_code: concat!("{{ person.autopilot_checkin_code_", $n, " }}"),
            checkin_code_html: concat!("{{ person.autopilot_checkin_code_", $n, " }}"),
            reg_no: concat!("{{ person.autopilot_reg_no_", $n, " }}"),
        }
    };
}

const SLOTS: [Placeholders; MAX_SLOTS] = [
    Placeholders::KLAVIYO,
    slot!(2),
    slot!(3),
    slot!(4),
    slot!(5),
    slot!(6),
    slot!(7),
    slot!(8),
];

pub struct KlaviyoCampaigns {
    http: reqwest::Client,
    base_url: String,
    api_key: Sensitive<String>,
    from: String,
    /// Reads and writes that are safe to repeat (imports upsert, assignments re-assign).
    upstream: Upstream,
    /// Creates: Klaviyo would make a duplicate, so an unknown outcome is never repeated.
    creates: Upstream,
    import_poll: Duration,
}

/// Invitations sharing their content and their slot: one list, one template, one campaign.
struct Group {
    shape: BatchShape,
    slot: usize,
    members: Vec<usize>,
}

/// Why a group was not sent.
enum Failure {
    /// Retry-safe: every step is idempotent by name.
    Transient(String),
    Permanent(String),
}

impl From<UpstreamError> for Failure {
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::Rejected { .. } => Self::Permanent(error.to_string()),
            _ => Self::Transient(error.to_string()),
        }
    }
}

/// A campaign of the wanted name, as found.
enum Existing {
    None,
    /// Queued, scheduled, sending or sent: nothing more to do.
    Done(String),
    Cancelled(String),
    Draft(Campaign),
}

#[derive(Deserialize)]
struct Document<T> {
    data: T,
}

/// A list or a template.
#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    attributes: NamedAttributes,
}

#[derive(Deserialize, Default)]
struct NamedAttributes {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Campaign {
    id: String,
    attributes: CampaignAttributes,
    #[serde(default)]
    relationships: Option<CampaignRelationships>,
}

#[derive(Deserialize)]
struct CampaignAttributes {
    #[serde(default)]
    name: Option<String>,
    status: String,
    #[serde(default)]
    audiences: Option<Audiences>,
}

#[derive(Deserialize)]
struct Audiences {
    #[serde(default)]
    included: Vec<String>,
}

#[derive(Deserialize)]
struct CampaignRelationships {
    #[serde(rename = "campaign-messages", default)]
    messages: Option<Linkage>,
}

#[derive(Deserialize)]
struct Linkage {
    #[serde(default)]
    data: Option<Vec<Id>>,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
struct ImportJob {
    id: String,
    attributes: ImportJobAttributes,
}

#[derive(Deserialize)]
struct ImportJobAttributes {
    status: String,
    #[serde(default)]
    total_count: Option<u64>,
    #[serde(default)]
    failed_count: Option<u64>,
}

impl KlaviyoCampaigns {
    /// `from` is the sender `Name <addr>` (blank: the template's `from`).
    pub fn new(
        base_url: &str,
        api_key: Sensitive<String>,
        from: &str,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        join_url(UPSTREAM, base_url, "/api/campaigns")?;
        let creates = RetryPolicy {
            retry_ambiguous: false,
            retry_server_errors: false,
            ..options.retry.clone()
        };
        Ok(Self {
            http: build_client(UPSTREAM, options.timeout)?,
            base_url: base_url.to_owned(),
            api_key,
            from: from.trim().to_owned(),
            upstream: Upstream::new(UPSTREAM, options.retry),
            creates: Upstream::new(UPSTREAM, creates),
            import_poll: DEFAULT_IMPORT_POLL,
        })
    }

    /// How long to wait between polls of a profile bulk-import job (default 2 s; tests set 10 ms).
    pub fn with_import_poll(mut self, every: Duration) -> Self {
        self.import_poll = every;
        self
    }

    /// HTTP requests sent so far, retries included.
    pub fn attempts(&self) -> u64 {
        self.upstream.attempts() + self.creates.attempts()
    }

    /// One wave: one result per invitation, same order.
    pub async fn send(&self, letter: CampaignLetter<'_>, batch: &[Invitation]) -> Vec<MailResult> {
        let mut outcomes: Vec<Option<MailOutcome>> = vec![None; batch.len()];
        let (groups, overflow) = plan(batch);
        for index in overflow {
            outcomes[index] = Some(MailOutcome::Failed {
                reason: format!(
                    "more than {MAX_SLOTS} invitations of this wave go to one address, and a \
                     Klaviyo profile holds the values of {MAX_SLOTS}"
                ),
                transient: false,
            });
        }
        let from = if self.from.is_empty() {
            letter.template.from.trim()
        } else {
            self.from.as_str()
        };
        // Once Klaviyo fails, the rest of the wave waits for the next run.
        let mut failing: Option<String> = None;
        for group in &groups {
            let outcome = match &failing {
                Some(reason) => MailOutcome::NotAttempted {
                    reason: reason.clone(),
                },
                None => match self.send_group(letter, from, group, batch).await {
                    Ok(campaign_id) => MailOutcome::Sent {
                        provider: PROVIDER.into(),
                        message_id: Some(campaign_id),
                    },
                    Err(Failure::Permanent(reason)) => {
                        tracing::warn!(%reason, recipients = group.members.len(), "Klaviyo campaign group failed");
                        MailOutcome::Failed {
                            reason,
                            transient: false,
                        }
                    }
                    Err(Failure::Transient(reason)) => {
                        tracing::warn!(%reason, recipients = group.members.len(), "Klaviyo campaign group failed, for now");
                        failing = Some(format!(
                            "not attempted: Klaviyo failed earlier in this wave ({reason})"
                        ));
                        // Sent again under the same intent: resumed by name, never doubled.
                        MailOutcome::Uncertain { reason }
                    }
                },
            };
            for &index in &group.members {
                outcomes[index] = Some(outcome.clone());
            }
        }
        batch
            .iter()
            .zip(outcomes)
            .map(|(invitation, outcome)| MailResult {
                key: invitation.key,
                outcome: outcome.unwrap_or_else(|| MailOutcome::Failed {
                    reason: "the invitation was not sent".into(),
                    transient: true,
                }),
            })
            .collect()
    }

    /// Sends one group; answers the campaign's id.
    async fn send_group(
        &self,
        letter: CampaignLetter<'_>,
        from: &str,
        group: &Group,
        batch: &[Invitation],
    ) -> Result<String, Failure> {
        let shape = shape_id(&group.shape, group.slot);
        let campaign = name_part(&letter.wave.campaign);
        let name = format!(
            "autopilot {campaign} {} {shape}",
            name_part(&letter.wave.intent)
        );
        let template_name = format!("autopilot {campaign} {shape}");
        let mail = letter
            .template
            .render_batch_with(&group.shape, &SLOTS[group.slot])
            .map_err(|error| Failure::Permanent(error.to_string()))?;

        let draft = match self.find_campaign(&name).await? {
            Existing::Done(id) => {
                tracing::info!(campaign = %id, shape = %shape, "Klaviyo campaign already queued");
                return Ok(id);
            }
            Existing::Cancelled(status) => {
                return Err(Failure::Permanent(format!(
                    "the campaign was cancelled in Klaviyo ({status})"
                )))
            }
            Existing::Draft(campaign) => Some(campaign),
            Existing::None => None,
        };
        // A draft goes to the list it was made for.
        let audience = draft
            .as_ref()
            .and_then(|c| c.attributes.audiences.as_ref())
            .and_then(|a| a.included.first().cloned());
        let list_id = match audience {
            Some(id) => checked(id, "the campaign's list")?,
            None => self.list(&name).await?,
        };
        let members: Vec<&Invitation> = group.members.iter().map(|&i| &batch[i]).collect();
        self.import(&list_id, group.slot, &members).await?;
        let template_id = self.template(&template_name, &mail).await?;
        let (campaign_id, message_id) = match draft {
            Some(campaign) => {
                let message = self.message_of(&campaign).await?;
                (checked(campaign.id, "the campaign")?, message)
            }
            None => {
                let deliver_at = letter.wave.deliver_at;
                self.create_campaign(&name, &list_id, &mail, from, deliver_at)
                    .await?
            }
        };
        self.assign(&message_id, &template_id).await?;
        self.start(&campaign_id).await?;
        tracing::info!(campaign = %campaign_id, shape = %shape, recipients = members.len(), "Klaviyo campaign queued");
        Ok(campaign_id)
    }

    async fn find_campaign(&self, name: &str) -> Result<Existing, UpstreamError> {
        // `name` takes `contains` only on this endpoint; the exact name is matched below.
        let filter = format!("and(equals(messages.channel,'email'),contains(name,\"{name}\"))");
        let page: Document<Vec<Campaign>> = self
            .get(
                "the campaign lookup",
                "/api/campaigns",
                &[("filter", &filter), ("sort", "created_at")],
            )
            .await?;
        let matching: Vec<Campaign> = page
            .data
            .into_iter()
            .filter(|c| c.attributes.name.as_deref() == Some(name))
            .collect();
        let status = |c: &Campaign| Status::of(&c.attributes.status);
        if let Some(done) = matching.iter().find(|c| status(c) == Status::Done) {
            return Ok(Existing::Done(checked(done.id.clone(), "the campaign")?));
        }
        if let Some(cancelled) = matching.iter().find(|c| status(c) == Status::Cancelled) {
            return Ok(Existing::Cancelled(cancelled.attributes.status.clone()));
        }
        Ok(matching
            .into_iter()
            .next()
            .map_or(Existing::None, Existing::Draft))
    }

    async fn list(&self, name: &str) -> Result<String, UpstreamError> {
        let filter = format!("equals(name,\"{name}\")");
        let page: Document<Vec<Named>> = self
            .get(
                "the list lookup",
                "/api/lists",
                &[("filter", &filter), ("sort", "created")],
            )
            .await?;
        if let Some(list) = page.data.into_iter().find(|l| named(l, name)) {
            return checked(list.id, "the list");
        }
        let body = json!({"data": {"type": "list", "attributes": {"name": name}}});
        let answer = self
            .write(
                &self.creates,
                Method::POST,
                "the lists endpoint",
                "/api/lists",
                &body,
            )
            .await?;
        let created: Document<Named> = parse("the new list", &answer)?;
        checked(created.data.id, "the new list")
    }

    /// Upserts the group's recipients into the list, one bulk-import job per chunk, and waits
    /// for each job to complete.
    async fn import(
        &self,
        list_id: &str,
        slot: usize,
        members: &[&Invitation],
    ) -> Result<(), Failure> {
        for chunk in profile_chunks(members, slot) {
            let body = json!({
                "data": {
                    "type": "profile-bulk-import-job",
                    "attributes": {"profiles": {"data": chunk}},
                    "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
                }
            });
            let answer = self
                .write(
                    &self.upstream,
                    Method::POST,
                    "the profile import endpoint",
                    "/api/profile-bulk-import-jobs",
                    &body,
                )
                .await?;
            let job: Document<ImportJob> = parse("the new profile import job", &answer)?;
            self.await_import(job.data).await?;
        }
        Ok(())
    }

    async fn await_import(&self, job: ImportJob) -> Result<(), Failure> {
        let id = checked(job.id, "the profile import job")?;
        let mut attributes = job.attributes;
        let mut polls = 0;
        loop {
            match attributes.status.to_ascii_lowercase().as_str() {
                "complete" => {
                    if let Some(failed) = attributes.failed_count.filter(|&n| n > 0) {
                        tracing::warn!(job = %id, failed, total = attributes.total_count, "Klaviyo could not import some profiles");
                    }
                    return Ok(());
                }
                "cancelled" => {
                    return Err(Failure::Transient(format!(
                        "Klaviyo cancelled the profile import job {id}"
                    )))
                }
                _ => {}
            }
            if polls >= MAX_IMPORT_POLLS {
                return Err(Failure::Transient(format!(
                    "Klaviyo's profile import job {id} did not complete within {MAX_IMPORT_POLLS} polls"
                )));
            }
            polls += 1;
            tokio::time::sleep(self.import_poll).await;
            let path = format!("/api/profile-bulk-import-jobs/{id}");
            let doc: Document<ImportJob> = self.get("the profile import job", &path, &[]).await?;
            attributes = doc.data.attributes;
        }
    }

    async fn template(&self, name: &str, mail: &RenderedMail) -> Result<String, UpstreamError> {
        let filter = format!("equals(name,\"{name}\")");
        let page: Document<Vec<Named>> = self
            .get(
                "the template lookup",
                "/api/templates",
                &[
                    ("filter", &filter),
                    ("sort", "created"),
                    ("fields[template]", "name,html,text"),
                ],
            )
            .await?;
        if let Some(found) = page.data.into_iter().find(|t| named(t, name)) {
            let id = checked(found.id, "the template")?;
            let current = found.attributes.html.as_deref() == Some(mail.html.as_str())
                && found.attributes.text.as_deref() == Some(mail.text.as_str());
            if !current {
                // The campaign's template changed since an earlier wave.
                let body = json!({
                    "data": {
                        "type": "template",
                        "id": id,
                        "attributes": {"html": mail.html, "text": mail.text},
                    }
                });
                let path = format!("/api/templates/{id}");
                self.write(&self.upstream, Method::PATCH, "the template", &path, &body)
                    .await?;
            }
            return Ok(id);
        }
        let body = json!({
            "data": {
                "type": "template",
                "attributes": {
                    "name": name,
                    "editor_type": "CODE",
                    "html": mail.html,
                    "text": mail.text,
                },
            }
        });
        let answer = self
            .write(
                &self.creates,
                Method::POST,
                "the templates endpoint",
                "/api/templates",
                &body,
            )
            .await?;
        let created: Document<Named> = parse("the new template", &answer)?;
        checked(created.data.id, "the new template")
    }

    /// Creates the campaign; answers its id and its message's id.
    async fn create_campaign(
        &self,
        name: &str,
        list_id: &str,
        mail: &RenderedMail,
        from: &str,
        deliver_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(String, String), UpstreamError> {
        // A time already past would be refused: the wave goes at once instead.
        let send_strategy = match deliver_at.filter(|at| *at > chrono::Utc::now()) {
            Some(at) => json!({
                "method": "static",
                "datetime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                "options": {"is_local": false},
            }),
            None => json!({"method": "immediate"}),
        };
        let (label, address) = sender(from);
        let mut content = Map::new();
        content.insert("subject".into(), mail.subject.clone().into());
        if let Some(address) = address {
            content.insert("from_email".into(), address.into());
        }
        if let Some(label) = label {
            content.insert("from_label".into(), label.into());
        }
        let body = json!({
            "data": {
                "type": "campaign",
                "attributes": {
                    "name": name,
                    "audiences": {"included": [list_id]},
                    "send_strategy": send_strategy,
                    // Smart Sending would skip whoever got any email lately.
                    "send_options": {"use_smart_sending": false},
                    "campaign-messages": {"data": [{
                        "type": "campaign-message",
                        "attributes": {"definition": {
                            "channel": "email",
                            "label": name,
                            "content": content,
                        }},
                    }]},
                },
            }
        });
        let answer = self
            .write(
                &self.creates,
                Method::POST,
                "the campaigns endpoint",
                "/api/campaigns",
                &body,
            )
            .await?;
        let created: Document<Campaign> = parse("the new campaign", &answer)?;
        let message = self.message_of(&created.data).await?;
        Ok((checked(created.data.id, "the new campaign")?, message))
    }

    /// The campaign's (only) message: from its relationships, else asked.
    async fn message_of(&self, campaign: &Campaign) -> Result<String, UpstreamError> {
        let linked = campaign
            .relationships
            .as_ref()
            .and_then(|r| r.messages.as_ref())
            .and_then(|m| m.data.as_ref())
            .and_then(|data| data.first());
        if let Some(message) = linked {
            return checked(message.id.clone(), "the campaign message");
        }
        let id = checked(campaign.id.clone(), "the campaign")?;
        let path = format!("/api/campaigns/{id}/campaign-messages");
        let messages: Document<Vec<Id>> = self.get("the campaign's messages", &path, &[]).await?;
        match messages.data.into_iter().next() {
            Some(message) => checked(message.id, "the campaign message"),
            None => Err(UpstreamError::Malformed {
                upstream: UPSTREAM,
                reason: format!("the campaign {id} has no message"),
            }),
        }
    }

    async fn assign(&self, message_id: &str, template_id: &str) -> Result<(), UpstreamError> {
        let body = json!({
            "data": {
                "type": "campaign-message",
                "id": message_id,
                "relationships": {"template": {"data": {"type": "template", "id": template_id}}},
            }
        });
        self.write(
            &self.upstream,
            Method::POST,
            "the template assignment",
            "/api/campaign-message-assign-template",
            &body,
        )
        .await
        .map(drop)
    }

    /// Posts the send job. Refused (other than for credentials, a missing campaign or a rate
    /// limit) or unanswered, the campaign is read back: no longer a draft, it was queued —
    /// by this request or by an earlier one whose answer was lost.
    async fn start(&self, campaign_id: &str) -> Result<(), Failure> {
        let body = json!({"data": {"type": "campaign-send-job", "id": campaign_id}});
        let error = match self
            .write(
                &self.creates,
                Method::POST,
                "the campaign send job",
                "/api/campaign-send-jobs",
                &body,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        if matches!(
            error,
            UpstreamError::Unauthorized { .. }
                | UpstreamError::NotFound { .. }
                | UpstreamError::RateLimited { .. }
        ) {
            return Err(error.into());
        }
        let path = format!("/api/campaigns/{campaign_id}");
        match self
            .get::<Document<Campaign>>("the campaign", &path, &[])
            .await
        {
            Ok(campaign) => match Status::of(&campaign.data.attributes.status) {
                Status::Done => Ok(()),
                Status::Cancelled => Err(Failure::Permanent(format!(
                    "the campaign was cancelled in Klaviyo ({})",
                    campaign.data.attributes.status
                ))),
                Status::Draft => Err(error.into()),
            },
            Err(_) => Err(Failure::Transient(error.to_string())),
        }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, UpstreamError> {
        let mut url = join_url(UPSTREAM, &self.base_url, path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    fn request(&self, method: Method, url: &Url, body: Option<&Bytes>) -> RequestBuilder {
        let request = self
            .http
            .request(method, url.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Klaviyo-API-Key {}", self.api_key.expose()),
            )
            .header("revision", KLAVIYO_REVISION)
            .header(reqwest::header::ACCEPT, JSON_API);
        match body {
            Some(body) => request
                .header(reqwest::header::CONTENT_TYPE, JSON_API)
                .body(body.clone()),
            None => request,
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, UpstreamError> {
        let url = self.url(path, query)?;
        let answer = self
            .upstream
            .send(what, || self.request(Method::GET, &url, None))
            .await?;
        parse(what, &answer.body)
    }

    async fn write(
        &self,
        upstream: &Upstream,
        method: Method,
        what: &str,
        path: &str,
        body: &Value,
    ) -> Result<Bytes, UpstreamError> {
        let url = self.url(path, &[])?;
        let body = Bytes::from(
            serde_json::to_vec(body).map_err(|_| UpstreamError::Transport {
                upstream: UPSTREAM,
                reason: format!("cannot encode the request to {what}"),
            })?,
        );
        let answer = upstream
            .send(what, || self.request(method.clone(), &url, Some(&body)))
            .await?;
        Ok(answer.body)
    }
}

/// What a campaign's status means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Draft,
    Cancelled,
    /// Scheduled, queued, sending, sent…: Klaviyo has it.
    Done,
}

impl Status {
    fn of(status: &str) -> Self {
        let status = status.trim();
        if status.eq_ignore_ascii_case("draft") {
            Self::Draft
        } else if status.to_ascii_lowercase().starts_with("cancelled") {
            Self::Cancelled
        } else {
            Self::Done
        }
    }
}

/// Groups by content and slot, in order of first appearance; and the invitations of an address
/// beyond [`MAX_SLOTS`]. Slots go by attendee key, so a batch in another order gets the same.
fn plan(batch: &[Invitation]) -> (Vec<Group>, Vec<usize>) {
    let mut keys_of: HashMap<String, Vec<AttendeeKey>> = HashMap::new();
    for invitation in batch {
        let keys = keys_of.entry(address(invitation)).or_default();
        if !keys.contains(&invitation.key) {
            keys.push(invitation.key);
        }
    }
    for keys in keys_of.values_mut() {
        keys.sort();
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut index_of: HashMap<(BatchShape, usize), usize> = HashMap::new();
    let mut overflow = Vec::new();
    for (index, invitation) in batch.iter().enumerate() {
        let slot = keys_of
            .get(&address(invitation))
            .and_then(|keys| keys.iter().position(|key| *key == invitation.key))
            .unwrap_or(0);
        if slot >= MAX_SLOTS {
            overflow.push(index);
            continue;
        }
        let shape = BatchShape::of(invitation);
        match index_of.get(&(shape.clone(), slot)) {
            Some(&at) => groups[at].members.push(index),
            None => {
                index_of.insert((shape.clone(), slot), groups.len());
                groups.push(Group {
                    shape,
                    slot,
                    members: vec![index],
                });
            }
        }
    }
    (groups, overflow)
}

fn address(invitation: &Invitation) -> String {
    invitation.email.expose().to_lowercase()
}

/// The first 8 hex digits of SHA-256 over the shape's fields (each length-prefixed), with
/// `-n` for the n-th slot.
fn shape_id(shape: &BatchShape, slot: usize) -> String {
    fn put(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let mut hasher = Sha256::new();
    put(&mut hasher, shape.event_name.as_bytes());
    put(&mut hasher, shape.ticket_name.as_bytes());
    put(&mut hasher, &(shape.links.len() as u64).to_le_bytes());
    for link in &shape.links {
        put(&mut hasher, link.label.as_bytes());
        put(&mut hasher, link.url.as_bytes());
    }
    match &shape.venue_url {
        Some(venue) => {
            put(&mut hasher, &[1]);
            put(&mut hasher, venue.as_bytes());
        }
        None => put(&mut hasher, &[0]),
    }
    put(
        &mut hasher,
        &[
            u8::from(shape.has_name),
            u8::from(shape.has_checkin_code),
            u8::from(shape.has_reg_no),
        ],
    );
    let id = hex::encode(&hasher.finalize()[..4]);
    if slot == 0 {
        id
    } else {
        format!("{id}-{}", slot + 1)
    }
}

/// A name part safe inside a quoted filter value.
fn name_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn named(resource: &Named, name: &str) -> bool {
    resource
        .attributes
        .name
        .as_deref()
        .is_none_or(|found| found == name)
}

/// `autopilot_checkin_code` for the first slot, `autopilot_checkin_code_2` for the second…
fn property(base: &str, slot: usize) -> String {
    if slot == 0 {
        base.to_owned()
    } else {
        format!("{base}_{}", slot + 1)
    }
}

fn profile(invitation: &Invitation, slot: usize) -> Value {
    let mut properties = Map::new();
    if let Some(code) = invitation.checkin_code.as_deref().filter(|c| !c.is_empty()) {
        properties.insert(property("autopilot_checkin_code", slot), code.into());
    }
    if let Some(reg_no) = invitation.reg_no {
        properties.insert(property("autopilot_reg_no", slot), reg_no.into());
    }
    properties.insert(
        property("autopilot_key", slot),
        invitation.key.to_string().into(),
    );
    let mut attributes = Map::new();
    attributes.insert("email".into(), invitation.email.expose().into());
    let name = invitation.name.expose().trim();
    if !name.is_empty() {
        if slot == 0 {
            attributes.insert("first_name".into(), name.into());
        } else {
            properties.insert(property("autopilot_name", slot), name.into());
        }
    }
    attributes.insert("properties".into(), Value::Object(properties));
    json!({"type": "profile", "attributes": attributes})
}

/// The group's profiles (one per address), in jobs of at most [`MAX_PROFILES_PER_JOB`]
/// profiles and about [`MAX_JOB_BYTES`].
fn profile_chunks(members: &[&Invitation], slot: usize) -> Vec<Vec<Value>> {
    let mut seen = HashSet::new();
    let mut chunks: Vec<Vec<Value>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for invitation in members {
        if !seen.insert(address(invitation)) {
            continue;
        }
        let profile = profile(invitation, slot);
        let size = serde_json::to_vec(&profile).map_or(0, |b| b.len() + 1);
        if !current.is_empty()
            && (current.len() >= MAX_PROFILES_PER_JOB || bytes + size > MAX_JOB_BYTES)
        {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(profile);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// `Name <addr>` as Klaviyo's `from_label` and `from_email`; a bare address has no label.
fn sender(from: &str) -> (Option<String>, Option<String>) {
    let from = from.trim();
    let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    match from.rfind('<') {
        Some(open) if from.ends_with('>') => {
            let address = from[open + 1..from.len() - 1].trim();
            let label = from[..open].trim().trim_matches('"').trim();
            (non_empty(label), non_empty(address))
        }
        _ => (None, non_empty(from)),
    }
}

/// An id Klaviyo gave, checked before it goes into a path or a body.
fn checked(id: String, what: &str) -> Result<String, UpstreamError> {
    if !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(id)
    } else {
        Err(UpstreamError::Malformed {
            upstream: UPSTREAM,
            reason: format!("{what} has no usable id"),
        })
    }
}

/// A JSON:API answer; the error names where it broke, never what it read (bodies may hold
/// personal data).
fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, UpstreamError> {
    serde_json::from_slice(body).map_err(|error| {
        let kind = match error.classify() {
            serde_json::error::Category::Data => "is not the JSON:API document expected",
            _ => "does not read as JSON",
        };
        UpstreamError::Malformed {
            upstream: UPSTREAM,
            reason: format!(
                "{what} {kind} (line {}, column {})",
                error.line(),
                error.column()
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_splits_into_label_and_address() {
        assert_eq!(
            sender("PyCon Taiwan <registration@pycon.tw>"),
            (
                Some("PyCon Taiwan".into()),
                Some("registration@pycon.tw".into())
            )
        );
        assert_eq!(
            sender("\"A, B\" <a@b.c>"),
            (Some("A, B".into()), Some("a@b.c".into()))
        );
        assert_eq!(sender("a@b.c"), (None, Some("a@b.c".into())));
        assert_eq!(sender("  "), (None, None));
    }

    #[test]
    fn statuses() {
        assert_eq!(Status::of("Draft"), Status::Draft);
        assert_eq!(Status::of("Cancelled: No Recipients"), Status::Cancelled);
        for done in ["Scheduled", "Sending", "Sent", "Queued without Recipients"] {
            assert_eq!(Status::of(done), Status::Done);
        }
    }

    #[test]
    fn name_parts_stay_inside_quotes() {
        assert_eq!(name_part("run-1.2"), "run-1.2");
        assert_eq!(name_part("a\"b) c"), "a_b__c");
    }
}
