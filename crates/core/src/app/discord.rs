//! The Discord bot's wiring.

use std::sync::Arc;

use super::{client_error, BuildError, Stores};
use crate::config::{ConfigError, Settings};
use crate::discord::bot::{Deferrer, DiscordBot};
use crate::discord::operations::{Operations, RemotePoller};
use crate::discord::rest::DiscordApi;
use crate::discord::verify::parse_public_key;
use crate::upstream::HttpOptions;

/// The Discord bot as configured: `DISCORD_PUBLIC_KEY` and `DISCORD_APPLICATION_ID` are
/// required; operator commands reach the poller at `POLLER_URL` (with `OPS_TOKEN`) or, when
/// unset, `local_operations` (the in-process reconciler of `autopilot dev`).
pub fn discord_bot(
    settings: &Settings,
    stores: &Stores,
    local_operations: Option<Arc<dyn Operations>>,
    deferrer: Arc<dyn Deferrer>,
) -> Result<DiscordBot, BuildError> {
    let key = settings
        .discord_public_key
        .as_deref()
        .ok_or(ConfigError::Missing {
            var: "DISCORD_PUBLIC_KEY",
            hint: "the application's public key (hex) from the Discord developer portal",
        })?;
    let public_key = parse_public_key(key).map_err(|e| ConfigError::Invalid {
        var: "DISCORD_PUBLIC_KEY",
        reason: e.to_string(),
    })?;
    let application_id =
        settings
            .discord_application_id
            .as_deref()
            .ok_or(ConfigError::Missing {
                var: "DISCORD_APPLICATION_ID",
                hint: "the application id, to edit deferred replies",
            })?;
    let api = DiscordApi::new(
        &settings.discord_api_base,
        application_id,
        settings.discord_bot_token.clone(),
        HttpOptions::default(),
    )
    .map_err(client_error("DISCORD_API_BASE"))?;
    let operations: Option<Arc<dyn Operations>> = match &settings.poller_url {
        Some(url) => Some(Arc::new(
            RemotePoller::new(url, settings.require_ops_token()?, HttpOptions::default())
                .map_err(client_error("POLLER_URL"))?,
        )),
        None => local_operations,
    };
    Ok(DiscordBot::new(
        public_key,
        stores.warehouse.clone(),
        settings.file.warehouse.clone(),
        settings.file.reports.clone(),
        settings.file.discord.clone(),
        operations,
        Arc::new(api),
        deferrer,
    ))
}

/// The REST client `autopilot discord register` uses: needs the bot token.
pub fn discord_api(settings: &Settings) -> Result<DiscordApi, BuildError> {
    let application_id =
        settings
            .discord_application_id
            .as_deref()
            .ok_or(ConfigError::Missing {
                var: "DISCORD_APPLICATION_ID",
                hint: "the application whose commands are registered",
            })?;
    let token = settings
        .discord_bot_token
        .clone()
        .ok_or(ConfigError::Missing {
            var: "DISCORD_BOT_TOKEN",
            hint: "the bot token that may register the application's commands",
        })?;
    DiscordApi::new(
        &settings.discord_api_base,
        application_id,
        Some(token),
        HttpOptions::default(),
    )
    .map_err(client_error("DISCORD_API_BASE"))
}
