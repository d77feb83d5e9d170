//! Absence is not always a refund. A KKTIX glitch can return a truncated attendance book (or
//! an operator can import a partial export): when, in one run, more of an event's admitted
//! attendees vanish than `[safety] max_revokes_per_run` *and* more than `max_revoke_share` of
//! them, nobody of that event is revoked; the channel hears it once, they keep their access,
//! and they go only when an operator confirms (`autopilot revoke --confirm EVENT`, `POST
//! /revoke/confirm`, `/autopilot confirm-revoke`) — or never, if they come back. An explicit
//! cancellation (an order marked cancelled) is not an absence and is never held.

use std::collections::HashMap;

use super::{Reconciler, RunState};
pub use crate::model::SafetySettings;
use crate::model::{Admission, RevokeHold, RevokeHoldState};

impl Reconciler {
    /// What of `gone` (absences: `(attendee id, was admitted)`) may be cancelled now; records
    /// or clears the event's hold. `None` when the store failed.
    pub(super) async fn guard_absences(
        &self,
        event_id: u64,
        admissions: &HashMap<u64, Admission>,
        gone: Vec<(u64, bool)>,
        empty_source: bool,
        state: &mut RunState,
    ) -> Option<Vec<(u64, bool)>> {
        let hold = match self.ledger.revoke_hold(event_id).await {
            Ok(hold) => hold,
            Err(error) => {
                state.failed(
                    "store",
                    format!("event {event_id}: reading the revoke holds: {error}"),
                );
                return None;
            }
        };
        let active = hold
            .as_ref()
            .filter(|h| h.state != RevokeHoldState::Cleared);
        let vanished: Vec<u64> = gone
            .iter()
            .filter(|(_, loaded)| *loaded)
            .map(|(id, _)| *id)
            .collect();
        let admitted = admissions
            .values()
            .filter(|a| a.loaded && !a.cancelled)
            .count() as u64;
        if active.is_some_and(|h| h.state == RevokeHoldState::Confirmed) {
            // An operator confirmed: those still gone go now.
            state.summary.warnings.push(format!(
                "event {event_id}: revoking the {} vanished attendee(s) an operator confirmed",
                vanished.len()
            ));
            self.set_hold(
                event_id,
                RevokeHoldState::Cleared,
                &vanished,
                admitted,
                state,
            )
            .await?;
            return Some(gone);
        }
        let glitch = self.safety.holds(vanished.len() as u64, admitted)
            || (empty_source && vanished.len() > 1);
        if glitch {
            if active.is_none() {
                state.summary.alerts.push(format!(
                    "event {event_id}: {} of its {admitted} admitted attendees vanished from KKTIX in one run — more than a refund wave looks like, so nobody was revoked and they keep their access. If they really were refunded: `autopilot revoke --confirm {event_id}` (or POST /revoke/confirm, or /autopilot confirm-revoke)",
                    vanished.len()
                ));
            }
            self.set_hold(event_id, RevokeHoldState::Held, &vanished, admitted, state)
                .await?;
            state.summary.held += vanished.len() as u64;
            return Some(Vec::new());
        }
        if active.is_some() {
            // They came back (or few enough are gone to be ordinary refunds).
            state.summary.warnings.push(format!(
                "event {event_id}: the vanished attendees are back (or few enough to be refunds); the revoke hold is lifted"
            ));
            self.set_hold(
                event_id,
                RevokeHoldState::Cleared,
                &vanished,
                admitted,
                state,
            )
            .await?;
        }
        Some(gone)
    }

    async fn set_hold(
        &self,
        event_id: u64,
        hold_state: RevokeHoldState,
        vanished: &[u64],
        admitted: u64,
        state: &mut RunState,
    ) -> Option<()> {
        let hold = RevokeHold {
            event_id,
            state: hold_state,
            attendee_ids: vanished.to_vec(),
            admitted,
            at: state.now,
        };
        match self.ledger.record_revoke_hold(&hold).await {
            Ok(()) => Some(()),
            Err(error) => {
                state.failed(
                    "store",
                    format!("event {event_id}: recording the revoke hold: {error}"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_thresholds_must_be_exceeded() {
        let safety = SafetySettings::default();
        assert!(!safety.holds(10, 45), "10 is not more than 10");
        assert!(safety.holds(42, 45), "the truncated book of the report");
        assert!(
            !safety.holds(12, 1000),
            "12 of 1,000 is a refund wave, not a glitch"
        );
        assert!(safety.holds(60, 1000));
        assert!(SafetySettings {
            max_revoke_share: 1.5,
            ..SafetySettings::default()
        }
        .validate()
        .is_err());
    }
}

/// Why a confirmation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("{0:?} is not an event: give a KKTIX event id or a slug of [events.catalog]")]
    UnknownEvent(String),
    #[error("event {0} has no vanished attendees waiting for a confirmation")]
    NothingHeld(u64),
    #[error("the store failed: {0}")]
    Store(String),
}

impl ConfirmError {
    /// The HTTP status `POST /revoke/confirm` answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownEvent(_) => 404,
            Self::NothingHeld(_) => 409,
            Self::Store(_) => 503,
        }
    }
}

impl Reconciler {
    /// An operator's word that the attendees held for `event` really were refunded: they are
    /// revoked now — those still gone (an API event's book is read again first; whoever came
    /// back keeps their access).
    pub async fn confirm_revoke(&self, event: &str) -> Result<super::RunSummary, ConfirmError> {
        let event_id = self
            .resolve_event(event)
            .await
            .ok_or_else(|| ConfirmError::UnknownEvent(event.to_owned()))?;
        let _guard = self.running.lock().await;
        let hold = self
            .ledger
            .revoke_hold(event_id)
            .await
            .map_err(|e| ConfirmError::Store(e.to_string()))?
            .filter(|hold| hold.state != RevokeHoldState::Cleared)
            .ok_or(ConfirmError::NothingHeld(event_id))?;
        let mut state = self.begin(super::RunKind::Confirm);
        state.summary.events = 1;
        let confirmed = RevokeHold {
            state: RevokeHoldState::Confirmed,
            at: state.now,
            ..hold.clone()
        };
        self.ledger
            .record_revoke_hold(&confirmed)
            .await
            .map_err(|e| ConfirmError::Store(e.to_string()))?;
        let event = self.describe_event(event_id, &mut state).await;
        let door = self.selector.door_of(event_id, self.fallback_door());
        let selected = super::SelectedEvent { event, door };
        if door == crate::selection::Door::Api && self.kktix.is_some() {
            self.reconcile_event(&selected, super::event::Intake::Api, &mut state)
                .await;
        } else {
            // A CSV or webhook event cannot be read again: the held ids are the absences.
            let table = self.categories.route(&selected.event.name).table;
            state.recorded.clear();
            if let Some(admissions) = self.read_admissions(event_id, &mut state).await {
                let gone: Vec<(u64, bool)> = hold
                    .attendee_ids
                    .iter()
                    .filter(|id| admissions.get(id).is_some_and(|a| a.loaded && !a.cancelled))
                    .map(|id| (*id, true))
                    .collect();
                let vanished: Vec<u64> = gone.iter().map(|(id, _)| *id).collect();
                if self.cancel(event_id, &table, gone, &mut state).await {
                    let admitted = hold.admitted;
                    self.set_hold(
                        event_id,
                        RevokeHoldState::Cleared,
                        &vanished,
                        admitted,
                        &mut state,
                    )
                    .await;
                    let admissions = super::fold(admissions, &mut state.recorded);
                    state.admissions.insert(event_id, admissions);
                }
            }
        }
        self.revoke_refunded(std::slice::from_ref(&selected.event), &mut state)
            .await;
        Ok(self.finish(state).await)
    }
}
