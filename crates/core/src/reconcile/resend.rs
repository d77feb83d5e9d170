//! An operator's explicit resend of one invitation (`autopilot resend`, `POST /mail` with
//! `force`, Discord's `/autopilot resend`): the only way an attendee is mailed twice.

use chrono::Utc;

use super::Reconciler;
use crate::access::{AccessRequest, GrantOutcome};
use crate::kktix::AttendeeFetch;
use crate::mail::{Invitation, MailOutcome};
use crate::model::{AttendeeKey, GrantRecord, LedgerEntry, Step};
use crate::selection::Door;
use crate::store::LookupField;

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error(
        "{0:?} is not an attendee reference: give a reg_no, an order_no or EVENT_ID/ATTENDEE_ID"
    )]
    BadReference(String),
    #[error("no attendee matches {0}")]
    NotFound(String),
    #[error("{reference} matches several attendees ({keys}); name one as EVENT_ID/ATTENDEE_ID")]
    Ambiguous { reference: String, keys: String },
    #[error("attendee {0} is not in the ledger yet; the next run admits it")]
    NotAdmitted(AttendeeKey),
    #[error("attendee {0} was refunded or cancelled")]
    Cancelled(AttendeeKey),
    #[error("attendee {0} has not paid")]
    NotPaid(AttendeeKey),
    #[error("attendee {0} has no valid contact email")]
    NoEmail(AttendeeKey),
    #[error(
        "attendee {0} has no sealed contact (shredded, or imported before CONTACT_KEY was set)"
    )]
    NoContact(AttendeeKey),
    #[error("attendee {key}: {reason}")]
    Kktix { key: AttendeeKey, reason: String },
    #[error("this deployment sends no invitations (no mailer configured)")]
    NoMailer,
    #[error("attendee {key}: access could not be granted: {reason}")]
    Grant { key: AttendeeKey, reason: String },
    #[error("attendee {key}: the invitation was not sent: {reason}")]
    Mail { key: AttendeeKey, reason: String },
    /// The provider failed before taking it (an outage, a rate limit): worth asking again.
    #[error("attendee {key}: the invitation was not sent, the provider is failing: {reason}")]
    MailLater { key: AttendeeKey, reason: String },
    #[error("the store failed: {0}")]
    Store(String),
}

impl ResendError {
    /// The HTTP status `POST /poll` answers a failed resend with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadReference(_) => 400,
            Self::NotFound(_) => 404,
            Self::Ambiguous { .. }
            | Self::NotAdmitted(_)
            | Self::Cancelled(_)
            | Self::NotPaid(_) => 409,
            Self::NoEmail(_) | Self::NoContact(_) => 422,
            Self::NoMailer | Self::Store(_) => 503,
            Self::Kktix { .. }
            | Self::Grant { .. }
            | Self::Mail { .. }
            | Self::MailLater { .. } => 502,
        }
    }
}

pub use crate::model::ResendReport;

impl Reconciler {
    /// Resolves `EVENT_ID/ATTENDEE_ID`, an order number or a registration number (in that
    /// order of preference) to one attendee, through the warehouse.
    pub async fn find_attendee(&self, reference: &str) -> Result<AttendeeKey, ResendError> {
        let reference = reference.trim();
        if let Some((event, attendee)) = reference.split_once('/') {
            return match (event.trim().parse(), attendee.trim().parse()) {
                (Ok(event_id), Ok(attendee_id)) => Ok(AttendeeKey {
                    event_id,
                    attendee_id,
                }),
                _ => Err(ResendError::BadReference(reference.to_owned())),
            };
        }
        let number: u64 = reference
            .trim_start_matches('#')
            .parse()
            .map_err(|_| ResendError::BadReference(reference.to_owned()))?;
        let tables = self.categories.tables();
        for field in [LookupField::OrderNo, LookupField::RegNo] {
            let keys = self
                .warehouse
                .find_attendees(&tables, field, number)
                .await
                .map_err(|e| ResendError::Store(e.to_string()))?;
            match keys.as_slice() {
                [] => continue,
                [key] => return Ok(*key),
                many => {
                    return Err(ResendError::Ambiguous {
                        reference: reference.to_owned(),
                        keys: many
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
        Err(ResendError::NotFound(reference.to_owned()))
    }

    /// Sends the invitation again, bypassing the provider's deduplication, and records it.
    pub async fn resend(&self, key: AttendeeKey) -> Result<ResendReport, ResendError> {
        // The poller is the ledger's only writer: wait for a run under way.
        let _guard = self.running.lock().await;
        self.resend_locked(key, "resend").await
    }

    /// [`Self::resend`] from inside a run (the lock held); `kind` starts the `mailed` detail:
    /// `resend` for an operator's, [`crate::model::SELF_SERVICE`] for the attendee page's.
    pub(super) async fn resend_locked(
        &self,
        key: AttendeeKey,
        kind: &str,
    ) -> Result<ResendReport, ResendError> {
        let Some(mail) = &self.mail else {
            return Err(ResendError::NoMailer);
        };
        let run_id = format!("{kind}-{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
        let entry = |step: Step, detail: Option<String>| LedgerEntry {
            key,
            step,
            email_hash: None,
            detail,
            run_id: run_id.clone(),
            at: Utc::now(),
        };
        let store_error = |e: crate::store::StoreError| ResendError::Store(e.to_string());

        let admissions = self
            .ledger
            .admissions(key.event_id)
            .await
            .map_err(store_error)?;
        let admission = admissions
            .get(&key.attendee_id)
            .ok_or(ResendError::NotAdmitted(key))?;
        if admission.cancelled {
            return Err(ResendError::Cancelled(key));
        }
        let contact = self.resend_contact(key).await?;
        let ResendContact {
            email,
            name,
            ticket_name,
            checkin_code,
            reg_no,
        } = contact;

        let grant = match admission.granted.clone().filter(|_| !admission.revoked) {
            Some(grant) => grant,
            None => {
                let event_name = self.event_name(key.event_id).await;
                match &self.access {
                    None => GrantRecord {
                        event_name,
                        ticket_name: ticket_name.clone(),
                        gather: false,
                        links: Vec::new(),
                        venue_url: None,
                    },
                    Some(access) => {
                        let request = AccessRequest {
                            key,
                            email: email.clone(),
                            name: name.clone(),
                            event_name: event_name.clone(),
                            ticket_name: ticket_name.clone(),
                        };
                        let outcome = access
                            .authorize(vec![request])
                            .await
                            .into_iter()
                            .next()
                            .map(|result| result.outcome);
                        match outcome {
                            Some(GrantOutcome::Granted {
                                gather,
                                links,
                                venue_url,
                            }) => {
                                let record = GrantRecord {
                                    event_name,
                                    ticket_name: ticket_name.clone(),
                                    gather,
                                    links,
                                    venue_url,
                                };
                                let mut granted =
                                    entry(Step::Granted, serde_json::to_string(&record).ok());
                                granted.email_hash = Some(email.hash());
                                self.ledger.append(&[granted]).await.map_err(store_error)?;
                                record
                            }
                            Some(GrantOutcome::Failed { reason, .. }) => {
                                self.ledger
                                    .append(&[entry(Step::GrantFailed, Some(reason.clone()))])
                                    .await
                                    .map_err(store_error)?;
                                return Err(ResendError::Grant { key, reason });
                            }
                            None => {
                                return Err(ResendError::Grant {
                                    key,
                                    reason: "the authorizer gave no answer".into(),
                                })
                            }
                        }
                    }
                }
            }
        };

        let invitation = Invitation {
            key,
            email,
            name,
            event_name: grant.event_name,
            ticket_name,
            links: grant.links,
            venue_url: grant.venue_url,
            checkin_code,
            reg_no,
            // An operator's resend: an uncertain outcome is reported to the operator.
            intent: None,
        };
        let outcome = mail
            .send(vec![invitation], true)
            .await
            .into_iter()
            .next()
            .map(|result| result.outcome);
        match outcome {
            Some(MailOutcome::Sent {
                provider,
                message_id,
            }) => {
                let detail = format!("{kind} {provider}");
                self.ledger
                    .append(&[entry(Step::Mailed, Some(detail))])
                    .await
                    .map_err(store_error)?;
                Ok(ResendReport {
                    key,
                    provider,
                    message_id,
                })
            }
            Some(MailOutcome::Failed { reason, transient }) => {
                let prefix = if transient {
                    crate::model::TRANSIENT
                } else {
                    crate::model::PERMANENT
                };
                self.ledger
                    .append(&[entry(Step::MailFailed, Some(format!("{prefix}{reason}")))])
                    .await
                    .map_err(store_error)?;
                if transient {
                    Err(ResendError::MailLater { key, reason })
                } else {
                    Err(ResendError::Mail { key, reason })
                }
            }
            Some(MailOutcome::NotAttempted { reason }) => {
                Err(ResendError::MailLater { key, reason })
            }
            // Not retried on a guess: the operator decides after a look at the provider's logs.
            Some(MailOutcome::Uncertain { reason }) => Err(ResendError::Mail {
                key,
                reason: format!(
                    "it may or may not have gone out ({reason}); check the provider's logs before resending"
                ),
            }),
            None => Err(ResendError::Mail {
                key,
                reason: "the mailer gave no answer".into(),
            }),
        }
    }

    /// The attendee's contact: from the hosting API for an API event, else (or when the API
    /// cannot say) from the sealed contacts.
    async fn resend_contact(&self, key: AttendeeKey) -> Result<ResendContact, ResendError> {
        let door = self.selector.door_of(key.event_id, self.fallback_door());
        if let (Door::Api, Some(kktix)) = (door, &self.kktix) {
            let attendee = match kktix.attendee(key.event_id, key.attendee_id).await {
                AttendeeFetch::Fetched(attendee) => attendee,
                AttendeeFetch::Broken(error) => {
                    return Err(ResendError::Kktix {
                        key,
                        reason: error.reason,
                    })
                }
                AttendeeFetch::Failed(error) => {
                    return Err(ResendError::Kktix {
                        key,
                        reason: error.to_string(),
                    })
                }
            };
            if !attendee.is_paid {
                return Err(ResendError::NotPaid(key));
            }
            let contact = self.privacy.contact(&attendee);
            return Ok(ResendContact {
                email: contact.email.ok_or(ResendError::NoEmail(key))?,
                name: contact.name.unwrap_or_default(),
                ticket_name: attendee.ticket_name.clone(),
                checkin_code: attendee.checkin_code.clone(),
                reg_no: attendee.reg_no,
            });
        }
        let Some(vault) = &self.vault else {
            return Err(ResendError::NoContact(key));
        };
        let sealed = vault
            .store
            .contacts(key.event_id)
            .await
            .map_err(|e| ResendError::Store(e.to_string()))?;
        let text = sealed
            .get(&key.attendee_id)
            .ok_or(ResendError::NoContact(key))?;
        let card = vault
            .sealer
            .open(key, text)
            .map_err(|e| ResendError::Store(format!("the sealed contact of {key}: {e}")))?;
        Ok(ResendContact {
            email: card.email().ok_or(ResendError::NoEmail(key))?,
            name: card.name(),
            ticket_name: card.ticket_name.clone(),
            checkin_code: card.checkin_code.clone(),
            reg_no: card.reg_no,
        })
    }

    /// The event's name as the catalog, the events table or KKTIX's listing give it, or its
    /// id when none can say.
    async fn event_name(&self, event_id: u64) -> String {
        if let Some(event) = self.selector.catalog_event(event_id) {
            return event.name;
        }
        if let Ok(records) = self.warehouse.events().await {
            if let Some(record) = records.into_iter().find(|r| r.id == event_id) {
                return record.name;
            }
        }
        match &self.kktix {
            Some(kktix) => match kktix.hosting_events().await {
                Ok(listing) => listing
                    .events
                    .into_iter()
                    .find(|event| event.id == event_id)
                    .map(|event| event.name)
                    .unwrap_or_else(|| event_id.to_string()),
                Err(_) => event_id.to_string(),
            },
            None => event_id.to_string(),
        }
    }
}

/// Who a resend goes to.
struct ResendContact {
    email: crate::pii::EmailAddress,
    name: crate::pii::Sensitive<String>,
    ticket_name: String,
    checkin_code: Option<String>,
    reg_no: Option<u64>,
}
