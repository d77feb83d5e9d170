//! Wiring: builds the clients and stores a deployment needs from [`Settings`], once, so every
//! handler and every run share them.

use std::path::Path;
use std::sync::Arc;

use crate::access::{
    AccessService, Authorizer, FileGuestList, GatherGuestList, GuestList, RemoteAccess,
};
use crate::aws::{AwsClient, LambdaTrigger, Service, SqsQueue};
use crate::config::{ConfigError, Settings};
use crate::discord::bot::{Deferrer, DiscordBot};
use crate::discord::operations::{Operations, RemotePoller};
use crate::discord::rest::DiscordApi;
use crate::discord::verify::parse_public_key;
use crate::intake::{DrainTrigger, IntakeQueue, Receiver};
use crate::kktix::{KktixClient, KktixOptions};
use crate::mail::{
    KlaviyoProvider, MailProvider, MailService, MailTemplate, Mailer, MailgunProvider,
    OutboxProvider, ProviderKind, RemoteMailer,
};
use crate::notify::{ConsoleNotifier, DiscordWebhook, Notifier};
use crate::pii::Sensitive;
use crate::reconcile::Reconciler;
use crate::reconcile::{IntakeMappings, Vault};
use crate::selection::Door;
use crate::store::{BigQueryStore, ContactVault, Ledger, SqliteStore, StoreSpec, Warehouse};
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
    #[error(transparent)]
    Template(#[from] crate::mail::TemplateError),
}

impl From<crate::store::StoreError> for BuildError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::Store(error)
    }
}

fn client_error(var: &'static str) -> impl FnOnce(UpstreamError) -> BuildError {
    move |error| BuildError::Client { var, error }
}

/// The warehouse and ledger behind `STORE`. The BigQuery client connects on first use; its
/// credentials (`GOOGLE_APPLICATION_CREDENTIALS`) and names are checked here.
pub fn open_stores(settings: &Settings) -> Result<Stores, BuildError> {
    let mut stores = match &settings.store {
        StoreSpec::Sqlite(path) => Stores::sqlite(Arc::new(SqliteStore::open(path)?)),
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
    };
    stores.queue = intake_queue(settings, stores.local_queue.clone())?;
    Ok(stores)
}

/// Where access, mail and notices go after a reconcile loads an attendee.
#[derive(Clone)]
pub struct Pipeline {
    pub access: Arc<dyn AccessService>,
    pub mail: Arc<dyn MailService>,
    pub notifier: Arc<dyn Notifier>,
    /// One line per stage saying where it goes, for start-up banners (no secrets).
    pub description: Vec<String>,
}

impl Pipeline {
    pub fn attach(self, reconciler: Reconciler) -> Reconciler {
        reconciler
            .with_access(self.access)
            .with_mail(self.mail)
            .with_notifier(self.notifier)
    }

    /// The environment's configuration: Gather (or the local guest-list file when Gather is
    /// not configured), `MAIL_PROVIDER` (default: the outbox folder), `DISCORD_WEBHOOK_URL`
    /// (default: the console); `AUTHORIZER_URL` / `MAILER_URL` reach deployed functions.
    pub fn from_settings(settings: &Settings) -> Result<Self, BuildError> {
        let mut description = Vec::new();
        let access: Arc<dyn AccessService> = match &settings.authorizer_url {
            Some(url) => {
                description.push(format!("access: the authorizer at {url}"));
                Arc::new(
                    RemoteAccess::new(url, settings.require_ops_token()?, HttpOptions::default())
                        .map_err(client_error("AUTHORIZER_URL"))?,
                )
            }
            None => {
                let (authorizer, where_) = authorizer(settings)?;
                description.push(format!("access: {where_}"));
                Arc::new(authorizer)
            }
        };
        let mail: Arc<dyn MailService> = match &settings.mailer_url {
            Some(url) => {
                description.push(format!("mail: the mailer at {url}"));
                Arc::new(
                    RemoteMailer::new(url, settings.require_ops_token()?, HttpOptions::default())
                        .map_err(client_error("MAILER_URL"))?,
                )
            }
            None => {
                let mailer = mailer(settings)?;
                description.push(format!("mail: {}", mail_description(settings)));
                Arc::new(mailer)
            }
        };
        let notifier: Arc<dyn Notifier> = match &settings.discord_webhook_url {
            Some(url) => {
                description.push("channel notices: the Discord webhook".into());
                Arc::new(
                    DiscordWebhook::new(url.expose(), HttpOptions::default())
                        .map_err(client_error("DISCORD_WEBHOOK_URL"))?,
                )
            }
            None => {
                description.push("channel notices: this console".into());
                Arc::new(ConsoleNotifier)
            }
        };
        Ok(Self {
            access,
            mail,
            notifier,
            description,
        })
    }

    /// Local sinks only, whatever the environment says: a guest-list file and an outbox
    /// folder under `dir`, notices on the console. For `autopilot dev --sandbox`.
    pub fn local(settings: &Settings, dir: &Path) -> Result<Self, BuildError> {
        let guests = dir.join("guestlist.json");
        let outbox = dir.join("outbox");
        let template = MailTemplate::from_settings(&settings.file.mail)?;
        Ok(Self {
            access: Arc::new(Authorizer::new(
                Arc::new(FileGuestList::new(&guests)),
                settings.file.access.clone(),
            )),
            mail: Arc::new(Mailer::new(
                Arc::new(OutboxProvider::new(&outbox, &settings.file.mail.from)),
                template,
            )),
            notifier: Arc::new(ConsoleNotifier),
            description: vec![
                format!("access: guest-list file {}", guests.display()),
                format!("mail: outbox folder {}", outbox.display()),
                "channel notices: this console".into(),
            ],
        })
    }
}

fn mail_description(settings: &Settings) -> String {
    match settings.mail_provider {
        ProviderKind::Mailgun => format!("Mailgun at {}", settings.mailgun_api_base),
        ProviderKind::Klaviyo => format!("Klaviyo at {}", settings.klaviyo_api_base),
        ProviderKind::Outbox => format!("outbox folder {}", settings.file.mail.outbox_dir),
    }
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

/// The mailer function's logic: the provider `MAIL_PROVIDER` names, with its secrets.
pub fn mailer(settings: &Settings) -> Result<Mailer, BuildError> {
    let mail = &settings.file.mail;
    let template = MailTemplate::from_settings(mail)?;
    let provider: Arc<dyn MailProvider> = match settings.mail_provider {
        ProviderKind::Mailgun => {
            let key = settings
                .mailgun_api_key
                .clone()
                .ok_or(ConfigError::Missing {
                    var: "MAILGUN_API_KEY",
                    hint: "MAIL_PROVIDER=mailgun sends through Mailgun's API with this key",
                })?;
            let domain = settings
                .mailgun_domain
                .clone()
                .ok_or(ConfigError::Missing {
                    var: "MAILGUN_DOMAIN",
                    hint: "the Mailgun sending domain, e.g. mg.pycon.tw",
                })?;
            Arc::new(
                MailgunProvider::new(
                    &settings.mailgun_api_base,
                    key,
                    &domain,
                    &mail.from,
                    mail.tags.clone(),
                    HttpOptions::default(),
                )
                .map_err(client_error("MAILGUN_API_BASE"))?
                // Validated when the settings were read.
                .with_settle_after(mail.settle_after().unwrap_or_default()),
            )
        }
        ProviderKind::Klaviyo => {
            let key = settings
                .klaviyo_api_key
                .clone()
                .ok_or(ConfigError::Missing {
                    var: "KLAVIYO_API_KEY",
                    hint: "MAIL_PROVIDER=klaviyo records events with this private API key",
                })?;
            Arc::new(
                KlaviyoProvider::new(
                    &settings.klaviyo_api_base,
                    key,
                    &mail.klaviyo_metric,
                    HttpOptions::default(),
                )
                .map_err(client_error("KLAVIYO_API_BASE"))?,
            )
        }
        ProviderKind::Outbox => Arc::new(OutboxProvider::new(&mail.outbox_dir, &mail.from)),
    };
    Ok(Mailer::new(provider, template))
}

/// The reconcile loop reading KKTIX at `base_url` with `token`; load stage only — attach a
/// [`Pipeline`] for access, mail and notices.
pub fn build_reconciler(
    settings: &Settings,
    stores: &Stores,
    base_url: &str,
    token: Sensitive<String>,
) -> Result<Reconciler, BuildError> {
    let kktix = &settings.file.kktix;
    let client = KktixClient::new(
        base_url,
        token,
        KktixOptions {
            timeout: kktix.timeout(),
            retry: kktix.retry(),
            concurrency: kktix.concurrency,
        },
    )
    .map_err(client_error("KKTIX_API_BASE"))?;
    let reconciler = Reconciler::new(
        client,
        stores.warehouse.clone(),
        stores.ledger.clone(),
        settings.file.events.clone(),
        settings.file.warehouse.clone(),
        settings.file.privacy.clone(),
    );
    Ok(with_intake(reconciler, settings, stores))
}

/// The loop without the hosting API (no `KKTIX_ACCESS_TOKEN`): CSV and webhook doors.
pub fn build_reconciler_without_api(settings: &Settings, stores: &Stores) -> Reconciler {
    let reconciler = Reconciler::without_api(
        stores.warehouse.clone(),
        stores.ledger.clone(),
        settings.file.events.clone(),
        settings.file.warehouse.clone(),
        settings.file.privacy.clone(),
    );
    with_intake(reconciler, settings, stores)
}

/// Sealed contacts (`CONTACT_KEY`), the intake queue and the CSV / webhook mappings.
fn with_intake(reconciler: Reconciler, settings: &Settings, stores: &Stores) -> Reconciler {
    let mut reconciler = reconciler
        .with_mappings(IntakeMappings {
            csv: settings.file.intake.csv.clone(),
            webhook: settings.file.intake.webhook.clone(),
        })
        .with_safety(settings.file.safety.clone());
    if let Some(sealer) = settings.sealer() {
        reconciler = reconciler.with_vault(Vault {
            store: stores.contacts.clone(),
            sealer,
        });
    }
    if let Some(queue) = &stores.queue {
        reconciler = reconciler.with_queue(queue.clone());
    }
    reconciler
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

/// The whole loop as the environment configures it: KKTIX (when a token is set), stores,
/// sealed contacts, access, mail, notices.
pub fn reconciler_from_settings(
    settings: &Settings,
    stores: &Stores,
) -> Result<Reconciler, BuildError> {
    check_doors(settings)?;
    let reconciler = match settings.kktix_access_token.clone() {
        Some(token) => build_reconciler(settings, stores, &settings.kktix_api_base, token)?,
        None => build_reconciler_without_api(settings, stores),
    };
    Ok(Pipeline::from_settings(settings)?.attach(reconciler))
}

/// The Discord bot as configured: `DISCORD_PUBLIC_KEY` and `DISCORD_APPLICATION_ID` are
/// required; operator commands reach the poller at `POLLER_URL` (with `OPS_TOKEN`) or, when
/// unset, `local_operations` (the in-process reconciler of `autopilot dev`).
pub fn discord_bot(
    settings: &Settings,
    stores: &Stores,
    local_operations: Option<Arc<dyn Operations>>,
    deferrer: Arc<dyn Deferrer>,
) -> Result<DiscordBot, BuildError> {
    let key = settings
        .discord_public_key
        .as_deref()
        .ok_or(ConfigError::Missing {
            var: "DISCORD_PUBLIC_KEY",
            hint: "the application's public key (hex) from the Discord developer portal",
        })?;
    let public_key = parse_public_key(key).map_err(|e| ConfigError::Invalid {
        var: "DISCORD_PUBLIC_KEY",
        reason: e.to_string(),
    })?;
    let application_id =
        settings
            .discord_application_id
            .as_deref()
            .ok_or(ConfigError::Missing {
                var: "DISCORD_APPLICATION_ID",
                hint: "the application id, to edit deferred replies",
            })?;
    let api = DiscordApi::new(
        &settings.discord_api_base,
        application_id,
        settings.discord_bot_token.clone(),
        HttpOptions::default(),
    )
    .map_err(client_error("DISCORD_API_BASE"))?;
    let operations: Option<Arc<dyn Operations>> = match &settings.poller_url {
        Some(url) => Some(Arc::new(
            RemotePoller::new(url, settings.require_ops_token()?, HttpOptions::default())
                .map_err(client_error("POLLER_URL"))?,
        )),
        None => local_operations,
    };
    Ok(DiscordBot::new(
        public_key,
        stores.warehouse.clone(),
        settings.file.warehouse.clone(),
        settings.file.reports.clone(),
        settings.file.discord.clone(),
        operations,
        Arc::new(api),
        deferrer,
    ))
}

/// The REST client `autopilot discord register` uses: needs the bot token.
pub fn discord_api(settings: &Settings) -> Result<DiscordApi, BuildError> {
    let application_id =
        settings
            .discord_application_id
            .as_deref()
            .ok_or(ConfigError::Missing {
                var: "DISCORD_APPLICATION_ID",
                hint: "the application whose commands are registered",
            })?;
    let token = settings
        .discord_bot_token
        .clone()
        .ok_or(ConfigError::Missing {
            var: "DISCORD_BOT_TOKEN",
            hint: "the bot token that may register the application's commands",
        })?;
    DiscordApi::new(
        &settings.discord_api_base,
        application_id,
        Some(token),
        HttpOptions::default(),
    )
    .map_err(client_error("DISCORD_API_BASE"))
}
