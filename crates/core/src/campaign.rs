//! Campaigns as configuration: `[[campaigns]]`, the letters (行前信) that go to every admitted
//! attendee beside the one invitation. What a campaign selects and when it is due; the
//! sending is the reconcile loop's (`reconcile::campaign`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One `[[campaigns]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSettings {
    /// Letters, digits, `-` and `_`: it names ledger records, Mailgun's `campaign-NAME` tag,
    /// Klaviyo objects and outbox files.
    pub name: String,
    /// minijinja templates with the invitation's variables (see the README).
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Event name patterns (any case; `*` matches anything, a pattern without `*` matches
    /// anywhere in the name). Empty: every selected event.
    #[serde(default)]
    pub events: Vec<String>,
    /// Ticket name patterns, read the same way. Empty: every ticket.
    #[serde(default)]
    pub tickets: Vec<String>,
    /// RFC 3339: due from this time on.
    #[serde(default)]
    pub send_at: Option<String>,
    /// A duration (`3d`, `12h`) before each event's start: due from then on.
    #[serde(default)]
    pub before_start: Option<String>,
    /// Attendees admitted after the campaign went out get it right after their invitation,
    /// until the event starts.
    #[serde(default)]
    pub catch_up: bool,
}

/// When a campaign goes out by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Only when an operator sends it.
    Manual,
    At(DateTime<Utc>),
    BeforeStart(std::time::Duration),
}

impl CampaignSettings {
    /// Everything but the templates (those need the mail crate's compiler: see
    /// `app::campaign_templates`). The error names the campaign.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        let bad_name = name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if bad_name {
            return Err(format!(
                "[[campaigns]] name {:?}: use 1–64 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self
            .events
            .iter()
            .chain(&self.tickets)
            .any(|pattern| pattern.trim().is_empty())
        {
            return Err(format!(
                "[[campaigns]] {name}: an empty events or tickets pattern would match everything; leave the list out instead"
            ));
        }
        if self.send_at.is_some() && self.before_start.is_some() {
            return Err(format!(
                "[[campaigns]] {name}: give send_at or before_start, not both"
            ));
        }
        self.schedule().map(|_| ())
    }

    pub fn schedule(&self) -> Result<Schedule, String> {
        let name = self.name.trim();
        if let Some(at) = &self.send_at {
            return DateTime::parse_from_rfc3339(at.trim())
                .map(|at| Schedule::At(at.with_timezone(&Utc)))
                .map_err(|e| {
                    format!(
                        "[[campaigns]] {name}: send_at {at:?} is not an RFC 3339 time such as 2026-07-30T09:00:00+08:00 ({e})"
                    )
                });
        }
        if let Some(before) = &self.before_start {
            return humantime::parse_duration(before.trim())
                .map(Schedule::BeforeStart)
                .map_err(|e| {
                    format!(
                        "[[campaigns]] {name}: before_start {before:?} is not a duration such as 3d or 12h ({e})"
                    )
                });
        }
        Ok(Schedule::Manual)
    }

    /// When this campaign is due for an event starting at `start`; `None` for a manual one
    /// (or a `before_start` one whose event has no start time).
    pub fn due_at(&self, start: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        match self.schedule().ok()? {
            Schedule::Manual => None,
            Schedule::At(at) => Some(at),
            Schedule::BeforeStart(before) => {
                start?.checked_sub_signed(chrono::Duration::from_std(before).ok()?)
            }
        }
    }

    pub fn selects_event(&self, event_name: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|p| name_matches(p, event_name))
    }

    pub fn selects_ticket(&self, ticket_name: &str) -> bool {
        self.tickets.is_empty() || self.tickets.iter().any(|p| name_matches(p, ticket_name))
    }
}

/// The campaign named `name` among `campaigns`.
pub fn find<'a>(campaigns: &'a [CampaignSettings], name: &str) -> Option<&'a CampaignSettings> {
    campaigns.iter().find(|c| c.name.trim() == name.trim())
}

/// Checks every entry and that names are unique.
pub fn validate_all(campaigns: &[CampaignSettings]) -> Result<(), String> {
    for (index, campaign) in campaigns.iter().enumerate() {
        campaign.validate()?;
        if campaigns[..index]
            .iter()
            .any(|c| c.name.trim() == campaign.name.trim())
        {
            return Err(format!(
                "[[campaigns]] {}: two campaigns share this name",
                campaign.name.trim()
            ));
        }
    }
    Ok(())
}

/// A KKTIX time (`2026-07-31T09:00:00.000+08:00`) as UTC.
pub fn parse_start(start_at: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(start_at?.trim())
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// A case-insensitive glob: `*` matches any run of characters; without `*`, the pattern
/// matches anywhere in the name.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim().to_lowercase();
    let name = name.to_lowercase();
    if !pattern.contains('*') {
        return name.contains(&pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) {
        return false;
    }
    let mut rest = &name[first.len()..];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign() -> CampaignSettings {
        CampaignSettings {
            name: "pre-event".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "h".into(),
            events: Vec::new(),
            tickets: Vec::new(),
            send_at: None,
            before_start: None,
            catch_up: false,
        }
    }

    #[test]
    fn patterns_match_any_case_and_globs() {
        assert!(name_matches("early", "Early Bird 早鳥票"));
        assert!(name_matches("*票", "Early Bird 早鳥票"));
        assert!(name_matches("early*票", "Early Bird 早鳥票"));
        assert!(!name_matches("early*個人", "Early Bird 早鳥票"));
        assert!(!name_matches("bird*", "Early Bird"));
        assert!(name_matches("*", "anything"));
    }

    #[test]
    fn schedules_parse_and_errors_name_the_campaign() {
        let mut c = campaign();
        assert_eq!(c.schedule().unwrap(), Schedule::Manual);
        c.send_at = Some("2026-07-30T09:00:00+08:00".into());
        assert_eq!(
            c.due_at(None).unwrap().to_rfc3339(),
            "2026-07-30T01:00:00+00:00"
        );
        c.before_start = Some("1d".into());
        assert!(c.validate().unwrap_err().contains("pre-event"));
        c.send_at = None;
        let start = parse_start(Some("2026-08-01T09:00:00.000+08:00"));
        assert_eq!(
            c.due_at(start).unwrap().to_rfc3339(),
            "2026-07-31T01:00:00+00:00"
        );
        c.before_start = Some("soon".into());
        let error = c.validate().unwrap_err();
        assert!(error.contains("pre-event") && error.contains("before_start"));
        c.before_start = None;
        c.name = "has space".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn names_are_unique() {
        let error = validate_all(&[campaign(), campaign()]).unwrap_err();
        assert!(error.contains("share"));
    }
}
