//! What the upstream sees: client-sent identity headers and credentials stripped, then the
//! verified identity set (SPEC §5).
//!
//! Security invariant: **strip before set**. Every client header under the identity prefix is
//! removed on every route, open or protected, whatever its case or number of copies; only then
//! are the gateway's own values inserted. `Authorization` and `X-API-Key` are removed unless
//! the route says `forward_credentials: true`.

use crate::conf::IdentityHeaderNames;
use crate::verify::Identity;
use http::HeaderName;
use pingora::http::{RequestHeader, ResponseHeader};

/// Removes every header under the identity prefix, and the credential headers unless kept.
pub fn strip(request: &mut RequestHeader, names: &IdentityHeaderNames, keep_credentials: bool) {
    // HeaderMap stores names lowercased, so one lowercase prefix test catches every spelling.
    let forged: Vec<HeaderName> = request
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with(&names.prefix_lower))
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

/// The identity headers as (name, value) pairs; a PAT-less identity has no user header.
fn pairs<'a>(names: &'a IdentityHeaderNames, identity: &'a Identity) -> Vec<(&'a str, String)> {
    let mut pairs = vec![
        (
            names.credential_type.as_str(),
            identity.kind.as_str().to_string(),
        ),
        (names.token_prefix.as_str(), identity.prefix.clone()),
        (names.org.as_str(), identity.org.clone()),
        (names.role.as_str(), identity.role.clone()),
        (names.permissions.as_str(), identity.permissions.join(" ")),
    ];
    if let Some(user) = &identity.user {
        pairs.push((names.user.as_str(), user.clone()));
    }
    pairs
}

/// Sets the identity headers for a verified request. Call [`strip`] first.
///
/// # Errors
/// A value is not a valid header value (ids are validated at creation, so this means a record
/// written by hand with control characters); the caller fails the request.
pub fn inject(
    request: &mut RequestHeader,
    names: &IdentityHeaderNames,
    identity: &Identity,
) -> pingora::Result<()> {
    for (name, value) in pairs(names, identity) {
        request.insert_header(name.to_string(), value)?;
    }
    Ok(())
}

/// Sets the identity headers on a forward-auth answer, for the calling proxy to copy into
/// the request it forwards.
///
/// # Errors
/// As [`inject`].
pub fn set_on_response(
    response: &mut ResponseHeader,
    names: &IdentityHeaderNames,
    identity: &Identity,
) -> pingora::Result<()> {
    for (name, value) in pairs(names, identity) {
        response.insert_header(name.to_string(), value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Kind;

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
            ("X-Authx", "kept: not under the prefix"),
            ("Accept", "*/*"),
        ]);
        strip(&mut req, &names(), false);
        let mut left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "x-authx"]);
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
        let identity = Identity {
            kind: Kind::Pat,
            prefix: "pat_abcdef".into(),
            user: Some("alice".into()),
            org: "acme".into(),
            role: "member".into(),
            permissions: vec!["repos:read".into(), "repos:write".into()],
        };
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
}
