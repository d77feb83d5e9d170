//! Thin entry point: the HTTP handler plus the internal extension that finishes deferred
//! replies (see the crate docs for why).

use std::sync::Arc;

use autopilot_core::api::Api;
use autopilot_core::app::{discord_bot, open_stores};
use autopilot_core::config::Settings;
use discord_interactions::{finish, handle, LambdaDeferrer};
use lambda_extension::{Extension, LambdaEvent};
use lambda_http::{service_fn, Error, Request};
use tokio::sync::{mpsc, Mutex};

#[tokio::main]
async fn main() -> Result<(), Error> {
    autopilot_core::telemetry::init_function();

    let settings = Settings::from_env_and_secrets().await?;
    let stores = open_stores(&settings)?;
    let deferrer = Arc::new(LambdaDeferrer::default());
    let bot = discord_bot(&settings, &stores, None, deferrer.clone())?;
    let api = Api::new(settings.ops_token.clone()).with_discord(Arc::new(bot));

    // One message per invocation: the work the handler deferred.
    let (done, handed_over) = mpsc::unbounded_channel();
    let handed_over = Arc::new(Mutex::new(handed_over));
    let extension = Extension::new()
        .with_events(&["INVOKE"])
        .with_events_processor(lambda_extension::service_fn(move |_event: LambdaEvent| {
            let handed_over = handed_over.clone();
            async move {
                if let Some(handles) = handed_over.lock().await.recv().await {
                    finish(handles).await;
                }
                Ok::<(), Error>(())
            }
        }))
        .with_extension_name("discord-deferred-replies")
        .register()
        .await?;

    let handler = service_fn(move |request: Request| {
        let api = api.clone();
        let deferrer = deferrer.clone();
        let done = done.clone();
        async move {
            let response = handle(&api, request).await;
            let _ = done.send(deferrer.take());
            Ok::<_, Error>(response)
        }
    });
    tokio::try_join!(lambda_http::run(handler), extension.run())?;
    Ok(())
}
