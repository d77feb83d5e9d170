//! STUB — being written: Mailgun batch sending.
use async_trait::async_trait;

use super::{Invitation, MailProvider, MailResult, MailTemplate};
use crate::pii::Sensitive;
use crate::upstream::{HttpOptions, UpstreamError};

pub const MAILGUN_DEFAULT_API_BASE: &str = "https://api.mailgun.net";
pub const MAILGUN_BATCH_LIMIT: usize = 1000;

pub struct MailgunProvider;

impl MailgunProvider {
    pub fn new(
        _base_url: &str,
        _api_key: Sensitive<String>,
        _domain: &str,
        _from: &str,
        _tags: Vec<String>,
        _options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        Ok(Self)
    }
}

#[async_trait]
impl MailProvider for MailgunProvider {
    fn name(&self) -> &'static str {
        "mailgun"
    }
    async fn send(&self, _t: &MailTemplate, _b: &[Invitation], _r: bool) -> Vec<MailResult> {
        Vec::new()
    }
}
