//! Fuzz target for `patgate::credential::presented`: which token, if any, a request's headers
//! present.
//!
//! The input is split on `\n` into header lines; the first byte of each picks the name
//! (`Authorization`, `X-API-Key` or an unrelated header) and the rest is the value, kept only
//! if `http` accepts it as a header value (as Pingora's parser would have). Properties:
//! 1. a token is returned only if it is a non-empty substring of one of the credential
//!    headers' values, without surrounding whitespace, and equal to every `X-API-Key` value
//!    (trimmed);
//! 2. `Missing` without another scheme means there was no credential header at all;
//!    `Missing` with another scheme means only `Authorization` headers; `Ambiguous` needs two
//!    credential headers; `Unreadable` needs one;
//! 3. the answer does not depend on the order of the headers.

#![no_main]

use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use patgate::credential::{presented, Presented};

const NAMES: [&str; 4] = ["authorization", "x-api-key", "x-auth-user", "cookie"];

fn build(lines: &[(HeaderName, HeaderValue)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(name.clone(), value.clone());
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let lines: Vec<(HeaderName, HeaderValue)> = data
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let (&selector, value) = line.split_first()?;
            let name = HeaderName::from_static(NAMES[usize::from(selector) % NAMES.len()]);
            Some((name, HeaderValue::from_bytes(value).ok()?))
        })
        .collect();
    let headers = build(&lines);
    let credential_values: Vec<&HeaderValue> = headers
        .get_all(AUTHORIZATION)
        .iter()
        .chain(headers.get_all("x-api-key").iter())
        .collect();
    let api_keys = headers.get_all("x-api-key").iter().count();
    let answer = presented(&headers);
    match &answer {
        Presented::Token(token) => {
            assert!(!token.is_empty());
            assert_eq!(*token, token.trim(), "returned with surrounding whitespace");
            assert!(
                credential_values
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|text| text.contains(token))),
                "{token:?} is in no credential header"
            );
            for key in headers.get_all("x-api-key") {
                assert_eq!(key.to_str().ok().map(str::trim), Some(*token));
            }
        }
        Presented::Missing {
            other_scheme: false,
        } => assert!(credential_values.is_empty(), "{headers:?}"),
        Presented::Missing { other_scheme: true } => {
            assert_eq!(api_keys, 0);
            assert!(!credential_values.is_empty());
        }
        Presented::Ambiguous => assert!(credential_values.len() >= 2),
        Presented::Unreadable => assert!(!credential_values.is_empty()),
    }
    let mut reversed = lines.clone();
    reversed.reverse();
    assert_eq!(
        presented(&build(&reversed)),
        answer,
        "the order of the headers changed the answer"
    );
});
