//! The management API on `admin_listen`: JSON over HTTP, versioned under `/v1/`, described by
//! the OpenAPI document `docs/openapi.json` (served at `/v1/openapi.json`).
//!
//! Every call except the document and `POST /v1/leaks` authenticates exactly like a gateway
//! request (auth.rs: same parsing, limits, live checks), then caller.rs decides what the
//! credential may do, and manage.rs applies the same rules as the CLI. Creation returns the
//! secret once; nothing else ever returns it.
//!
//! | path | methods | who |
//! |---|---|---|
//! | `/v1/openapi.json` | GET | anyone |
//! | `/v1/users/{user}` | GET | admin |
//! | `/v1/users/{user}/orgs/{org}` | PUT, DELETE | admin (own org) |
//! | `/v1/users/{user}/suspend`, `/reactivate`, `/remove` | POST | admin |
//! | `/v1/tokens` | POST, GET | self-service or admin |
//! | `/v1/tokens/{prefix}` | GET, DELETE | self-service or admin |
//! | `/v1/apikeys` | POST, GET | admin |
//! | `/v1/apikeys/{prefix}` | GET, DELETE | admin |
//! | `/v1/audit` | GET | admin |
//! | `/v1/prune` | POST | admin |
//! | `/v1/explain` | GET | admin |
//! | `/v1/leaks` | POST | anyone holding the leaked tokens (rate limited) |

pub mod caller;
mod credentials;
mod error;
mod operations;
mod users;

use crate::auth::{unix_now, Authenticator};
use crate::conf::Conf;
use crate::limiter::{FailureLimiter, Limits};
use crate::manage::Manager;
use crate::store::Store;
use crate::verify::Verdict;
use bytes::Bytes;
use caller::Caller;
pub use error::ApiError;
use http::{HeaderMap, Method};
use once_cell::sync::OnceCell;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The OpenAPI 3 document, kept in the repo and compiled in.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Largest request body any endpoint accepts.
pub const MAX_BODY: usize = 64 * 1024;

/// `POST /v1/leaks` calls one client address may make per minute.
pub const LEAK_CALLS_PER_MINUTE: u32 = 10;

/// Where the leak limiter files a caller whose address is unknown (all such callers share it).
const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// One API request, read off the wire by admin.rs.
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The whole body (at most [`MAX_BODY`] bytes; admin.rs refuses more).
    pub body: Bytes,
}

/// A successful answer: status and JSON body.
pub type Reply = Result<(u16, Value), ApiError>;

/// The management API.
pub struct Api {
    conf: Arc<Conf>,
    auth: Arc<Authenticator>,
    /// Its own strict connection: management reads never come from a client-side cache.
    store: OnceCell<Store>,
    leak_limiter: FailureLimiter,
}

/// What a handler gets: the conf, Redis, the caller and the time.
pub(crate) struct Call<'a> {
    conf: &'a Conf,
    store: &'a Store,
    caller: Caller,
    now: u64,
}

impl Call<'_> {
    /// The shared management rules, acting as the caller.
    fn manager(&self) -> Manager<'_> {
        Manager {
            store: self.store,
            conf: self.conf,
            actor: self.caller.actor(),
        }
    }
}

impl Api {
    /// The API for `conf`, authenticating with `auth`.
    pub fn new(conf: Arc<Conf>, auth: Arc<Authenticator>) -> Api {
        let leak_limits = Limits {
            window: Duration::from_secs(60),
            failures_per_client: LEAK_CALLS_PER_MINUTE,
            failures_per_prefix: u32::MAX,
            ..conf.limits
        };
        Api {
            conf,
            auth,
            store: OnceCell::new(),
            leak_limiter: FailureLimiter::new(leak_limits),
        }
    }

    fn store(&self) -> Result<&Store, ApiError> {
        self.store
            .get_or_try_init(|| Store::lazy(&self.conf.redis))
            .map_err(ApiError::from)
    }

    /// Answers one request under `/v1/`.
    pub async fn handle(&self, request: &Request) -> Reply {
        let segments: Vec<&str> = request.path.trim_start_matches("/v1/").split('/').collect();
        let method = &request.method;
        match segments.as_slice() {
            ["openapi.json"] => {
                allow(method, &[Method::GET], "GET")?;
                let document = serde_json::from_str(OPENAPI).map_err(|_| ApiError::Internal)?;
                Ok((200, document))
            }
            ["leaks"] => {
                allow(method, &[Method::POST], "POST")?;
                let store = self.store()?;
                let client = request.client.unwrap_or(UNKNOWN_CLIENT);
                operations::leaks(&self.auth, store, &self.leak_limiter, client, request).await
            }
            _ => {
                let call = self.authenticate(request).await?;
                route(&call, request, &segments).await
            }
        }
    }

    async fn authenticate(&self, request: &Request) -> Result<Call<'_>, ApiError> {
        let outcome = self
            .auth
            .authenticate(&request.headers, request.client, &[], "management-api")
            .await;
        let identity = match outcome.verdict {
            Verdict::Allow(identity) => identity,
            Verdict::Deny(denial) => return Err(ApiError::Denied(denial)),
        };
        Ok(Call {
            conf: &self.conf,
            store: self.store()?,
            caller: Caller::new(identity, &self.conf),
            now: unix_now(),
        })
    }
}

/// Dispatches an authenticated call by path and method.
async fn route(call: &Call<'_>, request: &Request, segments: &[&str]) -> Reply {
    let method = &request.method;
    let query = query(request);
    match segments {
        ["users", user] => {
            allow(method, &[Method::GET], "GET")?;
            users::show(call, user).await
        }
        ["users", user, "orgs", org] => {
            allow(method, &[Method::PUT, Method::DELETE], "PUT, DELETE")?;
            if method == Method::PUT {
                users::put_membership(call, user, org, body(request)?).await
            } else {
                users::leave(call, user, org).await
            }
        }
        ["users", user, action @ ("suspend" | "reactivate" | "remove")] => {
            allow(method, &[Method::POST], "POST")?;
            users::set_status(call, user, action).await
        }
        ["tokens"] => {
            allow(method, &[Method::GET, Method::POST], "GET, POST")?;
            if method == Method::POST {
                credentials::create_token(call, body(request)?).await
            } else {
                credentials::list_tokens(call, query.get("user").map(String::as_str)).await
            }
        }
        ["tokens", prefix] => {
            allow(method, &[Method::GET, Method::DELETE], "GET, DELETE")?;
            credentials::one_token(call, prefix, method == Method::DELETE).await
        }
        ["apikeys"] => {
            allow(method, &[Method::GET, Method::POST], "GET, POST")?;
            if method == Method::POST {
                credentials::create_apikey(call, body(request)?).await
            } else {
                credentials::list_apikeys(call).await
            }
        }
        ["apikeys", prefix] => {
            allow(method, &[Method::GET, Method::DELETE], "GET, DELETE")?;
            credentials::one_apikey(call, prefix, method == Method::DELETE).await
        }
        ["audit"] => {
            allow(method, &[Method::GET], "GET")?;
            operations::audit(call, &query).await
        }
        ["prune"] => {
            allow(method, &[Method::POST], "POST")?;
            operations::prune(call, body(request)?).await
        }
        ["explain"] => {
            allow(method, &[Method::GET], "GET")?;
            operations::explain(call, &query).await
        }
        _ => Err(ApiError::NotFound(format!(
            "no endpoint {}; the API is described at /v1/openapi.json",
            request.path
        ))),
    }
}

/// Refuses a method the path does not take.
fn allow(method: &Method, allowed: &[Method], names: &'static str) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(names))
    }
}

/// The JSON body as `T`; unknown fields and wrong types are refused with serde's words.
fn body<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    if request.body.is_empty() {
        return Err(ApiError::BadRequest(
            "this endpoint needs a JSON body".into(),
        ));
    }
    serde_json::from_slice(&request.body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// The query string's parameters (the last of repeated names wins).
fn query(request: &Request) -> HashMap<String, String> {
    request
        .query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}
