//! STUB — being written: Gather Town guest list over its HTTP API.
use async_trait::async_trait;

use super::{Guest, GuestList, Removal, RemovalOutcome};
use crate::pii::Sensitive;
use crate::upstream::{HttpOptions, UpstreamError};

pub const GATHER_DEFAULT_API_BASE: &str = "https://api.gather.town";

pub struct GatherGuestList;

impl GatherGuestList {
    pub fn new(
        _base_url: &str,
        _api_key: Sensitive<String>,
        _space_id: &str,
        _options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        Ok(Self)
    }
}

#[async_trait]
impl GuestList for GatherGuestList {
    async fn add(&self, _guests: &[Guest]) -> Result<(), UpstreamError> {
        Ok(())
    }
    async fn remove(&self, removals: &[Removal]) -> Result<Vec<RemovalOutcome>, UpstreamError> {
        Ok(vec![RemovalOutcome::Absent; removals.len()])
    }
}
