//! The simulator's other two doors: KKTIX's CSV exports (the attendees export and the orders
//! export, with the headers KKTIX uses) and webhook batches (`{"batch_id", "notifications"}`,
//! as public receivers of KKTIX's organiser webhook see them).

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde_json::{json, Value};

use crate::persona::{LABEL_EMAIL, LABEL_NAME, LABEL_PHONE};
use crate::{Attendee, Change, Event, Sandbox, State};

/// The columns KKTIX puts before the form's questions.
const ATTENDEE_HEADERS: &[&str] = &[
    "Id",
    "訂單編號",
    "報名序號",
    "檢查碼",
    "票種",
    "票券付款狀態",
    "標籤",
    "QR Code 序號",
    "售出日期",
    "票面價格",
];

const ORDER_HEADERS: &[&str] = &[
    "訂單編號",
    "票券狀態",
    "付款狀態",
    "付款時間",
    "取消時間",
    "退款時間",
    "付款方式",
    "購買票券數量",
    "票券總價",
    "姓名",
    "Email",
    "手機",
];

fn taipei(ms: i64) -> Option<DateTime<FixedOffset>> {
    let offset = FixedOffset::east_opt(8 * 3600)?;
    DateTime::from_timestamp_millis(ms).map(|at| at.with_timezone(&offset))
}

/// `2026/03/01 10:00:00`, Taipei time, as the orders export writes times.
fn slash_time(ms: i64) -> String {
    taipei(ms)
        .map(|at| at.format("%Y/%m/%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `2026-03-01`, as the attendees export writes the sale date.
fn dash_date(ms: i64) -> String {
    taipei(ms)
        .map(|at| at.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn payment_method(ev: &Event, a: &Attendee) -> &'static str {
    let price = ev.tickets.get(a.ticket as usize).map_or(0, |t| t.price);
    if price == 0 {
        "FREE_ORDER"
    } else if a.atm {
        "ATM"
    } else {
        "CREDITCARD"
    }
}

/// UTF-8 with a BOM and CRLF line ends, as spreadsheet-friendly exports are.
fn write_csv(headers: &[String], rows: &[Vec<String>]) -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(headers);
    for row in rows {
        let _ = writer.write_record(row);
    }
    out.extend(writer.into_inner().unwrap_or_default());
    out
}

impl State {
    fn attendees_export(&self, event_id: u64) -> Option<Vec<u8>> {
        let ev = self.events.iter().find(|e| e.id == event_id)?;
        // The form's questions: the labels every persona of this form answers, contact last.
        let sample = ev.attendees.first().map(|a| Self::persona_of(ev, a));
        let questions: Vec<&str> = sample
            .as_ref()
            .map(|p| {
                p.data
                    .iter()
                    .map(|(label, _)| *label)
                    .filter(|label| ![LABEL_NAME, LABEL_EMAIL, LABEL_PHONE].contains(label))
                    .collect()
            })
            .unwrap_or_default();
        let mut headers: Vec<String> = ATTENDEE_HEADERS.iter().map(|h| (*h).to_owned()).collect();
        headers.extend(questions.iter().map(|q| (*q).to_owned()));
        headers.extend([LABEL_NAME, LABEL_EMAIL, LABEL_PHONE, "Attendance Book"].map(String::from));
        let mut rows = Vec::new();
        // The export lists tickets that are not cancelled: paid ones and those awaiting payment.
        for a in ev.attendees.iter().filter(|a| !a.refunded) {
            let p = Self::persona_of(ev, a);
            let answer = |label: &str| {
                p.data
                    .iter()
                    .find(|(l, _)| *l == label)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let ticket = ev.tickets.get(a.ticket as usize);
            let mut row = vec![
                a.id.to_string(),
                a.order_no.to_string(),
                a.reg_no.to_string(),
                p.checkin_code.clone(),
                ticket.map(|t| t.name.clone()).unwrap_or_default(),
                if a.paid { "paid" } else { "unpaid" }.to_owned(),
                String::new(),
                p.qrcode.clone(),
                dash_date(a.created_ms),
                format!("{}.0", ticket.map_or(0, |t| t.price)),
            ];
            row.extend(questions.iter().map(|q| answer(q)));
            row.extend([answer(LABEL_NAME), answer(LABEL_EMAIL), answer(LABEL_PHONE)]);
            row.push(String::new());
            rows.push(row);
        }
        Some(write_csv(&headers, &rows))
    }

    fn orders_export(&self, event_id: u64) -> Option<Vec<u8>> {
        let ev = self.events.iter().find(|e| e.id == event_id)?;
        let headers: Vec<String> = ORDER_HEADERS.iter().map(|h| (*h).to_owned()).collect();
        let mut orders: BTreeMap<u64, Vec<&Attendee>> = BTreeMap::new();
        for a in &ev.attendees {
            orders.entry(a.order_no).or_default().push(a);
        }
        let mut rows = Vec::new();
        for (order_no, tickets) in orders {
            let lead = tickets[0];
            let p = Self::persona_of(ev, lead);
            let all_refunded = tickets.iter().all(|a| a.refunded);
            let some_refunded = tickets.iter().any(|a| a.refunded);
            let total: u32 = tickets
                .iter()
                .map(|a| ev.tickets.get(a.ticket as usize).map_or(0, |t| t.price))
                .sum();
            let refunded_at = tickets
                .iter()
                .filter(|a| a.refunded)
                .map(|a| a.updated_ms)
                .max();
            let paid_at = tickets
                .iter()
                .filter(|a| a.paid)
                .map(|a| {
                    if a.refunded {
                        a.created_ms
                    } else {
                        a.updated_ms
                    }
                })
                .max();
            let payment = match (lead.paid, some_refunded) {
                (true, true) => "已繳費有退款",
                (true, false) => "已繳費",
                (false, _) => "未繳費",
            };
            rows.push(vec![
                order_no.to_string(),
                if all_refunded {
                    "cancelled"
                } else {
                    "activated"
                }
                .to_owned(),
                payment.to_owned(),
                paid_at.map(slash_time).unwrap_or_default(),
                if all_refunded {
                    refunded_at.map(slash_time).unwrap_or_default()
                } else {
                    String::new()
                },
                if all_refunded && lead.paid {
                    refunded_at.map(slash_time).unwrap_or_default()
                } else {
                    String::new()
                },
                payment_method(ev, lead).to_owned(),
                tickets.len().to_string(),
                total.to_string(),
                p.name.clone(),
                p.email.clone(),
                p.phone.clone(),
            ]);
        }
        Some(write_csv(&headers, &rows))
    }

    fn notification(&self, change: &Change) -> Option<Value> {
        match change {
            Change::Paid {
                event_id,
                attendee_ids,
            } => {
                let ev = self.events.iter().find(|e| e.id == *event_id)?;
                let tickets: Vec<&Attendee> = attendee_ids
                    .iter()
                    .filter_map(|id| ev.attendee(*id))
                    .filter(|a| a.paid && !a.refunded)
                    .collect();
                let lead = tickets.first()?;
                let p = Self::persona_of(ev, lead);
                let paid_at =
                    taipei(lead.updated_ms)?.to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
                Some(json!({
                    "type": "order_activated_paid",
                    "event": {"name": ev.name, "slug": ev.slug},
                    "order": {"id": lead.order_no, "state": "activated", "paid_at": paid_at},
                    "contact": {"name": p.name, "email": p.email, "mobile": p.phone},
                    "tickets": tickets.iter().map(|a| {
                        let ticket = ev.tickets.get(a.ticket as usize);
                        json!({
                            "id": a.id,
                            "name": ticket.map(|t| t.name.clone()).unwrap_or_default(),
                            "price_cents": u64::from(ticket.map_or(0, |t| t.price)) * 100,
                            "price_currency": "TWD",
                        })
                    }).collect::<Vec<_>>(),
                }))
            }
            Change::Refunded {
                event_id,
                attendee_id,
            } => {
                let ev = self.events.iter().find(|e| e.id == *event_id)?;
                let a = ev.attendee(*attendee_id)?;
                let at =
                    taipei(a.updated_ms)?.to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
                // A refund of one ticket of an order names that ticket.
                Some(json!({
                    "type": "order_cancelled",
                    "event": {"name": ev.name, "slug": ev.slug},
                    "order": {"id": a.order_no, "state": "cancelled", "cancelled_at": at},
                    "tickets": [{"id": a.id}],
                }))
            }
        }
    }
}

impl Sandbox {
    /// KKTIX's attendees export of one event (tickets not cancelled), as CSV bytes.
    pub fn attendees_export(&self, event_id: u64) -> Option<Vec<u8>> {
        self.lock().attendees_export(event_id)
    }

    /// KKTIX's orders export of one event (every order, cancelled ones included).
    pub fn orders_export(&self, event_id: u64) -> Option<Vec<u8>> {
        self.lock().orders_export(event_id)
    }

    /// Start keeping the changes a webhook would announce.
    pub fn record_changes(&self) {
        let mut state = self.lock();
        if state.changes.is_none() {
            state.changes = Some(Vec::new());
        }
    }

    /// The changes since the last call (empty unless [`Sandbox::record_changes`]).
    pub fn take_changes(&self) -> Vec<Change> {
        self.lock()
            .changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Every paid, live ticket as the changes that would have announced it, by order: what
    /// a webhook set up from the start of sales would have sent.
    pub fn paid_as_changes(&self) -> Vec<Change> {
        let state = self.lock();
        let mut changes = Vec::new();
        for ev in state.events.iter().filter(|e| !e.ended) {
            let mut orders: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for a in ev.attendees.iter().filter(|a| a.paid && !a.refunded) {
                orders.entry(a.order_no).or_default().push(a.id);
            }
            changes.extend(orders.into_values().map(|attendee_ids| Change::Paid {
                event_id: ev.id,
                attendee_ids,
            }));
        }
        changes
    }

    /// A webhook body announcing `changes` (`None` when there is nothing to say).
    pub fn webhook_batch(&self, changes: &[Change]) -> Option<Vec<u8>> {
        let mut state = self.lock();
        let notifications: Vec<Value> = changes
            .iter()
            .filter_map(|change| state.notification(change))
            .collect();
        if notifications.is_empty() {
            return None;
        }
        state.webhook_batches += 1;
        let body = json!({
            "batch_id": format!("{:016}", state.webhook_batches),
            "notifications": notifications,
        });
        serde_json::to_vec(&body).ok()
    }

    /// Steps taken since the sandbox was created.
    pub fn steps(&self) -> u64 {
        self.lock().steps
    }

    /// Takes `steps` steps at once, recording nothing: how a restarted sandbox gets back to
    /// where it was (the same seed gives the same buyers).
    pub fn replay(&self, steps: u64) {
        let mut state = self.lock();
        let changes = state.changes.take();
        for _ in 0..steps {
            state.step();
        }
        state.changes = changes.map(|_| Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use crate::{Sandbox, SandboxConfig};

    #[test]
    fn exports_have_kktix_headers_and_every_live_ticket() {
        let sandbox = Sandbox::new(SandboxConfig::demo(5));
        let bytes = sandbox.attendees_export(80_102).unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
        let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
        let header = text.lines().next().unwrap();
        assert!(
            header.starts_with("Id,訂單編號,報名序號,檢查碼,票種,票券付款狀態"),
            "{header}"
        );
        assert!(header.contains("聯絡人 Email") && header.contains("Address / 發票地址"));
        let live = sandbox
            .attendees(80_102)
            .iter()
            .filter(|a| !a.refunded)
            .count();
        let mut reader = csv::Reader::from_reader(&bytes[3..]);
        assert_eq!(reader.records().count(), live);
        let orders = sandbox.orders_export(80_102).unwrap();
        let text = String::from_utf8(orders[3..].to_vec()).unwrap();
        assert!(text.starts_with("訂單編號,票券狀態,付款狀態,付款時間"));
    }

    #[test]
    fn multi_ticket_orders_share_their_contact_and_webhooks_announce_them() {
        let mut config = SandboxConfig::demo(8);
        config.multi_ticket_share = 1.0;
        config.atm_share = 0.0;
        config.refund_share = 0.0;
        let sandbox = Sandbox::new(config);
        sandbox.record_changes();
        for _ in 0..3 {
            sandbox.step();
        }
        let changes = sandbox.take_changes();
        let multi = changes.iter().find_map(|change| match change {
            crate::Change::Paid {
                event_id,
                attendee_ids,
            } if attendee_ids.len() > 1 => Some((*event_id, attendee_ids.clone())),
            _ => None,
        });
        let (event_id, ids) = multi.expect("a multi-ticket order");
        let truth = sandbox.attendees(event_id);
        let tickets: Vec<_> = truth.iter().filter(|a| ids.contains(&a.id)).collect();
        assert!(tickets
            .windows(2)
            .all(|w| w[0].email == w[1].email && w[0].order_no == w[1].order_no));
        let body = sandbox.webhook_batch(&changes).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let notification = value["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["tickets"].as_array().is_some_and(|t| t.len() > 1))
            .unwrap();
        assert_eq!(notification["type"], "order_activated_paid");
        assert_eq!(notification["contact"]["email"], tickets[0].email.as_str());
        assert!(sandbox.take_changes().is_empty());
    }

    #[test]
    fn replay_gets_back_to_the_same_buyers() {
        let first = Sandbox::new(SandboxConfig::demo(4));
        for _ in 0..15 {
            first.step();
        }
        let again = Sandbox::new(SandboxConfig::demo(4));
        again.replay(first.steps());
        assert_eq!(first.attendees(80_101), again.attendees(80_101));
        assert_eq!(again.steps(), 15);
    }
}
