//! What each ticket entitles its holder to (`[access]` in the TOML file).

use serde::{Deserialize, Serialize};

use super::Link;

/// `[[access.entitlements]]`: every rule whose `ticket_contains` is in the ticket name (any
/// case; empty matches every ticket) applies. Gather access if any matching rule says so;
/// links are the union in rule order; the first `affiliation` and `venue_url` set win.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Entitlement {
    pub ticket_contains: String,
    pub gather: bool,
    /// The Gather affiliation shown beside the guest; defaults to the ticket name.
    pub affiliation: Option<String>,
    pub links: Vec<Link>,
    pub venue_url: Option<String>,
}

impl Default for Entitlement {
    fn default() -> Self {
        Self {
            ticket_contains: String::new(),
            gather: true,
            affiliation: None,
            links: Vec::new(),
            venue_url: None,
        }
    }
}

/// `[access]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Entitlements {
    /// Gather role of guests this system adds.
    pub role: String,
    /// Local guest-list file used when Gather is not configured.
    pub guestlist_file: String,
    pub entitlements: Vec<Entitlement>,
}

impl Default for Entitlements {
    fn default() -> Self {
        Self {
            role: "guest".into(),
            guestlist_file: "./guestlist.json".into(),
            entitlements: vec![Entitlement::default()],
        }
    }
}

/// What one ticket name grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub gather: bool,
    pub affiliation: String,
    pub links: Vec<Link>,
    pub venue_url: Option<String>,
}

impl Entitlements {
    pub fn for_ticket(&self, ticket_name: &str) -> Grant {
        let ticket = ticket_name.to_lowercase();
        let mut grant = Grant {
            gather: false,
            affiliation: String::new(),
            links: Vec::new(),
            venue_url: None,
        };
        let mut affiliation = None;
        for rule in self
            .entitlements
            .iter()
            .filter(|rule| ticket.contains(&rule.ticket_contains.to_lowercase()))
        {
            grant.gather |= rule.gather;
            affiliation = affiliation.or_else(|| rule.affiliation.clone());
            grant.venue_url = grant.venue_url.or_else(|| rule.venue_url.clone());
            for link in &rule.links {
                if !grant.links.contains(link) {
                    grant.links.push(link.clone());
                }
            }
        }
        grant.affiliation = affiliation.unwrap_or_else(|| ticket_name.to_owned());
        grant
    }

    /// Whether any ticket can need the Gather guest list.
    pub fn needs_gather(&self) -> bool {
        self.entitlements.iter().any(|rule| rule.gather)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_combine_per_ticket() {
        let youtube = Link {
            label: "YouTube".into(),
            url: "https://youtu.be/private".into(),
        };
        let entitlements = Entitlements {
            entitlements: vec![
                Entitlement {
                    ticket_contains: "".into(),
                    gather: false,
                    links: vec![youtube.clone()],
                    ..Entitlement::default()
                },
                Entitlement {
                    ticket_contains: "regular".into(),
                    gather: true,
                    affiliation: Some("PyCon TW 2026".into()),
                    venue_url: Some("https://app.gather.town/app/x/pycontw".into()),
                    ..Entitlement::default()
                },
            ],
            ..Entitlements::default()
        };
        let regular = entitlements.for_ticket("Regular 一般票");
        assert!(regular.gather);
        assert_eq!(regular.affiliation, "PyCon TW 2026");
        assert_eq!(regular.links, vec![youtube.clone()]);
        let online = entitlements.for_ticket("Online 線上票");
        assert!(!online.gather);
        assert_eq!(
            online.affiliation, "Online 線上票",
            "defaults to the ticket name"
        );
        assert_eq!(online.links, vec![youtube]);
        assert!(Entitlements::default().for_ticket("anything").gather);
    }
}
