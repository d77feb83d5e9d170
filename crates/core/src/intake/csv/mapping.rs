//! Which column holds which field (`[intake.csv]`): header aliases per field, with KKTIX's
//! current zh-TW and English headers as defaults.

use super::*;

/// Header names of one field: the first one a file has is used. KKTIX names its columns in
/// the exporting user's language, so both zh-TW and English names are built in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Aliases(pub Vec<String>);

impl Aliases {
    pub(super) fn of(names: &[&str]) -> Self {
        Self(names.iter().map(|name| (*name).to_owned()).collect())
    }

    /// The first alias, for messages.
    pub(super) fn primary(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or("")
    }
}

impl<'de> Deserialize<'de> for Aliases {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(name) => Self(vec![name]),
            OneOrMany::Many(names) => Self(names),
        })
    }
}

/// `[intake.csv.attendees]`: columns of the attendees export (a name or a list of names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttendeeColumns {
    pub id: Aliases,
    pub order_no: Aliases,
    pub reg_no: Aliases,
    pub checkin_code: Aliases,
    pub ticket_name: Aliases,
    pub payment_state: Aliases,
    pub qrcode: Aliases,
    pub sold_at: Aliases,
    pub price: Aliases,
}

impl Default for AttendeeColumns {
    fn default() -> Self {
        Self {
            id: Aliases::of(&["Id"]),
            order_no: Aliases::of(&["訂單編號", "Order Number"]),
            reg_no: Aliases::of(&["報名序號", "Registration No."]),
            checkin_code: Aliases::of(&["檢查碼", "Checkin Code"]),
            ticket_name: Aliases::of(&["票種", "Ticket Type"]),
            payment_state: Aliases::of(&["票券付款狀態", "Payment Status"]),
            qrcode: Aliases::of(&["QR Code 序號", "QR Code Serial No."]),
            sold_at: Aliases::of(&["售出日期", "Paid Date"]),
            price: Aliases::of(&["票面價格", "Price"]),
        }
    }
}

impl AttendeeColumns {
    pub(super) fn all(&self) -> [&Aliases; 9] {
        [
            &self.id,
            &self.order_no,
            &self.reg_no,
            &self.checkin_code,
            &self.ticket_name,
            &self.payment_state,
            &self.qrcode,
            &self.sold_at,
            &self.price,
        ]
    }
}

/// `[intake.csv.orders]`: columns of the orders export. Its other columns (the buyer's
/// details among them) are never read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderColumns {
    pub order_no: Aliases,
    pub ticket_state: Aliases,
    pub payment_state: Aliases,
    pub paid_at: Aliases,
    pub cancelled_at: Aliases,
    pub refunded_at: Aliases,
    pub payment_method: Aliases,
}

impl Default for OrderColumns {
    fn default() -> Self {
        Self {
            order_no: Aliases::of(&["訂單編號", "Order Number"]),
            ticket_state: Aliases::of(&["票券狀態", "Ticket Status"]),
            payment_state: Aliases::of(&["付款狀態", "Payment Status"]),
            paid_at: Aliases::of(&["付款時間", "Paid At"]),
            cancelled_at: Aliases::of(&["取消時間", "Cancelled At"]),
            refunded_at: Aliases::of(&["退款時間", "Refunded At"]),
            payment_method: Aliases::of(&["付款方式", "Payment Method"]),
        }
    }
}

/// `[intake.csv]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvMapping {
    pub attendees: AttendeeColumns,
    pub orders: OrderColumns,
    /// A ticket whose payment state is one of these is paid (case-insensitive).
    pub ticket_paid: Vec<String>,
    /// An order whose payment state is one of these is paid.
    pub order_paid: Vec<String>,
    /// An order whose ticket state or payment state is one of these was cancelled or refunded.
    pub order_cancelled: Vec<String>,
    /// Form columns renamed to the labels the privacy rules know (English exports name the
    /// contact columns differently): `"Contact Email" = "聯絡人 Email"`.
    pub label_aliases: std::collections::BTreeMap<String, String>,
    /// KKTIX's exports carry no currency column.
    pub currency: String,
    /// Times in the exports are local to this zone.
    pub timezone: String,
}

impl Default for CsvMapping {
    fn default() -> Self {
        Self {
            attendees: AttendeeColumns::default(),
            orders: OrderColumns::default(),
            ticket_paid: vec!["paid".into()],
            order_paid: vec!["已繳費".into(), "已付款".into(), "paid".into()],
            order_cancelled: vec![
                "cancelled".into(),
                "canceled".into(),
                "refunded".into(),
                "已取消".into(),
                "已退款".into(),
                "已繳費有退款".into(),
            ],
            label_aliases: [
                ("Contact Name", "聯絡人 姓名"),
                ("Contact Email", "聯絡人 Email"),
                ("Contact Mobile", "聯絡人 手機"),
            ]
            .into_iter()
            .map(|(from, to)| (from.to_owned(), to.to_owned()))
            .collect(),
            currency: "TWD".into(),
            timezone: "Asia/Taipei".into(),
        }
    }
}

impl CsvMapping {
    pub fn validate(&self) -> Result<(), String> {
        self.zone().map(|_| ())
    }

    pub(super) fn zone(&self) -> Result<chrono_tz::Tz, String> {
        self.timezone.parse().map_err(|_| {
            format!(
                "[intake.csv] timezone {:?} is not a zone name",
                self.timezone
            )
        })
    }
}
