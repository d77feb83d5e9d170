//! Thin entry point: build once from the environment (the email provider's secrets and
//! OPS_TOKEN only), then serve requests.

use std::sync::Arc;

use autopilot_core::api::Api;
use autopilot_core::app::mailer;
use autopilot_core::config::Settings;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    autopilot_core::telemetry::init_function();
    let settings = Settings::from_env_and_secrets().await?;
    let ops_token = settings.require_ops_token()?;
    let mailer = mailer(&settings)?;
    let api = Api::new(Some(ops_token)).with_mailer(Arc::new(mailer));
    lambda_http::run(service_fn(|request: Request| {
        let api = api.clone();
        async move { Ok::<_, Error>(::mailer::handle(&api, request).await) }
    }))
    .await
}
