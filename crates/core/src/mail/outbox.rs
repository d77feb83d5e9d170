//! The local outbox: each invitation as an RFC 5322 message, `{dir}/{event_id}-{attendee_id}.eml`,
//! for development and for checking a template before a real send.
//!
//! Idempotent like a real provider: an invitation whose file exists is not written again. An
//! operator resend writes `{event_id}-{attendee_id}-resend-{n}.eml` with the next free `n`.
//! Files are written to a temporary name and linked into place, so a reader never sees half a
//! message and a concurrent writer never overwrites one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};

use super::{
    CampaignLetter, CampaignWave, Invitation, MailOutcome, MailProvider, MailResult, MailTemplate,
};

const PROVIDER: &str = "outbox";
/// Resends of one invitation before the outbox refuses another.
const MAX_RESENDS: u32 = 10_000;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct OutboxProvider {
    dir: PathBuf,
    from: String,
}

impl OutboxProvider {
    /// `from` is the sender; when blank, the template's sender is used.
    pub fn new(dir: impl Into<PathBuf>, from: &str) -> Self {
        Self {
            dir: dir.into(),
            from: from.trim().to_owned(),
        }
    }
}

#[async_trait]
impl MailProvider for OutboxProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn send(
        &self,
        template: &MailTemplate,
        batch: &[Invitation],
        resend: bool,
    ) -> Vec<MailResult> {
        self.write_all(template, batch, resend, None).await
    }

    /// `campaign-NAME-EVENT-ATTENDEE.eml`: a wave sent again finds its files and writes none.
    async fn send_campaign(
        &self,
        letter: CampaignLetter<'_>,
        batch: &[Invitation],
    ) -> Vec<MailResult> {
        self.write_all(letter.template, batch, false, Some(letter.wave))
            .await
    }
}

impl OutboxProvider {
    async fn write_all(
        &self,
        template: &MailTemplate,
        batch: &[Invitation],
        resend: bool,
        wave: Option<&CampaignWave>,
    ) -> Vec<MailResult> {
        let prefix = wave
            .map(|wave| format!("campaign-{}-", wave.campaign))
            .unwrap_or_default();
        let date = wave.and_then(|wave| wave.deliver_at).map(SystemTime::from);
        let dir = self.dir.clone();
        let from = if self.from.is_empty() {
            template.from.clone()
        } else {
            self.from.clone()
        };
        let template = template.clone();
        let owned = batch.to_vec();
        let keys: Vec<_> = batch.iter().map(|invitation| invitation.key).collect();
        let written = tokio::task::spawn_blocking(move || {
            let writer = Writer {
                dir: &dir,
                from: &from,
                template: &template,
                prefix: &prefix,
                date,
            };
            owned
                .iter()
                .map(|invitation| MailResult {
                    key: invitation.key,
                    outcome: writer.write(invitation, resend),
                })
                .collect::<Vec<_>>()
        })
        .await;
        written.unwrap_or_else(|_| {
            keys.into_iter()
                .map(|key| MailResult {
                    key,
                    outcome: MailOutcome::Failed {
                        reason: "outbox: the writer stopped unexpectedly".into(),
                        transient: true,
                    },
                })
                .collect()
        })
    }
}

struct Writer<'a> {
    dir: &'a Path,
    from: &'a str,
    template: &'a MailTemplate,
    /// Before the attendee key in file names (`campaign-NAME-` for a campaign's letters).
    prefix: &'a str,
    /// A scheduled letter's `Date:`; unset, now.
    date: Option<SystemTime>,
}

fn failed(reason: String, transient: bool) -> MailOutcome {
    MailOutcome::Failed { reason, transient }
}

fn sent(file_name: String) -> MailOutcome {
    MailOutcome::Sent {
        provider: PROVIDER.into(),
        message_id: Some(file_name),
    }
}

impl Writer<'_> {
    fn write(&self, invitation: &Invitation, resend: bool) -> MailOutcome {
        let stem = format!(
            "{}{}-{}",
            self.prefix, invitation.key.event_id, invitation.key.attendee_id
        );
        let first = format!("{stem}.eml");
        if !resend && self.dir.join(&first).exists() {
            return sent(first);
        }
        let message = match self.message(invitation) {
            Ok(message) => message.formatted(),
            Err(outcome) => return outcome,
        };
        if let Err(e) = fs::create_dir_all(self.dir) {
            return failed(
                format!("outbox: cannot create {}: {e}", self.dir.display()),
                true,
            );
        }
        let temp = self.dir.join(format!(
            ".{stem}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = write_new(&temp, &message) {
            let _ = fs::remove_file(&temp);
            return failed(
                format!("outbox: cannot write {}: {e}", temp.display()),
                true,
            );
        }
        let outcome = self.place(&temp, &stem, &first, resend);
        let _ = fs::remove_file(&temp);
        outcome
    }

    /// Links the finished file into place under the first free name.
    fn place(&self, temp: &Path, stem: &str, first: &str, resend: bool) -> MailOutcome {
        let names = (!resend)
            .then(|| first.to_owned())
            .into_iter()
            .chain((1..=MAX_RESENDS).map(|n| format!("{stem}-resend-{n}.eml")));
        for name in names {
            let target = self.dir.join(&name);
            match link_new(temp, &target) {
                Ok(()) => return sent(name),
                // Written meanwhile by another run: the invitation is in the outbox.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !resend => return sent(name),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return failed(
                        format!("outbox: cannot write {}: {e}", target.display()),
                        true,
                    )
                }
            }
        }
        failed(
            format!("outbox: {stem} was resent {MAX_RESENDS} times already"),
            false,
        )
    }

    fn message(&self, invitation: &Invitation) -> Result<Message, MailOutcome> {
        let mail = self
            .template
            .render(invitation)
            .map_err(|e| failed(e.to_string(), false))?;
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|_| failed("outbox: the sender address does not parse".into(), false))?;
        let address: Address = invitation.email.expose().parse().map_err(|_| {
            failed(
                "outbox: the recipient address is not one mail software accepts".into(),
                false,
            )
        })?;
        let name = invitation.name.expose().trim();
        let to = Mailbox::new((!name.is_empty()).then(|| name.to_owned()), address);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let message_id = format!(
            "<autopilot.{}.{}.{nanos}@{}>",
            invitation.key.event_id,
            invitation.key.attendee_id,
            from.email.domain()
        );
        Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject)
            .date(self.date.unwrap_or_else(SystemTime::now))
            .message_id(Some(message_id))
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|_| failed("outbox: the message does not build".into(), false))
    }
}

/// Creates `path` (never overwriting) with `bytes`, flushed to disk.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Puts `temp` at `target` unless `target` exists: a hard link where the file system has them,
/// else a rename after checking (a narrow race, only on such file systems).
fn link_new(temp: &Path, target: &Path) -> io::Result<()> {
    match fs::hard_link(temp, target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if target.exists() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(temp, target)
        }
    }
}
