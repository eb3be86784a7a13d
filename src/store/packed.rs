//! [`PackedRecord`]: a credential record as the request path keeps it in memory.
//!
//! The verified-secret cache holds one per credential verified on this instance (100,000
//! credentials are 100,000 records), and tracked mode's record cache shares the same copy.
//! So it keeps only what a request reads (no label, creator or creation time), its strings in
//! one buffer, and its times as `NonZeroU64`: 96 bytes plus the strings, against about 350 for
//! a [`CredentialRecord`] with five separate string allocations.
//!
//! The buffer is a [`Bytes`], so the identity headers sent upstream (prefix, user, org) are
//! slices of it: a reference count, not a copy, per request.

use super::{CredentialRecord, StoreError};
use crate::token::Kind;
use bytes::Bytes;
use http::HeaderValue;
use std::num::NonZeroU64;
use std::ops::Range;

/// What the request path needs of a credential record (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedRecord {
    /// `prefix`, `hash`, `org`, `user` and `role`, one after the other.
    text: Bytes,
    /// Where `hash`, `org`, `user` and `role` end in `text` (`prefix` ends where `hash` starts).
    ends: [u16; 4],
    prefix_len: u8,
    kind: Kind,
    expires: Option<NonZeroU64>,
    /// In unix milliseconds (`revoked_ms`, else `revoked` × 1000).
    revoked_ms: Option<NonZeroU64>,
    permissions: Option<Box<[String]>>,
}

impl PackedRecord {
    /// Packs `record` (read from `key`, with its `revoked_ms` field if read); its label,
    /// creator and creation time are left out.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a field is too long to pack (a prefix over 255 bytes or
    /// all strings together over 64 KiB), which patgate never writes.
    pub fn pack(
        key: &str,
        record: &CredentialRecord,
        revoked_ms: Option<u64>,
    ) -> Result<PackedRecord, StoreError> {
        let corrupt = || StoreError::Corrupt {
            key: key.to_string(),
            problem: "fields too long".to_string(),
        };
        let parts = [
            record.hash.as_str(),
            record.org.as_str(),
            // An API key has no user (SPEC §5), whatever a hand-written record holds.
            match record.kind {
                Kind::Pat => record.user.as_deref().unwrap_or(""),
                Kind::ApiKey => "",
            },
            record.role.as_deref().unwrap_or(""),
        ];
        let mut text = String::with_capacity(
            record.prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>(),
        );
        text.push_str(&record.prefix);
        let prefix_len = u8::try_from(text.len()).map_err(|_| corrupt())?;
        let mut ends = [0u16; 4];
        for (end, part) in ends.iter_mut().zip(parts) {
            text.push_str(part);
            *end = u16::try_from(text.len()).map_err(|_| corrupt())?;
        }
        Ok(PackedRecord {
            text: Bytes::from(text),
            ends,
            prefix_len,
            kind: record.kind,
            expires: record.expires.and_then(NonZeroU64::new),
            // A revocation at time 0 is still a revocation.
            revoked_ms: record.revoked.map(|seconds| {
                NonZeroU64::new(revoked_ms.unwrap_or(seconds.saturating_mul(1000)))
                    .unwrap_or(NonZeroU64::MIN)
            }),
            permissions: record.permissions.clone().map(Vec::into_boxed_slice),
        })
    }

    fn range(&self, part: usize) -> Range<usize> {
        let start = match part {
            0 => usize::from(self.prefix_len),
            _ => usize::from(self.ends[part - 1]),
        };
        start..usize::from(self.ends[part])
    }

    fn str(&self, range: Range<usize>) -> &str {
        // Every range lies between whole strings that were pushed into `text`.
        std::str::from_utf8(&self.text[range]).unwrap_or_default()
    }

    fn value(&self, range: Range<usize>) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(self.text.slice(range)).ok()
    }

    /// The public 10-character prefix.
    pub fn prefix(&self) -> &str {
        self.str(0..usize::from(self.prefix_len))
    }

    /// bcrypt (PAT) or hex SHA-256 (API key) of prefix + secret.
    pub fn hash(&self) -> &str {
        self.str(self.range(0))
    }

    /// Whether the stored hash is `hash`, byte for byte (no UTF-8 check on the way).
    pub fn hash_is(&self, hash: &[u8]) -> bool {
        self.text[self.range(0)] == *hash
    }

    /// [`Self::hash`], sharing this record's buffer.
    pub fn hash_bytes(&self) -> Bytes {
        self.text.slice(self.range(0))
    }

    /// The org it acts in.
    pub fn org(&self) -> &str {
        self.str(self.range(1))
    }

    /// Whether it has an owning user (a PAT with a `user` field), without reading it.
    pub fn has_user(&self) -> bool {
        !self.range(2).is_empty()
    }

    /// The owning user (PATs only).
    pub fn user(&self) -> Option<&str> {
        let range = self.range(2);
        (!range.is_empty()).then(|| self.str(range))
    }

    /// The fixed role (API keys only).
    pub fn role(&self) -> Option<&str> {
        let range = self.range(3);
        (!range.is_empty()).then(|| self.str(range))
    }

    /// PAT or API key.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Expiry time, if any.
    pub fn expires(&self) -> Option<u64> {
        self.expires.map(NonZeroU64::get)
    }

    /// Revocation time in unix milliseconds, if revoked.
    pub fn revoked_ms(&self) -> Option<u64> {
        self.revoked_ms.map(NonZeroU64::get)
    }

    /// The optional narrowing list.
    pub fn permissions(&self) -> Option<&[String]> {
        self.permissions.as_deref()
    }

    /// The prefix as a header value, sharing this record's buffer.
    pub fn prefix_value(&self) -> Option<HeaderValue> {
        self.value(0..usize::from(self.prefix_len))
    }

    /// The org as a header value, sharing this record's buffer (`None` if it is not a valid
    /// header value: a record written by hand with control characters).
    pub fn org_value(&self) -> Option<HeaderValue> {
        self.value(self.range(1))
    }

    /// The owning user as a header value, sharing this record's buffer (`None` for API keys,
    /// or if it is not a valid header value).
    pub fn user_value(&self) -> Option<HeaderValue> {
        let range = self.range(2);
        if range.is_empty() {
            return None;
        }
        self.value(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, user: Option<&str>, role: Option<&str>) -> CredentialRecord {
        CredentialRecord {
            prefix: "pat_abcdef".into(),
            kind,
            hash: "$2b$04$abcdefghijklmnopqrstuuvwxyz".into(),
            user: user.map(Into::into),
            created_by: Some("root".into()),
            org: "acme".into(),
            role: role.map(Into::into),
            name: "laptop".into(),
            permissions: Some(vec!["repos:read".into()]),
            created: 1_700_000_000,
            expires: Some(1_800_000_000),
            revoked: None,
        }
    }

    #[test]
    fn a_pat_reads_back_what_was_packed() {
        let packed =
            PackedRecord::pack("k", &record(Kind::Pat, Some("alice"), None), None).expect("packs");
        assert_eq!(packed.prefix(), "pat_abcdef");
        assert_eq!(packed.hash(), "$2b$04$abcdefghijklmnopqrstuuvwxyz");
        assert_eq!(packed.org(), "acme");
        assert_eq!(packed.user(), Some("alice"));
        assert_eq!(packed.role(), None);
        assert_eq!(packed.kind(), Kind::Pat);
        assert_eq!(packed.expires(), Some(1_800_000_000));
        assert_eq!(packed.revoked_ms(), None);
        assert_eq!(packed.permissions(), Some(&["repos:read".to_string()][..]));
        assert_eq!(packed.user_value(), Some(HeaderValue::from_static("alice")));
        assert_eq!(packed.org_value(), Some(HeaderValue::from_static("acme")));
        assert_eq!(
            packed.prefix_value(),
            Some(HeaderValue::from_static("pat_abcdef"))
        );
    }

    #[test]
    fn an_api_key_has_a_role_and_no_user() {
        let packed = PackedRecord::pack("k", &record(Kind::ApiKey, None, Some("viewer")), None)
            .expect("packs");
        assert_eq!(packed.user(), None);
        assert_eq!(packed.user_value(), None);
        assert!(!packed.has_user());
        // A user field written by hand on an API key's record is not the key's user.
        let by_hand = PackedRecord::pack(
            "k",
            &record(Kind::ApiKey, Some("mallory"), Some("viewer")),
            None,
        )
        .expect("packs");
        assert_eq!(by_hand.user(), None);
        assert!(!by_hand.has_user());
        assert_eq!(packed.role(), Some("viewer"));
        assert_eq!(packed.org(), "acme");
    }

    #[test]
    fn revocations_keep_milliseconds_even_at_time_zero_and_fields_too_long_are_corrupt() {
        let mut revoked = record(Kind::Pat, Some("alice"), None);
        revoked.revoked = Some(1_700_000_000);
        let packed = PackedRecord::pack("k", &revoked, Some(1_700_000_000_123)).expect("packs");
        assert_eq!(packed.revoked_ms(), Some(1_700_000_000_123));
        let packed = PackedRecord::pack("k", &revoked, None).expect("packs");
        assert_eq!(packed.revoked_ms(), Some(1_700_000_000_000));
        revoked.revoked = Some(0);
        let packed = PackedRecord::pack("k", &revoked, None).expect("packs");
        assert!(packed.revoked_ms().is_some());
        let mut huge = record(Kind::Pat, Some("alice"), None);
        huge.org = "o".repeat(70_000);
        assert!(matches!(
            PackedRecord::pack("k", &huge, None),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_control_character_gives_no_header_value() {
        let mut odd = record(Kind::Pat, Some("al\nice"), None);
        odd.org = "ac\u{7f}me".into();
        let packed = PackedRecord::pack("k", &odd, None).expect("packs");
        assert_eq!(packed.user(), Some("al\nice"));
        assert_eq!(packed.user_value(), None);
        assert_eq!(packed.org_value(), None);
    }

    #[test]
    fn it_stays_small() {
        assert!(std::mem::size_of::<PackedRecord>() <= 96);
    }
}
