//! KKTIX's organiser webhook: batches of order notifications, read through a field mapping.
//!
//! KKTIX does not publish the payload's schema. What public receivers see is
//! `{"batch_id", "notifications": [{"type", "event": {"name","slug"}, "order": {"id","state",
//! "paid_at"|"cancelled_at"}, "contact": {"name","email","mobile"}, "tickets": [{"id","name",
//! "price_cents","price_currency"}]}]}`, with `order_activated_paid` and `order_cancelled` as
//! types, and a console "test" notification that says `status` instead of `state`. So every
//! path below is data (`[intake.webhook]`, JSON pointers, each a list of alternatives tried in
//! order): when KKTIX renames a field, the fix is a line of configuration.
//!
//! A body this mapping cannot read is still accepted (KKTIX would otherwise retry and then
//! disable the hook); [`key_paths`] describes its shape for the channel and the log without a
//! single value.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::csv::Aliases;
use crate::deidentify::PrivacyRules;
use crate::kktix::Attendee;
use crate::model::SkippedRecord;

/// `[intake.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookMapping {
    /// The batch's own id (retries of a batch repeat it); else the body's SHA-256 is its id.
    pub batch_id: Aliases,
    /// The list of order notifications in a batch.
    pub notifications: Aliases,
    /// Within one notification:
    pub kind: Aliases,
    pub event_id: Aliases,
    pub event_slug: Aliases,
    pub event_name: Aliases,
    pub order_no: Aliases,
    pub order_state: Aliases,
    pub payment_state: Aliases,
    pub paid_at: Aliases,
    pub contact_name: Aliases,
    pub contact_email: Aliases,
    pub contact_mobile: Aliases,
    pub tickets: Aliases,
    /// Within one ticket:
    pub ticket_id: Aliases,
    pub ticket_name: Aliases,
    /// In cents (divided by 100)…
    pub price_cents: Aliases,
    /// …or in whole units.
    pub price: Aliases,
    pub currency: Aliases,
    /// A ticket's own holder, when the notification names one: mailed instead of the contact.
    pub attendee_name: Aliases,
    pub attendee_email: Aliases,
    /// Notification types that announce a paid order, and a cancelled or refunded one.
    pub paid_types: Vec<String>,
    pub cancelled_types: Vec<String>,
    /// Order states that mean cancelled or refunded, whatever the type says.
    pub cancelled_states: Vec<String>,
    /// Payment states that mean unpaid (an order may be activated before it is paid), and
    /// paid (for an entry that names no type).
    pub unpaid_states: Vec<String>,
    pub paid_states: Vec<String>,
    /// Event slugs of KKTIX's console test notification: acknowledged and ignored.
    pub test_slugs: Vec<String>,
}

fn paths(list: &[&str]) -> Aliases {
    Aliases(list.iter().map(|path| (*path).to_owned()).collect())
}

impl Default for WebhookMapping {
    fn default() -> Self {
        Self {
            batch_id: paths(&["/batch_id", "/id"]),
            notifications: paths(&["/notifications", "/orders", "/data"]),
            kind: paths(&["/type", "/event_type"]),
            event_id: paths(&["/event/id", "/event_id"]),
            event_slug: paths(&["/event/slug", "/event_slug"]),
            event_name: paths(&["/event/name"]),
            order_no: paths(&["/order/id", "/order/order_no", "/order_no"]),
            order_state: paths(&["/order/state", "/order/status"]),
            payment_state: paths(&["/order/payment_status", "/order/payment_state"]),
            paid_at: paths(&["/order/paid_at"]),
            contact_name: paths(&["/contact/name"]),
            contact_email: paths(&["/contact/email"]),
            contact_mobile: paths(&["/contact/mobile", "/contact/phone"]),
            tickets: paths(&["/tickets", "/attendees"]),
            ticket_id: paths(&["/id", "/attendee_id"]),
            ticket_name: paths(&["/name", "/ticket_name"]),
            price_cents: paths(&["/price_cents"]),
            price: paths(&["/price"]),
            currency: paths(&["/price_currency", "/currency"]),
            attendee_name: paths(&["/attendee/name"]),
            attendee_email: paths(&["/attendee/email"]),
            paid_types: vec!["order_activated_paid".into(), "order_paid".into()],
            cancelled_types: vec![
                "order_cancelled".into(),
                "order_refunded".into(),
                "order_canceled".into(),
            ],
            cancelled_states: vec!["cancelled".into(), "canceled".into(), "refunded".into()],
            unpaid_states: vec!["unpaid".into(), "pending".into(), "未繳費".into()],
            paid_states: vec!["paid".into(), "已繳費".into()],
            test_slugs: vec!["event-slug".into()],
        }
    }
}

/// One notification, read: which event, and what it says of which attendees.
#[derive(Debug)]
pub struct Notification {
    pub event: EventRef,
    pub change: Change,
}

/// How a notification names its event: KKTIX's payloads carry the slug, not the id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventRef {
    Id(u64),
    Slug(String),
}

impl std::fmt::Display for EventRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Slug(slug) => f.write_str(slug),
        }
    }
}

#[derive(Debug)]
pub enum Change {
    /// Attendees to admit (paid) or wait for (unpaid).
    Attendees(Vec<Attendee>),
    /// The order was cancelled or refunded: every attendee of it goes, by order number
    /// (cancellations carry no tickets) or by the ticket ids it lists.
    Cancelled {
        order_no: Option<String>,
        attendee_ids: Vec<u64>,
    },
}

/// A batch as read.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub batch_id: Option<String>,
    pub notifications: Vec<Notification>,
    /// Entries of the list that could not be read: position and reason, never values.
    pub skipped: Vec<SkippedRecord>,
    /// Console test notifications, ignored.
    pub tests: usize,
    /// Notification types the mapping does not know, ignored (by type name and count).
    pub ignored_types: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ShapeError {
    #[error("the body is not JSON")]
    NotJson,
    #[error("the body has no list of notifications at {0}")]
    NoNotifications(String),
}

impl WebhookMapping {
    /// Reads a batch; an error means its shape is not understood at all.
    pub fn parse(&self, body: &[u8], privacy: &PrivacyRules) -> Result<ParsedBatch, ShapeError> {
        let root: Value = serde_json::from_slice(body).map_err(|_| ShapeError::NotJson)?;
        let list = match find(&root, &self.notifications) {
            Some(Value::Array(list)) => list.clone(),
            // A single notification sent bare.
            _ if root.is_object() && find(&root, &self.order_no).is_some() => vec![root.clone()],
            _ => {
                return Err(ShapeError::NoNotifications(
                    self.notifications.0.join(" or "),
                ))
            }
        };
        let mut batch = ParsedBatch {
            batch_id: find(&root, &self.batch_id).and_then(scalar_text),
            ..ParsedBatch::default()
        };
        let mut ignored = BTreeSet::new();
        for (index, entry) in list.iter().enumerate() {
            match self.notification(entry, privacy) {
                Ok(Some(notification)) => batch.notifications.push(notification),
                Ok(None) => {
                    let slug = find(entry, &self.event_slug).and_then(scalar_text);
                    if slug.is_some_and(|slug| self.test_slugs.contains(&slug)) {
                        batch.tests += 1;
                    } else if let Some(kind) = find(entry, &self.kind).and_then(scalar_text) {
                        ignored.insert(kind.chars().take(64).collect::<String>());
                    }
                }
                Err((attendee_id, reason)) => batch.skipped.push(SkippedRecord {
                    event_id: 0,
                    attendee_id,
                    reason: format!("notification {index}: {reason}"),
                }),
            }
        }
        batch.ignored_types = ignored.into_iter().collect();
        Ok(batch)
    }

    /// `Ok(None)`: a test notification or a type this mapping ignores.
    fn notification(
        &self,
        entry: &Value,
        privacy: &PrivacyRules,
    ) -> Result<Option<Notification>, (u64, String)> {
        let text = |aliases: &Aliases| find(entry, aliases).and_then(scalar_text);
        let slug = text(&self.event_slug);
        if slug
            .as_ref()
            .is_some_and(|slug| self.test_slugs.contains(slug))
        {
            return Ok(None);
        }
        let event = match (find(entry, &self.event_id).and_then(as_u64), slug) {
            (Some(id), _) => EventRef::Id(id),
            (None, Some(slug)) => EventRef::Slug(slug),
            (None, None) => return Err((0, "names no event (id or slug)".into())),
        };
        let kind = text(&self.kind).unwrap_or_default();
        let state = text(&self.order_state).unwrap_or_default();
        let order_no = text(&self.order_no);
        let tickets: Vec<&Value> = match find(entry, &self.tickets) {
            Some(Value::Array(tickets)) => tickets.iter().collect(),
            _ => Vec::new(),
        };
        let cancelled =
            contains(&self.cancelled_types, &kind) || contains(&self.cancelled_states, &state);
        if cancelled {
            let attendee_ids = tickets
                .iter()
                .filter_map(|ticket| find(ticket, &self.ticket_id).and_then(as_u64))
                .collect::<Vec<_>>();
            if order_no.is_none() && attendee_ids.is_empty() {
                return Err((0, "a cancellation that names no order and no ticket".into()));
            }
            return Ok(Some(Notification {
                event,
                change: Change::Cancelled {
                    order_no,
                    attendee_ids,
                },
            }));
        }
        if !contains(&self.paid_types, &kind) && !kind.is_empty() {
            return Ok(None);
        }
        if tickets.is_empty() {
            return Err((0, "an order notification with no tickets".into()));
        }
        // A paid type is paid unless the order's payment state says otherwise; an entry with
        // no type at all is paid only when its payment state says so.
        let payment = text(&self.payment_state).unwrap_or_default();
        let is_paid = if kind.is_empty() {
            contains(&self.paid_states, &payment)
        } else {
            !contains(&self.unpaid_states, &payment)
        };
        let paid_at = text(&self.paid_at)
            .and_then(|at| super::csv::parse_local_time(&at, chrono_tz::Asia::Taipei))
            .map(|at| at.timestamp_millis() as f64 / 1000.0);
        let contact_name = text(&self.contact_name).unwrap_or_default();
        let contact_email = text(&self.contact_email).unwrap_or_default();
        let contact_mobile = text(&self.contact_mobile).unwrap_or_default();
        let mut attendees = Vec::new();
        for ticket in tickets {
            let ticket_text = |aliases: &Aliases| find(ticket, aliases).and_then(scalar_text);
            let Some(id) = find(ticket, &self.ticket_id).and_then(as_u64) else {
                return Err((0, "a ticket without a numeric id".into()));
            };
            let price = match (
                find(ticket, &self.price_cents).and_then(Value::as_f64),
                find(ticket, &self.price).and_then(Value::as_f64),
            ) {
                (Some(cents), _) => Some(cents / 100.0),
                (None, price) => price,
            };
            let name = ticket_text(&self.attendee_name).unwrap_or_else(|| contact_name.clone());
            let email = ticket_text(&self.attendee_email)
                .filter(|email| email.contains('@'))
                .unwrap_or_else(|| contact_email.clone());
            let record = json!({
                "id": id,
                "ticket_name": ticket_text(&self.ticket_name).unwrap_or_default(),
                "order_no": order_no.as_deref().and_then(|n| n.parse::<u64>().ok()),
                "state": if state.is_empty() { "activated".to_owned() } else { state.clone() },
                "is_paid": is_paid,
                "price": price,
                "currency": ticket_text(&self.currency),
                "updated_at": paid_at,
                "data": [
                    [privacy.name_label, name],
                    [privacy.email_label, email],
                    [privacy.phone_label, contact_mobile],
                ],
                "source": "webhook",
            });
            let attendee = Attendee::from_value(record).map_err(|e| (id, e.reason))?;
            attendees.push(attendee);
        }
        Ok(Some(Notification {
            event,
            change: Change::Attendees(attendees),
        }))
    }

    /// KKTIX's own id of a batch, when the body has a plain one (letters, digits, `-`, `_`).
    pub fn batch_id_of(&self, body: &[u8]) -> Option<String> {
        let root: Value = serde_json::from_slice(body).ok()?;
        let id = find(&root, &self.batch_id).and_then(scalar_text)?;
        let plain = id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        plain.then_some(id)
    }

    /// The events a body names, read as far as it can be, for a body that is only a trigger.
    pub fn event_refs(&self, body: &[u8]) -> Vec<EventRef> {
        let Ok(root) = serde_json::from_slice::<Value>(body) else {
            return Vec::new();
        };
        let list = match find(&root, &self.notifications) {
            Some(Value::Array(list)) => list.clone(),
            _ => vec![root],
        };
        let mut refs = BTreeSet::new();
        for entry in &list {
            if let Some(id) = find(entry, &self.event_id).and_then(as_u64) {
                refs.insert(EventRef::Id(id));
            } else if let Some(slug) = find(entry, &self.event_slug).and_then(scalar_text) {
                if !self.test_slugs.contains(&slug) {
                    refs.insert(EventRef::Slug(slug));
                }
            }
        }
        refs.into_iter().collect()
    }
}

fn contains(values: &[String], value: &str) -> bool {
    !value.is_empty() && values.iter().any(|v| v.eq_ignore_ascii_case(value.trim()))
}

/// The first alias (a JSON pointer) that is present and not null.
fn find<'a>(value: &'a Value, aliases: &Aliases) -> Option<&'a Value> {
    aliases
        .0
        .iter()
        .filter_map(|path| value.pointer(path.trim()))
        .find(|found| !found.is_null())
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// The shape of a JSON body as its key paths (`/notifications/[]/order/id`), deduplicated, in
/// order, at most `limit`: what the channel and the log say of a body not understood. No value
/// appears — not even the keys of an object whose keys look like data (emails as keys).
pub fn key_paths(body: &[u8], limit: usize) -> Vec<String> {
    let Ok(root) = serde_json::from_slice::<Value>(body) else {
        return vec!["(not JSON)".into()];
    };
    let mut paths = Vec::new();
    let mut seen = BTreeSet::new();
    walk(&root, String::new(), &mut paths, &mut seen, limit);
    paths
}

fn walk(
    value: &Value,
    at: String,
    paths: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
    limit: usize,
) {
    if paths.len() >= limit {
        return;
    }
    let label = |kind: &str| {
        if at.is_empty() {
            format!("/ ({kind})")
        } else {
            format!("{at} ({kind})")
        }
    };
    match value {
        Value::Object(fields) => {
            if fields.is_empty() {
                push(label("object"), paths, seen);
            }
            for (key, inner) in fields {
                walk(inner, format!("{at}/{}", safe_key(key)), paths, seen, limit);
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                push(label("empty list"), paths, seen);
            }
            for inner in items.iter().take(50) {
                walk(inner, format!("{at}/[]"), paths, seen, limit);
            }
        }
        Value::String(_) => push(label("string"), paths, seen),
        Value::Number(_) => push(label("number"), paths, seen),
        Value::Bool(_) => push(label("bool"), paths, seen),
        Value::Null => push(label("null"), paths, seen),
    }
}

fn push(path: String, paths: &mut Vec<String>, seen: &mut BTreeSet<String>) {
    if seen.insert(path.clone()) {
        paths.push(path);
    }
}

/// A key as it may be shown: identifier-like keys as they are, anything else (an email used
/// as a key, a long free text) as `*`.
fn safe_key(key: &str) -> String {
    let plain = key.len() <= 40
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain && !key.chars().all(|c| c.is_ascii_digit()) {
        key.to_owned()
    } else {
        "*".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAID: &str = r#"{
      "batch_id": "0000000000000001",
      "notifications": [
        {"type": "order_activated_paid",
         "event": {"name": "Example Event", "slug": "abcd1234"},
         "order": {"id": 100000001, "state": "activated", "paid_at": "2026-04-18T14:00:54.442+08:00"},
         "contact": {"name": "Test User", "email": "test@example.com", "mobile": "0900000000"},
         "tickets": [
           {"id": 200000001, "name": "一般票", "price_cents": 260000, "price_currency": "TWD"},
           {"id": 200000002, "name": "早鳥票", "price_cents": 0, "price_currency": "TWD"}
         ]},
        {"type": "order_cancelled",
         "event": {"name": "Example Event", "slug": "abcd1234"},
         "order": {"id": 100000002, "state": "cancelled", "cancelled_at": "2026-04-18T14:03:50.949+08:00"}},
        {"type": "order_activated_paid",
         "event": {"name": "Event Name", "slug": "event-slug"},
         "order": {"id": 123, "status": "activated", "payment_status": "paid"},
         "tickets": [{"price": 1000, "name": "normal", "id": 12,
                      "attendee": {"name": "User_1", "email": "user_1@example.com"}}]},
        {"type": "order_transferred", "event": {"slug": "abcd1234"}, "order": {"id": 5}},
        {"type": "order_activated_paid", "event": {"slug": "abcd1234"},
         "order": {"id": 6}, "tickets": [{"id": "not-a-number", "name": "x"}],
         "contact": {"email": "leak@example.com"}}
      ]
    }"#;

    #[test]
    fn reads_paid_and_cancelled_orders_and_skips_the_console_test() {
        let mapping = WebhookMapping::default();
        let batch = mapping
            .parse(PAID.as_bytes(), &PrivacyRules::default())
            .unwrap();
        assert_eq!(batch.batch_id.as_deref(), Some("0000000000000001"));
        assert_eq!(batch.tests, 1);
        assert_eq!(batch.ignored_types, vec!["order_transferred".to_string()]);
        assert_eq!(batch.skipped.len(), 1);
        assert!(!batch.skipped[0].reason.contains("leak"));
        assert_eq!(batch.notifications.len(), 2);
        let paid = &batch.notifications[0];
        assert_eq!(paid.event, EventRef::Slug("abcd1234".into()));
        let Change::Attendees(attendees) = &paid.change else {
            panic!("paid order")
        };
        assert_eq!(attendees.len(), 2);
        assert_eq!(attendees[0].id, 200000001);
        assert!(attendees[0].is_paid);
        assert_eq!(attendees[0].price, Some(2600.0));
        assert_eq!(attendees[0].order_no, Some(100000001));
        assert_eq!(attendees[0].updated_at, Some(1_776_492_054.442));
        let contact = PrivacyRules::default().contact(&attendees[0]);
        assert_eq!(contact.email.unwrap().expose(), "test@example.com");
        match &batch.notifications[1].change {
            Change::Cancelled {
                order_no,
                attendee_ids,
            } => {
                assert_eq!(order_no.as_deref(), Some("100000002"));
                assert!(attendee_ids.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_shape_is_an_error_and_its_key_paths_hold_no_values() {
        let body = br#"{"payload": {"buyer@example.com": {"name": "Secret Name", "n": 1}}, "list": [{"x": true}, {"x": null}]}"#;
        assert!(matches!(
            WebhookMapping::default().parse(body, &PrivacyRules::default()),
            Err(ShapeError::NoNotifications(_))
        ));
        let mut paths = key_paths(body, 100);
        paths.sort();
        assert_eq!(
            paths,
            vec![
                "/list/[]/x (bool)",
                "/list/[]/x (null)",
                "/payload/*/n (number)",
                "/payload/*/name (string)",
            ]
        );
        let shown = paths.join(" ");
        assert!(!shown.contains("buyer") && !shown.contains("Secret"));
        assert_eq!(key_paths(b"not json", 10), vec!["(not JSON)".to_string()]);
    }

    #[test]
    fn event_refs_read_what_they_can() {
        let refs = WebhookMapping::default().event_refs(PAID.as_bytes());
        assert_eq!(refs, vec![EventRef::Slug("abcd1234".into())]);
        assert!(WebhookMapping::default().event_refs(b"{").is_empty());
    }
}
