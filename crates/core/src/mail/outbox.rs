//! STUB — being written: the local outbox of .eml files.
use std::path::PathBuf;

use async_trait::async_trait;

use super::{Invitation, MailProvider, MailResult, MailTemplate};

pub struct OutboxProvider {
    _dir: PathBuf,
}

impl OutboxProvider {
    pub fn new(dir: impl Into<PathBuf>, _from: &str) -> Self {
        Self { _dir: dir.into() }
    }
}

#[async_trait]
impl MailProvider for OutboxProvider {
    fn name(&self) -> &'static str {
        "outbox"
    }
    async fn send(&self, _t: &MailTemplate, _b: &[Invitation], _r: bool) -> Vec<MailResult> {
        Vec::new()
    }
}
