//! `autopilot campaign list|preview NAME|send NAME [--dry-run]`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use autopilot_core::app::{open_stores, reconciler_from_settings};
use autopilot_core::config::Settings;
use autopilot_core::discord::operations::Operations;
use autopilot_core::mail::{
    CampaignLetter, CampaignWave, Invitation, MailOutcome, MailProvider, MailTemplate,
    OutboxProvider,
};
use autopilot_core::model::{AttendeeKey, CampaignReport, CampaignStatus, Link};
use autopilot_core::pii::{EmailAddress, Sensitive};
use autopilot_core::reconcile::CampaignProgress;

use super::{remote_poller, CampaignCommand};

pub(crate) async fn run(command: CampaignCommand) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    match command {
        CampaignCommand::List { json } => list(&settings, json).await,
        CampaignCommand::Preview { name, outbox } => preview(&settings, &name, outbox).await,
        CampaignCommand::Send {
            name,
            dry_run,
            json,
        } => send(&settings, &name, dry_run, json).await,
    }
}

async fn list(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let campaigns = match &settings.poller_url {
        Some(url) => remote_poller(settings, url)?
            .campaigns()
            .await
            .map_err(|e| anyhow::anyhow!("the poller at POLLER_URL: {e}"))?,
        None => {
            let stores = open_stores(settings)?;
            let reconciler = reconciler_from_settings(settings, &stores)?;
            reconciler.campaign_list().await?
        }
    };
    if json {
        println!("{}", serde_json::to_string(&campaigns)?);
        return Ok(ExitCode::SUCCESS);
    }
    if campaigns.is_empty() {
        println!("no campaigns: add [[campaigns]] entries to the configuration file");
    }
    for status in &campaigns {
        println!("{}", list_line(status));
    }
    Ok(ExitCode::SUCCESS)
}

fn list_line(status: &CampaignStatus) -> String {
    let mut line = format!(
        "{}: {}{}; audience {} in {} event(s), sent {}, pending {}",
        status.name,
        status.schedule,
        if status.catch_up { ", catch-up" } else { "" },
        status.audience,
        status.events,
        status.sent,
        status.pending
    );
    if status.in_flight > 0 {
        line.push_str(&format!(" ({} in flight)", status.in_flight));
    }
    if status.failed > 0 {
        line.push_str(&format!(" ({} failed last time)", status.failed));
    }
    if let Some(due) = status.next_due {
        line.push_str(&format!(
            "; due {}",
            due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    line
}

/// One letter with sample values, written by the outbox provider whatever `MAIL_PROVIDER`
/// says: what the audience will read, without sending anything.
async fn preview(
    settings: &Settings,
    name: &str,
    outbox: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let templates = MailTemplate::for_campaigns(&settings.file.mail, &settings.file.campaigns)?;
    let Some((name, template)) = templates.into_iter().find(|(n, _)| n == name.trim()) else {
        anyhow::bail!(
            "no campaign {name:?} in [[campaigns]] (configured: {})",
            configured(settings)
        );
    };
    let dir = outbox.unwrap_or_else(|| settings.file.mail.outbox_dir.clone().into());
    let provider = OutboxProvider::new(&dir, &settings.file.mail.from);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string();
    let wave = CampaignWave {
        campaign: format!("{name}-preview-{stamp}"),
        intent: format!("preview-{stamp}"),
        deliver_at: None,
    };
    let sample = Invitation {
        key: AttendeeKey {
            event_id: 0,
            attendee_id: 0,
        },
        email: EmailAddress::parse("attendee@example.com").context("the sample address")?,
        name: Sensitive::new("Sample Attendee 範例".to_owned()),
        event_name: "Sample Event 2026".into(),
        ticket_name: "Sample Ticket 一般票".into(),
        links: vec![Link {
            label: "Live stream".into(),
            url: "https://example.com/live".into(),
        }],
        venue_url: Some("https://example.com/venue".into()),
        checkin_code: Some("AB12".into()),
        reg_no: Some(42),
        intent: None,
    };
    let letter = CampaignLetter {
        wave: &wave,
        template: &template,
    };
    let result = provider.send_campaign(letter, &[sample]).await;
    match result.into_iter().next().map(|r| r.outcome) {
        Some(MailOutcome::Sent {
            message_id: Some(file),
            ..
        }) => {
            println!(
                "wrote a preview of campaign {name} to {}",
                dir.join(file).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(MailOutcome::Failed { reason, .. }) => anyhow::bail!("preview: {reason}"),
        _ => anyhow::bail!("preview: the outbox wrote nothing"),
    }
}

async fn send(
    settings: &Settings,
    name: &str,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = match &settings.poller_url {
        Some(url) => remote_poller(settings, url)?
            .send_campaign(name, dry_run)
            .await
            .map_err(|e| anyhow::anyhow!("the poller at POLLER_URL: {e}"))?,
        None => {
            if matches!(
                settings.store,
                autopilot_core::store::StoreSpec::BigQuery(_)
            ) && !dry_run
            {
                // The deployed poller writes that ledger; a second writer here could send a
                // letter its run is sending too.
                anyhow::bail!(
                    "STORE is BigQuery, the deployed poller's: set POLLER_URL (and OPS_TOKEN) so that the poller sends the campaign"
                );
            }
            autopilot_core::app::check_doors(settings)?;
            let stores = open_stores(settings)?;
            let reconciler = reconciler_from_settings(settings, &stores)?;
            let progress = |progress: CampaignProgress| {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(
                    err,
                    "campaign {}: {}/{} letters handled",
                    name.trim(),
                    progress.done,
                    progress.total
                );
            };
            reconciler
                .campaign_send(name, dry_run, Some(&progress))
                .await?
        }
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
        for error in &report.errors {
            println!("  error: {error}");
        }
    }
    Ok(send_exit_code(&report))
}

/// 0: everything selected has it (or a dry run); 2: some letters wait for a later send;
/// 1: letters were due and none could be handed over.
fn send_exit_code(report: &CampaignReport) -> ExitCode {
    if report.dry_run {
        return ExitCode::SUCCESS;
    }
    let waiting = report.failed + report.uncertain + report.not_attempted;
    if waiting == 0 {
        ExitCode::SUCCESS
    } else if report.sent == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::from(2)
    }
}

fn configured(settings: &Settings) -> String {
    let names: Vec<&str> = settings
        .file
        .campaigns
        .iter()
        .map(|c| c.name.trim())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
