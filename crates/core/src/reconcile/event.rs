//! One event's reconcile, whichever door its attendees came through: the hosting API's book,
//! an import or webhook batch, or — with nothing new — the steps still pending, done from the
//! sealed contacts. Everything after the intake (load, grant, mail, refunds) is shared.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{fold, gone_from, Reconciler, RunState, SelectedEvent, SkippedRecord, FETCH_CHUNK};
use crate::intake::{IntakeBatch, IntakeRecord};
use crate::kktix::{AttendeeFetch, RecordError};
use crate::model::Admission;

/// What a run knows of one event's attendees.
pub(crate) enum Intake {
    /// Read the hosting API's attendance book (and the attendees that need work).
    Api,
    /// The attendees an import or webhook batch gives.
    Batch(IntakeBatch),
    /// Nothing new: the steps still pending, from the sealed contacts.
    Pending,
}

/// Whether an event may still need invitations: it has not ended (or says not when).
pub(crate) fn still_open(end_at: Option<&str>, now: DateTime<Utc>) -> bool {
    match end_at.and_then(|at| DateTime::parse_from_rfc3339(at).ok()) {
        Some(end) => end.with_timezone(&Utc) > now,
        None => true,
    }
}

impl Reconciler {
    pub(crate) async fn reconcile_event(
        &self,
        selected: &SelectedEvent,
        intake: Intake,
        state: &mut RunState,
    ) {
        let event = &selected.event;
        let event_id = event.id;
        state.recorded.clear();
        let routing = self.categories.route(&event.name);
        if !routing.matched_rule {
            state.summary.warnings.push(format!(
                "event {event_id} matched no category rule; its rows go to {}",
                routing.table
            ));
        }
        let table = routing.table;

        let admissions = match intake {
            Intake::Api => match self.reconcile_api(selected, &table, state).await {
                Some(admissions) => admissions,
                None => return,
            },
            Intake::Batch(batch) => {
                match self.reconcile_batch(selected, &table, batch, state).await {
                    Some(admissions) => admissions,
                    None => return,
                }
            }
            Intake::Pending => match self.reconcile_pending(selected, state).await {
                Some(admissions) => admissions,
                None => return,
            },
        };
        let admissions = fold(admissions, &mut state.recorded);
        state.admissions.insert(event_id, admissions);
    }

    pub(super) async fn read_admissions(
        &self,
        event_id: u64,
        state: &mut RunState,
    ) -> Option<HashMap<u64, Admission>> {
        match self.ledger.admissions(event_id).await {
            Ok(mut admissions) => {
                // Before anything is chosen for mailing: an open intent is settled first, so
                // that its recipients are sent again only if the provider did not accept them.
                if !self.settle_intents(event_id, &mut admissions, state).await {
                    return None;
                }
                Some(admissions)
            }
            Err(error) => {
                state.failed(
                    "store",
                    format!("event {event_id}: reading the ledger: {error}"),
                );
                None
            }
        }
    }

    /// The hosting API: the book's live ids, the attendees that need work, and those gone.
    async fn reconcile_api(
        &self,
        selected: &SelectedEvent,
        table: &str,
        state: &mut RunState,
    ) -> Option<HashMap<u64, Admission>> {
        let event = &selected.event;
        let event_id = event.id;
        let Some(kktix) = &self.kktix else {
            state.partial(
                "KKTIX",
                format!("event {event_id} uses the hosting API, but KKTIX_ACCESS_TOKEN is not set"),
            );
            return None;
        };
        let book = match kktix.attendance_books(event_id).await {
            Ok(books) => match books.first() {
                Some(book) => book.id,
                None => {
                    state.partial(
                        "KKTIX",
                        format!("event {event_id}: KKTIX lists no attendance book"),
                    );
                    return None;
                }
            },
            Err(error) => {
                state.partial(error.upstream(), format!("event {event_id}: {error}"));
                return None;
            }
        };
        let live = match kktix.attendance_book(event_id, book).await {
            Ok(live) => live,
            Err(error) => {
                state.partial(error.upstream(), format!("event {event_id}: {error}"));
                return None;
            }
        };
        let admissions = self.read_admissions(event_id, state).await?;
        state.summary.live += live.len() as u64;
        let live_set: HashSet<u64> = live.iter().copied().collect();

        let stages = self.stages();
        let to_fetch: Vec<u64> = live
            .iter()
            .copied()
            .filter(|id| match admissions.get(id) {
                None => true,
                Some(admission) => self.needs_work(admission, stages, state.now),
            })
            .collect();
        state.summary.fetched += to_fetch.len() as u64;

        // In chunks, each loaded, granted, mailed and recorded before the next is fetched: a
        // first run over a large event keeps memory flat and its progress survives a crash.
        for chunk in to_fetch.chunks(FETCH_CHUNK) {
            let fetched = kktix.attendees(event_id, chunk).await;
            if !self
                .admit_chunk(selected, table, &admissions, fetched, state)
                .await
            {
                return None;
            }
        }

        // An empty or truncated book while people hold tickets looks like a KKTIX fault, not a
        // mass refund: revoking everyone on a glitch would lock the whole audience out.
        let gone = self
            .guard_absences(
                event_id,
                &admissions,
                gone_from(&admissions, &live_set),
                live.is_empty(),
                state,
            )
            .await?;
        if !self.cancel(event_id, table, gone, state).await {
            return None;
        }
        Some(admissions)
    }

    /// An import or webhook batch: its records are the data; its cancellations are explicit;
    /// a full export's absences are refunds.
    async fn reconcile_batch(
        &self,
        selected: &SelectedEvent,
        table: &str,
        batch: IntakeBatch,
        state: &mut RunState,
    ) -> Option<HashMap<u64, Admission>> {
        let event_id = selected.event.id;
        let admissions = self.read_admissions(event_id, state).await?;
        for skipped in batch.skipped {
            tracing::warn!(event_id, attendee_id = skipped.attendee_id, reason = %skipped.reason, "skipping a broken intake record");
            state.summary.skipped.push(SkippedRecord {
                event_id,
                ..skipped
            });
        }
        state.summary.warnings.extend(batch.warnings);
        state.summary.live += batch.present.len() as u64;

        let stages = self.stages();
        let to_admit: Vec<IntakeRecord> = batch
            .records
            .into_iter()
            .filter(|record| match admissions.get(&record.id()) {
                None => true,
                Some(admission) => self.needs_work(admission, stages, state.now),
            })
            .collect();
        state.summary.fetched += to_admit.len() as u64;
        // Records are built a chunk at a time: a large export never exists in memory as
        // 10,000 KKTIX records at once.
        let mut to_admit = to_admit.into_iter().peekable();
        while to_admit.peek().is_some() {
            let chunk: Vec<(u64, AttendeeFetch)> = to_admit
                .by_ref()
                .take(FETCH_CHUNK)
                .map(|record| {
                    let id = record.id();
                    match record.build() {
                        Ok(attendee) => (id, AttendeeFetch::Fetched(Box::new(attendee))),
                        Err(reason) => (id, AttendeeFetch::Broken(RecordError { reason })),
                    }
                })
                .collect();
            if !self
                .admit_chunk(selected, table, &admissions, chunk, state)
                .await
            {
                return None;
            }
        }

        let mut cancelled: HashSet<u64> = batch.cancelled.iter().copied().collect();
        if !batch.cancelled_orders.is_empty() {
            let orders: HashSet<&str> = batch.cancelled_orders.iter().map(|o| o.trim()).collect();
            match self.warehouse.order_numbers(table, event_id).await {
                Ok(numbers) => cancelled.extend(
                    numbers
                        .into_iter()
                        .filter(|(_, order)| orders.contains(order.trim()))
                        .map(|(attendee, _)| attendee),
                ),
                Err(error) => {
                    state.failed(
                        "store",
                        format!("event {event_id}: reading the orders of its attendees: {error}"),
                    );
                    return None;
                }
            }
        }
        // Explicit cancellations of attendees the ledger holds, not yet cancelled.
        let mut gone: Vec<(u64, bool)> = admissions
            .iter()
            .filter(|(id, a)| {
                cancelled.contains(id) && !a.cancelled && (a.loaded || a.awaiting_payment)
            })
            .map(|(id, a)| (*id, a.loaded))
            .collect();
        if batch.snapshot {
            // A full export missing most rows is the same glitch as a truncated book.
            let mut present: HashSet<u64> = batch.present.iter().copied().collect();
            present.extend(&cancelled);
            let absent = self
                .guard_absences(
                    event_id,
                    &admissions,
                    gone_from(&admissions, &present),
                    batch.present.is_empty(),
                    state,
                )
                .await?;
            gone.extend(absent);
        }
        gone.sort_unstable();
        gone.dedup();
        if !self.cancel(event_id, table, gone, state).await {
            return None;
        }
        Some(admissions)
    }
}
