//! The level-triggered reconcile loop: each run compares what KKTIX says is live with what
//! the ledger says was done, and does the difference. A step that fails is simply still
//! pending next run.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::deidentify::PrivacyRules;
use crate::kktix::{AttendeeFetch, HostingEvent, KktixClient};
use crate::selection::{CategoryRules, EventSelector};
use crate::store::{AttendeeKey, AttendeeRow, Ledger, LedgerEntry, Step, Warehouse};

/// Attendees fetched, loaded and recorded per step of a run.
const FETCH_CHUNK: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Everything that could be done was done (broken records are reported, not failures).
    Ok,
    /// Some steps failed and stay pending for the next run.
    Partial,
    /// The run could not do its work at all (KKTIX or the store unreachable, say).
    Failed,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }
}

/// A record KKTIX sent that did not parse: reported and skipped, the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRecord {
    pub event_id: u64,
    pub attendee_id: u64,
    pub reason: String,
}

/// What one run did. Holds counts, ids and reasons only: never personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub outcome: RunOutcome,
    /// Events the selector kept.
    pub events: u64,
    /// Attendee ids in those events' attendance books.
    pub live: u64,
    /// Attendee detail requests made (new or not yet fully admitted).
    pub fetched: u64,
    pub new_paid: u64,
    /// Still awaiting payment after this run.
    pub pending: u64,
    /// Admitted attendees gone from the book: refunded or cancelled.
    pub refunded: u64,
    /// Never-paid orders gone from the book (an ATM order that expired).
    pub expired: u64,
    pub skipped: Vec<SkippedRecord>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub upstream_requests: u64,
    /// New paid attendees per ticket name, for the channel notice.
    pub new_by_ticket: BTreeMap<String, u64>,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} events, {} new paid, {} pending, {} refunded, {} skipped, {} errors, {} KKTIX requests, {} ms",
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.outcome.as_str(),
            self.events,
            self.new_paid,
            self.pending,
            self.refunded,
            self.skipped.len(),
            self.errors.len(),
            self.upstream_requests,
            self.duration_ms
        )
    }
}

/// Another run holds the loop; runs never overlap (the poller is the ledger's only writer).
#[derive(Debug, thiserror::Error)]
#[error("a reconcile run is already in progress")]
pub struct RunInProgress;

pub struct Reconciler {
    kktix: KktixClient,
    warehouse: Arc<dyn Warehouse>,
    ledger: Arc<dyn Ledger>,
    selector: EventSelector,
    categories: CategoryRules,
    privacy: PrivacyRules,
    running: tokio::sync::Mutex<()>,
}

/// Counts and findings of the run in progress.
struct RunState {
    run_id: String,
    summary: RunSummary,
}

impl RunState {
    fn partial(&mut self, error: String) {
        tracing::warn!(run_id = %self.run_id, %error, "reconcile step failed");
        self.summary.errors.push(error);
        if self.summary.outcome == RunOutcome::Ok {
            self.summary.outcome = RunOutcome::Partial;
        }
    }

    fn failed(&mut self, error: String) {
        tracing::error!(run_id = %self.run_id, %error, "reconcile run failed");
        self.summary.errors.push(error);
        self.summary.outcome = RunOutcome::Failed;
    }
}

impl Reconciler {
    pub fn new(
        kktix: KktixClient,
        warehouse: Arc<dyn Warehouse>,
        ledger: Arc<dyn Ledger>,
        selector: EventSelector,
        categories: CategoryRules,
        privacy: PrivacyRules,
    ) -> Self {
        Self {
            kktix,
            warehouse,
            ledger,
            selector,
            categories,
            privacy,
            running: tokio::sync::Mutex::new(()),
        }
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Runs once unless a run is already under way.
    pub async fn try_run(&self) -> Result<RunSummary, RunInProgress> {
        let _guard = self.running.try_lock().map_err(|_| RunInProgress)?;
        Ok(self.run_locked().await)
    }

    /// Runs once, waiting for a run under way to finish first.
    pub async fn run(&self) -> RunSummary {
        let _guard = self.running.lock().await;
        self.run_locked().await
    }

    async fn run_locked(&self) -> RunSummary {
        let started = Instant::now();
        let started_at = Utc::now();
        let requests_before = self.kktix.requests_sent();
        let run_id = format!(
            "{}-{:04x}",
            started_at.format("%Y%m%dT%H%M%S%.3fZ"),
            rand::random::<u16>()
        );
        let mut state = RunState {
            run_id: run_id.clone(),
            summary: RunSummary {
                run_id,
                started_at,
                duration_ms: 0,
                outcome: RunOutcome::Ok,
                events: 0,
                live: 0,
                fetched: 0,
                new_paid: 0,
                pending: 0,
                refunded: 0,
                expired: 0,
                skipped: Vec::new(),
                errors: Vec::new(),
                warnings: Vec::new(),
                upstream_requests: 0,
                new_by_ticket: BTreeMap::new(),
            },
        };

        match self.kktix.hosting_events().await {
            Ok(listing) => {
                for reason in listing.skipped {
                    state.summary.warnings.push(reason);
                }
                let events: Vec<HostingEvent> = listing
                    .events
                    .into_iter()
                    .filter(|event| self.selector.matches(event))
                    .collect();
                state.summary.events = events.len() as u64;
                for event in &events {
                    self.reconcile_event(event, &mut state).await;
                }
            }
            Err(error) => state.failed(format!("listing events: {error}")),
        }

        let mut summary = state.summary;
        summary.upstream_requests = self.kktix.requests_sent() - requests_before;
        summary.duration_ms = started.elapsed().as_millis() as u64;
        if let Err(error) = self.ledger.record_run(&summary).await {
            tracing::error!(%error, "could not record the run");
            summary.errors.push(format!("recording the run: {error}"));
            summary.outcome = RunOutcome::Failed;
        }
        tracing::info!(
            run_id = %summary.run_id,
            outcome = summary.outcome.as_str(),
            new_paid = summary.new_paid,
            pending = summary.pending,
            refunded = summary.refunded,
            skipped = summary.skipped.len(),
            errors = summary.errors.len(),
            upstream_requests = summary.upstream_requests,
            duration_ms = summary.duration_ms,
            "reconcile run finished"
        );
        summary
    }

    async fn reconcile_event(&self, event: &HostingEvent, state: &mut RunState) {
        let event_id = event.id;
        let routing = self.categories.route(&event.name);
        if !routing.matched_rule {
            state.summary.warnings.push(format!(
                "event {event_id} matched no category rule; its rows go to {}",
                routing.table
            ));
        }

        let book = match self.kktix.attendance_books(event_id).await {
            Ok(books) => match books.first() {
                Some(book) => book.id,
                None => {
                    state.partial(format!("event {event_id}: KKTIX lists no attendance book"));
                    return;
                }
            },
            Err(error) => {
                state.partial(format!("event {event_id}: {error}"));
                return;
            }
        };
        let live = match self.kktix.attendance_book(event_id, book).await {
            Ok(live) => live,
            Err(error) => {
                state.partial(format!("event {event_id}: {error}"));
                return;
            }
        };
        let admissions = match self.ledger.admissions(event_id).await {
            Ok(admissions) => admissions,
            Err(error) => {
                state.failed(format!("event {event_id}: reading the ledger: {error}"));
                return;
            }
        };
        state.summary.live += live.len() as u64;
        let live_set: HashSet<u64> = live.iter().copied().collect();

        let to_fetch: Vec<u64> = live
            .iter()
            .copied()
            .filter(|id| !admissions.get(id).is_some_and(|a| a.is_complete()))
            .collect();
        state.summary.fetched += to_fetch.len() as u64;

        let now = Utc::now();
        // In chunks, each loaded and recorded before the next is fetched: a first run over a
        // large event keeps memory flat and its progress survives a crash.
        for chunk in to_fetch.chunks(FETCH_CHUNK) {
            let mut rows = Vec::new();
            let mut entries = Vec::new();
            let mut loaded_tickets = Vec::new();
            for (attendee_id, fetch) in self.kktix.attendees(event_id, chunk).await {
                let key = AttendeeKey {
                    event_id,
                    attendee_id,
                };
                match fetch {
                    AttendeeFetch::Fetched(attendee) => {
                        let email_hash = self
                            .privacy
                            .contact(&attendee)
                            .email
                            .map(|email| email.hash());
                        if !attendee.is_paid {
                            state.summary.pending += 1;
                            let known = admissions.get(&attendee_id);
                            if !known.is_some_and(|a| a.awaiting_payment && !a.cancelled) {
                                entries.push(self.entry(
                                    key,
                                    Step::AwaitingPayment,
                                    email_hash,
                                    state,
                                    now,
                                ));
                            }
                            continue;
                        }
                        let record = self.privacy.deidentify(&attendee);
                        let attendee_infos = match serde_json::to_string(&record) {
                            Ok(json) => json,
                            Err(error) => {
                                state.summary.skipped.push(SkippedRecord {
                                    event_id,
                                    attendee_id,
                                    reason: format!(
                                        "cannot encode the de-identified record: {error}"
                                    ),
                                });
                                continue;
                            }
                        };
                        rows.push(AttendeeRow {
                            table: routing.table.clone(),
                            event_id,
                            event_name: event.name.clone(),
                            attendee_id,
                            attendee_infos,
                            ticket_name: attendee.ticket_name.clone(),
                            paid_at: attendee.updated_at.and_then(epoch_seconds).unwrap_or(now),
                            price: attendee.price.unwrap_or(0.0),
                            currency: attendee.currency.clone().unwrap_or_default(),
                            state: attendee.state.clone().unwrap_or_else(|| "activated".into()),
                            loaded_at: now,
                        });
                        loaded_tickets.push(attendee.ticket_name.clone());
                        entries.push(self.entry(key, Step::Loaded, email_hash, state, now));
                    }
                    AttendeeFetch::Broken(error) => {
                        tracing::warn!(event_id, attendee_id, reason = %error, "skipping a broken attendee record");
                        state.summary.skipped.push(SkippedRecord {
                            event_id,
                            attendee_id,
                            reason: error.reason,
                        });
                    }
                    AttendeeFetch::Failed(error) => {
                        state.partial(format!("event {event_id} attendee {attendee_id}: {error}"));
                    }
                }
            }

            // The warehouse first, then the ledger: a crash in between loads the rows again next
            // run, which the upsert makes harmless.
            if !rows.is_empty() {
                if let Err(error) = self.warehouse.upsert_attendees(&rows).await {
                    state.failed(format!("event {event_id}: loading the warehouse: {error}"));
                    return;
                }
            }
            if let Err(error) = self.ledger.append(&entries).await {
                state.failed(format!("event {event_id}: writing the ledger: {error}"));
                return;
            }
            state.summary.new_paid += rows.len() as u64;
            for ticket in loaded_tickets {
                *state.summary.new_by_ticket.entry(ticket).or_default() += 1;
            }
        }

        self.cancel_gone(event_id, &routing.table, &admissions, &live_set, state, now)
            .await;
    }

    /// Attendees the ledger knows who have left the book were refunded or cancelled.
    async fn cancel_gone(
        &self,
        event_id: u64,
        table: &str,
        admissions: &std::collections::HashMap<u64, crate::store::Admission>,
        live: &HashSet<u64>,
        state: &mut RunState,
        now: DateTime<Utc>,
    ) {
        let mut gone: Vec<(u64, bool)> = admissions
            .iter()
            .filter(|(id, a)| {
                !a.cancelled && (a.loaded || a.awaiting_payment) && !live.contains(id)
            })
            .map(|(id, a)| (*id, a.loaded))
            .collect();
        if gone.is_empty() {
            return;
        }
        gone.sort_unstable();
        // An empty book while people hold tickets looks like a KKTIX fault, not a mass refund;
        // revoking everyone on a glitch would lock the whole audience out.
        if live.is_empty() && gone.len() > 1 {
            state.partial(format!(
                "event {event_id}: the attendance book came back empty while {} attendees hold tickets; not treating them as refunded",
                gone.len()
            ));
            return;
        }
        let refunded: Vec<AttendeeKey> = gone
            .iter()
            .filter(|(_, loaded)| *loaded)
            .map(|(attendee_id, _)| AttendeeKey {
                event_id,
                attendee_id: *attendee_id,
            })
            .collect();
        if !refunded.is_empty() {
            if let Err(error) = self.warehouse.mark_cancelled(table, &refunded, now).await {
                state.failed(format!(
                    "event {event_id}: marking refunds in the warehouse: {error}"
                ));
                return;
            }
        }
        let entries: Vec<LedgerEntry> = gone
            .iter()
            .map(|(attendee_id, loaded)| {
                let key = AttendeeKey {
                    event_id,
                    attendee_id: *attendee_id,
                };
                let detail = if *loaded {
                    "refunded"
                } else {
                    "expired unpaid"
                };
                let mut entry = self.entry(key, Step::Cancelled, None, state, now);
                entry.detail = Some(detail.into());
                entry
            })
            .collect();
        if let Err(error) = self.ledger.append(&entries).await {
            state.failed(format!("event {event_id}: writing the ledger: {error}"));
            return;
        }
        state.summary.refunded += refunded.len() as u64;
        state.summary.expired += (gone.len() - refunded.len()) as u64;
    }

    fn entry(
        &self,
        key: AttendeeKey,
        step: Step,
        email_hash: Option<String>,
        state: &RunState,
        at: DateTime<Utc>,
    ) -> LedgerEntry {
        LedgerEntry {
            key,
            step,
            email_hash,
            detail: None,
            run_id: state.run_id.clone(),
            at,
        }
    }
}

fn epoch_seconds(seconds: f64) -> Option<DateTime<Utc>> {
    if !seconds.is_finite() {
        return None;
    }
    let whole = seconds.floor();
    let nanos = ((seconds - whole) * 1e9) as u32;
    Utc.timestamp_opt(whole as i64, nanos).single()
}
