//! The doors attendees come in through besides the hosting API: KKTIX's CSV exports and its
//! organiser webhook. Each turns what it received into an [`IntakeBatch`] — KKTIX attendee
//! records of the same shape the API gives — so the reconcile treats every door alike.

pub mod csv;
pub mod page;
pub mod queue;
pub mod receiver;
pub mod webhook;

use crate::kktix::Attendee;
use crate::model::SkippedRecord;

pub use self::csv::{check_exports, parse_exports, CsvMapping, CsvRow, ImportError};
pub use page::{Lang, PageKind, PageSettings};
pub use queue::{Envelope, IntakeQueue, QueueError, QueuedMessage};
pub use receiver::{Accepted, DrainTrigger, LocalTrigger, Receiver};
pub use webhook::{key_paths, WebhookMapping};

/// What one import or webhook batch says about one event's attendees.
#[derive(Debug, Default)]
pub struct IntakeBatch {
    pub event_id: u64,
    /// Attendees to admit (paid) or to wait for (unpaid); never the cancelled ones.
    pub records: Vec<IntakeRecord>,
    /// Attendees whose order says cancelled or refunded: revoked at once.
    pub cancelled: Vec<u64>,
    /// Orders the input says were cancelled or refunded, by number: every attendee the
    /// warehouse holds under them is revoked at once (a cancelled ticket is no longer in the
    /// attendees export, and a webhook cancellation names only its order).
    pub cancelled_orders: Vec<String>,
    /// Every attendee id the input names, rows that were skipped included: for a full
    /// export, an admitted attendee missing from here was refunded.
    pub present: Vec<u64>,
    /// Rows or entries that could not be read, by attendee id (or row number), never values.
    pub skipped: Vec<SkippedRecord>,
    /// A full export of the event (a snapshot), rather than some of its orders.
    pub snapshot: bool,
    pub warnings: Vec<String>,
}

/// One attendee of a batch: a KKTIX record, or a CSV row that becomes one when needed.
#[derive(Debug)]
pub enum IntakeRecord {
    Ready(Box<Attendee>),
    Row(CsvRow),
}

impl IntakeRecord {
    pub fn id(&self) -> u64 {
        match self {
            Self::Ready(attendee) => attendee.id,
            Self::Row(row) => row.id(),
        }
    }

    /// The KKTIX record; the reason (a field path, never a value) when it cannot be built.
    pub fn build(self) -> Result<Attendee, String> {
        match self {
            Self::Ready(attendee) => Ok(*attendee),
            Self::Row(row) => row.build(),
        }
    }
}
