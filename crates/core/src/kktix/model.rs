//! Wire models, tolerant the way a long-lived integration has to be: unknown fields are
//! ignored and optional ones may be missing. A record that still does not parse is reported
//! by field path only — serde's own messages quote the offending value, which may be personal.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::pii::Sensitive;

/// One event from `GET /api/v2/hosting_events`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct HostingEvent {
    pub id: u64,
    pub name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub slug: String,
    #[serde(default)]
    pub start_at: Option<String>,
    #[serde(default)]
    pub end_at: Option<String>,
}

impl HostingEvent {
    /// KKTIX slugs are optional on the wire; the id stands in when there is none.
    pub fn slug_or_id(&self) -> String {
        if self.slug.is_empty() {
            self.id.to_string()
        } else {
            self.slug.clone()
        }
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

/// One entry of `GET …/attendance_books`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AttendanceBook {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
}

/// One `[question label, answer]` pair of an attendee's form. The label is the organisers'
/// question (not personal); the answer may be.
#[derive(Clone, Debug)]
pub struct Answer {
    pub label: String,
    pub value: Sensitive<String>,
}

impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pair: Vec<Value> = Vec::deserialize(deserializer)?;
        let label = match pair.first() {
            Some(Value::String(label)) => label.clone(),
            _ => return Err(de::Error::custom("answer label is not a string")),
        };
        // KKTIX leaves unanswered optional questions empty or null; both mean "".
        let value = match pair.get(1) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            Some(Value::Bool(flag)) => flag.to_string(),
            Some(_) => return Err(de::Error::custom("answer is not a scalar")),
        };
        Ok(Self {
            label,
            value: Sensitive::new(value),
        })
    }
}

/// An attendee from `GET …/attendees/{id}`: the typed fields the loop needs, plus the whole
/// record as KKTIX sent it (redacted in `Debug`) for the de-identified warehouse row.
#[derive(Debug, Clone)]
pub struct Attendee {
    pub id: u64,
    pub ticket_id: Option<u64>,
    pub ticket_name: String,
    pub reg_no: Option<u64>,
    pub order_no: Option<u64>,
    pub state: Option<String>,
    pub checkin_code: Option<String>,
    pub is_paid: bool,
    pub price: Option<f64>,
    pub currency: Option<String>,
    pub payment_method: Option<String>,
    pub updated_at: Option<f64>,
    pub data: Vec<Answer>,
    pub raw: Sensitive<Map<String, Value>>,
}

#[derive(Deserialize)]
struct AttendeeFields {
    id: u64,
    #[serde(default)]
    ticket_id: Option<u64>,
    #[serde(default)]
    ticket_name: Option<String>,
    #[serde(default)]
    reg_no: Option<u64>,
    #[serde(default)]
    order_no: Option<u64>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    checkin_code: Option<String>,
    is_paid: bool,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    payment_method: Option<String>,
    #[serde(default)]
    updated_at: Option<f64>,
    #[serde(default)]
    data: Vec<Answer>,
}

/// Why a record was skipped: what and where, never the value that was wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{reason}")]
pub struct RecordError {
    pub reason: String,
}

impl Attendee {
    pub fn parse(body: &[u8]) -> Result<Self, RecordError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| RecordError {
            reason: format!(
                "body is not valid JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        })?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, RecordError> {
        let Value::Object(raw) = value else {
            return Err(RecordError {
                reason: "record is not a JSON object".into(),
            });
        };
        let value = Value::Object(raw);
        // Read through a reference: the record is not copied to pick out its fields.
        let fields: AttendeeFields =
            serde_path_to_error::deserialize(&value).map_err(|e| RecordError {
                reason: format!("field `{}` has the wrong shape", e.path()),
            })?;
        let Value::Object(raw) = value else {
            unreachable!("built as an object above")
        };
        Ok(Self {
            id: fields.id,
            ticket_id: fields.ticket_id,
            ticket_name: fields.ticket_name.unwrap_or_default(),
            reg_no: fields.reg_no,
            order_no: fields.order_no,
            state: fields.state,
            checkin_code: fields.checkin_code,
            is_paid: fields.is_paid,
            price: fields.price,
            currency: fields.currency,
            payment_method: fields.payment_method,
            updated_at: fields.updated_at,
            data: fields.data,
            raw: Sensitive::new(raw),
        })
    }
}

/// The live attendee ids of a book: the first element of each `signin_status` entry.
pub(crate) fn parse_signin_ids(body: &[u8]) -> Result<Vec<u64>, RecordError> {
    #[derive(Deserialize)]
    struct Book {
        signin_status: Vec<Vec<Value>>,
    }
    let book: Book = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(
        body,
    ))
    .map_err(|e| RecordError {
        reason: if e.path().iter().next().is_none() {
            "attendance book has no `signin_status` list".to_owned()
        } else {
            format!("attendance book field `{}` has the wrong shape", e.path())
        },
    })?;
    book.signin_status
        .iter()
        .enumerate()
        .map(|(index, entry)| match entry.first() {
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or_default()),
            Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().unwrap_or_default()),
            _ => Err(RecordError {
                reason: format!("signin_status[{index}] does not start with an attendee id"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Value {
        json!({
            "id": 84748358, "ticket_id": 449116, "ticket_name": "Regular 一般票", "reg_no": 104,
            "state": "activated", "checkin_code": "BC7B", "qrcode": "bc7b", "is_paid": true,
            "price": 2600, "currency": "TWD", "payment_method": "WEBSITE",
            "data": [["聯絡人 姓名", "李xx"], ["聯絡人 Email", "xxx@gmail.com"], ["Nickname / 暱稱", null]],
            "kyc": {}, "id_number": null, "search_string": "李xx xxx@gmail.com",
            "updated_at": 1730000000.5, "ticket_type": "qrcode", "slot": null, "order_no": 1234,
            "something_new": {"kktix": "added this"}
        })
    }

    #[test]
    fn parses_a_full_record_and_tolerates_unknown_fields() {
        let attendee = Attendee::from_value(record()).unwrap();
        assert_eq!(attendee.id, 84748358);
        assert!(attendee.is_paid);
        assert_eq!(attendee.price, Some(2600.0));
        assert_eq!(attendee.data[2].value.expose(), "");
        assert!(attendee.raw.expose().contains_key("something_new"));
    }

    #[test]
    fn tolerates_missing_optional_fields() {
        let attendee = Attendee::from_value(json!({"id": 1, "is_paid": false})).unwrap();
        assert_eq!(attendee.ticket_name, "");
        assert!(attendee.data.is_empty());
    }

    #[test]
    fn broken_record_reason_names_the_field_not_the_value() {
        let mut broken = record();
        broken["is_paid"] = json!("xxx@gmail.com");
        let error = Attendee::from_value(broken).unwrap_err();
        assert!(error.reason.contains("is_paid"), "{error}");
        assert!(!error.reason.contains("xxx@gmail.com"), "{error}");

        let mut broken = record();
        broken["data"] = json!([[{"label": "聯絡人 Email"}, "xxx@gmail.com"]]);
        let error = Attendee::from_value(broken).unwrap_err();
        assert!(error.reason.contains("data"), "{error}");
        assert!(!error.reason.contains("xxx@gmail.com"), "{error}");

        let error = Attendee::parse(br#"{"id": 1, "is_paid": tr"#).unwrap_err();
        assert!(error.reason.contains("not valid JSON"), "{error}");
    }

    #[test]
    fn debug_of_an_attendee_shows_no_answer() {
        let attendee = Attendee::from_value(record()).unwrap();
        let shown = format!("{attendee:?}");
        assert!(
            !shown.contains("xxx@gmail.com") && !shown.contains("李xx"),
            "{shown}"
        );
    }

    #[test]
    fn signin_ids_take_the_first_element() {
        let ids = parse_signin_ids(br#"{"id":1,"signin_status":[[11,false],["12",true,"x"]]}"#);
        assert_eq!(ids.unwrap(), vec![11, 12]);
        assert!(parse_signin_ids(br#"{"signin_status":[[null]]}"#).is_err());
        assert!(parse_signin_ids(br#"{"signin_status":3}"#).is_err());
    }
}
