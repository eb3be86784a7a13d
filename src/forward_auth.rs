//! Forward-auth mode: other proxies (nginx `auth_request`, Traefik `ForwardAuth`, Envoy's
//! HTTP `ext_authz`) ask patgate whether a request may pass, instead of sending it through.
//!
//! A request to the configured endpoint path (`forward_auth.path`) is not proxied: it names
//! the *original* request, and patgate decides that one with the same routes and checks,
//! answering 200 with the identity headers or the same 401/403/429/503 as the gateway.
//! The original method, host and URI come from the headers those proxies send:
//!
//! | | method | host | URI |
//! |---|---|---|---|
//! | Traefik | `X-Forwarded-Method` | `X-Forwarded-Host` | `X-Forwarded-Uri` |
//! | nginx (as configured in the README) | `X-Original-Method` | `Host` | `X-Original-URI` |
//! | Envoy (`path_prefix` = the endpoint) | the request's | `Host` | the path after the endpoint |
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

fn header<'a>(request: &'a RequestHeader, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The original request named by a forward-auth call to `endpoint`, or `None` when `request`
/// is not a call to the endpoint.
pub fn target<'a>(request: &'a RequestHeader, endpoint: &str) -> Option<Target<'a>> {
    let path = request.uri.path();
    let rest = path.strip_prefix(endpoint)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let method = header(request, "x-forwarded-method")
        .or_else(|| header(request, "x-original-method"))
        .unwrap_or(request.method.as_str());
    let host = header(request, "x-forwarded-host").or_else(|| header(request, "host"));
    let uri = header(request, "x-forwarded-uri")
        .or_else(|| header(request, "x-original-uri"))
        .unwrap_or(if rest.is_empty() { "/" } else { rest });
    let path = uri.split('?').next().unwrap_or(uri);
    Some(Target { method, host, path })
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
        let t = target(&r, "/_patgate/auth").expect("a forward-auth call");
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
        let t = target(&r, "/_patgate/auth").expect("a forward-auth call");
        assert_eq!(
            (t.method, t.host, t.path),
            ("DELETE", Some("api.example.com"), "/v1/repos/7")
        );
    }

    #[test]
    fn envoy_appends_the_original_path_to_the_endpoint() {
        let r = request(
            "/_patgate/auth/v1/repos/7?y=2",
            &[("Host", "api.example.com")],
        );
        let t = target(&r, "/_patgate/auth").expect("a forward-auth call");
        assert_eq!((t.method, t.path), ("GET", "/v1/repos/7"));
    }

    #[test]
    fn other_paths_are_not_forward_auth_calls() {
        assert_eq!(target(&request("/v1/repos", &[]), "/_patgate/auth"), None);
        assert_eq!(
            target(&request("/_patgate/authx", &[]), "/_patgate/auth"),
            None
        );
    }
}
