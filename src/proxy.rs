//! [`Gateway`]: patgate's `ProxyHttp`. Each phase is a few lines that delegate.
//!
//! * `request_filter`: route (routes.rs) → credential (credential.rs) → verify (verify.rs);
//!   a [`Denial`] is written here, and only here, as JSON with its challenge headers.
//! * `upstream_peer`: the route's next upstream, round-robin; over TLS with SNI and a verified
//!   certificate when the route has `upstream_tls` (tls.rs).
//! * `pass`: a request that may go upstream is rebuilt (identity.rs): forged identity and
//!   credential headers stripped, on every route, open ones included, then the request id and
//!   the verified identity set; a forward-auth call is answered instead.
//! * `upstream_request_filter`: only the signed identity assertion, on `sign_identity` routes.
//! * `logging`: one line per request (never a secret; the 10-character prefix at most).
//!
//! Authentication itself (credential, limits, verification, records) is auth.rs's
//! [`Authenticator`], shared with the management API.

use crate::access_log;
use crate::assertion;
use crate::auth::Authenticator;
use crate::client_addr;
use crate::conf::Conf;
use crate::denial::Denial;
use crate::forward_auth::{self, Target};
use crate::hygiene;
use crate::identity;
use crate::metrics;
use crate::request_id;
use crate::routes::{path_is_safe, Access, AmbiguousPath, Route};
use crate::token::HeldPrefix;
use crate::verify::{Identity, Verdict};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::upstreams::peer::{HttpPeer, Peer};
use std::sync::Arc;
use std::time::Instant;

/// The realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "patgate";

/// The authenticating proxy.
pub struct Gateway {
    conf: Arc<Conf>,
    /// Shared with the management API.
    auth: Arc<Authenticator>,
}

/// Per-request state shared across phases.
#[derive(Default)]
pub struct RequestCtx {
    /// The matched route.
    route: Option<Arc<Route>>,
    /// Set when a protected route's checks all passed.
    identity: Option<Identity>,
    /// The denial answered, for the log line.
    denial: Option<Denial>,
    /// The presented prefix (never the secret), for the log line.
    prefix: Option<HeldPrefix>,
    /// Time spent authenticating.
    auth_started: Option<Instant>,
    auth_micros: u128,
    /// Sent upstream, returned to the client, logged.
    request_id: String,
    /// This is a forward-auth call: answer it, never proxy it.
    forward_auth: bool,
    /// `pass` rebuilt the request to forward (identity.rs's `make_forwardable`: stripped,
    /// request id and identity set); `upstream_request_filter` refuses to forward otherwise.
    forwarded_built: bool,
    /// When the request arrived.
    started: Option<Instant>,
    /// The upstream chosen, once proxied.
    upstream: Option<std::net::SocketAddr>,
    /// The upstream's status, once it answered.
    upstream_status: Option<u16>,
}

impl Gateway {
    /// A gateway serving `conf`, authenticating with `auth`.
    pub fn new(conf: Arc<Conf>, auth: Arc<Authenticator>) -> Gateway {
        Gateway { conf, auth }
    }

    /// Decides a protected request on `route`: allow with an identity, or a denial.
    async fn authorize(
        &self,
        session: &Session,
        require: &[String],
        route: &str,
        ctx: &mut RequestCtx,
    ) -> Verdict {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let headers = &session.req_header().headers;
        let client = client_addr::client_address(peer, headers, &self.conf.trusted_proxies);
        let outcome = self
            .auth
            .authenticate(headers, client, require, route)
            .await;
        ctx.prefix = outcome.prefix;
        outcome.verdict
    }

    /// A request that may pass: proxied (`Ok(false)`), or, for a forward-auth call, answered
    /// 200 with the identity headers for the calling proxy to copy (`Ok(true)`).
    async fn pass(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if !ctx.forward_auth {
            // Built here, before Pingora copies the request for the upstream, so that the
            // copy is of the finished request (identity.rs says why it has no case map).
            let request_id = http::HeaderValue::from_str(&ctx.request_id)
                .map_err(|_| Error::explain(InternalError, "request id not a header value"))?;
            let keep_credentials = ctx.route.as_ref().is_some_and(|r| r.forward_credentials);
            identity::make_forwardable(
                session.req_header_mut(),
                &self.conf.identity_headers,
                keep_credentials,
                request_id,
                ctx.identity.as_ref(),
            )?;
            ctx.forwarded_built = true;
            return Ok(false);
        }
        let mut response = ResponseHeader::build(200, Some(12))?;
        response.insert_header("Content-Length", "0")?;
        response.insert_header("Cache-Control", "no-store")?;
        response.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
        identity::set_on_response(
            &mut response,
            &self.conf.identity_headers,
            ctx.identity.as_ref(),
        )?;
        let caller = self.conf.forward_auth.as_ref().map(|f| f.caller);
        let keep_credentials = ctx.route.as_ref().is_some_and(|r| r.forward_credentials);
        if caller == Some(forward_auth::Caller::Envoy) && !keep_credentials {
            // Envoy's ext_authz removes the headers this answer names from the request it
            // forwards: the credential never reaches the upstream, as in gateway mode.
            response.insert_header("x-envoy-auth-headers-to-remove", "authorization, x-api-key")?;
        }
        session
            .write_response_header(Box::new(response), true)
            .await?;
        Ok(true)
    }

    /// Writes `denial` as the response. The only place a denial becomes bytes.
    async fn deny(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        denial: Denial,
    ) -> Result<bool> {
        let body = denial.body();
        let mut response = ResponseHeader::build(denial.status(), Some(6))?;
        response.insert_header("Content-Type", "application/json")?;
        response.insert_header("Content-Length", body.len().to_string())?;
        response.insert_header("Cache-Control", "no-store")?;
        response.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
        if let Some(challenge) = denial.www_authenticate(REALM) {
            response.insert_header("WWW-Authenticate", challenge)?;
        }
        if let Some(seconds) = denial.retry_after() {
            response.insert_header("Retry-After", seconds.to_string())?;
        }
        if let (403, Some(Access::Protected { require })) =
            (denial.status(), ctx.route.as_ref().map(|r| &r.access))
        {
            let names = &self.conf.identity_headers;
            response.insert_header(names.required_permissions.clone(), require.join(" "))?;
        }
        // An unread request body would desynchronise a kept-alive connection.
        if session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_LENGTH)
            || session
                .req_header()
                .headers
                .contains_key(http::header::TRANSFER_ENCODING)
        {
            session.set_keepalive(None);
        }
        session
            .write_response_header(Box::new(response), false)
            .await?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
        ctx.denial = Some(denial);
        Ok(true)
    }
}

pub use crate::auth::unix_now;

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Some(Instant::now()),
            ..RequestCtx::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let request = session.req_header();
        let client_id = request
            .headers
            .get(request_id::HEADER)
            .map(|v| v.as_bytes());
        ctx.request_id = request_id::from_client_or_new(client_id);
        let forward_auth = (self.conf.forward_auth.as_ref())
            .and_then(|endpoint| forward_auth::target(request, &endpoint.path, endpoint.caller));
        ctx.forward_auth = forward_auth.is_some();
        let target = match forward_auth {
            None => Target::of(request),
            Some(Ok(target)) => target,
            Some(Err(incomplete)) => {
                log::debug!("{incomplete}");
                return self.deny(session, ctx, Denial::IncompleteForwardAuth).await;
            }
        };
        if let Err(denial) = hygiene::check(request, self.conf.limits.max_header_bytes) {
            return self.deny(session, ctx, denial).await;
        }
        if !path_is_safe(target.path) {
            return self.deny(session, ctx, Denial::BadPath).await;
        }
        let route = match self
            .conf
            .routes
            .lookup(target.host, target.method, target.path)
        {
            Ok(Some(route)) => Arc::clone(route),
            Ok(None) => return self.deny(session, ctx, Denial::NoRoute).await,
            Err(AmbiguousPath) => return self.deny(session, ctx, Denial::BadPath).await,
        };
        ctx.route = Some(Arc::clone(&route));
        let verdict = match &route.access {
            Access::Open => None,
            Access::Protected { require } => {
                let started = Instant::now();
                ctx.auth_started = Some(started);
                let verdict = self.authorize(session, require, &route.name, ctx).await;
                ctx.auth_micros = started.elapsed().as_micros();
                Some(verdict)
            }
        };
        match verdict {
            Some(Verdict::Deny(denial)) => self.deny(session, ctx, denial).await,
            Some(Verdict::Allow(identity)) => {
                ctx.identity = Some(identity);
                self.pass(session, ctx).await
            }
            None => self.pass(session, ctx).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(InternalError, "upstream_peer without a route"))?;
        let peer = route.next_peer();
        ctx.upstream = peer.address().as_inet().copied();
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let names = &self.conf.identity_headers;
        if !ctx.forwarded_built {
            // Fail closed: only a request rebuilt in `pass` (stripped, identity set) goes out.
            return Error::e_explain(HTTPStatus(500), "request to forward was not built");
        }
        match (&ctx.identity, ctx.route.as_ref().map(|r| &r.access)) {
            (Some(identity), _) => {
                let signing = ctx.route.as_ref().filter(|r| r.sign_identity);
                if let (Some(_), Some(key)) = (signing, &names.signing_key) {
                    let path = upstream_request
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str());
                    let method = upstream_request.method.as_str();
                    let value = assertion::assertion(key, unix_now(), method, path, identity);
                    upstream_request.insert_header(names.assertion.clone(), value)?;
                }
                Ok(())
            }
            (None, Some(Access::Open)) => Ok(()),
            // Fail closed: a protected route never reaches here without an identity.
            (None, _) => Error::e_explain(HTTPStatus(500), "protected route without identity"),
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        upstream_response.insert_header(request_id::HEADER, ctx.request_id.as_str())
    }

    /// What Pingora's error log says about a request: method, path and host, like its
    /// default, but never the query string, where a client may have put a token by mistake
    /// (the gateway never reads one there, and never logs one either).
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let request = session.req_header();
        let host = request
            .headers
            .get(http::header::HOST)
            .map_or(std::borrow::Cow::Borrowed("-"), |h| {
                String::from_utf8_lossy(h.as_bytes())
            });
        format!("{} {}, Host: {host}", request.method, request.uri.path())
    }

    async fn logging(
        &self,
        session: &mut Session,
        error: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.as_ref().map_or("-", |r| r.name.as_str());
        let outcome = match (&ctx.denial, &ctx.identity) {
            (Some(denial), _) => denial.code(),
            (None, Some(_)) => "allowed",
            (None, None) => "open",
        };
        metrics::REQUESTS.with_label_values(&[route, outcome]).inc();
        if ctx.auth_started.is_some() {
            metrics::AUTH_SECONDS.observe(ctx.auth_micros as f64 / 1e6);
        }
        let format = self.conf.access_log;
        if format == access_log::Format::Off
            || (format == access_log::Format::Plain && !log::log_enabled!(log::Level::Info))
        {
            return;
        }
        let request = session.req_header();
        let identity = ctx.identity.as_ref();
        let entry = access_log::Entry {
            time: access_log::now_rfc3339(),
            request_id: &ctx.request_id,
            route,
            method: request.method.as_str(),
            path: request.uri.path(),
            status,
            outcome,
            reason: ctx.denial.as_ref().map(Denial::reason),
            credential_type: identity.map(|i| i.kind().as_str()),
            prefix: ctx.prefix.as_ref().map(HeldPrefix::as_str),
            user: identity.and_then(Identity::user),
            org: identity.map(Identity::org),
            upstream: ctx.upstream.map(|u| u.to_string()),
            upstream_status: ctx.upstream_status,
            total_ms: ctx.started.map_or(0.0, |s| s.elapsed().as_secs_f64() * 1e3),
            auth_ms: ctx.auth_micros as f64 / 1e3,
            error: error.map(|e| e.to_string()),
        };
        access_log::write(format, &entry);
    }
}
