//! The mailer's route: `POST /mail` sends each invitation through the configured provider and
//! answers per invitation. `force: true` is an operator's explicit resend.

use http::StatusCode;

use super::{error_response, json, parse_json, HttpResponse, MAX_BATCH};
use crate::mail::remote::{MailBody, Settlements};
use crate::mail::{Invitation, MailOutcome, MailResult, MailService};
use crate::pii::EmailAddress;
use crate::remote::Results;

pub(super) async fn mail(service: &dyn MailService, body: &[u8]) -> HttpResponse {
    let body: MailBody = match parse_json(body) {
        Ok(body) => body,
        Err(bad) => return bad.response(),
    };
    if let Some(queries) = body.settle {
        if !body.invitations.is_empty() {
            return error_response(
                StatusCode::BAD_REQUEST,
                "request body: give invitations or settle, not both",
            );
        }
        let settlements = service.settle(queries).await;
        return json(StatusCode::OK, &Settlements { settlements });
    }
    if body.invitations.len() > MAX_BATCH {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("at most {MAX_BATCH} invitations per request"),
        );
    }
    let mut results: Vec<Option<MailResult>> = Vec::with_capacity(body.invitations.len());
    let mut invitations = Vec::new();
    for wire in body.invitations {
        match EmailAddress::parse(wire.email.expose()) {
            Ok(email) => {
                results.push(None);
                invitations.push(Invitation {
                    key: wire.key,
                    email,
                    name: wire.name,
                    event_name: wire.event_name,
                    ticket_name: wire.ticket_name,
                    links: wire.links,
                    venue_url: wire.venue_url,
                    checkin_code: wire.checkin_code,
                    reg_no: wire.reg_no,
                    intent: wire.intent,
                });
            }
            Err(invalid) => results.push(Some(MailResult {
                key: wire.key,
                outcome: MailOutcome::Failed {
                    reason: invalid.to_string(),
                    transient: false,
                },
            })),
        }
    }
    let sent = match body.campaign {
        Some(wave) => {
            if body.force {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "request body: a campaign wave cannot be forced",
                );
            }
            service.send_campaign(wave, invitations).await
        }
        None => service.send(invitations, body.force).await,
    };
    let mut sent = sent.into_iter();
    let results: Vec<MailResult> = results
        .into_iter()
        .filter_map(|slot| slot.or_else(|| sent.next()))
        .collect();
    json(StatusCode::OK, &Results { results })
}
