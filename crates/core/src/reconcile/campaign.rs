//! Campaigns: a `[[campaigns]]` letter to every admitted, non-refunded attendee it selects,
//! exactly once each.
//!
//! Exactly-once rests on the ledger, as invitations do: a wave of up to [`WAVE`] letters is
//! recorded as `campaign_intent` (with the wave's id) before it goes to the provider, then
//! each outcome as `campaign_sent` or `campaign_failed`. A letter whose outcome is not
//! recorded (a crash, an uncertain answer) is settled first: through the provider's events
//! where it keeps them (Mailgun), else by sending the same wave again, which the provider
//! recognises by its id (Klaviyo objects are named after it, outbox files after the
//! campaign and attendee). Refunded attendees are never in an audience.
//!
//! Operators send a campaign (`autopilot campaign send`, `POST /campaigns/{name}/send`,
//! `/autopilot campaign send`); a scheduled one (`send_at`, `before_start`) goes from the
//! first run after it is due — handed to the provider with its delivery time when the run
//! falls within `[mail] campaign_lead` before it — and with `catch_up`, attendees admitted
//! later get it in the run that mails their invitation, until the event starts.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::event::still_open;
use super::{Reconciler, RunState};
use crate::campaign::{self, CampaignSettings, Schedule};
use crate::kktix::AttendeeFetch;
use crate::mail::{CampaignWave, Invitation, MailOutcome, SettleQuery, Settlement};
use crate::model::{
    campaign_detail, Admission, AttendeeKey, CampaignLetterState, EventRecord, LedgerEntry, Step,
    PERMANENT, TRANSIENT,
};
pub use crate::model::{CampaignReport, CampaignStatus};
use crate::pii::{EmailAddress, Sensitive};
use crate::selection::Door;

/// Letters per wave: one provider request (Mailgun's batch limit, `POST /mail`'s limit).
pub const WAVE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("no campaign {name:?} in [[campaigns]] (configured: {known})")]
    Unknown { name: String, known: String },
    #[error("this deployment sends no mail (no mailer configured)")]
    NoMailer,
    #[error("the store failed: {0}")]
    Store(String),
}

impl CampaignError {
    /// The HTTP status `POST /campaigns/{name}/send` answers it with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unknown { .. } => 404,
            Self::NoMailer | Self::Store(_) => 503,
        }
    }
}

/// Progress of a send: letters handled so far of those to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignProgress {
    pub done: u64,
    pub total: u64,
}

pub type ProgressFn<'a> = &'a (dyn Fn(CampaignProgress) + Send + Sync);

/// One open event and the attendees of it a campaign selects.
struct EventAudience {
    event: EventRecord,
    start: Option<DateTime<Utc>>,
    /// Admitted, non-refunded attendees of a selected ticket, with their letter's state.
    members: BTreeMap<u64, Member>,
}

struct Member {
    admission: Admission,
    letter: CampaignLetterState,
}

/// The events and their admissions campaigns' audiences are read from: read once however
/// many campaigns select an event (one campaign's letters do not change another's audience).
#[derive(Default)]
struct AudienceReads {
    events: Option<Vec<EventRecord>>,
    admissions: HashMap<u64, HashMap<u64, Admission>>,
}

/// What a send does with one event.
struct Target {
    audience: EventAudience,
    deliver_at: Option<DateTime<Utc>>,
    /// Who gets a letter beside those in flight.
    mode: Mode,
}

/// Which letters of an event a send handles, beside settling those in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Everyone selected who does not have it.
    All,
    /// Only letters that failed before (the campaign went out; later buyers wait for an
    /// operator, or for catch-up).
    Failed,
}

/// Who a letter goes to.
struct LetterContact {
    email: EmailAddress,
    name: Sensitive<String>,
    ticket_name: String,
    checkin_code: Option<String>,
    reg_no: Option<u64>,
}

/// A send in progress: its id, its counters, its wave numbering.
struct Sending<'a> {
    run_id: String,
    waves: u32,
    report: CampaignReport,
    progress: Option<ProgressFn<'a>>,
    done: u64,
    /// The provider failed: no further waves in this send.
    failing: Option<String>,
}

impl<'a> Sending<'a> {
    fn new(
        run_id: String,
        campaign: &CampaignSettings,
        dry_run: bool,
        progress: Option<ProgressFn<'a>>,
    ) -> Self {
        Self {
            run_id,
            waves: 0,
            report: CampaignReport {
                campaign: campaign.name.trim().to_owned(),
                dry_run,
                ..CampaignReport::default()
            },
            progress,
            done: 0,
            failing: None,
        }
    }

    fn next_intent(&mut self, campaign: &str) -> String {
        self.waves += 1;
        format!("{}.{campaign}.{}", self.run_id, self.waves)
    }

    fn entry(&self, key: AttendeeKey, step: Step, detail: String) -> LedgerEntry {
        LedgerEntry {
            key,
            step,
            email_hash: None,
            detail: Some(detail),
            run_id: self.run_id.clone(),
            at: Utc::now(),
        }
    }

    fn advance(&mut self, letters: u64) {
        self.done += letters;
        if let Some(progress) = self.progress {
            progress(CampaignProgress {
                done: self.done,
                total: self.report.to_send,
            });
        }
    }
}

impl Reconciler {
    /// Every configured campaign with its audience and how far it has gone.
    pub async fn campaign_list(&self) -> Result<Vec<CampaignStatus>, CampaignError> {
        let now = Utc::now();
        let mut statuses = Vec::with_capacity(self.campaigns.len());
        let mut reads = AudienceReads::default();
        for campaign in &self.campaigns {
            let audiences = self.audiences(campaign, now, &mut reads).await?;
            let mut status = CampaignStatus {
                name: campaign.name.trim().to_owned(),
                schedule: describe(campaign),
                catch_up: campaign.catch_up,
                events: audiences.len() as u64,
                ..CampaignStatus::default()
            };
            for audience in &audiences {
                let mut pending_here = false;
                for member in audience.members.values() {
                    status.audience += 1;
                    if member.letter.sent {
                        status.sent += 1;
                        continue;
                    }
                    pending_here = true;
                    status.pending += 1;
                    if member.letter.intent.is_some() {
                        status.in_flight += 1;
                    } else if member.letter.failures.count > 0 {
                        status.failed += 1;
                    }
                }
                if let Some(due) = campaign.due_at(audience.start) {
                    if pending_here || audience.members.is_empty() {
                        status.next_due = Some(status.next_due.map_or(due, |d| d.min(due)));
                    }
                }
            }
            statuses.push(status);
        }
        Ok(statuses)
    }

    /// An operator's send: the letter goes now to every selected attendee not recorded as
    /// having it. `dry_run` counts and sends nothing.
    pub async fn campaign_send(
        &self,
        name: &str,
        dry_run: bool,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<CampaignReport, CampaignError> {
        let campaign = self.campaign(name)?.clone();
        if self.mail.is_none() && !dry_run {
            return Err(CampaignError::NoMailer);
        }
        // The poller is the ledger's only writer: wait for a run under way.
        let _guard = self.running.lock().await;
        let started = Instant::now();
        let now = Utc::now();
        let targets = self
            .audiences(&campaign, now, &mut AudienceReads::default())
            .await?
            .into_iter()
            .map(|audience| Target {
                audience,
                deliver_at: None,
                mode: Mode::All,
            })
            .collect();
        let run_id = format!(
            "campaign-{}-{:04x}",
            now.format("%Y%m%dT%H%M%S%.3fZ"),
            rand::random::<u16>()
        );
        let mut sending = Sending::new(run_id, &campaign, dry_run, progress);
        self.deliver(&campaign, targets, dry_run, &mut sending)
            .await;
        sending.report.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            campaign = %sending.report.campaign,
            dry_run,
            audience = sending.report.audience,
            sent = sending.report.sent,
            failed = sending.report.failed,
            uncertain = sending.report.uncertain,
            "campaign send finished"
        );
        Ok(sending.report)
    }

    pub fn campaign_settings(&self) -> &[CampaignSettings] {
        &self.campaigns
    }

    fn campaign(&self, name: &str) -> Result<&CampaignSettings, CampaignError> {
        campaign::find(&self.campaigns, name).ok_or_else(|| CampaignError::Unknown {
            name: name.trim().to_owned(),
            known: if self.campaigns.is_empty() {
                "none".into()
            } else {
                self.campaigns
                    .iter()
                    .map(|c| c.name.trim())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }

    /// A run's part: scheduled campaigns that are due, catch-up letters for attendees
    /// admitted since, and letters in flight to settle. Runs after the invitations went out.
    pub(super) async fn campaigns_due(&self, state: &mut RunState) {
        if self.mail.is_none()
            || self.campaigns.is_empty()
            || state.unhealthy.contains(super::admit::MAIL_PROVIDER)
        {
            return;
        }
        let now = state.now;
        let lead = chrono::Duration::from_std(self.campaign_lead).unwrap_or_default();
        // The events this run reconciled are known as they stand after its entries.
        let mut reads = AudienceReads {
            events: None,
            admissions: state.admissions.clone(),
        };
        for campaign in &self.campaigns {
            let schedule = campaign.schedule().unwrap_or(Schedule::Manual);
            let audiences = match self.audiences(campaign, now, &mut reads).await {
                Ok(audiences) => audiences,
                Err(error) => {
                    state.partial(
                        "store",
                        format!("campaign {}: {error}", campaign.name.trim()),
                    );
                    continue;
                }
            };
            let mut targets = Vec::new();
            for audience in audiences {
                let launched = audience
                    .members
                    .values()
                    .any(|m| m.letter.sent || m.letter.intent.is_some());
                let in_flight = audience
                    .members
                    .values()
                    .any(|m| !m.letter.sent && m.letter.intent.is_some());
                let failed = audience
                    .members
                    .values()
                    .any(|m| !m.letter.sent && m.letter.failures.count > 0);
                let due = campaign.due_at(audience.start);
                let before_start = audience.start.map_or_else(
                    || still_open(audience.event.end_at.as_deref(), now),
                    |start| now < start,
                );
                let target = |deliver_at, mode| Target {
                    audience,
                    deliver_at,
                    mode,
                };
                if !launched {
                    // A pre-event letter is not launched once the event has begun.
                    match due {
                        Some(_) if !before_start => {}
                        Some(due) if now >= due => targets.push(target(None, Mode::All)),
                        Some(due) if due.checked_sub_signed(lead).is_some_and(|at| now >= at) => {
                            targets.push(target(Some(due), Mode::All))
                        }
                        _ => {}
                    }
                    continue;
                }
                let catching_up = campaign.catch_up
                    && before_start
                    && (schedule == Schedule::Manual || due.is_none_or(|due| now >= due));
                if catching_up {
                    targets.push(target(None, Mode::All));
                } else if in_flight || failed {
                    // What went wrong in the campaign's own send is finished by the runs.
                    targets.push(target(None, Mode::Failed));
                }
            }
            if targets.is_empty() {
                continue;
            }
            let mut sending = Sending::new(state.run_id.clone(), campaign, false, None);
            self.deliver(campaign, targets, false, &mut sending).await;
            let report = sending.report;
            state.summary.campaign_letters += report.sent;
            if report.sent > 0 || report.failed > 0 || report.uncertain > 0 {
                state.summary.warnings.push(report.to_string());
            }
            for error in report.errors {
                state.partial(super::admit::MAIL_PROVIDER, error);
            }
            if sending.failing.is_some() {
                state.unhealthy.insert(super::admit::MAIL_PROVIDER);
                return;
            }
        }
    }

    /// The open events `campaign` selects, with their admitted, non-refunded attendees of a
    /// selected ticket, read through `reads` (each event and ledger read once).
    async fn audiences(
        &self,
        campaign: &CampaignSettings,
        now: DateTime<Utc>,
        reads: &mut AudienceReads,
    ) -> Result<Vec<EventAudience>, CampaignError> {
        let store = |e: crate::store::StoreError| CampaignError::Store(e.to_string());
        let stages = self.stages();
        let mut audiences = Vec::new();
        if reads.events.is_none() {
            reads.events = Some(self.warehouse.events().await.map_err(store)?);
        }
        let events = reads.events.clone().unwrap_or_default();
        for event in events {
            if !still_open(event.end_at.as_deref(), now) || !campaign.selects_event(&event.name) {
                continue;
            }
            let admissions = match reads.admissions.get(&event.id) {
                Some(admissions) => admissions.clone(),
                None => {
                    let read = self.ledger.admissions(event.id).await.map_err(store)?;
                    reads.admissions.insert(event.id, read.clone());
                    read
                }
            };
            let name = campaign.name.trim();
            let mut members = BTreeMap::new();
            let mut ticketless = Vec::new();
            for (attendee_id, admission) in admissions {
                let admitted = admission.is_complete(stages)
                    && !(stages.grant && admission.revoked)
                    && !admission.awaiting_payment;
                if !admitted {
                    continue;
                }
                let ticket = admission
                    .granted
                    .as_ref()
                    .map(|g| g.ticket_name.clone())
                    .filter(|t| !t.is_empty());
                match ticket {
                    Some(ticket) if !campaign.selects_ticket(&ticket) => continue,
                    Some(_) => {}
                    None if campaign.tickets.is_empty() => {}
                    None => ticketless.push(attendee_id),
                }
                let letter = admission.campaigns.get(name).cloned().unwrap_or_default();
                members.insert(attendee_id, Member { admission, letter });
            }
            if !ticketless.is_empty() {
                // No grant record names the ticket: the contact does.
                let (contacts, _) = self.letter_contacts(&event, &ticketless).await;
                for id in ticketless {
                    let selected = contacts
                        .get(&id)
                        .is_some_and(|c| campaign.selects_ticket(&c.ticket_name));
                    if !selected {
                        members.remove(&id);
                    }
                }
            }
            audiences.push(EventAudience {
                start: campaign::parse_start(event.start_at.as_deref()),
                event,
                members,
            });
        }
        Ok(audiences)
    }

    /// Settles and sends every target's letters, wave by wave, recording each step.
    async fn deliver(
        &self,
        campaign: &CampaignSettings,
        targets: Vec<Target>,
        dry_run: bool,
        sending: &mut Sending<'_>,
    ) {
        let name = campaign.name.trim().to_owned();
        let now = Utc::now();
        let backoff = self.options.step_backoff;
        // (target index, intent or None for a new wave, attendee ids)
        let mut plans: Vec<(usize, Option<String>, Vec<u64>)> = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            let members = &target.audience.members;
            sending.report.audience += members.len() as u64;
            sending.report.already_sent +=
                members.values().filter(|m| m.letter.sent).count() as u64;
            if !dry_run {
                let resend = self.settle_in_flight(&name, target, sending).await;
                for (intent, ids) in resend {
                    plans.push((index, Some(intent), ids));
                }
            } else {
                let in_flight = members
                    .values()
                    .filter(|m| !m.letter.sent && m.letter.intent.is_some())
                    .count() as u64;
                sending.report.to_send += in_flight;
            }
            let fresh: Vec<u64> = members
                .iter()
                .filter(|(_, m)| {
                    !m.letter.sent
                        && m.letter.intent.is_none()
                        && (target.mode == Mode::All || m.letter.failures.count > 0)
                        && m.letter.failures.due(now, backoff)
                })
                .map(|(id, _)| *id)
                .collect();
            for chunk in fresh.chunks(WAVE) {
                plans.push((index, None, chunk.to_vec()));
            }
        }
        if dry_run {
            for (index, _, ids) in &plans {
                let (contacts, _) = self
                    .letter_contacts(&targets[*index].audience.event, ids)
                    .await;
                let reachable = ids.iter().filter(|id| contacts.contains_key(id)).count() as u64;
                sending.report.to_send += reachable;
                sending.report.no_contact += ids.len() as u64 - reachable;
            }
            return;
        }
        sending.report.to_send += plans
            .iter()
            .map(|(index, _, ids)| {
                let members = &targets[*index].audience.members;
                ids.iter()
                    .filter(|id| members.get(id).is_some_and(|m| !m.letter.sent))
                    .count() as u64
            })
            .sum::<u64>();
        for (index, intent, ids) in plans {
            if let Some(reason) = sending.failing.clone() {
                sending.report.not_attempted += ids.len() as u64;
                tracing::debug!(%reason, "campaign wave left for later");
                // A new wave's letters are marked as failed for now, so that the runs finish
                // them; a wave in flight stays in flight.
                if intent.is_none() {
                    let event_id = targets[index].audience.event.id;
                    let entries: Vec<LedgerEntry> = ids
                        .iter()
                        .map(|id| {
                            sending.entry(
                                AttendeeKey {
                                    event_id,
                                    attendee_id: *id,
                                },
                                Step::CampaignFailed,
                                campaign_detail(
                                    &name,
                                    &format!("{TRANSIENT}not attempted: {reason}"),
                                ),
                            )
                        })
                        .collect();
                    if let Err(error) = self.ledger.append(&entries).await {
                        sending.report.errors.push(format!(
                            "campaign {name}: recording letters left for later: {error}"
                        ));
                    }
                }
                sending.advance(ids.len() as u64);
                continue;
            }
            let target = &targets[index];
            self.send_wave(&name, target, intent, &ids, sending).await;
        }
    }

    /// Letters in flight: settled from the provider's events; those it did not accept go
    /// again in their own wave (same intent). Answers the waves to send again.
    async fn settle_in_flight(
        &self,
        name: &str,
        target: &Target,
        sending: &mut Sending<'_>,
    ) -> Vec<(String, Vec<u64>)> {
        let Some(mail) = &self.mail else {
            return Vec::new();
        };
        // Each wave in flight, whole: its letters in flight and those of it already recorded
        // as sent. A provider that keeps events (Mailgun) accepts the latter again; one that
        // recognises a wave (Klaviyo) is sent the same wave, never a part of it.
        let mut open: BTreeMap<String, (DateTime<Utc>, Vec<u64>)> = BTreeMap::new();
        for (id, member) in &target.audience.members {
            if let (false, Some((intent, at))) = (member.letter.sent, &member.letter.intent) {
                let slot = open.entry(intent.clone()).or_insert((*at, Vec::new()));
                slot.1.push(*id);
            }
        }
        if open.is_empty() {
            return Vec::new();
        }
        for (id, member) in &target.audience.members {
            if let (true, Some(intent)) = (member.letter.sent, &member.letter.sent_intent) {
                if let Some(slot) = open.get_mut(intent) {
                    slot.1.push(*id);
                }
            }
        }
        for (_, ids) in open.values_mut() {
            ids.sort_unstable();
        }
        let event_id = target.audience.event.id;
        let key = |attendee_id| AttendeeKey {
            event_id,
            attendee_id,
        };
        let queries: Vec<SettleQuery> = open
            .iter()
            .map(|(intent, (at, ids))| SettleQuery {
                intent: intent.clone(),
                since: *at,
                keys: ids.iter().map(|id| key(*id)).collect(),
            })
            .collect();
        let answers = mail.settle(queries).await;
        let mut entries = Vec::new();
        let mut again = Vec::new();
        for answer in answers {
            let Some((_, ids)) = open.get(&answer.intent) else {
                continue;
            };
            // Final: those not accepted go again under the same intent. Pending: they wait.
            let (accepted, settled) = match answer.settlement {
                Settlement::Settled { accepted } => (accepted, true),
                Settlement::Pending {
                    accepted, reason, ..
                } => {
                    tracing::debug!(intent = %answer.intent, %reason, "campaign letters still settling");
                    (accepted, false)
                }
            };
            let accepted: std::collections::HashSet<AttendeeKey> = accepted.into_iter().collect();
            let mut rest = Vec::new();
            for id in ids {
                let already = target
                    .audience
                    .members
                    .get(id)
                    .is_some_and(|m| m.letter.sent);
                if accepted.contains(&key(*id)) {
                    if !already {
                        entries.push(sending.entry(
                            key(*id),
                            Step::CampaignSent,
                            campaign_detail(name, &format!("settled {}", answer.intent)),
                        ));
                        sending.report.sent += 1;
                    }
                } else if settled {
                    rest.push(*id);
                } else if !already {
                    sending.report.not_attempted += 1;
                }
            }
            // Only the recorded ones left: nothing of this wave is in flight any more.
            let open_left = rest.iter().any(|id| {
                target
                    .audience
                    .members
                    .get(id)
                    .is_some_and(|m| !m.letter.sent)
            });
            if open_left {
                again.push((answer.intent.clone(), rest));
            }
        }
        if let Err(error) = self.ledger.append(&entries).await {
            sending.report.errors.push(format!(
                "campaign {name}: recording settled letters: {error}"
            ));
        }
        again
    }

    /// One wave: its intent recorded first, then each outcome.
    async fn send_wave(
        &self,
        name: &str,
        target: &Target,
        intent: Option<String>,
        ids: &[u64],
        sending: &mut Sending<'_>,
    ) {
        let Some(mail) = &self.mail else {
            return;
        };
        let event = &target.audience.event;
        let (contacts, errors) = self.letter_contacts(event, ids).await;
        let contacts_complete = errors.is_empty();
        sending.report.errors.extend(errors);
        let unreachable = ids.len() - contacts.len();
        sending.report.no_contact += unreachable as u64;
        let fresh = intent.is_none();
        let intent = intent.unwrap_or_else(|| sending.next_intent(name));
        let key = |attendee_id: u64| AttendeeKey {
            event_id: event.id,
            attendee_id,
        };
        let already_sent = |attendee_id: &u64| {
            target
                .audience
                .members
                .get(attendee_id)
                .is_some_and(|m| m.letter.sent)
        };
        let mut letters = Vec::with_capacity(contacts.len());
        let mut closed = Vec::new();
        for id in ids {
            let (Some(contact), Some(member)) = (contacts.get(id), target.audience.members.get(id))
            else {
                // A letter in flight whose contact is gone (shredded) can never be settled.
                if !fresh && contacts_complete && !already_sent(id) {
                    closed.push(sending.entry(
                        key(*id),
                        Step::CampaignFailed,
                        campaign_detail(name, &format!("{PERMANENT}no contact to write to")),
                    ));
                }
                continue;
            };
            let grant = member.admission.granted.as_ref();
            letters.push(Invitation {
                key: key(*id),
                email: contact.email.clone(),
                name: contact.name.clone(),
                event_name: grant
                    .map(|g| g.event_name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| event.name.clone()),
                ticket_name: contact.ticket_name.clone(),
                links: grant.map(|g| g.links.clone()).unwrap_or_default(),
                venue_url: grant.and_then(|g| g.venue_url.clone()),
                checkin_code: contact.checkin_code.clone(),
                reg_no: contact.reg_no,
                intent: Some(intent.clone()),
            });
        }
        if !closed.is_empty() {
            if let Err(error) = self.ledger.append(&closed).await {
                sending.report.errors.push(format!(
                    "campaign {name}: recording letters without a contact: {error}"
                ));
            }
        }
        if letters.iter().all(|l| already_sent(&l.key.attendee_id)) {
            sending.advance(ids.len() as u64);
            return;
        }
        // The intent before the send, every time: a wave sent again is recorded again, so the
        // provider's events are searched from this send on (Mailgun's `settle_after`).
        let intents: Vec<LedgerEntry> = letters
            .iter()
            .filter(|l| !already_sent(&l.key.attendee_id))
            .map(|l| sending.entry(l.key, Step::CampaignIntent, campaign_detail(name, &intent)))
            .collect();
        if let Err(error) = self.ledger.append(&intents).await {
            // Nothing goes out that the ledger could not hold the intent of.
            sending.report.errors.push(format!(
                "campaign {name}: recording the wave before sending: {error}"
            ));
            sending.report.not_attempted += intents.len() as u64;
            sending.failing = Some("the store failed".into());
            sending.advance(ids.len() as u64);
            return;
        }
        let wave = CampaignWave {
            campaign: name.to_owned(),
            intent: intent.clone(),
            deliver_at: target.deliver_at,
        };
        sending.report.deliver_at = sending.report.deliver_at.or(target.deliver_at);
        sending.report.waves += 1;
        let results = mail.send_campaign(wave, letters).await;
        let mut entries = Vec::with_capacity(results.len());
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for result in results {
            if result.outcome.provider_failing() && sending.failing.is_none() {
                sending.failing = Some(outcome_reason(&result.outcome));
            }
            // Sent again only so the provider sees the whole wave: already recorded.
            if already_sent(&result.key.attendee_id) {
                continue;
            }
            match result.outcome {
                MailOutcome::Sent { provider, .. } => {
                    sending.report.sent += 1;
                    entries.push(sending.entry(
                        result.key,
                        Step::CampaignSent,
                        campaign_detail(name, &format!("{provider} {intent}")),
                    ));
                }
                MailOutcome::Failed { reason, transient } => {
                    sending.report.failed += 1;
                    let prefix = if transient { TRANSIENT } else { PERMANENT };
                    *reasons.entry(reason.clone()).or_default() += 1;
                    entries.push(sending.entry(
                        result.key,
                        Step::CampaignFailed,
                        campaign_detail(name, &format!("{prefix}{reason}")),
                    ));
                }
                MailOutcome::NotAttempted { reason } => {
                    sending.report.not_attempted += 1;
                    // A wave in flight stays in flight: part of it may be out already, and
                    // only the same wave sent again is recognised.
                    if fresh {
                        entries.push(sending.entry(
                            result.key,
                            Step::CampaignFailed,
                            campaign_detail(name, &format!("{TRANSIENT}{reason}")),
                        ));
                    }
                }
                // The intent stays open: settled before anything is sent again.
                MailOutcome::Uncertain { reason } => {
                    sending.report.uncertain += 1;
                    *reasons.entry(reason).or_default() += 1;
                }
            }
        }
        for (reason, count) in reasons {
            sending
                .report
                .errors
                .push(format!("campaign {name}: {count} letter(s): {reason}"));
        }
        if let Err(error) = self.ledger.append(&entries).await {
            // The intents stay open: the next send settles them instead of sending again.
            sending
                .report
                .errors
                .push(format!("campaign {name}: recording the outcomes: {error}"));
        }
        sending.advance(ids.len() as u64);
    }

    /// The contacts of `ids`: from the hosting API for an API event, else the sealed ones.
    /// Errors are counts and reasons, never personal data.
    async fn letter_contacts(
        &self,
        event: &EventRecord,
        ids: &[u64],
    ) -> (HashMap<u64, LetterContact>, Vec<String>) {
        let mut contacts = HashMap::with_capacity(ids.len());
        let mut errors = Vec::new();
        let door = self.selector.door_of(event.id, self.fallback_door());
        if let (Door::Api, Some(kktix)) = (door, &self.kktix) {
            let mut failed = 0;
            for (id, fetch) in kktix.attendees(event.id, ids).await {
                match fetch {
                    AttendeeFetch::Fetched(attendee) if attendee.is_paid => {
                        let contact = self.privacy.contact(&attendee);
                        if let Some(email) = contact.email {
                            contacts.insert(
                                id,
                                LetterContact {
                                    email,
                                    name: contact.name.unwrap_or_default(),
                                    ticket_name: attendee.ticket_name.clone(),
                                    checkin_code: attendee.checkin_code.clone(),
                                    reg_no: attendee.reg_no,
                                },
                            );
                        }
                    }
                    AttendeeFetch::Fetched(_) => {}
                    AttendeeFetch::Broken(_) | AttendeeFetch::Failed(_) => failed += 1,
                }
            }
            if failed > 0 {
                errors.push(format!(
                    "event {}: {failed} attendee record(s) could not be read from KKTIX; their letters wait",
                    event.id
                ));
            }
            return (contacts, errors);
        }
        let Some(vault) = &self.vault else {
            return (contacts, errors);
        };
        let sealed = match vault.store.contacts(event.id).await {
            Ok(sealed) => sealed,
            Err(error) => {
                errors.push(format!(
                    "event {}: reading the sealed contacts: {error}",
                    event.id
                ));
                return (contacts, errors);
            }
        };
        let mut unopened = 0;
        for id in ids {
            let Some(text) = sealed.get(id) else {
                continue;
            };
            let key = AttendeeKey {
                event_id: event.id,
                attendee_id: *id,
            };
            match vault.sealer.open(key, text) {
                Ok(card) => {
                    if let Some(email) = card.email() {
                        contacts.insert(
                            *id,
                            LetterContact {
                                email,
                                name: card.name(),
                                ticket_name: card.ticket_name.clone(),
                                checkin_code: card.checkin_code.clone(),
                                reg_no: card.reg_no,
                            },
                        );
                    }
                }
                Err(_) => unopened += 1,
            }
        }
        if unopened > 0 {
            errors.push(format!(
                "event {}: {unopened} sealed contact(s) do not open with CONTACT_KEY",
                event.id
            ));
        }
        (contacts, errors)
    }
}

fn outcome_reason(outcome: &MailOutcome) -> String {
    match outcome {
        MailOutcome::Failed { reason, .. }
        | MailOutcome::Uncertain { reason }
        | MailOutcome::NotAttempted { reason } => reason.clone(),
        MailOutcome::Sent { .. } => String::new(),
    }
}

/// The schedule as `campaign list` shows it.
fn describe(campaign: &CampaignSettings) -> String {
    match campaign.schedule() {
        Ok(Schedule::Manual) => "manual".into(),
        Ok(Schedule::At(at)) => format!(
            "at {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        Ok(Schedule::BeforeStart(before)) => format!(
            "{} before each event's start",
            humantime::format_duration(before)
        ),
        Err(error) => error,
    }
}
