//! Authentication of one delivery (docs/contract.md section 8): `X-Timestamp` within
//! [`MAX_SKEW`] of now, and `X-Signature`, the lower-case hex HMAC-SHA256 of the raw body
//! under the tenant's current or previous webhook secret, compared in constant time.
//!
//! Nothing here parses the body: the signature is checked over the bytes as they came.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::tenants::Secret;

/// How far `X-Timestamp` may be from now, either way.
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a delivery is not authenticated: each is a 401, and its words are the answer's
/// `reason` (they name the header, never its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthorized {
    #[error("X-Timestamp is missing")]
    MissingTimestamp,
    #[error("X-Timestamp must be unix seconds")]
    BadTimestamp,
    #[error("X-Timestamp is more than 300 s from now")]
    StaleTimestamp,
    #[error("X-Signature is missing")]
    MissingSignature,
    #[error("X-Signature must be the hex HMAC-SHA256 of the body")]
    MalformedSignature,
    #[error("X-Signature does not match the body")]
    WrongSignature,
}

/// The headers, checked before the body is read: the timestamp (returned, unix seconds)
/// and a signature of the right form (returned decoded).
pub fn check_headers(
    timestamp: Option<&[u8]>,
    signature: Option<&[u8]>,
    now_unix: i64,
) -> Result<(i64, Vec<u8>), Unauthorized> {
    let timestamp = timestamp.ok_or(Unauthorized::MissingTimestamp)?;
    let timestamp = std::str::from_utf8(timestamp)
        .ok()
        .map(str::trim)
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or(Unauthorized::BadTimestamp)?;
    if (now_unix - timestamp).abs() > MAX_SKEW_SECS {
        return Err(Unauthorized::StaleTimestamp);
    }
    let signature = signature.ok_or(Unauthorized::MissingSignature)?;
    let signature = hex::decode(signature.trim_ascii()).map_err(|_| Unauthorized::MalformedSignature)?;
    if signature.len() != 32 {
        return Err(Unauthorized::MalformedSignature);
    }
    Ok((timestamp, signature))
}

/// Whether `signature` is the HMAC-SHA256 of `body` under one of `secrets` (the current
/// one, then the previous one). `verify_slice` compares in constant time.
pub fn verify(secrets: &[Secret], body: &[u8], signature: &[u8]) -> Result<(), Unauthorized> {
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
            continue;
        };
        mac.update(body);
        if mac.verify_slice(signature).is_ok() {
            return Ok(());
        }
    }
    Err(Unauthorized::WrongSignature)
}

/// The signature a vendor would send for `body` under `secret` (for tests and the demo).
#[cfg(test)]
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret {
        let mut problems = crate::config::Problems::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, format!("[tenants.t]\nwebhook_secret = \"{text}\"\n")).unwrap();
        let tenants = crate::tenants::Tenants::read(&file, &mut problems);
        tenants.get("t").unwrap().webhook_secrets[0].clone()
    }

    #[test]
    fn headers_are_checked_before_the_body() {
        let now = 1_800_000_000;
        let sig = "ab".repeat(32);
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Result<i64, Unauthorized>);
        let cases: [Case; 8] = [
            (None, Some(&sig), Err(Unauthorized::MissingTimestamp)),
            (Some("yesterday"), Some(&sig), Err(Unauthorized::BadTimestamp)),
            (Some("-5"), Some(&sig), Err(Unauthorized::BadTimestamp)),
            (Some("1799999699"), Some(&sig), Err(Unauthorized::StaleTimestamp)),
            (Some("1800000301"), Some(&sig), Err(Unauthorized::StaleTimestamp)),
            (Some("1800000000"), None, Err(Unauthorized::MissingSignature)),
            (Some("1800000000"), Some("xyz"), Err(Unauthorized::MalformedSignature)),
            (Some("1799999700"), Some(&sig), Ok(1_799_999_700)),
        ];
        for (timestamp, signature, expected) in cases {
            let got = check_headers(timestamp.map(str::as_bytes), signature.map(str::as_bytes), now).map(|(t, _)| t);
            assert_eq!(got, expected, "{timestamp:?} {signature:?}");
        }
    }

    #[test]
    fn the_current_or_the_previous_secret_signs() {
        let body = br#"{"session_id":"x"}"#;
        let (current, previous) = (secret("new"), secret("old"));
        let signed_with = |key: &str| hex::decode(sign(key, body)).unwrap();
        let both = [current.clone(), previous.clone()];
        assert_eq!(verify(&both, body, &signed_with("new")), Ok(()));
        assert_eq!(verify(&both, body, &signed_with("old")), Ok(()));
        assert_eq!(
            verify(&[current], body, &signed_with("old")),
            Err(Unauthorized::WrongSignature)
        );
        assert_eq!(
            verify(&both, b"{\"session_id\":\"y\"}", &signed_with("new")),
            Err(Unauthorized::WrongSignature)
        );
    }
}
