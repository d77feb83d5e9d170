//! Taking access back from refunded attendees, after every event has been reconciled.

use std::collections::HashSet;

use super::{FailureTally, Reconciler, RunState};
use crate::access::{RevokeOutcome, RevokeRequest};
use crate::kktix::HostingEvent;
use crate::model::{AttendeeKey, Step, PERMANENT, TRANSIENT};

impl Reconciler {
    /// Takes each event's admissions as they stand after this run (read from the ledger only
    /// for an event whose reconcile stopped early), counts what is sold, and revokes the
    /// access of attendees who left the book.
    pub(super) async fn revoke_refunded(&self, events: &[HostingEvent], state: &mut RunState) {
        let mut candidates = Vec::new();
        // Emails that still hold a ticket somewhere: their guest-list entry must stay.
        let mut still_held: HashSet<String> = HashSet::new();
        for event in events {
            let known = state.admissions.remove(&event.id);
            let admissions = match known {
                Some(admissions) => admissions,
                None => match self.ledger.admissions(event.id).await {
                    Ok(admissions) => admissions,
                    Err(error) => {
                        state.failed(
                            "store",
                            format!("event {}: reading the ledger: {error}", event.id),
                        );
                        return;
                    }
                },
            };
            for (attendee_id, admission) in admissions {
                if admission.loaded && !admission.cancelled {
                    state.summary.sold += 1;
                    if let Some(hash) = &admission.email_hash {
                        still_held.insert(hash.clone());
                    }
                }
                let due = admission.needs_revoke()
                    && admission
                        .revoke_failures
                        .due(state.now, self.options.step_backoff);
                if let Some(grant) = admission.granted.filter(|_| due) {
                    let key = AttendeeKey {
                        event_id: event.id,
                        attendee_id,
                    };
                    candidates.push((key, admission.email_hash, grant));
                }
            }
        }
        let Some(access) = &self.access else {
            return;
        };
        if candidates.is_empty() {
            return;
        }
        candidates.sort_by_key(|(key, _, _)| *key);

        let mut entries = Vec::new();
        let mut requests = Vec::new();
        for (key, email_hash, grant) in candidates {
            match email_hash {
                Some(hash) if still_held.contains(&hash) => {
                    // The same buyer holds another ticket: removing the entry would lock them out.
                    entries.push(state.entry(
                        key,
                        Step::Revoked,
                        None,
                        Some("kept: the buyer holds another ticket".into()),
                    ));
                    state.summary.revoked += 1;
                }
                Some(hash) => requests.push(RevokeRequest {
                    key,
                    email_hash: hash,
                    event_name: grant.event_name,
                    ticket_name: grant.ticket_name,
                }),
                None => {
                    entries.push(state.entry(
                        key,
                        Step::Revoked,
                        None,
                        Some("nothing to remove: no email was recorded".into()),
                    ));
                }
            }
        }

        let mut failures = FailureTally::default();
        if !requests.is_empty() {
            for result in access.revoke(requests).await {
                match result.outcome {
                    RevokeOutcome::Revoked { removal } => {
                        let detail = serde_json::to_value(removal)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned));
                        entries.push(state.entry(result.key, Step::Revoked, None, detail));
                        state.summary.revoked += 1;
                    }
                    RevokeOutcome::Failed { reason, transient } => {
                        failures.add(&reason);
                        let prefix = if transient { TRANSIENT } else { PERMANENT };
                        entries.push(state.entry(
                            result.key,
                            Step::RevokeFailed,
                            None,
                            Some(format!("{prefix}{reason}")),
                        ));
                    }
                }
            }
        }
        failures.report(state, "guest list", "revoking access");
        self.record(entries, state).await;
    }
}
