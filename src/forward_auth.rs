//! Forward-auth mode: other proxies (nginx `auth_request`, Traefik `ForwardAuth`, Envoy's
//! HTTP `ext_authz`) ask patgate whether a request may pass, instead of sending it through.
//!
//! A request to the configured endpoint path (`forward_auth.path`) is not proxied: it names
//! the *original* request, and patgate decides that one with the same routes and checks,
//! answering 200 with the identity headers or the same 401/403/429/503 as the gateway.
//! The original method, host and URI come from the headers the configured caller
//! (`forward_auth.caller`) sets, and from no other:
//!
//! | caller | method | host | URI |
//! |---|---|---|---|
//! | `traefik` | `X-Forwarded-Method` | `X-Forwarded-Host` | `X-Forwarded-Uri` |
//! | `nginx` (as configured in the README) | `X-Original-Method` | `Host` | `X-Original-URI` |
//! | `envoy` (`path_prefix` = the endpoint) | the request's | `Host` | the path after the endpoint |
//!
//! Why one family, named in the conf: each proxy overwrites the headers *it* sets, but passes
//! the client's others through to the auth call. Were patgate to read whichever family is
//! present, a client behind nginx could send `X-Forwarded-Uri: /healthz` and have an open
//! route decided in place of the one it is calling. A call that lacks its caller's headers is
//! refused (400), never decided on a guess.
//!
//! Pure code over the request header.

use pingora::http::RequestHeader;

/// The request to decide: method, host and path (query dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Host, possibly with a port.
    pub host: Option<&'a str>,
    /// Path without the query string.
    pub path: &'a str,
}

impl<'a> Target<'a> {
    /// The request itself (the normal, proxied case).
    pub fn of(request: &'a RequestHeader) -> Target<'a> {
        Target {
            method: request.method.as_str(),
            host: request.uri.host().or_else(|| header(request, "host")),
            path: request.uri.path(),
        }
    }
}

/// The proxy that calls the forward-auth endpoint (`forward_auth.caller`), which decides the
/// headers that name the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// nginx `auth_request`, with `X-Original-Method`, `X-Original-URI` and `Host` set.
    Nginx,
    /// Traefik `ForwardAuth`: `X-Forwarded-Method`, `X-Forwarded-Host`, `X-Forwarded-Uri`.
    Traefik,
    /// Envoy HTTP `ext_authz`: the original method, `Host`, and the path after the endpoint.
    Envoy,
}

impl Caller {
    /// Every caller, for messages.
    pub const NAMES: &'static str = "nginx, traefik or envoy";

    /// `nginx`, `traefik` or `envoy`.
    pub fn parse(name: &str) -> Option<Caller> {
        match name {
            "nginx" => Some(Caller::Nginx),
            "traefik" => Some(Caller::Traefik),
            "envoy" => Some(Caller::Envoy),
            _ => None,
        }
    }
}

/// A forward-auth call that does not name its original request: the header its caller sets
/// is missing (or not text), so the caller is not the configured one or is misconfigured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("forward-auth call without {0} (forward_auth.caller decides which headers are read)")]
pub struct Incomplete(pub &'static str);

fn header<'a>(request: &'a RequestHeader, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

fn required<'a>(request: &'a RequestHeader, name: &'static str) -> Result<&'a str, Incomplete> {
    header(request, name).ok_or(Incomplete(name))
}

/// The original request named by a forward-auth call to `endpoint` from `caller`: `None` when
/// `request` is not a call to the endpoint, an [`Incomplete`] error when it lacks the headers
/// `caller` sets.
pub fn target<'a>(
    request: &'a RequestHeader,
    endpoint: &str,
    caller: Caller,
) -> Option<Result<Target<'a>, Incomplete>> {
    let path = request.uri.path();
    let rest = path.strip_prefix(endpoint)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let named = || -> Result<(&'a str, Option<&'a str>, &'a str), Incomplete> {
        Ok(match caller {
            Caller::Traefik => (
                required(request, "x-forwarded-method")?,
                Some(required(request, "x-forwarded-host")?),
                required(request, "x-forwarded-uri")?,
            ),
            Caller::Nginx => (
                required(request, "x-original-method")?,
                Some(required(request, "host")?),
                required(request, "x-original-uri")?,
            ),
            Caller::Envoy => (
                request.method.as_str(),
                // Over HTTP/2 the host is the :authority, in the URI, not a Host header.
                request.uri.host().or_else(|| header(request, "host")),
                if rest.is_empty() { "/" } else { rest },
            ),
        })
    };
    Some(named().map(|(method, host, uri)| Target {
        method,
        host,
        path: uri.split('?').next().unwrap_or(uri),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", path.as_bytes(), None).expect("request");
        for (name, value) in headers {
            request
                .insert_header(name.to_string(), *value)
                .expect("header");
        }
        request
    }

    #[test]
    fn traefik_headers_name_the_original_request() {
        let r = request(
            "/_patgate/auth",
            &[
                ("X-Forwarded-Method", "POST"),
                ("X-Forwarded-Host", "api.example.com"),
                ("X-Forwarded-Uri", "/v1/repos?x=1"),
                ("Host", "patgate.internal"),
            ],
        );
        let t = target(&r, "/_patgate/auth", Caller::Traefik)
            .expect("a forward-auth call")
            .expect("complete");
        assert_eq!(
            (t.method, t.host, t.path),
            ("POST", Some("api.example.com"), "/v1/repos")
        );
    }

    #[test]
    fn nginx_headers_name_the_original_request() {
        let r = request(
            "/_patgate/auth",
            &[
                ("X-Original-Method", "DELETE"),
                ("X-Original-URI", "/v1/repos/7"),
                ("Host", "api.example.com"),
            ],
        );
        let t = target(&r, "/_patgate/auth", Caller::Nginx)
            .expect("a forward-auth call")
            .expect("complete");
        assert_eq!(
            (t.method, t.host, t.path),
            ("DELETE", Some("api.example.com"), "/v1/repos/7")
        );
    }

    #[test]
    fn only_the_configured_callers_headers_are_read() {
        // Behind nginx, the client's own X-Forwarded-* reach the auth call untouched.
        let forged = [
            ("X-Original-Method", "DELETE"),
            ("X-Original-URI", "/v1/billing"),
            ("Host", "api.example.com"),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Host", "other.example.com"),
            ("X-Forwarded-Uri", "/healthz"),
        ];
        let r = request("/_patgate/auth", &forged);
        let t = target(&r, "/_patgate/auth", Caller::Nginx)
            .expect("a forward-auth call")
            .expect("complete");
        assert_eq!(
            (t.method, t.host, t.path),
            ("DELETE", Some("api.example.com"), "/v1/billing")
        );
        // And behind Envoy, neither family counts: the call itself names the request.
        let r = request("/_patgate/auth/v1/billing", &forged);
        let t = target(&r, "/_patgate/auth", Caller::Envoy)
            .expect("a forward-auth call")
            .expect("complete");
        assert_eq!((t.method, t.path), ("GET", "/v1/billing"));
    }

    #[test]
    fn a_call_without_its_callers_headers_is_incomplete() {
        let nginx_style = request(
            "/_patgate/auth",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/v1/repos"),
            ],
        );
        assert_eq!(
            target(&nginx_style, "/_patgate/auth", Caller::Traefik),
            Some(Err(Incomplete("x-forwarded-method")))
        );
        let traefik_style = request(
            "/_patgate/auth",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/v1/repos"),
            ],
        );
        assert_eq!(
            target(&traefik_style, "/_patgate/auth", Caller::Traefik),
            Some(Err(Incomplete("x-forwarded-host")))
        );
        assert_eq!(
            target(&traefik_style, "/_patgate/auth", Caller::Nginx),
            Some(Err(Incomplete("x-original-method")))
        );
    }

    #[test]
    fn envoy_appends_the_original_path_to_the_endpoint() {
        let r = request(
            "/_patgate/auth/v1/repos/7?y=2",
            &[("Host", "api.example.com")],
        );
        let t = target(&r, "/_patgate/auth", Caller::Envoy)
            .expect("a forward-auth call")
            .expect("complete");
        assert_eq!((t.method, t.path), ("GET", "/v1/repos/7"));
    }

    #[test]
    fn other_paths_are_not_forward_auth_calls() {
        for caller in [Caller::Nginx, Caller::Traefik, Caller::Envoy] {
            assert_eq!(
                target(&request("/v1/repos", &[]), "/_patgate/auth", caller),
                None
            );
            assert_eq!(
                target(&request("/_patgate/authx", &[]), "/_patgate/auth", caller),
                None
            );
        }
    }
}
