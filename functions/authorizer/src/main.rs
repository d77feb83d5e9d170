//! Thin entry point: build once from the environment (Gather's secrets and OPS_TOKEN only),
//! then serve requests.

use std::sync::Arc;

use autopilot_core::api::Api;
use autopilot_core::app::authorizer;
use autopilot_core::config::Settings;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    autopilot_core::telemetry::init_function();
    let settings = Settings::from_env_and_secrets().await?;
    let ops_token = settings.require_ops_token()?;
    if settings.file.access.needs_gather() && settings.gather()?.is_none() {
        return Err(
            "GATHER_API_KEY and GATHER_SPACE_ID must be set: tickets entitle to Gather access"
                .into(),
        );
    }
    let (authorizer, _) = authorizer(&settings)?;
    let api = Api::new(Some(ops_token)).with_authorizer(Arc::new(authorizer));
    lambda_http::run(service_fn(|request: Request| {
        let api = api.clone();
        async move { Ok::<_, Error>(::authorizer::handle(&api, request).await) }
    }))
    .await
}
