//! Mailgun batch sending: `POST /v3/{domain}/messages` with up to [`MAILGUN_BATCH_LIMIT`]
//! recipients and `recipient-variables`, so Mailgun sends each recipient their own message
//! from one request.
//!
//! Invitations that share their content (event, ticket, links, venue — see [`BatchShape`])
//! are rendered once with `%recipient.…%` placeholders and sent in chunks: 1,000 invitations
//! of one ticket type are one request.
//!
//! A send is not idempotent (Mailgun has no deduplication key), so a request whose outcome is
//! unknown — a timeout, a connection lost after sending — is not repeated: it fails as
//! transient and the ledger decides. 429 (after its `Retry-After`), 5xx and refused
//! connections are retried.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use url::Url;

use super::template::{escape_html, BatchShape};
use super::{Invitation, MailOutcome, MailProvider, MailResult, MailTemplate};
use crate::pii::Sensitive;
use crate::upstream::{build_client, join_url, HttpOptions, RetryPolicy, Upstream, UpstreamError};

pub const MAILGUN_DEFAULT_API_BASE: &str = "https://api.mailgun.net";
/// Recipients Mailgun accepts in one batch-sending call.
pub const MAILGUN_BATCH_LIMIT: usize = 1000;

const UPSTREAM: &str = "Mailgun";
const PROVIDER: &str = "mailgun";
/// Mailgun keeps at most three tags per message.
const MAX_TAGS: usize = 3;
/// Mailgun's longest tag.
const MAX_TAG_LEN: usize = 128;

pub struct MailgunProvider {
    http: reqwest::Client,
    url: Url,
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
                    ..options.retry
                },
            ),
        })
    }

    /// HTTP requests sent so far, retries included.
    pub fn attempts(&self) -> u64 {
        self.upstream.attempts()
    }

    /// `o:tag` values: the event, the ticket and the first configured tag, deduplicated.
    fn tags_for(&self, shape: &BatchShape) -> Vec<String> {
        let mut tags: Vec<String> = Vec::with_capacity(MAX_TAGS);
        let candidates = [tag_of(&shape.event_name), tag_of(&shape.ticket_name)]
            .into_iter()
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
        Ok(form)
    }

    /// One request; the outcome of every invitation in it.
    async fn send_chunk(&self, form: &[(&'static str, String)]) -> MailOutcome {
        let answer = self
            .upstream
            .send("the sending domain", || {
                self.http
                    .post(self.url.clone())
                    .basic_auth("api", Some(self.api_key.expose()))
                    .form(form)
            })
            .await;
        match answer {
            // A 2xx means Mailgun queued the batch, whether or not its answer reads.
            Ok(success) => MailOutcome::Sent {
                provider: PROVIDER.into(),
                message_id: serde_json::from_slice::<Queued>(&success.body)
                    .ok()
                    .and_then(|queued| queued.id)
                    .filter(|id| !id.is_empty()),
            },
            Err(error) => MailOutcome::Failed {
                reason: error.to_string(),
                transient: error.is_transient(),
            },
        }
    }
}

#[async_trait]
impl MailProvider for MailgunProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    /// `resend` changes nothing: Mailgun does not deduplicate.
    async fn send(
        &self,
        template: &MailTemplate,
        batch: &[Invitation],
        _resend: bool,
    ) -> Vec<MailResult> {
        let mut outcomes: Vec<Option<MailOutcome>> = vec![None; batch.len()];
        let from = if self.from.is_empty() {
            template.from.as_str()
        } else {
            self.from.as_str()
        };
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
            let tags = self.tags_for(&shape);
            for chunk in chunks(batch, &members) {
                let invitations: Vec<&Invitation> = chunk.iter().map(|&i| &batch[i]).collect();
                let outcome = match self.form(from, &mail, &tags, &invitations) {
                    Ok(form) => self.send_chunk(&form).await,
                    Err(reason) => MailOutcome::Failed {
                        reason,
                        transient: false,
                    },
                };
                for &index in &chunk {
                    outcomes[index] = Some(outcome.clone());
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
