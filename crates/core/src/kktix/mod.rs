//! KKTIX's hosting API: the wire models and the client.

mod client;
mod model;

pub use client::{AttendeeFetch, EventListing, KktixClient, KktixOptions};
pub use model::{Answer, AttendanceBook, Attendee, HostingEvent, RecordError};
