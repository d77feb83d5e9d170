//! The mailer function's wiring: the provider `MAIL_PROVIDER` names, with its template.

use std::sync::Arc;

use super::{client_error, BuildError};
use crate::config::{ConfigError, Settings};
use crate::mail::{
    KlaviyoCampaigns, KlaviyoProvider, MailProvider, MailTemplate, Mailer, MailgunProvider,
    OutboxProvider, ProviderKind,
};
use crate::upstream::HttpOptions;

/// The mailer function's logic: the provider `MAIL_PROVIDER` names, with its secrets.
pub fn mailer(settings: &Settings) -> Result<Mailer, BuildError> {
    let mail = &settings.file.mail;
    let template = MailTemplate::from_settings(mail)?;
    let campaigns = MailTemplate::for_campaigns(mail, &settings.file.campaigns)?;
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
            let campaigns = KlaviyoCampaigns::new(
                &settings.klaviyo_api_base,
                key.clone(),
                &mail.from,
                HttpOptions::default(),
            )
            .map_err(client_error("KLAVIYO_API_BASE"))?;
            Arc::new(
                KlaviyoProvider::new(
                    &settings.klaviyo_api_base,
                    key,
                    &mail.klaviyo_metric,
                    HttpOptions::default(),
                )
                .map_err(client_error("KLAVIYO_API_BASE"))?
                .with_campaigns(campaigns),
            )
        }
        ProviderKind::Outbox => Arc::new(OutboxProvider::new(&mail.outbox_dir, &mail.from)),
    };
    Ok(Mailer::new(provider, template).with_campaigns(campaigns))
}

#[cfg(feature = "reconcile")]
pub(super) fn mail_description(settings: &Settings) -> String {
    match settings.mail_provider {
        ProviderKind::Mailgun => format!("Mailgun at {}", settings.mailgun_api_base),
        ProviderKind::Klaviyo => format!("Klaviyo at {}", settings.klaviyo_api_base),
        ProviderKind::Outbox => format!("outbox folder {}", settings.file.mail.outbox_dir),
    }
}
