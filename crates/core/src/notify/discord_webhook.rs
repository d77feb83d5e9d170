//! STUB — being written: Discord channel webhook.
use async_trait::async_trait;

use super::{Notice, Notifier};
use crate::upstream::{HttpOptions, UpstreamError};

pub struct DiscordWebhook;

impl DiscordWebhook {
    pub fn new(_url: &str, _options: HttpOptions) -> Result<Self, UpstreamError> {
        Ok(Self)
    }
}

#[async_trait]
impl Notifier for DiscordWebhook {
    async fn notify(&self, _notice: &Notice) -> Result<(), UpstreamError> {
        Ok(())
    }
}
