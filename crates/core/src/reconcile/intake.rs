//! Runs started by the CSV and webhook doors: an import of one event's exports, and the drain
//! of the intake queue (webhook batches, accepted and acknowledged before they reach here).
//! Also the shredding of sealed contacts once an event is long over.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};

use super::event::Intake;
use super::{Reconciler, RunKind, RunState, RunSummary, SelectedEvent};
use crate::intake::webhook::{Change, EventRef, ParsedBatch};
use crate::intake::{key_paths, parse_exports, Envelope, ImportError, IntakeBatch, IntakeRecord};
use crate::kktix::HostingEvent;
use crate::model::BatchRecord;
use crate::selection::Door;

/// Messages handled per run at most; the rest wait for the next one.
const MAX_MESSAGES_PER_RUN: usize = 500;
/// Key paths of a body not understood, at most, in the alert and the log.
const MAX_KEY_PATHS: usize = 40;

pub use crate::model::ImportRequest;

/// Why an import did not run; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportFailure {
    #[error("{0:?} is not an event: give a KKTIX event id or a slug of [events.catalog]")]
    UnknownEvent(String),
    #[error("CONTACT_KEY is not set: contacts from a CSV export can only be kept sealed with it (README: CONTACT_KEY)")]
    NoContactKey,
    #[error(transparent)]
    File(#[from] ImportError),
    #[error("{0}")]
    ContactKey(String),
}

impl ImportFailure {
    /// The HTTP status `POST /import` answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownEvent(_) => 404,
            Self::File(_) => 422,
            Self::NoContactKey | Self::ContactKey(_) => 503,
        }
    }
}

/// What a shred deleted: (event id, sealed contacts).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShredReport {
    pub events: Vec<(u64, u64)>,
}

/// A queued webhook batch, handled.
enum Handled {
    /// Done (or a repeat of a batch done before): acknowledge it.
    Done,
    /// Cannot be handled yet (an event nobody mapped): keep it on the queue.
    Held,
}

impl Reconciler {
    /// Imports one event's exports: parsed first (a file that is not an export is refused
    /// before anything is written), then admitted like any door's attendees.
    pub async fn import(&self, request: ImportRequest) -> Result<RunSummary, ImportFailure> {
        let event_id = self
            .resolve_event(&request.event)
            .await
            .ok_or_else(|| ImportFailure::UnknownEvent(request.event.clone()))?;
        if self.vault.is_none() {
            return Err(ImportFailure::NoContactKey);
        }
        let batch = parse_exports(
            &self.mappings.csv,
            event_id,
            &request.attendees,
            request.orders.as_deref(),
        )?;
        // The rows are kept; the files' bytes are not needed any more.
        drop(request);
        self.check_contact_key()
            .await
            .map_err(ImportFailure::ContactKey)?;
        let _guard = self.running.lock().await;
        let mut state = self.begin(RunKind::Import);
        let event = self.describe_event(event_id, &mut state).await;
        let configured = self.selector.door_of(event_id, self.fallback_door());
        if configured == Door::Api {
            state.summary.warnings.push(format!(
                "event {event_id} is configured for the hosting API; set source = \"csv\" for it in [events.catalog] so that runs do not read it from the API"
            ));
        }
        let selected = SelectedEvent {
            event,
            door: Door::Csv,
        };
        state.summary.events = 1;
        self.record_events(std::slice::from_ref(&selected), &mut state)
            .await;
        self.reconcile_event(&selected, Intake::Batch(batch), &mut state)
            .await;
        self.revoke_refunded(std::slice::from_ref(&selected.event), &mut state)
            .await;
        self.campaigns_due(&mut state).await;
        Ok(self.finish(state).await)
    }

    /// `EVENT` as an operator gives it: an id, a catalog slug, or a slug the events table
    /// knows (what Discord's autocomplete offers).
    pub async fn resolve_event(&self, reference: &str) -> Option<u64> {
        if let Some(id) = self.selector.resolve(reference) {
            return Some(id);
        }
        let reference = reference.trim();
        self.warehouse
            .events()
            .await
            .ok()?
            .into_iter()
            .find(|event| event.slug == reference)
            .map(|event| event.id)
    }

    /// The event as the catalog, the events table or the hosting API know it.
    pub(super) async fn describe_event(&self, event_id: u64, state: &mut RunState) -> HostingEvent {
        if let Some(event) = self.selector.catalog_event(event_id) {
            return event;
        }
        match self.warehouse.events().await {
            Ok(records) => {
                if let Some(record) = records.into_iter().find(|r| r.id == event_id) {
                    return HostingEvent {
                        id: record.id,
                        name: record.name,
                        slug: record.slug,
                        start_at: record.start_at,
                        end_at: record.end_at,
                    };
                }
            }
            Err(error) => state.partial("store", format!("reading the events catalog: {error}")),
        }
        if let Some(kktix) = &self.kktix {
            if let Ok(listing) = kktix.hosting_events().await {
                if let Some(event) = listing.events.into_iter().find(|e| e.id == event_id) {
                    return event;
                }
            }
        }
        state.summary.warnings.push(format!(
            "event {event_id} is not in [events.catalog]: name it there (slug = {{ id = {event_id}, name = \"…\" }}) so its rows go to the right category table and its invitations name it"
        ));
        HostingEvent {
            id: event_id,
            name: format!("KKTIX event {event_id}"),
            slug: event_id.to_string(),
            start_at: None,
            end_at: None,
        }
    }

    /// A run for what the queue holds (the webhook's trigger): its batches, and a read of the
    /// hosting API for API events they name. `None` when the queue was empty.
    pub async fn drain(&self) -> Option<RunSummary> {
        let _guard = self.running.lock().await;
        let queue = self.queue.as_ref()?;
        match queue.pull(1).await {
            Ok(messages) if messages.is_empty() => return None,
            _ => {}
        }
        let mut state = self.begin(RunKind::Webhook);
        if let Err(error) = self.check_contact_key().await {
            state.failed("CONTACT_KEY", error);
            return Some(self.finish(state).await);
        }
        let outcome = self.drain_batches(&mut state).await;
        let mut touched = outcome.pushed;
        if outcome.everything {
            // A body that could not be read names no event: look at all of them.
            let events = self.selected_events(&mut state).await;
            self.record_events(&events, &mut state).await;
            for selected in &events {
                let intake = if selected.door == Door::Api {
                    Intake::Api
                } else {
                    Intake::Pending
                };
                self.reconcile_event(selected, intake, &mut state).await;
                touched.push(selected.event.clone());
            }
        } else if !outcome.api.is_empty() {
            self.reconcile_api_events(&outcome.api, &mut state, &mut touched)
                .await;
        }
        state.summary.events = touched.len() as u64;
        self.revoke_refunded(&touched, &mut state).await;
        self.campaigns_due(&mut state).await;
        Some(self.finish(state).await)
    }

    /// Within a full run: the queue's batches (API events they name are read by the run
    /// anyway). The events whose attendees changed, for the revoke step.
    pub(super) async fn drain_queue(&self, state: &mut RunState) -> Vec<HostingEvent> {
        self.drain_batches(state).await.pushed
    }

    async fn reconcile_api_events(
        &self,
        ids: &BTreeSet<u64>,
        state: &mut RunState,
        touched: &mut Vec<HostingEvent>,
    ) {
        let Some(kktix) = &self.kktix else {
            return;
        };
        let listing = match kktix.hosting_events().await {
            Ok(listing) => listing,
            Err(error) => {
                state.failed(error.upstream(), format!("listing events: {error}"));
                return;
            }
        };
        let selected: Vec<SelectedEvent> = listing
            .events
            .into_iter()
            .filter(|event| ids.contains(&event.id))
            .map(|event| SelectedEvent {
                event,
                door: Door::Api,
            })
            .collect();
        for id in ids {
            if !selected.iter().any(|s| s.event.id == *id) {
                state.summary.warnings.push(format!(
                    "a webhook batch names event {id}, which the hosting API does not list as not ended"
                ));
            }
        }
        self.record_events(&selected, state).await;
        for event in &selected {
            self.reconcile_event(event, Intake::Api, state).await;
            touched.push(event.event.clone());
        }
    }

    async fn drain_batches(&self, state: &mut RunState) -> DrainOutcome {
        let mut outcome = DrainOutcome::default();
        let Some(queue) = self.queue.clone() else {
            return outcome;
        };
        let mut handled = 0usize;
        let mut held: HashSet<String> = HashSet::new();
        while handled < MAX_MESSAGES_PER_RUN {
            let messages = match queue.pull(10).await {
                Ok(messages) => messages,
                Err(error) => {
                    state.partial("queue", format!("reading the intake queue: {error}"));
                    break;
                }
            };
            let fresh: Vec<_> = messages
                .into_iter()
                .filter(|m| !held.contains(&m.receipt))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for message in fresh {
                handled += 1;
                let result = match message.envelope() {
                    Ok(Envelope::KktixWebhook {
                        batch_id,
                        received_at,
                        sealed_body,
                        events,
                    }) => {
                        self.handle_webhook(
                            &batch_id,
                            received_at,
                            sealed_body.as_deref(),
                            &events,
                            state,
                            &mut outcome,
                        )
                        .await
                    }
                    Ok(Envelope::InvitationRequest { .. }) => {
                        self.handle_invitation_request(&message.body, state).await
                    }
                    Err(error) => {
                        state.partial("queue", error.to_string());
                        Some(Handled::Done)
                    }
                };
                match result {
                    Some(Handled::Done) => {
                        if let Err(error) = queue.ack(&message.receipt).await {
                            state.partial("queue", format!("acknowledging a message: {error}"));
                            held.insert(message.receipt.clone());
                        }
                    }
                    Some(Handled::Held) | None => {
                        held.insert(message.receipt.clone());
                    }
                }
            }
        }
        outcome
    }

    /// `None`: the store failed; the message stays for the next run.
    async fn handle_webhook(
        &self,
        batch_id: &str,
        received_at: DateTime<Utc>,
        sealed_body: Option<&str>,
        named: &[String],
        state: &mut RunState,
        outcome: &mut DrainOutcome,
    ) -> Option<Handled> {
        let seen = match self.ledger.intake_outcome(batch_id).await {
            Ok(seen) => seen,
            Err(error) => {
                state.partial("store", format!("reading intake batches: {error}"));
                return None;
            }
        };
        if seen.as_deref().is_some_and(|o| o != "held") {
            tracing::info!(batch_id, "a repeated webhook batch: nothing to do");
            return Some(Handled::Done);
        }
        let now = state.now;
        let record = |outcome: &str, detail: Option<String>| BatchRecord {
            batch_id: batch_id.to_owned(),
            received_at,
            processed_at: now,
            outcome: outcome.to_owned(),
            detail,
        };

        // Without a sealed body (no CONTACT_KEY where it was received) the batch is a trigger.
        let body = match (sealed_body, &self.vault) {
            (Some(sealed), Some(vault)) => match vault.sealer.open_bytes(batch_id, sealed) {
                Ok(body) => Some(body),
                Err(error) => {
                    state.partial(
                        "CONTACT_KEY",
                        format!("webhook batch {batch_id} does not open: {error}"),
                    );
                    return Some(Handled::Held);
                }
            },
            _ => None,
        };
        let Some(body) = body else {
            let refs: Vec<EventRef> = named.iter().map(|r| parse_ref(r)).collect();
            self.route_trigger(&refs, state, outcome).await;
            if let Err(error) = self.ledger.record_intake(&record("trigger", None)).await {
                state.partial("store", format!("recording an intake batch: {error}"));
                return None;
            }
            return Some(Handled::Done);
        };

        let parsed = match self.mappings.webhook.parse(&body, &self.privacy) {
            Ok(parsed) => parsed,
            Err(error) => {
                let paths = key_paths(&body, MAX_KEY_PATHS);
                tracing::warn!(batch_id, %error, key_paths = ?paths, "a webhook body this mapping does not understand");
                state.summary.alerts.push(format!(
                    "KKTIX webhook batch {batch_id} was accepted but not understood ({error}); its key paths: {} — map them in [intake.webhook]; every selected event is read now",
                    paths.join(", ")
                ));
                outcome.everything = true;
                if let Err(error) = self
                    .ledger
                    .record_intake(&record("unknown_shape", Some(paths.join(", "))))
                    .await
                {
                    state.partial("store", format!("recording an intake batch: {error}"));
                    return None;
                }
                return Some(Handled::Done);
            }
        };
        match self
            .apply_batch(batch_id, parsed, seen.is_some(), state, outcome)
            .await
        {
            Some(Handled::Done) => {
                if let Err(error) = self.ledger.record_intake(&record("processed", None)).await {
                    state.partial("store", format!("recording an intake batch: {error}"));
                    return None;
                }
                Some(Handled::Done)
            }
            Some(Handled::Held) => {
                if seen.is_none() {
                    if let Err(error) = self.ledger.record_intake(&record("held", None)).await {
                        state.partial("store", format!("recording an intake batch: {error}"));
                    }
                }
                Some(Handled::Held)
            }
            None => None,
        }
    }

    /// A batch that could not be read (no key): the events it names are read now.
    async fn route_trigger(
        &self,
        refs: &[EventRef],
        state: &mut RunState,
        outcome: &mut DrainOutcome,
    ) {
        if refs.is_empty() {
            outcome.everything = true;
            return;
        }
        for event_ref in refs {
            match self.resolve_ref(event_ref, state).await {
                Some(event)
                    if self.selector.door_of(event.id, self.fallback_door()) == Door::Api =>
                {
                    outcome.api.insert(event.id);
                }
                Some(_) | None => outcome.everything = true,
            }
        }
    }

    async fn apply_batch(
        &self,
        batch_id: &str,
        parsed: ParsedBatch,
        held_before: bool,
        state: &mut RunState,
        outcome: &mut DrainOutcome,
    ) -> Option<Handled> {
        if !parsed.ignored_types.is_empty() {
            state.summary.warnings.push(format!(
                "webhook batch {batch_id}: notification types ignored: {}",
                parsed.ignored_types.join(", ")
            ));
        }
        state.summary.skipped.extend(parsed.skipped);
        if parsed.notifications.is_empty() {
            return Some(Handled::Done);
        }
        // Notifications of events nobody mapped keep the batch on the queue; the others are
        // applied now (applying them again later is a no-op).
        let mut by_event: BTreeMap<u64, (HostingEvent, Vec<Change>)> = BTreeMap::new();
        let mut unknown: BTreeSet<String> = BTreeSet::new();
        for notification in parsed.notifications {
            match self.resolve_ref(&notification.event, state).await {
                Some(event) => {
                    by_event
                        .entry(event.id)
                        .or_insert_with(|| (event, Vec::new()))
                        .1
                        .push(notification.change);
                }
                None => {
                    unknown.insert(notification.event.to_string());
                }
            }
        }
        for (event_id, (event, changes)) in by_event {
            let door = self.selector.door_of(event_id, self.fallback_door());
            if door == Door::Api {
                // The hook is a trigger for API events: the API is the data.
                outcome.api.insert(event_id);
                continue;
            }
            let batch = Self::batch_of(&event, changes);
            let selected = SelectedEvent {
                event: event.clone(),
                door: Door::Webhook,
            };
            self.record_events(std::slice::from_ref(&selected), state)
                .await;
            self.reconcile_event(&selected, Intake::Batch(batch), state)
                .await;
            if !outcome.pushed.iter().any(|e| e.id == event_id) {
                outcome.pushed.push(event);
            }
        }
        if !unknown.is_empty() {
            if !held_before {
                state.summary.alerts.push(format!(
                    "KKTIX webhook batch {batch_id} names event(s) {} that no configuration maps to a KKTIX event id; add them to [events.catalog] (slug = id): their orders are kept and applied once they are",
                    unknown.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            return Some(Handled::Held);
        }
        Some(Handled::Done)
    }

    /// A webhook's changes to one event as an intake batch; cancellations that name only
    /// their order are resolved by the reconcile, against the warehouse.
    fn batch_of(event: &HostingEvent, changes: Vec<Change>) -> IntakeBatch {
        let mut batch = IntakeBatch {
            event_id: event.id,
            ..IntakeBatch::default()
        };
        for change in changes {
            match change {
                Change::Attendees(attendees) => {
                    for attendee in attendees {
                        batch.present.push(attendee.id);
                        // A later notification of the same attendee wins.
                        batch.records.retain(|a| a.id() != attendee.id);
                        batch.records.push(IntakeRecord::Ready(Box::new(attendee)));
                    }
                }
                Change::Cancelled {
                    order_no,
                    attendee_ids,
                } => {
                    batch.cancelled.extend(attendee_ids);
                    batch.cancelled_orders.extend(order_no);
                }
            }
        }
        let cancelled: HashSet<u64> = batch.cancelled.iter().copied().collect();
        batch.records.retain(|a| !cancelled.contains(&a.id()));
        batch
    }

    /// An event a webhook names, by id or slug: the catalog, the events table, the API.
    async fn resolve_ref(
        &self,
        event_ref: &EventRef,
        state: &mut RunState,
    ) -> Option<HostingEvent> {
        let id = match event_ref {
            EventRef::Id(id) => Some(*id),
            EventRef::Slug(slug) => self.selector.catalog.get(slug).map(|e| e.id()),
        };
        if let Some(id) = id {
            return Some(self.describe_event(id, state).await);
        }
        let EventRef::Slug(slug) = event_ref else {
            return None;
        };
        if let Ok(records) = self.warehouse.events().await {
            if let Some(record) = records.into_iter().find(|r| &r.slug == slug) {
                return Some(HostingEvent {
                    id: record.id,
                    name: record.name,
                    slug: record.slug,
                    start_at: record.start_at,
                    end_at: record.end_at,
                });
            }
        }
        if let Some(kktix) = &self.kktix {
            if let Ok(listing) = kktix.hosting_events().await {
                return listing.events.into_iter().find(|e| &e.slug == slug);
            }
        }
        None
    }

    /// Shreds the sealed contacts of one event, or of every event whose end is more than
    /// `[privacy] retention_days` ago.
    pub async fn shred(&self, event: Option<&str>) -> Result<ShredReport, String> {
        let Some(vault) = &self.vault else {
            return Err("CONTACT_KEY is not set: there are no sealed contacts to shred".into());
        };
        let _guard = self.running.lock().await;
        let mut report = ShredReport::default();
        match event {
            Some(reference) => {
                let event_id = self.resolve_event(reference).await.ok_or_else(|| {
                    format!("{reference:?} is not an event: give a KKTIX event id or a slug of [events.catalog]")
                })?;
                let count = vault
                    .store
                    .shred_contacts(event_id)
                    .await
                    .map_err(|e| e.to_string())?;
                report.events.push((event_id, count));
            }
            None => {
                for event_id in self.expired_contact_events(Utc::now()).await? {
                    let count = vault
                        .store
                        .shred_contacts(event_id)
                        .await
                        .map_err(|e| e.to_string())?;
                    report.events.push((event_id, count));
                }
            }
        }
        Ok(report)
    }

    /// Seals every stored contact again with `CONTACT_KEY` (after a rotation, so that
    /// `CONTACT_KEY_PREVIOUS` can be dropped); how many were resealed.
    pub async fn reseal(&self) -> Result<u64, String> {
        let Some(vault) = &self.vault else {
            return Err("CONTACT_KEY is not set".into());
        };
        let _guard = self.running.lock().await;
        let mut resealed = 0u64;
        let events = vault
            .store
            .contact_counts()
            .await
            .map_err(|e| e.to_string())?;
        for (event_id, _) in events {
            let sealed = vault
                .store
                .contacts(event_id)
                .await
                .map_err(|e| e.to_string())?;
            let mut again = Vec::new();
            for (attendee_id, text) in sealed {
                let key = crate::model::AttendeeKey {
                    event_id,
                    attendee_id,
                };
                match vault.sealer.reseal(key, &text) {
                    Ok(Some(sealed)) => again.push(crate::model::SealedContact {
                        key,
                        sealed,
                        sealed_at: Utc::now(),
                    }),
                    Ok(None) => {}
                    Err(error) => return Err(format!("the sealed contact of {key}: {error}")),
                }
            }
            resealed += again.len() as u64;
            vault
                .store
                .put_contacts(&again)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(resealed)
    }

    /// Events holding sealed contacts whose end is past the retention period.
    async fn expired_contact_events(&self, now: DateTime<Utc>) -> Result<Vec<u64>, String> {
        let Some(vault) = &self.vault else {
            return Ok(Vec::new());
        };
        let counts = vault
            .store
            .contact_counts()
            .await
            .map_err(|e| e.to_string())?;
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        let records = self.warehouse.events().await.map_err(|e| e.to_string())?;
        let retention = Duration::days(i64::from(self.privacy.retention_days));
        let mut expired = Vec::new();
        for (event_id, _) in counts {
            let end = self
                .selector
                .catalog_event(event_id)
                .and_then(|e| e.end_at)
                .or_else(|| {
                    records
                        .iter()
                        .find(|r| r.id == event_id)
                        .and_then(|r| r.end_at.clone())
                });
            let ended = end
                .as_deref()
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                .map(|at| at.with_timezone(&Utc));
            if ended.is_some_and(|end| end + retention < now) {
                expired.push(event_id);
            }
        }
        Ok(expired)
    }

    /// Within a full run: the retention period's shredding.
    pub(super) async fn shred_expired(&self, state: &mut RunState) {
        let Some(vault) = &self.vault else {
            return;
        };
        let expired = match self.expired_contact_events(state.now).await {
            Ok(expired) => expired,
            Err(error) => {
                state.partial(
                    "store",
                    format!("checking the retention of sealed contacts: {error}"),
                );
                return;
            }
        };
        for event_id in expired {
            match vault.store.shred_contacts(event_id).await {
                Ok(count) => state.summary.warnings.push(format!(
                    "shredded the {count} sealed contact(s) of event {event_id}: it ended more than {} days ago",
                    self.privacy.retention_days
                )),
                Err(error) => state.partial(
                    "store",
                    format!("event {event_id}: shredding its sealed contacts: {error}"),
                ),
            }
        }
    }
}

impl Reconciler {
    /// Attendee-page requests are handled by the attendee page's own module; until one is
    /// configured they wait on the queue.
    /// An attendee-page request: the invitations of the paid, non-refunded attendees whose
    /// address hashes to one of the request's go out again, each at most once per
    /// `per_address_minutes` (recorded in the ledger as a self-service resend). A request that
    /// matches nobody does nothing, and says so to no one.
    async fn handle_invitation_request(&self, body: &str, state: &mut RunState) -> Option<Handled> {
        let Ok(Envelope::InvitationRequest {
            email_hashes,
            received_at,
            ..
        }) = serde_json::from_str::<Envelope>(body)
        else {
            return Some(Handled::Done);
        };
        // Each request reads the open events' ledger: a flood must not crowd out the run's
        // own work (KKTIX's webhook batches share the queue). The rest wait for later runs.
        if state.summary.self_service_requests >= MAX_SELF_SERVICE_PER_RUN {
            return Some(Handled::Held);
        }
        state.summary.self_service_requests += 1;
        // Older than a day: the buyer has long given up on this one (or asked again).
        if state.now - received_at > chrono::Duration::days(1) {
            return Some(Handled::Done);
        }
        let events = match self.warehouse.events().await {
            Ok(events) => events,
            Err(error) => {
                state.partial(
                    "store",
                    format!("reading the events for an attendee-page request: {error}"),
                );
                return None;
            }
        };
        let every = chrono::Duration::from_std(self.self_service_every).unwrap_or_default();
        let mut due = Vec::new();
        for event in events
            .iter()
            .filter(|e| super::event::still_open(e.end_at.as_deref(), state.now))
        {
            let admissions = match self.ledger.admissions(event.id).await {
                Ok(admissions) => admissions,
                Err(error) => {
                    state.partial(
                        "store",
                        format!("reading the ledger for an attendee-page request: {error}"),
                    );
                    return None;
                }
            };
            for (attendee_id, admission) in admissions {
                let holds = admission
                    .email_hash
                    .as_ref()
                    .is_some_and(|hash| email_hashes.contains(hash));
                let paid = admission.loaded && !admission.cancelled && !admission.awaiting_payment;
                // Not mailed yet: the loop sends the first invitation itself.
                let recent = admission
                    .last_self_service
                    .is_some_and(|at| state.now - at < every);
                if holds && paid && admission.mailed && !recent {
                    due.push(crate::model::AttendeeKey {
                        event_id: event.id,
                        attendee_id,
                    });
                }
            }
        }
        for key in due.into_iter().take(MAX_SELF_SERVICE_PER_REQUEST) {
            match self.resend_locked(key, crate::model::SELF_SERVICE).await {
                Ok(_) => state.summary.self_service_resends += 1,
                // The provider failed before taking it: the request waits for a later run.
                // (An uncertain send is not repeated: the buyer may ask again.)
                Err(super::ResendError::MailLater { .. }) => return Some(Handled::Held),
                Err(error) => state
                    .summary
                    .warnings
                    .push(format!("an attendee-page resend: {error}")),
            }
        }
        Some(Handled::Done)
    }
}

/// Attendee-page requests one run handles at most.
const MAX_SELF_SERVICE_PER_RUN: u64 = 50;

/// Invitations one attendee-page request resends at most (one buyer's tickets).
const MAX_SELF_SERVICE_PER_REQUEST: usize = 10;

/// What draining the queue found: pushed events changed, API events named, and whether a
/// body named nothing readable (then every event is looked at).
#[derive(Default)]
struct DrainOutcome {
    pushed: Vec<HostingEvent>,
    api: BTreeSet<u64>,
    everything: bool,
}

fn parse_ref(text: &str) -> EventRef {
    match text.parse::<u64>() {
        Ok(id) => EventRef::Id(id),
        Err(_) => EventRef::Slug(text.to_owned()),
    }
}
