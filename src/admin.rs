//! The admin listener (`admin_listen`): `/healthz` (the process answers), `/readyz` (the conf
//! is loaded and Redis answers PING within `redis.timeout_ms`) and `/metrics` (Prometheus
//! text format). Keep it on a private address: it is not authenticated.

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
}

impl AdminApp {
    /// An admin app for `conf`.
    pub fn from_conf(conf: Arc<Conf>) -> AdminApp {
        AdminApp {
            conf,
            store: OnceCell::new(),
        }
    }

    async fn ready(&self) -> Result<(), String> {
        let store = self
            .store
            .get_or_try_init(|| Store::lazy(&self.conf.redis))
            .map_err(|e| e.to_string())?;
        store.ping().await.map_err(|e| e.kind().to_string())
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

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
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
                serde_json::json!({"error": "not_found", "message": "Admin paths: /healthz, /readyz, /metrics."}),
            ),
        }
    }
}
