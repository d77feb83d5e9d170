//! Secrets read at start from Secrets Manager, so that no function's configuration holds a
//! plaintext value (a `{{resolve:secretsmanager:…}}` reference in a template leaves it there
//! for anyone who may read the function). Deployed, a function gets `{VAR}_SECRET` — the
//! secret's name or ARN, optionally `#KEY` for one key of a JSON secret — instead of `VAR`;
//! locally, plain variables keep working.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;

use super::{AwsClient, AwsCredentials, SecretsManager, Service};
use crate::pii::Sensitive;

/// Each variable that may hold a secret, and the variable that names its secret instead.
pub const SECRET_VARS: &[(&str, &str)] = &[
    ("OPS_TOKEN", "OPS_TOKEN_SECRET"),
    ("KKTIX_ACCESS_TOKEN", "KKTIX_ACCESS_TOKEN_SECRET"),
    ("KKTIX_WEBHOOK_TOKEN", "KKTIX_WEBHOOK_TOKEN_SECRET"),
    ("CONTACT_KEY", "CONTACT_KEY_SECRET"),
    ("CONTACT_KEY_PREVIOUS", "CONTACT_KEY_PREVIOUS_SECRET"),
    (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_APPLICATION_CREDENTIALS_SECRET",
    ),
    ("DISCORD_WEBHOOK_URL", "DISCORD_WEBHOOK_URL_SECRET"),
    ("DISCORD_BOT_TOKEN", "DISCORD_BOT_TOKEN_SECRET"),
    ("GATHER_API_KEY", "GATHER_API_KEY_SECRET"),
    ("MAILGUN_API_KEY", "MAILGUN_API_KEY_SECRET"),
    ("KLAVIYO_API_KEY", "KLAVIYO_API_KEY_SECRET"),
];

/// A secret that could not be had; names the variable and the secret, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct SecretError {
    pub var: &'static str,
    pub reason: String,
}

/// The values of every `{VAR}_SECRET` the environment names, keyed by `VAR`. Nothing is
/// fetched when none is set (a local run).
pub async fn resolve(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<&'static str, Sensitive<String>>, SecretError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut wanted = Vec::new();
    for &(plain, named) in SECRET_VARS {
        let Some(id) = var(named) else {
            continue;
        };
        if var(plain).is_some() {
            return Err(SecretError {
                var: named,
                reason: format!("set {plain} or {named}, not both"),
            });
        }
        wanted.push((plain, named, id.trim().to_owned()));
    }
    let Some(&(_, first, _)) = wanted.first() else {
        return Ok(BTreeMap::new());
    };
    let credentials = AwsCredentials::from_env(&|name| var(name)).ok_or(SecretError {
        var: first,
        reason: "names a Secrets Manager secret, but there are no AWS credentials \
                 (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) to read it with"
            .into(),
    })?;
    let endpoint = Service::SecretsManager
        .endpoint(&credentials.region, &|name| var(name))
        .map_err(|e| SecretError {
            var: first,
            reason: e.to_string(),
        })?;
    let client = AwsClient::new(credentials, Duration::from_secs(5)).map_err(|e| SecretError {
        var: first,
        reason: e.to_string(),
    })?;
    let secrets = SecretsManager::new(client, endpoint);
    let reads = wanted.iter().map(|(plain, named, id)| {
        let secrets = &secrets;
        async move { (*plain, read(secrets, named, id).await) }
    });
    let mut values = BTreeMap::new();
    for (plain, value) in join_all(reads).await {
        values.insert(plain, value?);
    }
    Ok(values)
}

/// One secret: `NAME` (its string) or `NAME#KEY` (one key of its JSON object).
async fn read(
    secrets: &SecretsManager,
    var: &'static str,
    id: &str,
) -> Result<Sensitive<String>, SecretError> {
    let (name, key) = match id.rsplit_once('#') {
        Some((name, key)) if !key.is_empty() => (name, Some(key)),
        _ => (id, None),
    };
    let value = secrets.get(name).await.map_err(|e| SecretError {
        var,
        reason: format!("the secret {name:?} cannot be read: {e}"),
    })?;
    let Some(key) = key else {
        return Ok(value);
    };
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(value.expose())
        .map_err(|_| SecretError {
        var,
        reason: format!("the secret {name:?} is not a JSON object, so it has no key {key:?}"),
    })?;
    match object.get(key) {
        Some(serde_json::Value::String(text)) => Ok(Sensitive::new(text.clone())),
        // A nested object (a service-account key kept under one key) as its JSON text.
        Some(other) if other.is_object() => Ok(Sensitive::new(other.to_string())),
        Some(_) => Err(SecretError {
            var,
            reason: format!("key {key:?} of the secret {name:?} is not a string"),
        }),
        None => Err(SecretError {
            var,
            reason: format!("the secret {name:?} has no key {key:?}"),
        }),
    }
}
