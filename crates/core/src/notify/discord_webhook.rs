//! Discord channel webhook: `POST {webhook}?wait=true` with `{"content", "allowed_mentions"}`.
//!
//! The webhook URL holds a secret token, so it never appears in an error, a log line or
//! `Debug` output: errors name "the webhook", and `Debug` shows the host only.
//!
//! Mentions are always disabled (`allowed_mentions.parse` empty): a notice never pings anyone,
//! whatever its text. Content longer than Discord's 2,000-character limit is cut short at a
//! character boundary and ends with "…".

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;

use super::{Notice, Notifier};
use crate::upstream::{build_client, HttpOptions, RetryPolicy, Upstream, UpstreamError};

const UPSTREAM: &str = "Discord webhook";
/// What a 404 names: a deleted webhook, never its URL.
const WHAT: &str = "the webhook";
const USERNAME: &str = "KKTIX Autopilot";
/// Discord's limit on `content`, in characters (Unicode scalar values), not bytes.
pub(crate) const MAX_CONTENT_CHARS: usize = 2000;
const ELLIPSIS: char = '…';

pub struct DiscordWebhook {
    http: reqwest::Client,
    /// The execute-webhook URL with `wait=true`; secret (holds the webhook token).
    url: url::Url,
    upstream: Upstream,
}

impl fmt::Debug for DiscordWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordWebhook")
            .field("host", &self.url.host_str().unwrap_or_default())
            .field("url", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AllowedMentions {
    parse: [&'static str; 0],
}

#[derive(Serialize)]
struct ExecuteWebhook<'a> {
    content: &'a str,
    username: &'static str,
    allowed_mentions: AllowedMentions,
}

impl DiscordWebhook {
    /// `url` is the webhook's URL (`https://discord.com/api/webhooks/{id}/{token}`); any query
    /// it has (such as `thread_id`) is kept, and `wait=true` is set so Discord confirms the
    /// message was posted.
    pub fn new(url: &str, options: HttpOptions) -> Result<Self, UpstreamError> {
        let url = webhook_url(url)?;
        Ok(Self {
            http: build_client(UPSTREAM, options.timeout)?,
            url,
            // A notice whose POST timed out may already be in the channel: not repeated, so a
            // run posts at most one message.
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
}

#[async_trait]
impl Notifier for DiscordWebhook {
    async fn notify(&self, notice: &Notice) -> Result<(), UpstreamError> {
        let content = truncate_content(&notice.content);
        let body = ExecuteWebhook {
            content: &content,
            username: USERNAME,
            allowed_mentions: AllowedMentions { parse: [] },
        };
        // 200 with the message (wait=true) or 204: both mean posted; the message is not needed.
        self.upstream
            .send(WHAT, || self.http.post(self.url.clone()).json(&body))
            .await?;
        Ok(())
    }

    /// The first 8 bytes of the URL's SHA-256: stable for one webhook, new for a replacement,
    /// and no use for posting.
    fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(self.url.as_str().as_bytes())[..8])
    }
}

/// Validates the webhook URL without ever echoing it, and sets `wait=true`.
fn webhook_url(raw: &str) -> Result<url::Url, UpstreamError> {
    let invalid = || UpstreamError::Transport {
        upstream: UPSTREAM,
        reason: "invalid webhook URL".to_owned(),
    };
    let mut url = url::Url::parse(raw.trim()).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "wait")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("wait", "true");
    url.set_fragment(None);
    Ok(url)
}

/// At most [`MAX_CONTENT_CHARS`] characters; longer content keeps its first 1,999 and ends
/// with "…".
pub(crate) fn truncate_content(content: &str) -> std::borrow::Cow<'_, str> {
    match content.char_indices().nth(MAX_CONTENT_CHARS) {
        None => std::borrow::Cow::Borrowed(content),
        Some(_) => {
            let cut = content
                .char_indices()
                .nth(MAX_CONTENT_CHARS - 1)
                .map_or(content.len(), |(index, _)| index);
            let mut truncated = String::with_capacity(cut + ELLIPSIS.len_utf8());
            truncated.push_str(&content[..cut]);
            truncated.push(ELLIPSIS);
            std::borrow::Cow::Owned(truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_content_is_kept() {
        assert_eq!(truncate_content("hello"), "hello");
        let exact = "票".repeat(MAX_CONTENT_CHARS);
        assert_eq!(truncate_content(&exact), exact);
    }

    #[test]
    fn long_content_is_cut_at_a_char_boundary() {
        let long = "票".repeat(MAX_CONTENT_CHARS + 1);
        let cut = truncate_content(&long);
        assert_eq!(cut.chars().count(), MAX_CONTENT_CHARS);
        assert!(cut.ends_with(ELLIPSIS));
        assert!(cut.starts_with(&"票".repeat(MAX_CONTENT_CHARS - 1)));
    }

    #[test]
    fn url_validation_and_query() {
        let url = webhook_url("https://discord.com/api/webhooks/1/tok?thread_id=9&wait=false")
            .expect("valid");
        assert_eq!(url.query(), Some("thread_id=9&wait=true"));
        for bad in [
            "",
            "discord.com/api/webhooks/1/tok",
            "ftp://x/1/tok",
            "file:///tok",
        ] {
            let error = webhook_url(bad).expect_err("invalid");
            assert_eq!(
                error,
                UpstreamError::Transport {
                    upstream: UPSTREAM,
                    reason: "invalid webhook URL".to_owned()
                }
            );
        }
    }
}
