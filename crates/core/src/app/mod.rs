//! Wiring: builds the clients and stores a deployment needs from [`Settings`], once, so every
//! handler and every run share them.

use std::sync::Arc;

#[cfg(feature = "discord")]
mod discord;
#[cfg(feature = "mail-providers")]
mod mail;
#[cfg(feature = "reconcile")]
mod poller;

#[cfg(feature = "discord")]
pub use discord::{discord_api, discord_bot};
#[cfg(feature = "mail-providers")]
pub use mail::mailer;
#[cfg(feature = "reconcile")]
pub use poller::{
    build_reconciler, build_reconciler_without_api, reconciler_from_settings, Pipeline,
};

use crate::access::{Authorizer, FileGuestList, GatherGuestList, GuestList};
use crate::aws::{AwsClient, LambdaTrigger, Service, SqsQueue};
use crate::config::{ConfigError, Settings};
use crate::intake::{DrainTrigger, IntakeQueue, Receiver};
use crate::pii::Sensitive;
use crate::selection::Door;
#[cfg(feature = "bigquery")]
use crate::store::BigQueryStore;
#[cfg(feature = "sqlite")]
use crate::store::SqliteStore;
use crate::store::{ContactVault, Ledger, Warehouse};
#[cfg(any(feature = "sqlite", feature = "bigquery"))]
use crate::store::{StoreError, StoreSpec};
use crate::upstream::{HttpOptions, UpstreamError};

/// The warehouse, ledger and sealed contacts behind `STORE`, and the intake queue.
#[derive(Clone)]
pub struct Stores {
    pub warehouse: Arc<dyn Warehouse>,
    pub ledger: Arc<dyn Ledger>,
    pub contacts: Arc<dyn ContactVault>,
    /// The intake queue when it lives in the store's own file (SQLite).
    pub local_queue: Option<Arc<dyn IntakeQueue>>,
    /// The queue the poller drains: SQS when `INTAKE_QUEUE_URL` is set, else the local one.
    pub queue: Option<Arc<dyn IntakeQueue>>,
}

impl Stores {
    /// Every role in one SQLite store (tests, and `STORE=sqlite:…`).
    #[cfg(feature = "sqlite")]
    pub fn sqlite(store: Arc<SqliteStore>) -> Self {
        Self {
            warehouse: store.clone(),
            ledger: store.clone(),
            contacts: store.clone(),
            local_queue: Some(store.clone()),
            queue: Some(store),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Not `#[from]`: that would also make it the source, and `{:#}` would say it twice.
    #[error("STORE: {0}")]
    Store(crate::store::StoreError),
    #[error("{var}: {error}")]
    Client {
        var: &'static str,
        error: UpstreamError,
    },
    #[cfg(feature = "mail-providers")]
    #[error(transparent)]
    Template(#[from] crate::mail::TemplateError),
}

impl From<crate::store::StoreError> for BuildError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::Store(error)
    }
}

pub(crate) fn client_error(var: &'static str) -> impl FnOnce(UpstreamError) -> BuildError {
    move |error| BuildError::Client { var, error }
}

/// The warehouse and ledger behind `STORE`. The BigQuery client connects on first use; its
/// credentials (`GOOGLE_APPLICATION_CREDENTIALS`) and names are checked here.
#[cfg(any(feature = "sqlite", feature = "bigquery"))]
pub fn open_stores(settings: &Settings) -> Result<Stores, BuildError> {
    #[allow(unused_variables)]
    let missing = |kind: &str, feature: &str| {
        BuildError::Store(StoreError::Open {
            path: settings.store.to_string(),
            reason: format!(
                "this build has no {kind} store (the `{feature}` feature of autopilot-core)"
            ),
        })
    };
    let mut stores = match &settings.store {
        #[cfg(feature = "sqlite")]
        StoreSpec::Sqlite(path) => Stores::sqlite(Arc::new(SqliteStore::open(path)?)),
        #[cfg(not(feature = "sqlite"))]
        StoreSpec::Sqlite(_) => return Err(missing("SQLite", "sqlite")),
        #[cfg(feature = "bigquery")]
        StoreSpec::BigQuery(project) => {
            let store = Arc::new(BigQueryStore::from_credentials(
                project,
                settings.google_application_credentials.as_ref(),
                settings.bigquery_api_base.clone(),
                settings.file.bigquery.clone(),
            )?);
            Stores {
                warehouse: store.clone(),
                ledger: store.clone(),
                contacts: store,
                local_queue: None,
                queue: None,
            }
        }
        #[cfg(not(feature = "bigquery"))]
        StoreSpec::BigQuery(_) => return Err(missing("BigQuery", "bigquery")),
    };
    stores.queue = intake_queue(settings, stores.local_queue.clone())?;
    Ok(stores)
}

/// The venue's guest list: Gather when configured, else the local file.
pub fn guest_list(settings: &Settings) -> Result<(Arc<dyn GuestList>, String), BuildError> {
    match settings.gather()? {
        Some((key, space)) => Ok((
            Arc::new(
                GatherGuestList::new(
                    &settings.gather_api_base,
                    key,
                    &space,
                    HttpOptions::default(),
                )
                .map_err(client_error("GATHER_API_BASE"))?,
            ),
            format!("Gather Town at {}", settings.gather_api_base),
        )),
        None => {
            let path = &settings.file.access.guestlist_file;
            Ok((
                Arc::new(FileGuestList::new(path)),
                format!("guest-list file {path} (GATHER_API_KEY and GATHER_SPACE_ID not set)"),
            ))
        }
    }
}

/// The authorizer function's logic, as configured.
pub fn authorizer(settings: &Settings) -> Result<(Authorizer, String), BuildError> {
    let (guests, where_) = guest_list(settings)?;
    Ok((
        Authorizer::new(guests, settings.file.access.clone()),
        where_,
    ))
}

fn aws_client(settings: &Settings, why: &'static str) -> Result<AwsClient, BuildError> {
    let credentials = settings.require_aws(why)?;
    AwsClient::new(credentials, std::time::Duration::from_secs(10))
        .map_err(client_error("AWS_REGION"))
}

fn aws_endpoint(settings: &Settings, service: Service) -> Result<url::Url, BuildError> {
    let region = settings
        .aws
        .as_ref()
        .map(|aws| aws.region.clone())
        .unwrap_or_default();
    service
        .endpoint(&region, &|name| settings.aws_endpoints.get(name).cloned())
        .map_err(client_error(service.endpoint_var()))
}

/// The intake queue: SQS at `INTAKE_QUEUE_URL` when set (deployed), else the SQLite store's.
pub fn intake_queue(
    settings: &Settings,
    local: Option<Arc<dyn IntakeQueue>>,
) -> Result<Option<Arc<dyn IntakeQueue>>, BuildError> {
    match &settings.intake_queue_url {
        Some(url) => {
            let client = aws_client(
                settings,
                "INTAKE_QUEUE_URL is an SQS queue, reached with the function's AWS credentials",
            )?;
            Ok(Some(Arc::new(SqsQueue::new(
                client,
                aws_endpoint(settings, Service::Sqs)?,
                url,
                // Longer than a poller run: a message handed out is not handed out twice at once.
                std::time::Duration::from_secs(360),
            ))))
        }
        None => Ok(local),
    }
}

/// The receiver's queue: it holds no store, so SQS (`INTAKE_QUEUE_URL`) is required.
pub fn intake_queue_for_receiver(settings: &Settings) -> Result<Arc<dyn IntakeQueue>, BuildError> {
    intake_queue(settings, None)?.ok_or_else(|| {
        ConfigError::Missing {
            var: "INTAKE_QUEUE_URL",
            hint: "the SQS queue the receiver puts webhook batches on for the poller",
        }
        .into()
    })
}

/// What wakes the poller when a batch is queued: the poller function (`POLLER_FUNCTION_NAME`),
/// or `local` (the in-process drain task of `autopilot dev`).
pub fn drain_trigger(
    settings: &Settings,
    local: Arc<dyn DrainTrigger>,
) -> Result<Arc<dyn DrainTrigger>, BuildError> {
    match &settings.poller_function_name {
        Some(function) => {
            let client = aws_client(
                settings,
                "POLLER_FUNCTION_NAME is woken with the function's AWS credentials",
            )?;
            Ok(Arc::new(LambdaTrigger::new(
                client,
                aws_endpoint(settings, Service::Lambda)?,
                function,
            )))
        }
        None => Ok(local),
    }
}

/// The receiver of the KKTIX webhook (and the attendee page): the token, the sealing key
/// and the queue — nothing else.
pub fn receiver(
    settings: &Settings,
    queue: Arc<dyn IntakeQueue>,
    trigger: Arc<dyn DrainTrigger>,
) -> Receiver {
    Receiver::new(
        settings.kktix_webhook_token.clone(),
        settings.sealer(),
        queue,
        trigger,
        settings.file.intake.webhook.clone(),
    )
    .with_page(settings.file.attendee_page.clone())
}

/// The gateway's routes as the settings shape them (the report figures, `/healthz`'s
/// staleness); the caller adds the handlers it serves. An error names the bad setting.
pub fn settings_api(
    ops_token: Option<Sensitive<String>>,
    settings: &Settings,
) -> Result<crate::api::Api, String> {
    Ok(crate::api::Api::new(ops_token)
        .with_report_settings(
            settings.file.reports.clone(),
            settings.file.discord.recently_ended_days,
        )
        .with_stale_after(settings.file.health.stale_after()?))
}

/// Which doors the configuration uses, checked against the secrets it has: the API needs
/// `KKTIX_ACCESS_TOKEN`, CSV and the webhook need `CONTACT_KEY`.
pub fn check_doors(settings: &Settings) -> Result<(), ConfigError> {
    let fallback = if settings.kktix_access_token.is_some() {
        Door::Api
    } else {
        Door::Csv
    };
    let doors = settings.file.events.doors(fallback);
    if settings.kktix_access_token.is_none() && settings.contact_key.is_none() {
        return Err(ConfigError::Missing {
            var: "KKTIX_ACCESS_TOKEN",
            hint: "nothing to read attendees from: set KKTIX_ACCESS_TOKEN for the hosting API, or CONTACT_KEY for CSV imports and the KKTIX webhook",
        });
    }
    if doors.contains(&Door::Api) && settings.kktix_access_token.is_none() {
        return Err(ConfigError::Missing {
            var: "KKTIX_ACCESS_TOKEN",
            hint: "an event of [events] uses source = \"api\", which reads the hosting API with this token",
        });
    }
    if doors.iter().any(|door| door.is_pushed()) && settings.contact_key.is_none() {
        return Err(ConfigError::Missing {
            var: "CONTACT_KEY",
            hint: "CSV and webhook events keep their buyers' contacts sealed with it: 32 random bytes, e.g. `openssl rand -hex 32`",
        });
    }
    Ok(())
}
