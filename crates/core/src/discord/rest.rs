//! The Discord REST calls the bot makes: finishing a deferred reply by editing `@original`
//! (multipart, with attachments) and registering the command set. Retries and 429
//! `retry_after` come from [`Upstream`].

use reqwest::multipart::{Form, Part};
use serde::Serialize;

use super::model::CommandDefinition;
use crate::pii::Sensitive;
use crate::upstream::{build_client, join_url, HttpOptions, Upstream, UpstreamError};

pub use super::settings::DISCORD_DEFAULT_API_BASE;
const UPSTREAM: &str = "Discord";

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

pub struct DiscordApi {
    http: reqwest::Client,
    base: String,
    application_id: String,
    bot_token: Option<Sensitive<String>>,
    upstream: Upstream,
}

impl DiscordApi {
    pub fn new(
        base_url: &str,
        application_id: &str,
        bot_token: Option<Sensitive<String>>,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        join_url(UPSTREAM, base_url, "/")?;
        Ok(Self {
            http: build_client(UPSTREAM, options.timeout)?,
            base: base_url.trim_end_matches('/').to_owned(),
            application_id: application_id.to_owned(),
            bot_token,
            upstream: Upstream::new(UPSTREAM, options.retry),
        })
    }

    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// `PATCH /webhooks/{application_id}/{token}/messages/@original`: multipart with
    /// `payload_json` and `files[n]`. The interaction token authenticates (no bot token);
    /// it is never put in an error message.
    pub async fn edit_original<P: Serialize>(
        &self,
        interaction_token: &str,
        payload: &P,
        files: &[Attachment],
    ) -> Result<(), UpstreamError> {
        let url = join_url(
            UPSTREAM,
            &self.base,
            &format!(
                "/webhooks/{}/{}/messages/@original",
                self.application_id, interaction_token
            ),
        )?;
        let payload = serde_json::to_value(payload).map_err(|e| UpstreamError::Malformed {
            upstream: UPSTREAM,
            reason: format!("cannot encode the message: {e}"),
        })?;
        let mut payload = payload;
        if !files.is_empty() {
            let attachments: Vec<serde_json::Value> = files
                .iter()
                .enumerate()
                // Attachment ids are snowflake strings; for an upload, the index of `files[n]`.
                .map(|(id, file)| serde_json::json!({"id": id.to_string(), "filename": file.filename}))
                .collect();
            payload["attachments"] = attachments.into();
        }
        let payload_json = payload.to_string();
        self.upstream
            .send("the original interaction response", || {
                let mut form = Form::new().part(
                    "payload_json",
                    Part::text(payload_json.clone())
                        .mime_str("application/json")
                        .unwrap_or_else(|_| Part::text(payload_json.clone())),
                );
                for (index, file) in files.iter().enumerate() {
                    let part = Part::bytes(file.bytes.clone()).file_name(file.filename.clone());
                    let part = part.mime_str(file.content_type).unwrap_or_else(|_| {
                        Part::bytes(file.bytes.clone()).file_name(file.filename.clone())
                    });
                    form = form.part(format!("files[{index}]"), part);
                }
                self.http.patch(url.clone()).multipart(form)
            })
            .await
            .map(|_| ())
    }

    /// Downloads a file a user attached to a command, from Discord's CDN only (or the
    /// configured API host, for tests): the URL comes from the interaction and must not be
    /// able to point this function anywhere else. At most `max_bytes`.
    pub async fn download_attachment(
        &self,
        url: &str,
        max_bytes: usize,
    ) -> Result<Vec<u8>, UpstreamError> {
        let refused = |reason: &str| UpstreamError::Malformed {
            upstream: UPSTREAM,
            reason: reason.to_owned(),
        };
        let parsed =
            url::Url::parse(url).map_err(|_| refused("an attachment URL that does not parse"))?;
        let own_host = url::Url::parse(&self.base)
            .ok()
            .and_then(|base| base.host_str().map(str::to_owned));
        let host = parsed.host_str().unwrap_or_default();
        let allowed = matches!(host, "cdn.discordapp.com" | "media.discordapp.net")
            && parsed.scheme() == "https"
            || own_host.as_deref() == Some(host);
        if !allowed {
            return Err(refused("an attachment URL outside Discord's CDN"));
        }
        let success = self
            .upstream
            .send("the attachment", || self.http.get(parsed.clone()))
            .await?;
        if success.body.len() > max_bytes {
            return Err(refused(&format!(
                "the attachment is larger than {max_bytes} bytes"
            )));
        }
        Ok(success.body.to_vec())
    }

    fn commands_url(&self, guild: Option<&str>) -> Result<url::Url, UpstreamError> {
        let path = match guild {
            Some(guild) => format!(
                "/applications/{}/guilds/{guild}/commands",
                self.application_id
            ),
            None => format!("/applications/{}/commands", self.application_id),
        };
        join_url(UPSTREAM, &self.base, &path)
    }

    fn bot_token(&self) -> Result<&str, UpstreamError> {
        self.bot_token
            .as_ref()
            .map(|token| token.expose().as_str())
            .ok_or(UpstreamError::Unauthorized {
                upstream: UPSTREAM,
                status: 401,
            })
    }

    /// The registered command set (global, or one guild's), with localisations so they can be
    /// compared with ours.
    pub async fn commands(
        &self,
        guild: Option<&str>,
    ) -> Result<Vec<CommandDefinition>, UpstreamError> {
        let mut url = self.commands_url(guild)?;
        url.query_pairs_mut()
            .append_pair("with_localizations", "true");
        let token = self.bot_token()?;
        let success = self
            .upstream
            .send("the application's commands", || {
                self.http
                    .get(url.clone())
                    .header(reqwest::header::AUTHORIZATION, format!("Bot {token}"))
            })
            .await?;
        serde_json::from_slice(&success.body).map_err(|e| UpstreamError::Malformed {
            upstream: UPSTREAM,
            reason: format!("commands: {:?} error", e.classify()),
        })
    }

    /// Bulk-overwrites the command set (`PUT`): commands not listed are deleted.
    pub async fn overwrite_commands(
        &self,
        guild: Option<&str>,
        commands: &[CommandDefinition],
    ) -> Result<(), UpstreamError> {
        let url = self.commands_url(guild)?;
        let token = self.bot_token()?;
        self.upstream
            .send("the application's commands", || {
                self.http
                    .put(url.clone())
                    .header(reqwest::header::AUTHORIZATION, format!("Bot {token}"))
                    .json(commands)
            })
            .await
            .map(|_| ())
    }
}

/// What registering changes, by command name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandDiff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl CommandDiff {
    pub fn between(existing: &[CommandDefinition], desired: &[CommandDefinition]) -> Self {
        let mut diff = Self::default();
        for command in desired {
            match existing.iter().find(|e| e.name == command.name) {
                None => diff.added.push(command.name.clone()),
                Some(current) if command.same_as(current) => {
                    diff.unchanged.push(command.name.clone())
                }
                Some(_) => diff.changed.push(command.name.clone()),
            }
        }
        for command in existing {
            if !desired.iter().any(|d| d.name == command.name) {
                diff.removed.push(command.name.clone());
            }
        }
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}
