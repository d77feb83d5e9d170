//! STUB — being written: Klaviyo events API.
use async_trait::async_trait;

use super::{Invitation, MailProvider, MailResult, MailTemplate};
use crate::pii::Sensitive;
use crate::upstream::{HttpOptions, UpstreamError};

pub const KLAVIYO_DEFAULT_API_BASE: &str = "https://a.klaviyo.com";
pub const KLAVIYO_REVISION: &str = "2024-10-15";

pub struct KlaviyoProvider;

impl KlaviyoProvider {
    pub fn new(
        _base_url: &str,
        _api_key: Sensitive<String>,
        _metric: &str,
        _options: HttpOptions,
    ) -> Result<Self, UpstreamError> {
        Ok(Self)
    }
}

#[async_trait]
impl MailProvider for KlaviyoProvider {
    fn name(&self) -> &'static str {
        "klaviyo"
    }
    async fn send(&self, _t: &MailTemplate, _b: &[Invitation], _r: bool) -> Vec<MailResult> {
        Vec::new()
    }
}
