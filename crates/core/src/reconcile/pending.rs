//! The steps still pending for CSV and webhook events, done from the sealed contacts: a grant
//! or mail that failed during an import is retried by a later run (the schedule, or
//! `autopilot poll --once`), without the file or batch it came in.

use std::collections::HashMap;

use super::admit::Candidate;
use super::{Reconciler, RunState, SelectedEvent};
use crate::model::{Admission, AttendeeKey};

impl Reconciler {
    pub(super) async fn reconcile_pending(
        &self,
        selected: &SelectedEvent,
        state: &mut RunState,
    ) -> Option<HashMap<u64, Admission>> {
        let event = &selected.event;
        let event_id = event.id;
        let admissions = self.read_admissions(event_id, state).await?;
        let stages = self.stages();
        let backoff = self.options.step_backoff;
        let waiting: Vec<(u64, &Admission)> = admissions
            .iter()
            .filter(|(_, a)| a.loaded && !a.cancelled && self.needs_work(a, stages, state.now))
            .map(|(id, a)| (*id, a))
            .collect();
        state.summary.pending += admissions
            .values()
            .filter(|a| a.awaiting_payment && !a.cancelled && !a.loaded)
            .count() as u64;
        if waiting.is_empty() {
            return Some(admissions);
        }
        let Some(vault) = &self.vault else {
            state.partial(
                "CONTACT_KEY",
                format!(
                    "event {event_id}: {} attendee(s) have steps pending, but without CONTACT_KEY their contacts cannot be read",
                    waiting.len()
                ),
            );
            return Some(admissions);
        };
        let sealed = match vault.store.contacts(event_id).await {
            Ok(sealed) => sealed,
            Err(error) => {
                state.failed(
                    "store",
                    format!("event {event_id}: reading the sealed contacts: {error}"),
                );
                return None;
            }
        };
        let mut missing = 0u64;
        let mut unreadable = 0u64;
        let mut candidates = Vec::new();
        let mut sorted = waiting;
        sorted.sort_unstable_by_key(|(id, _)| *id);
        for (attendee_id, admission) in sorted {
            let key = AttendeeKey {
                event_id,
                attendee_id,
            };
            let Some(text) = sealed.get(&attendee_id) else {
                missing += 1;
                continue;
            };
            let card = match vault.sealer.open(key, text) {
                Ok(card) => card,
                Err(error) => {
                    tracing::warn!(%key, %error, "a sealed contact does not open");
                    unreadable += 1;
                    continue;
                }
            };
            let grant = admission
                .granted
                .clone()
                .filter(|_| !admission.revoked && !admission.cancelled);
            let needs_grant =
                stages.grant && grant.is_none() && admission.grant_failures.due(state.now, backoff);
            let needs_mail = stages.mail
                && !admission.mailed
                && admission.mail_intent.is_none()
                && admission.mail_failures.due(state.now, backoff);
            if !needs_grant && !needs_mail {
                continue;
            }
            candidates.push(Candidate {
                key,
                email: card.email(),
                email_hash: admission.email_hash.clone(),
                name: card.name(),
                ticket_name: card.ticket_name.clone(),
                checkin_code: card.checkin_code.clone(),
                reg_no: card.reg_no,
                grant,
                needs_grant,
                needs_mail,
                mail_refused_before: admission.mail_failures.permanent,
            });
        }
        if missing > 0 {
            state.partial(
                "contacts",
                format!(
                    "event {event_id}: {missing} attendee(s) have steps pending but no sealed contact (shredded, or imported before CONTACT_KEY was set); import the export again"
                ),
            );
        }
        if unreadable > 0 {
            state.partial(
                "CONTACT_KEY",
                format!(
                    "event {event_id}: {unreadable} sealed contact(s) do not open with CONTACT_KEY"
                ),
            );
        }
        if !self.grant(event, &mut candidates, state).await {
            return None;
        }
        if !self.mail(event, candidates, state).await {
            return None;
        }
        Some(admissions)
    }
}
