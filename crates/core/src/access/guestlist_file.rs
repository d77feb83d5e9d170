//! STUB — being written: a local JSON file that mirrors a Gather guest list.
use std::path::PathBuf;

use async_trait::async_trait;

use super::{Guest, GuestList, Removal, RemovalOutcome};
use crate::upstream::UpstreamError;

pub struct FileGuestList {
    _path: PathBuf,
}

impl FileGuestList {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { _path: path.into() }
    }
}

#[async_trait]
impl GuestList for FileGuestList {
    async fn add(&self, _guests: &[Guest]) -> Result<(), UpstreamError> {
        Ok(())
    }
    async fn remove(&self, removals: &[Removal]) -> Result<Vec<RemovalOutcome>, UpstreamError> {
        Ok(vec![RemovalOutcome::Absent; removals.len()])
    }
}
