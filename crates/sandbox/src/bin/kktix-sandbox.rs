//! `kktix-sandbox`: serve the simulated KKTIX hosting API from the command line.
//!
//! ```text
//! kktix-sandbox [--addr 127.0.0.1:8081] [--seed 42] [--every 10s] [--token T] [--page-size N]
//! ```
//!
//! Prints the base URL and the access token, then steps the simulated clock
//! every `--every` (`0s`/`off` disables it) until interrupted.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use autopilot_sandbox::{Sandbox, SandboxConfig};

const USAGE: &str = "usage: kktix-sandbox [--addr 127.0.0.1:8081] [--seed 42] [--every 10s] \
[--token sandbox-token] [--page-size 50]";

struct Args {
    addr: SocketAddr,
    seed: u64,
    every: Option<Duration>,
    token: Option<String>,
    page_size: Option<usize>,
}

/// `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds; `0`/`off` → None.
fn parse_duration(raw: &str) -> Result<Option<Duration>, String> {
    let raw = raw.trim();
    if raw == "off" || raw == "never" {
        return Ok(None);
    }
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {raw:?}"))?;
    let factor = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("invalid duration unit in {raw:?}")),
    };
    let secs = value * factor;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {raw:?}"));
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
        seed: 42,
        every: Some(Duration::from_secs(10)),
        token: None,
        page_size: None,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--addr" => {
                let v = value()?;
                parsed.addr = v.parse().map_err(|e| format!("--addr {v:?}: {e}"))?;
            }
            "--seed" => {
                let v = value()?;
                parsed.seed = v.parse().map_err(|e| format!("--seed {v:?}: {e}"))?;
            }
            "--every" => parsed.every = parse_duration(&value()?)?,
            "--token" => parsed.token = Some(value()?),
            "--page-size" => {
                let v = value()?;
                parsed.page_size = Some(v.parse().map_err(|e| format!("--page-size {v:?}: {e}"))?);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let mut config = SandboxConfig::demo(args.seed);
    if let Some(token) = args.token {
        config.access_token = token;
    }
    if let Some(page_size) = args.page_size {
        config.page_size = page_size;
    }
    let sandbox = Sandbox::new(config);
    let running = match sandbox.serve(args.addr).await {
        Ok(r) => r,
        Err(err) => {
            eprintln!("kktix-sandbox: cannot listen on {}: {err}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    println!("KKTIX sandbox listening on {}", running.base_url);
    println!("access token: {}", sandbox.access_token());
    for ev in sandbox.events() {
        let live = sandbox
            .attendees(ev.id)
            .iter()
            .filter(|a| !a.refunded)
            .count();
        println!(
            "  event {} {:?}{} ({live} attendees)",
            ev.id,
            ev.name,
            if ev.ended { " [ended]" } else { "" }
        );
    }
    match args.every {
        Some(period) => println!("stepping the clock every {period:?}"),
        None => println!("clock stopped (no automatic purchases)"),
    }

    let stepper = args.every.map(|period| {
        let sandbox = sandbox.clone();
        tokio::spawn(async move {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                interval.tick().await;
                let r = sandbox.step();
                if r.purchased + r.paid + r.refunded > 0 {
                    println!(
                        "step: {} purchased, {} paid, {} refunded",
                        r.purchased, r.paid, r.refunded
                    );
                }
            }
        })
    });

    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("kktix-sandbox: cannot wait for Ctrl-C: {err}");
    }
    if let Some(handle) = stepper {
        handle.abort();
    }
    drop(running);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Some(Duration::from_secs(10))));
        assert_eq!(
            parse_duration("500ms"),
            Ok(Some(Duration::from_millis(500)))
        );
        assert_eq!(parse_duration("2m"), Ok(Some(Duration::from_secs(120))));
        assert_eq!(parse_duration("3"), Ok(Some(Duration::from_secs(3))));
        assert_eq!(parse_duration("0s"), Ok(None));
        assert_eq!(parse_duration("off"), Ok(None));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn args() {
        let a = parse_args(
            ["--addr", "0.0.0.0:9000", "--seed=7", "--every", "1s"]
                .into_iter()
                .map(String::from),
        );
        let a = a.expect("valid args");
        assert_eq!(a.addr.port(), 9000);
        assert_eq!(a.seed, 7);
        assert_eq!(a.every, Some(Duration::from_secs(1)));
        assert!(parse_args(["--bogus"].into_iter().map(String::from)).is_err());
        assert!(parse_args(["--seed"].into_iter().map(String::from)).is_err());
    }
}
