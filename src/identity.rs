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

    /// The PAT owner (none for API keys, whatever their record holds: SPEC §5).
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

/// Whether the header `name` (any case) is under the (lowercase) identity `prefix`, with an
/// underscore also matching a dash: PHP, Rack, uWSGI and other CGI-style servers turn both
/// `X-Auth-User` and `X-Auth_User` into `HTTP_X_AUTH_USER`, so the underscore spelling is as
/// much a forgery as the dashed one.
fn under_prefix(name: &[u8], prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .iter()
            .zip(prefix.bytes())
            .all(|(&n, p)| n.to_ascii_lowercase() == p || (n == b'_' && p == b'-'))
}

/// Whether `name` is `X-API-Key` spelled with an underscore (`X_API_Key`, `x-api_key`): a
/// CGI-style server reads it as `HTTP_X_API_KEY`, the credential header, so it goes with the
/// credential. (`Authorization` has no dash to spell otherwise.)
fn is_underscored_api_key(name: &[u8]) -> bool {
    name.len() == crate::credential::X_API_KEY.as_str().len()
        && name.contains(&b'_')
        && under_prefix(name, crate::credential::X_API_KEY.as_str())
}

/// Whether a `Connection` token names a header the gateway sets: one under the identity
/// prefix, or the request id.
fn names_own_header(token: &[u8], prefix: &str) -> bool {
    under_prefix(token, prefix) || token.eq_ignore_ascii_case(X_REQUEST_ID.as_str().as_bytes())
}

/// Takes out of `Connection` every token that names a header the gateway sets.
///
/// A client may list header names in `Connection` to mark them hop-by-hop, and Pingora removes
/// the headers so named from the request it sends upstream, after this request was built. The
/// client's own headers of those names are already stripped here, so what such a token would
/// remove is the gateway's identity: `Connection: X-Auth-User` would send a PAT's request
/// upstream without its user. The other tokens (`keep-alive`, `close`, `upgrade`, other
/// names) keep their meaning.
fn keep_own_headers_end_to_end(headers: &mut http::HeaderMap, prefix: &str) {
    if !connection_tokens(headers).any(|token| names_own_header(token, prefix)) {
        return;
    }
    let kept: Vec<&[u8]> = connection_tokens(headers)
        .filter(|token| !names_own_header(token, prefix))
        .collect();
    // Tokens of a valid value, joined by ", ": a valid value again.
    let value = HeaderValue::from_bytes(&kept.join(&b", "[..]));
    headers.remove(http::header::CONNECTION);
    if let Ok(value) = value {
        if !value.is_empty() {
            headers.insert(http::header::CONNECTION, value);
        }
    }
}

/// The non-empty tokens of every `Connection` header, trimmed.
fn connection_tokens(headers: &http::HeaderMap) -> impl Iterator<Item = &[u8]> {
    (headers.get_all(http::header::CONNECTION).iter())
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
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

/// The identity headers' values, in [`names_in_order`]'s order; an identity without a user
/// has no user header. `None` if a stored value is not a valid header value (ids are
/// validated at creation, so this means a record written by hand with control characters).
fn values(identity: &Identity) -> Option<[Option<HeaderValue>; 6]> {
    let credential = &identity.credential;
    let user = if credential.has_user() {
        Some(credential.user_value()?)
    } else {
        None
    };
    Some([
        Some(HeaderValue::from_static(identity.kind().as_str())),
        Some(credential.prefix_value()?),
        Some(credential.org_value()?),
        Some(identity.role.clone()),
        Some(identity.permissions.clone()),
        user,
    ])
}

fn invalid_value() -> Box<pingora::Error> {
    pingora::Error::explain(
        pingora::ErrorType::InvalidHTTPHeader,
        "a stored identity value is not a valid header value",
    )
}

/// Makes `request` the request to forward upstream: its method, target and headers, less
/// every header under the identity prefix and (unless `keep_credentials`) the credential, plus
/// the request id and, for a verified `identity`, the identity headers (none on an open route,
/// `identity` `None`). Stripping is done before anything is set, so no client header can
/// survive under an identity name.
///
/// Rebuilt in place as a plain header map: the request's own map is taken over (not copied)
/// and Pingora's header-case map dropped, so header names reach the upstream lowercased (as
/// over HTTP/2, and as Envoy and HAProxy send them; names are case-insensitive, RFC 9110
/// §5.1). What that buys: each header is one insert of a name made once at conf load, into a
/// map reserved once, where Pingora's `insert_header` parses the name again and inserts it
/// into two maps that it grows on the way (BENCHMARKS.md).
///
/// # Errors
/// A stored value is not a valid header value (a record written by hand with control
/// characters: `request` is left as it was), or the original target cannot be restored; the
/// caller fails the request, and nothing is forwarded.
pub fn make_forwardable(
    request: &mut RequestHeader,
    names: &IdentityHeaderNames,
    keep_credentials: bool,
    request_id: HeaderValue,
    identity: Option<&Identity>,
) -> pingora::Result<()> {
    let values = match identity {
        Some(identity) => values(identity).ok_or_else(invalid_value)?,
        None => Default::default(),
    };
    // The URI gives the target back except for absolute-form or non-UTF-8 targets (rare),
    // which are kept verbatim as Pingora keeps them.
    let verbatim_target = match request.uri.path_and_query() {
        Some(target) if target.as_str().as_bytes() == request.raw_path() => None,
        _ => Some(request.raw_path().to_vec()),
    };
    let end_stream = request.send_end_stream();
    let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(request, empty));
    let headers = &mut parts.headers;
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str().as_bytes();
            under_prefix(name, &names.prefix_lower)
                || (!keep_credentials && is_underscored_api_key(name))
        })
        .cloned()
        .collect();
    for name in &forged {
        headers.remove(name);
    }
    keep_own_headers_end_to_end(headers, &names.prefix_lower);
    if !keep_credentials {
        headers.remove(http::header::AUTHORIZATION);
        headers.remove(crate::credential::X_API_KEY);
    }
    headers.reserve(values.len() + 1);
    headers.insert(X_REQUEST_ID, request_id);
    for (name, value) in names.lowercase.iter().zip(values) {
        if let Some(value) = value {
            headers.insert(name.clone(), value);
        }
    }
    *request = RequestHeader::from(parts);
    if let Some(end_stream) = end_stream {
        request.set_send_end_stream(end_stream);
    }
    match verbatim_target {
        Some(target) => request.set_raw_path(&target),
        None => Ok(()),
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Sets the identity headers on a forward-auth answer, for the calling proxy to copy into
/// the request it forwards: always all six names, each one empty where it does not apply (the
/// user of an API key; every one on an open route, `identity` `None`). A proxy that copies
/// only the headers an answer carries (Envoy's `allowed_upstream_headers`) thus still
/// overwrites every identity header a client forged.
///
/// # Errors
/// As [`make_forwardable`].
pub fn set_on_response(
    response: &mut ResponseHeader,
    names: &IdentityHeaderNames,
    identity: Option<&Identity>,
) -> pingora::Result<()> {
    let values = match identity {
        Some(identity) => values(identity).ok_or_else(invalid_value)?,
        None => Default::default(),
    };
    for (name, value) in names_in_order(names).into_iter().zip(values) {
        let value = value.unwrap_or_else(|| HeaderValue::from_static(""));
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
        crate::conf::Conf::minimal_with("").identity_headers
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

    /// What `make_forwardable` makes of a copy of `req` (request id `rid`).
    fn forwarded(
        req: &RequestHeader,
        keep_credentials: bool,
        identity: Option<&Identity>,
    ) -> pingora::Result<RequestHeader> {
        let rid = HeaderValue::from_static("rid");
        let mut req = req.clone();
        make_forwardable(&mut req, &names(), keep_credentials, rid, identity)?;
        Ok(req)
    }

    fn sorted_names(req: &RequestHeader) -> Vec<&str> {
        let mut names: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn forged_headers_are_stripped_in_any_case_and_count() {
        let req = request(&[
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
        let out = forwarded(&req, false, None).expect("open route");
        assert_eq!(
            sorted_names(&out),
            vec!["accept", "x-authx", "x-request-id", "x_authx"]
        );
        let identity = sample(Some("alice"), "member", "repos:read");
        let out = forwarded(&req, false, Some(&identity)).expect("valid values");
        let users: Vec<_> = out.headers.get_all("x-auth-user").iter().collect();
        assert_eq!(
            users,
            ["alice"],
            "the forged copies are gone, one value set"
        );
        assert_eq!(out.headers.get_all("x-auth-role").iter().count(), 1);
        assert!(out.headers.get("x-auth-anything-else").is_none());
        assert!(out.headers.get("x_auth_role").is_none());
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
    fn a_connection_header_cannot_mark_the_gateways_headers_hop_by_hop() {
        let mut req = request(&[
            ("Connection", "keep-alive, X-Auth-User,x-auth-role"),
            ("Connection", " X_Auth_Org , X-Request-Id, X-Hop"),
            ("X-Hop", "1"),
        ]);
        let identity = sample(Some("alice"), "member", "repos:read");
        let out = forwarded(&req, false, Some(&identity)).expect("valid values");
        let connection: Vec<_> = out.headers.get_all("connection").iter().collect();
        assert_eq!(connection, ["keep-alive, X-Hop"], "the other tokens kept");
        req.remove_header("x-hop");
        req.insert_header("Connection", "X-Auth-User, X-Request-Id")
            .expect("header");
        let out = forwarded(&req, false, Some(&identity)).expect("valid values");
        assert!(
            out.headers.get("connection").is_none(),
            "nothing left to say"
        );
        let plain = request(&[("Connection", "close")]);
        let out = forwarded(&plain, false, None).expect("open route");
        let connection: Vec<_> = out.headers.get_all("connection").iter().collect();
        assert_eq!(
            connection,
            ["close"],
            "untouched when it names none of ours"
        );
    }

    #[test]
    fn credentials_are_stripped_unless_kept() {
        let req = request(&[
            ("Authorization", "Bearer x"),
            ("X-API-Key", "y"),
            // CGI-style servers read these as X-API-Key too.
            ("X_API_Key", "z"),
            ("x-api_key", "w"),
            // Not the credential header: kept.
            ("X-API-Keys", "v"),
            ("X_API", "u"),
        ]);
        let stripped = forwarded(&req, false, None).expect("open route");
        assert_eq!(
            sorted_names(&stripped),
            vec!["x-api-keys", "x-request-id", "x_api"]
        );
        let kept = forwarded(&req, true, None).expect("open route");
        assert_eq!(
            sorted_names(&kept),
            vec![
                "authorization",
                "x-api-key",
                "x-api-keys",
                "x-api_key",
                "x-request-id",
                "x_api",
                "x_api_key"
            ]
        );
    }

    #[test]
    fn the_identity_and_request_id_are_set_and_the_target_kept() {
        let mut req = RequestHeader::build("POST", b"/v1/a%2Fb;p?q=1&r", None).expect("request");
        req.append_header("Host", "api.example.com").expect("host");
        let identity = sample(Some("alice"), "member", "repos:read repos:write");
        let out = forwarded(&req, false, Some(&identity)).expect("valid values");
        let get = |n: &str| out.headers.get(n).and_then(|v| v.to_str().ok());
        assert_eq!(get("x-auth-user"), Some("alice"));
        assert_eq!(get("x-auth-credential-type"), Some("pat"));
        assert_eq!(get("x-auth-token-prefix"), Some("pat_abcdef"));
        assert_eq!(get("x-auth-org"), Some("acme"));
        assert_eq!(get("x-auth-role"), Some("member"));
        assert_eq!(get("x-auth-permissions"), Some("repos:read repos:write"));
        assert_eq!(get("x-request-id"), Some("rid"));
        assert_eq!(out.method, http::Method::POST);
        assert_eq!(out.raw_path(), b"/v1/a%2Fb;p?q=1&r");
        let mut wire = Vec::new();
        out.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).expect("ascii");
        assert!(wire.contains("Host: api.example.com\r\n"), "{wire}");
        assert!(wire.contains("x-auth-user: alice\r\n"), "{wire}");
        let api_key = sample(None, "viewer", "repos:read");
        let out = forwarded(&req, false, Some(&api_key)).expect("valid values");
        assert!(
            out.headers.get("x-auth-user").is_none(),
            "an API key has no user"
        );
    }

    #[test]
    fn an_api_key_acts_as_no_user_even_with_a_user_field_written_by_hand() {
        let record = crate::store::CredentialRecord {
            prefix: "key_abcdef".into(),
            kind: Kind::ApiKey,
            hash: "0".repeat(64),
            user: Some("mallory".into()),
            created_by: Some("alice".into()),
            org: "acme".into(),
            role: Some("viewer".into()),
            name: String::new(),
            permissions: None,
            created: 0,
            expires: None,
            revoked: None,
        };
        let identity = Identity::new(
            Arc::new(PackedRecord::pack("k", &record, None).expect("packs")),
            HeaderValue::from_static("viewer"),
            HeaderValue::from_static("repos:read"),
        );
        assert_eq!(identity.user(), None);
        let out = forwarded(&request(&[]), false, Some(&identity)).expect("valid values");
        assert!(out.headers.get("x-auth-user").is_none());
    }

    #[test]
    fn a_stored_value_that_is_not_a_header_value_forwards_nothing() {
        let mut req = request(&[("Accept", "*/*"), ("X-Auth-User", "mallory")]);
        let identity = sample(Some("al\nice"), "member", "repos:read");
        let rid = HeaderValue::from_static("rid");
        assert!(make_forwardable(&mut req, &names(), false, rid, Some(&identity)).is_err());
        assert_eq!(
            sorted_names(&req),
            vec!["accept", "x-auth-user"],
            "left as it was"
        );
    }

    #[test]
    fn an_absolute_form_target_is_kept_verbatim() {
        let req = RequestHeader::build("GET", b"http://api.example.com/v1/x?y", None)
            .expect("absolute-form");
        let out = forwarded(&req, false, None).expect("open route");
        assert_eq!(out.raw_path(), req.raw_path());
    }
}
