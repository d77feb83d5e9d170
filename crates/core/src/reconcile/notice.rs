//! What the team's channel hears after a run: new sales (counts per ticket type, totals),
//! an alert when a run fails or an upstream keeps failing, and a note when things recover.
//! At most one message per run; never personal data (summaries hold none).

use super::{Reconciler, RunOutcome, RunSummary};
use crate::notify::Notice;
use crate::upstream::UpstreamError;

/// Discord's limit on a message's content, in characters.
const MAX_CONTENT_CHARS: usize = 2000;
/// How far back the ledger is read to find failure streaks.
const HISTORY: usize = 20;

/// The message for a run, given the runs before it (newest first), and whether the channel
/// is in an alert afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticePlan {
    pub notice: Option<Notice>,
    pub kinds: Vec<&'static str>,
    pub alerting: bool,
}

/// Runs in a row (this one included) in which `failing` appeared.
fn streak(failing: &str, summary: &RunSummary, previous: &[RunSummary]) -> usize {
    if !summary.failing.contains(failing) {
        return 0;
    }
    1 + previous
        .iter()
        .take_while(|run| run.failing.contains(failing))
        .count()
}

pub fn compose_notice(
    summary: &RunSummary,
    previous: &[RunSummary],
    alert_after: usize,
) -> NoticePlan {
    let was_alerting = previous.first().is_some_and(|run| run.alerting);
    let persistent: Vec<(String, usize)> = summary
        .failing
        .iter()
        .map(|name| (name.clone(), streak(name, summary, previous)))
        .filter(|(_, runs)| *runs >= alert_after)
        .collect();
    let failing_now = summary.outcome == RunOutcome::Failed || !persistent.is_empty();
    let alert = failing_now && !was_alerting;
    let recovery = was_alerting && !failing_now && summary.outcome == RunOutcome::Ok;

    let mut kinds = Vec::new();
    let mut blocks = Vec::new();
    if summary.new_paid > 0 {
        kinds.push("sales");
        let mut block = format!(
            "🎟️ 新售出 {n} 張票 / {n} new ticket(s) sold",
            n = summary.new_paid
        );
        for (ticket, count) in &summary.new_by_ticket {
            block.push_str(&format!("\n• {ticket}: {count}"));
        }
        block.push_str(&format!("\n累計售出 / Total sold: {}", summary.sold));
        blocks.push(block);
    }
    if alert {
        kinds.push("alert");
        let mut block = format!(
            "⚠️ 自動化流程需要處理 / Autopilot needs attention (run {}, {})",
            summary.run_id,
            summary.outcome.as_str()
        );
        for (name, runs) in &persistent {
            block.push_str(&format!(
                "\n• {name}: 連續 {runs} 次失敗 / failing {runs} runs in a row"
            ));
        }
        for error in summary.errors.iter().take(5) {
            block.push_str(&format!("\n• {error}"));
        }
        if summary.errors.len() > 5 {
            block.push_str(&format!("\n• … {} more", summary.errors.len() - 5));
        }
        blocks.push(block);
    }
    if !summary.alerts.is_empty() {
        kinds.push("notice");
        let mut block = "📣 請留意 / Please look into this:".to_owned();
        for alert in summary.alerts.iter().take(5) {
            block.push_str(&format!("\n• {alert}"));
        }
        if summary.alerts.len() > 5 {
            block.push_str(&format!("\n• … {} more", summary.alerts.len() - 5));
        }
        blocks.push(block);
    }
    if let Some(digest) = &summary.digest {
        kinds.push("digest");
        blocks.push(digest.clone());
    }
    if recovery {
        kinds.push("recovery");
        blocks.push(format!(
            "✅ 已恢復正常 / Recovered: run {} completed without errors",
            summary.run_id
        ));
    }
    let alerting = if alert {
        true
    } else if recovery {
        false
    } else {
        was_alerting
    };
    let notice = (!blocks.is_empty()).then(|| Notice {
        content: truncate_chars(&blocks.join("\n\n"), MAX_CONTENT_CHARS),
    });
    NoticePlan {
        notice,
        kinds,
        alerting,
    }
}

/// At most `limit` characters, cut at a character boundary and marked with "…".
pub fn truncate_chars(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

impl Reconciler {
    pub(super) async fn send_notice(&self, summary: &mut RunSummary) {
        let previous = match self.ledger.recent_runs(HISTORY).await {
            Ok(previous) => previous,
            Err(error) => {
                summary.warnings.push(format!(
                    "no channel notice: reading past runs failed: {error}"
                ));
                return;
            }
        };
        let plan = compose_notice(summary, &previous, self.options.alert_after_failing_runs);
        let was_alerting = previous.first().is_some_and(|run| run.alerting);
        summary.alerting = plan.alerting;
        let Some(notifier) = &self.notifier else {
            return;
        };
        // A webhook that answered 404 is deleted: said once, then left alone until replaced.
        let fingerprint = notifier.fingerprint();
        let gone = previous
            .first()
            .and_then(|run| run.notice_webhook_gone.as_deref())
            .is_some_and(|gone| gone == fingerprint);
        if gone {
            summary.notice_webhook_gone = Some(fingerprint);
            if plan.notice.is_some() {
                summary.alerting = was_alerting;
            }
            return;
        }
        let Some(notice) = &plan.notice else {
            return;
        };
        match notifier.notify(notice).await {
            Ok(()) => summary.notice = Some(plan.kinds.join("+")),
            Err(error) => {
                // An alert that did not arrive is tried again next run.
                summary.alerting = was_alerting && plan.alerting;
                let deleted = matches!(error, UpstreamError::NotFound { .. });
                if deleted {
                    summary.notice_webhook_gone = Some(fingerprint);
                }
                summary.warnings.push(format!(
                    "the channel notice was not delivered: {error}{}",
                    if deleted {
                        " (deleted); notices stop until DISCORD_WEBHOOK_URL names a new webhook"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn run(outcome: RunOutcome, failing: &[&str], new_paid: u64) -> RunSummary {
        RunSummary {
            run_id: "r".into(),
            started_at: chrono::Utc::now(),
            duration_ms: 1,
            outcome,
            events: 1,
            live: 1,
            fetched: 0,
            new_paid,
            pending: 0,
            refunded: 0,
            expired: 0,
            skipped: Vec::new(),
            errors: failing.iter().map(|f| format!("{f} failed")).collect(),
            warnings: Vec::new(),
            upstream_requests: 3,
            new_by_ticket: BTreeMap::from([("Regular 一般票".to_string(), new_paid)]),
            granted: 0,
            mailed: 0,
            revoked: 0,
            sold: 10,
            failing: failing
                .iter()
                .map(|f| f.to_string())
                .collect::<BTreeSet<_>>(),
            notice: None,
            alerting: false,
            ..RunSummary::default()
        }
    }

    #[test]
    fn sales_only_when_something_sold() {
        let quiet = compose_notice(&run(RunOutcome::Ok, &[], 0), &[], 3);
        assert_eq!(quiet.notice, None);
        let sold = compose_notice(&run(RunOutcome::Ok, &[], 4), &[], 3);
        let content = sold.notice.unwrap().content;
        assert!(content.contains("4 new ticket(s) sold") && content.contains("Regular 一般票: 4"));
        assert!(content.contains("Total sold: 10"));
        assert_eq!(sold.kinds, vec!["sales"]);
    }

    #[test]
    fn a_failed_run_alerts_once_then_recovery_is_announced() {
        let failed = run(RunOutcome::Failed, &["KKTIX"], 0);
        let first = compose_notice(&failed, &[], 3);
        assert_eq!(first.kinds, vec!["alert"]);
        assert!(first.alerting);

        let mut alerted = failed.clone();
        alerted.alerting = true;
        let second = compose_notice(&failed, std::slice::from_ref(&alerted), 3);
        assert_eq!(second.notice, None, "no repeat while still failing");
        assert!(second.alerting);

        let recovered = compose_notice(&run(RunOutcome::Ok, &[], 2), &[alerted], 3);
        assert_eq!(
            recovered.kinds,
            vec!["sales", "recovery"],
            "one message per run"
        );
        assert!(!recovered.alerting);
    }

    #[test]
    fn an_upstream_failing_runs_in_a_row_alerts_at_the_threshold() {
        let partial = run(RunOutcome::Partial, &["mail provider"], 0);
        assert_eq!(compose_notice(&partial, &[], 3).notice, None);
        assert_eq!(
            compose_notice(&partial, std::slice::from_ref(&partial), 3).notice,
            None
        );
        let third = compose_notice(&partial, &[partial.clone(), partial.clone()], 3);
        let content = third.notice.unwrap().content;
        assert!(
            content.contains("mail provider: 連續 3 次失敗 / failing 3 runs in a row"),
            "{content}"
        );
    }

    #[test]
    fn content_stays_within_discord_limits() {
        let mut big = run(RunOutcome::Ok, &[], 1);
        big.new_by_ticket = (0..500).map(|i| (format!("票種 ticket {i}"), 1)).collect();
        let content = compose_notice(&big, &[], 3).notice.unwrap().content;
        assert_eq!(content.chars().count(), 2000);
        assert!(content.ends_with('…'));
    }
}
