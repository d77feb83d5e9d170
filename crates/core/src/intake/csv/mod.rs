//! KKTIX's CSV exports: the attendees export (one row per ticket) and, optionally, the
//! orders export (one row per order), joined on the order number.
//!
//! Header names move between years, so which column holds which field is configuration
//! (`[intake.csv]`) whose defaults are the headers KKTIX uses today. Every column the mapping
//! does not name is a form answer and becomes a `[label, answer]` pair, exactly as the hosting
//! API's `data` — so the privacy rules hash the same answers whichever door they came through.
//!
//! A file that is not an export (a required column missing) is refused before anything is
//! written, naming the columns; one broken row is reported by its `Id` (never its values) and
//! skipped while the rest proceed.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use std::sync::Arc;

use super::{IntakeBatch, IntakeRecord};
use crate::kktix::Attendee;
use crate::model::SkippedRecord;

mod mapping;

pub use mapping::{Aliases, AttendeeColumns, CsvMapping, OrderColumns};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("the {file} file is empty")]
    Empty { file: &'static str },
    #[error("the {file} file is not UTF-8 text (export it again as CSV, UTF-8)")]
    NotUtf8 { file: &'static str },
    #[error("the {file} file cannot be read as CSV: {reason}")]
    NotCsv { file: &'static str, reason: String },
    #[error(
        "the {file} file is not a KKTIX {file} export: missing the column(s) {}; \
         if KKTIX renamed them, map them in [intake.csv.{file}]",
        .missing.join(", ")
    )]
    MissingColumns {
        file: &'static str,
        missing: Vec<String>,
    },
    #[error("the {file} file has the column {column} twice")]
    DuplicateColumn { file: &'static str, column: String },
    #[error("{0}")]
    Settings(String),
}

/// One order's row of the orders export.
struct Order {
    paid: bool,
    cancelled: bool,
    paid_at: Option<DateTime<Utc>>,
    state: Option<String>,
    payment_method: Option<String>,
}

/// Reads both exports of one event into a batch. `orders` is optional: without it, a ticket's
/// own payment state decides.
pub fn parse_exports(
    mapping: &CsvMapping,
    event_id: u64,
    attendees: &[u8],
    orders: Option<&[u8]>,
) -> Result<IntakeBatch, ImportError> {
    let zone = mapping.zone().map_err(ImportError::Settings)?;
    let orders = match orders {
        Some(bytes) => Some(read_orders(mapping, zone, bytes)?),
        None => None,
    };
    let cancelled_orders: Vec<String> = orders
        .iter()
        .flatten()
        .filter(|(_, order)| order.cancelled)
        .map(|(number, _)| number.clone())
        .collect();
    let mut table = Table::read("attendees", attendees)?;
    let columns = &mapping.attendees;
    let mut required = vec![&columns.id, &columns.ticket_name, &columns.payment_state];
    if orders.is_some() {
        required.push(&columns.order_no);
    }
    table.require(&required)?;
    let named: HashSet<usize> = columns
        .all()
        .into_iter()
        .filter_map(|aliases| table.column(aliases))
        .collect();
    // Every other column is a question of the form, in the export's order.
    let questions: Vec<(usize, String)> = table
        .headers
        .iter()
        .enumerate()
        .filter(|(index, header)| !named.contains(index) && !header.is_empty())
        .map(|(index, header)| {
            let label = mapping
                .label_aliases
                .get(header.as_str())
                .cloned()
                .unwrap_or_else(|| header.clone());
            (index, label)
        })
        .collect();
    let context = Arc::new(RowContext {
        questions,
        ticket_name: table.column(&columns.ticket_name),
        checkin_code: table.column(&columns.checkin_code),
        qrcode: table.column(&columns.qrcode),
        currency: mapping.currency.clone(),
    });

    let mut batch = IntakeBatch {
        event_id,
        snapshot: true,
        cancelled_orders,
        ..IntakeBatch::default()
    };
    let mut seen: HashSet<u64> = HashSet::new();
    let mut orders_missing: BTreeSet<String> = BTreeSet::new();
    let header_len = table.headers.len();
    let rows = std::mem::take(&mut table.rows);
    for (index, row) in rows.into_iter().enumerate() {
        // Line numbers as a spreadsheet shows them: the header is row 1.
        let row_number = index + 2;
        let skip = |batch: &mut IntakeBatch, attendee_id: u64, reason: String| {
            batch.skipped.push(SkippedRecord {
                event_id,
                attendee_id,
                reason,
            });
        };
        let raw_id = table.field(&row, &columns.id).unwrap_or_default();
        let Some(id) = parse_number(raw_id) else {
            skip(
                &mut batch,
                0,
                format!(
                    "row {row_number}: column {} is not an attendee id",
                    columns.id.primary()
                ),
            );
            continue;
        };
        if !seen.insert(id) {
            skip(
                &mut batch,
                id,
                format!("row {row_number}: attendee {id} appears twice in the export"),
            );
            continue;
        }
        batch.present.push(id);
        let fields = match row {
            Ok(fields) if fields.len() == header_len => fields,
            Ok(fields) => {
                skip(
                    &mut batch,
                    id,
                    format!(
                        "row {row_number}: {} fields where the header has {header_len}",
                        fields.len(),
                    ),
                );
                continue;
            }
            Err(reason) => {
                skip(&mut batch, id, format!("row {row_number}: {reason}"));
                continue;
            }
        };
        match row_facts(mapping, zone, &table, &fields, orders.as_ref()) {
            Ok(Facts::Cancelled) => batch.cancelled.push(id),
            Ok(Facts::Attendee(facts, order_missing)) => {
                if let Some(order_no) = order_missing {
                    orders_missing.insert(order_no);
                }
                batch.records.push(IntakeRecord::Row(CsvRow {
                    id,
                    fields,
                    facts,
                    context: context.clone(),
                }));
            }
            Err(reason) => skip(&mut batch, id, format!("row {row_number}: {reason}")),
        }
    }
    if !orders_missing.is_empty() {
        batch.warnings.push(format!(
            "{} order(s) of the attendees export are not in the orders export; their tickets' own payment state was used",
            orders_missing.len()
        ));
    }
    Ok(batch)
}

/// Checks that both files are KKTIX exports (their required columns are there) without
/// reading their rows: what an operator's command does before it opens the store.
pub fn check_exports(
    mapping: &CsvMapping,
    attendees: &[u8],
    orders: Option<&[u8]>,
) -> Result<(), ImportError> {
    let columns = &mapping.attendees;
    let table = Table::headers_only("attendees", attendees)?;
    let mut required = vec![&columns.id, &columns.ticket_name, &columns.payment_state];
    if orders.is_some() {
        required.push(&columns.order_no);
    }
    table.require(&required)?;
    if let Some(orders) = orders {
        let table = Table::headers_only("orders", orders)?;
        table.require(&[&mapping.orders.order_no, &mapping.orders.payment_state])?;
    }
    Ok(())
}

/// What every row of one export shares: where the form's questions and the other columns
/// are.
#[derive(Debug)]
struct RowContext {
    questions: Vec<(usize, String)>,
    ticket_name: Option<usize>,
    checkin_code: Option<usize>,
    qrcode: Option<usize>,
    currency: String,
}

/// A row's facts, read and checked when the file is parsed.
#[derive(Debug, Clone)]
struct RowFacts {
    reg_no: Option<u64>,
    order_no: Option<String>,
    price: Option<f64>,
    paid_at: Option<DateTime<Utc>>,
    is_paid: bool,
    state: Option<String>,
    payment_method: Option<String>,
}

/// One valid row of the attendees export, kept as its fields and turned into a KKTIX
/// record only when the reconcile needs it (a re-import of 10,000 attendees builds none).
#[derive(Debug)]
pub struct CsvRow {
    id: u64,
    fields: Fields,
    facts: RowFacts,
    context: Arc<RowContext>,
}

impl CsvRow {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The row as the record the hosting API would give.
    pub fn build(&self) -> Result<Attendee, String> {
        let field = |index: Option<usize>| {
            index
                .and_then(|i| self.fields.get(i))
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
        };
        let facts = &self.facts;
        let data: Vec<Value> = self
            .context
            .questions
            .iter()
            .map(|(index, label)| json!([label, self.fields.get(*index).unwrap_or("")]))
            .collect();
        let mut raw = Map::new();
        raw.insert("id".into(), json!(self.id));
        raw.insert(
            "ticket_name".into(),
            json!(field(self.context.ticket_name).unwrap_or_default()),
        );
        raw.insert("reg_no".into(), json!(facts.reg_no));
        raw.insert(
            "order_no".into(),
            match facts.order_no.as_deref().and_then(parse_number) {
                Some(number) => json!(number),
                None => json!(facts.order_no),
            },
        );
        raw.insert(
            "state".into(),
            json!(facts.state.clone().unwrap_or_else(|| "activated".into())),
        );
        raw.insert(
            "checkin_code".into(),
            json!(field(self.context.checkin_code)),
        );
        raw.insert("qrcode".into(), json!(field(self.context.qrcode)));
        raw.insert("is_paid".into(), json!(facts.is_paid));
        raw.insert("price".into(), json!(facts.price));
        raw.insert("currency".into(), json!(self.context.currency));
        raw.insert("payment_method".into(), json!(facts.payment_method));
        raw.insert("data".into(), Value::Array(data));
        raw.insert(
            "updated_at".into(),
            json!(facts
                .paid_at
                .map(|at| at.timestamp_millis() as f64 / 1000.0)),
        );
        raw.insert("source".into(), json!("csv"));
        Attendee::from_value(Value::Object(raw)).map_err(|e| e.reason)
    }
}

enum Facts {
    /// Admit or wait; with the order number when the orders export did not list it.
    Attendee(RowFacts, Option<String>),
    Cancelled,
}

fn row_facts(
    mapping: &CsvMapping,
    zone: chrono_tz::Tz,
    table: &Table,
    row: &Fields,
    orders: Option<&HashMap<String, Order>>,
) -> Result<Facts, String> {
    let columns = &mapping.attendees;
    let text = |column: &Aliases| {
        table
            .column(column)
            .and_then(|i| row.get(i))
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    };
    let number = |column: &Aliases| -> Result<Option<u64>, String> {
        match text(column) {
            None => Ok(None),
            Some(value) => parse_number(value)
                .map(Some)
                .ok_or_else(|| format!("column {} is not a number", table.name_of(column))),
        }
    };
    let reg_no = number(&columns.reg_no)?;
    let order_text = text(&columns.order_no).map(str::to_owned);
    let price =
        match text(&columns.price) {
            None => None,
            Some(value) => Some(parse_price(value).ok_or_else(|| {
                format!("column {} is not a price", table.name_of(&columns.price))
            })?),
        };
    let sold_at =
        match text(&columns.sold_at) {
            None => None,
            Some(value) => Some(parse_local_time(value, zone).ok_or_else(|| {
                format!("column {} is not a date", table.name_of(&columns.sold_at))
            })?),
        };
    let ticket_paid = text(&columns.payment_state)
        .is_some_and(|state| contains_ignore_case(&mapping.ticket_paid, state));

    let (order, order_missing) = match (orders, &order_text) {
        (Some(orders), Some(order_no)) => match orders.get(order_no.as_str()) {
            Some(order) => (Some(order), None),
            None => (None, Some(order_no.clone())),
        },
        _ => (None, None),
    };
    if order.is_some_and(|order| order.cancelled) {
        return Ok(Facts::Cancelled);
    }
    Ok(Facts::Attendee(
        RowFacts {
            reg_no,
            order_no: order_text,
            price,
            paid_at: order.and_then(|order| order.paid_at).or(sold_at),
            is_paid: ticket_paid && order.is_none_or(|order| order.paid),
            state: order.and_then(|order| order.state.clone()),
            payment_method: order.and_then(|order| order.payment_method.clone()),
        },
        order_missing,
    ))
}

fn read_orders(
    mapping: &CsvMapping,
    zone: chrono_tz::Tz,
    bytes: &[u8],
) -> Result<HashMap<String, Order>, ImportError> {
    let table = Table::read("orders", bytes)?;
    let columns = &mapping.orders;
    table.require(&[&columns.order_no, &columns.payment_state])?;
    let mut orders = HashMap::new();
    for row in table.rows.iter().flatten() {
        let text = |column: &Aliases| {
            table
                .column(column)
                .and_then(|i| row.get(i))
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
        };
        let Some(order_no) = text(&columns.order_no) else {
            continue;
        };
        let state = text(&columns.ticket_state).map(str::to_owned);
        let payment = text(&columns.payment_state);
        let cancelled = [state.as_deref(), payment]
            .into_iter()
            .flatten()
            .any(|state| contains_ignore_case(&mapping.order_cancelled, state))
            || text(&columns.cancelled_at).is_some()
            || text(&columns.refunded_at).is_some();
        orders.insert(
            order_no.to_owned(),
            Order {
                paid: payment.is_some_and(|paid| contains_ignore_case(&mapping.order_paid, paid)),
                cancelled,
                paid_at: text(&columns.paid_at).and_then(|at| parse_local_time(at, zone)),
                state,
                payment_method: text(&columns.payment_method).map(str::to_owned),
            },
        );
    }
    Ok(orders)
}

/// One CSV record's fields in a single allocation (a 10,000-row export is 10,000 strings, not
/// 250,000).
#[derive(Debug, Clone)]
struct Fields {
    text: String,
    ends: Vec<u32>,
}

impl Fields {
    fn of(record: &::csv::ByteRecord) -> Result<Self, String> {
        let text = String::from_utf8(record.as_slice().to_vec())
            .map_err(|_| "a field is not UTF-8".to_owned())?;
        let ends = (0..record.len())
            .map(|i| record.range(i).map_or(0, |range| range.end as u32))
            .collect();
        Ok(Self { text, ends })
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)? as usize;
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1] as usize,
        };
        // Fields end at delimiters, which are ASCII: always character boundaries.
        self.text.get(start..end)
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// A parsed CSV file: trimmed headers, and each row as fields or the reason it is unreadable.
struct Table {
    file: &'static str,
    headers: Vec<String>,
    index: HashMap<String, usize>,
    rows: Vec<Result<Fields, String>>,
}

impl Table {
    fn read(file: &'static str, bytes: &[u8]) -> Result<Self, ImportError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ImportError::Empty { file });
        }
        let mut reader = ::csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(bytes);
        let headers = reader.byte_headers().map_err(|e| ImportError::NotCsv {
            file,
            reason: csv_reason(&e),
        })?;
        let headers: Vec<String> = headers
            .iter()
            .map(|field| {
                std::str::from_utf8(field)
                    .map(|text| text.trim().trim_start_matches('\u{feff}').to_owned())
                    .map_err(|_| ImportError::NotUtf8 { file })
            })
            .collect::<Result<_, _>>()?;
        let mut index = HashMap::new();
        for (at, header) in headers.iter().enumerate() {
            if header.is_empty() {
                continue;
            }
            if index.insert(header.clone(), at).is_some() {
                return Err(ImportError::DuplicateColumn {
                    file,
                    column: header.clone(),
                });
            }
        }
        let mut rows = Vec::new();
        for record in reader.byte_records() {
            let row = match record {
                Ok(record) => Fields::of(&record),
                Err(error) => Err(csv_reason(&error)),
            };
            // A blank line between rows is not a row.
            if matches!(&row, Ok(fields) if fields.iter().all(|f| f.trim().is_empty())) {
                continue;
            }
            rows.push(row);
        }
        Ok(Self {
            file,
            headers,
            index,
            rows,
        })
    }

    /// The header row alone.
    fn headers_only(file: &'static str, bytes: &[u8]) -> Result<Self, ImportError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let first_record_end = {
            // Enough of the file for the header, however long its quoted labels are.
            let mut reader = ::csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(false)
                .from_reader(bytes);
            let mut record = ::csv::ByteRecord::new();
            match reader.read_byte_record(&mut record) {
                Ok(_) => record
                    .position()
                    .map(|_| reader.position().byte() as usize)
                    .unwrap_or(bytes.len()),
                Err(_) => bytes.len(),
            }
        };
        Self::read(file, &bytes[..first_record_end.min(bytes.len())])
    }

    fn require(&self, columns: &[&Aliases]) -> Result<(), ImportError> {
        let missing: Vec<String> = columns
            .iter()
            .filter(|column| self.column(column).is_none())
            .map(|column| column.primary().to_owned())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ImportError::MissingColumns {
                file: self.file,
                missing,
            })
        }
    }

    /// The index of the first of `aliases` this file has.
    fn column(&self, aliases: &Aliases) -> Option<usize> {
        aliases
            .0
            .iter()
            .find_map(|name| self.index.get(name.trim()).copied())
    }

    /// The header this file uses for a field, for messages.
    fn name_of<'a>(&'a self, aliases: &'a Aliases) -> &'a str {
        self.column(aliases)
            .map(|index| self.headers[index].as_str())
            .unwrap_or_else(|| aliases.primary())
    }

    /// A field of a row that may be unreadable (for its id, which decides how it is reported).
    fn field<'a>(&self, row: &'a Result<Fields, String>, column: &Aliases) -> Option<&'a str> {
        let fields = row.as_ref().ok()?;
        fields.get(self.column(column)?).map(|value| value.trim())
    }
}

/// Where the CSV is broken, never what it says.
fn csv_reason(error: &::csv::Error) -> String {
    match error.kind() {
        ::csv::ErrorKind::Utf8 { .. } => "a field is not UTF-8".into(),
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields where the header has {expected_len}")
        }
        ::csv::ErrorKind::Io(_) => "the file could not be read".into(),
        _ => match error.position() {
            Some(position) => format!("malformed CSV near line {}", position.line()),
            None => "malformed CSV".into(),
        },
    }
}

fn contains_ignore_case(values: &[String], value: &str) -> bool {
    values
        .iter()
        .any(|candidate| candidate.trim().eq_ignore_ascii_case(value.trim()))
}

/// `123`, `#123`, `123.0` (a spreadsheet's way of saving ids).
fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim().trim_start_matches('#');
    text.parse::<u64>()
        .ok()
        .or_else(|| text.strip_suffix(".0").and_then(|t| t.parse().ok()))
}

/// `2600`, `2,600`, `TWD$2,600`, `NT$ 2600.00`, `0`.
fn parse_price(text: &str) -> Option<f64> {
    let kept: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    if kept.is_empty() || !text.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    kept.parse().ok().filter(|price: &f64| price.is_finite())
}

/// KKTIX's local times: `2026/03/01 10:00:00`, also `2026-03-01 10:00`, a bare date, or RFC 3339.
pub(crate) fn parse_local_time(text: &str, zone: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    const FORMATS: &[&str] = &[
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ];
    let naive = FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| {
            ["%Y/%m/%d", "%Y-%m-%d"]
                .iter()
                .find_map(|format| NaiveDate::parse_from_str(text, format).ok())
                .and_then(|date| date.and_hms_opt(0, 0, 0))
        })?;
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTENDEES: &str = "\u{feff}Id,訂單編號,報名序號,檢查碼,票種,票券付款狀態,QR Code 序號,售出日期,票面價格,聯絡人 姓名,聯絡人 Email,聯絡人 手機,Nickname / 暱稱,Bio / 自我介紹\r\n\
        84000001,126000001,1,BC7B,Regular 一般票,paid,q1,2026/03/01 10:00:00,\"2,600\",李xx,xxx@gmail.com,0900000000,Kuma,\"line one\r\nline two, with comma\"\r\n\
        84000002,126000002,2,C8D9,Student 學生票,unpaid,q2,2026/03/01 11:00:00,1000,王小明,ming@example.com,0911111111,,\r\n\
        84000003,126000003,3,D0E1,Regular 一般票,paid,q3,2026/03/01 12:00:00,2600,陳怡君,yi@example.com,0922222222,,\r\n\
        84000004,126000003,4,E2F3,Regular 一般票,paid,q4,2026/03/01 12:00:00,2600,陳怡君,yi@example.com,0922222222,,\r\n\
        oops,126000009,9,X,Regular 一般票,paid,q9,2026/03/01,2600,secret name,secret@example.com,0999,,\r\n\
        84000005,126000005,five,F4A5,Regular 一般票,paid,q5,2026/03/01,2600,secret two,two@example.com,0988,,\r\n";

    const ORDERS: &str = "訂單編號,票券狀態,付款狀態,付款時間,取消時間,退款時間,付款方式,聯絡人 Email\n\
        126000001,activated,已繳費,2026/03/01 10:05:00,,,信用卡,xxx@gmail.com\n\
        126000002,activated,未繳費,,,,ATM 虛擬帳號,ming@example.com\n\
        126000003,cancelled,已繳費,2026/03/01 12:01:00,2026/03/02 09:00:00,,信用卡,yi@example.com\n";

    fn built(batch: IntakeBatch) -> (IntakeBatch, Vec<Attendee>) {
        let mut batch = batch;
        let records = std::mem::take(&mut batch.records)
            .into_iter()
            .map(|record| record.build().unwrap())
            .collect();
        (batch, records)
    }

    #[test]
    fn joins_the_exports_and_reads_paid_time_in_taipei() {
        let (batch, records) = built(
            parse_exports(
                &CsvMapping::default(),
                80101,
                ATTENDEES.as_bytes(),
                Some(ORDERS.as_bytes()),
            )
            .unwrap(),
        );
        assert_eq!(
            batch.present,
            vec![84000001, 84000002, 84000003, 84000004, 84000005]
        );
        assert_eq!(
            batch.cancelled,
            vec![84000003, 84000004],
            "the whole cancelled order"
        );
        let first = &records[0];
        assert!(first.is_paid);
        assert_eq!(first.price, Some(2600.0));
        assert_eq!(first.reg_no, Some(1));
        assert_eq!(first.order_no, Some(126000001));
        assert_eq!(first.checkin_code.as_deref(), Some("BC7B"));
        // 10:05 Taipei is 02:05 UTC.
        assert_eq!(first.updated_at, Some(1_772_330_700.0));
        let bio = first
            .data
            .iter()
            .find(|answer| answer.label.starts_with("Bio"))
            .unwrap();
        assert_eq!(bio.value.expose(), "line one\r\nline two, with comma");
        assert!(first.data.iter().any(|a| a.label == "聯絡人 Email"));
        assert!(!records[1].is_paid, "an unpaid order");
    }

    #[test]
    fn broken_rows_are_reported_by_id_without_values() {
        let (batch, records) =
            built(parse_exports(&CsvMapping::default(), 1, ATTENDEES.as_bytes(), None).unwrap());
        assert_eq!(batch.skipped.len(), 2, "{:?}", batch.skipped);
        assert_eq!(batch.skipped[0].attendee_id, 0);
        assert!(
            batch.skipped[0].reason.contains("row 6"),
            "{:?}",
            batch.skipped
        );
        assert_eq!(batch.skipped[1].attendee_id, 84000005);
        assert!(batch.skipped[1].reason.contains("報名序號"));
        for skipped in &batch.skipped {
            for clear in ["secret", "oops", "five", "0988"] {
                assert!(!skipped.reason.contains(clear), "{}", skipped.reason);
            }
        }
        assert!(
            batch.present.contains(&84000005),
            "a broken row is not an absence"
        );
        assert_eq!(records.len(), 4, "without orders, tickets decide");
        assert!(records.iter().filter(|a| a.is_paid).count() == 3);
    }

    #[test]
    fn a_file_that_is_not_an_export_is_refused_naming_the_columns() {
        let error =
            parse_exports(&CsvMapping::default(), 1, b"name,email\na,b\n", None).unwrap_err();
        assert_eq!(
            error,
            ImportError::MissingColumns {
                file: "attendees",
                missing: vec!["Id".into(), "票種".into(), "票券付款狀態".into()]
            }
        );
        assert!(
            error.to_string().contains("Id, 票種, 票券付款狀態"),
            "{error}"
        );
        let error = parse_exports(
            &CsvMapping::default(),
            1,
            ATTENDEES.as_bytes(),
            Some(b"order,state\n1,x\n"),
        )
        .unwrap_err();
        assert!(matches!(
            error,
            ImportError::MissingColumns { file: "orders", .. }
        ));
        assert_eq!(
            parse_exports(&CsvMapping::default(), 1, b"  \n", None).unwrap_err(),
            ImportError::Empty { file: "attendees" }
        );
        assert_eq!(
            parse_exports(&CsvMapping::default(), 1, b"Id,\xff\xfe\n", None).unwrap_err(),
            ImportError::NotUtf8 { file: "attendees" }
        );
    }

    #[test]
    fn renamed_headers_are_configuration() {
        let mut mapping = CsvMapping::default();
        mapping.attendees.id = Aliases::of(&["Attendee ID"]);
        mapping.attendees.ticket_name = Aliases::of(&["Ticket"]);
        mapping.attendees.payment_state = Aliases::of(&["Payment"]);
        let (_, records) = built(
            parse_exports(
                &mapping,
                1,
                "Attendee ID,Ticket,Payment,聯絡人 Email\n7,Regular,PAID,a@b.co\n".as_bytes(),
                None,
            )
            .unwrap(),
        );
        assert_eq!(records.len(), 1);
        assert!(records[0].is_paid, "case-insensitive");
        assert_eq!(records[0].ticket_name, "Regular");
    }

    #[test]
    fn english_exports_read_alike_and_their_contact_columns_are_the_known_labels() {
        let (_, records) = built(parse_exports(
            &CsvMapping::default(),
            1,
            "Id,Order Number,Registration No.,Checkin Code,Ticket Type,Payment Status,Paid Date,Price,Contact Name,Contact Email,Contact Mobile\n\
             7,55,3,AB12,Regular,paid,2023-04-22,2790.0,Ann,ann@example.com,0900\n"
                .as_bytes(),
            None,
        )
        .unwrap());
        let attendee = &records[0];
        assert_eq!((attendee.reg_no, attendee.order_no), (Some(3), Some(55)));
        let labels: Vec<&str> = attendee.data.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(labels, vec!["聯絡人 姓名", "聯絡人 Email", "聯絡人 手機"]);
    }

    #[test]
    fn a_paid_then_refunded_order_is_a_cancellation() {
        let batch = parse_exports(
            &CsvMapping::default(),
            1,
            "Id,訂單編號,票種,票券付款狀態\n7,55,Regular,paid\n8,56,Regular,paid\n".as_bytes(),
            Some(
                "訂單編號,票券狀態,付款狀態,付款時間,取消時間,退款時間\n\
                 55,activated,已繳費有退款,2023/07/08 16:54:39,,\n\
                 56,activated,已繳費,2023/07/08 16:54:39,,2023/08/08 18:23:07\n"
                    .as_bytes(),
            ),
        )
        .unwrap();
        assert_eq!(batch.cancelled, vec![7, 8]);
        assert!(batch.records.is_empty());
    }

    #[test]
    fn the_header_check_reads_only_the_header() {
        assert!(check_exports(
            &CsvMapping::default(),
            ATTENDEES.as_bytes(),
            Some(ORDERS.as_bytes())
        )
        .is_ok());
        assert!(matches!(
            check_exports(&CsvMapping::default(), b"name,email\na,b\n", None),
            Err(ImportError::MissingColumns {
                file: "attendees",
                ..
            })
        ));
        assert!(matches!(
            check_exports(&CsvMapping::default(), ATTENDEES.as_bytes(), Some(b"x,y\n")),
            Err(ImportError::MissingColumns { file: "orders", .. })
        ));
        // A header whose quoted labels span lines is still one header.
        let multiline = "Id,\"Bio\n/ 自我介紹\",票種,票券付款狀態\n1,x,T,paid\n";
        assert!(check_exports(&CsvMapping::default(), multiline.as_bytes(), None).is_ok());
    }

    #[test]
    fn prices_numbers_and_times() {
        assert_eq!(parse_price("TWD$2,600"), Some(2600.0));
        assert_eq!(parse_price("NT$ 1000.50"), Some(1000.5));
        assert_eq!(parse_price("free"), None);
        assert_eq!(parse_number("#104"), Some(104));
        assert_eq!(parse_number("104.0"), Some(104));
        assert_eq!(parse_number("1e3"), None);
        let zone: chrono_tz::Tz = "Asia/Taipei".parse().unwrap();
        let at = parse_local_time("2026/03/01 10:00:00", zone).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-03-01T02:00:00+00:00");
        assert_eq!(
            parse_local_time("2026-03-01", zone).unwrap().to_rfc3339(),
            "2026-02-28T16:00:00+00:00"
        );
        assert!(parse_local_time("yesterday", zone).is_none());
    }
}
