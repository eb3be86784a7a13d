//! The route table: which route a request belongs to, most specific match first.
//!
//! Pure code. Specificity is decided once, when the table is built: routes are sorted by
//! (host exact > host `*.suffix`, longer suffix first > any host), then longer path prefix,
//! then "has a method list" over "any method". The first route in that order that matches
//! is the most specific one, so [`RouteTable::lookup`] is a single ordered scan.
//!
//! Path prefixes match on segment boundaries: `/v1/repos` matches `/v1/repos`,
//! `/v1/repos/x` and `/v1/repos?q`, never `/v1/repository`.

use crate::tls::UpstreamTls;
use pingora::upstreams::peer::HttpPeer;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Which hosts a route serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// No `host:` key: every host.
    Any,
    /// `host: api.example.com` (stored lowercase).
    Exact(String),
    /// `host: "*.example.com"`, stored as `.example.com`: any subdomain, not the bare domain.
    Suffix(String),
}

impl HostMatch {
    /// Parses the conf's `host:` value.
    pub fn parse(host: Option<&str>) -> Result<HostMatch, String> {
        let Some(host) = host else {
            return Ok(HostMatch::Any);
        };
        let host = host.to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        };
        if let Some(suffix) = host.strip_prefix("*.") {
            if valid(suffix) && !suffix.starts_with('.') {
                return Ok(HostMatch::Suffix(format!(".{suffix}")));
            }
        } else if valid(&host) {
            return Ok(HostMatch::Exact(host));
        }
        Err(format!("{host:?} is not a host name or *.suffix pattern"))
    }

    fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(want), Some(host)) => want.eq_ignore_ascii_case(host),
            (HostMatch::Suffix(suffix), Some(host)) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
            (_, None) => false,
        }
    }

    /// Sort key: exact hosts first, then longer suffixes, then any host.
    fn specificity(&self) -> (u8, usize) {
        match self {
            HostMatch::Exact(h) => (2, h.len()),
            HostMatch::Suffix(s) => (1, s.len()),
            HostMatch::Any => (0, 0),
        }
    }
}

/// What a route asks of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `auth: none`: proxied without a credential; forged identity headers are still stripped.
    Open,
    /// A valid credential whose effective permissions include every one listed.
    Protected {
        /// The route's `require:` list (may be empty: any valid credential).
        require: Vec<String>,
    },
}

impl Access {
    /// Whether passing this guarantees passing `other`: `other` is open, or both are
    /// protected and this requires every permission `other` requires.
    pub fn at_least_as_strict_as(&self, other: &Access) -> bool {
        match (self, other) {
            (_, Access::Open) => true,
            (Access::Open, Access::Protected { .. }) => false,
            (Access::Protected { require: mine }, Access::Protected { require: theirs }) => {
                theirs.iter().all(|p| mine.contains(p))
            }
        }
    }
}

/// One validated route.
#[derive(Debug)]
pub struct Route {
    /// The route's name: used in logs and metric labels.
    pub name: String,
    /// Hosts it serves.
    pub host: HostMatch,
    /// Uppercase methods it serves; `None` for all.
    pub methods: Option<Vec<String>>,
    /// Path prefix, starting with `/`.
    pub path_prefix: String,
    /// Upstream addresses, used round-robin.
    pub upstreams: Vec<SocketAddr>,
    /// Open or protected.
    pub access: Access,
    /// Whether `Authorization`/`X-API-Key` are passed to the upstream.
    pub forward_credentials: bool,
    /// Whether the upstream also gets a signed `X-Auth-Assertion`.
    pub sign_identity: bool,
    /// `upstream_tls:`: the upstreams speak TLS and are verified (SNI, CA); `None` for plain
    /// HTTP.
    pub upstream_tls: Option<UpstreamTls>,
    /// Each upstream's host as written in the conf (same order as `upstreams`): the default
    /// SNI and the name its certificate is verified against.
    pub upstream_hosts: Vec<String>,
    /// Round-robin cursor over `upstreams`.
    next: AtomicUsize,
}

impl Route {
    /// Builds a route; `validate` in conf.rs has already checked every field.
    pub fn new(
        name: String,
        host: HostMatch,
        methods: Option<Vec<String>>,
        path_prefix: String,
        upstreams: Vec<SocketAddr>,
        access: Access,
        forward_credentials: bool,
    ) -> Route {
        Route {
            name,
            host,
            methods,
            path_prefix,
            upstreams,
            access,
            forward_credentials,
            sign_identity: false,
            upstream_tls: None,
            upstream_hosts: Vec::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// The same route, with `sign_identity` set to `on`.
    pub fn signing_identity(mut self, on: bool) -> Route {
        self.sign_identity = on;
        self
    }

    /// The same route, speaking TLS to its upstreams when `tls` is set; `hosts` are the
    /// upstreams' names as written, in the order of `upstreams`.
    pub fn speaking_tls(mut self, tls: Option<UpstreamTls>, hosts: Vec<String>) -> Route {
        self.upstream_tls = tls;
        self.upstream_hosts = hosts;
        self
    }

    /// The next upstream address in round-robin order.
    pub fn next_upstream(&self) -> SocketAddr {
        self.upstreams[self.next_index()]
    }

    /// The next upstream's peer: plain HTTP, or TLS verified as `upstream_tls` says.
    pub fn next_peer(&self) -> HttpPeer {
        let i = self.next_index();
        let addr = self.upstreams[i];
        match &self.upstream_tls {
            None => HttpPeer::new(addr, false, String::new()),
            Some(tls) => {
                // conf.rs gives every upstream its host; the address stands in otherwise.
                let host = self
                    .upstream_hosts
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| addr.ip().to_string());
                tls.peer(addr, &host)
            }
        }
    }

    fn next_index(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.upstreams.len()
    }

    fn matches(&self, host: Option<&str>, method: &str, path: &str, any_case: bool) -> bool {
        self.host.matches(host)
            && path_has_prefix(path, &self.path_prefix, any_case)
            && self
                .methods
                .as_ref()
                .is_none_or(|m| m.iter().any(|m| m == method))
    }

    fn specificity(&self) -> ((u8, usize), usize, bool) {
        (
            self.host.specificity(),
            self.path_prefix.len(),
            self.methods.is_some(),
        )
    }

    /// Whether two routes could both claim one request with equal specificity.
    pub fn conflicts_with(&self, other: &Route) -> bool {
        if self.host != other.host || self.path_prefix != other.path_prefix {
            return false;
        }
        match (&self.methods, &other.methods) {
            (None, None) => true,
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            _ => false,
        }
    }
}

/// Segment-aware prefix test: `/v1/repos` covers `/v1/repos`, `/v1/repos/…` and `/v1/repos?…`.
/// A `;` is part of its segment here (`/v1/repos;x` is not under `/v1/repos`), as nginx, Envoy,
/// Go and Express read it; [`RouteTable::lookup`] also reads the path as Tomcat does.
///
/// With `any_case`, ASCII letters of the prefix match in either case (a case-insensitive
/// server's reading of the path).
fn path_has_prefix(path: &str, prefix: &str, any_case: bool) -> bool {
    let rest = if any_case {
        path.get(..prefix.len())
            .filter(|head| head.eq_ignore_ascii_case(prefix))
            .and_then(|_| path.get(prefix.len()..))
    } else {
        path.strip_prefix(prefix)
    };
    match rest {
        Some(rest) => {
            prefix.ends_with('/')
                || rest.is_empty()
                || rest.starts_with('/')
                || rest.starts_with('?')
        }
        None => false,
    }
}

/// A path whose readings take routes neither of which is at least as strict as the other:
/// upstreams that drop `;` segment parameters (Tomcat, Jetty, Spring) and upstreams that keep
/// them in the segment (nginx, Envoy, Go, Express), or upstreams that route case-insensitively
/// (ASP.NET Core) and those that do not, would serve resources the conf guards differently, so
/// it is refused (400 `invalid_path`) rather than routed on a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmbiguousPath;

/// All routes, sorted most specific first.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    /// Some route's prefix has an upper-case letter, so even a lower-case path has a
    /// case-insensitive reading of its own.
    mixed_case_prefixes: bool,
}

impl RouteTable {
    /// Sorts `routes` by specificity. Conflicting routes must have been refused by the caller.
    pub fn new(mut routes: Vec<Route>) -> RouteTable {
        // Stable sort: among equally specific routes (which cannot overlap), conf order is kept.
        routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        let mixed_case_prefixes = routes
            .iter()
            .any(|r| r.path_prefix.bytes().any(|b| b.is_ascii_uppercase()));
        RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
            mixed_case_prefixes,
        }
    }

    /// The most specific route for a request, if any. `host` may carry a port; `path` may
    /// carry a query string.
    ///
    /// The host is compared without its port and without a trailing dot (`api.example.com.`
    /// is the same name, fully qualified).
    ///
    /// The path is read as the servers behind a gateway may read it: literally; as Tomcat does
    /// when it has `;` parameters ([`routing_path`]); and case-insensitively, as ASP.NET Core
    /// does, when case could matter (the path or a prefix has an upper-case letter). When the
    /// readings take different routes, the strictest is used, so whichever kind of server the
    /// upstream is, the request passed every check its reading of the path calls for
    /// (`/v1/billing;jsessionid=1` under a stricter `/v1/billing` than `/v1`; `/v1/public;x`
    /// and `/V1/Public` under a protected `/v1` rather than an open `/v1/public`).
    ///
    /// # Errors
    /// [`AmbiguousPath`] when two readings take routes neither of which is at least as strict
    /// as the other, or only one of them has a route.
    pub fn lookup(
        &self,
        host: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<Option<&Arc<Route>>, AmbiguousPath> {
        let host = host.map(|h| {
            let name = strip_port(h);
            name.strip_suffix('.').unwrap_or(name)
        });
        let find = |path: &str, any_case: bool| {
            self.routes
                .iter()
                .find(|r| r.matches(host, method, path, any_case))
        };
        let literal = find(path, false);
        let params = path.contains(';');
        let case = self.mixed_case_prefixes || path.bytes().any(|b| b.is_ascii_uppercase());
        if !params && !case {
            return Ok(literal);
        }
        let without_params = routing_path(path);
        let mut chosen = literal;
        if params {
            chosen = stricter(chosen, find(&without_params, false))?;
        }
        if case {
            chosen = stricter(chosen, find(path, true))?;
            if params {
                chosen = stricter(chosen, find(&without_params, true))?;
            }
        }
        Ok(chosen)
    }

    /// Routes, most specific first.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|r| r.as_ref())
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The stricter of the routes two readings of a path take ([`RouteTable::lookup`]).
fn stricter<'a>(
    a: Option<&'a Arc<Route>>,
    b: Option<&'a Arc<Route>>,
) -> Result<Option<&'a Arc<Route>>, AmbiguousPath> {
    match (a, b) {
        (None, None) => Ok(None),
        (Some(a), Some(b)) if Arc::ptr_eq(a, b) => Ok(Some(a)),
        (Some(a), Some(b)) if a.access.at_least_as_strict_as(&b.access) => Ok(Some(a)),
        (Some(a), Some(b)) if b.access.at_least_as_strict_as(&a.access) => Ok(Some(b)),
        _ => Err(AmbiguousPath),
    }
}

/// `api.example.com:8080` → `api.example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// Whether a request path may be routed. Refused: any spelling that a common upstream server
/// would normalise into a different path than the one the route was chosen for, since the
/// path is forwarded as sent:
/// - dot segments (`/a/../b`), also with parameters (`/a/..;/b`, which Tomcat and Spring
///   resolve);
/// - empty segments (`/a//b`, which nginx and many frameworks merge), also when only
///   parameters (`/a/;x/b`);
/// - backslashes, and the percent-encoded separators and NUL (`%2e`, `%2f`, `%5c`, `%00`);
/// - percent-encoded unreserved characters (`/v1/%62illing`): RFC 3986 says they are never
///   encoded, and servers decode them, so a client sending one is choosing a spelling that
///   routes differently from its meaning.
pub fn path_is_safe(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    if !path.starts_with('/') || path.contains('\\') || path.contains("//") {
        return false;
    }
    if encodes_unreserved_or_separator(path.as_bytes()) {
        return false;
    }
    // A segment that is only parameters (`/v1/;x/billing`) is an empty segment to a server
    // that drops parameters, as `//` is.
    !path.split('/').any(|segment| {
        let name = segment.split(';').next().unwrap_or(segment);
        name == "." || name == ".." || segment.starts_with(';')
    })
}

/// Whether `path` percent-encodes a character that must not be: an unreserved one
/// (`A-Z a-z 0-9 - . _ ~`), a separator (`/`, `\`, and `;`, which a hop that decodes before a
/// parameter-dropping server would turn into one) or NUL.
fn encodes_unreserved_or_separator(path: &[u8]) -> bool {
    path.windows(3).any(|w| {
        let decoded = match (w[0], hex(w[1]), hex(w[2])) {
            (b'%', Some(high), Some(low)) => high << 4 | low,
            _ => return false,
        };
        decoded.is_ascii_alphanumeric()
            || matches!(decoded, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\' | b';' | 0)
    })
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The path as Tomcat, Jetty and Spring read it: each segment without its `;` parameters
/// (`/v1;x/billing` → `/v1/billing`). [`RouteTable::lookup`] refuses a path whose route
/// this changes. Borrowed unless the path has a `;`.
pub fn routing_path(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let mut routed = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            routed.push('/');
        }
        routed.push_str(segment.split(';').next().unwrap_or(segment));
    }
    if let Some(query) = query {
        routed.push('?');
        routed.push_str(query);
    }
    Cow::Owned(routed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: Option<&str>, methods: Option<&[&str]>, prefix: &str) -> Route {
        Route::new(
            name.to_string(),
            HostMatch::parse(host).expect("valid host"),
            methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            prefix.to_string(),
            vec!["127.0.0.1:3000".parse().expect("addr")],
            Access::Open,
            false,
        )
    }

    fn name<'a>(
        table: &'a RouteTable,
        host: Option<&str>,
        method: &str,
        path: &str,
    ) -> Option<&'a str> {
        table
            .lookup(host, method, path)
            .ok()
            .flatten()
            .map(|r| r.name.as_str())
    }

    #[test]
    fn longest_path_prefix_wins() {
        let table = RouteTable::new(vec![
            route("root", None, None, "/"),
            route("repos", None, None, "/v1/repos"),
        ]);
        assert_eq!(name(&table, None, "GET", "/v1/repos/42"), Some("repos"));
        assert_eq!(name(&table, None, "GET", "/v1/other"), Some("root"));
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let table = RouteTable::new(vec![route("repos", None, None, "/v1/repos")]);
        assert_eq!(name(&table, None, "GET", "/v1/repos"), Some("repos"));
        assert_eq!(name(&table, None, "GET", "/v1/repos?page=2"), Some("repos"));
        assert_eq!(name(&table, None, "GET", "/v1/repos/x"), Some("repos"));
        assert_eq!(name(&table, None, "GET", "/v1/repository"), None);
    }

    #[test]
    fn host_beats_path_length() {
        let table = RouteTable::new(vec![
            route("long-any-host", None, None, "/v1/repos/deep"),
            route("exact-host", Some("api.example.com"), None, "/"),
        ]);
        assert_eq!(
            name(&table, Some("api.example.com"), "GET", "/v1/repos/deep"),
            Some("exact-host")
        );
        assert_eq!(
            name(&table, Some("other.example.com"), "GET", "/v1/repos/deep"),
            Some("long-any-host")
        );
    }

    #[test]
    fn exact_host_beats_wildcard_and_wildcard_needs_a_subdomain() {
        let table = RouteTable::new(vec![
            route("wild", Some("*.example.com"), None, "/"),
            route("exact", Some("API.example.com"), None, "/"),
        ]);
        assert_eq!(
            name(&table, Some("api.example.com:8443"), "GET", "/"),
            Some("exact")
        );
        assert_eq!(
            name(&table, Some("eu.Example.com"), "GET", "/"),
            Some("wild")
        );
        assert_eq!(name(&table, Some("example.com"), "GET", "/"), None);
        assert_eq!(name(&table, Some("evilexample.com"), "GET", "/"), None);
        assert_eq!(name(&table, None, "GET", "/"), None);
    }

    #[test]
    fn a_method_list_beats_any_method_on_the_same_prefix() {
        let table = RouteTable::new(vec![
            route("any", None, None, "/v1/repos"),
            route("writes", None, Some(&["POST", "DELETE"]), "/v1/repos"),
        ]);
        assert_eq!(name(&table, None, "POST", "/v1/repos"), Some("writes"));
        assert_eq!(name(&table, None, "GET", "/v1/repos"), Some("any"));
    }

    #[test]
    fn methods_restrict_and_nothing_matching_is_none() {
        let table = RouteTable::new(vec![route(
            "reads",
            None,
            Some(&["GET", "HEAD"]),
            "/v1/repos",
        )]);
        assert_eq!(name(&table, None, "HEAD", "/v1/repos"), Some("reads"));
        assert_eq!(name(&table, None, "POST", "/v1/repos"), None);
    }

    #[test]
    fn overlapping_method_lists_conflict() {
        let a = route("a", None, Some(&["GET"]), "/x");
        let b = route("b", None, Some(&["GET", "POST"]), "/x");
        let c = route("c", None, Some(&["PUT"]), "/x");
        let d = route("d", None, None, "/x");
        assert!(a.conflicts_with(&b));
        assert!(!a.conflicts_with(&c));
        assert!(!a.conflicts_with(&d));
        assert!(d.conflicts_with(&route("e", None, None, "/x")));
    }

    #[test]
    fn upstreams_rotate() {
        let mut r = route("lb", None, None, "/");
        r.upstreams = vec![
            "127.0.0.1:1".parse().expect("a"),
            "127.0.0.1:2".parse().expect("a"),
        ];
        let picks: Vec<u16> = (0..4).map(|_| r.next_upstream().port()).collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
    }

    #[test]
    fn bad_host_patterns_are_refused() {
        for bad in ["*", "*.", "a b", "*.*.x", "api.example.com/x", ""] {
            assert!(HostMatch::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn dot_segments_and_encoded_separators_are_unsafe() {
        assert!(path_is_safe("/v1/repos/a.b?x=../y"));
        for bad in [
            "/healthz/../v1/admin",
            "/./x",
            "/x/%2e%2e/y",
            "/x%2Fy",
            "/x\\y",
            "relative",
            "/a/..",
            "/a%00",
            "/healthz/..;/v1/billing",
            "/a/.;x/b",
            "/v1//billing",
            "/v1/%62illing",
            "/v1/billin%67",
            "/v1/%7Euser",
            "/v1/%2D",
            "/v1/x%5F",
            "/v1/;x/billing",
            "/;x/v1/billing",
            "/v1%3Bx/billing",
            "/v1%3bx/billing",
        ] {
            assert!(!path_is_safe(bad), "{bad}");
        }
        // Reserved and other characters may be encoded; a bare % is the upstream's to judge.
        for good in [
            "/v1/repos/a%20b",
            "/v1/repos/%3A",
            "/v1/100%",
            "/v1/a;b=c",
            "/v1/%zz",
        ] {
            assert!(path_is_safe(good), "{good}");
        }
    }

    fn protected(mut r: Route, require: &[&str]) -> Route {
        r.access = Access::Protected {
            require: require.iter().map(|p| p.to_string()).collect(),
        };
        r
    }

    /// A protected `/v1` with an open `/v1/public`, a stricter `/v1/billing` and an
    /// incomparable `/v1/other` under it.
    fn nested() -> RouteTable {
        RouteTable::new(vec![
            protected(route("v1", None, None, "/v1"), &["repos:read"]),
            route("public", None, None, "/v1/public"),
            protected(
                route("billing", None, None, "/v1/billing"),
                &["repos:read", "billing:read"],
            ),
            protected(route("other", None, None, "/v1/other"), &["other:read"]),
        ])
    }

    /// The name of the route `path` takes in `table` (GET, any host).
    fn routed<'a>(table: &'a RouteTable, path: &str) -> Result<Option<&'a str>, AmbiguousPath> {
        table
            .lookup(None, "GET", path)
            .map(|r| r.map(|r| r.name.as_str()))
    }

    #[test]
    fn a_segment_parameter_takes_the_stricter_of_its_two_readings() {
        let table = nested();
        let name = |path| routed(&table, path);
        // Literally (nginx, Go, Express) under /v1; to Tomcat the open /v1/public: /v1 wins.
        assert_eq!(name("/v1/public;x"), Ok(Some("v1")));
        assert_eq!(name("/v1/public;x/users/42"), Ok(Some("v1")));
        // Literally /v1, to Tomcat /v1/billing, which requires more: billing wins.
        assert_eq!(name("/v1/billing;jsessionid=1"), Ok(Some("billing")));
        assert_eq!(name("/v1/billing;x?a=;b"), Ok(Some("billing")));
        // Both readings /v1.
        assert_eq!(name("/v1/bill;x"), Ok(Some("v1")));
        // Neither route covers the other's requirements (repos:read / other:read): refused.
        assert_eq!(name("/v1/other;x"), Err(AmbiguousPath));
        // Only one reading has a route (literally, v1;x is no segment of /v1): refused.
        let lone = RouteTable::new(vec![route("billing", None, None, "/v1/billing")]);
        assert_eq!(
            lone.lookup(None, "GET", "/v1;x/billing").map(|_| ()),
            Err(AmbiguousPath)
        );
    }

    #[test]
    fn a_path_in_another_case_takes_the_stricter_reading() {
        let table = nested();
        let name = |path| routed(&table, path);
        // ASP.NET Core serves /V1/Billing from its billing handler: billing's checks apply.
        assert_eq!(name("/v1/Billing"), Ok(Some("billing")));
        // A case-sensitive server reads /v1/Public under /v1, ASP.NET as /v1/public: /v1 wins.
        assert_eq!(name("/v1/Public/docs"), Ok(Some("v1")));
        // Case after the prefix changes nothing (ids are often mixed-case).
        assert_eq!(name("/v1/public/AbC123"), Ok(Some("public")));
        // Incomparable, and only one reading with a route: refused.
        assert_eq!(name("/v1/Other"), Err(AmbiguousPath));
        assert_eq!(name("/V1/x"), Err(AmbiguousPath));
        // Both at once: Spring with case-insensitive matching reads /v1/Public;x/y as
        // /v1/public/y; the stricter /v1 decides.
        assert_eq!(name("/v1/Public;x/y"), Ok(Some("v1")));
        // A prefix with capitals is matched both ways too.
        let capitals = RouteTable::new(vec![
            route("root", None, None, "/"),
            protected(route("admin", None, None, "/Admin"), &["admin:all"]),
        ]);
        assert_eq!(
            capitals
                .lookup(None, "GET", "/admin/x")
                .map(|r| r.map(|r| r.name.as_str())),
            Ok(Some("admin"))
        );
    }

    #[test]
    fn routing_ignores_a_fully_qualified_hosts_dot() {
        let table = RouteTable::new(vec![
            route("v1", None, None, "/v1"),
            route("api", Some("api.example.com"), None, "/"),
        ]);
        let name = |host, path| {
            table
                .lookup(host, "GET", path)
                .map(|r| r.map(|r| r.name.as_str()))
        };
        assert_eq!(name(Some("api.example.com."), "/v2"), Ok(Some("api")));
        assert_eq!(name(Some("api.example.com.:443"), "/v2"), Ok(Some("api")));
        assert_eq!(routing_path("/v1;a/b;c?q=;d"), "/v1/b?q=;d");
        assert!(matches!(routing_path("/v1/b"), Cow::Borrowed(_)));
    }
}
