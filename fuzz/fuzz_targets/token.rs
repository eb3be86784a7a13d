//! Fuzz target for `patgate::token::parse`, the first thing a presented credential meets.
//!
//! Properties checked on every input:
//! 1. the raw bytes (as text) either fail to parse or parse into a token whose prefix is the
//!    first 10 characters, whose kind is the prefix's tag, whose hashed part stays under
//!    bcrypt's 72 bytes, which re-serialises (`seal`) to exactly the input, and which the
//!    published scanner regex finds;
//! 2. a token built from the input (a tag plus the input mapped onto base62, sealed) always
//!    parses back to the same body;
//! 3. changing any one character of that token to another base62 character is refused.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patgate::token::{parse, seal, Kind, MAX_SECRET_LEN, PREFIX_LEN, SCANNER_REGEX, SECRET_LEN};
use std::sync::OnceLock;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn scanner() -> &'static regex::Regex {
    static SCANNER: OnceLock<regex::Regex> = OnceLock::new();
    SCANNER.get_or_init(|| regex::Regex::new(SCANNER_REGEX).expect("published regex compiles"))
}

/// Property 1: whatever parses is a well-formed token in every respect.
fn check_parsed(text: &str) {
    let Ok(token) = parse(text) else { return };
    assert_eq!(token.prefix().len(), PREFIX_LEN);
    assert_eq!(token.prefix(), &text[..PREFIX_LEN]);
    assert_eq!(Some(token.kind), Kind::of_prefix(text));
    assert!(token.hash_input().len() <= 72, "bcrypt would truncate");
    let body = std::str::from_utf8(token.hash_input()).expect("a token is ASCII");
    assert_eq!(seal(body), text, "a parsed token re-serialises to itself");
    assert!(
        scanner().find(text).is_some_and(|m| m.as_str() == text),
        "the scanner regex must find every valid token: {text:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_parsed(text);
    }
    // Properties 2 and 3 on a token made valid from the input.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let kind = if selector & 1 == 0 {
        Kind::Pat
    } else {
        Kind::ApiKey
    };
    let mut body = kind.tag().to_string();
    body.extend(
        rest.iter()
            .take(60)
            .map(|b| char::from(BASE62[usize::from(*b) % 62])),
    );
    let length_ok = (PREFIX_LEN + SECRET_LEN..=PREFIX_LEN + MAX_SECRET_LEN).contains(&body.len());
    let token = seal(&body);
    match parse(&token) {
        Ok(parsed) if length_ok => {
            assert_eq!(parsed.hash_input(), body.as_bytes());
            check_parsed(&token);
        }
        Ok(_) => panic!("a token of body length {} parsed", body.len()),
        Err(e) if length_ok => panic!("a sealed token was refused: {e}"),
        Err(_) => return,
    }
    let position = usize::from(selector >> 1) % token.len();
    let original = token.as_bytes()[position];
    let index = usize::from(rest.first().copied().unwrap_or(0)) % 62;
    let replacement = if BASE62[index] == original {
        BASE62[(index + 1) % 62]
    } else {
        BASE62[index]
    };
    let mut mutated = token.into_bytes();
    mutated[position] = replacement;
    let mutated = String::from_utf8(mutated).expect("ASCII");
    assert!(
        parse(&mutated).is_err(),
        "one changed character at {position} must be refused: {mutated:?}"
    );
});
