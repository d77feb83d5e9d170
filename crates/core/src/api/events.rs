//! The operators' read routes (kktix-poller, ops token): `GET /events`,
//! `GET /events/{slug}/status`, `GET /events/{slug}/report?from=&to=[&format=csv]`.
//! Figures only: no personal data.

use bytes::Bytes;
use http::{header, StatusCode};
use serde_json::json;

use super::{error_response, json, HttpResponse};
use crate::reconcile::Reconciler;
use crate::report::{daily_report, event_status, DateRange, ReportSettings};
use crate::sales::{event_sales, events_overview, valid_slug};

pub(super) async fn list(reconciler: &Reconciler, recent_days: i64) -> HttpResponse {
    match events_overview(
        reconciler.warehouse().as_ref(),
        reconciler.categories(),
        recent_days,
    )
    .await
    {
        Ok(events) => json(StatusCode::OK, &json!({ "events": events })),
        Err(error) => store_unavailable(&error),
    }
}

pub(super) async fn status(
    reconciler: &Reconciler,
    slug: &str,
    reports: &ReportSettings,
) -> HttpResponse {
    let (event, sales) = match find(reconciler, slug).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let status = event_status(&sales, reports);
    json(
        StatusCode::OK,
        &json!({
            "event": {"id": event.id, "slug": event.slug, "name": event.name},
            "tickets": status.tickets.iter().map(|t| json!({
                "ticket_name": t.ticket_name, "sold": t.sold, "quota": t.quota, "revenue": t.revenue,
            })).collect::<Vec<_>>(),
            "sold": status.sold,
            "revenue": status.revenue,
            "currency": status.currency,
            "refunded": status.refunded,
        }),
    )
}

pub(super) async fn report(
    reconciler: &Reconciler,
    slug: &str,
    query: Option<&str>,
) -> HttpResponse {
    let mut from = None;
    let mut to = None;
    let mut format = "json".to_owned();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "from" => from = Some(value.into_owned()),
            "to" => to = Some(value.into_owned()),
            "format" => format = value.into_owned(),
            _ => {}
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "from and to are required, as YYYY-MM-DD (Asia/Taipei dates)",
        );
    };
    let range = match DateRange::parse(&from, &to) {
        Ok(range) => range,
        Err(error) => return error_response(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    if format != "json" && format != "csv" {
        return error_response(StatusCode::BAD_REQUEST, "format must be json or csv");
    }
    let (event, sales) = match find(reconciler, slug).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let report = daily_report(&sales, &range);
    if format == "csv" {
        let csv = match report.to_csv() {
            Ok(csv) => csv,
            Err(error) => {
                tracing::error!(%error, "report CSV failed");
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the report could not be written",
                );
            }
        };
        let filename = format!("report-{}-{}-{}.csv", event.slug, range.from, range.to);
        return http::Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
            .header(
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            )
            .body(Bytes::from(csv))
            .unwrap_or_else(|_| {
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            });
    }
    json(
        StatusCode::OK,
        &json!({
            "event": {"id": event.id, "slug": event.slug, "name": event.name},
            "from": range.from,
            "to": range.to,
            "timezone": "Asia/Taipei",
            "days": report.days,
            "rows": report.rows.iter().map(|row| json!({
                "ticket_name": row.ticket_name, "per_day": row.per_day, "total": row.total,
            })).collect::<Vec<_>>(),
            "totals": report.totals,
            "total": report.total,
        }),
    )
}

async fn find(
    reconciler: &Reconciler,
    slug: &str,
) -> Result<(crate::model::EventRecord, Vec<crate::model::SaleRecord>), Box<HttpResponse>> {
    if !valid_slug(slug) {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "a slug is letters, digits, '-', '_' or '.', at most 100 characters",
        )));
    }
    match event_sales(
        reconciler.warehouse().as_ref(),
        reconciler.categories(),
        slug,
    )
    .await
    {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(Box::new(error_response(
            StatusCode::NOT_FOUND,
            "no event with that slug",
        ))),
        Err(error) => Err(Box::new(store_unavailable(&error))),
    }
}

fn store_unavailable(error: &crate::store::StoreError) -> HttpResponse {
    tracing::error!(%error, "the warehouse cannot be read");
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "the warehouse cannot be read right now",
    )
}
