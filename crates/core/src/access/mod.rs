//! Venue access: who is on the Gather Town guest list, and which links (private YouTube
//! stream, venue URL, …) each ticket entitles its holder to.
//!
//! [`Authorizer`] is the authorizer function's logic. The poller reaches it through
//! [`AccessService`]: in process locally, over `POST /authorize` and `POST /revoke` when
//! deployed, so each function holds only its own secrets.

mod authorizer;
mod entitlements;
mod gather;
mod guestlist_file;
pub mod remote;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use authorizer::Authorizer;
pub use entitlements::{Entitlement, Entitlements, Grant};
pub use gather::{GatherGuestList, GATHER_DEFAULT_API_BASE};
pub use guestlist_file::FileGuestList;
pub use remote::RemoteAccess;

use crate::model::AttendeeKey;
pub use crate::model::Link;
use crate::pii::{EmailAddress, Sensitive};
use crate::upstream::UpstreamError;

/// One guest-list entry as this system writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    pub email: EmailAddress,
    pub name: Sensitive<String>,
    pub role: String,
    pub affiliation: String,
}

/// Remove the guest whose email hashes to `email_hash`, but only if the entry still reads as
/// this system wrote it (`role` and `affiliation`): an entry someone added or edited by hand
/// is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub email_hash: String,
    pub role: String,
    pub affiliation: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalOutcome {
    Removed,
    /// Not on the list (already removed, or never added): nothing to do.
    Absent,
    /// On the list, but not as this system wrote it: left alone.
    KeptNotOurs,
}

/// A venue's guest list: Gather Town, or a local file that mirrors it.
#[async_trait]
pub trait GuestList: Send + Sync {
    /// Adds or updates these guests and touches no other entry (Gather: `overwrite: false`),
    /// in one upstream call.
    async fn add(&self, guests: &[Guest]) -> Result<(), UpstreamError>;
    /// Removes entries per [`Removal`]; answers one outcome per removal, in order.
    async fn remove(&self, removals: &[Removal]) -> Result<Vec<RemovalOutcome>, UpstreamError>;
}

/// One attendee to admit, as the poller sends it to `POST /authorize`.
#[derive(Debug, Clone)]
pub struct AccessRequest {
    pub key: AttendeeKey,
    pub email: EmailAddress,
    pub name: Sensitive<String>,
    pub event_name: String,
    pub ticket_name: String,
}

/// One attendee whose access goes, as the poller sends it to `POST /revoke`. Only the email's
/// hash: the poller never keeps a refunded buyer's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRequest {
    #[serde(flatten)]
    pub key: AttendeeKey,
    pub email_hash: String,
    pub event_name: String,
    pub ticket_name: String,
}

/// What `POST /authorize` answers per attendee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GrantOutcome {
    Granted {
        /// On the Gather guest list (false when the ticket entitles to links only).
        gather: bool,
        links: Vec<Link>,
        venue_url: Option<String>,
    },
    Failed {
        reason: String,
        /// Worth retrying later (upstream fault) rather than a problem with the request.
        transient: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantResult {
    #[serde(flatten)]
    pub key: AttendeeKey,
    #[serde(flatten)]
    pub outcome: GrantOutcome,
}

/// What `POST /revoke` answers per attendee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RevokeOutcome {
    Revoked { removal: RemovalOutcome },
    Failed { reason: String, transient: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeResult {
    #[serde(flatten)]
    pub key: AttendeeKey,
    #[serde(flatten)]
    pub outcome: RevokeOutcome,
}

/// How the poller reaches the authorizer: in process or over HTTP.
#[async_trait]
pub trait AccessService: Send + Sync {
    async fn authorize(&self, batch: Vec<AccessRequest>) -> Vec<GrantResult>;
    async fn revoke(&self, batch: Vec<RevokeRequest>) -> Vec<RevokeResult>;
}
