//! What the bot is configured with: built into every function (the settings file is one for
//! all of them), whether or not the bot itself is.

use serde::{Deserialize, Serialize};

/// Discord's REST API, version 10.
pub const DISCORD_DEFAULT_API_BASE: &str = "https://discord.com/api/v10";

/// `[discord]` in the TOML file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotSettings {
    /// Members with this role id may run `/autopilot …`; unset, nobody may.
    pub operator_role_id: Option<String>,
    /// How long to work on an answer before replying "deferred" instead (Discord allows 3 s).
    pub inline_budget_ms: u64,
    /// Ended events stay in `/event list` this many days after they were last on sale.
    pub recently_ended_days: i64,
}

impl Default for BotSettings {
    fn default() -> Self {
        Self {
            operator_role_id: None,
            inline_budget_ms: 2000,
            recently_ended_days: 30,
        }
    }
}
