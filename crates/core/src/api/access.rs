//! The authorizer's routes: `POST /authorize` grants, `POST /revoke` takes back; both answer
//! per attendee (granted / revoked / failed with a reason).

use http::StatusCode;

use super::{error_response, json, parse_json, HttpResponse, MAX_BATCH};
use crate::access::remote::{AuthorizeBody, RevokeBody};
use crate::access::{AccessRequest, AccessService, GrantOutcome, GrantResult};
use crate::pii::EmailAddress;
use crate::remote::Results;

pub(super) async fn authorize(service: &dyn AccessService, body: &[u8]) -> HttpResponse {
    let body: AuthorizeBody = match parse_json(body) {
        Ok(body) => body,
        Err(bad) => return bad.response(),
    };
    if body.admissions.len() > MAX_BATCH {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("at most {MAX_BATCH} admissions per request"),
        );
    }
    let mut results: Vec<Option<GrantResult>> = Vec::with_capacity(body.admissions.len());
    let mut requests = Vec::new();
    for admission in body.admissions {
        match EmailAddress::parse(admission.email.expose()) {
            Ok(email) => {
                results.push(None);
                requests.push(AccessRequest {
                    key: admission.key,
                    email,
                    name: admission.name,
                    event_name: admission.event_name,
                    ticket_name: admission.ticket_name,
                });
            }
            Err(invalid) => results.push(Some(GrantResult {
                key: admission.key,
                outcome: GrantOutcome::Failed {
                    reason: invalid.to_string(),
                    transient: false,
                },
            })),
        }
    }
    let mut granted = service.authorize(requests).await.into_iter();
    let results: Vec<GrantResult> = results
        .into_iter()
        .filter_map(|slot| slot.or_else(|| granted.next()))
        .collect();
    json(StatusCode::OK, &Results { results })
}

pub(super) async fn revoke(service: &dyn AccessService, body: &[u8]) -> HttpResponse {
    let body: RevokeBody = match parse_json(body) {
        Ok(body) => body,
        Err(bad) => return bad.response(),
    };
    if body.revocations.len() > MAX_BATCH {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("at most {MAX_BATCH} revocations per request"),
        );
    }
    if let Some(bad) = body
        .revocations
        .iter()
        .find(|r| r.email_hash.len() != 64 || !r.email_hash.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            &format!("revocation {}: email_hash must be 64 hex digits", bad.key),
        );
    }
    let results = service.revoke(body.revocations).await;
    json(StatusCode::OK, &Results { results })
}
