//! Discord request signatures: `autopilot_core::discord::verify`.

use autopilot_core::discord::verify::{
    parse_public_key, verify_http, verify_request, KeyError, SignatureError, MAX_CLOCK_SKEW_SECS,
    SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use chrono::{DateTime, TimeZone, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use std::sync::OnceLock;

const BODY: &[u8] = br#"{"application_id":"1300000000000000000","id":"1351234567890123401","token":"t","type":1,"version":1}"#;
const NOW: i64 = 1_772_323_200; // 2026-03-01T00:00:00Z

fn now() -> DateTime<Utc> {
    at(NOW)
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0)
        .single()
        .expect("timestamp in range")
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// What Discord sends: the hex signature of `timestamp ‖ body`.
fn sign(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(body);
    hex::encode(key.sign(&message).to_bytes())
}

fn check(
    key: &VerifyingKey,
    signature: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<(), SignatureError> {
    verify_request(key, Some(signature), Some(timestamp), body, now())
}

#[test]
fn valid_signature_is_accepted() {
    let key = key();
    let timestamp = NOW.to_string();
    let signature = sign(&key, &timestamp, BODY);
    assert_eq!(
        check(&key.verifying_key(), &signature, &timestamp, BODY),
        Ok(())
    );
    // Upper-case hex is still hex.
    assert_eq!(
        check(
            &key.verifying_key(),
            &signature.to_uppercase(),
            &timestamp,
            BODY
        ),
        Ok(())
    );
    // An empty body is signed like any other.
    let empty = sign(&key, &timestamp, b"");
    assert_eq!(check(&key.verifying_key(), &empty, &timestamp, b""), Ok(()));
}

#[test]
fn public_key_from_hex_verifies() {
    let key = key();
    let parsed = parse_public_key(&hex::encode(key.verifying_key().to_bytes()));
    assert_eq!(parsed, Ok(key.verifying_key()));
    let timestamp = NOW.to_string();
    let signature = sign(&key, &timestamp, BODY);
    let parsed = parsed.expect("valid key");
    assert_eq!(check(&parsed, &signature, &timestamp, BODY), Ok(()));
}

#[test]
fn tampering_is_rejected() {
    let key = key();
    let timestamp = NOW.to_string();
    let signature = sign(&key, &timestamp, BODY);

    let other = self::key();
    assert_eq!(
        check(&other.verifying_key(), &signature, &timestamp, BODY),
        Err(SignatureError::InvalidSignature)
    );

    let mut body = BODY.to_vec();
    body[10] ^= 0x01;
    assert_eq!(
        check(&key.verifying_key(), &signature, &timestamp, &body),
        Err(SignatureError::InvalidSignature)
    );
    let mut longer = BODY.to_vec();
    longer.push(b' ');
    assert_eq!(
        check(&key.verifying_key(), &signature, &timestamp, &longer),
        Err(SignatureError::InvalidSignature)
    );

    let mut bytes = hex::decode(&signature).expect("hex");
    bytes[3] ^= 0x80;
    assert_eq!(
        check(&key.verifying_key(), &hex::encode(&bytes), &timestamp, BODY),
        Err(SignatureError::InvalidSignature)
    );

    let later = (NOW + 1).to_string();
    assert_eq!(
        check(&key.verifying_key(), &signature, &later, BODY),
        Err(SignatureError::InvalidSignature)
    );
    // The same instant spelled differently is a different message.
    let padded = format!("0{timestamp}");
    assert_eq!(
        check(&key.verifying_key(), &signature, &padded, BODY),
        Err(SignatureError::InvalidSignature)
    );
}

#[test]
fn missing_headers_are_reported() {
    let key = key().verifying_key();
    let timestamp = NOW.to_string();
    assert_eq!(
        verify_request(&key, None, Some(&timestamp), BODY, now()),
        Err(SignatureError::MissingSignature)
    );
    assert_eq!(
        verify_request(&key, Some(&"00".repeat(64)), None, BODY, now()),
        Err(SignatureError::MissingTimestamp)
    );
    assert_eq!(
        verify_request(&key, None, None, BODY, now()),
        Err(SignatureError::MissingSignature)
    );
}

#[test]
fn malformed_signatures_are_reported() {
    let key = key();
    let timestamp = NOW.to_string();
    let signature = sign(&key, &timestamp, BODY);
    let verifying = key.verifying_key();
    let malformed = [
        String::new(),
        "zz".repeat(64),
        format!("{}g", &signature[..127]),
        signature[..126].to_owned(),
        format!("{signature}00"),
        format!(" {}", &signature[1..]),
        format!("0x{}", &signature[2..]),
        "0".repeat(100_000),
        "票".repeat(64),
    ];
    for bad in malformed {
        assert_eq!(
            check(&verifying, &bad, &timestamp, BODY),
            Err(SignatureError::MalformedSignature),
            "{bad:.40?}"
        );
    }
}

#[test]
fn malformed_timestamps_are_reported() {
    let key = key();
    let verifying = key.verifying_key();
    let signature = sign(&key, &NOW.to_string(), BODY);
    let malformed = [
        String::new(),
        "abc".to_owned(),
        format!("-{NOW}"),
        format!("+{NOW}"),
        format!("{NOW}.0"),
        format!(" {NOW}"),
        "2026-03-01T00:00:00Z".to_owned(),
        "9".repeat(30),
        "1".repeat(100_000),
    ];
    for bad in malformed {
        assert_eq!(
            check(&verifying, &signature, &bad, BODY),
            Err(SignatureError::MalformedTimestamp),
            "{bad:.40?}"
        );
    }
}

#[test]
fn timestamps_more_than_300_seconds_off_are_stale() {
    assert_eq!(MAX_CLOCK_SKEW_SECS, 300);
    let key = key();
    let verifying = key.verifying_key();
    for (offset, expected) in [
        (-301, Err(SignatureError::StaleTimestamp)),
        (301, Err(SignatureError::StaleTimestamp)),
        (-300, Ok(())),
        (300, Ok(())),
        (-299, Ok(())),
        (299, Ok(())),
        (0, Ok(())),
        (-(NOW), Err(SignatureError::StaleTimestamp)),
        (i64::MAX - NOW, Err(SignatureError::StaleTimestamp)),
    ] {
        // Signed `offset` seconds relative to our clock.
        let timestamp = (NOW + offset).to_string();
        let signature = sign(&key, &timestamp, BODY);
        assert_eq!(
            check(&verifying, &signature, &timestamp, BODY),
            expected,
            "offset {offset}"
        );
    }
    // Staleness is decided before the signature: an old request signed by anyone is
    // reported as stale, not as forged.
    let old = (NOW - 1_000).to_string();
    assert_eq!(
        check(&verifying, &"00".repeat(64), &old, BODY),
        Err(SignatureError::StaleTimestamp)
    );
    // A clock far in the past does not overflow.
    let timestamp = NOW.to_string();
    let signature = sign(&key, &timestamp, BODY);
    assert_eq!(
        verify_request(
            &verifying,
            Some(&signature),
            Some(&timestamp),
            BODY,
            DateTime::<Utc>::MIN_UTC
        ),
        Err(SignatureError::StaleTimestamp)
    );
}

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_bytes(value).expect("header value"),
        );
    }
    map
}

#[test]
fn http_headers_are_read_case_insensitively() {
    let key = key();
    let verifying = key.verifying_key();
    let timestamp = NOW.to_string();
    let signature = sign(&key, &timestamp, BODY);

    let map = headers(&[
        ("X-Signature-Ed25519", signature.as_bytes()),
        ("X-SIGNATURE-TIMESTAMP", timestamp.as_bytes()),
        ("Content-Type", b"application/json"),
    ]);
    assert_eq!(verify_http(&verifying, &map, BODY, now()), Ok(()));

    let lower = headers(&[
        (SIGNATURE_HEADER, signature.as_bytes()),
        (TIMESTAMP_HEADER, timestamp.as_bytes()),
    ]);
    assert_eq!(verify_http(&verifying, &lower, BODY, now()), Ok(()));
    assert_eq!(
        verify_http(&verifying, &lower, b"{}", now()),
        Err(SignatureError::InvalidSignature)
    );

    assert_eq!(
        verify_http(
            &verifying,
            &headers(&[(TIMESTAMP_HEADER, timestamp.as_bytes())]),
            BODY,
            now()
        ),
        Err(SignatureError::MissingSignature)
    );
    assert_eq!(
        verify_http(
            &verifying,
            &headers(&[(SIGNATURE_HEADER, signature.as_bytes())]),
            BODY,
            now()
        ),
        Err(SignatureError::MissingTimestamp)
    );
    assert_eq!(
        verify_http(&verifying, &HeaderMap::new(), BODY, now()),
        Err(SignatureError::MissingSignature)
    );

    // Repeated or non-ASCII headers are malformed.
    let repeated = headers(&[
        (SIGNATURE_HEADER, signature.as_bytes()),
        (SIGNATURE_HEADER, signature.as_bytes()),
        (TIMESTAMP_HEADER, timestamp.as_bytes()),
    ]);
    assert_eq!(
        verify_http(&verifying, &repeated, BODY, now()),
        Err(SignatureError::MalformedSignature)
    );
    let repeated = headers(&[
        (SIGNATURE_HEADER, signature.as_bytes()),
        (TIMESTAMP_HEADER, timestamp.as_bytes()),
        (TIMESTAMP_HEADER, timestamp.as_bytes()),
    ]);
    assert_eq!(
        verify_http(&verifying, &repeated, BODY, now()),
        Err(SignatureError::MalformedTimestamp)
    );
    let binary = headers(&[
        (SIGNATURE_HEADER, &[0xff; 128]),
        (TIMESTAMP_HEADER, timestamp.as_bytes()),
    ]);
    assert_eq!(
        verify_http(&verifying, &binary, BODY, now()),
        Err(SignatureError::MalformedSignature)
    );
    let binary = headers(&[
        (SIGNATURE_HEADER, signature.as_bytes()),
        (TIMESTAMP_HEADER, "１７７２３２３２００".as_bytes()),
    ]);
    assert_eq!(
        verify_http(&verifying, &binary, BODY, now()),
        Err(SignatureError::MalformedTimestamp)
    );
}

#[test]
fn public_key_parsing() {
    let key = key().verifying_key();
    let text = hex::encode(key.to_bytes());
    assert_eq!(parse_public_key(&text), Ok(key));
    assert_eq!(parse_public_key(&text.to_uppercase()), Ok(key));
    assert_eq!(parse_public_key(&format!("{text}\n")), Ok(key));
    for bad in [
        String::new(),
        text[..62].to_owned(),
        format!("{text}00"),
        "zz".repeat(32),
        "0".repeat(100_000),
    ] {
        assert_eq!(
            parse_public_key(&bad),
            Err(KeyError::Malformed),
            "{bad:.40?}"
        );
    }
    // y = 2 is not on the curve.
    let off_curve = format!("02{}", "00".repeat(31));
    assert_eq!(parse_public_key(&off_curve), Err(KeyError::InvalidPoint));
}

/// Encodings of the eight points of small order (the torsion subgroup), with the
/// non-canonical encoding of the order-4 points' sign bit.
const SMALL_ORDER_POINTS: [&str; 8] = [
    // identity, y = 1
    "0100000000000000000000000000000000000000000000000000000000000000",
    // order 2, y = -1
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    // order 4, y = 0
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    // order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

#[test]
fn small_order_public_keys_are_refused() {
    for point in SMALL_ORDER_POINTS {
        assert!(
            parse_public_key(point).is_err(),
            "accepted weak key {point}"
        );
    }
    assert_eq!(
        parse_public_key(SMALL_ORDER_POINTS[0]),
        Err(KeyError::WeakKey)
    );
}

/// With the identity as public key and as `R`, and `s = 0`, the plain Ed25519 equation
/// `[s]B = R + [k]A` holds for every message: lax verification accepts this "signature"
/// for anything. `verify_strict` (and so `verify_request`) must not.
#[test]
fn small_order_signatures_are_rejected() {
    let timestamp = NOW.to_string();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = VerifyingKey::from_bytes(&identity).expect("identity decodes");
    let mut forged = [0u8; 64];
    forged[..32].copy_from_slice(&identity);
    let forged_hex = hex::encode(forged);

    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(BODY);
    assert!(
        weak.verify(&message, &Signature::from_bytes(&forged))
            .is_ok(),
        "lax verification accepts the small-order forgery"
    );
    assert_eq!(
        check(&weak, &forged_hex, &timestamp, BODY),
        Err(SignatureError::InvalidSignature)
    );

    // Every small-order R with s = 0, against an honest key and against every weak key
    // that decodes.
    let honest = key().verifying_key();
    let mut keys = vec![honest];
    keys.extend(SMALL_ORDER_POINTS.iter().filter_map(|point| {
        let bytes: [u8; 32] = hex::decode(point).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }));
    for key in &keys {
        for point in SMALL_ORDER_POINTS {
            let signature = format!("{point}{}", "00".repeat(32));
            assert_eq!(
                check(key, &signature, &timestamp, BODY),
                Err(SignatureError::InvalidSignature),
                "R = {point}"
            );
        }
    }
}

/// The group order ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// `s + ℓ` is the same scalar modulo ℓ, so a lax verifier accepts the altered signature:
/// a second valid signature for the same message (malleability). Rejected here.
#[test]
fn non_canonical_scalars_are_rejected() {
    let key = key();
    let timestamp = NOW.to_string();
    let mut bytes = hex::decode(sign(&key, &timestamp, BODY)).expect("hex");
    let mut carry = 0u16;
    for (index, ell) in ELL.iter().enumerate() {
        let sum = u16::from(bytes[32 + index]) + u16::from(*ell) + carry;
        bytes[32 + index] = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "s + ℓ < 2^256");
    assert_eq!(
        check(&key.verifying_key(), &hex::encode(&bytes), &timestamp, BODY),
        Err(SignatureError::InvalidSignature)
    );
}

/// Keys and valid requests shared by the property tests: deriving a key and signing cost
/// milliseconds in a debug build, so cases pick from a pool instead.
struct Pool {
    keys: Vec<VerifyingKey>,
    /// (key index, timestamp, body, signature hex)
    requests: Vec<(usize, String, Vec<u8>, String)>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let signers: Vec<SigningKey> = (0..4).map(|_| key()).collect();
        let requests = (0..32usize)
            .map(|index| {
                let signer = index % signers.len();
                let offset = i64::try_from(index).expect("small") * 19 - 300;
                let timestamp = (NOW + offset).to_string();
                let body: Vec<u8> = match index % 4 {
                    0 => Vec::new(),
                    1 => BODY.to_vec(),
                    2 => "票".repeat(index).into_bytes(),
                    _ => (0..=255u8).cycle().skip(index).take(300).collect(),
                };
                let signature = sign(&signers[signer], &timestamp, &body);
                (signer, timestamp, body, signature)
            })
            .collect();
        Pool {
            keys: signers.iter().map(SigningKey::verifying_key).collect(),
            requests,
        }
    })
}

#[test]
fn pool_requests_are_valid() {
    let pool = pool();
    for (signer, timestamp, body, signature) in &pool.requests {
        assert_eq!(
            check(&pool.keys[*signer], signature, timestamp, body),
            Ok(())
        );
    }
}

fn timestamp_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        // Inside the window, so the signature itself gets checked.
        (NOW - 300..=NOW + 300).prop_map(|t| t.to_string()),
        any::<i64>().prop_map(|t| t.to_string()),
        any::<u64>().prop_map(|t| t.to_string()),
        ".{0,40}",
        "[0-9]{0,30}",
    ]
}

fn signature_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{128}",
        "[0-9a-fA-F]{120,136}",
        ".{0,300}",
        proptest::collection::vec(any::<u8>(), 64).prop_map(hex::encode),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Random headers and bodies are never accepted, and nothing panics.
    #[test]
    fn arbitrary_requests_are_rejected(
        key in 0usize..4,
        signature in signature_strategy(),
        timestamp in timestamp_strategy(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        now_offset in -400i64..400,
    ) {
        let key = &pool().keys[key];
        let result = verify_request(
            key,
            Some(&signature),
            Some(&timestamp),
            &body,
            at(NOW + now_offset),
        );
        prop_assert!(result.is_err());
        // The same through headers, when they are valid header values.
        if let (Ok(signature), Ok(timestamp)) =
            (HeaderValue::from_str(&signature), HeaderValue::from_str(&timestamp))
        {
            let mut map = HeaderMap::new();
            map.insert(SIGNATURE_HEADER, signature);
            map.insert(TIMESTAMP_HEADER, timestamp);
            prop_assert!(verify_http(key, &map, &body, at(NOW + now_offset)).is_err());
        }
    }
}

proptest! {
    // Most of these cases reach the curve arithmetic, which is slow in debug builds.
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// A valid request with any single bit flipped, in the signature, the timestamp or
    /// the body, is rejected, also when checked against another key.
    #[test]
    fn single_bit_flips_are_rejected(
        request in 0usize..32,
        part in 0u8..3,
        bit in any::<usize>(),
        other_key in any::<bool>(),
    ) {
        let pool = pool();
        let (signer, timestamp, body, signature) = &pool.requests[request];
        let key = &pool.keys[if other_key { (signer + 1) % pool.keys.len() } else { *signer }];

        let mut signature_bytes = hex::decode(signature).expect("hex");
        let mut timestamp_bytes = timestamp.clone().into_bytes();
        let mut body = body.clone();
        let target: &mut Vec<u8> = match part {
            0 => &mut signature_bytes,
            1 => &mut timestamp_bytes,
            _ if body.is_empty() => &mut timestamp_bytes,
            _ => &mut body,
        };
        let bit = bit % (target.len() * 8);
        target[bit / 8] ^= 1 << (bit % 8);

        // A flipped timestamp byte may not be UTF-8 any more: that is malformed too.
        let result = match String::from_utf8(timestamp_bytes) {
            Ok(timestamp) => check(key, &hex::encode(&signature_bytes), &timestamp, &body),
            Err(_) => Err(SignatureError::MalformedTimestamp),
        };
        prop_assert!(result.is_err(), "accepted after flipping bit {} of part {}", bit, part);
    }
}
