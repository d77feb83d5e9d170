//! # KKTIX hosting-API sandbox
//!
//! An in-process HTTP simulator of the parts of KKTIX's hosting API that the
//! autopilot consumes (`/api/v2/hosting_events`, attendance books and
//! attendee details). It is used by the local dev stack
//! (`autopilot dev --sandbox`), by integration tests and by benchmarks.
//!
//! * **Deterministic**: all data is generated from [`SandboxConfig::seed`];
//!   the same seed and the same sequence of calls give byte-identical
//!   attendee records (timestamps come from a simulated clock, not the wall
//!   clock). Only the events' `start_at`/`end_at` are anchored to the current
//!   date so that "not ended" events really lie in the future.
//! * **Realistic**: bilingual KKTIX-style forms (`聯絡人 姓名`, `聯絡人 Email`,
//!   `聯絡人 手機`, `Nickname / 暱稱`, …), unicode names, ATM orders that are
//!   paid later, refunds that drop attendees from the attendance book.
//! * **Alive**: [`Sandbox::step`] advances simulated time (new orders, ATM
//!   payments, refunds); [`Sandbox::start_clock`] calls it periodically.
//! * **Compact**: attendees are stored as small structs; personal data is
//!   re-derived from a per-attendee seed and JSON is rendered per request, so
//!   tens of thousands of attendees cost little memory.
//! * **Fault injection**: [`Sandbox::corrupt`] makes one attendee's detail
//!   endpoint answer a broken record.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use autopilot_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::new(SandboxConfig::demo(42));
//! let running = sandbox.serve("127.0.0.1:0".parse().unwrap()).await?;
//! println!("{} (token {})", running.base_url, sandbox.access_token());
//! # Ok(()) }
//! ```

mod api;
mod exports;
pub mod faults;
mod persona;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use persona::FormKind;

/// First attendee id handed out; ids are global (unique across events).
const ATTENDEE_ID_BASE: u64 = 84_000_000;
/// First order number handed out.
const ORDER_NO_BASE: u64 = 126_000_000;
/// Simulated clock start: 2026-03-01T10:00:00+08:00, in milliseconds.
const SIM_EPOCH_MS: i64 = 1_772_330_400_000;
/// Simulated time that passes per [`Sandbox::step`].
const STEP_MS: i64 = 60_000;
/// Initial attendees are spread over this window before the epoch.
const BACKFILL_MS: i64 = 30 * 24 * 3600 * 1000;

/// Configuration of a [`Sandbox`].
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    /// Seed for every random choice.
    pub seed: u64,
    /// The bearer token clients must present.
    pub access_token: String,
    /// Page size of `GET /api/v2/hosting_events`.
    pub page_size: usize,
    /// Events, listed in this order.
    pub events: Vec<EventSpec>,
    /// Mean number of new orders per [`Sandbox::step`] across all on-sale events.
    pub purchases_per_step: f64,
    /// Fraction of new orders paid by ATM: they start `is_paid=false` and get
    /// paid in a later step.
    pub atm_share: f64,
    /// Probability that an unpaid ATM order gets paid during a step.
    pub atm_pay_per_step: f64,
    /// Probability per step that one paid attendee is refunded.
    pub refund_share: f64,
    /// Share of new orders that buy two or three tickets (one contact person).
    pub multi_ticket_share: f64,
}

/// One simulated event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    pub id: u64,
    pub slug: String,
    pub name: String,
    /// Ended events are hidden by `only_not_ended_event=true` and get no new orders from [`Sandbox::step`].
    pub ended: bool,
    pub tickets: Vec<TicketSpec>,
    /// Attendees generated when the sandbox is created.
    pub initial_attendees: usize,
    /// How many of `initial_attendees` are unpaid ATM orders (clamped).
    pub initial_unpaid: usize,
}

/// One ticket type of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketSpec {
    pub id: u64,
    pub name: String,
    /// Price in TWD; 0 means a free ticket (payment method `WEBSITE`).
    pub price: u32,
    /// Maximum number of live (not refunded) attendees; `None` is unlimited.
    pub quota: Option<u32>,
}

impl TicketSpec {
    fn new(id: u64, name: &str, price: u32, quota: Option<u32>) -> Self {
        Self {
            id,
            name: name.to_owned(),
            price,
            quota,
        }
    }
}

impl SandboxConfig {
    /// The PyCon Taiwan demo: three 2026 registration events (Individual,
    /// Corporate, Reserved), a non-registration Sprint Meetup and an ended
    /// 2025 registration event.
    pub fn demo(seed: u64) -> Self {
        let events = vec![
            EventSpec {
                id: 80_101,
                slug: "pycontw-2026-individual".into(),
                name: "PyCon Taiwan 2026 Registration: Individual".into(),
                ended: false,
                tickets: vec![
                    TicketSpec::new(501_001, "Early Bird 早鳥票", 1800, Some(150)),
                    TicketSpec::new(501_002, "Regular 一般票", 2600, None),
                    TicketSpec::new(501_003, "Student 學生票", 1000, Some(100)),
                ],
                initial_attendees: 40,
                initial_unpaid: 4,
            },
            EventSpec {
                id: 80_102,
                slug: "pycontw-2026-corporate".into(),
                name: "PyCon Taiwan 2026 Registration: Corporate".into(),
                ended: false,
                tickets: vec![
                    TicketSpec::new(502_001, "Corporate 企業票", 5200, None),
                    TicketSpec::new(502_002, "Corporate Group 企業團體票", 4600, Some(60)),
                ],
                initial_attendees: 24,
                initial_unpaid: 3,
            },
            EventSpec {
                id: 80_103,
                slug: "pycontw-2026-reserved".into(),
                name: "PyCon Taiwan 2026 Registration: Reserved".into(),
                ended: false,
                tickets: vec![
                    TicketSpec::new(503_001, "Speaker 講者票", 0, Some(120)),
                    TicketSpec::new(503_002, "Sponsor 贊助商票", 0, Some(80)),
                ],
                initial_attendees: 20,
                initial_unpaid: 0,
            },
            EventSpec {
                id: 80_104,
                slug: "pycontw-2026-sprint".into(),
                name: "PyCon Taiwan 2026 Sprint Meetup".into(),
                ended: false,
                tickets: vec![TicketSpec::new(504_001, "Sprint 衝刺開發", 0, Some(80))],
                initial_attendees: 12,
                initial_unpaid: 0,
            },
            EventSpec {
                id: 70_101,
                slug: "pycontw-2025-individual".into(),
                name: "PyCon Taiwan 2025 Registration: Individual".into(),
                ended: true,
                tickets: vec![
                    TicketSpec::new(401_001, "Early Bird 早鳥票", 1600, Some(150)),
                    TicketSpec::new(401_002, "Regular 一般票", 2400, None),
                    TicketSpec::new(401_003, "Student 學生票", 900, Some(100)),
                ],
                initial_attendees: 36,
                initial_unpaid: 0,
            },
        ];
        Self {
            seed,
            access_token: "sandbox-token".into(),
            page_size: 50,
            events,
            purchases_per_step: 3.0,
            atm_share: 0.2,
            atm_pay_per_step: 0.5,
            refund_share: 0.05,
            // Off by default: every address is then one buyer, which the crash suites rely
            // on to count mails per address. `autopilot dev --sandbox` turns it on.
            multi_ticket_share: 0.0,
        }
    }

    /// One registration event ("Bench Conf 2026 Registration: Individual")
    /// with `attendees` paid attendees and all rates 0 (for benchmarks).
    pub fn single_event(seed: u64, attendees: usize) -> Self {
        Self {
            seed,
            access_token: "sandbox-token".into(),
            page_size: 50,
            events: vec![EventSpec {
                id: 90_001,
                slug: "bench-conf-2026-individual".into(),
                name: "Bench Conf 2026 Registration: Individual".into(),
                ended: false,
                tickets: vec![
                    TicketSpec::new(901_001, "Regular 一般票", 2600, None),
                    TicketSpec::new(901_002, "Student 學生票", 1000, None),
                ],
                initial_attendees: attendees,
                initial_unpaid: 0,
            }],
            purchases_per_step: 0.0,
            atm_share: 0.0,
            atm_pay_per_step: 0.0,
            refund_share: 0.0,
            multi_ticket_share: 0.0,
        }
    }
}

/// How a corrupted attendee record is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// Valid JSON with wrong types (`"is_paid":"yes"`, `"data":"oops"`,
    /// `"reg_no":"#<n>"`); `id` is kept.
    WrongTypes,
    /// The body is cut mid-JSON; the status is still 200.
    Truncated,
}

/// What one [`Sandbox::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    pub purchased: usize,
    pub paid: usize,
    pub refunded: usize,
}

/// Per-route request counters. Every request is counted in exactly one
/// field: authorized requests answered 200 by their route's counter, any 404
/// (unknown event/book/attendee or unknown path) in `not_found`, and
/// rejected tokens in `unauthorized`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestStats {
    /// `GET /api/v2/hosting_events`
    pub hosting_events: u64,
    /// `GET .../attendance_books` (list)
    pub attendance_books: u64,
    /// `GET .../attendance_books/{book_id}` (detail)
    pub attendance_book: u64,
    /// `GET .../attendees/{attendee_id}` (including corrupted answers)
    pub attendees: u64,
    pub unauthorized: u64,
    pub not_found: u64,
}

impl RequestStats {
    /// All upstream calls except the unauthorized ones.
    pub fn total(&self) -> u64 {
        self.hosting_events
            + self.attendance_books
            + self.attendance_book
            + self.attendees
            + self.not_found
    }
}

/// Ground truth about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTruth {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub ended: bool,
}

/// Ground truth about an attendee, including clear personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeeTruth {
    pub id: u64,
    pub event_id: u64,
    pub reg_no: u64,
    pub order_no: u64,
    pub ticket_name: String,
    pub paid: bool,
    pub refunded: bool,
    /// A [`Corruption`] is active for this attendee.
    pub broken: bool,
    pub name: String,
    pub email: String,
    pub phone: String,
    /// The invoice address (corporate forms only).
    pub address: Option<String>,
    pub price: u32,
}

/// A served sandbox. The server task is aborted when this is dropped.
#[derive(Debug)]
pub struct RunningSandbox {
    /// e.g. `http://127.0.0.1:54321` (no trailing slash).
    pub base_url: String,
    pub addr: SocketAddr,
    handle: tokio::task::JoinHandle<()>,
}

impl RunningSandbox {
    /// Whether the server task has stopped (it only stops on an I/O error or abort).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Attendee {
    id: u64,
    order_no: u64,
    persona_seed: u64,
    created_ms: i64,
    updated_ms: i64,
    reg_no: u32,
    ticket: u32,
    paid: bool,
    atm: bool,
    refunded: bool,
    corruption: Option<Corruption>,
    /// The first attendee of a multi-ticket order: its contact person is this one's too.
    order_lead: Option<u64>,
}

#[derive(Debug)]
struct Event {
    id: u64,
    slug: String,
    name: String,
    ended: bool,
    tickets: Vec<TicketSpec>,
    /// Live (not refunded) attendees per ticket, for quotas.
    sold: Vec<u32>,
    form: FormKind,
    book_id: u64,
    start_at: String,
    end_at: String,
    next_reg_no: u32,
    /// Sorted by id (ids are handed out increasingly).
    attendees: Vec<Attendee>,
    /// A KKTIX glitch: the attendance book lists only this many live attendees.
    book_limit: Option<usize>,
}

impl Event {
    fn attendee(&self, id: u64) -> Option<&Attendee> {
        self.attendees
            .binary_search_by_key(&id, |a| a.id)
            .ok()
            .map(|i| &self.attendees[i])
    }

    fn attendee_mut(&mut self, id: u64) -> Option<&mut Attendee> {
        match self.attendees.binary_search_by_key(&id, |a| a.id) {
            Ok(i) => Some(&mut self.attendees[i]),
            Err(_) => None,
        }
    }

    fn has_capacity(&self, ticket: usize) -> bool {
        match self.tickets[ticket].quota {
            Some(q) => self.sold[ticket] < q,
            None => true,
        }
    }

    fn truth(&self) -> EventTruth {
        EventTruth {
            id: self.id,
            slug: self.slug.clone(),
            name: self.name.clone(),
            ended: self.ended,
        }
    }
}

#[derive(Debug)]
pub(crate) struct State {
    token: String,
    page_size: usize,
    purchases_per_step: f64,
    atm_share: f64,
    atm_pay_per_step: f64,
    refund_share: f64,
    rng: StdRng,
    events: Vec<Event>,
    next_attendee_id: u64,
    next_order_no: u64,
    now_ms: i64,
    stats: RequestStats,
    /// Chaos tests only: `None` passes every request through.
    faults: Option<faults::Injector>,
    multi_ticket_share: f64,
    /// What changed since the last [`Sandbox::take_changes`], when recorded.
    changes: Option<Vec<Change>>,
    /// Steps taken since creation (for replaying a restarted sandbox).
    steps: u64,
    webhook_batches: u64,
}

/// A change a KKTIX webhook would announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These attendees (one order) were paid.
    Paid {
        event_id: u64,
        attendee_ids: Vec<u64>,
    },
    /// This attendee's ticket was refunded.
    Refunded { event_id: u64, attendee_id: u64 },
}

fn probability(p: f64) -> f64 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Poisson sample (Knuth, in chunks so large means do not underflow).
fn poisson(rng: &mut StdRng, lambda: f64) -> usize {
    if !lambda.is_finite() || lambda <= 0.0 {
        return 0;
    }
    let mut remaining = lambda.min(100_000.0);
    let mut total = 0;
    while remaining > 0.0 {
        let chunk = remaining.min(30.0);
        remaining -= chunk;
        let limit = (-chunk).exp();
        let mut p: f64 = rng.random();
        while p > limit {
            total += 1;
            p *= rng.random::<f64>();
        }
    }
    total
}

/// RFC 3339 in Asia/Taipei (+08:00), whole seconds.
fn rfc3339_taipei(secs: i64) -> String {
    match (
        chrono::DateTime::from_timestamp(secs, 0),
        chrono::FixedOffset::east_opt(8 * 3600),
    ) {
        (Some(t), Some(tz)) => t
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        _ => String::new(),
    }
}

/// Start of the current day in Taipei, as epoch seconds.
fn today_taipei() -> i64 {
    const DAY: i64 = 86_400;
    const TZ: i64 = 8 * 3600;
    let now = chrono::Utc::now().timestamp();
    (now + TZ).div_euclid(DAY) * DAY - TZ
}

/// How a new order is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Paid immediately by credit card (free tickets: `WEBSITE`).
    Card,
    /// Paid by ATM transfer, already settled (back-filled history).
    AtmPaid,
    /// ATM order awaiting payment.
    AtmUnpaid,
}

impl State {
    fn new(config: SandboxConfig) -> Self {
        let mut state = Self {
            token: config.access_token,
            page_size: config.page_size.max(1),
            purchases_per_step: config.purchases_per_step,
            atm_share: probability(config.atm_share),
            atm_pay_per_step: probability(config.atm_pay_per_step),
            refund_share: probability(config.refund_share),
            rng: StdRng::seed_from_u64(config.seed),
            events: Vec::with_capacity(config.events.len()),
            next_attendee_id: ATTENDEE_ID_BASE,
            next_order_no: ORDER_NO_BASE,
            now_ms: SIM_EPOCH_MS - BACKFILL_MS,
            stats: RequestStats::default(),
            faults: None,
            multi_ticket_share: probability(config.multi_ticket_share),
            changes: None,
            steps: 0,
            webhook_batches: 0,
        };
        let today = today_taipei();
        let (mut upcoming, mut past) = (0i64, 0i64);
        let mut initial = Vec::with_capacity(config.events.len());
        for spec in config.events {
            // Conferences run 09:00 day 1 to 18:00 day 2 (Taipei time).
            let start = if spec.ended {
                past += 1;
                today - (45 + 7 * past) * 86_400 + 9 * 3600
            } else {
                upcoming += 1;
                today + (45 + 7 * upcoming) * 86_400 + 9 * 3600
            };
            let end = start + 86_400 + 9 * 3600;
            initial.push((
                spec.initial_attendees,
                spec.initial_unpaid.min(spec.initial_attendees),
            ));
            state.events.push(Event {
                id: spec.id,
                book_id: spec.id.wrapping_mul(10).wrapping_add(3),
                form: FormKind::for_event_name(&spec.name),
                slug: spec.slug,
                name: spec.name,
                ended: spec.ended,
                sold: vec![0; spec.tickets.len()],
                tickets: spec.tickets,
                start_at: rfc3339_taipei(start),
                end_at: rfc3339_taipei(end),
                next_reg_no: 1,
                attendees: Vec::new(),
                book_limit: None,
            });
        }
        state.backfill(&initial);
        state
    }

    /// Generate the initial attendees, round-robin over the events, spread
    /// over the back-fill window before the simulated epoch.
    fn backfill(&mut self, initial: &[(usize, usize)]) {
        let grand_total: usize = initial.iter().map(|(t, _)| *t).sum();
        if grand_total == 0 {
            self.now_ms = SIM_EPOCH_MS;
            return;
        }
        let spacing = (BACKFILL_MS / i64::try_from(grand_total).unwrap_or(i64::MAX)).max(1);
        for (idx, (total, _)) in initial.iter().enumerate() {
            self.events[idx].attendees.reserve_exact(*total);
        }
        let mut made = vec![0usize; initial.len()];
        let mut progress = true;
        while progress {
            progress = false;
            for (idx, &(total, unpaid)) in initial.iter().enumerate() {
                if made[idx] >= total {
                    continue;
                }
                made[idx] += 1;
                progress = true;
                self.now_ms += self.rng.random_range(1..=spacing * 2);
                // The most recent orders are the ones still awaiting payment.
                let order = if made[idx] > total - unpaid {
                    Order::AtmUnpaid
                } else if self.rng.random_bool(0.15) {
                    Order::AtmPaid
                } else {
                    Order::Card
                };
                let _ = self.create_attendee(idx, order, false, false);
            }
        }
        self.now_ms = self.now_ms.max(SIM_EPOCH_MS);
    }

    /// Advance the simulated clock a little and return the new time.
    fn tick(&mut self) -> i64 {
        self.now_ms += self.rng.random_range(200..5_000);
        self.now_ms
    }

    fn event_index(&self, event_id: u64) -> Option<usize> {
        self.events.iter().position(|e| e.id == event_id)
    }

    /// Create one order with one attendee. With `strict_quota`, sold-out
    /// tickets are skipped (and `None` returned when all are sold out).
    /// With `free_stays_unpaid`, an `AtmUnpaid` order on a free ticket stays
    /// unpaid (`WEBSITE`, `is_paid=false`); otherwise it is paid at once.
    fn create_attendee(
        &mut self,
        event: usize,
        order: Order,
        strict_quota: bool,
        free_stays_unpaid: bool,
    ) -> Option<u64> {
        let ev = &self.events[event];
        let mut candidates: Vec<usize> = (0..ev.tickets.len())
            .filter(|&t| ev.has_capacity(t))
            .collect();
        if candidates.is_empty() && !strict_quota {
            candidates = (0..ev.tickets.len()).collect();
        }
        if order == Order::AtmUnpaid {
            let priced: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&t| ev.tickets[t].price > 0)
                .collect();
            if !priced.is_empty() {
                candidates = priced;
            }
        }
        if candidates.is_empty() {
            return None;
        }
        let ticket = candidates[self.rng.random_range(0..candidates.len())];
        let free = ev.tickets[ticket].price == 0;
        let (paid, atm) = match order {
            Order::Card => (true, false),
            Order::AtmPaid => (true, !free),
            Order::AtmUnpaid if free => (!free_stays_unpaid, false),
            Order::AtmUnpaid => (false, true),
        };
        let persona_seed: u64 = self.rng.random();
        let now = if self.now_ms < SIM_EPOCH_MS {
            self.now_ms
        } else {
            self.tick()
        };
        let id = self.next_attendee_id;
        self.next_attendee_id += 1;
        let order_no = self.next_order_no;
        self.next_order_no += 1 + self.rng.random_range(0..3u64);
        let ev = &mut self.events[event];
        let reg_no = ev.next_reg_no;
        ev.next_reg_no += 1;
        ev.sold[ticket] = ev.sold[ticket].saturating_add(1);
        ev.attendees.push(Attendee {
            id,
            order_no,
            persona_seed,
            created_ms: now,
            updated_ms: now,
            reg_no,
            ticket: u32::try_from(ticket).unwrap_or(u32::MAX),
            paid,
            atm,
            refunded: false,
            corruption: None,
            order_lead: None,
        });
        if paid {
            self.record(Change::Paid {
                event_id: self.events[event].id,
                attendee_ids: vec![id],
            });
        }
        Some(id)
    }

    fn record(&mut self, change: Change) {
        if let Some(changes) = &mut self.changes {
            // One order's tickets are announced together.
            if let (
                Change::Paid {
                    event_id,
                    attendee_ids,
                },
                Some(Change::Paid {
                    event_id: last_event,
                    attendee_ids: last_ids,
                }),
            ) = (&change, changes.last_mut())
            {
                let same_order = *event_id == *last_event
                    && self
                        .events
                        .iter()
                        .find(|e| e.id == *event_id)
                        .and_then(|ev| {
                            let a = ev.attendee(*attendee_ids.first()?)?;
                            let b = ev.attendee(*last_ids.first()?)?;
                            Some(a.order_no == b.order_no)
                        })
                        .unwrap_or(false);
                if same_order {
                    last_ids.extend(attendee_ids);
                    return;
                }
            }
            changes.push(change);
        }
    }

    /// One more ticket in the order of `lead` (same contact person, same payment state).
    fn add_to_order(&mut self, event: usize, lead: u64) -> Option<u64> {
        let ev = &self.events[event];
        let lead_attendee = ev.attendee(lead)?.clone();
        let candidates: Vec<usize> = (0..ev.tickets.len())
            .filter(|&t| ev.has_capacity(t))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let ticket = candidates[self.rng.random_range(0..candidates.len())];
        let id = self.next_attendee_id;
        self.next_attendee_id += 1;
        let ev = &mut self.events[event];
        let reg_no = ev.next_reg_no;
        ev.next_reg_no += 1;
        ev.sold[ticket] = ev.sold[ticket].saturating_add(1);
        ev.attendees.push(Attendee {
            id,
            ticket: u32::try_from(ticket).unwrap_or(u32::MAX),
            reg_no,
            order_lead: Some(lead),
            corruption: None,
            ..lead_attendee
        });
        if lead_attendee.paid {
            self.record(Change::Paid {
                event_id: self.events[event].id,
                attendee_ids: vec![id],
            });
        }
        Some(id)
    }

    fn pay(&mut self, event_id: u64, attendee_id: u64) -> bool {
        let Some(e) = self.event_index(event_id) else {
            return false;
        };
        match self.events[e].attendee(attendee_id) {
            Some(a) if !a.paid && !a.refunded => {}
            _ => return false,
        }
        let now = self.tick();
        // An ATM transfer pays the whole order.
        let order_no = self.events[e].attendee(attendee_id).map(|a| a.order_no);
        let mut paid = Vec::new();
        for a in self.events[e]
            .attendees
            .iter_mut()
            .filter(|a| Some(a.order_no) == order_no && !a.paid && !a.refunded)
        {
            a.paid = true;
            a.updated_ms = now;
            paid.push(a.id);
        }
        let event_id = self.events[e].id;
        self.record(Change::Paid {
            event_id,
            attendee_ids: paid,
        });
        true
    }

    fn refund(&mut self, event_id: u64, attendee_id: u64) -> bool {
        let Some(e) = self.event_index(event_id) else {
            return false;
        };
        match self.events[e].attendee(attendee_id) {
            Some(a) if !a.refunded => {}
            _ => return false,
        }
        let now = self.tick();
        let ev = &mut self.events[e];
        let mut ticket = None;
        if let Some(a) = ev.attendee_mut(attendee_id) {
            a.refunded = true;
            a.updated_ms = now;
            ticket = usize::try_from(a.ticket).ok();
        }
        if let Some(slot) = ticket.and_then(|t| ev.sold.get_mut(t)) {
            *slot = slot.saturating_sub(1);
        }
        let event_id = ev.id;
        self.record(Change::Refunded {
            event_id,
            attendee_id,
        });
        true
    }

    fn step(&mut self) -> StepReport {
        let mut report = StepReport::default();
        self.now_ms += STEP_MS;
        self.steps += 1;

        // 1. Outstanding orders get paid (before new orders, so a new ATM
        //    order is always paid in a later step).
        let mut to_pay = Vec::new();
        let p = self.atm_pay_per_step;
        if p > 0.0 {
            for ev in &self.events {
                for a in ev.attendees.iter().filter(|a| !a.paid && !a.refunded) {
                    if self.rng.random_bool(p) {
                        to_pay.push((ev.id, a.id));
                    }
                }
            }
        }
        for (e, a) in to_pay {
            if self.pay(e, a) {
                report.paid += 1;
            }
        }

        // 2. At most one refund of a paid attendee of an on-sale event.
        if self.refund_share > 0.0 && self.rng.random_bool(self.refund_share) {
            let live = |a: &&Attendee| a.paid && !a.refunded;
            let count: usize = self
                .events
                .iter()
                .filter(|e| !e.ended)
                .map(|e| e.attendees.iter().filter(live).count())
                .sum();
            if count > 0 {
                let mut k = self.rng.random_range(0..count);
                let mut victim = None;
                for ev in self.events.iter().filter(|e| !e.ended) {
                    let n = ev.attendees.iter().filter(live).count();
                    if k < n {
                        victim = ev
                            .attendees
                            .iter()
                            .filter(live)
                            .nth(k)
                            .map(|a| (ev.id, a.id));
                        break;
                    }
                    k -= n;
                }
                if let Some((e, a)) = victim {
                    if self.refund(e, a) {
                        report.refunded += 1;
                    }
                }
            }
        }

        // 3. New orders.
        let orders = poisson(&mut self.rng, self.purchases_per_step);
        for _ in 0..orders {
            let on_sale: Vec<usize> = (0..self.events.len())
                .filter(|&i| {
                    let ev = &self.events[i];
                    !ev.ended && (0..ev.tickets.len()).any(|t| ev.has_capacity(t))
                })
                .collect();
            if on_sale.is_empty() {
                break;
            }
            let event = on_sale[self.rng.random_range(0..on_sale.len())];
            let order = if self.atm_share > 0.0 && self.rng.random_bool(self.atm_share) {
                Order::AtmUnpaid
            } else {
                Order::Card
            };
            if let Some(lead) = self.create_attendee(event, order, true, false) {
                report.purchased += 1;
                if self.multi_ticket_share > 0.0 && self.rng.random_bool(self.multi_ticket_share) {
                    let more = self.rng.random_range(1..=2);
                    for _ in 0..more {
                        if self.add_to_order(event, lead).is_some() {
                            report.purchased += 1;
                        }
                    }
                }
            }
        }
        report
    }

    /// The attendee's persona: for a later ticket of a multi-ticket order, the order's contact
    /// person with the ticket's own check-in code and QR code.
    pub(crate) fn persona_of(ev: &Event, a: &Attendee) -> persona::Persona {
        let unique = a.order_lead.unwrap_or(a.id) - ATTENDEE_ID_BASE + 1;
        let mut p = persona::persona(a.persona_seed, unique, ev.form);
        if a.order_lead.is_some() {
            let (checkin_code, qrcode) = persona::ticket_codes(a.persona_seed ^ a.id);
            p.checkin_code = checkin_code;
            p.qrcode = qrcode;
        }
        p
    }

    fn attendee_truth(ev: &Event, a: &Attendee) -> AttendeeTruth {
        let p = Self::persona_of(ev, a);
        let ticket = ev.tickets.get(a.ticket as usize);
        AttendeeTruth {
            id: a.id,
            event_id: ev.id,
            reg_no: u64::from(a.reg_no),
            order_no: a.order_no,
            ticket_name: ticket.map(|t| t.name.clone()).unwrap_or_default(),
            paid: a.paid,
            refunded: a.refunded,
            broken: a.corruption.is_some(),
            name: p.name,
            email: p.email,
            phone: p.phone,
            address: p.address,
            price: ticket.map_or(0, |t| t.price),
        }
    }
}

// ---------------------------------------------------------------------------
// Sandbox
// ---------------------------------------------------------------------------

/// A simulated KKTIX account. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Sandbox {
    state: Arc<Mutex<State>>,
}

impl Sandbox {
    /// Build the sandbox and generate the initial attendees.
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new(config))),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The HTTP API (see the crate docs for the routes).
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Bind `addr` (port 0 picks a free port) and serve the API in a
    /// spawned task. The task is aborted when the returned value is dropped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<RunningSandbox> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut addr = listener.local_addr()?;
        let router = self.router();
        let handle = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(%err, "kktix sandbox server stopped");
            }
        });
        let mut url_addr = addr;
        if url_addr.ip().is_unspecified() {
            url_addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        if addr.port() == 0 {
            addr.set_port(url_addr.port());
        }
        Ok(RunningSandbox {
            base_url: format!("http://{url_addr}"),
            addr,
            handle,
        })
    }

    /// The bearer token clients must send.
    pub fn access_token(&self) -> String {
        self.lock().token.clone()
    }

    /// One unit of simulated time: outstanding orders may get paid, one paid
    /// attendee may be refunded, and a Poisson number of new orders arrive.
    pub fn step(&self) -> StepReport {
        self.lock().step()
    }

    /// Call [`Sandbox::step`] every `period` (first call after one period).
    pub fn start_clock(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let sandbox = self.clone();
        let period = period.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let report = sandbox.step();
                if report != StepReport::default() {
                    tracing::debug!(?report, "kktix sandbox step");
                }
            }
        })
    }

    /// An explicit new order with one attendee. `paid=false` makes an ATM
    /// order awaiting payment (on an event with only free tickets: an unpaid
    /// `WEBSITE` order). Returns the attendee id; `None` if the event is
    /// unknown or all of its tickets are sold out.
    pub fn purchase(&self, event_id: u64, paid: bool) -> Option<u64> {
        let mut state = self.lock();
        let event = state.event_index(event_id)?;
        let order = if paid { Order::Card } else { Order::AtmUnpaid };
        state.create_attendee(event, order, true, true)
    }

    /// An unpaid order gets paid (`is_paid` true, `updated_at` bumps).
    /// `false` if unknown, already paid or refunded.
    pub fn pay(&self, event_id: u64, attendee_id: u64) -> bool {
        self.lock().pay(event_id, attendee_id)
    }

    /// Refund / cancel: the attendee leaves the attendance book, its detail
    /// answers `state: "cancelled"`. `false` if unknown or already refunded.
    pub fn refund(&self, event_id: u64, attendee_id: u64) -> bool {
        self.lock().refund(event_id, attendee_id)
    }

    /// Make the attendee detail endpoint answer a broken record for this
    /// attendee (the latest call wins). `false` if unknown.
    pub fn corrupt(&self, event_id: u64, attendee_id: u64, kind: Corruption) -> bool {
        let mut state = self.lock();
        let Some(e) = state.event_index(event_id) else {
            return false;
        };
        match state.events[e].attendee_mut(attendee_id) {
            Some(a) => {
                a.corruption = Some(kind);
                true
            }
            None => false,
        }
    }

    /// A KKTIX glitch: the event's attendance book answers only its first `keep` live
    /// attendees (`None` restores it). The attendees themselves are unchanged.
    pub fn truncate_book(&self, event_id: u64, keep: Option<usize>) -> bool {
        let mut state = self.lock();
        let Some(e) = state.event_index(event_id) else {
            return false;
        };
        state.events[e].book_limit = keep;
        true
    }

    /// All events, in listing order.
    pub fn events(&self) -> Vec<EventTruth> {
        self.lock().events.iter().map(Event::truth).collect()
    }

    /// Every attendee of an event (refunded ones included), ordered by id,
    /// with clear personal data. Empty for an unknown event.
    pub fn attendees(&self, event_id: u64) -> Vec<AttendeeTruth> {
        let state = self.lock();
        state
            .events
            .iter()
            .find(|e| e.id == event_id)
            .map(|ev| {
                ev.attendees
                    .iter()
                    .map(|a| State::attendee_truth(ev, a))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Request counters since creation or the last [`Sandbox::reset_stats`].
    pub fn stats(&self) -> RequestStats {
        self.lock().stats.clone()
    }

    /// Zero the request counters.
    pub fn reset_stats(&self) {
        self.lock().stats = RequestStats::default();
    }

    /// Inject seeded faults into the HTTP API ([`faults`]); `None` turns them off. Faulted
    /// requests are not counted in [`Sandbox::stats`] (they never reach a route).
    pub fn set_faults(&self, config: Option<faults::FaultConfig>) {
        self.lock().faults = config.map(faults::Injector::new);
    }

    /// Faults injected since the last [`Sandbox::set_faults`] (empty when off).
    pub fn fault_stats(&self) -> faults::FaultStats {
        self.lock()
            .faults
            .as_ref()
            .map(faults::Injector::stats)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_mean_is_close() {
        let mut rng = StdRng::seed_from_u64(1);
        let n = 4000;
        let sum: usize = (0..n).map(|_| poisson(&mut rng, 3.0)).sum();
        let mean = sum as f64 / f64::from(n);
        assert!((mean - 3.0).abs() < 0.2, "mean {mean}");
        let big: usize = (0..100).map(|_| poisson(&mut rng, 100.0)).sum();
        assert!((9_000..11_000).contains(&big), "{big}");
        assert_eq!(poisson(&mut rng, 0.0), 0);
        assert_eq!(poisson(&mut rng, f64::NAN), 0);
    }

    #[test]
    fn demo_has_unpaid_and_unique_ids() {
        let sb = Sandbox::new(SandboxConfig::demo(3));
        let mut ids = std::collections::HashSet::new();
        let mut emails = std::collections::HashSet::new();
        let mut unpaid = 0;
        for ev in sb.events() {
            for a in sb.attendees(ev.id) {
                assert!(ids.insert(a.id));
                assert!(emails.insert(a.email.clone()));
                if !a.paid {
                    unpaid += 1;
                    assert!(a.price > 0);
                }
            }
        }
        assert_eq!(unpaid, 7);
        let corporate = sb.attendees(80_102);
        assert!(corporate.iter().all(|a| a.address.is_some()));
    }

    #[test]
    fn quota_is_respected_by_explicit_purchases() {
        let mut cfg = SandboxConfig::single_event(1, 0);
        cfg.events[0].tickets = vec![TicketSpec::new(1, "Only 唯一", 100, Some(2))];
        let sb = Sandbox::new(cfg);
        let a = sb.purchase(90_001, true);
        assert!(a.is_some());
        assert!(sb.purchase(90_001, false).is_some());
        assert_eq!(sb.purchase(90_001, true), None);
        assert!(sb.refund(90_001, a.unwrap_or_default()));
        assert!(sb.purchase(90_001, true).is_some());
        assert_eq!(sb.purchase(1, true), None);
    }

    #[test]
    fn step_is_deterministic() {
        let run = || {
            let sb = Sandbox::new(SandboxConfig::demo(9));
            let reports: Vec<StepReport> = (0..20).map(|_| sb.step()).collect();
            (reports, sb.attendees(80_101))
        };
        let (r1, a1) = run();
        let (r2, a2) = run();
        assert_eq!(r1, r2);
        assert_eq!(a1, a2);
        assert!(r1.iter().map(|r| r.purchased).sum::<usize>() > 20);
    }
}
