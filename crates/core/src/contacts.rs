//! Sealed contacts: a buyer's email and name kept at rest only under authenticated encryption
//! with `CONTACT_KEY`, for the steps still to do (a grant or mail that failed) and for later
//! letters, when the CSV file or webhook batch they came in is gone.
//!
//! Each record is XChaCha20-Poly1305 with a fresh random 24-byte nonce; the attendee key is
//! the associated data, so a sealed record moved to another attendee does not open. The text
//! form is `v1.<key id>.<base64 nonce‖ciphertext>`: the key id (8 hex digits of SHA-256 of the
//! key) tells which key sealed it, which is what makes rotation (`CONTACT_KEY_PREVIOUS`) and a
//! clear "wrong key" error possible. The key itself is never printed.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::AttendeeKey;
use crate::pii::{EmailAddress, Sensitive};

const VERSION: &str = "v1";
const NONCE_BYTES: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContactKeyError {
    #[error("must be 32 random bytes as 64 hex digits or base64 (e.g. `openssl rand -hex 32`), got {0} bytes")]
    Length(usize),
    #[error("must be 32 random bytes as 64 hex digits or base64 (e.g. `openssl rand -hex 32`)")]
    Encoding,
}

/// `CONTACT_KEY`: 32 bytes. `Debug` shows only its id.
#[derive(Clone)]
pub struct ContactKey {
    bytes: [u8; 32],
    id: String,
}

impl fmt::Debug for ContactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContactKey(id {})", self.id)
    }
}

impl ContactKey {
    /// 64 hex digits, or base64 (standard or URL-safe, padded or not) of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, ContactKeyError> {
        let text = text.trim();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| ContactKeyError::Encoding)?
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or(ContactKeyError::Encoding)?
        };
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| ContactKeyError::Length(decoded.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let id = hex::encode(&Sha256::digest(bytes)[..4]);
        Self { bytes, id }
    }

    /// A fresh random key, for throwaway local set-ups (the sandbox).
    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    /// The key as 64 hex digits: only for writing a generated sandbox key to its file.
    pub fn to_hex(&self) -> Sensitive<String> {
        Sensitive::new(hex::encode(self.bytes))
    }

    /// 8 hex digits naming the key (not secret: a hash prefix), stored beside each record.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }
}

/// What is sealed per attendee: the contact details and what a later mail needs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactCard {
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ticket_name: String,
    #[serde(default)]
    pub checkin_code: Option<String>,
    #[serde(default)]
    pub reg_no: Option<u64>,
}

impl fmt::Debug for ContactCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContactCard")
            .field("ticket_name", &self.ticket_name)
            .finish_non_exhaustive()
    }
}

impl ContactCard {
    pub fn email(&self) -> Option<EmailAddress> {
        EmailAddress::parse(&self.email).ok()
    }

    pub fn name(&self) -> Sensitive<String> {
        Sensitive::new(self.name.clone())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnsealError {
    #[error("the sealed record is not in a form this version reads")]
    Format,
    #[error("sealed with key {0}, which is neither CONTACT_KEY nor CONTACT_KEY_PREVIOUS")]
    UnknownKey(String),
    #[error("the sealed record does not open with its key (tampered, or moved between attendees)")]
    Tampered,
}

/// The keys this deployment seals with (the current one) and opens with (current, previous).
#[derive(Clone, Debug)]
pub struct Sealer {
    current: ContactKey,
    previous: Option<ContactKey>,
}

impl Sealer {
    pub fn new(current: ContactKey, previous: Option<ContactKey>) -> Self {
        Self { current, previous }
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// Whether a record sealed under `key_id` opens here.
    pub fn knows(&self, key_id: &str) -> bool {
        self.key(key_id).is_some()
    }

    fn key(&self, key_id: &str) -> Option<&ContactKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|key| key.id() == key_id)
    }

    pub fn seal(&self, key: AttendeeKey, card: &ContactCard) -> String {
        // A struct of strings and numbers always encodes.
        let plain = serde_json::to_vec(card).unwrap_or_default();
        self.seal_bytes(&key.to_string(), &plain)
    }

    pub fn open(&self, key: AttendeeKey, sealed: &str) -> Result<ContactCard, UnsealError> {
        let plain = self.open_bytes(&key.to_string(), sealed)?;
        serde_json::from_slice(&plain).map_err(|_| UnsealError::Format)
    }

    /// Seals any bytes (a queued webhook batch, say) bound to `context`.
    pub fn seal_bytes(&self, context: &str, plain: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_BYTES] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = self
            .current
            .cipher()
            .encrypt(
                nonce,
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            // XChaCha20-Poly1305 encryption fails only past 256 GiB per message.
            .unwrap_or_default();
        let mut body = Vec::with_capacity(NONCE_BYTES + sealed.len());
        body.extend_from_slice(&nonce_bytes);
        body.extend_from_slice(&sealed);
        format!(
            "{VERSION}.{}.{}",
            self.current.id(),
            STANDARD_NO_PAD.encode(body)
        )
    }

    pub fn open_bytes(&self, context: &str, sealed: &str) -> Result<Vec<u8>, UnsealError> {
        let (key_id, body) = split_sealed(sealed)?;
        let key = self
            .key(key_id)
            .ok_or_else(|| UnsealError::UnknownKey(key_id.to_owned()))?;
        let body = STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| UnsealError::Format)?;
        if body.len() < NONCE_BYTES + 16 {
            return Err(UnsealError::Format);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_BYTES);
        key.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| UnsealError::Tampered)
    }

    /// Seals again with the current key, if another key sealed it (rotation).
    pub fn reseal(&self, key: AttendeeKey, sealed: &str) -> Result<Option<String>, UnsealError> {
        let (key_id, _) = split_sealed(sealed)?;
        if key_id == self.current.id() {
            return Ok(None);
        }
        let card = self.open(key, sealed)?;
        Ok(Some(self.seal(key, &card)))
    }
}

/// The key id a sealed record names.
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    split_sealed(sealed).ok().map(|(id, _)| id)
}

fn split_sealed(sealed: &str) -> Result<(&str, &str), UnsealError> {
    let mut parts = sealed.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(VERSION), Some(key_id), Some(body)) if key_id.len() == 8 => Ok((key_id, body)),
        _ => Err(UnsealError::Format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ContactKey {
        ContactKey::from_bytes([n; 32])
    }

    fn card() -> ContactCard {
        ContactCard {
            email: "xxx@gmail.com".into(),
            name: "李xx".into(),
            ticket_name: "Regular 一般票".into(),
            checkin_code: Some("BC7B".into()),
            reg_no: Some(104),
        }
    }

    const ALICE: AttendeeKey = AttendeeKey {
        event_id: 1,
        attendee_id: 2,
    };

    #[test]
    fn keys_parse_from_hex_and_base64_and_never_print() {
        let hex_key = "00".repeat(31) + "ff";
        let parsed = ContactKey::parse(&hex_key).unwrap();
        assert_eq!(parsed.bytes[31], 0xff);
        let b64 = STANDARD.encode([7u8; 32]);
        assert_eq!(ContactKey::parse(&b64).unwrap().bytes, [7u8; 32]);
        assert_eq!(
            ContactKey::parse(&URL_SAFE_NO_PAD.encode([9u8; 32]))
                .unwrap()
                .bytes,
            [9u8; 32]
        );
        assert_eq!(
            ContactKey::parse("abcd").unwrap_err(),
            ContactKeyError::Length(3)
        );
        assert_eq!(
            ContactKey::parse("not a key!").unwrap_err(),
            ContactKeyError::Encoding
        );
        let shown = format!("{parsed:?}");
        assert!(
            !shown.contains(&hex_key) && shown.contains(parsed.id()),
            "{shown}"
        );
    }

    #[test]
    fn seal_then_open_and_nothing_clear_in_the_text() {
        let sealer = Sealer::new(key(1), None);
        let sealed = sealer.seal(ALICE, &card());
        assert!(sealed.starts_with(&format!("v1.{}.", key(1).id())));
        for clear in ["xxx@gmail.com", "李xx", "BC7B"] {
            assert!(!sealed.contains(clear));
        }
        assert_eq!(sealer.open(ALICE, &sealed).unwrap(), card());
        let again = sealer.seal(ALICE, &card());
        assert_ne!(sealed, again, "a fresh nonce per record");
    }

    #[test]
    fn a_record_moved_to_another_attendee_or_altered_does_not_open() {
        let sealer = Sealer::new(key(1), None);
        let sealed = sealer.seal(ALICE, &card());
        let bob = AttendeeKey {
            event_id: 1,
            attendee_id: 3,
        };
        assert_eq!(sealer.open(bob, &sealed), Err(UnsealError::Tampered));
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert!(sealer.open(ALICE, &altered).is_err());
        assert_eq!(sealer.open(ALICE, "plain text"), Err(UnsealError::Format));
    }

    #[test]
    fn rotation_opens_old_records_and_reseals_them_with_the_new_key() {
        let old = Sealer::new(key(1), None);
        let sealed = old.seal(ALICE, &card());
        let stranger = Sealer::new(key(2), None);
        assert_eq!(
            stranger.open(ALICE, &sealed),
            Err(UnsealError::UnknownKey(key(1).id().to_owned()))
        );
        let rotating = Sealer::new(key(2), Some(key(1)));
        assert_eq!(rotating.open(ALICE, &sealed).unwrap(), card());
        let resealed = rotating.reseal(ALICE, &sealed).unwrap().unwrap();
        assert_eq!(sealed_key_id(&resealed), Some(key(2).id()));
        assert_eq!(stranger.open(ALICE, &resealed).unwrap(), card());
        assert_eq!(rotating.reseal(ALICE, &resealed).unwrap(), None);
    }

    #[test]
    fn card_debug_hides_contact_details() {
        let shown = format!("{:?}", card());
        assert!(!shown.contains("xxx@gmail.com") && !shown.contains("李xx"));
    }
}
