//! Verifying that an interaction request really comes from Discord.
//!
//! Discord signs `X-Signature-Timestamp` followed by the raw request body with the
//! application's Ed25519 key and sends the signature, hex encoded, in
//! `X-Signature-Ed25519`. The public key is shown in the developer portal
//! (`DISCORD_PUBLIC_KEY`). Requests failing the check must be answered with 401.
//!
//! Verification uses [`VerifyingKey::verify_strict`], which also rejects non-canonical
//! scalars, small-order `R` and weak public keys. Timestamps further than
//! [`MAX_CLOCK_SKEW_SECS`] from now are refused to limit replays. Nothing here panics or
//! allocates in proportion to header sizes: headers longer than [`MAX_HEADER_CHARS`] are
//! rejected as malformed before they are looked at.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey, PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH};
use http::HeaderMap;

/// Header carrying the hex-encoded Ed25519 signature.
pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
/// Header carrying the signing time, unix seconds as a decimal string.
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";
/// How far the signing time may be from our clock, in either direction.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;
/// Longest header value looked at; longer ones are malformed.
pub const MAX_HEADER_CHARS: usize = 256;

/// Why a request was refused. The messages are safe to show to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Signature-Ed25519 header")]
    MissingSignature,
    #[error("missing X-Signature-Timestamp header")]
    MissingTimestamp,
    #[error("malformed X-Signature-Ed25519 header")]
    MalformedSignature,
    #[error("malformed X-Signature-Timestamp header")]
    MalformedTimestamp,
    #[error("request timestamp too far from the current time")]
    StaleTimestamp,
    #[error("invalid request signature")]
    InvalidSignature,
}

/// Why a configured public key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the Discord public key must be 64 hexadecimal characters")]
    Malformed,
    #[error("the Discord public key is not a valid Ed25519 point")]
    InvalidPoint,
    #[error("the Discord public key is a weak (small-order) Ed25519 key")]
    WeakKey,
}

/// Parses the application's public key as shown in the developer portal: 64 hex
/// characters (surrounding whitespace ignored). Invalid curve points and weak
/// (small-order) keys are refused.
pub fn parse_public_key(hex: &str) -> Result<VerifyingKey, KeyError> {
    if hex.len() > MAX_HEADER_CHARS {
        return Err(KeyError::Malformed);
    }
    let mut bytes = [0u8; PUBLIC_KEY_LENGTH];
    hex::decode_to_slice(hex.trim(), &mut bytes).map_err(|_| KeyError::Malformed)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPoint)?;
    if key.is_weak() {
        return Err(KeyError::WeakKey);
    }
    Ok(key)
}

/// Checks a request's signature headers against its raw `body`.
///
/// The checks run in this order: both headers present, signature well-formed (128 hex
/// characters), timestamp well-formed (decimal digits only), timestamp within
/// [`MAX_CLOCK_SKEW_SECS`] of `now`, and finally the signature over
/// `timestamp ‖ body`.
pub fn verify_request(
    public_key: &VerifyingKey,
    signature_hex: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let signature_hex = signature_hex.ok_or(SignatureError::MissingSignature)?;
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;

    let signature = parse_signature(signature_hex)?;
    let signed_at = parse_timestamp(timestamp)?;

    let skew = now.timestamp().abs_diff(signed_at);
    if skew > MAX_CLOCK_SKEW_SECS {
        return Err(SignatureError::StaleTimestamp);
    }

    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    public_key
        .verify_strict(&message, &signature)
        .map_err(|_| SignatureError::InvalidSignature)
}

/// [`verify_request`] reading `X-Signature-Ed25519` and `X-Signature-Timestamp` from
/// `headers` (names are case-insensitive). A header that is repeated or not visible ASCII
/// is malformed.
pub fn verify_http(
    public_key: &VerifyingKey,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let signature = header(headers, SIGNATURE_HEADER)
        .map_err(|()| SignatureError::MalformedSignature)?
        .ok_or(SignatureError::MissingSignature)?;
    let timestamp = header(headers, TIMESTAMP_HEADER)
        .map_err(|()| SignatureError::MalformedTimestamp)?
        .ok_or(SignatureError::MissingTimestamp)?;
    verify_request(public_key, Some(signature), Some(timestamp), body, now)
}

/// The single value of header `name`: `Ok(None)` when absent, `Err` when repeated or not
/// visible ASCII.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    value.to_str().map(Some).map_err(|_| ())
}

fn parse_signature(signature_hex: &str) -> Result<Signature, SignatureError> {
    if signature_hex.len() != 2 * SIGNATURE_LENGTH {
        return Err(SignatureError::MalformedSignature);
    }
    let mut bytes = [0u8; SIGNATURE_LENGTH];
    hex::decode_to_slice(signature_hex, &mut bytes)
        .map_err(|_| SignatureError::MalformedSignature)?;
    Ok(Signature::from_bytes(&bytes))
}

fn parse_timestamp(timestamp: &str) -> Result<i64, SignatureError> {
    if timestamp.is_empty()
        || timestamp.len() > MAX_HEADER_CHARS
        || !timestamp.bytes().all(|byte| byte.is_ascii_digit())
    {
        return Err(SignatureError::MalformedTimestamp);
    }
    timestamp
        .parse::<i64>()
        .map_err(|_| SignatureError::MalformedTimestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_parsing() {
        assert_eq!(parse_timestamp("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_timestamp("0"), Ok(0));
        for bad in ["", "-1", "+1", " 1", "1.5", "1e9", "99999999999999999999"] {
            assert_eq!(
                parse_timestamp(bad),
                Err(SignatureError::MalformedTimestamp),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_timestamp(&"1".repeat(10_000)),
            Err(SignatureError::MalformedTimestamp)
        );
    }

    #[test]
    fn key_parsing() {
        assert_eq!(parse_public_key("").err(), Some(KeyError::Malformed));
        assert_eq!(
            parse_public_key(&"0".repeat(63)).err(),
            Some(KeyError::Malformed)
        );
        assert_eq!(
            parse_public_key(&"zz".repeat(32)).err(),
            Some(KeyError::Malformed)
        );
        assert_eq!(
            parse_public_key(&"0".repeat(1_000)).err(),
            Some(KeyError::Malformed)
        );
        // The identity point, encoded as y = 1: decodes, but has small order.
        let identity = format!("01{}", "00".repeat(31));
        assert_eq!(parse_public_key(&identity).err(), Some(KeyError::WeakKey));
        // The basepoint is a fine key, with or without a trailing newline.
        let basepoint = "5866666666666666666666666666666666666666666666666666666666666666";
        assert!(parse_public_key(basepoint).is_ok());
        assert!(parse_public_key(&format!("{basepoint}\n")).is_ok());
    }
}
