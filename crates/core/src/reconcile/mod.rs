//! The level-triggered reconcile loop: each run compares what KKTIX says is live with what
//! the ledger says was done, and does the difference. A step that fails is simply still
//! pending next run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access::AccessService;
use crate::deidentify::PrivacyRules;
use crate::kktix::{HostingEvent, KktixClient};
use crate::mail::MailService;
use crate::notify::Notifier;
use crate::selection::{CategoryRules, EventSelector};
use crate::store::{
    Admission, AttendeeKey, EventRecord, Ledger, LedgerEntry, Stages, Step, Warehouse,
};

mod admit;
mod notice;
mod resend;
mod revoke;

pub use notice::compose_notice;
pub use resend::{ResendError, ResendReport};

/// Attendees fetched, loaded, granted, mailed and recorded per step of a run: at 1,000 a
/// batch of new buyers costs one guest-list call and one Mailgun call.
const FETCH_CHUNK: usize = 1000;

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
    /// Put on the venue's guest list / given their links this run.
    #[serde(default)]
    pub granted: u64,
    /// Invitations the email provider accepted this run.
    #[serde(default)]
    pub mailed: u64,
    /// Refunded attendees whose access was taken back this run.
    #[serde(default)]
    pub revoked: u64,
    /// Paid attendees in the book after this run (all selected events).
    #[serde(default)]
    pub sold: u64,
    /// Upstreams (or stages) that failed during this run, for the "failing runs in a row" alert.
    #[serde(default)]
    pub failing: BTreeSet<String>,
    /// The channel notice this run sent, if any: "sales", "alert", "recovery" or combinations.
    #[serde(default)]
    pub notice: Option<String>,
    /// Whether the channel was told of a failure not yet followed by a recovery notice.
    #[serde(default)]
    pub alerting: bool,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} events, {} new paid, {} pending, {} refunded, {} granted, {} mailed, {} revoked, {} skipped, {} errors, {} KKTIX requests, {} ms",
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.outcome.as_str(),
            self.events,
            self.new_paid,
            self.pending,
            self.refunded,
            self.granted,
            self.mailed,
            self.revoked,
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

/// Tuning of the loop beyond what KKTIX and the stores need.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Backoff base for a failed grant, mail or revoke: retried after 1, 2, 4, … 64 × this.
    pub step_backoff: std::time::Duration,
    /// An upstream failing this many runs in a row raises a channel alert.
    pub alert_after_failing_runs: usize,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self {
            step_backoff: std::time::Duration::from_secs(60),
            alert_after_failing_runs: 3,
        }
    }
}

pub struct Reconciler {
    kktix: KktixClient,
    warehouse: Arc<dyn Warehouse>,
    ledger: Arc<dyn Ledger>,
    selector: EventSelector,
    categories: CategoryRules,
    privacy: PrivacyRules,
    access: Option<Arc<dyn AccessService>>,
    mail: Option<Arc<dyn MailService>>,
    notifier: Option<Arc<dyn Notifier>>,
    options: ReconcileOptions,
    running: tokio::sync::Mutex<()>,
}

/// Counts and findings of the run in progress.
struct RunState {
    run_id: String,
    now: DateTime<Utc>,
    summary: RunSummary,
    /// Ledger entries appended while the current event is reconciled.
    recorded: Vec<LedgerEntry>,
    /// Each fully reconciled event's admissions as they stand after this run's entries, so
    /// the revoke step need not read the ledger again.
    admissions: HashMap<u64, HashMap<u64, Admission>>,
}

impl RunState {
    /// Some work failed and stays pending; `failing` names the upstream or stage.
    fn partial(&mut self, failing: &str, error: String) {
        tracing::warn!(run_id = %self.run_id, failing, %error, "reconcile step failed");
        self.summary.errors.push(error);
        self.summary.failing.insert(failing.to_owned());
        if self.summary.outcome == RunOutcome::Ok {
            self.summary.outcome = RunOutcome::Partial;
        }
    }

    /// The run could not do its work.
    fn failed(&mut self, failing: &str, error: String) {
        tracing::error!(run_id = %self.run_id, failing, %error, "reconcile run failed");
        self.summary.errors.push(error);
        self.summary.failing.insert(failing.to_owned());
        self.summary.outcome = RunOutcome::Failed;
    }

    fn entry(
        &self,
        key: AttendeeKey,
        step: Step,
        email_hash: Option<String>,
        detail: Option<String>,
    ) -> LedgerEntry {
        LedgerEntry {
            key,
            step,
            email_hash,
            detail,
            run_id: self.run_id.clone(),
            at: self.now,
        }
    }
}

/// Many attendees failing for one reason make one error line, not hundreds.
#[derive(Default)]
struct FailureTally(BTreeMap<String, u64>);

impl FailureTally {
    fn add(&mut self, reason: &str) {
        *self.0.entry(reason.to_owned()).or_default() += 1;
    }

    fn report(self, state: &mut RunState, failing: &str, what: &str) {
        for (reason, count) in self.0 {
            state.partial(
                failing,
                format!("{what} failed for {count} attendee(s): {reason}"),
            );
        }
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
            access: None,
            mail: None,
            notifier: None,
            options: ReconcileOptions::default(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Grant venue access to paid attendees (and revoke it on refunds).
    pub fn with_access(mut self, access: Arc<dyn AccessService>) -> Self {
        self.access = Some(access);
        self
    }

    /// Mail each paid attendee an invitation, once.
    pub fn with_mail(mut self, mail: Arc<dyn MailService>) -> Self {
        self.mail = Some(mail);
        self
    }

    /// Tell the team's channel about sales and failures.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    pub fn with_options(mut self, options: ReconcileOptions) -> Self {
        self.options = options;
        self
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    pub fn warehouse(&self) -> &Arc<dyn Warehouse> {
        &self.warehouse
    }

    pub fn categories(&self) -> &CategoryRules {
        &self.categories
    }

    fn stages(&self) -> Stages {
        Stages {
            grant: self.access.is_some(),
            mail: self.mail.is_some(),
        }
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
            now: started_at,
            recorded: Vec::new(),
            admissions: HashMap::new(),
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
                granted: 0,
                mailed: 0,
                revoked: 0,
                sold: 0,
                failing: BTreeSet::new(),
                notice: None,
                alerting: false,
            },
        };

        match self.kktix.hosting_events().await {
            Ok(listing) => {
                state.summary.warnings.extend(listing.skipped);
                let events: Vec<HostingEvent> = listing
                    .events
                    .into_iter()
                    .filter(|event| self.selector.matches(event))
                    .collect();
                state.summary.events = events.len() as u64;
                self.record_events(&events, &mut state).await;
                for event in &events {
                    self.reconcile_event(event, &mut state).await;
                }
                self.revoke_refunded(&events, &mut state).await;
            }
            Err(error) => state.failed(error.upstream(), format!("listing events: {error}")),
        }

        state.summary.upstream_requests = self.kktix.requests_sent() - requests_before;
        state.summary.duration_ms = started.elapsed().as_millis() as u64;
        self.send_notice(&mut state.summary).await;
        let mut summary = state.summary;
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
            granted = summary.granted,
            mailed = summary.mailed,
            revoked = summary.revoked,
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
        state.recorded.clear();
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
                    state.partial(
                        "KKTIX",
                        format!("event {event_id}: KKTIX lists no attendance book"),
                    );
                    return;
                }
            },
            Err(error) => {
                state.partial(error.upstream(), format!("event {event_id}: {error}"));
                return;
            }
        };
        let live = match self.kktix.attendance_book(event_id, book).await {
            Ok(live) => live,
            Err(error) => {
                state.partial(error.upstream(), format!("event {event_id}: {error}"));
                return;
            }
        };
        let admissions = match self.ledger.admissions(event_id).await {
            Ok(admissions) => admissions,
            Err(error) => {
                state.failed(
                    "store",
                    format!("event {event_id}: reading the ledger: {error}"),
                );
                return;
            }
        };
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
            let fetched = self.kktix.attendees(event_id, chunk).await;
            if !self
                .admit_chunk(event, &routing.table, &admissions, fetched, state)
                .await
            {
                return;
            }
        }

        if !self
            .cancel_gone(event_id, &routing.table, &admissions, &live_set, state)
            .await
        {
            return;
        }
        // The same fold the ledger would give if read again now.
        let mut admissions = admissions;
        for entry in state.recorded.drain(..) {
            admissions.entry(entry.key.attendee_id).or_default().apply(
                entry.step,
                entry.email_hash.as_deref(),
                entry.detail.as_deref(),
                entry.at,
            );
        }
        state.admissions.insert(event_id, admissions);
    }

    /// Keeps the events catalog current for `/event list` and reports.
    async fn record_events(&self, events: &[HostingEvent], state: &mut RunState) {
        let records: Vec<EventRecord> = events
            .iter()
            .map(|event| EventRecord {
                id: event.id,
                slug: event.slug_or_id(),
                name: event.name.clone(),
                start_at: event.start_at.clone(),
                end_at: event.end_at.clone(),
                last_seen: state.now,
            })
            .collect();
        if let Err(error) = self.warehouse.upsert_events(&records).await {
            state.partial("store", format!("recording the events: {error}"));
        }
    }

    /// Whether an attendee in the book has a step to do now (failed steps wait their backoff).
    fn needs_work(&self, admission: &Admission, stages: Stages, now: DateTime<Utc>) -> bool {
        if admission.cancelled || !admission.loaded {
            return true;
        }
        let backoff = self.options.step_backoff;
        let grant_due = stages.grant
            && (admission.granted.is_none() || admission.revoked)
            && admission.grant_failures.due(now, backoff);
        let mail_due = stages.mail
            && !admission.mailed
            && (admission.granted.is_some() || !stages.grant)
            && admission.mail_failures.due(now, backoff);
        grant_due || mail_due
    }

    /// Attendees the ledger knows who have left the book were refunded or cancelled. False
    /// when the store failed.
    async fn cancel_gone(
        &self,
        event_id: u64,
        table: &str,
        admissions: &HashMap<u64, Admission>,
        live: &HashSet<u64>,
        state: &mut RunState,
    ) -> bool {
        let mut gone: Vec<(u64, bool)> = admissions
            .iter()
            .filter(|(id, a)| {
                !a.cancelled && (a.loaded || a.awaiting_payment) && !live.contains(id)
            })
            .map(|(id, a)| (*id, a.loaded))
            .collect();
        if gone.is_empty() {
            return true;
        }
        gone.sort_unstable();
        // An empty book while people hold tickets looks like a KKTIX fault, not a mass refund;
        // revoking everyone on a glitch would lock the whole audience out.
        if live.is_empty() && gone.len() > 1 {
            state.partial(
                "KKTIX",
                format!(
                    "event {event_id}: the attendance book came back empty while {} attendees hold tickets; not treating them as refunded",
                    gone.len()
                ),
            );
            return true;
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
            if let Err(error) = self
                .warehouse
                .mark_cancelled(table, &refunded, state.now)
                .await
            {
                state.failed(
                    "store",
                    format!("event {event_id}: marking refunds in the warehouse: {error}"),
                );
                return false;
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
                state.entry(key, Step::Cancelled, None, Some(detail.into()))
            })
            .collect();
        if !self.record(entries, state).await {
            return false;
        }
        state.summary.refunded += refunded.len() as u64;
        state.summary.expired += (gone.len() - refunded.len()) as u64;
        true
    }
}
