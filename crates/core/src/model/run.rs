//! What one reconcile run did.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Everything that could be done was done (broken records are reported, not failures).
    #[default]
    Ok,
    /// Some steps failed and stay pending for the next run.
    Partial,
    /// The run could not do its work at all (KKTIX or the store unreachable, say).
    Failed,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }
}

/// A record KKTIX sent that did not parse: reported and skipped, the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRecord {
    pub event_id: u64,
    pub attendee_id: u64,
    pub reason: String,
}

/// What one run did. Holds counts, ids and reasons only: never personal data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    /// `poll` (every selected event: the schedule, `POST /poll`), `import` (one CSV import),
    /// `webhook` (the events a webhook batch named) or `confirm` (an operator's confirmation of
    /// a held revoke). Only `poll` runs count for `/healthz`.
    #[serde(default = "poll_kind")]
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub outcome: RunOutcome,
    /// Events the selector kept.
    pub events: u64,
    /// Attendee ids in those events' attendance books.
    pub live: u64,
    /// Attendee detail requests made (new or not yet fully admitted).
    pub fetched: u64,
    pub new_paid: u64,
    /// Still awaiting payment after this run.
    pub pending: u64,
    /// Admitted attendees gone from the book: refunded or cancelled.
    pub refunded: u64,
    /// Admitted attendees gone from the book but held (too many at once): not revoked.
    #[serde(default)]
    pub held: u64,
    /// Never-paid orders gone from the book (an ATM order that expired).
    pub expired: u64,
    pub skipped: Vec<SkippedRecord>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub upstream_requests: u64,
    /// New paid attendees per ticket name, for the channel notice.
    pub new_by_ticket: BTreeMap<String, u64>,
    /// Put on the venue's guest list / given their links this run.
    #[serde(default)]
    pub granted: u64,
    /// Invitations the email provider accepted this run.
    #[serde(default)]
    pub mailed: u64,
    /// Attendee-page requests this run handled, and the invitations they resent.
    #[serde(default)]
    pub self_service_requests: u64,
    #[serde(default)]
    pub self_service_resends: u64,
    /// The channel's daily count of self-service resends, sent by the first run of a day
    /// (Asia/Taipei) for the day before. Counts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Campaign letters the email provider accepted this run (scheduled and catch-up ones).
    #[serde(default)]
    pub campaign_letters: u64,
    /// Refunded attendees whose access was taken back this run.
    #[serde(default)]
    pub revoked: u64,
    /// Paid attendees in the book after this run (all selected events).
    #[serde(default)]
    pub sold: u64,
    /// Upstreams (or stages) that failed during this run, for the "failing runs in a row" alert.
    #[serde(default)]
    pub failing: BTreeSet<String>,
    /// The channel notice this run sent, if any: "sales", "alert", "recovery" or combinations.
    #[serde(default)]
    pub notice: Option<String>,
    /// Whether the channel was told of a failure not yet followed by a recovery notice.
    #[serde(default)]
    pub alerting: bool,
    /// Things the channel must hear of once, whatever the failure streaks say (a webhook body
    /// not understood, an event slug nobody mapped). Ids, counts and key paths only.
    #[serde(default)]
    pub alerts: Vec<String>,
    /// The fingerprint of a channel webhook that answered 404 (deleted): notices to it stop,
    /// reported once, until the webhook is replaced (a different fingerprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_webhook_gone: Option<String>,
}

fn poll_kind() -> String {
    RunKind::Poll.as_str().to_owned()
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Poll,
    Import,
    Webhook,
    /// An operator confirmed a held revoke.
    Confirm,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Import => "import",
            Self::Webhook => "webhook",
            Self::Confirm => "confirm",
        }
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.kind == RunKind::Poll.as_str() || self.kind.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.kind)
        };
        write!(
            f,
            "{} {}{kind}: {} events, {} new paid, {} pending, {} refunded, {} granted, {} mailed, {} revoked, {} skipped, {} errors, {} KKTIX requests, {} ms",
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.outcome.as_str(),
            self.events,
            self.new_paid,
            self.pending,
            self.refunded,
            self.granted,
            self.mailed,
            self.revoked,
            self.skipped.len(),
            self.errors.len(),
            self.upstream_requests,
            self.duration_ms
        )
    }
}

impl RunSummary {
    /// The summary line, then one line per skipped record, error, alert and warning (ids and
    /// reasons only): what the CLI prints and the poller function logs, so each failure is
    /// said once, here, rather than also as a log line.
    pub fn report_lines(&self) -> Vec<String> {
        let mut lines = vec![self.to_string()];
        lines.extend(self.skipped.iter().map(|skipped| {
            format!(
                "  skipped event {} attendee {}: {}",
                skipped.event_id, skipped.attendee_id, skipped.reason
            )
        }));
        lines.extend(self.errors.iter().map(|e| format!("  error: {e}")));
        lines.extend(self.alerts.iter().map(|a| format!("  alert: {a}")));
        lines.extend(self.warnings.iter().map(|w| format!("  warning: {w}")));
        lines
    }
}

/// `POST /poll`'s optional body: `{"resend": "REFERENCE"}` resends one invitation instead.
/// Unknown keys are refused: a typo must not silently run a whole reconcile.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    #[serde(default)]
    pub resend: Option<String>,
}

/// One import: an event (id or catalog slug) and the exports' bytes.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub event: String,
    pub attendees: Vec<u8>,
    pub orders: Option<Vec<u8>>,
}

/// What a resend did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResendReport {
    pub key: crate::model::AttendeeKey,
    pub provider: String,
    pub message_id: Option<String>,
}
