//! Thin entry point: build once from the environment, then serve invocations.

use std::sync::Arc;

use anyhow::Context;
use autopilot_core::app::{open_stores, reconciler_from_settings, settings_api};
use autopilot_core::config::Settings;
use autopilot_core::metrics;
use kktix_poller::{handle_event, log_run, Poller};
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    autopilot_core::telemetry::init_function();

    let settings = Settings::from_env_and_secrets()
        .await
        .context("configuration")?;
    let ops_token = settings.require_ops_token()?;
    let stores = open_stores(&settings)?;
    // One EMF line per run on stdout: CloudWatch turns it into the metrics the alarms read.
    let namespace = std::env::var("METRICS_NAMESPACE")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| metrics::DEFAULT_NAMESPACE.to_owned());
    let reconciler = Arc::new(
        reconciler_from_settings(&settings, &stores)?
            .with_run_observer(Arc::new(move |summary| log_run(summary, &namespace))),
    );
    let poller = Poller {
        api: settings_api(Some(ops_token), &settings)
            .map_err(anyhow::Error::msg)?
            .with_poller(reconciler.clone()),
        reconciler,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let poller = poller.clone();
        async move { handle_event(&poller, event.payload).await }
    }))
    .await
}
