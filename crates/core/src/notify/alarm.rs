//! CloudWatch alarms, as SNS delivers them, turned into channel notices: the team hears of a
//! stopped schedule or a failing poller in the same Discord channel as its sales. Only the
//! alarm's own fields are shown (its name, state, reason and time, all of them ours and
//! CloudWatch's), never an arbitrary message body.

use serde::Deserialize;
use serde_json::Value;

use super::Notice;

/// What an SNS delivery held that was not an alarm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlarmError {
    #[error("not an SNS event: {0}")]
    NotSns(String),
}

#[derive(Deserialize)]
struct SnsEvent {
    #[serde(rename = "Records")]
    records: Vec<SnsRecord>,
}

#[derive(Deserialize)]
struct SnsRecord {
    #[serde(rename = "Sns")]
    sns: SnsMessage,
}

#[derive(Deserialize)]
struct SnsMessage {
    #[serde(rename = "Message", default)]
    message: String,
}

/// The fields of CloudWatch's alarm notification that the notice shows.
#[derive(Deserialize)]
struct AlarmState {
    #[serde(rename = "AlarmName")]
    name: String,
    #[serde(rename = "AlarmDescription", default)]
    description: Option<String>,
    #[serde(rename = "NewStateValue")]
    state: String,
    #[serde(rename = "NewStateReason", default)]
    reason: String,
    #[serde(rename = "StateChangeTime", default)]
    at: String,
}

/// One notice per record. A record that is not a CloudWatch alarm still gets a notice (the
/// topic is for alarms: something else arriving is worth a look), without its content.
pub fn notices(payload: &Value) -> Result<Vec<Notice>, AlarmError> {
    let event: SnsEvent =
        serde_json::from_value(payload.clone()).map_err(|e| AlarmError::NotSns(format!("{e}")))?;
    Ok(event
        .records
        .iter()
        .map(|record| match serde_json::from_str::<AlarmState>(&record.sns.message) {
            Ok(alarm) => notice_of(&alarm),
            Err(_) => Notice {
                content: "⚠️ The alarm topic received a message that is not a CloudWatch alarm; see the alarm-notifier's log group.".into(),
            },
        })
        .collect())
}

fn notice_of(alarm: &AlarmState) -> Notice {
    let (mark, headline) = match alarm.state.as_str() {
        "ALARM" => ("🚨", "ALARM"),
        "OK" => ("✅", "OK again"),
        _ => ("❔", "no data"),
    };
    let mut content = format!("{mark} **{headline}**: `{}`", clip(&alarm.name, 200));
    if let Some(description) = alarm.description.as_deref().filter(|d| !d.is_empty()) {
        content.push_str(&format!("\n{}", clip(description, 600)));
    }
    if !alarm.reason.is_empty() {
        content.push_str(&format!("\n> {}", clip(&alarm.reason, 800)));
    }
    if !alarm.at.is_empty() {
        content.push_str(&format!("\n({})", clip(&alarm.at, 40)));
    }
    Notice { content }
}

/// Within Discord's 2,000 characters, cut on a character boundary.
fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sns(message: &str) -> Value {
        json!({"Records": [{
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:ap-northeast-1:123456789012:alarms:1",
            "Sns": {
                "Type": "Notification", "MessageId": "m-1",
                "TopicArn": "arn:aws:sns:ap-northeast-1:123456789012:alarms",
                "Subject": "ALARM: \"x\" in Asia Pacific (Tokyo)",
                "Message": message, "Timestamp": "2026-12-01T03:00:00.000Z"
            }
        }]})
    }

    #[test]
    fn an_alarm_and_its_recovery_read_plainly() {
        let message = json!({
            "AlarmName": "kktix-autopilot-no-successful-run",
            "AlarmDescription": "No scheduled run succeeded in 15 minutes.",
            "NewStateValue": "ALARM",
            "NewStateReason": "Threshold Crossed: 3 datapoints [0.0, 0.0, 0.0] were less than the threshold (1.0).",
            "StateChangeTime": "2026-12-01T03:00:00.000+0000",
            "OldStateValue": "OK",
            "Trigger": {"MetricName": "RunSucceeded"}
        })
        .to_string();
        let posted = notices(&sns(&message)).unwrap();
        assert_eq!(posted.len(), 1);
        let text = &posted[0].content;
        assert!(
            text.starts_with("🚨 **ALARM**: `kktix-autopilot-no-successful-run`"),
            "{text}"
        );
        assert!(text.contains("No scheduled run succeeded") && text.contains("Threshold Crossed"));

        let ok = message.replace("\"NewStateValue\":\"ALARM\"", "\"NewStateValue\":\"OK\"");
        assert!(notices(&sns(&ok)).unwrap()[0]
            .content
            .starts_with("✅ **OK again**"));
    }

    #[test]
    fn anything_else_is_noted_without_its_content() {
        let posted = notices(&sns("hello buyer@example.com")).unwrap();
        assert!(!posted[0].content.contains("buyer@example.com"));
        assert!(super::notices(&json!({"source": "autopilot.scheduler"})).is_err());
        let long = "x".repeat(5000);
        let message = json!({"AlarmName": long, "NewStateValue": "ALARM", "NewStateReason": long, "AlarmDescription": long}).to_string();
        let text = &super::notices(&sns(&message)).unwrap()[0].content;
        assert!(text.chars().count() < 2000);
    }
}
