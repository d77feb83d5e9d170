//! The poller's wiring: the reconcile loop with its pipeline (access, mail, notices).

use std::sync::Arc;

use super::{authorizer, check_doors, client_error, BuildError, Stores};
use crate::access::{AccessService, RemoteAccess};
use crate::config::Settings;
use crate::kktix::{KktixClient, KktixOptions};
use crate::mail::{MailService, RemoteMailer};
use crate::notify::{ConsoleNotifier, DiscordWebhook, Notifier};
use crate::pii::Sensitive;
use crate::reconcile::{IntakeMappings, Reconciler, Vault};
use crate::upstream::HttpOptions;

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
            #[cfg(feature = "mail-providers")]
            None => {
                let mailer = super::mailer(settings)?;
                description.push(format!("mail: {}", super::mail::mail_description(settings)));
                Arc::new(mailer)
            }
            #[cfg(not(feature = "mail-providers"))]
            None => {
                return Err(crate::config::ConfigError::Missing {
                    var: "MAILER_URL",
                    hint: "this build sends invitations only through the mailer function",
                }
                .into())
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
    #[cfg(feature = "mail-providers")]
    pub fn local(settings: &Settings, dir: &std::path::Path) -> Result<Self, BuildError> {
        let guests = dir.join("guestlist.json");
        let outbox = dir.join("outbox");
        let template = crate::mail::MailTemplate::from_settings(&settings.file.mail)?;
        Ok(Self {
            access: Arc::new(crate::access::Authorizer::new(
                Arc::new(crate::access::FileGuestList::new(&guests)),
                settings.file.access.clone(),
            )),
            mail: Arc::new(
                crate::mail::Mailer::new(
                    Arc::new(crate::mail::OutboxProvider::new(
                        &outbox,
                        &settings.file.mail.from,
                    )),
                    template,
                )
                .with_campaigns(crate::mail::MailTemplate::for_campaigns(
                    &settings.file.mail,
                    &settings.file.campaigns,
                )?),
            ),
            notifier: Arc::new(ConsoleNotifier),
            description: vec![
                format!("access: guest-list file {}", guests.display()),
                format!("mail: outbox folder {}", outbox.display()),
                "channel notices: this console".into(),
            ],
        })
    }
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
        .with_safety(settings.file.safety.clone())
        .with_campaigns(
            settings.file.campaigns.clone(),
            // Validated when the settings were read.
            settings.file.mail.campaign_lead().unwrap_or_default(),
        )
        .with_self_service_every(std::time::Duration::from_secs(
            settings.file.attendee_page.per_address_minutes * 60,
        ));
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
