//! Mailgun batch sending: `POST /v3/{domain}/messages` with up to [`MAILGUN_BATCH_LIMIT`]
//! recipients and `recipient-variables`, so Mailgun sends each recipient their own message
//! from one request.
//!
//! Invitations that share their content (event, ticket, links, venue — see [`BatchShape`])
//! are rendered once with `%recipient.…%` placeholders and sent in chunks: 1,000 invitations
//! of one ticket type are one request.
//!
//! A send is not idempotent (Mailgun has no deduplication key), so a request whose outcome is
//! unknown — a timeout, a connection lost after sending, and a 5xx (Mailgun answers 5xx to
//! batches it did queue) — is never repeated: it is [`MailOutcome::Uncertain`], and the
//! poller settles it later from Mailgun's Events API (`GET /v3/{domain}/events`, accepted
//! events carrying the send's intent as a custom variable), sending again only to the
//! recipients Mailgun did not accept. 429 (after its `Retry-After`) and refused connections —
//! never queued — are retried. A 400 for a batch is one refused recipient somewhere in it: the
//! batch is halved until the refused ones stand alone, and only they fail, for good.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use url::Url;

use super::template::{escape_html, BatchShape};
use super::{
    CampaignLetter, CampaignWave, Invitation, MailOutcome, MailProvider, MailResult, MailTemplate,
    SettleQuery, SettleResult, Settlement,
};
use crate::model::AttendeeKey;
use crate::pii::Sensitive;
use crate::upstream::{build_client, join_url, HttpOptions, RetryPolicy, Upstream, UpstreamError};

/// Recipients Mailgun accepts in one batch-sending call.
pub const MAILGUN_BATCH_LIMIT: usize = 1000;

const UPSTREAM: &str = "Mailgun";
const PROVIDER: &str = "mailgun";
/// Mailgun keeps at most three tags per message.
const MAX_TAGS: usize = 3;
/// Mailgun's longest tag.
const MAX_TAG_LEN: usize = 128;

/// Pages of the Events API read for one settlement at most.
const MAX_EVENT_PAGES: usize = 200;

pub struct MailgunProvider {
    http: reqwest::Client,
    url: Url,
    events_url: Url,
    settle_after: Duration,
    api_key: Sensitive<String>,
    from: String,
    tags: Vec<String>,
    upstream: Upstream,
}

/// Mailgun's answer to a send.
#[derive(Deserialize)]
struct Queued {
    id: Option<String>,
}

/// One recipient's entry in `recipient-variables`.
#[derive(Serialize)]
struct RecipientVariables<'a> {
    name: &'a str,
    name_html: String,
    checkin_code: &'a str,
    checkin_code_html: String,
    reg_no: String,
    key: String,
}

impl MailgunProvider {
    /// `from` is the sender; when blank, the template's sender is used. `tags` are extra tags
    /// beside the event and ticket ones (Mailgun keeps three per message, so only the first
    /// fits).
    pub fn new(
        base_url: &str,
        api_key: Sensitive<String>,
        domain: &str,
        from: &str,
        tags: Vec<String>,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        let domain = domain.trim();
        let bad_domain = domain.is_empty()
            || domain
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/?#%\\".contains(c));
        if bad_domain {
            return Err(UpstreamError::Transport {
                upstream: UPSTREAM,
                reason: "invalid sending domain".into(),
            });
        }
        Ok(Self {
            http: build_client(UPSTREAM, options.timeout)?,
            url: join_url(UPSTREAM, base_url, &format!("/v3/{domain}/messages"))?,
            events_url: join_url(UPSTREAM, base_url, &format!("/v3/{domain}/events"))?,
            settle_after: Duration::ZERO,
            api_key,
            from: from.trim().to_owned(),
            tags: tags
                .iter()
                .map(|tag| tag_of(tag))
                .filter(|tag| !tag.is_empty())
                .collect(),
            upstream: Upstream::new(
                UPSTREAM,
                RetryPolicy {
                    retry_ambiguous: false,
                    retry_server_errors: false,
                    ..options.retry
                },
            ),
        })
    }

    /// How long after an uncertain send Mailgun's events are trusted to be complete.
    pub fn with_settle_after(mut self, settle_after: Duration) -> Self {
        self.settle_after = settle_after;
        self
    }

    /// HTTP requests sent so far, retries included.
    pub fn attempts(&self) -> u64 {
        self.upstream.attempts()
    }

    /// `o:tag` values: the event, the ticket and the first configured tag, deduplicated.
    /// A campaign's letters carry `campaign-NAME` first, then the event and the ticket.
    fn tags_for(&self, shape: &BatchShape, wave: Option<&CampaignWave>) -> Vec<String> {
        let mut tags: Vec<String> = Vec::with_capacity(MAX_TAGS);
        let candidates = wave
            .map(|wave| tag_of(&format!("campaign-{}", wave.campaign)))
            .into_iter()
            .chain([tag_of(&shape.event_name), tag_of(&shape.ticket_name)])
            .chain(self.tags.iter().cloned());
        for tag in candidates {
            if tags.len() == MAX_TAGS {
                break;
            }
            if !tag.is_empty() && !tags.iter().any(|t| t.eq_ignore_ascii_case(&tag)) {
                tags.push(tag);
            }
        }
        tags
    }

    /// The form of one request: the shared message and one `to` per recipient.
    fn form(
        &self,
        from: &str,
        mail: &super::RenderedMail,
        tags: &[String],
        chunk: &[&Invitation],
        wave: Option<&CampaignWave>,
    ) -> Result<Vec<(&'static str, String)>, String> {
        let mut variables = serde_json::Map::with_capacity(chunk.len());
        for invitation in chunk {
            let name = invitation.name.expose().trim();
            let checkin_code = invitation.checkin_code.as_deref().unwrap_or_default();
            let entry = RecipientVariables {
                name,
                name_html: escape_html(name),
                checkin_code,
                checkin_code_html: escape_html(checkin_code),
                reg_no: invitation.reg_no.map(|n| n.to_string()).unwrap_or_default(),
                key: invitation.key.to_string(),
            };
            let value = serde_json::to_value(entry)
                .map_err(|_| "cannot encode the recipient variables".to_owned())?;
            variables.insert(invitation.email.expose().to_owned(), value);
        }
        let mut form: Vec<(&'static str, String)> = Vec::with_capacity(chunk.len() + 16);
        form.push(("from", from.to_owned()));
        form.extend(
            chunk
                .iter()
                .map(|invitation| ("to", invitation.email.expose().to_owned())),
        );
        form.push(("subject", mail.subject.clone()));
        form.push(("text", mail.text.clone()));
        form.push(("html", mail.html.clone()));
        form.push((
            "recipient-variables",
            serde_json::Value::Object(variables).to_string(),
        ));
        form.extend(tags.iter().map(|tag| ("o:tag", tag.clone())));
        form.push(("o:tracking", "yes".into()));
        form.push(("o:tracking-clicks", "htmlonly".into()));
        form.push(("o:tracking-opens", "yes".into()));
        form.push(("v:autopilot-key", "%recipient.key%".into()));
        let intent = wave
            .map(|wave| wave.intent.as_str())
            .or_else(|| chunk.first().and_then(|i| i.intent.as_deref()));
        if let Some(intent) = intent {
            form.push(("v:autopilot-intent", intent.to_owned()));
        }
        if let Some(wave) = wave {
            form.push(("v:autopilot-campaign", wave.campaign.clone()));
            if let Some(at) = wave.deliver_at {
                form.push(("o:deliverytime", at.to_rfc2822()));
            }
        }
        Ok(form)
    }

    /// One request for `chunk`; on a 400 (one refused recipient somewhere) the chunk is
    /// halved until the refused recipients stand alone. One outcome per invitation.
    fn send_chunk<'a>(
        &'a self,
        from: &'a str,
        mail: &'a super::RenderedMail,
        tags: &'a [String],
        chunk: &'a [&'a Invitation],
        wave: Option<&'a CampaignWave>,
    ) -> BoxFuture<'a, Vec<MailOutcome>> {
        Box::pin(async move {
            let form = match self.form(from, mail, tags, chunk, wave) {
                Ok(form) => form,
                Err(reason) => {
                    return vec![
                        MailOutcome::Failed {
                            reason,
                            transient: false,
                        };
                        chunk.len()
                    ]
                }
            };
            let answer = self
                .upstream
                .send("the sending domain", || {
                    self.http
                        .post(self.url.clone())
                        .basic_auth("api", Some(self.api_key.expose()))
                        .form(&form)
                })
                .await;
            let error = match answer {
                // A 2xx means Mailgun queued the batch, whether or not its answer reads.
                Ok(success) => {
                    let message_id = serde_json::from_slice::<Queued>(&success.body)
                        .ok()
                        .and_then(|queued| queued.id)
                        .filter(|id| !id.is_empty());
                    return vec![
                        MailOutcome::Sent {
                            provider: PROVIDER.into(),
                            message_id,
                        };
                        chunk.len()
                    ];
                }
                Err(error) => error,
            };
            match &error {
                UpstreamError::Rejected { status: 400, .. } if chunk.len() > 1 => {
                    let (left, right) = chunk.split_at(chunk.len() / 2);
                    let mut outcomes = self.send_chunk(from, mail, tags, left, wave).await;
                    if let Some(failing) = outcomes.iter().find(|o| o.provider_failing()) {
                        let reason = not_attempted(failing);
                        outcomes.extend(vec![MailOutcome::NotAttempted { reason }; right.len()]);
                    } else {
                        outcomes.extend(self.send_chunk(from, mail, tags, right, wave).await);
                    }
                    outcomes
                }
                UpstreamError::Rejected { status: 400, .. } => vec![MailOutcome::Failed {
                    reason: "Mailgun refused this recipient (HTTP 400)".into(),
                    transient: false,
                }],
                // Answered before queuing anything: safe to send again later.
                UpstreamError::RateLimited { .. }
                | UpstreamError::Unauthorized { .. }
                | UpstreamError::NotFound { .. }
                | UpstreamError::Rejected { .. } => vec![
                    MailOutcome::Failed {
                        reason: error.to_string(),
                        transient: true,
                    };
                    chunk.len()
                ],
                UpstreamError::Transport { reason, .. } if reason == "connection failed" => {
                    vec![
                        MailOutcome::Failed {
                            reason: error.to_string(),
                            transient: true,
                        };
                        chunk.len()
                    ]
                }
                // A 5xx, a timeout, a connection lost or a body cut short after sending:
                // Mailgun may have queued it.
                _ => vec![
                    MailOutcome::Uncertain {
                        reason: error.to_string(),
                    };
                    chunk.len()
                ],
            }
        })
    }

    /// Accepted events of the window, following `paging.next`: the attendee keys each of
    /// `intents` reached.
    async fn accepted_since(
        &self,
        since: chrono::DateTime<Utc>,
        intents: &HashSet<&str>,
    ) -> Result<HashMap<String, HashSet<AttendeeKey>>, UpstreamError> {
        let mut url = self.events_url.clone();
        url.query_pairs_mut()
            .append_pair("event", "accepted")
            .append_pair("begin", &since.timestamp().to_string())
            .append_pair("end", &Utc::now().timestamp().to_string())
            .append_pair("ascending", "yes")
            .append_pair("limit", "300");
        let mut accepted: HashMap<String, HashSet<AttendeeKey>> = HashMap::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_EVENT_PAGES {
            if !seen.insert(url.to_string()) {
                break;
            }
            let page = self
                .upstream
                .send("the events of the sending domain", || {
                    self.http
                        .get(url.clone())
                        .basic_auth("api", Some(self.api_key.expose()))
                })
                .await?;
            let page: EventsPage =
                serde_json::from_slice(&page.body).map_err(|_| UpstreamError::Malformed {
                    upstream: UPSTREAM,
                    reason: "an events page that does not read".into(),
                })?;
            if page.items.is_empty() {
                return Ok(accepted);
            }
            for item in &page.items {
                let variables = &item.user_variables;
                let (Some(intent), Some(key)) = (
                    variables.get("autopilot-intent").and_then(|v| v.as_str()),
                    variables
                        .get("autopilot-key")
                        .and_then(|v| v.as_str())
                        .and_then(parse_key),
                ) else {
                    continue;
                };
                if intents.contains(intent) {
                    accepted.entry(intent.to_owned()).or_default().insert(key);
                }
            }
            let Some(next) = page.paging.and_then(|paging| paging.next) else {
                return Ok(accepted);
            };
            // The next page must be Mailgun's own (the API key goes with the request); one
            // that is not is an answer cut short, never "nothing more was accepted".
            match Url::parse(&next) {
                Ok(next) if next.host_str() == self.events_url.host_str() => url = next,
                _ => {
                    return Err(UpstreamError::Malformed {
                        upstream: UPSTREAM,
                        reason: "an events page whose next page is not on Mailgun's host".into(),
                    })
                }
            }
        }
        Err(UpstreamError::Malformed {
            upstream: UPSTREAM,
            reason: format!("the events pages do not end within {MAX_EVENT_PAGES} pages"),
        })
    }
}

fn not_attempted(failing: &MailOutcome) -> String {
    let cause = match failing {
        MailOutcome::Failed { reason, .. }
        | MailOutcome::Uncertain { reason }
        | MailOutcome::NotAttempted { reason } => reason.as_str(),
        MailOutcome::Sent { .. } => "",
    };
    format!("not attempted: Mailgun failed earlier in this run ({cause})")
}

/// `EVENT_ID/ATTENDEE_ID` as the `autopilot-key` custom variable carries it.
fn parse_key(text: &str) -> Option<AttendeeKey> {
    let (event, attendee) = text.split_once('/')?;
    Some(AttendeeKey {
        event_id: event.trim().parse().ok()?,
        attendee_id: attendee.trim().parse().ok()?,
    })
}

/// One page of `GET /v3/{domain}/events`.
#[derive(Deserialize)]
struct EventsPage {
    #[serde(default)]
    items: Vec<EventItem>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct EventItem {
    #[serde(default, rename = "user-variables")]
    user_variables: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Paging {
    next: Option<String>,
}

#[async_trait]
impl MailProvider for MailgunProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn settle(&self, queries: &[SettleQuery]) -> Vec<SettleResult> {
        self.settle_queries(queries).await
    }

    /// `resend` changes nothing: Mailgun does not deduplicate.
    async fn send(
        &self,
        template: &MailTemplate,
        batch: &[Invitation],
        _resend: bool,
    ) -> Vec<MailResult> {
        self.send_all(template, batch, None).await
    }

    /// Sent like invitations, tagged `campaign-NAME`, with `o:deliverytime` when scheduled and
    /// the wave's intent on every message: an uncertain batch is settled from the Events API.
    async fn send_campaign(
        &self,
        letter: CampaignLetter<'_>,
        batch: &[Invitation],
    ) -> Vec<MailResult> {
        self.send_all(letter.template, batch, Some(letter.wave))
            .await
    }
}

impl MailgunProvider {
    async fn send_all(
        &self,
        template: &MailTemplate,
        batch: &[Invitation],
        wave: Option<&CampaignWave>,
    ) -> Vec<MailResult> {
        let mut outcomes: Vec<Option<MailOutcome>> = vec![None; batch.len()];
        let from = if self.from.is_empty() {
            template.from.as_str()
        } else {
            self.from.as_str()
        };
        // Once Mailgun fails, the rest of the request waits for the next run: it would only
        // fail too (the next run's first batch is the probe).
        let mut failing: Option<String> = None;
        for (shape, members) in group(batch) {
            let mail = match template.render_batch(&shape) {
                Ok(mail) => mail,
                Err(error) => {
                    for &index in &members {
                        outcomes[index] = Some(MailOutcome::Failed {
                            reason: error.to_string(),
                            transient: false,
                        });
                    }
                    continue;
                }
            };
            let tags = self.tags_for(&shape, wave);
            for chunk in chunks(batch, &members) {
                if let Some(reason) = &failing {
                    for &index in &chunk {
                        outcomes[index] = Some(MailOutcome::NotAttempted {
                            reason: reason.clone(),
                        });
                    }
                    continue;
                }
                let invitations: Vec<&Invitation> = chunk.iter().map(|&i| &batch[i]).collect();
                let results = self
                    .send_chunk(from, &mail, &tags, &invitations, wave)
                    .await;
                if let Some(bad) = results.iter().find(|o| o.provider_failing()) {
                    failing = Some(not_attempted(bad));
                }
                for (&index, outcome) in chunk.iter().zip(results) {
                    outcomes[index] = Some(outcome);
                }
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
}

/// The settle half of [`MailProvider`] for Mailgun, kept beside `send`.
impl MailgunProvider {
    async fn settle_queries(&self, queries: &[SettleQuery]) -> Vec<SettleResult> {
        let Some(earliest) = queries.iter().map(|q| q.since).min() else {
            return Vec::new();
        };
        let intents: HashSet<&str> = queries.iter().map(|q| q.intent.as_str()).collect();
        // From a little before the earliest intent: clocks differ.
        let since = earliest - chrono::Duration::minutes(2);
        let accepted = match self.accepted_since(since, &intents).await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Never guessed: the batch waits until Mailgun can say.
                return queries
                    .iter()
                    .map(|query| SettleResult {
                        intent: query.intent.clone(),
                        settlement: Settlement::Pending {
                            accepted: Vec::new(),
                            reason: format!("Mailgun's events cannot be read: {error}"),
                            failed: true,
                        },
                    })
                    .collect();
            }
        };
        let now = Utc::now();
        let settle_after =
            chrono::Duration::from_std(self.settle_after).unwrap_or(chrono::Duration::MAX);
        queries
            .iter()
            .map(|query| {
                let found = accepted.get(&query.intent);
                let keys: Vec<AttendeeKey> = query
                    .keys
                    .iter()
                    .copied()
                    .filter(|key| found.is_some_and(|f| f.contains(key)))
                    .collect();
                let complete = keys.len() == query.keys.len() || now - query.since >= settle_after;
                SettleResult {
                    intent: query.intent.clone(),
                    settlement: if complete {
                        Settlement::Settled { accepted: keys }
                    } else {
                        Settlement::Pending {
                            accepted: keys,
                            reason: format!(
                                "waiting until Mailgun's events are complete ({} after the send)",
                                humantime::format_duration(self.settle_after)
                            ),
                            failed: false,
                        }
                    },
                }
            })
            .collect()
    }
}

/// Invitations by the content they share, in order of first appearance; members as indices.
fn group(batch: &[Invitation]) -> Vec<(BatchShape, Vec<usize>)> {
    let mut groups: Vec<(BatchShape, Vec<usize>)> = Vec::new();
    let mut index_of: HashMap<BatchShape, usize> = HashMap::new();
    for (index, invitation) in batch.iter().enumerate() {
        let shape = BatchShape::of(invitation);
        match index_of.get(&shape) {
            Some(&at) => groups[at].1.push(index),
            None => {
                index_of.insert(shape.clone(), groups.len());
                groups.push((shape, vec![index]));
            }
        }
    }
    groups
}

/// Splits a group into requests of at most [`MAILGUN_BATCH_LIMIT`] recipients, none of which
/// holds one address twice: `recipient-variables` is keyed by address, so a buyer with two
/// tickets of one type goes out in two requests, each with its own key.
fn chunks(batch: &[Invitation], members: &[usize]) -> Vec<Vec<usize>> {
    let mut chunks: Vec<(Vec<usize>, HashSet<String>)> = Vec::new();
    for &index in members {
        let address = batch[index].email.expose().to_lowercase();
        let slot = chunks.iter().position(|(chunk, seen)| {
            chunk.len() < MAILGUN_BATCH_LIMIT && !seen.contains(&address)
        });
        let at = match slot {
            Some(at) => at,
            None => {
                chunks.push((Vec::new(), HashSet::new()));
                chunks.len() - 1
            }
        };
        chunks[at].0.push(index);
        chunks[at].1.insert(address);
    }
    chunks.into_iter().map(|(chunk, _)| chunk).collect()
}

/// A Mailgun tag: ASCII only, at most 128 characters. Printable ASCII stays; anything else
/// (and `%`) is percent-encoded as UTF-8, so `年會` stays distinct from `大會`; a cut never
/// splits an escape.
fn tag_of(raw: &str) -> String {
    let mut tag = String::new();
    for c in raw.trim().chars() {
        let piece = if (c.is_ascii_graphic() && c != '%') || c == ' ' {
            c.to_string()
        } else {
            let mut buffer = [0u8; 4];
            c.encode_utf8(&mut buffer)
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect()
        };
        if tag.len() + piece.len() > MAX_TAG_LEN {
            break;
        }
        tag.push_str(&piece);
    }
    tag.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_ascii_and_short() {
        assert_eq!(tag_of(" PyCon TW 2026 "), "PyCon TW 2026");
        assert_eq!(tag_of("年會"), "%E5%B9%B4%E6%9C%83");
        assert_eq!(tag_of("100%"), "100%25");
        let long = tag_of(&"票".repeat(100));
        assert!(long.len() <= MAX_TAG_LEN && long.is_ascii());
        assert_eq!(long.len() % 9, 0, "{long}");
        assert_eq!(tag_of(&"a".repeat(200)).len(), MAX_TAG_LEN);
    }
}
