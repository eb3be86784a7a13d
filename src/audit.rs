//! The audit trail: who did what to which user or credential, and every denied request,
//! appended to a capped Redis stream (`audit`, trimmed to about `audit.max_entries`) and read
//! back by `patgate audit tail` and `GET /v1/audit`.
//!
//! An entry names the action, the actor (a user id, a credential prefix, or `cli:<os user>`),
//! the target (a user id or a credential prefix), the org it concerns, and details such as a
//! role change or a denial's reason code, route and client address. Never a secret: the only
//! credential material in an entry is the 10-character public prefix.

use crate::store::StoredAudit;
use serde::Serialize;
use std::collections::BTreeMap;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A PAT was created.
    TokenCreate,
    /// A PAT was revoked by its owner, an admin or an operator.
    TokenRevoke,
    /// An API key was created.
    ApikeyCreate,
    /// An API key was revoked.
    ApikeyRevoke,
    /// A membership was created or its role changed.
    MembershipPut,
    /// A membership ended.
    MembershipLeave,
    /// A user was suspended.
    UserSuspend,
    /// A suspended user was reactivated.
    UserReactivate,
    /// A user was removed for good.
    UserRemove,
    /// A credential reported as leaked was revoked.
    LeakRevoke,
    /// A dormant credential was revoked by a prune.
    PruneRevoke,
    /// The gateway denied a request on a protected route.
    RequestDenied,
}

impl Action {
    /// The stored word, e.g. `token.create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::ApikeyCreate => "apikey.create",
            Action::ApikeyRevoke => "apikey.revoke",
            Action::MembershipPut => "membership.put",
            Action::MembershipLeave => "membership.leave",
            Action::UserSuspend => "user.suspend",
            Action::UserReactivate => "user.reactivate",
            Action::UserRemove => "user.remove",
            Action::LeakRevoke => "leak.revoke",
            Action::PruneRevoke => "prune.revoke",
            Action::RequestDenied => "request.denied",
        }
    }
}

/// One entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What happened.
    pub action: Action,
    /// Who did it: a user id, a credential prefix, or `cli:<os user>`.
    pub actor: String,
    /// What it was done to: a user id or a credential prefix.
    pub target: String,
    /// The org concerned, when there is one.
    pub org: Option<String>,
    /// Further facts (`role`, `previous_role`, `reason`, `route`, `client`, ...).
    pub details: Vec<(&'static str, String)>,
}

impl Entry {
    /// An entry with no details yet.
    pub fn new(action: Action, actor: &str, target: &str, org: Option<&str>) -> Entry {
        Entry {
            action,
            actor: actor.to_string(),
            target: target.to_string(),
            org: org.map(str::to_string),
            details: Vec::new(),
        }
    }

    /// Adds a detail.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Entry {
        self.details.push((name, value.into()));
        self
    }

    /// The stream fields.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("action", self.action.as_str().to_string()),
            ("actor", self.actor.clone()),
            ("target", self.target.clone()),
        ];
        if let Some(org) = &self.org {
            fields.push(("org", org.clone()));
        }
        fields.extend(self.details.iter().cloned());
        fields
    }
}

/// An entry read back, as printed by the CLI and returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The stream id; pass it back as `before`/`after` to page.
    pub id: String,
    /// When it was appended (from the id), RFC 3339 UTC.
    pub time: String,
    /// The action word.
    pub action: String,
    /// Who did it.
    pub actor: String,
    /// What it was done to.
    pub target: String,
    /// The org concerned, if any.
    pub org: Option<String>,
    /// Every other field.
    pub details: BTreeMap<String, String>,
}

impl Record {
    /// Decodes a stored entry; unknown fields land in `details`.
    pub fn from_stored(stored: StoredAudit) -> Record {
        let mut record = Record {
            time: time_of_id(&stored.id),
            id: stored.id,
            action: String::new(),
            actor: String::new(),
            target: String::new(),
            org: None,
            details: BTreeMap::new(),
        };
        for (name, value) in stored.fields {
            match name.as_str() {
                "action" => record.action = value,
                "actor" => record.actor = value,
                "target" => record.target = value,
                "org" => record.org = Some(value),
                _ => {
                    record.details.insert(name, value);
                }
            }
        }
        record
    }

    /// One line for a terminal: time, action, then `name=value` pairs.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {} actor={} target={}",
            self.time, self.action, self.actor, self.target
        );
        if let Some(org) = &self.org {
            line.push_str(&format!(" org={org}"));
        }
        for (name, value) in &self.details {
            line.push_str(&format!(" {name}={value}"));
        }
        line
    }
}

/// The time encoded in a stream id (`<unix ms>-<seq>`), as RFC 3339.
pub fn time_of_id(id: &str) -> String {
    let millis: u64 = id
        .split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    crate::access_log::rfc3339(millis / 1000, (millis % 1000) as u32)
}

/// Whether `id` has the shape of a stream id, so that it can be passed to Redis as a bound.
pub fn is_stream_id(id: &str) -> bool {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    digits(ms) && digits(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_through_its_stream_fields() {
        let entry = Entry::new(Action::MembershipPut, "alice", "bob", Some("acme"))
            .with("role", "admin")
            .with("previous_role", "member");
        let stored = StoredAudit {
            id: "1764276328123-0".into(),
            fields: entry
                .fields()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        let record = Record::from_stored(stored);
        assert_eq!(record.action, "membership.put");
        assert_eq!(record.actor, "alice");
        assert_eq!(record.target, "bob");
        assert_eq!(record.org.as_deref(), Some("acme"));
        assert_eq!(record.details["role"], "admin");
        assert_eq!(record.details["previous_role"], "member");
        assert_eq!(record.time, "2025-11-27T20:45:28.123Z");
        assert_eq!(
            record.line(),
            "2025-11-27T20:45:28.123Z membership.put actor=alice target=bob org=acme previous_role=member role=admin"
        );
    }

    #[test]
    fn only_stream_ids_are_accepted_as_bounds() {
        assert!(is_stream_id("1764276328123-0"));
        assert!(is_stream_id("1764276328123"));
        assert!(!is_stream_id("+"));
        assert!(!is_stream_id("1-2-3"));
        assert!(!is_stream_id("12a-0"));
        assert!(!is_stream_id(""));
    }
}
