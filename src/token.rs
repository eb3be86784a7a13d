//! The token format (SPEC §2): generation, parsing and the published scanner regex.
//!
//! ```text
//! token = prefix (10) + secret (>= 32) + checksum (6), no separators
//!         pat_Ab3dE9    Q2hT…             Xy12Zq
//! ```
//!
//! Pure code: no Redis, no I/O. Parsing rejects bad length, bad alphabet, an unknown kind and
//! a bad checksum before anything touches Redis, so typos and random garbage cost nothing.
//! What goes into a hash ([`Token::hash_input`]) is prefix + secret: at most 64 bytes, under
//! bcrypt's 72-byte input limit, and it binds the secret to its credential id.

use rand::Rng;
use std::fmt;

/// Base62 alphabet, in the order used to encode checksums.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of the non-secret prefix (`pat_` or `key_` plus 6 random characters).
pub const PREFIX_LEN: usize = 10;
/// Random characters after the kind tag in a prefix.
const PREFIX_RANDOM_LEN: usize = 6;
/// Secret length that [`generate`] produces: 32 base62 characters, about 190 bits.
pub const SECRET_LEN: usize = 32;
/// Longest secret [`parse`] accepts, so prefix + secret stays under bcrypt's 72 bytes.
pub const MAX_SECRET_LEN: usize = 54;
/// Length of the base62 CRC32 checksum at the end.
pub const CHECKSUM_LEN: usize = 6;
/// Shortest and longest whole token.
const MIN_LEN: usize = PREFIX_LEN + SECRET_LEN + CHECKSUM_LEN;
const MAX_LEN: usize = PREFIX_LEN + MAX_SECRET_LEN + CHECKSUM_LEN;
// What goes into bcrypt (prefix + secret) must stay under its 72-byte input limit.
const _: () = assert!(PREFIX_LEN + MAX_SECRET_LEN <= 72);

/// Regex a secret scanner can use to find candidate tokens; confirm a match with the checksum.
pub const SCANNER_REGEX: &str = r"\b(?:pat|key)_[0-9A-Za-z]{44,66}\b";

/// The two kinds of credential, told apart by the first four characters of the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A personal access token, owned by one user.
    Pat,
    /// An organisation API key.
    ApiKey,
}

impl Kind {
    /// The 4-character tag that starts every prefix of this kind.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Pat => "pat_",
            Kind::ApiKey => "key_",
        }
    }

    /// The word used in Redis records and the `X-Auth-Credential-Type` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pat => "pat",
            Kind::ApiKey => "api_key",
        }
    }

    /// Inverse of [`Kind::as_str`].
    pub fn from_record(s: &str) -> Option<Kind> {
        match s {
            "pat" => Some(Kind::Pat),
            "api_key" => Some(Kind::ApiKey),
            _ => None,
        }
    }

    /// The kind a prefix names, if it has a known tag.
    pub fn of_prefix(prefix: &str) -> Option<Kind> {
        if prefix.starts_with("pat_") {
            Some(Kind::Pat)
        } else if prefix.starts_with("key_") {
            Some(Kind::ApiKey)
        } else {
            None
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a presented string is not a well-formed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Shorter or longer than any token can be.
    #[error("token has the wrong length")]
    Length,
    /// A character outside base62 (after the kind tag).
    #[error("token contains a character outside base62")]
    Alphabet,
    /// Neither `pat_` nor `key_`.
    #[error("token does not start with a known kind (pat_ or key_)")]
    UnknownKind,
    /// The last six characters are not the CRC32 of the rest.
    #[error("token checksum does not match")]
    Checksum,
}

/// A syntactically valid token, borrowed from the presented header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// Which kind its prefix names.
    pub kind: Kind,
    /// Prefix and secret together, without the checksum.
    body: &'a str,
}

impl<'a> Token<'a> {
    /// The 10-character public prefix: the credential's id in lists, logs and Redis.
    pub fn prefix(&self) -> &'a str {
        &self.body[..PREFIX_LEN]
    }

    /// [`Self::prefix`], held inline: what a request keeps of its token for the log line.
    pub fn held_prefix(&self) -> HeldPrefix {
        let mut bytes = [0u8; PREFIX_LEN];
        bytes.copy_from_slice(&self.body.as_bytes()[..PREFIX_LEN]);
        HeldPrefix(bytes)
    }

    /// The bytes that are hashed (bcrypt for PATs, SHA-256 for API keys): prefix + secret.
    pub fn hash_input(&self) -> &'a [u8] {
        self.body.as_bytes()
    }
}

/// A well-formed token's prefix, inline (no allocation per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldPrefix([u8; PREFIX_LEN]);

impl HeldPrefix {
    /// The prefix (ASCII, as [`parse`] checked).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Parses a presented token, checking length, alphabet, kind and checksum.
///
/// # Errors
/// A [`TokenError`] naming the first rule the string breaks.
pub fn parse(s: &str) -> Result<Token<'_>, TokenError> {
    if s.len() < MIN_LEN || s.len() > MAX_LEN {
        return Err(TokenError::Length);
    }
    let kind = Kind::of_prefix(s).ok_or(TokenError::UnknownKind)?;
    if !s.as_bytes()[4..].iter().all(u8::is_ascii_alphanumeric) {
        return Err(TokenError::Alphabet);
    }
    let (body, checksum) = s.split_at(s.len() - CHECKSUM_LEN);
    if checksum.as_bytes() != checksum_of(body).as_slice() {
        return Err(TokenError::Checksum);
    }
    Ok(Token { kind, body })
}

/// A freshly generated token: the whole string is the secret shown once to its owner.
pub struct Generated {
    /// The full token (prefix + secret + checksum).
    pub token: String,
}

impl Generated {
    /// The public 10-character prefix.
    pub fn prefix(&self) -> &str {
        &self.token[..PREFIX_LEN]
    }

    /// What to hash for storage, the same bytes [`Token::hash_input`] yields when presented.
    pub fn hash_input(&self) -> &[u8] {
        &self.token.as_bytes()[..self.token.len() - CHECKSUM_LEN]
    }
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, even in debug output.
        f.debug_struct("Generated")
            .field("prefix", &self.prefix())
            .finish_non_exhaustive()
    }
}

/// Generates a new token of `kind` from a CSPRNG (rand's thread RNG: ChaCha12 seeded from the OS).
pub fn generate(kind: Kind) -> Generated {
    let mut rng = rand::rng();
    let mut body = String::with_capacity(PREFIX_LEN + SECRET_LEN);
    body.push_str(kind.tag());
    for _ in 0..PREFIX_RANDOM_LEN + SECRET_LEN {
        let index = rng.random_range(0..BASE62.len());
        body.push(char::from(BASE62[index]));
    }
    Generated { token: seal(&body) }
}

/// Appends the checksum to `body` (prefix + secret). Tools that build tokens from parts,
/// such as tests for wrong secrets under a real prefix, use it; [`generate`] does the same.
pub fn seal(body: &str) -> String {
    let checksum = checksum_of(body);
    format!(
        "{body}{}",
        std::str::from_utf8(&checksum).expect("base62 is ASCII")
    )
}

/// Base62-encoded CRC32 of `body`, left-padded with `0` to six characters (62^6 > 2^32).
fn checksum_of(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut value = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back_to_their_kind_and_prefix() {
        for kind in [Kind::Pat, Kind::ApiKey] {
            let generated = generate(kind);
            assert_eq!(generated.token.len(), MIN_LEN);
            let token = parse(&generated.token).expect("a generated token parses");
            assert_eq!(token.kind, kind);
            assert_eq!(token.prefix(), generated.prefix());
            assert!(token.prefix().starts_with(kind.tag()));
            assert_eq!(token.hash_input(), generated.hash_input());
        }
    }

    #[test]
    fn generated_tokens_are_distinct() {
        let a = generate(Kind::Pat);
        let b = generate(Kind::Pat);
        assert_ne!(a.token, b.token);
        assert_ne!(a.prefix(), b.prefix());
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let generated = generate(Kind::Pat);
        let mut bytes = generated.token.clone().into_bytes();
        bytes[20] = if bytes[20] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(bytes).expect("ascii");
        assert_eq!(parse(&typo), Err(TokenError::Checksum));
    }

    #[test]
    fn truncated_and_overlong_tokens_are_rejected_on_length() {
        let generated = generate(Kind::ApiKey);
        assert_eq!(parse(&generated.token[..40]), Err(TokenError::Length));
        assert_eq!(parse(""), Err(TokenError::Length));
        let long = format!("{}{}", generated.token, "a".repeat(40));
        assert_eq!(parse(&long), Err(TokenError::Length));
    }

    #[test]
    fn unknown_kind_and_bad_alphabet_are_rejected() {
        let generated = generate(Kind::Pat);
        let other = format!("tok_{}", &generated.token[4..]);
        assert_eq!(parse(&other), Err(TokenError::UnknownKind));
        let mut bad = generated.token.clone();
        bad.replace_range(15..16, "-");
        assert_eq!(parse(&bad), Err(TokenError::Alphabet));
        let mut non_ascii = generated.token[..47].to_string();
        non_ascii.push('é');
        assert!(parse(&non_ascii).is_err());
    }

    #[test]
    fn checksum_is_six_base62_characters_of_crc32() {
        assert_eq!(&checksum_of(""), b"000000");
        let value = crc32fast::hash(b"pat_");
        let mut expected = String::new();
        let mut v = value;
        for _ in 0..6 {
            expected.insert(0, char::from(BASE62[(v % 62) as usize]));
            v /= 62;
        }
        assert_eq!(
            std::str::from_utf8(&checksum_of("pat_")).expect("ascii"),
            expected
        );
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let generated = generate(Kind::Pat);
        let shown = format!("{generated:?}");
        assert!(!shown.contains(&generated.token));
        assert!(shown.contains(generated.prefix()));
    }

    #[test]
    fn scanner_regex_finds_generated_tokens_in_text() {
        let re = regex::Regex::new(SCANNER_REGEX).expect("valid regex");
        let generated = generate(Kind::ApiKey);
        let text = format!("export API_KEY={} # ci", generated.token);
        let found = re.find(&text).expect("found").as_str();
        assert_eq!(found, generated.token);
        assert!(parse(found).is_ok());
    }
}
