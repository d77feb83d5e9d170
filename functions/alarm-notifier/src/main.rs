//! Thin entry point: the Discord webhook (read from Secrets Manager at start), then serve
//! SNS deliveries.

use std::sync::Arc;

use anyhow::Context;
use autopilot_core::config::Settings;
use autopilot_core::notify::{ConsoleNotifier, DiscordWebhook, Notifier};
use autopilot_core::upstream::HttpOptions;
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    autopilot_core::telemetry::init_function();
    let settings = Settings::from_env_and_secrets()
        .await
        .context("configuration")?;
    let notifier: Arc<dyn Notifier> = match &settings.discord_webhook_url {
        Some(url) => Arc::new(
            DiscordWebhook::new(url.expose(), HttpOptions::default())
                .context("DISCORD_WEBHOOK_URL")?,
        ),
        // Without a channel the alarm still reaches the log (and any other SNS subscriber).
        None => Arc::new(ConsoleNotifier),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let notifier = notifier.clone();
        async move {
            let posted = alarm_notifier::handle_event(notifier.as_ref(), &event.payload)
                .await
                .map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))?;
            tracing::info!(posted, "alarm notices posted");
            Ok::<_, lambda_runtime::Error>(serde_json::json!({"posted": posted}))
        }
    }))
    .await
}
