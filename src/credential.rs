//! Reading the presented credential from `Authorization: Bearer` or `X-API-Key` (SPEC §3).
//!
//! Pure code over an `http::HeaderMap`. Every copy of both headers is read: one distinct
//! token is the credential, two distinct tokens are ambiguous (400). A token in the query
//! string is never read. Headers using another `Authorization` scheme are not credentials.

use http::{HeaderMap, HeaderName};

/// `X-API-Key`, the other header a credential may come in (made once: a `&str` name is
/// parsed again on every lookup).
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// What the request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented<'a> {
    /// One token (possibly repeated identically across headers).
    Token(&'a str),
    /// No credential; `other_scheme` says an `Authorization` header used another scheme.
    Missing {
        /// An `Authorization` header was there, but not `Bearer`.
        other_scheme: bool,
    },
    /// Two or more different tokens.
    Ambiguous,
    /// A credential header whose value is not visible ASCII, or an empty Bearer value.
    Unreadable,
}

/// Reads the credential from `headers`.
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut found: Option<&str> = None;
    let mut other_scheme = false;
    let mut unreadable = false;
    for value in headers.get_all(http::header::AUTHORIZATION) {
        let Ok(text) = value.to_str() else {
            unreadable = true;
            continue;
        };
        match bearer_token(text) {
            Some("") => unreadable = true,
            Some(token) => {
                if found.is_some_and(|f| f != token) {
                    return Presented::Ambiguous;
                }
                found = Some(token);
            }
            None => other_scheme = true,
        }
    }
    for value in headers.get_all(&X_API_KEY) {
        let Ok(text) = value.to_str() else {
            unreadable = true;
            continue;
        };
        let token = text.trim();
        if token.is_empty() {
            unreadable = true;
            continue;
        }
        if found.is_some_and(|f| f != token) {
            return Presented::Ambiguous;
        }
        found = Some(token);
    }
    match found {
        Some(token) if !unreadable => Presented::Token(token),
        _ if unreadable => Presented::Unreadable,
        _ => Presented::Missing { other_scheme },
    }
}

/// `Bearer <token>` (scheme case-insensitive, RFC 6750) → the token; another scheme → `None`.
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                *name,
                HeaderValue::from_bytes(value).expect("valid header bytes"),
            );
        }
        map
    }

    #[test]
    fn bearer_and_api_key_headers_are_both_read() {
        assert_eq!(
            presented(&headers(&[("authorization", b"Bearer abc")])),
            Presented::Token("abc")
        );
        assert_eq!(
            presented(&headers(&[("authorization", b"bearer  abc ")])),
            Presented::Token("abc")
        );
        assert_eq!(
            presented(&headers(&[("x-api-key", b"abc")])),
            Presented::Token("abc")
        );
    }

    #[test]
    fn the_same_token_in_both_headers_is_one_credential() {
        let h = headers(&[("authorization", b"Bearer abc"), ("x-api-key", b"abc")]);
        assert_eq!(presented(&h), Presented::Token("abc"));
    }

    #[test]
    fn different_tokens_are_ambiguous_whatever_the_headers() {
        let both = headers(&[("authorization", b"Bearer abc"), ("x-api-key", b"xyz")]);
        assert_eq!(presented(&both), Presented::Ambiguous);
        let two_keys = headers(&[("x-api-key", b"abc"), ("x-api-key", b"xyz")]);
        assert_eq!(presented(&two_keys), Presented::Ambiguous);
        let two_bearers = headers(&[
            ("authorization", b"Bearer abc"),
            ("authorization", b"Bearer xyz"),
        ]);
        assert_eq!(presented(&two_bearers), Presented::Ambiguous);
    }

    #[test]
    fn no_header_or_another_scheme_is_missing() {
        assert_eq!(
            presented(&HeaderMap::new()),
            Presented::Missing {
                other_scheme: false
            }
        );
        let basic = headers(&[("authorization", b"Basic dXNlcjpwYXNz")]);
        assert_eq!(presented(&basic), Presented::Missing { other_scheme: true });
    }

    #[test]
    fn empty_or_non_ascii_values_are_unreadable() {
        assert_eq!(
            presented(&headers(&[("authorization", b"Bearer ")])),
            Presented::Unreadable
        );
        assert_eq!(
            presented(&headers(&[("x-api-key", b"")])),
            Presented::Unreadable
        );
        assert_eq!(
            presented(&headers(&[("x-api-key", b"\xff\xfe")])),
            Presented::Unreadable
        );
        let mixed = headers(&[("authorization", b"Bearer abc"), ("x-api-key", b"\xff")]);
        assert_eq!(presented(&mixed), Presented::Unreadable);
    }
}
