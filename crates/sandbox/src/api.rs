//! The HTTP surface: KKTIX hosting API v2 routes, rendered per request.

use std::collections::HashMap;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Attendee, Corruption, Event, RequestStats, Sandbox};

pub(crate) fn router(sandbox: Sandbox) -> Router {
    Router::new()
        .route("/api/v2/hosting_events", get(hosting_events))
        .route(
            "/api/v2/hosting_events/{event_id}/attendance_books",
            get(attendance_books),
        )
        .route(
            "/api/v2/hosting_events/{event_id}/attendance_books/{book_id}",
            get(attendance_book),
        )
        .route(
            "/api/v2/hosting_events/{event_id}/attendees/{attendee_id}",
            get(attendee),
        )
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            sandbox.clone(),
            crate::faults::inject,
        ))
        .with_state(sandbox)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "unauthorized"})),
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response()
}

/// `Authorization: bearer <token>`, scheme case-insensitive.
fn token_ok(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.trim().splitn(2, ' ');
    let scheme = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default().trim();
    scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token == expected
}

/// Runs the auth check and counts the request; `count` picks the counter
/// of a successful answer. Returns the response to send.
fn answer(
    sandbox: &Sandbox,
    headers: &HeaderMap,
    count: fn(&mut RequestStats) -> &mut u64,
    body: impl FnOnce(&crate::State) -> Option<Response>,
) -> Response {
    let mut state = sandbox.lock();
    if !token_ok(headers, &state.token) {
        state.stats.unauthorized += 1;
        return unauthorized();
    }
    match body(&state) {
        Some(response) => {
            *count(&mut state.stats) += 1;
            response
        }
        None => {
            state.stats.not_found += 1;
            not_found()
        }
    }
}

fn parse_id(raw: &str) -> Option<u64> {
    raw.parse().ok()
}

#[derive(Serialize)]
struct EventJson<'a> {
    id: u64,
    name: &'a str,
    slug: &'a str,
    start_at: &'a str,
    end_at: &'a str,
    published: bool,
    timezone: &'static str,
    public_url: String,
    status: &'static str,
    tickets_count: usize,
}

async fn hosting_events(
    AxState(sandbox): AxState<Sandbox>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let only_not_ended = query
        .get("only_not_ended_event")
        .is_some_and(|v| v == "true" || v == "1");
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|&p| p >= 1)
        .unwrap_or(1);
    answer(
        &sandbox,
        &headers,
        |s| &mut s.hosting_events,
        |state| {
            let per_page = state.page_size;
            let listed: Vec<&Event> = state
                .events
                .iter()
                .filter(|e| !only_not_ended || !e.ended)
                .collect();
            let total_count = listed.len();
            let total_pages = total_count.div_ceil(per_page).max(1);
            let data: Vec<EventJson<'_>> = listed
                .iter()
                .skip((page - 1).saturating_mul(per_page))
                .take(per_page)
                .map(|e| EventJson {
                    id: e.id,
                    name: &e.name,
                    slug: &e.slug,
                    start_at: &e.start_at,
                    end_at: &e.end_at,
                    published: true,
                    timezone: "Asia/Taipei",
                    public_url: format!("https://pycontw.kktix.cc/events/{}", e.slug),
                    status: if e.ended { "ended" } else { "published" },
                    tickets_count: e.tickets.len(),
                })
                .collect();
            Some(
                Json(json!({
                    "data": data,
                    "meta": {"pagination": {
                        "current_page": page,
                        "total_pages": total_pages,
                        "per_page": per_page,
                        "total_count": total_count,
                    }}
                }))
                .into_response(),
            )
        },
    )
}

fn find_event<'a>(state: &'a crate::State, raw_id: &str) -> Option<&'a Event> {
    let id = parse_id(raw_id)?;
    state.events.iter().find(|e| e.id == id)
}

async fn attendance_books(
    AxState(sandbox): AxState<Sandbox>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
) -> Response {
    answer(
        &sandbox,
        &headers,
        |s| &mut s.attendance_books,
        |state| {
            let ev = find_event(state, &event_id)?;
            Some(
                Json(json!([{"id": ev.book_id, "name": "Default", "event_id": ev.id}]))
                    .into_response(),
            )
        },
    )
}

#[derive(Serialize)]
struct BookJson {
    id: u64,
    name: &'static str,
    signin_status: Vec<(u64, bool)>,
}

async fn attendance_book(
    AxState(sandbox): AxState<Sandbox>,
    headers: HeaderMap,
    Path((event_id, book_id)): Path<(String, String)>,
) -> Response {
    answer(
        &sandbox,
        &headers,
        |s| &mut s.attendance_book,
        |state| {
            let ev = find_event(state, &event_id)?;
            if parse_id(&book_id)? != ev.book_id {
                return None;
            }
            let body = BookJson {
                id: ev.book_id,
                name: "Default",
                signin_status: ev
                    .attendees
                    .iter()
                    .filter(|a| !a.refunded)
                    .take(ev.book_limit.unwrap_or(usize::MAX))
                    .map(|a| (a.id, false))
                    .collect(),
            };
            Some(Json(body).into_response())
        },
    )
}

#[derive(Serialize)]
struct AttendeeJson<'a> {
    id: u64,
    ticket_id: u64,
    ticket_name: &'a str,
    reg_no: u64,
    state: &'static str,
    checkin_code: String,
    qrcode: String,
    is_paid: bool,
    price: u32,
    currency: &'static str,
    payment_method: &'static str,
    data: Vec<(&'static str, String)>,
    kyc: serde_json::Map<String, Value>,
    id_number: Option<String>,
    search_string: String,
    updated_at: f64,
    created_at: f64,
    ticket_type: &'static str,
    slot: Option<String>,
    order_no: u64,
    tags: Vec<String>,
}

fn epoch_seconds(ms: i64) -> f64 {
    // Exact enough for the millisecond epochs we produce (< 2^53).
    ms as f64 / 1000.0
}

/// The full attendee record, or its corrupted variant.
fn render_attendee(ev: &Event, a: &Attendee) -> Response {
    let p = crate::State::persona_of(ev, a);
    let ticket = ev.tickets.get(a.ticket as usize);
    let price = ticket.map_or(0, |t| t.price);
    let record = AttendeeJson {
        id: a.id,
        ticket_id: ticket.map_or(0, |t| t.id),
        ticket_name: ticket.map_or("", |t| t.name.as_str()),
        reg_no: u64::from(a.reg_no),
        state: if a.refunded { "cancelled" } else { "activated" },
        search_string: p.search_string(),
        checkin_code: p.checkin_code,
        qrcode: p.qrcode,
        is_paid: a.paid,
        price,
        currency: "TWD",
        payment_method: if price == 0 {
            "WEBSITE"
        } else if a.atm {
            "ATM"
        } else {
            "CREDIT_CARD"
        },
        data: p.data,
        kyc: serde_json::Map::new(),
        id_number: None,
        updated_at: epoch_seconds(a.updated_ms),
        created_at: epoch_seconds(a.created_ms),
        ticket_type: "qrcode",
        slot: None,
        order_no: a.order_no,
        tags: Vec::new(),
    };
    match a.corruption {
        None => Json(record).into_response(),
        Some(Corruption::WrongTypes) => {
            let mut value = serde_json::to_value(&record).unwrap_or(Value::Null);
            if let Some(obj) = value.as_object_mut() {
                obj.insert("is_paid".into(), json!("yes"));
                obj.insert("data".into(), json!("oops"));
                obj.insert("reg_no".into(), json!(format!("#{}", a.reg_no)));
            }
            Json(value).into_response()
        }
        Some(Corruption::Truncated) => {
            let full = serde_json::to_string(&record).unwrap_or_default();
            let mut cut = full.len() / 2;
            while !full.is_char_boundary(cut) {
                cut -= 1;
            }
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                full[..cut].to_owned(),
            )
                .into_response()
        }
    }
}

async fn attendee(
    AxState(sandbox): AxState<Sandbox>,
    headers: HeaderMap,
    Path((event_id, attendee_id)): Path<(String, String)>,
) -> Response {
    answer(
        &sandbox,
        &headers,
        |s| &mut s.attendees,
        |state| {
            let ev = find_event(state, &event_id)?;
            let a = ev.attendee(parse_id(&attendee_id)?)?;
            Some(render_attendee(ev, a))
        },
    )
}

async fn fallback(AxState(sandbox): AxState<Sandbox>, headers: HeaderMap) -> Response {
    answer(&sandbox, &headers, |s| &mut s.not_found, |_| None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        assert!(!token_ok(&h, "t"));
        for (value, ok) in [
            ("bearer t", true),
            ("Bearer t", true),
            ("BEARER  t", true),
            ("Basic t", false),
            ("bearer", false),
            ("bearer u", false),
            ("t", false),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(token_ok(&h, "t"), ok, "{value}");
        }
    }
}
