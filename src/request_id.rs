//! The request id: kept from the client's `X-Request-Id` when it is a plausible id (1-64
//! characters of letters, digits, `.`, `_`, `-`), otherwise a new 32-hex-digit random id. It is
//! sent upstream, returned to the client and written in the log line, so one request can be
//! followed across the client, the gateway and the upstream.
//!
//! Pure code.

use rand::Rng;

/// The header carrying the id, both ways.
pub const HEADER: &str = "X-Request-Id";

/// The client's id if it is acceptable, else a fresh one.
pub fn from_client_or_new(client: Option<&[u8]>) -> String {
    match client {
        Some(id) if is_acceptable(id) => String::from_utf8_lossy(id).into_owned(),
        _ => new_id(),
    }
}

fn is_acceptable(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// 128 random bits as 32 lowercase hex digits.
fn new_id() -> String {
    let value: u128 = rand::rng().random();
    format!("{value:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plausible_client_id_is_kept() {
        assert_eq!(from_client_or_new(Some(b"req-42.a_b")), "req-42.a_b");
    }

    #[test]
    fn missing_or_implausible_ids_are_replaced() {
        let long = [b'a'; 65];
        for bad in [
            None,
            Some(&b""[..]),
            Some(&b"has space"[..]),
            Some(&b"quote\""[..]),
            Some(&long[..]),
        ] {
            let id = from_client_or_new(bad);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(new_id(), new_id());
    }
}
