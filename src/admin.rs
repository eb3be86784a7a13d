//! The admin listener (`admin_listen`): `/healthz` (the process answers), `/readyz` (the conf
//! is loaded and Redis answers PING within `redis.timeout_ms`), `/metrics` (Prometheus text
//! format), and the management API under `/v1/` (api/). Health and metrics are not
//! authenticated, so keep the listener on a private address; the API authenticates every
//! call itself.

use crate::api::{Api, ApiError, Request, MAX_BODY};
use crate::auth::Authenticator;
use crate::conf::Conf;
use crate::store::Store;
use async_trait::async_trait;
use http::Response;
use once_cell::sync::OnceCell;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// The admin HTTP app.
pub struct AdminApp {
    conf: Arc<Conf>,
    /// Its own Redis connection, made on first `/readyz`.
    store: OnceCell<Store>,
    /// The management API.
    api: Api,
    /// The gateway's authenticator (its store, once the proxy has made it, for `/readyz`).
    auth: Arc<Authenticator>,
}

impl AdminApp {
    /// An admin app for `conf`, whose API authenticates with `auth` (the gateway's).
    pub fn new(conf: Arc<Conf>, auth: Arc<Authenticator>) -> AdminApp {
        AdminApp {
            api: Api::new(Arc::clone(&conf), Arc::clone(&auth)),
            conf,
            store: OnceCell::new(),
            auth,
        }
    }

    /// Reads a `/v1/` request off the session (refusing a body over [`MAX_BODY`]), answers it.
    async fn management(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let mut request = Request {
            method: header.method.clone(),
            path: header.uri.path().to_string(),
            query: header.uri.query().map(str::to_string),
            headers: header.headers.clone(),
            client: crate::client_addr::client_address(
                session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
                &header.headers,
                &self.conf.trusted_proxies,
            ),
            body: bytes::Bytes::new(),
        };
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        session.set_keepalive(None);
                        return api_error(&ApiError::TooLarge(MAX_BODY));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    session.set_keepalive(None);
                    return api_error(&ApiError::BadRequest(format!("cannot read body: {e}")));
                }
            }
        }
        request.body = body.into();
        match self.api.handle(&request).await {
            Ok((status, value)) => json(status, value),
            Err(error) => api_error(&error),
        }
    }

    async fn ready(&self) -> Result<(), String> {
        let store = self
            .store
            .get_or_try_init(|| Store::lazy(&self.conf.redis))
            .map_err(|e| e.to_string())?;
        store.ping().await.map_err(|e| e.kind().to_string())?;
        // Strict reads go through the gateway's own batcher (store/batch.rs); should it ever
        // stop (a bug), every strict request answers 503 while Redis itself answers.
        match self.auth.started_store() {
            Some(gateway) if gateway.strict_reads_stopped() => {
                Err("strict_reads_stopped".to_string())
            }
            _ => Ok(()),
        }
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store")
        .body(body)
        .expect("status and headers are valid constants")
}

fn json(status: u16, value: serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", value.to_string().into_bytes())
}

fn api_error(error: &ApiError) -> Response<Vec<u8>> {
    let mut response = json(error.status(), error.body());
    for (name, value) in error.headers(crate::proxy::REALM) {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        if path.starts_with("/v1/") {
            return self.management(session).await;
        }
        match path.as_str() {
            "/healthz" => json(200, serde_json::json!({"status": "ok"})),
            "/readyz" => match self.ready().await {
                Ok(()) => json(200, serde_json::json!({"status": "ready"})),
                Err(kind) => json(
                    503,
                    serde_json::json!({"status": "not_ready", "redis": kind}),
                ),
            },
            "/metrics" => respond(200, "text/plain; version=0.0.4", crate::metrics::render()),
            _ => json(
                404,
                serde_json::json!({"error": "not_found", "message": "Admin paths: /healthz, /readyz, /metrics, and the management API under /v1/ (see /v1/openapi.json)."}),
            ),
        }
    }
}
