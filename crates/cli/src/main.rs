//! `autopilot`: the local stack and the operator's commands.
//!
//! - `autopilot dev [--sandbox]` serves every route on one local server and runs the scheduler.
//! - `autopilot poll --once` runs one reconcile from the environment's configuration.

mod campaign;
mod dev;
mod server;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use autopilot_core::app::{open_stores, reconciler_from_settings};
use autopilot_core::config::Settings;
use autopilot_core::reconcile::{ImportRequest, RunOutcome, RunSummary};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "autopilot",
    version,
    about = "KKTIX Autopilot: buy a ticket, get in."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every route on one local server and run the scheduler.
    Dev(dev::DevArgs),
    /// Reconcile KKTIX against the ledger.
    Poll {
        /// Run one reconcile and exit: 0 when it succeeded, 1 when it failed, 2 when it was
        /// partial (some steps failed and stay pending). Without it, poll on a schedule.
        #[arg(long)]
        once: bool,
        /// Time between runs when not --once.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        every: Duration,
        /// Print the run summary as JSON instead of a line.
        #[arg(long)]
        json: bool,
    },
    /// Discord: register the slash commands.
    Discord {
        #[command(subcommand)]
        command: DiscordCommand,
    },
    /// Send one attendee's invitation again (an explicit resend; the only way to mail twice).
    Resend {
        /// The attendee: an order number, a registration number, or EVENT_ID/ATTENDEE_ID.
        reference: String,
    },
    /// Import KKTIX's CSV exports of one event: admitted, mailed and refunded like a run.
    /// Exit codes as `poll --once`. With POLLER_URL set, the deployed poller does it.
    Import {
        /// A KKTIX event id, or a slug of [events.catalog].
        #[arg(long)]
        event: String,
        /// The attendees export (CSV, UTF-8).
        #[arg(long)]
        attendees: std::path::PathBuf,
        /// The orders export (CSV, UTF-8), joined on the order number.
        #[arg(long)]
        orders: Option<std::path::PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete sealed contacts: of one event, or (without --event) of every event that ended
    /// more than [privacy] retention_days ago.
    Shred {
        #[arg(long)]
        event: Option<String>,
    },
    /// Seal every stored contact again with CONTACT_KEY (after a rotation; then
    /// CONTACT_KEY_PREVIOUS can go).
    Reseal,
    /// Pre-event letters ([[campaigns]]): list them, preview one, send one. With POLLER_URL
    /// set, list and send go to the deployed poller.
    Campaign {
        #[command(subcommand)]
        command: CampaignCommand,
    },
    /// Revoke the attendees held for an event after too many vanished from KKTIX at once.
    /// With POLLER_URL set, the deployed poller does it.
    Revoke {
        /// The event (KKTIX id or catalog slug) whose held attendees really were refunded.
        #[arg(long, value_name = "EVENT")]
        confirm: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CampaignCommand {
    /// Each campaign's schedule, audience, sent and pending.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Render one letter with sample data into the outbox folder; sends nothing.
    Preview {
        name: String,
        /// The folder to write to (default: [mail] outbox_dir).
        #[arg(long)]
        outbox: Option<std::path::PathBuf>,
    },
    /// Send the campaign now to every selected attendee not yet recorded as having it.
    /// Exit codes: 0 done, 2 partial (some letters wait), 1 nothing could be sent.
    Send {
        name: String,
        /// Count the audience and what would go out; send nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DiscordCommand {
    /// Bulk-overwrite the application's commands (PUT): idempotent, prints what changed.
    Register {
        /// Register in one guild (instant) instead of globally.
        #[arg(long)]
        guild: Option<String>,
    },
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 30s, 5m)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

fn main() -> ExitCode {
    autopilot_core::telemetry::init_cli();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Poll { once, every, json } => poll(once, every, json).await,
        Command::Resend { reference } => resend(&reference).await,
        Command::Import {
            event,
            attendees,
            orders,
            json,
        } => import(event, &attendees, orders.as_deref(), json).await,
        Command::Shred { event } => shred(event.as_deref()).await,
        Command::Reseal => reseal().await,
        Command::Revoke { confirm, json } => confirm_revoke(&confirm, json).await,
        Command::Campaign { command } => campaign::run(command).await,
        Command::Discord {
            command: DiscordCommand::Register { guild },
        } => register(guild.as_deref()).await,
    }
}

async fn register(guild: Option<&str>) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let api = autopilot_core::app::discord_api(&settings)?;
    let desired = autopilot_core::discord::model::commands();
    let scope = match guild {
        Some(guild) => format!("guild {guild}"),
        None => "global".to_owned(),
    };
    let existing = api
        .commands(guild)
        .await
        .context("reading the registered commands")?;
    let diff = autopilot_core::discord::rest::CommandDiff::between(&existing, &desired);
    for (label, names) in [
        ("added", &diff.added),
        ("changed", &diff.changed),
        ("removed", &diff.removed),
        ("unchanged", &diff.unchanged),
    ] {
        for name in names {
            println!("  {label:9} /{name}");
        }
    }
    if diff.is_empty() {
        println!("{scope} commands are up to date; nothing registered");
        return Ok(ExitCode::SUCCESS);
    }
    api.overwrite_commands(guild, &desired)
        .await
        .context("registering the commands")?;
    println!("registered {} {scope} commands", desired.len());
    Ok(ExitCode::SUCCESS)
}

async fn resend(reference: &str) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let stores = open_stores(&settings)?;
    let reconciler = reconciler_from_settings(&settings, &stores)?;
    let key = reconciler.find_attendee(reference).await?;
    let report = reconciler.resend(key).await?;
    println!(
        "resent the invitation of attendee {} through {}{}",
        report.key,
        report.provider,
        report
            .message_id
            .map(|id| format!(" ({id})"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn exit_code(outcome: RunOutcome) -> ExitCode {
    match outcome {
        RunOutcome::Ok => ExitCode::SUCCESS,
        RunOutcome::Failed => ExitCode::from(1),
        RunOutcome::Partial => ExitCode::from(2),
    }
}

fn read_export(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} export {}", path.display()))
}

async fn import(
    event: String,
    attendees: &std::path::Path,
    orders: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let request = ImportRequest {
        event,
        attendees: read_export(attendees, "attendees")?,
        orders: orders.map(|path| read_export(path, "orders")).transpose()?,
    };
    let summary = match &settings.poller_url {
        Some(url) => {
            let poller = remote_poller(&settings, url)?;
            autopilot_core::discord::operations::Operations::import(&poller, request)
                .await
                .map_err(|e| anyhow::anyhow!("the poller at POLLER_URL: {e}"))?
        }
        None => {
            settings.require_sealer()?;
            // A file that is not an export is refused before the store is even opened.
            autopilot_core::intake::check_exports(
                &settings.file.intake.csv,
                &request.attendees,
                request.orders.as_deref(),
            )?;
            let stores = open_stores(&settings)?;
            let reconciler = reconciler_from_settings(&settings, &stores)?;
            reconciler.import(request).await?
        }
    };
    print_summary(&summary, json)?;
    Ok(exit_code(summary.outcome))
}

/// The deployed poller at `POLLER_URL`, reached with the ops token.
fn remote_poller(
    settings: &Settings,
    url: &str,
) -> anyhow::Result<autopilot_core::discord::operations::RemotePoller> {
    autopilot_core::discord::operations::RemotePoller::new(
        url,
        settings.require_ops_token()?,
        autopilot_core::upstream::HttpOptions::default(),
    )
    .map_err(|e| anyhow::anyhow!("POLLER_URL: {e}"))
}

async fn confirm_revoke(event: &str, json: bool) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let summary = match &settings.poller_url {
        Some(url) => {
            let poller = remote_poller(&settings, url)?;
            autopilot_core::discord::operations::Operations::confirm_revoke(&poller, event)
                .await
                .map_err(|e| anyhow::anyhow!("the poller at POLLER_URL: {e}"))?
        }
        None => {
            autopilot_core::app::check_doors(&settings)?;
            let stores = open_stores(&settings)?;
            let reconciler = reconciler_from_settings(&settings, &stores)?;
            reconciler.confirm_revoke(event).await?
        }
    };
    print_summary(&summary, json)?;
    Ok(exit_code(summary.outcome))
}

async fn shred(event: Option<&str>) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_sealer()?;
    let stores = open_stores(&settings)?;
    let reconciler = reconciler_from_settings(&settings, &stores)?;
    let report = reconciler.shred(event).await.map_err(anyhow::Error::msg)?;
    if report.events.is_empty() {
        println!(
            "nothing to shred: no event with sealed contacts ended more than {} days ago",
            settings.file.privacy.retention_days
        );
    }
    for (event_id, count) in &report.events {
        println!("event {event_id}: shredded {count} sealed contact(s)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn reseal() -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_sealer()?;
    let stores = open_stores(&settings)?;
    let reconciler = reconciler_from_settings(&settings, &stores)?;
    let count = reconciler.reseal().await.map_err(anyhow::Error::msg)?;
    println!(
        "resealed {count} contact(s) with CONTACT_KEY; CONTACT_KEY_PREVIOUS is no longer needed"
    );
    Ok(ExitCode::SUCCESS)
}

async fn poll(once: bool, every: Duration, json: bool) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    // Everything that can be checked without the store is, first: a failed start creates no
    // files.
    autopilot_core::app::check_doors(&settings)?;
    let stores = open_stores(&settings)?;
    let reconciler = reconciler_from_settings(&settings, &stores)?;
    if once {
        let summary = reconciler.run().await;
        print_summary(&summary, json)?;
        return Ok(exit_code(summary.outcome));
    }
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => print_summary(&reconciler.run().await, json)?,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// One readable line per run, then one line per skipped record or error (ids and reasons only).
pub(crate) fn print_summary(summary: &RunSummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(summary).context("encoding the summary")?
        );
        return Ok(());
    }
    for line in summary.report_lines() {
        println!("{line}");
    }
    Ok(())
}
