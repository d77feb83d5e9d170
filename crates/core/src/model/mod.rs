//! The shared nouns: what the ledger, the warehouse, the loop and the routes all speak of
//! (an attendee key, a link, a run summary, an admission …). Plain data with its own small
//! rules; it depends on nothing else of this crate, so every other module may use it and it
//! can never be part of an import circle.

mod campaign;
mod ledger;
mod run;
mod warehouse;

pub use campaign::*;
pub use ledger::*;
pub use run::*;
pub use warehouse::*;

use serde::{Deserialize, Serialize};

/// A stored value this version does not know (a ledger step, a hold state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownValue(pub String);

/// A link placed in the invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// A BigQuery (or SQLite) identifier: letters, digits and underscores, not starting with a
/// digit.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 1024
}
