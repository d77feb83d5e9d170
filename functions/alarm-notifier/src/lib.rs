//! The alarm-notifier Lambda: SNS delivers a CloudWatch alarm, this posts it to the Discord
//! channel. Adapts only; the notice's wording lives in `autopilot_core::notify::alarm`.

use autopilot_core::notify::{alarm, Notifier};
use serde_json::Value;

/// Posts one notice per SNS record. An error fails the invocation, so SNS retries it.
pub async fn handle_event(notifier: &dyn Notifier, payload: &Value) -> anyhow::Result<usize> {
    let notices = alarm::notices(payload)?;
    for notice in &notices {
        notifier.notify(notice).await?;
    }
    Ok(notices.len())
}
