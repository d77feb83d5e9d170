//! What operators see of a campaign: its standing and what one send did. Counts and
//! reasons only, never addresses.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `autopilot campaign list`, one line per campaign. Counts only, never addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignStatus {
    pub name: String,
    /// `manual`, `at 2026-07-30T01:00:00Z` or `3d before each event's start`.
    pub schedule: String,
    pub catch_up: bool,
    /// Open events it selects.
    pub events: u64,
    /// Admitted, non-refunded attendees it selects.
    pub audience: u64,
    pub sent: u64,
    /// Not sent yet (in flight included).
    pub pending: u64,
    /// Sent to the provider, outcome being settled.
    pub in_flight: u64,
    /// Whose last attempt failed.
    pub failed: u64,
    /// The earliest time it is due for an event whose letters are still pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due: Option<DateTime<Utc>>,
}

/// What one send did. Counts and reasons only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignReport {
    pub campaign: String,
    pub dry_run: bool,
    /// Admitted, non-refunded attendees it selects.
    pub audience: u64,
    /// Of those, recorded as sent before this send.
    pub already_sent: u64,
    /// Letters this send was to hand over (all of them, on a dry run).
    pub to_send: u64,
    pub sent: u64,
    pub failed: u64,
    /// Handed over, outcome unknown: settled later, never sent twice.
    pub uncertain: u64,
    /// Left for later: the provider failed earlier in this send, or its events lag.
    pub not_attempted: u64,
    /// Selected but without a contact to write to (shredded, or no valid address).
    pub no_contact: u64,
    /// Provider requests (waves) made.
    pub waves: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
    pub errors: Vec<String>,
}

impl std::fmt::Display for CampaignReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dry_run {
            return write!(
                f,
                "campaign {} (dry run): audience {}, already sent {}, would send {}, no contact {}",
                self.campaign, self.audience, self.already_sent, self.to_send, self.no_contact
            );
        }
        write!(
            f,
            "campaign {}: audience {}, already sent {}, sent {}, failed {}, uncertain {}, not attempted {}, no contact {} ({} waves, {} ms)",
            self.campaign,
            self.audience,
            self.already_sent,
            self.sent,
            self.failed,
            self.uncertain,
            self.not_attempted,
            self.no_contact,
            self.waves,
            self.duration_ms
        )
    }
}
