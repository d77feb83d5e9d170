//! STUB — being written: invitation templates.
use super::{Invitation, MailSettings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailTemplate {
    pub from: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("mail template: {0}")]
pub struct TemplateError(pub String);

impl MailTemplate {
    pub fn from_settings(settings: &MailSettings) -> Result<Self, TemplateError> {
        Ok(Self {
            from: settings.from.clone(),
            subject: String::new(),
            text: String::new(),
            html: String::new(),
        })
    }

    pub fn render(&self, _invitation: &Invitation) -> Result<RenderedMail, TemplateError> {
        Ok(RenderedMail {
            subject: self.subject.clone(),
            text: self.text.clone(),
            html: self.html.clone(),
        })
    }
}
