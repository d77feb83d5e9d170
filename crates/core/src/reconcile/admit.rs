//! One chunk of fetched attendees through the admission stages, each recorded in the ledger
//! as soon as it succeeds: load → grant → mail.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};

use super::{FailureTally, Reconciler, RunState, SelectedEvent, SkippedRecord};
use crate::access::{AccessRequest, GrantOutcome};
use crate::contacts::ContactCard;
use crate::kktix::{AttendeeFetch, HostingEvent};
use crate::mail::{Invitation, MailOutcome, SettleQuery, Settlement};
use crate::model::{
    Admission, AttendeeKey, AttendeeRow, GrantRecord, LedgerEntry, SealedContact, Step, PERMANENT,
    TRANSIENT,
};
use crate::pii::{EmailAddress, Sensitive};

/// The stages a failing provider is skipped in for the rest of a run.
pub(super) const GUEST_LIST: &str = "guest list";
pub(super) const MAIL_PROVIDER: &str = "mail provider";

/// A paid attendee on the way to an invitation; holds contact details only in memory.
pub(super) struct Candidate {
    pub key: AttendeeKey,
    pub email: Option<EmailAddress>,
    pub email_hash: Option<String>,
    pub name: Sensitive<String>,
    pub ticket_name: String,
    pub checkin_code: Option<String>,
    pub reg_no: Option<u64>,
    pub grant: Option<GrantRecord>,
    pub needs_grant: bool,
    pub needs_mail: bool,
    /// The provider refused this invitation for good before (already reported).
    pub mail_refused_before: bool,
}

impl Reconciler {
    /// Returns false when a store failure means the event's run must stop here.
    pub(super) async fn admit_chunk(
        &self,
        selected: &SelectedEvent,
        table: &str,
        admissions: &HashMap<u64, Admission>,
        fetched: Vec<(u64, AttendeeFetch)>,
        state: &mut RunState,
    ) -> bool {
        let event = &selected.event;
        let event_id = event.id;
        let mut sealed = Vec::new();
        let stages = self.stages();
        let backoff = self.options.step_backoff;
        let mut rows = Vec::new();
        let mut entries = Vec::new();
        let mut loaded_tickets = Vec::new();
        let mut candidates = Vec::new();

        for (attendee_id, fetch) in fetched {
            let key = AttendeeKey {
                event_id,
                attendee_id,
            };
            let known = admissions.get(&attendee_id);
            let attendee = match fetch {
                AttendeeFetch::Fetched(attendee) => attendee,
                AttendeeFetch::Broken(error) => {
                    tracing::warn!(event_id, attendee_id, reason = %error, "skipping a broken attendee record");
                    state.summary.skipped.push(SkippedRecord {
                        event_id,
                        attendee_id,
                        reason: error.reason,
                    });
                    continue;
                }
                AttendeeFetch::Failed(error) => {
                    state.partial(
                        error.upstream(),
                        format!("event {event_id} attendee {attendee_id}: {error}"),
                    );
                    continue;
                }
            };
            let contact = self.privacy.contact(&attendee);
            let email_hash = contact.email.as_ref().map(EmailAddress::hash);
            // What a CSV file or a webhook batch said cannot be read again: keep it sealed.
            if let (Some(vault), Some(email)) = (&self.vault, &contact.email) {
                let card = ContactCard {
                    email: email.expose().to_owned(),
                    name: contact
                        .name
                        .as_ref()
                        .map(|name| name.expose().clone())
                        .unwrap_or_default(),
                    ticket_name: attendee.ticket_name.clone(),
                    checkin_code: attendee.checkin_code.clone(),
                    reg_no: attendee.reg_no,
                };
                sealed.push(SealedContact {
                    key,
                    sealed: vault.sealer.seal(key, &card),
                    sealed_at: state.now,
                });
            }
            if !attendee.is_paid {
                state.summary.pending += 1;
                if !known.is_some_and(|a| a.awaiting_payment && !a.cancelled) {
                    entries.push(state.entry(key, Step::AwaitingPayment, email_hash, None));
                }
                continue;
            }

            let needs_load = known.is_none_or(|a| !a.loaded || a.cancelled);
            if needs_load {
                let record = self.privacy.deidentify(&attendee);
                let attendee_infos = match serde_json::to_string(&record) {
                    Ok(json) => json,
                    Err(error) => {
                        state.summary.skipped.push(SkippedRecord {
                            event_id,
                            attendee_id,
                            reason: format!("cannot encode the de-identified record: {error}"),
                        });
                        continue;
                    }
                };
                rows.push(AttendeeRow {
                    table: table.to_owned(),
                    event_id,
                    event_name: event.name.clone(),
                    attendee_id,
                    attendee_infos,
                    ticket_name: attendee.ticket_name.clone(),
                    paid_at: attendee
                        .updated_at
                        .and_then(epoch_seconds)
                        .unwrap_or(state.now),
                    price: attendee.price.unwrap_or(0.0),
                    currency: attendee.currency.clone().unwrap_or_default(),
                    state: attendee.state.clone().unwrap_or_else(|| "activated".into()),
                    loaded_at: state.now,
                });
                loaded_tickets.push(attendee.ticket_name.clone());
                entries.push(state.entry(key, Step::Loaded, email_hash.clone(), None));
            }

            let grant = known
                .filter(|a| !a.revoked && !a.cancelled)
                .and_then(|a| a.granted.clone());
            let needs_grant = stages.grant
                && grant.is_none()
                && known.is_none_or(|a| a.grant_failures.due(state.now, backoff));
            let needs_mail = stages.mail
                && !known.is_some_and(|a| a.mailed || a.mail_intent.is_some())
                && known.is_none_or(|a| a.mail_failures.due(state.now, backoff));
            if needs_grant || needs_mail {
                candidates.push(Candidate {
                    key,
                    email: contact.email,
                    email_hash,
                    name: contact.name.unwrap_or_default(),
                    ticket_name: attendee.ticket_name.clone(),
                    checkin_code: attendee.checkin_code.clone(),
                    reg_no: attendee.reg_no,
                    grant,
                    needs_grant,
                    needs_mail,
                    mail_refused_before: known.is_some_and(|a| a.mail_failures.permanent),
                });
            }
        }

        // Contacts first: a grant or mail that fails below is retried from them.
        if let Some(vault) = &self.vault {
            if let Err(error) = vault.store.put_contacts(&sealed).await {
                state.failed(
                    "store",
                    format!("event {event_id}: keeping the sealed contacts: {error}"),
                );
                return false;
            }
        }
        // Load: the warehouse first, then the ledger. A crash in between loads the rows again
        // next run, which the upsert makes harmless.
        if !rows.is_empty() {
            if let Err(error) = self.warehouse.upsert_attendees(&rows).await {
                state.failed(
                    "store",
                    format!("event {event_id}: loading the warehouse: {error}"),
                );
                return false;
            }
            let layout = &self.categories.pipeline_table;
            if layout.enabled {
                if let Err(error) = self.warehouse.upsert_pipeline_rows(layout, &rows).await {
                    state.failed(
                        "store",
                        format!("event {event_id}: loading {}: {error}", layout.table),
                    );
                    return false;
                }
            }
        }
        if !self.record(entries, state).await {
            return false;
        }
        state.summary.new_paid += rows.len() as u64;
        for ticket in loaded_tickets {
            *state.summary.new_by_ticket.entry(ticket).or_default() += 1;
        }

        if !self.grant(event, &mut candidates, state).await {
            return false;
        }
        self.mail(event, candidates, state).await
    }

    /// Grants access to every candidate that needs it, in one call, and records each outcome.
    /// Once the guest list fails this run, nobody else is tried until the next run.
    pub(super) async fn grant(
        &self,
        event: &HostingEvent,
        candidates: &mut [Candidate],
        state: &mut RunState,
    ) -> bool {
        let Some(access) = &self.access else {
            return true;
        };
        if state.unhealthy.contains(GUEST_LIST) {
            return true;
        }
        let mut entries = Vec::new();
        let mut no_email = FailureTally::default();
        let mut requests = Vec::new();
        for candidate in candidates.iter().filter(|c| c.needs_grant) {
            match &candidate.email {
                Some(email) => requests.push(AccessRequest {
                    key: candidate.key,
                    email: email.clone(),
                    name: candidate.name.clone(),
                    event_name: event.name.clone(),
                    ticket_name: candidate.ticket_name.clone(),
                }),
                None => {
                    let reason = "the record has no valid contact email";
                    no_email.add(reason);
                    entries.push(state.entry(
                        candidate.key,
                        Step::GrantFailed,
                        None,
                        Some(format!("{PERMANENT}{reason}")),
                    ));
                }
            }
        }
        no_email.report(state, "KKTIX record", "granting access");
        let mut failures = FailureTally::default();
        if !requests.is_empty() {
            for result in access.authorize(requests).await {
                let Some(candidate) = candidates.iter_mut().find(|c| c.key == result.key) else {
                    continue;
                };
                match result.outcome {
                    GrantOutcome::Granted {
                        gather,
                        links,
                        venue_url,
                    } => {
                        let record = GrantRecord {
                            event_name: event.name.clone(),
                            ticket_name: candidate.ticket_name.clone(),
                            gather,
                            links,
                            venue_url,
                        };
                        let detail = serde_json::to_string(&record).ok();
                        entries.push(state.entry(
                            result.key,
                            Step::Granted,
                            candidate.email_hash.clone(),
                            detail,
                        ));
                        candidate.grant = Some(record);
                        state.summary.granted += 1;
                    }
                    GrantOutcome::Failed { reason, transient } => {
                        failures.add(&reason);
                        if transient {
                            state.unhealthy.insert(GUEST_LIST);
                        }
                        let prefix = if transient { TRANSIENT } else { PERMANENT };
                        entries.push(state.entry(
                            result.key,
                            Step::GrantFailed,
                            None,
                            Some(format!("{prefix}{reason}")),
                        ));
                    }
                }
            }
        }
        failures.report(state, GUEST_LIST, "granting access");
        self.record(entries, state).await
    }

    /// Mails every candidate whose access is in place (or who needs none). The run's first
    /// invitation goes alone, as the probe: only once the provider has accepted it does the
    /// rest go, so an outage costs one request a run, not one uncertain batch.
    pub(super) async fn mail(
        &self,
        event: &HostingEvent,
        candidates: Vec<Candidate>,
        state: &mut RunState,
    ) -> bool {
        if self.mail.is_none() || state.unhealthy.contains(MAIL_PROVIDER) {
            return true;
        }
        let grant_stage = self.access.is_some();
        let mut reported_before: Vec<AttendeeKey> = Vec::new();
        let mut invitations: Vec<Invitation> = candidates
            .into_iter()
            .filter(|c| c.needs_mail && (c.grant.is_some() || !grant_stage))
            .filter_map(|c| {
                if c.mail_refused_before {
                    reported_before.push(c.key);
                }
                let grant = c.grant.unwrap_or(GrantRecord {
                    event_name: event.name.clone(),
                    ticket_name: c.ticket_name.clone(),
                    gather: false,
                    links: Vec::new(),
                    venue_url: None,
                });
                Some(Invitation {
                    key: c.key,
                    email: c.email?,
                    name: c.name,
                    event_name: event.name.clone(),
                    ticket_name: c.ticket_name,
                    links: grant.links,
                    venue_url: grant.venue_url,
                    checkin_code: c.checkin_code,
                    reg_no: c.reg_no,
                    intent: None,
                })
            })
            .collect();
        if invitations.is_empty() {
            return true;
        }
        if !state.mail_probed {
            let rest = invitations.split_off(1);
            if !self.send_batch(invitations, &reported_before, state).await {
                return false;
            }
            if state.unhealthy.contains(MAIL_PROVIDER) {
                // The rest keep no intent: the next run's probe decides for them.
                return true;
            }
            state.mail_probed = true;
            invitations = rest;
            if invitations.is_empty() {
                return true;
            }
        }
        self.send_batch(invitations, &reported_before, state).await
    }

    /// Sends one batch and records it: first the intent (so that a crash or an uncertain
    /// answer is settled later from the provider's events, never by sending again), then each
    /// outcome. A provider failure marks it unhealthy for the rest of the run.
    async fn send_batch(
        &self,
        mut invitations: Vec<Invitation>,
        reported_before: &[AttendeeKey],
        state: &mut RunState,
    ) -> bool {
        let Some(mail) = &self.mail else {
            return true;
        };
        let intent = state.next_intent();
        let intents: Vec<LedgerEntry> = invitations
            .iter_mut()
            .map(|invitation| {
                invitation.intent = Some(intent.clone());
                state.entry(invitation.key, Step::MailIntent, None, Some(intent.clone()))
            })
            .collect();
        if !self.record(intents, state).await {
            return false;
        }
        let mut entries = Vec::new();
        let mut failures = FailureTally::default();
        let mut uncertain = FailureTally::default();
        let mut refused: Vec<AttendeeKey> = Vec::new();
        for result in mail.send(invitations, false).await {
            if result.outcome.provider_failing() {
                state.unhealthy.insert(MAIL_PROVIDER);
            }
            match result.outcome {
                MailOutcome::Sent {
                    provider,
                    message_id,
                } => {
                    let detail = match message_id {
                        Some(id) => format!("{provider} {id}"),
                        None => provider,
                    };
                    entries.push(state.entry(result.key, Step::Mailed, None, Some(detail)));
                    state.summary.mailed += 1;
                }
                MailOutcome::Failed { reason, transient } => {
                    let prefix = if transient {
                        failures.add(&reason);
                        TRANSIENT
                    } else {
                        if !reported_before.contains(&result.key) {
                            refused.push(result.key);
                        }
                        PERMANENT
                    };
                    entries.push(state.entry(
                        result.key,
                        Step::MailFailed,
                        None,
                        Some(format!("{prefix}{reason}")),
                    ));
                }
                // Not sent: the intent is closed, the next run sends it.
                MailOutcome::NotAttempted { reason } => entries.push(state.entry(
                    result.key,
                    Step::MailFailed,
                    None,
                    Some(format!("{TRANSIENT}{reason}")),
                )),
                // Maybe sent: the intent stays open until the provider's events say.
                MailOutcome::Uncertain { reason } => uncertain.add(&reason),
            }
        }
        failures.report(state, MAIL_PROVIDER, "mailing the invitation");
        for (reason, count) in uncertain.0 {
            state.partial(
                MAIL_PROVIDER,
                format!(
                    "{count} invitation(s) may or may not have been sent ({reason}); they are settled from the provider's events, never sent again on a guess"
                ),
            );
        }
        if !refused.is_empty() {
            // Once per attendee: a refusal reported before is retried quietly after its backoff.
            refused.sort_unstable();
            let shown: Vec<String> = refused.iter().take(20).map(ToString::to_string).collect();
            state.summary.alerts.push(format!(
                "the mail provider refused {} invitation(s) for good (an invalid address, say); they are tried again after a backoff: {}{}",
                refused.len(),
                shown.join(", "),
                if refused.len() > 20 { ", …" } else { "" }
            ));
        }
        self.record(entries, state).await
    }

    /// Open intents of an event (a send whose outcome is not recorded: an uncertain answer,
    /// or a crash) are settled from the provider's events: accepted → mailed; after the
    /// provider's events are complete, not accepted → sent again by this run. Nothing is sent
    /// again while the provider cannot say. The admissions come back with the outcomes folded.
    pub(super) async fn settle_intents(
        &self,
        event_id: u64,
        admissions: &mut HashMap<u64, Admission>,
        state: &mut RunState,
    ) -> bool {
        let Some(mail) = &self.mail else {
            return true;
        };
        let mut open: BTreeMap<String, SettleQuery> = BTreeMap::new();
        for (attendee_id, admission) in admissions.iter() {
            if admission.mailed || admission.cancelled {
                continue;
            }
            if let Some((intent, at)) = &admission.mail_intent {
                let query = open.entry(intent.clone()).or_insert_with(|| SettleQuery {
                    intent: intent.clone(),
                    since: *at,
                    keys: Vec::new(),
                });
                query.keys.push(AttendeeKey {
                    event_id,
                    attendee_id: *attendee_id,
                });
            }
        }
        if open.is_empty() {
            return true;
        }
        let queries: Vec<SettleQuery> = open.into_values().collect();
        let mut entries = Vec::new();
        for result in mail.settle(queries.clone()).await {
            let Some(query) = queries.iter().find(|q| q.intent == result.intent) else {
                continue;
            };
            let (accepted, settled) = match &result.settlement {
                Settlement::Settled { accepted } => (accepted.clone(), true),
                Settlement::Pending {
                    accepted,
                    reason,
                    failed,
                } => {
                    let waiting = query.keys.len() - accepted.len();
                    let message = format!(
                        "{waiting} invitation(s) of an uncertain send wait to be settled: {reason}"
                    );
                    if *failed {
                        state.partial(MAIL_PROVIDER, message);
                    } else {
                        state.summary.warnings.push(message);
                    }
                    (accepted.clone(), false)
                }
            };
            for key in &query.keys {
                if accepted.contains(key) {
                    entries.push(state.entry(
                        *key,
                        Step::Mailed,
                        None,
                        Some(format!("settled: accepted ({})", query.intent)),
                    ));
                    state.summary.mailed += 1;
                } else if settled {
                    entries.push(state.entry(
                        *key,
                        Step::MailFailed,
                        None,
                        Some(format!(
                            "{TRANSIENT}settled: not accepted by the provider ({})",
                            query.intent
                        )),
                    ));
                }
            }
        }
        let before = state.recorded.len();
        if !self.record(entries, state).await {
            return false;
        }
        // Folded here rather than at the end of the event, which folds what follows.
        for entry in state.recorded.drain(before..) {
            admissions.entry(entry.key.attendee_id).or_default().apply(
                entry.step,
                None,
                entry.detail.as_deref(),
                entry.at,
            );
        }
        true
    }

    /// Appends to the ledger; false (and the run failed) if the store refused.
    pub(super) async fn record(&self, entries: Vec<LedgerEntry>, state: &mut RunState) -> bool {
        if entries.is_empty() {
            return true;
        }
        match self.ledger.append(&entries).await {
            Ok(()) => {
                state.recorded.extend(entries);
                true
            }
            Err(error) => {
                state.failed("store", format!("writing the ledger: {error}"));
                false
            }
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
