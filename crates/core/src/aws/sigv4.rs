//! AWS Signature Version 4 for the few AWS calls the functions make (SQS, Lambda Invoke,
//! Secrets Manager): all `POST`, no query string, a JSON body. Written against the
//! algorithm in AWS's IAM guide and checked against AWS's signing test suite (`get-vanilla`,
//! `post-sts-header-before`); `ring` (already linked by rustls) does the HMAC. The AWS SDK's
//! `aws-sigv4` would add 52 crates (15 new, and a second RustCrypto generation) for these
//! three calls — see the README's dependency table.

use chrono::{DateTime, Utc};
use ring::hmac;
use sha2::{Digest, Sha256};

use crate::pii::Sensitive;

/// The credentials Lambda gives every function (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`) and its region (`AWS_REGION`). `Debug` shows the key id only.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Sensitive<String>,
    pub session_token: Option<Sensitive<String>>,
    pub region: String,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsCredentials {
    /// From the environment Lambda sets; `None` when the keys or the region are missing.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        Some(Self {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: Sensitive::new(var("AWS_SECRET_ACCESS_KEY")?),
            session_token: var("AWS_SESSION_TOKEN").map(Sensitive::new),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"))?,
        })
    }
}

/// One request to sign: what goes on the wire besides the signature headers.
pub struct Signable<'a> {
    pub method: &'a str,
    /// `host[:port]` as the `Host` header will carry it.
    pub host: &'a str,
    /// The path as sent (already percent-encoded per segment).
    pub path: &'a str,
    /// Headers that are signed beside `host`, `x-amz-date` and `x-amz-security-token`
    /// (lower-case names).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Percent-encodes like AWS: everything but `A-Z a-z 0-9 - _ . ~`.
pub fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// The signing key of a day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// The headers to add to the request: `x-amz-date`, `x-amz-security-token` (signed, as the
/// SDKs do) and `authorization`.
pub fn sign(
    credentials: &AwsCredentials,
    service: &str,
    request: &Signable<'_>,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = now.format("%Y%m%d").to_string();
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    headers.push(("host".into(), request.host.to_owned()));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".into(), token.expose().clone()));
    }
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    // Non-S3 services double-encode: each segment of the path as sent is encoded again.
    let canonical_uri = if request.path.is_empty() || request.path == "/" {
        "/".to_owned()
    } else {
        request
            .path
            .split('/')
            .map(uri_encode)
            .collect::<Vec<_>>()
            .join("/")
    };
    let canonical_request = format!(
        "{}\n{canonical_uri}\n\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        hex::encode(Sha256::digest(request.body))
    );
    let scope = format!("{date}/{}/{service}/aws4_request", credentials.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(
        credentials.secret_access_key.expose(),
        &date,
        &credentials.region,
        service,
    );
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    let mut added = vec![("x-amz-date".to_owned(), amz_date)];
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token".into(), token.expose().clone()));
    }
    added.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn example(token: Option<&str>, region: &str) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Sensitive::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: token.map(|t| Sensitive::new(t.to_owned())),
            region: region.into(),
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 8, 30, 12, 36, 0).unwrap()
    }

    fn authorization(headers: &[(String, String)]) -> &str {
        &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "service",
        );
        assert_eq!(
            hex::encode(&key),
            "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75"
        );
        let headers = sign(
            &example(None, "us-east-1"),
            "service",
            &Signable {
                method: "GET",
                host: "example.amazonaws.com",
                path: "/",
                headers: &[],
                body: b"",
            },
            at(),
        );
        assert_eq!(
            authorization(&headers),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn aws_test_suite_post_sts_header_before() {
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        let headers = sign(
            &example(Some(token), "us-east-1"),
            "service",
            &Signable {
                method: "POST",
                host: "example.amazonaws.com",
                path: "/",
                headers: &[],
                body: b"",
            },
            at(),
        );
        assert!(authorization(&headers).ends_with(
            "SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
        ));
        assert!(headers
            .iter()
            .any(|(n, v)| n == "x-amz-security-token" && v == token));
    }

    #[test]
    fn sqs_send_message_and_lambda_invoke() {
        let credentials = example(Some("EXAMPLE-SESSION-TOKEN"), "ap-northeast-1");
        let body = br#"{"QueueUrl":"https://sqs.ap-northeast-1.amazonaws.com/123456789012/jobs","MessageBody":"hello"}"#;
        let headers = sign(
            &credentials,
            "sqs",
            &Signable {
                method: "POST",
                host: "sqs.ap-northeast-1.amazonaws.com",
                path: "/",
                headers: &[
                    ("content-type", "application/x-amz-json-1.0"),
                    ("x-amz-target", "AmazonSQS.SendMessage"),
                ],
                body,
            },
            at(),
        );
        assert!(
            authorization(&headers).ends_with(
                "Signature=12055caa2f587576568820a0584f989721dd6edc101554dc60d4ca38e138b341"
            ),
            "{}",
            authorization(&headers)
        );
        let headers = sign(
            &credentials,
            "lambda",
            &Signable {
                method: "POST",
                host: "lambda.ap-northeast-1.amazonaws.com",
                path: "/2015-03-31/functions/kktix-autopilot-worker/invocations",
                headers: &[("x-amz-invocation-type", "Event")],
                body: br#"{"job":"reconcile"}"#,
            },
            at(),
        );
        assert!(
            authorization(&headers).ends_with(
                "Signature=1374e760198588824d048ba6692283c0700b6deb83c1e75644126ed58665548a"
            ),
            "{}",
            authorization(&headers)
        );
    }

    #[test]
    fn credentials_never_print_the_secret() {
        let shown = format!("{:?}", example(Some("tok"), "ap-northeast-1"));
        assert!(
            !shown.contains("EXAMPLEKEY") && !shown.contains("tok\""),
            "{shown}"
        );
        assert_eq!(uri_encode("a:b/c~"), "a%3Ab%2Fc~");
    }
}
