//! Run metrics as CloudWatch embedded metric format (EMF): one JSON line per run on stdout,
//! which Lambda's log pipeline turns into metrics with no API call and no SDK. The
//! "no successful run" alarm reads `RunSucceeded`, so a stopped schedule, a broken deploy or
//! a crash at start-up — runs that never report themselves — are noticed by their absence.
//! Counts only, never personal data.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::model::{RunOutcome, RunSummary};

/// `METRICS_NAMESPACE` unless set.
pub const DEFAULT_NAMESPACE: &str = "KktixAutopilot";
/// The one dimension, so the alarms can name the metric exactly.
pub const SERVICE: &str = "kktix-poller";

/// The EMF line of one run. `RunSucceeded` (1, or 0 for a failed run) is emitted for the
/// scheduled `poll` runs only: an import or a webhook drain must not hide a stopped schedule.
pub fn emf_line(summary: &RunSummary, namespace: &str, now: DateTime<Utc>) -> String {
    let mut values: Vec<(&str, u64, &str)> = vec![
        ("RunDuration", summary.duration_ms, "Milliseconds"),
        ("NewPaid", summary.new_paid, "Count"),
        ("Granted", summary.granted, "Count"),
        ("Mailed", summary.mailed, "Count"),
        ("Revoked", summary.revoked, "Count"),
        ("RevokesHeld", summary.held, "Count"),
        ("SkippedRecords", summary.skipped.len() as u64, "Count"),
        ("RunErrors", summary.errors.len() as u64, "Count"),
        ("UpstreamRequests", summary.upstream_requests, "Count"),
    ];
    if summary.kind == "poll" {
        let succeeded = u64::from(summary.outcome != RunOutcome::Failed);
        values.push(("RunSucceeded", succeeded, "Count"));
    }
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Service"]],
                "Metrics": values
                    .iter()
                    .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    line.insert("Service".into(), Value::from(SERVICE));
    for (name, value, _) in &values {
        line.insert((*name).into(), Value::from(*value));
    }
    // Searchable beside the metrics, not metrics themselves.
    line.insert("run_id".into(), Value::from(summary.run_id.clone()));
    line.insert("kind".into(), Value::from(summary.kind.clone()));
    line.insert("outcome".into(), Value::from(summary.outcome.as_str()));
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(kind: &str, outcome: RunOutcome) -> RunSummary {
        RunSummary {
            run_id: "run-1".into(),
            kind: kind.into(),
            outcome,
            new_paid: 3,
            mailed: 2,
            duration_ms: 41,
            ..RunSummary::default()
        }
    }

    #[test]
    fn a_scheduled_run_reports_success_as_a_metric() {
        let now = Utc::now();
        let line: Value =
            serde_json::from_str(&emf_line(&summary("poll", RunOutcome::Partial), "NS", now))
                .unwrap();
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "NS");
        assert_eq!(directive["Dimensions"], json!([["Service"]]));
        assert_eq!(line["_aws"]["Timestamp"], now.timestamp_millis());
        assert_eq!(line["Service"], SERVICE);
        // Every metric the directive names has its value at the top level.
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(line[name].is_u64(), "{name}");
        }
        assert_eq!(line["RunSucceeded"], 1, "a partial run ran");
        assert_eq!(
            (line["NewPaid"].as_u64(), line["Mailed"].as_u64()),
            (Some(3), Some(2))
        );

        let failed: Value =
            serde_json::from_str(&emf_line(&summary("poll", RunOutcome::Failed), "NS", now))
                .unwrap();
        assert_eq!(failed["RunSucceeded"], 0);
        for kind in ["import", "webhook", "confirm"] {
            let other: Value =
                serde_json::from_str(&emf_line(&summary(kind, RunOutcome::Ok), "NS", now)).unwrap();
            assert!(other.get("RunSucceeded").is_none(), "{kind}");
        }
    }
}
