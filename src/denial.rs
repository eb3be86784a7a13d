//! Every way a request is refused (SPEC §4), and how each one answers: status, error code,
//! fixed human message, `WWW-Authenticate` challenge, `Retry-After`, JSON body.
//!
//! Pure code. Only proxy.rs turns a [`Denial`] into bytes on the wire. Messages are fixed
//! sentences: detail (the cause, the route, the token prefix) goes to the log, never to the
//! client, and nothing here ever sees a secret.

use serde::Serialize;

/// Why a presented token is not accepted. All answer 401 `invalid_token`; only `Expired` and
/// `AccountInactive` have their own message, and both are decided after the secret matched,
/// so they tell nothing to someone who does not hold the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// Not a well-formed token, or a bad checksum.
    Malformed,
    /// No record for the prefix (never existed, or gone).
    Unknown,
    /// The secret does not match the stored hash.
    WrongSecret,
    /// The credential was revoked.
    Revoked,
    /// Past its expiry.
    Expired,
    /// PAT owner suspended, removed or unknown.
    AccountInactive,
}

impl InvalidReason {
    /// Stable machine word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::Malformed => "malformed",
            InvalidReason::Unknown => "unknown",
            InvalidReason::WrongSecret => "wrong_secret",
            InvalidReason::Revoked => "revoked",
            InvalidReason::Expired => "expired",
            InvalidReason::AccountInactive => "account_inactive",
        }
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No route matches host/method/path.
    NoRoute,
    /// The path is not canonical: dot or empty segments, encoded separators or unreserved
    /// characters ([`crate::routes::path_is_safe`]).
    BadPath,
    /// A forward-auth call without the headers its configured caller sets to name the
    /// original request.
    IncompleteForwardAuth,
    /// `Content-Length` with `Transfer-Encoding`, or several different `Content-Length`s: a
    /// request two parsers could frame differently (smuggling).
    AmbiguousLength,
    /// The request headers exceed `limits.max_header_bytes`.
    HeadersTooLarge,
    /// No credential on a protected route.
    MissingCredential {
        /// An `Authorization` header used a scheme other than Bearer.
        other_scheme: bool,
    },
    /// Two different credentials presented.
    AmbiguousCredential,
    /// The presented token is not accepted.
    InvalidToken {
        /// Why (logged; only expiry and inactivity change the message).
        reason: InvalidReason,
    },
    /// The PAT owner has no role in the token's org.
    NoOrgAccess,
    /// Effective permissions lack some the route requires.
    InsufficientScope {
        /// The required permissions that are missing.
        missing: Vec<String>,
    },
    /// Too many failed attempts.
    RateLimited {
        /// Seconds until retrying makes sense.
        retry_after: u64,
    },
    /// Redis unreachable, erroring or too slow.
    AuthUnavailable,
    /// The bcrypt pool's queue is full.
    Overloaded,
}

/// The JSON body of every denial.
#[derive(Debug, Serialize)]
struct Body<'a> {
    error: &'static str,
    reason: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing: Option<&'a [String]>,
}

impl Denial {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Denial::NoRoute => 404,
            Denial::BadPath
            | Denial::IncompleteForwardAuth
            | Denial::AmbiguousCredential
            | Denial::AmbiguousLength => 400,
            Denial::HeadersTooLarge => 431,
            Denial::MissingCredential { .. } | Denial::InvalidToken { .. } => 401,
            Denial::NoOrgAccess | Denial::InsufficientScope { .. } => 403,
            Denial::RateLimited { .. } => 429,
            Denial::AuthUnavailable | Denial::Overloaded => 503,
        }
    }

    /// The `error` code of SPEC §4.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::NoRoute => "no_route",
            Denial::BadPath => "invalid_path",
            Denial::AmbiguousLength | Denial::IncompleteForwardAuth => "invalid_request",
            Denial::HeadersTooLarge => "headers_too_large",
            Denial::MissingCredential { .. } => "missing_credential",
            Denial::AmbiguousCredential => "ambiguous_credential",
            Denial::InvalidToken { .. } => "invalid_token",
            Denial::NoOrgAccess => "no_org_access",
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::RateLimited { .. } => "rate_limited",
            Denial::AuthUnavailable => "auth_unavailable",
            Denial::Overloaded => "overloaded",
        }
    }

    /// A stable machine-readable reason, finer than the code where telling it is safe:
    /// unknown, wrong-secret and revoked tokens all read `revoked_or_unknown`.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NoRoute => "no_route",
            Denial::BadPath => "unsafe_path",
            Denial::AmbiguousLength => "ambiguous_length",
            Denial::IncompleteForwardAuth => "forward_auth_headers_missing",
            Denial::HeadersTooLarge => "headers_too_large",
            Denial::MissingCredential {
                other_scheme: false,
            } => "no_credential",
            Denial::MissingCredential { other_scheme: true } => "unsupported_scheme",
            Denial::AmbiguousCredential => "two_credentials",
            Denial::InvalidToken { reason } => match reason {
                InvalidReason::Malformed => "malformed",
                InvalidReason::Unknown | InvalidReason::WrongSecret | InvalidReason::Revoked => {
                    "revoked_or_unknown"
                }
                InvalidReason::Expired => "expired",
                InvalidReason::AccountInactive => "account_inactive",
            },
            Denial::NoOrgAccess => "org_mismatch",
            Denial::InsufficientScope { .. } => "missing_permission",
            Denial::RateLimited { .. } => "too_many_failures",
            Denial::AuthUnavailable => "redis_unavailable",
            Denial::Overloaded => "verification_queue_full",
        }
    }

    /// The fixed human sentence for the client.
    pub fn message(&self) -> String {
        match self {
            Denial::NoRoute => "No route matches this host, method and path.".into(),
            Denial::BadPath => "The request path is not canonical: it has dot or empty segments, or encodes characters that must be sent as they are.".into(),
            Denial::AmbiguousLength => "The request's length is ambiguous (Content-Length with Transfer-Encoding, or conflicting Content-Length values).".into(),
            Denial::HeadersTooLarge => "The request headers are too large.".into(),
            Denial::IncompleteForwardAuth => "This forward-auth call lacks the headers that name the original request for the configured caller.".into(),
            Denial::MissingCredential { other_scheme: false } => {
                "This route requires a credential in 'Authorization: Bearer <token>' or 'X-API-Key: <token>'.".into()
            }
            Denial::MissingCredential { other_scheme: true } => {
                "Only the Bearer scheme is accepted: send 'Authorization: Bearer <token>' or 'X-API-Key: <token>'.".into()
            }
            Denial::AmbiguousCredential => "Two different credentials were presented; send exactly one.".into(),
            Denial::InvalidToken { reason: InvalidReason::Expired } => "The token has expired.".into(),
            Denial::InvalidToken { reason: InvalidReason::AccountInactive } => {
                "The account that owns this token is not active.".into()
            }
            Denial::InvalidToken { .. } => "The token is invalid or has been revoked.".into(),
            Denial::NoOrgAccess => "The token's owner has no role in the token's organization.".into(),
            Denial::InsufficientScope { missing } => {
                format!("The credential lacks the permissions this route requires: {}.", missing.join(", "))
            }
            Denial::RateLimited { .. } => "Too many failed attempts; retry later.".into(),
            Denial::AuthUnavailable => "Authentication is temporarily unavailable; retry later.".into(),
            Denial::Overloaded => "The gateway is busy verifying credentials; retry later.".into(),
        }
    }

    /// The RFC 6750 challenge for 401s (and 403 `insufficient_scope`), if any.
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        match self {
            Denial::MissingCredential { .. } => Some(format!("Bearer realm=\"{realm}\"")),
            Denial::InvalidToken { .. } => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                self.message()
            )),
            Denial::InsufficientScope { missing } => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                missing.join(" ")
            )),
            _ => None,
        }
    }

    /// Seconds for `Retry-After`, on 429 and 503.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Denial::RateLimited { retry_after } => Some(*retry_after),
            Denial::AuthUnavailable | Denial::Overloaded => Some(1),
            _ => None,
        }
    }

    /// The JSON body: `{"error": ..., "message": ...}` (plus `missing` on insufficient scope).
    pub fn body(&self) -> Vec<u8> {
        let message = self.message();
        let missing = match self {
            Denial::InsufficientScope { missing } => Some(missing.as_slice()),
            _ => None,
        };
        let body = Body {
            error: self.code(),
            reason: self.reason(),
            message: &message,
            missing,
        };
        serde_json::to_vec(&body).expect("a struct of strings always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_follow_the_spec_table() {
        let table = [
            (Denial::NoRoute, 404, "no_route"),
            (
                Denial::MissingCredential {
                    other_scheme: false,
                },
                401,
                "missing_credential",
            ),
            (Denial::AmbiguousCredential, 400, "ambiguous_credential"),
            (
                Denial::InvalidToken {
                    reason: InvalidReason::Revoked,
                },
                401,
                "invalid_token",
            ),
            (Denial::NoOrgAccess, 403, "no_org_access"),
            (
                Denial::InsufficientScope {
                    missing: vec!["a:b".into()],
                },
                403,
                "insufficient_scope",
            ),
            (Denial::RateLimited { retry_after: 30 }, 429, "rate_limited"),
            (Denial::AuthUnavailable, 503, "auth_unavailable"),
            (Denial::Overloaded, 503, "overloaded"),
            (Denial::BadPath, 400, "invalid_path"),
            (Denial::IncompleteForwardAuth, 400, "invalid_request"),
        ];
        for (denial, status, code) in table {
            assert_eq!(denial.status(), status, "{denial:?}");
            assert_eq!(denial.code(), code);
        }
    }

    #[test]
    fn wrong_secret_and_unknown_and_revoked_look_the_same() {
        let bodies: Vec<Vec<u8>> = [
            InvalidReason::Unknown,
            InvalidReason::WrongSecret,
            InvalidReason::Revoked,
        ]
        .into_iter()
        .map(|reason| Denial::InvalidToken { reason }.body())
        .collect();
        assert_eq!(bodies[0], bodies[1]);
        assert_eq!(bodies[1], bodies[2]);
    }

    #[test]
    fn reasons_never_tell_unknown_wrong_and_revoked_apart() {
        let reasons: Vec<&str> = [
            InvalidReason::Unknown,
            InvalidReason::WrongSecret,
            InvalidReason::Revoked,
        ]
        .into_iter()
        .map(|reason| Denial::InvalidToken { reason }.reason())
        .collect();
        assert_eq!(reasons, vec!["revoked_or_unknown"; 3]);
        let expired = Denial::InvalidToken {
            reason: InvalidReason::Expired,
        };
        let body: serde_json::Value = serde_json::from_slice(&expired.body()).expect("json");
        assert_eq!(body["reason"], "expired");
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let missing = Denial::MissingCredential {
            other_scheme: false,
        };
        assert_eq!(
            missing.www_authenticate("patgate").as_deref(),
            Some("Bearer realm=\"patgate\"")
        );
        let invalid = Denial::InvalidToken {
            reason: InvalidReason::Expired,
        };
        let challenge = invalid.www_authenticate("patgate").expect("challenge");
        assert!(challenge.starts_with("Bearer realm=\"patgate\", error=\"invalid_token\""));
        assert!(challenge.contains("expired"));
        assert_eq!(Denial::NoRoute.www_authenticate("patgate"), None);
    }

    #[test]
    fn only_429_and_503_carry_retry_after() {
        assert_eq!(Denial::AuthUnavailable.retry_after(), Some(1));
        assert_eq!(
            Denial::RateLimited { retry_after: 7 }.retry_after(),
            Some(7)
        );
        assert_eq!(Denial::NoOrgAccess.retry_after(), None);
    }

    #[test]
    fn insufficient_scope_body_lists_what_is_missing() {
        let denial = Denial::InsufficientScope {
            missing: vec!["repos:write".into(), "billing:read".into()],
        };
        let body: serde_json::Value = serde_json::from_slice(&denial.body()).expect("json");
        assert_eq!(body["error"], "insufficient_scope");
        assert_eq!(
            body["missing"],
            serde_json::json!(["repos:write", "billing:read"])
        );
        assert!(body["message"]
            .as_str()
            .expect("string")
            .contains("repos:write, billing:read"));
    }
}
