//! The Gather Town guest list over Gather's HTTP API.
//!
//! Two calls exist: `GET /api/getEmailGuestlist?spaceId=…&apiKey=…`, which answers the whole
//! list as `{email: {name, role, affiliation, …}}`, and `POST /api/setEmailGuestlist` with
//! `{apiKey, spaceId, guestlist, overwrite}`. With `overwrite: false` the posted entries are
//! merged into the list and every other entry is untouched; with `overwrite: true` the posted
//! list replaces the whole list.
//!
//! Adding is one merging POST per batch. Removing has no call of its own, so it is a careful
//! rewrite:
//!
//! 1. read the list, and for each [`Removal`] find the entries whose email hashes to it;
//!    remove one only while its `role` and `affiliation` still read as this system wrote them
//!    (anything else was added or edited by hand and is kept);
//! 2. if nothing is to go, stop there: no write;
//! 3. otherwise write the list back with `overwrite: true`: every entry as read (all of its
//!    attributes, known or not) except the removed ones;
//! 4. read again, and re-add with `overwrite: false` any entry of the first read that we did
//!    not remove but that is gone now (someone else rewrote the list while we did).
//!
//! The window this cannot close: an entry someone adds between our read (1) and our
//! overwrite (3) is not in what we write back, so the overwrite drops it, and the second read
//! cannot tell it was ever there. Gather offers no conditional write to close it; the window
//! is one request long, and a hand-added guest lost in it has to be added again by hand.
//!
//! Matching a [`Removal`]: its hash is the SHA-256 of the email as the buyer typed it, while
//! Gather lowercases the emails it stores. An entry matches when the hash of its email as
//! listed, or of that email lowercased, equals the removal's. (A buyer who typed uppercase
//! letters cannot be matched through a lowercased entry: the hash is not invertible. This
//! system therefore writes emails as typed and relies on the listed form matching.)
//!
//! The API key travels in the request body or the query string, as Gather requires; no
//! error, log line or `Debug` output carries it, nor any email, name or response body.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use url::Url;

use super::{Guest, GuestList, Removal, RemovalOutcome};
use crate::pii::{sha256_hex, Sensitive};
use crate::upstream::{build_client, join_url, HttpOptions, Upstream, UpstreamError};

pub const GATHER_DEFAULT_API_BASE: &str = "https://api.gather.town";

const UPSTREAM: &str = "Gather";
const GET_PATH: &str = "/api/getEmailGuestlist";
const SET_PATH: &str = "/api/setEmailGuestlist";

/// A guest list as Gather answers it: email → entry, entries kept exactly as read.
pub(super) type Entries = Map<String, Value>;

pub struct GatherGuestList {
    http: reqwest::Client,
    get_url: Url,
    set_url: Url,
    api_key: Sensitive<String>,
    space_id: String,
    upstream: Upstream,
}

impl fmt::Debug for GatherGuestList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatherGuestList")
            .field("set_url", &self.set_url.as_str())
            .field("space_id", &self.space_id)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl GatherGuestList {
    /// `space_id` is in Gather's form, with a backslash where the space URL has a slash
    /// (`oxrhEtb3sV7VutbQ\MySpace`).
    pub fn new(
        base_url: &str,
        api_key: Sensitive<String>,
        space_id: &str,
        options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        let get_url = join_url(UPSTREAM, base_url, GET_PATH)?;
        let set_url = join_url(UPSTREAM, base_url, SET_PATH)?;
        let http = build_client(UPSTREAM, options.timeout)?;
        Ok(Self {
            http,
            get_url,
            set_url,
            api_key,
            space_id: space_id.to_owned(),
            upstream: Upstream::new(UPSTREAM, options.retry),
        })
    }

    /// HTTP requests sent to Gather so far, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.upstream.attempts()
    }

    /// The whole guest list, as Gather answers it.
    async fn read(&self) -> Result<Entries, UpstreamError> {
        let mut url = self.get_url.clone();
        url.query_pairs_mut()
            .append_pair("spaceId", &self.space_id)
            .append_pair("apiKey", self.api_key.expose());
        let success = self
            .upstream
            .send("guest list of the configured space", || {
                self.http
                    .get(url.clone())
                    .header(reqwest::header::ACCEPT, "application/json")
            })
            .await?;
        parse_entries(UPSTREAM, &success.body)
    }

    /// One `setEmailGuestlist` call. Any 2xx is success, whatever its body.
    async fn write(&self, guestlist: &Entries, overwrite: bool) -> Result<(), UpstreamError> {
        let body = json!({
            "apiKey": self.api_key.expose(),
            "spaceId": self.space_id,
            "guestlist": guestlist,
            "overwrite": overwrite,
        });
        let body =
            Bytes::from(
                serde_json::to_vec(&body).map_err(|_| UpstreamError::Transport {
                    upstream: UPSTREAM,
                    reason: "cannot encode the guest list".to_owned(),
                })?,
            );
        self.upstream
            .send("guest list of the configured space", || {
                self.http
                    .post(self.set_url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl GuestList for GatherGuestList {
    async fn add(&self, guests: &[Guest]) -> Result<(), UpstreamError> {
        if guests.is_empty() {
            return Ok(());
        }
        self.write(&guest_entries(guests), false).await
    }

    async fn remove(&self, removals: &[Removal]) -> Result<Vec<RemovalOutcome>, UpstreamError> {
        if removals.is_empty() {
            return Ok(Vec::new());
        }
        let before = self.read().await?;
        let plan = plan_removals(&before, removals);
        if plan.removed.is_empty() {
            return Ok(plan.outcomes);
        }
        self.write(&plan.kept, true).await?;

        let after = self.read().await?;
        let vanished = vanished(&plan.kept, &after);
        if !vanished.is_empty() {
            tracing::warn!(
                upstream = UPSTREAM,
                entries = vanished.len(),
                "guest-list entries vanished while we rewrote the list; adding them back"
            );
            self.write(&vanished, false).await?;
        }
        let lingering = plan
            .removed
            .iter()
            .filter(|email| listed(&after, email))
            .count();
        if lingering > 0 {
            tracing::warn!(
                upstream = UPSTREAM,
                entries = lingering,
                "removed guest-list entries are listed again after the rewrite"
            );
        }
        Ok(plan.outcomes)
    }
}

/// Reads a guest list: a JSON object of entries. Anything else is malformed; the reason names
/// the kind of fault, never the content.
pub(super) fn parse_entries(upstream: &'static str, body: &[u8]) -> Result<Entries, UpstreamError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| UpstreamError::Malformed {
        upstream,
        reason: format!(
            "guest list: {:?} error at line {}, column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    match value {
        Value::Object(entries) => Ok(entries),
        other => Err(UpstreamError::Malformed {
            upstream,
            reason: format!("guest list is a JSON {}, not an object", kind(&other)),
        }),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The entries this system writes for these guests (a later duplicate email wins).
pub(super) fn guest_entries(guests: &[Guest]) -> Entries {
    guests
        .iter()
        .map(|guest| {
            (
                guest.email.expose().to_owned(),
                json!({
                    "name": guest.name.expose(),
                    "role": guest.role,
                    "affiliation": guest.affiliation,
                }),
            )
        })
        .collect()
}

/// What a careful removal decided: one outcome per removal, the list without the removed
/// entries, and the emails (as listed) of the removed ones.
#[derive(Debug)]
pub(super) struct RemovalPlan {
    pub outcomes: Vec<RemovalOutcome>,
    pub kept: Entries,
    pub removed: Vec<String>,
}

/// Decides each removal against the list, in order: `Absent` when no entry's email matches
/// the hash (removals earlier in the batch included), `Removed` when at least one matching
/// entry reads as this system wrote it (those entries go), `KeptNotOurs` otherwise.
pub(super) fn plan_removals(entries: &Entries, removals: &[Removal]) -> RemovalPlan {
    let mut kept = entries.clone();
    let mut removed = Vec::new();
    let outcomes = removals
        .iter()
        .map(|removal| {
            let matching: Vec<String> = kept
                .keys()
                .filter(|email| email_matches(email, &removal.email_hash))
                .cloned()
                .collect();
            if matching.is_empty() {
                return RemovalOutcome::Absent;
            }
            let ours: Vec<String> = matching
                .into_iter()
                .filter(|email| {
                    kept.get(email.as_str())
                        .is_some_and(|entry| is_ours(entry, removal))
                })
                .collect();
            if ours.is_empty() {
                return RemovalOutcome::KeptNotOurs;
            }
            for email in ours {
                kept.remove(&email);
                removed.push(email);
            }
            RemovalOutcome::Removed
        })
        .collect();
    RemovalPlan {
        outcomes,
        kept,
        removed,
    }
}

/// The email as listed, or lowercased (Gather lowercases what it stores), hashes to `hash`.
fn email_matches(listed: &str, hash: &str) -> bool {
    let hash = hash.trim().to_ascii_lowercase();
    if sha256_hex(listed) == hash {
        return true;
    }
    let lowered = listed.to_lowercase();
    lowered != listed && sha256_hex(&lowered) == hash
}

/// The entry still reads as this system wrote it. A missing (or null) attribute reads as
/// empty: Gather may leave out attributes that were written empty.
fn is_ours(entry: &Value, removal: &Removal) -> bool {
    attribute(entry, "role") == Some(removal.role.as_str())
        && attribute(entry, "affiliation") == Some(removal.affiliation.as_str())
}

fn attribute<'a>(entry: &'a Value, name: &str) -> Option<&'a str> {
    match entry.get(name) {
        None | Some(Value::Null) => Some(""),
        Some(value) => value.as_str(),
    }
}

/// Whether `email` is on the list, as is or in another case.
fn listed(entries: &Entries, email: &str) -> bool {
    entries.contains_key(email) || {
        let lowered = email.to_lowercase();
        entries
            .keys()
            .any(|listed| listed.to_lowercase() == lowered)
    }
}

/// The entries of `expected` that are not on `actual`, as they were in `expected`.
pub(super) fn vanished(expected: &Entries, actual: &Entries) -> Entries {
    expected
        .iter()
        .filter(|(email, _)| !listed(actual, email))
        .map(|(email, entry)| (email.clone(), entry.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn emails(entries: &Entries) -> HashSet<&str> {
        entries.keys().map(String::as_str).collect()
    }

    fn removal(email: &str, role: &str, affiliation: &str) -> Removal {
        Removal {
            email_hash: sha256_hex(email),
            role: role.to_owned(),
            affiliation: affiliation.to_owned(),
        }
    }

    fn list(value: Value) -> Entries {
        match value {
            Value::Object(entries) => entries,
            _ => Map::new(),
        }
    }

    #[test]
    fn plans_removed_absent_and_kept() {
        let entries = list(json!({
            "ours@example.com": {"name": "A", "role": "guest", "affiliation": "KKTIX"},
            "hand@example.com": {"name": "B", "role": "guest", "affiliation": "Staff"},
            "other@example.com": {"name": "C", "role": "guest", "affiliation": "KKTIX"},
        }));
        let plan = plan_removals(
            &entries,
            &[
                removal("ours@example.com", "guest", "KKTIX"),
                removal("hand@example.com", "guest", "KKTIX"),
                removal("gone@example.com", "guest", "KKTIX"),
                removal("ours@example.com", "guest", "KKTIX"),
            ],
        );
        assert_eq!(
            plan.outcomes,
            vec![
                RemovalOutcome::Removed,
                RemovalOutcome::KeptNotOurs,
                RemovalOutcome::Absent,
                RemovalOutcome::Absent,
            ]
        );
        assert_eq!(plan.removed, vec!["ours@example.com".to_owned()]);
        assert_eq!(
            emails(&plan.kept),
            HashSet::from(["hand@example.com", "other@example.com"])
        );
    }

    #[test]
    fn matches_the_lowercased_listing_and_missing_attributes_read_empty() {
        let entries = list(json!({
            "Mixed@Example.com": {"role": "guest"},
        }));
        let plan = plan_removals(&entries, &[removal("mixed@example.com", "guest", "")]);
        assert_eq!(plan.outcomes, vec![RemovalOutcome::Removed]);
        assert!(plan.kept.is_empty());
    }

    #[test]
    fn vanished_ignores_case() {
        let expected = list(json!({"A@x.com": {}, "b@x.com": {}}));
        let actual = list(json!({"a@x.com": {}}));
        assert_eq!(
            emails(&vanished(&expected, &actual)),
            HashSet::from(["b@x.com"])
        );
    }

    #[test]
    fn malformed_lists_do_not_echo_content() {
        for body in [&b"not json secret@x.com"[..], b"[\"secret@x.com\"]", b""] {
            let error = parse_entries(UPSTREAM, body).expect_err("malformed");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }
}
