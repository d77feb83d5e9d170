//! Sales figures for people: the events overview, one event's sales. Shared by the ops routes
//! (`GET /events…`, JSON or CSV) and the Discord bot, so both always agree.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{EventRecord, SaleRecord};
use crate::selection::CategoryRules;
use crate::store::{StoreError, Warehouse};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Seen by the newest run: still on sale.
    OnSale,
    /// No longer listed as not ended.
    Ended,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventOverview {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub state: EventState,
    /// Paid tickets not refunded; `None` when the warehouse could not say.
    pub sold: Option<u64>,
    pub last_seen: DateTime<Utc>,
}

/// Events on sale, and those ended within `recent_days`, newest first.
pub async fn events_overview(
    warehouse: &dyn Warehouse,
    categories: &CategoryRules,
    recent_days: i64,
) -> Result<Vec<EventOverview>, StoreError> {
    let events = warehouse.events().await?;
    let Some(latest) = events.iter().map(|e| e.last_seen).max() else {
        return Ok(Vec::new());
    };
    let cutoff = Utc::now() - chrono::Duration::days(recent_days);
    let mut overview = Vec::new();
    for event in events {
        // The newest run saw these events on sale; the others ended since.
        let on_sale = (latest - event.last_seen).num_seconds().abs() < 60;
        if !on_sale && event.last_seen < cutoff {
            continue;
        }
        let table = categories.route(&event.name).table;
        let sold = warehouse
            .sales(&table, event.id)
            .await
            .ok()
            .map(|sales| sales.iter().filter(|sale| !sale.cancelled).count() as u64);
        overview.push(EventOverview {
            id: event.id,
            slug: event.slug,
            name: event.name,
            state: if on_sale {
                EventState::OnSale
            } else {
                EventState::Ended
            },
            sold,
            last_seen: event.last_seen,
        });
    }
    Ok(overview)
}

/// An event by slug (or id), with every sale in its warehouse table; `None` if unknown.
pub async fn event_sales(
    warehouse: &dyn Warehouse,
    categories: &CategoryRules,
    slug: &str,
) -> Result<Option<(EventRecord, Vec<SaleRecord>)>, StoreError> {
    let Some(event) = warehouse
        .events()
        .await?
        .into_iter()
        .find(|event| event.slug == slug || event.id.to_string() == slug)
    else {
        return Ok(None);
    };
    let table = categories.route(&event.name).table;
    let sales = warehouse.sales(&table, event.id).await?;
    Ok(Some((event, sales)))
}

/// Slugs as KKTIX makes them: letters, digits, `-`, `_`, `.`; anything else is refused
/// before it reaches a store.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 100
        && slug
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && slug != "."
        && slug != ".."
}
