//! What the upstream sees: client-sent identity headers and credentials stripped, then the
//! verified identity set (SPEC §5).
//!
//! Security invariant: **strip before set**. Every client header under the identity prefix is
//! removed on every route, open or protected, whatever its case or number of copies; only then
//! are the gateway's own values inserted. `Authorization` and `X-API-Key` are removed unless
//! the route says `forward_credentials: true`.

use crate::conf::IdentityHeaderNames;
use crate::store::PackedRecord;
use crate::token::Kind;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use std::sync::Arc;

/// Who is calling, as sent upstream: the verified credential (shared with the caches), the
/// role in effect for this request and its effective permissions. Every value is a ready
/// header value, so setting the identity headers copies no string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    credential: Arc<PackedRecord>,
    role: HeaderValue,
    permissions: HeaderValue,
}

impl Identity {
    /// `credential` acting with `role` and `permissions` (sorted, space-separated), as made
    /// by [`crate::permissions::Roles::header_values`].
    pub fn new(credential: Arc<PackedRecord>, role: HeaderValue, permissions: HeaderValue) -> Self {
        Identity {
            credential,
            role,
            permissions,
        }
    }

    /// PAT or API key.
    pub fn kind(&self) -> Kind {
        self.credential.kind()
    }

    /// The credential's public prefix.
    pub fn prefix(&self) -> &str {
        self.credential.prefix()
    }

    /// The PAT owner (none for API keys).
    pub fn user(&self) -> Option<&str> {
        self.credential.user()
    }

    /// The org the credential acts in.
    pub fn org(&self) -> &str {
        self.credential.org()
    }

    /// The role in effect for this request.
    pub fn role(&self) -> &str {
        self.role.to_str().unwrap_or_default()
    }

    /// Effective permissions, sorted and space-separated (the header's value).
    pub fn permissions(&self) -> &str {
        self.permissions.to_str().unwrap_or_default()
    }

    /// Whether the effective permissions include `permission`.
    pub fn has_permission(&self, permission: &str) -> bool {
        self.permissions().split(' ').any(|p| p == permission)
    }
}

/// Removes every header under the identity prefix, and the credential headers unless kept.
pub fn strip(request: &mut RequestHeader, names: &IdentityHeaderNames, keep_credentials: bool) {
    // HeaderMap stores names lowercased, so one lowercase prefix test catches every spelling.
    let forged: Vec<HeaderName> = request
        .headers
        .keys()
        .filter(|name| under_prefix(name.as_str(), &names.prefix_lower))
        .cloned()
        .collect();
    for name in &forged {
        request.remove_header(name);
    }
    if !keep_credentials {
        request.remove_header(&http::header::AUTHORIZATION);
        request.remove_header("x-api-key");
    }
}

/// Whether the (lowercase) header `name` is under the (lowercase) identity `prefix`, with an
/// underscore also matching a dash: PHP, Rack, uWSGI and other CGI-style servers turn both
/// `X-Auth-User` and `X-Auth_User` into `HTTP_X_AUTH_USER`, so the underscore spelling is as
/// much a forgery as the dashed one.
fn under_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(n, p)| n == p || (n == b'_' && p == b'-'))
}

/// The six identity header names, in the order of [`pairs`].
fn names_in_order(names: &IdentityHeaderNames) -> [&Bytes; 6] {
    [
        &names.credential_type,
        &names.token_prefix,
        &names.org,
        &names.role,
        &names.permissions,
        &names.user,
    ]
}

/// The identity headers as (name, value) pairs; an identity without a user has no user
/// header. `None` if a stored value is not a valid header value (ids are validated at
/// creation, so this means a record written by hand with control characters).
fn pairs(
    names: &IdentityHeaderNames,
    identity: &Identity,
) -> Option<[Option<(Bytes, HeaderValue)>; 6]> {
    let credential = &identity.credential;
    let user = match credential.user() {
        Some(_) => Some((names.user.clone(), credential.user_value()?)),
        None => None,
    };
    Some([
        Some((
            names.credential_type.clone(),
            HeaderValue::from_static(identity.kind().as_str()),
        )),
        Some((names.token_prefix.clone(), credential.prefix_value()?)),
        Some((names.org.clone(), credential.org_value()?)),
        Some((names.role.clone(), identity.role.clone())),
        Some((names.permissions.clone(), identity.permissions.clone())),
        user,
    ])
}

fn invalid_value() -> Box<pingora::Error> {
    pingora::Error::explain(
        pingora::ErrorType::InvalidHTTPHeader,
        "a stored identity value is not a valid header value",
    )
}

/// Sets the identity headers for a verified request. Call [`strip`] first.
///
/// # Errors
/// A value is not a valid header value (a record written by hand with control characters);
/// the caller fails the request.
pub fn inject(
    request: &mut RequestHeader,
    names: &IdentityHeaderNames,
    identity: &Identity,
) -> pingora::Result<()> {
    for (name, value) in pairs(names, identity)
        .ok_or_else(invalid_value)?
        .into_iter()
        .flatten()
    {
        request.insert_header(name, value)?;
    }
    Ok(())
}

/// Sets the identity headers on a forward-auth answer, for the calling proxy to copy into
/// the request it forwards: always all six names, each one empty where it does not apply (the
/// user of an API key; every one on an open route, `identity` `None`). A proxy that copies
/// only the headers an answer carries (Envoy's `allowed_upstream_headers`) thus still
/// overwrites every identity header a client forged.
///
/// # Errors
/// As [`inject`].
pub fn set_on_response(
    response: &mut ResponseHeader,
    names: &IdentityHeaderNames,
    identity: Option<&Identity>,
) -> pingora::Result<()> {
    let pairs = match identity {
        Some(identity) => pairs(names, identity).ok_or_else(invalid_value)?,
        None => Default::default(),
    };
    for (name, pair) in names_in_order(names).into_iter().zip(pairs) {
        let value = pair.map_or_else(|| HeaderValue::from_static(""), |(_, value)| value);
        response.insert_header(name.clone(), value)?;
    }
    Ok(())
}

/// An identity for unit tests: `pat_abcdef` in `acme`, owned by `user` (an API key when
/// `None`).
#[cfg(test)]
pub(crate) fn sample(
    user: Option<&str>,
    role: &'static str,
    permissions: &'static str,
) -> Identity {
    let record = crate::store::CredentialRecord {
        prefix: "pat_abcdef".into(),
        kind: if user.is_some() {
            Kind::Pat
        } else {
            Kind::ApiKey
        },
        hash: "$2b$04$hash".into(),
        user: user.map(Into::into),
        created_by: None,
        org: "acme".into(),
        role: user.is_none().then(|| role.to_string()),
        name: String::new(),
        permissions: None,
        created: 0,
        expires: None,
        revoked: None,
    };
    Identity::new(
        Arc::new(PackedRecord::pack("k", &record, None).expect("packs")),
        HeaderValue::from_static(role),
        HeaderValue::from_static(permissions),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> IdentityHeaderNames {
        let conf = crate::conf::Conf::parse(
            std::path::Path::new("t.yaml"),
            "listen: 127.0.0.1:1\nredis: {url: 'redis://127.0.0.1/'}\nroles: [{name: admin, permissions: ['*']}]\nroutes: [{name: r, path_prefix: /, upstream: '127.0.0.1:1'}]\n",
        )
        .expect("valid conf");
        conf.identity_headers
    }

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/", None).expect("request");
        for (name, value) in headers {
            request
                .append_header(name.to_string(), *value)
                .expect("header");
        }
        request
    }

    #[test]
    fn forged_headers_are_stripped_in_any_case_and_count() {
        let mut req = request(&[
            ("X-Auth-User", "mallory"),
            ("x-auth-user", "mallory2"),
            ("X-AUTH-ROLE", "admin"),
            ("x-Auth-Anything-Else", "1"),
            (
                "X-Auth_User",
                "underscore spelling: HTTP_X_AUTH_USER to a CGI-style server",
            ),
            ("x_auth_role", "admin"),
            ("X-Authx", "kept: not under the prefix"),
            ("X_Authx", "kept"),
            ("Accept", "*/*"),
        ]);
        strip(&mut req, &names(), false);
        let mut left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "x-authx", "x_authx"]);
    }

    #[test]
    fn a_forward_auth_answer_names_all_six_headers() {
        let names = names();
        let value = |response: &ResponseHeader, n: &str| {
            response
                .headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let api_key = sample(None, "viewer", "repos:read");
        let mut answer = ResponseHeader::build(200, None).expect("response");
        set_on_response(&mut answer, &names, Some(&api_key)).expect("valid values");
        assert_eq!(answer.headers.len(), 6);
        assert_eq!(value(&answer, "x-auth-user").as_deref(), Some(""));
        assert_eq!(value(&answer, "x-auth-role").as_deref(), Some("viewer"));
        let mut open = ResponseHeader::build(200, None).expect("response");
        set_on_response(&mut open, &names, None).expect("valid values");
        assert_eq!(open.headers.len(), 6);
        assert!(open.headers.values().all(|v| v.is_empty()));
    }

    #[test]
    fn credentials_are_stripped_unless_kept() {
        let headers = [("Authorization", "Bearer x"), ("X-API-Key", "y")];
        let mut stripped = request(&headers);
        strip(&mut stripped, &names(), false);
        assert!(stripped.headers.is_empty());
        let mut kept = request(&headers);
        strip(&mut kept, &names(), true);
        assert_eq!(kept.headers.len(), 2);
    }

    #[test]
    fn identity_is_set_after_stripping() {
        let mut req = request(&[("X-Auth-User", "mallory")]);
        let names = names();
        strip(&mut req, &names, false);
        let identity = sample(Some("alice"), "member", "repos:read repos:write");
        inject(&mut req, &names, &identity).expect("valid values");
        let get = |n: &str| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        assert_eq!(get("x-auth-user").as_deref(), Some("alice"));
        assert_eq!(req.headers.get_all("x-auth-user").iter().count(), 1);
        assert_eq!(get("x-auth-credential-type").as_deref(), Some("pat"));
        assert_eq!(
            get("x-auth-permissions").as_deref(),
            Some("repos:read repos:write")
        );
    }

    #[test]
    fn a_stored_value_that_is_not_a_header_value_fails_before_anything_is_set() {
        let mut req = request(&[("Accept", "*/*")]);
        let identity = sample(Some("al\nice"), "member", "repos:read");
        assert!(inject(&mut req, &names(), &identity).is_err());
        let left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"], "no identity header half-set");
    }
}
