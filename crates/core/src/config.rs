//! Layered configuration: built-in defaults, then the TOML file (`AUTOPILOT_CONFIG`, default
//! `autopilot.toml` when present), then environment variables. Secrets and endpoints come
//! from the environment only. Every problem is reported naming the variable or file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::access::{Entitlements, GATHER_DEFAULT_API_BASE};
use crate::contacts::{ContactKey, Sealer};
use crate::deidentify::PrivacyRules;
use crate::discord::settings::BotSettings;
use crate::discord::settings::DISCORD_DEFAULT_API_BASE;
use crate::mail::{MailSettings, ProviderKind, KLAVIYO_DEFAULT_API_BASE, MAILGUN_DEFAULT_API_BASE};
use crate::pii::Sensitive;
use crate::report::ReportSettings;
use crate::selection::{CategoryRules, EventSelector};
use crate::store::StoreSpec;
use crate::upstream::RetryPolicy;

pub const DEFAULT_CONFIG_FILE: &str = "autopilot.toml";
pub const DEFAULT_KKTIX_API_BASE: &str = "https://kktix.com";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{var} is not set: {hint}")]
    Missing {
        var: &'static str,
        hint: &'static str,
    },
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("configuration file {path}: {reason}")]
    File { path: String, reason: String },
    /// A `{VAR}_SECRET` whose secret could not be read at start.
    #[error("{var}: {reason}")]
    Secret { var: &'static str, reason: String },
}

/// `[kktix]` in the TOML file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KktixSection {
    pub timeout_secs: u64,
    pub concurrency: usize,
    pub max_attempts: u32,
}

impl Default for KktixSection {
    fn default() -> Self {
        Self {
            timeout_secs: 10,
            concurrency: 8,
            max_attempts: 4,
        }
    }
}

impl KktixSection {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            ..RetryPolicy::default()
        }
    }
}

/// `[intake]`: how the CSV and webhook doors read what they receive.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeSection {
    pub csv: crate::intake::CsvMapping,
    pub webhook: crate::intake::WebhookMapping,
}

/// The TOML file's shape. Unknown keys are errors: a typo should not be silently ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileSettings {
    pub kktix: KktixSection,
    pub events: EventSelector,
    pub warehouse: CategoryRules,
    pub privacy: PrivacyRules,
    pub access: Entitlements,
    pub mail: MailSettings,
    pub discord: BotSettings,
    pub reports: ReportSettings,
    pub bigquery: crate::store::BigQuerySettings,
    pub intake: IntakeSection,
    pub safety: crate::model::SafetySettings,
    pub health: HealthSection,
    /// `[[campaigns]]`: pre-event letters.
    pub campaigns: Vec<crate::campaign::CampaignSettings>,
    /// `[attendee_page]`: the self-service invitation page.
    pub attendee_page: crate::intake::PageSettings,
}

/// `[health]`: when `/healthz` stops answering 200.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSection {
    /// `/healthz` answers 503 once the last successful scheduled run is older than this.
    pub stale_after: String,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self {
            stale_after: "15m".into(),
        }
    }
}

impl HealthSection {
    /// `stale_after` as a duration (`15m`, `90s`).
    pub fn stale_after(&self) -> Result<Duration, String> {
        match humantime::parse_duration(self.stale_after.trim()) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err("[health] stale_after must be longer than zero".into()),
            Err(e) => Err(format!(
                "[health] stale_after {:?} is not a duration like 15m or 90s ({e})",
                self.stale_after
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub kktix_api_base: String,
    pub kktix_access_token: Option<Sensitive<String>>,
    pub store: StoreSpec,
    pub ops_token: Option<Sensitive<String>>,
    pub gather_api_base: String,
    pub gather_api_key: Option<Sensitive<String>>,
    pub gather_space_id: Option<String>,
    pub mail_provider: ProviderKind,
    pub mailgun_api_base: String,
    pub mailgun_api_key: Option<Sensitive<String>>,
    pub mailgun_domain: Option<String>,
    pub klaviyo_api_base: String,
    pub klaviyo_api_key: Option<Sensitive<String>>,
    /// Holds the webhook's secret token: never printed.
    pub discord_webhook_url: Option<Sensitive<String>>,
    /// When set, the poller reaches the authorizer over HTTP instead of in process.
    pub authorizer_url: Option<String>,
    /// When set, the poller reaches the mailer over HTTP instead of in process.
    pub mailer_url: Option<String>,
    /// When set, the Discord bot reaches the poller over HTTP instead of in process.
    pub poller_url: Option<String>,
    pub discord_api_base: String,
    pub discord_application_id: Option<String>,
    pub discord_public_key: Option<String>,
    pub discord_bot_token: Option<Sensitive<String>>,
    /// BigQuery's REST base (tests point it at a fake); unset, Google's.
    pub bigquery_api_base: Option<String>,
    /// A service-account key: a file path, or the key's JSON itself (as a secret manager
    /// hands it over). Never printed.
    pub google_application_credentials: Option<Sensitive<String>>,
    /// `CONTACT_KEY`: seals contacts at rest (needed by the CSV and webhook doors).
    pub contact_key: Option<ContactKey>,
    /// `CONTACT_KEY_PREVIOUS`: opens contacts sealed before a rotation.
    pub contact_key_previous: Option<ContactKey>,
    /// `KKTIX_WEBHOOK_TOKEN`: the secret path segment of `POST /kktix/webhook/{token}`.
    pub kktix_webhook_token: Option<Sensitive<String>>,
    /// `INTAKE_QUEUE_URL`: the SQS queue between the receiver and the poller (deployed);
    /// unset, the queue is a table of the SQLite store.
    pub intake_queue_url: Option<String>,
    /// `POLLER_FUNCTION_NAME`: the poller function the receiver wakes (deployed).
    pub poller_function_name: Option<String>,
    /// The credentials and region Lambda gives every function, when present.
    pub aws: Option<crate::aws::AwsCredentials>,
    /// `AWS_ENDPOINT_URL_*` and the rest of the environment the AWS clients read.
    pub aws_endpoints: std::collections::BTreeMap<String, String>,
    pub file: FileSettings,
    /// The TOML file that was read, if any.
    pub config_path: Option<PathBuf>,
}

impl Settings {
    /// Loads from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&|name| std::env::var(name).ok())
    }

    /// Loads from the process environment after reading each `{VAR}_SECRET` it names from
    /// Secrets Manager (a deployed function's start); with none named, as [`Self::from_env`].
    pub async fn from_env_and_secrets() -> Result<Self, ConfigError> {
        Self::load_with_secrets(&|name| std::env::var(name).ok()).await
    }

    pub async fn load_with_secrets(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let secrets = crate::aws::secrets::resolve(env)
            .await
            .map_err(|e| ConfigError::Secret {
                var: e.var,
                reason: e.reason,
            })?;
        Self::load(&|name| match secrets.get(name) {
            Some(value) => Some(value.expose().clone()),
            None => env(name),
        })
    }

    /// Loads from any variable source, so tests need not touch the process environment.
    /// Empty variables count as unset.
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| env(name).filter(|value| !value.trim().is_empty());

        let (file, config_path) = match var("AUTOPILOT_CONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                (read_file(&path)?, Some(path))
            }
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                let path = PathBuf::from(DEFAULT_CONFIG_FILE);
                (read_file(&path)?, Some(path))
            }
            None => (FileSettings::default(), None),
        };
        file.warehouse
            .validate()
            .map_err(|reason| ConfigError::File {
                path: display(&config_path),
                reason: format!("[warehouse] {reason}"),
            })?;
        file.safety.validate().map_err(|reason| ConfigError::File {
            path: display(&config_path),
            reason,
        })?;
        file.intake
            .csv
            .validate()
            .map_err(|reason| ConfigError::File {
                path: display(&config_path),
                reason,
            })?;
        for check in [
            file.health.stale_after().map(|_| ()),
            file.mail.settle_after().map(|_| ()),
            file.mail.campaign_lead().map(|_| ()),
            crate::campaign::validate_all(&file.campaigns),
            file.attendee_page.validate(),
            #[cfg(feature = "mail-providers")]
            crate::mail::MailTemplate::for_campaigns(&file.mail, &file.campaigns)
                .map(|_| ())
                .map_err(|e| e.0),
        ] {
            check.map_err(|reason| ConfigError::File {
                path: display(&config_path),
                reason,
            })?;
        }
        if file.kktix.concurrency == 0 || file.kktix.max_attempts == 0 {
            return Err(ConfigError::File {
                path: display(&config_path),
                reason: "[kktix] concurrency and max_attempts must be at least 1".into(),
            });
        }

        let kktix_api_base = match var("KKTIX_API_BASE") {
            Some(base) => parse_base_url("KKTIX_API_BASE", &base)?,
            None => DEFAULT_KKTIX_API_BASE.to_owned(),
        };
        let store = match var("STORE") {
            Some(spec) => spec.parse().map_err(|reason| ConfigError::Invalid {
                var: "STORE",
                reason,
            })?,
            None => StoreSpec::default(),
        };
        let base = |name: &'static str, default: &str| match var(name) {
            Some(value) => parse_base_url(name, &value),
            None => Ok(default.to_owned()),
        };
        let optional_url = |name: &'static str| {
            var(name)
                .map(|value| parse_base_url(name, &value))
                .transpose()
        };
        let mail_provider = match var("MAIL_PROVIDER") {
            Some(kind) => kind.parse().map_err(|reason| ConfigError::Invalid {
                var: "MAIL_PROVIDER",
                reason,
            })?,
            None => ProviderKind::Outbox,
        };
        let discord_webhook_url = match var("DISCORD_WEBHOOK_URL") {
            // Checked here, reported without echoing the URL (it carries the webhook's token).
            Some(url) if parse_base_url("DISCORD_WEBHOOK_URL", &url).is_err() => {
                return Err(ConfigError::Invalid {
                    var: "DISCORD_WEBHOOK_URL",
                    reason: "must be an https:// webhook URL".into(),
                })
            }
            other => other.map(Sensitive::new),
        };
        let key = |name: &'static str| {
            var(name)
                .map(|text| {
                    ContactKey::parse(&text).map_err(|e| ConfigError::Invalid {
                        var: name,
                        reason: e.to_string(),
                    })
                })
                .transpose()
        };
        let contact_key = key("CONTACT_KEY")?;
        let contact_key_previous = key("CONTACT_KEY_PREVIOUS")?;
        if contact_key_previous.is_some() && contact_key.is_none() {
            return Err(ConfigError::Missing {
                var: "CONTACT_KEY",
                hint: "CONTACT_KEY_PREVIOUS is set; the new key goes in CONTACT_KEY",
            });
        }
        let kktix_webhook_token = match var("KKTIX_WEBHOOK_TOKEN") {
            Some(token) if token.trim().len() < 16 => {
                return Err(ConfigError::Invalid {
                    var: "KKTIX_WEBHOOK_TOKEN",
                    reason: "must be at least 16 characters (e.g. `openssl rand -hex 24`): it is the webhook's only secret".into(),
                })
            }
            Some(token) if !token.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
                return Err(ConfigError::Invalid {
                    var: "KKTIX_WEBHOOK_TOKEN",
                    reason: "must be letters, digits, - and _ only (it is a URL path segment)".into(),
                })
            }
            other => other.map(|token| Sensitive::new(token.trim().to_owned())),
        };
        let aws_endpoints = [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_SQS",
            "AWS_ENDPOINT_URL_LAMBDA",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        ]
        .into_iter()
        .filter_map(|name| var(name).map(|value| (name.to_owned(), value)))
        .collect();
        let intake_queue_url = match var("INTAKE_QUEUE_URL") {
            Some(url) => Some(parse_base_url("INTAKE_QUEUE_URL", &url)?),
            None => None,
        };
        Ok(Self {
            intake_queue_url,
            poller_function_name: var("POLLER_FUNCTION_NAME").map(|n| n.trim().to_owned()),
            aws: crate::aws::AwsCredentials::from_env(&|name| var(name)),
            aws_endpoints,
            contact_key,
            contact_key_previous,
            kktix_webhook_token,
            kktix_api_base,
            kktix_access_token: var("KKTIX_ACCESS_TOKEN").map(Sensitive::new),
            store,
            ops_token: var("OPS_TOKEN").map(Sensitive::new),
            gather_api_base: base("GATHER_API_BASE", GATHER_DEFAULT_API_BASE)?,
            gather_api_key: var("GATHER_API_KEY").map(Sensitive::new),
            gather_space_id: var("GATHER_SPACE_ID"),
            mail_provider,
            mailgun_api_base: base("MAILGUN_API_BASE", MAILGUN_DEFAULT_API_BASE)?,
            mailgun_api_key: var("MAILGUN_API_KEY").map(Sensitive::new),
            mailgun_domain: var("MAILGUN_DOMAIN"),
            klaviyo_api_base: base("KLAVIYO_API_BASE", KLAVIYO_DEFAULT_API_BASE)?,
            klaviyo_api_key: var("KLAVIYO_API_KEY").map(Sensitive::new),
            discord_webhook_url,
            authorizer_url: optional_url("AUTHORIZER_URL")?,
            mailer_url: optional_url("MAILER_URL")?,
            poller_url: optional_url("POLLER_URL")?,
            discord_api_base: base("DISCORD_API_BASE", DISCORD_DEFAULT_API_BASE)?,
            discord_application_id: var("DISCORD_APPLICATION_ID"),
            discord_public_key: var("DISCORD_PUBLIC_KEY"),
            discord_bot_token: var("DISCORD_BOT_TOKEN").map(Sensitive::new),
            bigquery_api_base: optional_url("BIGQUERY_API_BASE")?,
            google_application_credentials: var("GOOGLE_APPLICATION_CREDENTIALS")
                .map(Sensitive::new),
            file,
            config_path,
        })
    }

    pub fn require_kktix_token(&self) -> Result<Sensitive<String>, ConfigError> {
        self.kktix_access_token.clone().ok_or(ConfigError::Missing {
            var: "KKTIX_ACCESS_TOKEN",
            hint: "the KKTIX hosting API token the poller reads attendees with",
        })
    }

    /// Gather's key and space id, if Gather is configured; one without the other is an error.
    pub fn gather(&self) -> Result<Option<(Sensitive<String>, String)>, ConfigError> {
        match (&self.gather_api_key, &self.gather_space_id) {
            (Some(key), Some(space)) => Ok(Some((key.clone(), space.clone()))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::Missing {
                var: "GATHER_SPACE_ID",
                hint: "GATHER_API_KEY is set; the space id (e.g. abc123\\MySpace) is needed too",
            }),
            (None, Some(_)) => Err(ConfigError::Missing {
                var: "GATHER_API_KEY",
                hint: "GATHER_SPACE_ID is set; the Gather API key is needed too",
            }),
        }
    }

    /// The credentials of the AWS calls (Lambda's environment), or an error naming them.
    pub fn require_aws(
        &self,
        why: &'static str,
    ) -> Result<crate::aws::AwsCredentials, ConfigError> {
        self.aws.clone().ok_or(ConfigError::Missing {
            var: "AWS_ACCESS_KEY_ID",
            hint: why,
        })
    }

    /// The keys that seal contacts, when `CONTACT_KEY` is set.
    pub fn sealer(&self) -> Option<Sealer> {
        self.contact_key
            .clone()
            .map(|key| Sealer::new(key, self.contact_key_previous.clone()))
    }

    pub fn require_sealer(&self) -> Result<Sealer, ConfigError> {
        self.sealer().ok_or(ConfigError::Missing {
            var: "CONTACT_KEY",
            hint: "CSV and webhook intake keep contacts sealed with it: 32 random bytes, e.g. `openssl rand -hex 32`",
        })
    }

    pub fn require_ops_token(&self) -> Result<Sensitive<String>, ConfigError> {
        self.ops_token.clone().ok_or(ConfigError::Missing {
            var: "OPS_TOKEN",
            hint: "the bearer token that guards the operations routes",
        })
    }
}

fn display(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(built-in defaults)".into())
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    toml::from_str(&text).map_err(|e| file_error(toml_error(&text, &e)))
}

/// toml's message with the key it is about (`[kktix] timeout_secs: invalid type: …`) and the
/// line, so a type error can be found without reading the whole file.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().to_owned();
    let Some(span) = error.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    let key = line
        .split_once('=')
        .map(|(key, _)| key.trim().trim_matches('"').to_owned())
        .filter(|key| !key.is_empty() && !key.starts_with('['));
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(str::to_owned);
    match (section, key) {
        (Some(section), Some(key)) => format!("{section} {key}: {message} (line {line_no})"),
        (None, Some(key)) => format!("{key}: {message} (line {line_no})"),
        _ => format!("{message} (line {line_no})"),
    }
}

/// An upstream base URL: absolute http(s), kept without a trailing slash.
pub fn parse_base_url(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let url = Url::parse(value.trim()).map_err(|e| ConfigError::Invalid {
        var,
        reason: format!("{e} (expected e.g. https://kktix.com)"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::Invalid {
            var,
            reason: "must be an http:// or https:// URL with a host".into(),
        });
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(&|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_need_nothing() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.kktix_api_base, "https://kktix.com");
        assert_eq!(settings.store, StoreSpec::Sqlite("./autopilot.db".into()));
        assert_eq!(settings.file.kktix.concurrency, 8);
        assert_eq!(settings.file.events.name_contains, "registration");
        assert!(matches!(
            settings.require_kktix_token(),
            Err(ConfigError::Missing {
                var: "KKTIX_ACCESS_TOKEN",
                ..
            })
        ));
    }

    #[test]
    fn bad_variables_are_named() {
        let error = load(&[("KKTIX_API_BASE", "kktix.com")]).unwrap_err();
        assert!(
            error.to_string().starts_with("KKTIX_API_BASE is invalid"),
            "{error}"
        );
        let error = load(&[("STORE", "mysql:x")]).unwrap_err();
        assert!(error.to_string().starts_with("STORE is invalid"), "{error}");
        let error = load(&[("AUTOPILOT_CONFIG", "/nonexistent/autopilot.toml")]).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/autopilot.toml"),
            "{error}"
        );
    }

    #[test]
    fn contact_key_and_webhook_token_are_checked_and_named() {
        let error = load(&[("CONTACT_KEY", "too-short")]).unwrap_err();
        assert!(
            error.to_string().starts_with("CONTACT_KEY is invalid"),
            "{error}"
        );
        assert!(!error.to_string().contains("too-short"), "{error}");
        let error = load(&[("CONTACT_KEY_PREVIOUS", &"ab".repeat(32))]).unwrap_err();
        assert!(
            error.to_string().starts_with("CONTACT_KEY is not set"),
            "{error}"
        );
        let settings = load(&[("CONTACT_KEY", &"ab".repeat(32))]).unwrap();
        assert!(settings.sealer().is_some());
        let error = load(&[("KKTIX_WEBHOOK_TOKEN", "short")]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("KKTIX_WEBHOOK_TOKEN is invalid"),
            "{error}"
        );
        let error = load(&[("KKTIX_WEBHOOK_TOKEN", "has/a/slash-and-is-long")]).unwrap_err();
        assert!(error.to_string().contains("path segment"), "{error}");
    }

    #[test]
    fn the_catalog_takes_ids_or_tables_and_names_doors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autopilot.toml");
        std::fs::write(
            &path,
            r#"
            [events]
            source = "webhook"
            [events.catalog]
            "pycontw-2026" = 80101
            "pycontw-2026-corporate" = { id = 80102, name = "PyCon TW 2026 Corporate", source = "csv" }
            "#,
        )
        .unwrap();
        let settings = load(&[("AUTOPILOT_CONFIG", path.to_str().unwrap())]).unwrap();
        let events = &settings.file.events;
        assert_eq!(events.resolve("pycontw-2026"), Some(80101));
        assert_eq!(events.resolve("80102"), Some(80102));
        assert_eq!(events.resolve("nope"), None);
        use crate::selection::Door;
        assert_eq!(events.door_of(80101, Door::Api), Door::Webhook);
        assert_eq!(events.door_of(80102, Door::Api), Door::Csv);
        assert_eq!(
            events.catalog_event(80102).unwrap().name,
            "PyCon TW 2026 Corporate"
        );
        assert_eq!(events.catalog_event(80101).unwrap().name, "pycontw-2026");

        std::fs::write(&path, "[events]\nsource = \"ftp\"\n").unwrap();
        let error = load(&[("AUTOPILOT_CONFIG", path.to_str().unwrap())]).unwrap_err();
        assert!(error.to_string().contains("ftp"), "{error}");
    }

    #[test]
    fn file_errors_name_the_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autopilot.toml");
        let config = path.to_str().unwrap();
        std::fs::write(
            &path,
            "[events]\nslugs = []\n\n[kktix]\ntimeout_secs = \"ten\"\n",
        )
        .unwrap();
        let error = load(&[("AUTOPILOT_CONFIG", config)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("[kktix] timeout_secs: invalid type"),
            "{error}"
        );
        assert!(error.contains("line 5"), "{error}");

        std::fs::write(&path, "[health]\nstale_after = \"soon\"\n").unwrap();
        let error = load(&[("AUTOPILOT_CONFIG", config)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("[health] stale_after \"soon\""), "{error}");
        std::fs::write(&path, "[mail]\nsettle_after = 30\n").unwrap();
        let error = load(&[("AUTOPILOT_CONFIG", config)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("[mail] settle_after: invalid type"),
            "{error}"
        );

        std::fs::write(&path, "[health]\nstale_after = \"90s\"\n").unwrap();
        let settings = load(&[("AUTOPILOT_CONFIG", config)]).unwrap();
        assert_eq!(
            settings.file.health.stale_after(),
            Ok(Duration::from_secs(90))
        );
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../autopilot.example.toml");
        let settings = load(&[("AUTOPILOT_CONFIG", path)]).unwrap();
        assert_eq!(settings.file, FileSettings::default());
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autopilot.toml");
        std::fs::write(
            &path,
            r#"
            [kktix]
            concurrency = 3
            [events]
            slugs = ["pycontw-2026"]
            [[warehouse.categories]]
            name_contains = "workshop"
            table = "ods_workshop_attendees"
            "#,
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let settings = load(&[
            ("AUTOPILOT_CONFIG", path),
            ("KKTIX_API_BASE", "http://127.0.0.1:9/"),
            ("STORE", "sqlite:/tmp/x.db"),
        ])
        .unwrap();
        assert_eq!(settings.file.kktix.concurrency, 3);
        assert_eq!(settings.file.events.slugs, vec!["pycontw-2026".to_string()]);
        assert_eq!(
            settings.file.warehouse.route("Workshop").table,
            "ods_workshop_attendees"
        );
        assert_eq!(settings.kktix_api_base, "http://127.0.0.1:9");

        std::fs::write(path, "[kktix]\nconcurency = 3\n").unwrap();
        let error = load(&[("AUTOPILOT_CONFIG", path)]).unwrap_err();
        assert!(error.to_string().contains("concurency"), "{error}");
    }
}
