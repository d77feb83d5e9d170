//! Personal data in clear exists only in memory, on its way to the authorizer and mailer.
//! [`Sensitive`] makes that hard to get wrong: it never prints its contents and has no
//! `Serialize`, so it cannot slip into a log line, an error, the ledger or a JSON body by
//! accident. Reading the value takes an explicit, greppable [`Sensitive::expose`].

use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A value that must never be shown: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(transparent)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The clear value. Every call site is a place where personal data leaves this wrapper.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_exposed(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// For wire types that must carry personal data to the authorizer or mailer:
/// `#[serde(serialize_with = "crate::pii::serialize_exposed")]` — explicit at the field.
pub fn serialize_exposed<S: serde::Serializer>(
    value: &Sensitive<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.expose())
}

/// Lowercase hex SHA-256 of the UTF-8 bytes, unsalted and untrimmed: the form rows already in
/// the warehouse use, so old and new rows join.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// An email address that parsed: one `@`, non-empty local part and a dotted domain, no spaces.
/// Kept as entered (not lowercased) because its hash must match KKTIX's answer byte for byte.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress(Sensitive<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidEmail {
    #[error("email address is empty")]
    Empty,
    #[error("email address is not of the form local@domain.tld")]
    Malformed,
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let candidate = raw.trim();
        if candidate.is_empty() {
            return Err(InvalidEmail::Empty);
        }
        let (local, domain) = candidate.split_once('@').ok_or(InvalidEmail::Malformed)?;
        let well_formed = !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !candidate
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        if !well_formed {
            return Err(InvalidEmail::Malformed);
        }
        Ok(Self(Sensitive::new(candidate.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The only form of the address the ledger and logs ever hold.
    pub fn hash(&self) -> String {
        sha256_hex(self.expose())
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress([redacted])")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted email]")
    }
}

/// The buyer's contact details as KKTIX's form answered them.
#[derive(Clone, Debug, Default)]
pub struct ContactDetails {
    pub name: Option<Sensitive<String>>,
    pub email: Option<EmailAddress>,
    pub phone: Option<Sensitive<String>>,
}

/// Constant time in the secret's contents and length: both sides are hashed first, so the
/// comparison always covers 32 bytes.
pub fn secrets_match(presented: &str, expected: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    presented.ct_eq(&expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_never_prints_its_value() {
        let secret = Sensitive::new("xxx@gmail.com".to_owned());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), "xxx@gmail.com");
    }

    #[test]
    fn contact_details_debug_is_redacted() {
        let contact = ContactDetails {
            name: Some(Sensitive::new("李xx".into())),
            email: Some(EmailAddress::parse("xxx@gmail.com").unwrap()),
            phone: Some(Sensitive::new("0900000000".into())),
        };
        let shown = format!("{contact:?}");
        for clear in ["李xx", "xxx@gmail.com", "0900000000"] {
            assert!(!shown.contains(clear), "{shown}");
        }
    }

    #[test]
    fn email_parses_or_says_why() {
        assert!(EmailAddress::parse("a.b+1@example.com").is_ok());
        assert_eq!(EmailAddress::parse("  "), Err(InvalidEmail::Empty));
        for bad in [
            "plain",
            "@example.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(InvalidEmail::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn design_test_vectors() {
        assert_eq!(
            sha256_hex("xxx@gmail.com"),
            "26a695fcd9d98ffa1fba78cb5a1eacf0fbe19e40bf9de0cafa0080cdf4c14514"
        );
        assert_eq!(
            sha256_hex("李xx"),
            "2150750f32ee8dcd40537be8b5bee7c26e893a77cb23049eb3a0ca49a7512791"
        );
        assert_eq!(
            sha256_hex("0900000000"),
            "86f3abfffd2f714a6d611429f82fac9264e8036b0fb490320bfe3e56c494a0e0"
        );
        assert!(sha256_hex("").starts_with("e3b0c442") && sha256_hex("").ends_with("b855"));
    }
}
