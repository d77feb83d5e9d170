//! Which KKTIX events the loop looks at, and which warehouse table each one's rows go to.

pub use crate::model::is_identifier;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kktix::HostingEvent;

/// The door an event's attendees come in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Door {
    /// KKTIX's private hosting API, read on every run.
    Api,
    /// KKTIX's CSV exports, imported by an operator.
    Csv,
    /// KKTIX's organiser webhook, which POSTs orders in batches.
    Webhook,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Csv => "csv",
            Self::Webhook => "webhook",
        }
    }

    /// CSV and webhook data cannot be read again: their contacts are kept sealed.
    pub fn is_pushed(self) -> bool {
        !matches!(self, Self::Api)
    }
}

impl std::str::FromStr for Door {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "api" => Ok(Self::Api),
            "csv" => Ok(Self::Csv),
            "webhook" => Ok(Self::Webhook),
            other => Err(format!("expected api, csv or webhook, got {other:?}")),
        }
    }
}

/// One `[events.catalog]` entry: `slug = id`, or `slug = { id = …, name = …, source = … }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CatalogEntry {
    Id(u64),
    Event(CatalogEvent),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEvent {
    pub id: u64,
    /// The event's name as KKTIX shows it; routes its rows to a category table and names it
    /// in invitations. Unset: the slug.
    #[serde(default)]
    pub name: Option<String>,
    /// The door this event uses; unset: `[events] source`.
    #[serde(default)]
    pub source: Option<Door>,
    /// RFC 3339; when the event starts (campaigns) and ends (retention of sealed contacts).
    #[serde(default)]
    pub start_at: Option<String>,
    #[serde(default)]
    pub end_at: Option<String>,
}

impl CatalogEntry {
    pub fn id(&self) -> u64 {
        match self {
            Self::Id(id) => *id,
            Self::Event(event) => event.id,
        }
    }

    fn event(&self) -> Option<&CatalogEvent> {
        match self {
            Self::Id(_) => None,
            Self::Event(event) => Some(event),
        }
    }
}

/// `[events]` in the TOML file. Explicit ids or slugs, when any are given, win over the name
/// pattern; the default keeps events whose name contains "registration" (any case).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventSelector {
    pub name_contains: String,
    pub ids: Vec<u64>,
    pub slugs: Vec<String>,
    /// The door of events the catalog does not say otherwise of. Unset: `api` when
    /// `KKTIX_ACCESS_TOKEN` is set, else `csv`.
    pub source: Option<Door>,
    /// Events by slug, for `autopilot import --event SLUG` and for naming events that do not
    /// come through the API: `slug = id` or `slug = { id, name, source, start_at, end_at }`.
    pub catalog: BTreeMap<String, CatalogEntry>,
}

impl Default for EventSelector {
    fn default() -> Self {
        Self {
            name_contains: "registration".into(),
            ids: Vec::new(),
            slugs: Vec::new(),
            source: None,
            catalog: BTreeMap::new(),
        }
    }
}

impl EventSelector {
    /// The door of one event: the catalog's word, else `[events] source`, else `fallback`
    /// (the API when a KKTIX token is configured).
    pub fn door_of(&self, event_id: u64, fallback: Door) -> Door {
        self.catalog
            .values()
            .filter(|entry| entry.id() == event_id)
            .find_map(|entry| entry.event().and_then(|event| event.source))
            .or(self.source)
            .unwrap_or(fallback)
    }

    /// `EVENT` as an operator types it: a KKTIX event id or a catalog slug.
    pub fn resolve(&self, reference: &str) -> Option<u64> {
        let reference = reference.trim();
        if let Ok(id) = reference.parse::<u64>() {
            return Some(id);
        }
        self.catalog.get(reference).map(CatalogEntry::id)
    }

    /// What the catalog knows of an event, as the loop's event record; `None` when the
    /// catalog does not list it.
    pub fn catalog_event(&self, event_id: u64) -> Option<HostingEvent> {
        let (slug, entry) = self
            .catalog
            .iter()
            .find(|(_, entry)| entry.id() == event_id)?;
        let details = entry.event();
        Some(HostingEvent {
            id: event_id,
            name: details
                .and_then(|event| event.name.clone())
                .unwrap_or_else(|| slug.clone()),
            slug: slug.clone(),
            start_at: details.and_then(|event| event.start_at.clone()),
            end_at: details.and_then(|event| event.end_at.clone()),
        })
    }

    /// Catalog events whose door, with this fallback, is CSV or the webhook.
    pub fn pushed_catalog_events(&self, fallback: Door) -> Vec<HostingEvent> {
        let mut ids: Vec<u64> = self.catalog.values().map(CatalogEntry::id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter(|id| self.door_of(*id, fallback).is_pushed())
            .filter_map(|id| self.catalog_event(id))
            .collect()
    }

    /// Every door some event may use, for start-up checks.
    pub fn doors(&self, fallback: Door) -> Vec<Door> {
        let mut doors = vec![self.source.unwrap_or(fallback)];
        for entry in self.catalog.values() {
            let door = self.door_of(entry.id(), fallback);
            if !doors.contains(&door) {
                doors.push(door);
            }
        }
        doors
    }

    pub fn matches(&self, event: &HostingEvent) -> bool {
        if !self.ids.is_empty() || !self.slugs.is_empty() {
            return self.ids.contains(&event.id)
                || (!event.slug.is_empty() && self.slugs.contains(&event.slug));
        }
        event
            .name
            .to_lowercase()
            .contains(&self.name_contains.to_lowercase())
    }
}

/// `[[warehouse.categories]]`: the first rule whose `name_contains` is in the event name
/// (any case) names the table. Unmatched events go to `default_table`, never nowhere.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CategoryRules {
    pub categories: Vec<CategoryRule>,
    pub default_table: String,
    /// The team's pipeline table, written beside the category tables when enabled.
    pub pipeline_table: crate::model::PipelineTable,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CategoryRule {
    pub name_contains: String,
    pub table: String,
}

impl Default for CategoryRules {
    fn default() -> Self {
        let rule = |category: &str| CategoryRule {
            name_contains: category.into(),
            table: format!("ods_kktix_ticket_{category}_attendees"),
        };
        Self {
            categories: vec![rule("corporate"), rule("individual"), rule("reserved")],
            default_table: "ods_kktix_ticket_uncategorized_attendees".into(),
            pipeline_table: crate::model::PipelineTable::default(),
        }
    }
}

/// Where an event's rows go, and whether a rule said so or the fallback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub table: String,
    pub matched_rule: bool,
}

impl CategoryRules {
    pub fn route(&self, event_name: &str) -> Routing {
        let name = event_name.to_lowercase();
        match self
            .categories
            .iter()
            .find(|rule| name.contains(&rule.name_contains.to_lowercase()))
        {
            Some(rule) => Routing {
                table: rule.table.clone(),
                matched_rule: true,
            },
            None => Routing {
                table: self.default_table.clone(),
                matched_rule: false,
            },
        }
    }

    /// Every table a rule or the fallback can route to, each once.
    pub fn tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = Vec::new();
        for table in self
            .categories
            .iter()
            .map(|rule| &rule.table)
            .chain(std::iter::once(&self.default_table))
        {
            if !tables.contains(table) {
                tables.push(table.clone());
            }
        }
        tables
    }

    /// Table names are interpolated into SQL (identifiers cannot be bound), so only plain
    /// identifiers are accepted.
    pub fn validate(&self) -> Result<(), String> {
        self.pipeline_table.validate()?;
        std::iter::once(&self.default_table)
            .chain(self.categories.iter().map(|rule| &rule.table))
            .try_for_each(|table| {
                if is_identifier(table) {
                    Ok(())
                } else {
                    Err(format!(
                        "table name {table:?} must be letters, digits and underscores, not starting with a digit"
                    ))
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, slug: &str, name: &str) -> HostingEvent {
        HostingEvent {
            id,
            name: name.into(),
            slug: slug.into(),
            start_at: None,
            end_at: None,
        }
    }

    #[test]
    fn default_selector_is_registration_any_case() {
        let selector = EventSelector::default();
        assert!(selector.matches(&event(1, "a", "PyCon TW 2026 REGISTRATION: Individual")));
        assert!(!selector.matches(&event(2, "b", "PyCon TW 2026 Sprint Meetup")));
    }

    #[test]
    fn explicit_ids_or_slugs_win() {
        let selector = EventSelector {
            ids: vec![2],
            slugs: vec!["meetup".into()],
            ..EventSelector::default()
        };
        assert!(selector.matches(&event(2, "x", "Sprint")));
        assert!(selector.matches(&event(3, "meetup", "Sprint")));
        assert!(!selector.matches(&event(4, "y", "Registration")));
    }

    #[test]
    fn categories_route_and_fall_back() {
        let rules = CategoryRules::default();
        assert_eq!(
            rules.route("PyCon APAC 2022 Registration: Corporate").table,
            "ods_kktix_ticket_corporate_attendees"
        );
        assert_eq!(
            rules.route("PyCon Registration: Reserved").table,
            "ods_kktix_ticket_reserved_attendees"
        );
        let fallback = rules.route("PyCon Registration: Workshop");
        assert!(!fallback.matched_rule);
        assert_eq!(fallback.table, "ods_kktix_ticket_uncategorized_attendees");
        assert!(rules.validate().is_ok());
        let bad = CategoryRules {
            default_table: "x; DROP TABLE y".into(),
            ..CategoryRules::default()
        };
        assert!(bad.validate().is_err());
    }
}
