//! Invitation templates: minijinja sources for the subject, the plain-text part and the HTML
//! part, compiled and checked once when the settings load.
//!
//! Variables: `name`, `event`, `ticket`, `links` (a list of `{label, url}`), and the optional
//! `venue_url`, `checkin_code` and `reg_no`. The HTML part is autoescaped; the subject and the
//! text part are not. Block tags swallow the newline after them and the indentation before
//! them (`trim_blocks`, `lstrip_blocks`), so `{% if %}` lines leave no blank lines behind; a
//! line that *ends* in a block tag needs one more newline. A trailing newline is kept.
//!
//! Mailgun sends one message per batch: [`MailTemplate::render_batch`] renders it once with
//! `%recipient.…%` placeholders that Mailgun fills in per recipient.

use std::hash::{Hash, Hasher};

use minijinja::{escape_formatter, AutoEscape, Environment, Error, Output, State, Value};
use serde::Serialize;

use super::{Invitation, MailSettings};
use crate::model::Link;

/// The sender and the three template sources. The sender is a plain address
/// (`Name <user@domain>`), not a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailTemplate {
    pub from: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// One invitation's mail, ready to hand to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("mail template: {0}")]
pub struct TemplateError(pub String);

/// The Mailgun recipient variables [`MailTemplate::render_batch`] refers to.
pub mod placeholder {
    /// The buyer's name, raw (subject and text part).
    pub const NAME: &str = "%recipient.name%";
    /// The buyer's name, HTML-escaped (HTML part).
    pub const NAME_HTML: &str = "%recipient.name_html%";
    pub const CHECKIN_CODE: &str = "%recipient.checkin_code%";
    pub const CHECKIN_CODE_HTML: &str = "%recipient.checkin_code_html%";
    pub const REG_NO: &str = "%recipient.reg_no%";
}

/// Where a batch message's per-recipient values go: the provider fills them in per recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholders {
    pub name: &'static str,
    pub name_html: &'static str,
    pub checkin_code: &'static str,
    pub checkin_code_html: &'static str,
    pub reg_no: &'static str,
}

impl Placeholders {
    /// Mailgun's `%recipient.…%` variables (see [`placeholder`]).
    pub const MAILGUN: Self = Self {
        name: placeholder::NAME,
        name_html: placeholder::NAME_HTML,
        checkin_code: placeholder::CHECKIN_CODE,
        checkin_code_html: placeholder::CHECKIN_CODE_HTML,
        reg_no: placeholder::REG_NO,
    };
    /// Klaviyo's template language reading the profile (its own escaping applies in HTML).
    /// No quotes or `<>&`: the HTML part's autoescaping must leave them as they are.
    pub const KLAVIYO: Self = Self {
        name: "{{ first_name }}",
        name_html: "{{ first_name }}",
        checkin_code: "{{ person.autopilot_checkin_code }}",
        checkin_code_html: "{{ person.autopilot_checkin_code }}",
        reg_no: "{{ person.autopilot_reg_no }}",
    };
}

/// What one batch message shares: everything but the per-recipient values, and which of the
/// optional per-recipient values its recipients have (a template's `{% if checkin_code %}` must
/// see the same answer for every recipient of the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchShape {
    pub event_name: String,
    pub ticket_name: String,
    pub links: Vec<Link>,
    pub venue_url: Option<String>,
    pub has_name: bool,
    pub has_checkin_code: bool,
    pub has_reg_no: bool,
}

/// By the same fields `PartialEq` compares (`Link` has no `Hash` of its own).
impl Hash for BatchShape {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.event_name.hash(state);
        self.ticket_name.hash(state);
        self.links.len().hash(state);
        for link in &self.links {
            link.label.hash(state);
            link.url.hash(state);
        }
        self.venue_url.hash(state);
        self.has_name.hash(state);
        self.has_checkin_code.hash(state);
        self.has_reg_no.hash(state);
    }
}

impl BatchShape {
    pub fn of(invitation: &Invitation) -> Self {
        Self {
            event_name: invitation.event_name.clone(),
            ticket_name: invitation.ticket_name.clone(),
            links: invitation.links.clone(),
            venue_url: invitation.venue_url.clone(),
            has_name: !invitation.name.expose().trim().is_empty(),
            has_checkin_code: invitation
                .checkin_code
                .as_deref()
                .is_some_and(|code| !code.is_empty()),
            has_reg_no: invitation.reg_no.is_some(),
        }
    }
}

const SUBJECT: &str = "subject";
const TEXT: &str = "text";
const HTML: &str = "html";

const DEFAULT_SUBJECT: &str = "【{{ event }}】參加資訊 / Your invitation to {{ event }}";

const DEFAULT_TEXT: &str = r#"{% if name %}{{ name }} 您好：{% else %}您好：{% endif %}


感謝您報名「{{ event }}」（{{ ticket }}）！以下是您的參加資訊：

{% for link in links %}
- {{ link.label }}：{{ link.url }}
{% endfor %}
{% if venue_url %}
- 線上會場：{{ venue_url }}
{% endif %}
{% if checkin_code %}
- 報到碼：{{ checkin_code }}
{% endif %}
{% if reg_no %}
- 報名序號：{{ reg_no }}
{% endif %}

這些連結僅供您個人使用，請勿轉傳。期待與您相見！

----------------------------------------

{% if name %}Hi {{ name }},{% else %}Hi there,{% endif %}


Thank you for registering for {{ event }} ({{ ticket }})! Here is everything you need:

{% for link in links %}
- {{ link.label }}: {{ link.url }}
{% endfor %}
{% if venue_url %}
- Virtual venue: {{ venue_url }}
{% endif %}
{% if checkin_code %}
- Check-in code: {{ checkin_code }}
{% endif %}
{% if reg_no %}
- Registration number: {{ reg_no }}
{% endif %}

These links are for you only; please do not share them. See you there!
"#;

const DEFAULT_HTML: &str = r#"<!DOCTYPE html>
<html lang="zh-Hant-TW">
<head><meta charset="utf-8"><title>{{ event }}</title></head>
<body style="font-family: sans-serif; line-height: 1.6; color: #222;">
<div lang="zh-Hant-TW">
<p>{% if name %}{{ name }} 您好：{% else %}您好：{% endif %}</p>
<p>感謝您報名「{{ event }}」（{{ ticket }}）！以下是您的參加資訊：</p>
<ul>
{% for link in links %}
<li><a href="{{ link.url }}">{{ link.label }}</a></li>
{% endfor %}
{% if venue_url %}
<li>線上會場：<a href="{{ venue_url }}">{{ venue_url }}</a></li>
{% endif %}
{% if checkin_code %}
<li>報到碼：<strong>{{ checkin_code }}</strong></li>
{% endif %}
{% if reg_no %}
<li>報名序號：{{ reg_no }}</li>
{% endif %}
</ul>
<p>這些連結僅供您個人使用，請勿轉傳。期待與您相見！</p>
</div>
<hr>
<div lang="en">
<p>{% if name %}Hi {{ name }},{% else %}Hi there,{% endif %}</p>
<p>Thank you for registering for {{ event }} ({{ ticket }})! Here is everything you need:</p>
<ul>
{% for link in links %}
<li><a href="{{ link.url }}">{{ link.label }}</a></li>
{% endfor %}
{% if venue_url %}
<li>Virtual venue: <a href="{{ venue_url }}">{{ venue_url }}</a></li>
{% endif %}
{% if checkin_code %}
<li>Check-in code: <strong>{{ checkin_code }}</strong></li>
{% endif %}
{% if reg_no %}
<li>Registration number: {{ reg_no }}</li>
{% endif %}
</ul>
<p>These links are for you only; please do not share them. See you there!</p>
</div>
</body>
</html>
"#;

/// The variables a template sees.
#[derive(Debug, Serialize)]
struct Context<'a> {
    name: &'a str,
    event: &'a str,
    ticket: &'a str,
    links: &'a [Link],
    venue_url: Option<&'a str>,
    checkin_code: Option<&'a str>,
    /// A number for one invitation; a placeholder string in a batch message.
    reg_no: Option<Value>,
}

impl MailTemplate {
    /// The settings' overrides, or the built-in bilingual template for the parts left unset.
    /// Every part is compiled and test-rendered here, so a broken override stops the start-up
    /// with the part named instead of failing each send.
    pub fn from_settings(settings: &MailSettings) -> Result<Self, TemplateError> {
        let pick = |part: &Option<String>, default: &str| match part {
            Some(source) if !source.trim().is_empty() => source.clone(),
            _ => default.to_owned(),
        };
        let template = Self {
            from: settings.from.trim().to_owned(),
            subject: pick(&settings.subject, DEFAULT_SUBJECT),
            text: pick(&settings.text, DEFAULT_TEXT),
            html: pick(&settings.html, DEFAULT_HTML),
        };
        template.validate()?;
        Ok(template)
    }

    /// Each campaign's template (the sender is `[mail] from`), compiled and test-rendered; the
    /// error names the campaign, the part and the line.
    pub fn for_campaigns(
        settings: &MailSettings,
        campaigns: &[crate::campaign::CampaignSettings],
    ) -> Result<Vec<(String, Self)>, TemplateError> {
        campaigns
            .iter()
            .map(|campaign| {
                let template = Self {
                    from: settings.from.trim().to_owned(),
                    subject: campaign.subject.clone(),
                    text: campaign.text.clone(),
                    html: campaign.html.clone(),
                };
                template
                    .validate()
                    .map(|()| (campaign.name.trim().to_owned(), template))
                    .map_err(|e| {
                        TemplateError(format!("[[campaigns]] {}: {}", campaign.name.trim(), e.0))
                    })
            })
            .collect()
    }

    /// Compiles the three parts and renders them once with sample values.
    pub fn validate(&self) -> Result<(), TemplateError> {
        let env = self.environment()?;
        let links = [Link {
            label: "Live stream".into(),
            url: "https://example.com/live".into(),
        }];
        let sample = Context {
            name: "Sample Name",
            event: "Sample Event",
            ticket: "Sample Ticket",
            links: &links,
            venue_url: Some("https://example.com/venue"),
            checkin_code: Some("ABCD"),
            reg_no: Some(Value::from(1)),
        };
        render_parts(&env, &sample, &sample).map(|_| ())
    }

    /// The mail for one invitation.
    pub fn render(&self, invitation: &Invitation) -> Result<RenderedMail, TemplateError> {
        let env = self.environment()?;
        let context = Context {
            name: invitation.name.expose().trim(),
            event: &invitation.event_name,
            ticket: &invitation.ticket_name,
            links: &invitation.links,
            venue_url: invitation.venue_url.as_deref(),
            checkin_code: invitation
                .checkin_code
                .as_deref()
                .filter(|code| !code.is_empty()),
            reg_no: invitation.reg_no.map(Value::from),
        };
        render_parts(&env, &context, &context)
    }

    /// One mail for every invitation of `shape`, with Mailgun `%recipient.…%` placeholders
    /// (see [`placeholder`]) where the per-recipient values go: the raw name in the subject and
    /// text, the HTML-escaped one (`name_html`, see [`escape_html`]) in the HTML part.
    pub fn render_batch(&self, shape: &BatchShape) -> Result<RenderedMail, TemplateError> {
        self.render_batch_with(shape, &Placeholders::MAILGUN)
    }

    /// One mail for every invitation of `shape`, with `placeholders` where the per-recipient
    /// values go.
    pub fn render_batch_with(
        &self,
        shape: &BatchShape,
        placeholders: &Placeholders,
    ) -> Result<RenderedMail, TemplateError> {
        let env = self.environment()?;
        let base = |name: &'static str, checkin_code: &'static str| Context {
            name: if shape.has_name { name } else { "" },
            event: &shape.event_name,
            ticket: &shape.ticket_name,
            links: &shape.links,
            venue_url: shape.venue_url.as_deref(),
            checkin_code: shape.has_checkin_code.then_some(checkin_code),
            reg_no: shape.has_reg_no.then(|| Value::from(placeholders.reg_no)),
        };
        let plain = base(placeholders.name, placeholders.checkin_code);
        let html = base(placeholders.name_html, placeholders.checkin_code_html);
        render_parts(&env, &plain, &html)
    }

    fn environment(&self) -> Result<Environment<'static>, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|name| {
            if name == HTML {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(format_value);
        for (part, source) in [
            (SUBJECT, &self.subject),
            (TEXT, &self.text),
            (HTML, &self.html),
        ] {
            env.add_template_owned(part, source.clone()).map_err(|e| {
                // The template's own text, not personal data: the detail is safe to show.
                let line = e
                    .line()
                    .map(|l| format!(" at line {l}"))
                    .unwrap_or_default();
                let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
                TemplateError(format!(
                    "the {part} template does not compile{line}: {}{detail}",
                    e.kind()
                ))
            })?;
        }
        Ok(env)
    }
}

fn render_parts(
    env: &Environment<'static>,
    plain: &Context<'_>,
    html: &Context<'_>,
) -> Result<RenderedMail, TemplateError> {
    let subject = render_part(env, SUBJECT, plain)?;
    Ok(RenderedMail {
        subject: single_line(&subject),
        text: render_part(env, TEXT, plain)?,
        html: render_part(env, HTML, html)?,
    })
}

/// Renders one part. The error names the part, the kind and the line, never the message's
/// detail: a failed filter may quote the value it was given, and values are personal data.
fn render_part(
    env: &Environment<'static>,
    part: &str,
    context: &Context<'_>,
) -> Result<String, TemplateError> {
    let template = env
        .get_template(part)
        .map_err(|e| TemplateError(format!("the {part} template is missing: {}", e.kind())))?;
    template.render(context).map_err(|e| {
        let line = e
            .line()
            .map(|l| format!(" at line {l}"))
            .unwrap_or_default();
        TemplateError(format!(
            "the {part} template failed to render{line}: {}",
            e.kind()
        ))
    })
}

/// A subject is one header line: line breaks become spaces, runs of whitespace collapse.
fn single_line(subject: &str) -> String {
    subject
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// HTML escaping for text and attribute values: `& < > " '`. Unlike minijinja's default it
/// leaves `/` alone, so URLs in `href` stay readable for link tracking and mail clients.
pub fn escape_html(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// minijinja's formatter, with [`escape_html`] for strings in the HTML part.
fn format_value(out: &mut Output<'_>, state: &State<'_, '_>, value: &Value) -> Result<(), Error> {
    match (state.auto_escape(), value.as_str()) {
        (AutoEscape::Html, Some(text)) if !value.is_safe() => out
            .write_str(&escape_html(text))
            .map_err(|_| Error::new(minijinja::ErrorKind::WriteFailure, "cannot write output")),
        _ => escape_formatter(out, state, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_one_line() {
        assert_eq!(single_line(" a\r\n b\tc \n"), "a b c");
    }

    #[test]
    fn escapes_like_html_wants() {
        assert_eq!(
            escape_html(r#"<O'Brien & "陳"> /x"#),
            "&lt;O&#x27;Brien &amp; &quot;陳&quot;&gt; /x"
        );
    }
}
