//! The CSV door's route: `POST /import` (ops token, multipart: `event`, `attendees`,
//! `orders`) runs one import through the poller.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, StatusCode};

use super::{error_response, json, HttpRequest, HttpResponse};
use crate::model::RunOutcome;
use crate::reconcile::{ImportRequest, Reconciler};

const MAX_EVENT_FIELD: usize = 200;

pub(super) async fn import(reconciler: &Reconciler, request: &HttpRequest) -> HttpResponse {
    let request = match read_form(request).await {
        Ok(request) => request,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    match reconciler.import(request).await {
        Ok(summary) => {
            let status = match summary.outcome {
                RunOutcome::Ok | RunOutcome::Partial => StatusCode::OK,
                RunOutcome::Failed => StatusCode::BAD_GATEWAY,
            };
            json(status, &summary)
        }
        Err(failure) => error_response(
            StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            &failure.to_string(),
        ),
    }
}

/// The multipart form: `event` (text), `attendees` (file), `orders` (file, optional).
async fn read_form(request: &HttpRequest) -> Result<ImportRequest, String> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        "expected a multipart/form-data body with the fields event, attendees and (optionally) orders".to_owned()
    })?;
    let body = Bytes::copy_from_slice(request.body());
    let stream = futures::stream::once(async move { Ok::<Bytes, Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let (mut event, mut attendees, mut orders) = (None, None, None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => return Err("the multipart body is malformed".into()),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|_| format!("the form field {name:?} could not be read"))?;
        let slot = match name.as_str() {
            "event" => &mut event,
            "attendees" => &mut attendees,
            "orders" => &mut orders,
            other => {
                return Err(format!(
                    "unknown form field {:?}: expected event, attendees and orders",
                    other.chars().take(40).collect::<String>()
                ))
            }
        };
        if slot.is_some() {
            return Err(format!("the form field {name} is given twice"));
        }
        *slot = Some(bytes.to_vec());
    }
    let event =
        event.ok_or("the form field event is missing (a KKTIX event id or catalog slug)")?;
    let event = String::from_utf8(event)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty() && text.len() <= MAX_EVENT_FIELD)
        .ok_or("the form field event must be a KKTIX event id or a catalog slug")?;
    let attendees =
        attendees.ok_or("the form field attendees is missing (the attendees export)")?;
    Ok(ImportRequest {
        event,
        attendees,
        orders: orders.filter(|bytes| !bytes.is_empty()),
    })
}
