//! `autopilot`: the local stack and the operator's commands.
//!
//! - `autopilot dev [--sandbox]` serves every route on one local server and runs the scheduler.
//! - `autopilot poll --once` runs one reconcile from the environment's configuration.

mod dev;
mod server;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use autopilot_core::app::{open_stores, reconciler_from_settings};
use autopilot_core::config::Settings;
use autopilot_core::reconcile::{RunOutcome, RunSummary};
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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

async fn poll(once: bool, every: Duration, json: bool) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    let stores = open_stores(&settings)?;
    let reconciler = reconciler_from_settings(&settings, &stores)?;
    if once {
        let summary = reconciler.run().await;
        print_summary(&summary, json)?;
        return Ok(match summary.outcome {
            RunOutcome::Ok => ExitCode::SUCCESS,
            RunOutcome::Failed => ExitCode::from(1),
            RunOutcome::Partial => ExitCode::from(2),
        });
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
    println!("{summary}");
    for skipped in &summary.skipped {
        println!(
            "  skipped event {} attendee {}: {}",
            skipped.event_id, skipped.attendee_id, skipped.reason
        );
    }
    for error in &summary.errors {
        println!("  error: {error}");
    }
    for warning in &summary.warnings {
        println!("  warning: {warning}");
    }
    Ok(())
}
