//! Which KKTIX events the loop looks at, and which warehouse table each one's rows go to.

use serde::{Deserialize, Serialize};

use crate::kktix::HostingEvent;

/// `[events]` in the TOML file. Explicit ids or slugs, when any are given, win over the name
/// pattern; the default keeps events whose name contains "registration" (any case).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventSelector {
    pub name_contains: String,
    pub ids: Vec<u64>,
    pub slugs: Vec<String>,
}

impl Default for EventSelector {
    fn default() -> Self {
        Self {
            name_contains: "registration".into(),
            ids: Vec::new(),
            slugs: Vec::new(),
        }
    }
}

impl EventSelector {
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

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 1024
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
