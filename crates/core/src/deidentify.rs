//! De-identification compatible with rows already in the warehouse: answers whose question
//! label contains a sensitive label are replaced by `sha256_hex(answer)`; `search_string`
//! (free text of name, email and phone) is dropped.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::kktix::Attendee;
use crate::pii::{sha256_hex, ContactDetails, EmailAddress, Sensitive};

/// Which question labels hold personal data. Labels change every year, so they are
/// configuration (`[privacy]` in the TOML file); matching is "label contains".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyRules {
    /// Answers under a label containing any of these are hashed in the warehouse.
    pub hashed_labels: Vec<String>,
    pub name_label: String,
    pub email_label: String,
    pub phone_label: String,
    /// Sealed contacts are shredded this many days after their event ended.
    pub retention_days: u32,
}

impl Default for PrivacyRules {
    fn default() -> Self {
        Self {
            hashed_labels: vec![
                "聯絡人 姓名".into(),
                "聯絡人 Email".into(),
                "聯絡人 手機".into(),
                "Address".into(),
            ],
            name_label: "聯絡人 姓名".into(),
            email_label: "聯絡人 Email".into(),
            phone_label: "聯絡人 手機".into(),
            retention_days: 14,
        }
    }
}

impl PrivacyRules {
    fn is_hashed(&self, label: &str) -> bool {
        self.hashed_labels
            .iter()
            .any(|sensitive| label.contains(sensitive.as_str()))
    }

    /// The attendee record as the warehouse may hold it.
    ///
    /// Beyond the legacy rules, two top-level fields that only ever hold personal data are
    /// hashed too when present: `id_number` and every string inside `kyc` (real-name checks).
    pub fn deidentify(&self, attendee: &Attendee) -> Map<String, Value> {
        let mut record = attendee.raw.expose().clone();
        record.remove("search_string");
        if let Some(Value::Array(pairs)) = record.get_mut("data") {
            for (pair, answer) in pairs.iter_mut().zip(&attendee.data) {
                if let Value::Array(pair) = pair {
                    if self.is_hashed(&answer.label) && pair.len() >= 2 {
                        pair[1] = Value::String(sha256_hex(answer.value.expose()));
                    }
                }
            }
        }
        if let Some(id_number) = record.get_mut("id_number") {
            if let Value::String(clear) = id_number {
                *id_number = Value::String(sha256_hex(clear));
            }
        }
        if let Some(kyc) = record.get_mut("kyc") {
            hash_strings(kyc);
        }
        record
    }

    /// The buyer's contact details, in clear but redacting, for the authorizer and mailer.
    pub fn contact(&self, attendee: &Attendee) -> ContactDetails {
        let answer = |label: &str| {
            attendee
                .data
                .iter()
                .find(|answer| answer.label.contains(label))
                .map(|answer| answer.value.expose().clone())
                .filter(|value| !value.trim().is_empty())
        };
        ContactDetails {
            name: answer(&self.name_label).map(Sensitive::new),
            email: answer(&self.email_label).and_then(|raw| EmailAddress::parse(&raw).ok()),
            phone: answer(&self.phone_label).map(Sensitive::new),
        }
    }
}

fn hash_strings(value: &mut Value) {
    match value {
        Value::String(clear) => *clear = sha256_hex(clear),
        Value::Array(items) => items.iter_mut().for_each(hash_strings),
        Value::Object(fields) => fields.values_mut().for_each(hash_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn attendee(data: Value) -> Attendee {
        Attendee::from_value(json!({
            "id": 7, "is_paid": true, "ticket_name": "Regular 一般票",
            "data": data, "search_string": "李xx xxx@gmail.com 0900000000",
            "kyc": {"name": "李xx", "verified": true}, "id_number": "A123456789"
        }))
        .unwrap()
    }

    #[test]
    fn design_vectors_in_a_record() {
        let rules = PrivacyRules::default();
        let row = rules.deidentify(&attendee(json!([
            ["聯絡人 姓名", "李xx"],
            ["聯絡人 Email", "xxx@gmail.com"],
            ["聯絡人 手機", "0900000000"],
            ["Address / 發票地址", ""],
            ["T-shirt Size / T恤尺寸", "M"]
        ])));
        let data = &row["data"];
        assert_eq!(
            data[0][1],
            "2150750f32ee8dcd40537be8b5bee7c26e893a77cb23049eb3a0ca49a7512791"
        );
        assert_eq!(
            data[1][1],
            "26a695fcd9d98ffa1fba78cb5a1eacf0fbe19e40bf9de0cafa0080cdf4c14514"
        );
        assert_eq!(
            data[2][1],
            "86f3abfffd2f714a6d611429f82fac9264e8036b0fb490320bfe3e56c494a0e0"
        );
        assert_eq!(
            data[3][1],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(data[4][1], "M", "non-sensitive answers stay as they are");
        assert_eq!(data[0][0], "聯絡人 姓名", "labels stay as they are");
        assert!(row.get("search_string").is_none());
        assert_eq!(row["kyc"]["name"], sha256_hex("李xx"));
        assert_eq!(row["kyc"]["verified"], true);
        assert_eq!(row["id_number"], sha256_hex("A123456789"));
    }

    #[test]
    fn contact_details_come_from_the_configured_labels() {
        let rules = PrivacyRules::default();
        let contact = rules.contact(&attendee(json!([
            ["聯絡人 姓名", "李xx"],
            ["聯絡人 Email", "xxx@gmail.com"],
            ["聯絡人 手機", ""]
        ])));
        assert_eq!(contact.email.unwrap().expose(), "xxx@gmail.com");
        assert_eq!(contact.name.unwrap().expose(), "李xx");
        assert!(contact.phone.is_none(), "an empty answer is no phone");
    }

    proptest! {
        // Whatever the buyer typed, no clear contact value survives anywhere in the row.
        #[test]
        fn no_clear_contact_value_survives(
            name in "\\PC{2,12}",
            local in "[a-z0-9._%+-]{1,16}",
            domain in "[a-z0-9-]{1,12}\\.(com|org|tw)",
            phone in "09[0-9]{8}",
            address in "\\PC{6,30}",
            other in "[A-Za-z ]{0,10}",
        ) {
            let email = format!("{local}@{domain}");
            let rules = PrivacyRules::default();
            let record = attendee(json!([
                ["聯絡人 姓名", name], ["聯絡人 Email", email], ["聯絡人 手機", phone],
                ["Address / 發票地址", address], ["Nickname / 暱稱", other]
            ]));
            let row = serde_json::to_string(&rules.deidentify(&record)).unwrap();
            for clear in [&name, &email, &phone, &address] {
                // The answer as a whole JSON string must be gone (a short value may still
                // occur by chance inside a label, so substrings are checked only for email).
                let quoted = serde_json::to_string(clear).unwrap();
                prop_assert!(!row.contains(&quoted), "clear value {quoted} survived in {row}");
            }
            prop_assert!(!row.contains(&email), "email survived in {row}");
        }
    }
}
