//! The level-triggered reconcile loop: each run compares what KKTIX says is live with what
//! the ledger says was done, and does the difference. A step that fails is simply still
//! pending next run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::access::AccessService;
use crate::contacts::Sealer;
use crate::deidentify::PrivacyRules;
use crate::intake::{CsvMapping, IntakeQueue, WebhookMapping};
use crate::kktix::{HostingEvent, KktixClient};
use crate::mail::MailService;
use crate::model::{Admission, AttendeeKey, EventRecord, LedgerEntry, Stages, Step};
use crate::notify::Notifier;
use crate::selection::{CategoryRules, Door, EventSelector};
use crate::store::{ContactVault, Ledger, Warehouse};

mod admit;
mod campaign;
mod event;
mod guard;
mod intake;
mod notice;
mod pending;
mod resend;
mod revoke;

pub use crate::model::{RunKind, RunOutcome, RunSummary, SkippedRecord};
pub use campaign::{
    CampaignError, CampaignProgress, CampaignReport, CampaignStatus, ProgressFn,
    WAVE as CAMPAIGN_WAVE,
};
pub use guard::{ConfirmError, SafetySettings};
pub use intake::{ImportFailure, ImportRequest, ShredReport};
pub use notice::compose_notice;
pub use resend::{ResendError, ResendReport};

/// Attendees fetched, loaded, granted, mailed and recorded per step of a run: at 1,000 a
/// batch of new buyers costs one guest-list call and one Mailgun call.
const FETCH_CHUNK: usize = 1000;

/// Runs read back for the daily count: a day of 5-minute runs and webhook drains.
const DIGEST_RUNS: usize = 5000;

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

/// Sealed contacts: where they are kept and the keys that seal and open them.
#[derive(Clone)]
pub struct Vault {
    pub store: Arc<dyn ContactVault>,
    pub sealer: Sealer,
}

/// How CSV exports and webhook batches are read.
#[derive(Debug, Clone, Default)]
pub struct IntakeMappings {
    pub csv: CsvMapping,
    pub webhook: WebhookMapping,
}

/// What [`Reconciler::with_run_observer`] takes.
pub type RunObserver = Arc<dyn Fn(&RunSummary) + Send + Sync>;

pub struct Reconciler {
    /// The hosting API, when this deployment has a KKTIX token.
    kktix: Option<KktixClient>,
    warehouse: Arc<dyn Warehouse>,
    ledger: Arc<dyn Ledger>,
    vault: Option<Vault>,
    queue: Option<Arc<dyn IntakeQueue>>,
    selector: EventSelector,
    categories: CategoryRules,
    privacy: PrivacyRules,
    mappings: IntakeMappings,
    safety: SafetySettings,
    access: Option<Arc<dyn AccessService>>,
    mail: Option<Arc<dyn MailService>>,
    notifier: Option<Arc<dyn Notifier>>,
    /// Told of every finished run (the poller function prints its metrics line).
    observer: Option<RunObserver>,
    options: ReconcileOptions,
    /// `[[campaigns]]`, and how long before a scheduled one is due a run hands it over.
    campaigns: Vec<crate::campaign::CampaignSettings>,
    campaign_lead: std::time::Duration,
    /// The attendee page resends one address's invitation at most this often.
    self_service_every: std::time::Duration,
    running: tokio::sync::Mutex<()>,
    /// Whether `CONTACT_KEY` opens what the store holds: checked once, on the first run.
    vault_checked: tokio::sync::OnceCell<Result<(), String>>,
}

/// An event this run looks at, and the door its attendees come through.
#[derive(Debug, Clone)]
pub(crate) struct SelectedEvent {
    pub event: HostingEvent,
    pub door: Door,
}

/// Counts and findings of the run in progress.
pub(crate) struct RunState {
    run_id: String,
    now: DateTime<Utc>,
    summary: RunSummary,
    /// Ledger entries appended while the current event is reconciled.
    recorded: Vec<LedgerEntry>,
    /// Each fully reconciled event's admissions as they stand after this run's entries, so
    /// the revoke step need not read the ledger again.
    admissions: HashMap<u64, HashMap<u64, Admission>>,
    started: Instant,
    requests_before: u64,
    /// Providers that failed this run: nobody else is sent to them until the next run.
    unhealthy: BTreeSet<&'static str>,
    /// The mail provider accepted this run's probe: later batches go whole.
    mail_probed: bool,
    intents: u32,
}

impl RunState {
    /// Some work failed and stays pending; `failing` names the upstream or stage.
    fn partial(&mut self, failing: &str, error: String) {
        // Said once, in the run's report (RunSummary::report_lines); debug for tracing.
        tracing::debug!(run_id = %self.run_id, failing, %error, "reconcile step failed");
        self.summary.errors.push(error);
        self.summary.failing.insert(failing.to_owned());
        if self.summary.outcome == RunOutcome::Ok {
            self.summary.outcome = RunOutcome::Partial;
        }
    }

    /// The run could not do its work.
    fn failed(&mut self, failing: &str, error: String) {
        tracing::debug!(run_id = %self.run_id, failing, %error, "reconcile run failed");
        self.summary.errors.push(error);
        self.summary.failing.insert(failing.to_owned());
        self.summary.outcome = RunOutcome::Failed;
    }

    /// A new mail intent's id: unique across runs (the run id is).
    fn next_intent(&mut self) -> String {
        self.intents += 1;
        format!("{}.{}", self.run_id, self.intents)
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
    /// The loop reading the hosting API (and any other door configured later).
    pub fn new(
        kktix: KktixClient,
        warehouse: Arc<dyn Warehouse>,
        ledger: Arc<dyn Ledger>,
        selector: EventSelector,
        categories: CategoryRules,
        privacy: PrivacyRules,
    ) -> Self {
        let mut reconciler = Self::without_api(warehouse, ledger, selector, categories, privacy);
        reconciler.kktix = Some(kktix);
        reconciler
    }

    /// The loop of a deployment without a KKTIX token: CSV and webhook doors only.
    pub fn without_api(
        warehouse: Arc<dyn Warehouse>,
        ledger: Arc<dyn Ledger>,
        selector: EventSelector,
        categories: CategoryRules,
        privacy: PrivacyRules,
    ) -> Self {
        Self {
            kktix: None,
            warehouse,
            ledger,
            vault: None,
            queue: None,
            selector,
            categories,
            privacy,
            mappings: IntakeMappings::default(),
            safety: SafetySettings::default(),
            access: None,
            mail: None,
            notifier: None,
            observer: None,
            options: ReconcileOptions::default(),
            campaigns: Vec::new(),
            campaign_lead: std::time::Duration::ZERO,
            self_service_every: std::time::Duration::from_secs(15 * 60),
            running: tokio::sync::Mutex::new(()),
            vault_checked: tokio::sync::OnceCell::new(),
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

    /// Called with every finished run's summary, after it is recorded.
    pub fn with_run_observer(mut self, observer: RunObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn with_options(mut self, options: ReconcileOptions) -> Self {
        self.options = options;
        self
    }

    /// Keep contacts sealed with `CONTACT_KEY`: the CSV and webhook doors need it.
    pub fn with_vault(mut self, vault: Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Where webhook batches (and attendee-page requests) wait for this loop.
    pub fn with_queue(mut self, queue: Arc<dyn IntakeQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    pub fn with_mappings(mut self, mappings: IntakeMappings) -> Self {
        self.mappings = mappings;
        self
    }

    /// Pre-event letters; a scheduled one is handed to the provider (with its delivery time)
    /// by the first run within `lead` of it.
    pub fn with_campaigns(
        mut self,
        campaigns: Vec<crate::campaign::CampaignSettings>,
        lead: std::time::Duration,
    ) -> Self {
        self.campaigns = campaigns;
        self.campaign_lead = lead;
        self
    }

    /// At most one attendee-page resend per address per `every`.
    pub fn with_self_service_every(mut self, every: std::time::Duration) -> Self {
        self.self_service_every = every;
        self
    }

    /// How many vanished attendees are held for an operator rather than revoked.
    pub fn with_safety(mut self, safety: SafetySettings) -> Self {
        self.safety = safety;
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

    pub fn selector(&self) -> &EventSelector {
        &self.selector
    }

    pub fn queue(&self) -> Option<&Arc<dyn IntakeQueue>> {
        self.queue.as_ref()
    }

    pub fn vault(&self) -> Option<&Vault> {
        self.vault.as_ref()
    }

    /// The door of events nothing configures: the API when there is a token, else CSV.
    pub fn fallback_door(&self) -> Door {
        if self.kktix.is_some() {
            Door::Api
        } else {
            Door::Csv
        }
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

    fn begin(&self, kind: RunKind) -> RunState {
        let started_at = Utc::now();
        let run_id = format!(
            "{}-{:04x}",
            started_at.format("%Y%m%dT%H%M%S%.3fZ"),
            rand::random::<u16>()
        );
        RunState {
            run_id: run_id.clone(),
            now: started_at,
            recorded: Vec::new(),
            admissions: HashMap::new(),
            started: Instant::now(),
            requests_before: self.kktix_requests(),
            unhealthy: BTreeSet::new(),
            mail_probed: false,
            intents: 0,
            summary: RunSummary {
                run_id,
                kind: kind.as_str().to_owned(),
                started_at,
                ..RunSummary::default()
            },
        }
    }

    fn kktix_requests(&self) -> u64 {
        self.kktix.as_ref().map_or(0, KktixClient::requests_sent)
    }

    /// Counts the calls, tells the channel, records the run.
    async fn finish(&self, mut state: RunState) -> RunSummary {
        state.summary.upstream_requests = self.kktix_requests() - state.requests_before;
        state.summary.duration_ms = state.started.elapsed().as_millis() as u64;
        self.daily_digest(&mut state.summary).await;
        self.send_notice(&mut state.summary).await;
        let mut summary = state.summary;
        if let Err(error) = self.ledger.record_run(&summary).await {
            tracing::error!(%error, "could not record the run");
            summary.errors.push(format!("recording the run: {error}"));
            summary.outcome = RunOutcome::Failed;
        }
        tracing::info!(
            run_id = %summary.run_id,
            kind = %summary.kind,
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
        if let Some(observer) = &self.observer {
            observer(&summary);
        }
        summary
    }

    /// The first run of a day (Asia/Taipei) tells the channel how many invitations the
    /// attendee page resent on the day of the run before it. Counts only, never addresses.
    async fn daily_digest(&self, summary: &mut RunSummary) {
        let zone = chrono_tz::Asia::Taipei;
        let today = summary.started_at.with_timezone(&zone).date_naive();
        let Ok(Some(last)) = self.ledger.last_run(false).await else {
            return;
        };
        let day = last.started_at.with_timezone(&zone).date_naive();
        if day >= today {
            return;
        }
        let runs = match self.ledger.recent_runs(DIGEST_RUNS).await {
            Ok(runs) => runs,
            Err(error) => {
                summary
                    .warnings
                    .push(format!("no daily count: reading past runs failed: {error}"));
                return;
            }
        };
        let (requests, resends) = runs
            .iter()
            .filter(|run| run.started_at.with_timezone(&zone).date_naive() == day)
            .fold((0, 0), |(requests, resends), run| {
                (
                    requests + run.self_service_requests,
                    resends + run.self_service_resends,
                )
            });
        if requests > 0 {
            summary.digest = Some(format!(
                "📮 {day} 自助重寄參加資訊 {resends} 封（{requests} 次請求）/ Self-service invitation resends on {day}: {resends} ({requests} requests)"
            ));
        }
    }

    /// Whether `CONTACT_KEY` (or `CONTACT_KEY_PREVIOUS`) opens every sealed contact the store
    /// holds; the answer is kept for the process's life.
    pub async fn check_contact_key(&self) -> Result<(), String> {
        let Some(vault) = &self.vault else {
            return Ok(());
        };
        self.vault_checked
            .get_or_init(|| async {
                let ids = vault
                    .store
                    .contact_key_ids()
                    .await
                    .map_err(|e| format!("reading the sealed contacts: {e}"))?;
                let unknown: Vec<&String> =
                    ids.iter().filter(|id| !vault.sealer.knows(id)).collect();
                if unknown.is_empty() {
                    return Ok(());
                }
                Err(format!(
                    "CONTACT_KEY is not the key the stored contacts were sealed with (key id {} here, {} in the store); set CONTACT_KEY to that key, or during a rotation CONTACT_KEY_PREVIOUS to the old one (README: rotating CONTACT_KEY)",
                    vault.sealer.current_id(),
                    unknown
                        .iter()
                        .map(|id| id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
            .await
            .clone()
    }

    async fn run_locked(&self) -> RunSummary {
        let mut state = self.begin(RunKind::Poll);
        if let Err(error) = self.check_contact_key().await {
            state.failed("CONTACT_KEY", error);
            return self.finish(state).await;
        }
        // Webhook batches that arrived since the last run (their trigger may have been lost).
        let drained = self.drain_queue(&mut state).await;
        let events = self.selected_events(&mut state).await;
        state.summary.events = events.len() as u64;
        self.record_events(&events, &mut state).await;
        for selected in &events {
            let intake = if selected.door == Door::Api {
                event::Intake::Api
            } else {
                event::Intake::Pending
            };
            self.reconcile_event(selected, intake, &mut state).await;
        }
        let mut revoked_events: Vec<HostingEvent> =
            events.iter().map(|s| s.event.clone()).collect();
        for event in drained {
            if !revoked_events.iter().any(|e| e.id == event.id) {
                revoked_events.push(event);
            }
        }
        self.revoke_refunded(&revoked_events, &mut state).await;
        self.campaigns_due(&mut state).await;
        self.shred_expired(&mut state).await;
        self.finish(state).await
    }

    /// Every event this run looks at: the hosting API's listing (the selector's events), then
    /// the CSV and webhook events the catalog names or earlier imports recorded.
    async fn selected_events(&self, state: &mut RunState) -> Vec<SelectedEvent> {
        let fallback = self.fallback_door();
        let mut selected: Vec<SelectedEvent> = Vec::new();
        if let Some(kktix) = &self.kktix {
            match kktix.hosting_events().await {
                Ok(listing) => {
                    state.summary.warnings.extend(listing.skipped);
                    for event in listing
                        .events
                        .into_iter()
                        .filter(|event| self.selector.matches(event))
                    {
                        let door = self.selector.door_of(event.id, fallback);
                        selected.push(SelectedEvent { event, door });
                    }
                }
                Err(error) => state.failed(
                    error.upstream(),
                    format!("listing events: {}", kktix.explain(&error)),
                ),
            }
        }
        if self.vault.is_none() {
            return selected;
        }
        for event in self.selector.pushed_catalog_events(fallback) {
            if !selected.iter().any(|s| s.event.id == event.id) {
                let door = self.selector.door_of(event.id, fallback);
                selected.push(SelectedEvent { event, door });
            }
        }
        match self.warehouse.events().await {
            Ok(records) => {
                for record in records {
                    let pushed = record
                        .source
                        .as_deref()
                        .and_then(|s| s.parse::<Door>().ok())
                        .is_some_and(Door::is_pushed);
                    let door = self.selector.door_of(record.id, fallback);
                    if !pushed
                        || !door.is_pushed()
                        || !event::still_open(record.end_at.as_deref(), state.now)
                        || selected.iter().any(|s| s.event.id == record.id)
                    {
                        continue;
                    }
                    selected.push(SelectedEvent {
                        event: HostingEvent {
                            id: record.id,
                            name: record.name,
                            slug: record.slug,
                            start_at: record.start_at,
                            end_at: record.end_at,
                        },
                        door,
                    });
                }
            }
            Err(error) => state.partial(
                "store",
                format!("reading the events catalog for CSV and webhook events: {error}"),
            ),
        }
        selected
    }

    /// Keeps the events catalog current for `/event list` and reports.
    async fn record_events(&self, events: &[SelectedEvent], state: &mut RunState) {
        let records: Vec<EventRecord> = events
            .iter()
            .map(|selected| EventRecord {
                id: selected.event.id,
                slug: selected.event.slug_or_id(),
                name: selected.event.name.clone(),
                start_at: selected.event.start_at.clone(),
                end_at: selected.event.end_at.clone(),
                last_seen: state.now,
                source: Some(selected.door.as_str().to_owned()),
            })
            .collect();
        if records.is_empty() {
            return;
        }
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
            && admission.mail_intent.is_none()
            && (admission.granted.is_some() || !stages.grant)
            && admission.mail_failures.due(now, backoff);
        grant_due || mail_due
    }

    /// Attendees the ledger knows who are gone — left the book, missing from a full export,
    /// or cancelled by their order — are recorded cancelled (refunded, or an unpaid order
    /// that expired) and their warehouse rows marked. False when the store failed.
    async fn cancel(
        &self,
        event_id: u64,
        table: &str,
        gone: Vec<(u64, bool)>,
        state: &mut RunState,
    ) -> bool {
        if gone.is_empty() {
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
            let layout = &self.categories.pipeline_table;
            if layout.enabled {
                if let Err(error) = self
                    .warehouse
                    .mark_pipeline_refunded(layout, &refunded)
                    .await
                {
                    state.failed(
                        "store",
                        format!(
                            "event {event_id}: marking refunds in {}: {error}",
                            layout.table
                        ),
                    );
                    return false;
                }
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

/// Admitted (or awaiting payment), not yet cancelled, and not in `live`: gone, with whether
/// each was loaded (a sale) or only awaiting payment.
fn gone_from(admissions: &HashMap<u64, Admission>, live: &HashSet<u64>) -> Vec<(u64, bool)> {
    let mut gone: Vec<(u64, bool)> = admissions
        .iter()
        .filter(|(id, a)| !a.cancelled && (a.loaded || a.awaiting_payment) && !live.contains(id))
        .map(|(id, a)| (*id, a.loaded))
        .collect();
    gone.sort_unstable();
    gone
}

/// The admissions as the ledger would give them now, with this event's new entries folded in.
fn fold(
    mut admissions: HashMap<u64, Admission>,
    recorded: &mut Vec<LedgerEntry>,
) -> HashMap<u64, Admission> {
    for entry in recorded.drain(..) {
        admissions.entry(entry.key.attendee_id).or_default().apply(
            entry.step,
            entry.email_hash.as_deref(),
            entry.detail.as_deref(),
            entry.at,
        );
    }
    admissions
}
