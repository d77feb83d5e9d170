//! Thin entry point: build once from the environment (the webhook token, CONTACT_KEY, the
//! queue and the poller's name only), then serve requests.

use std::sync::Arc;

use autopilot_core::api::Api;
use autopilot_core::app::{drain_trigger, intake_queue_for_receiver, receiver};
use autopilot_core::config::Settings;
use autopilot_core::intake::LocalTrigger;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    autopilot_core::telemetry::init_function();
    let settings = Settings::from_env_and_secrets().await?;
    let queue = intake_queue_for_receiver(&settings)?;
    let trigger = drain_trigger(&settings, Arc::new(LocalTrigger::default()))?;
    let api = Api::new(None).with_receiver(Arc::new(receiver(&settings, queue, trigger)));
    lambda_http::run(service_fn(|request: Request| {
        let api = api.clone();
        async move { Ok::<_, Error>(::receiver::handle(&api, request).await) }
    }))
    .await
}
