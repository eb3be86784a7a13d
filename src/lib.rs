//! patgate: an authentication gateway for personal access tokens and org API keys, built as
//! a Pingora reverse proxy.
//!
//! # The request path
//!
//! ```text
//!  client ──► request_filter ─────────────────────────────────────────────┐   proxy.rs
//!             0. target     the request, or the one a forward-auth call      forward_auth.rs
//!                           names (only its configured caller's headers)
//!             1. route      host/method/path → most specific Route          routes.rs
//!                           (404 no_route; 400 on a non-canonical path)
//!             2. open?      auth: none → skip to step 5
//!             3. credential Authorization: Bearer / X-API-Key → one token   credential.rs
//!                           (401 missing_credential, 400 ambiguous_credential)
//!                limits     client / prefix over its failure limit → 429   limiter.rs
//!                           (client: peer, or X-Forwarded-For of a         client_addr.rs
//!                           trusted proxy; a token verified here is exempt)
//!             4. verify     parse + checksum (no Redis)                      token.rs
//!                           credential record by prefix  (Redis), kept      store.rs
//!                             packed: one buffer, shared by the caches     store/packed.rs
//!                           secret: bcrypt on the pool / SHA-256             hasher.rs
//!                             (verified / negative cache, same live hash)   cache.rs
//!                           expiry; PAT owner's live status + role (Redis)   verify.rs
//!                             strict: one batch per turn, own connection    store/batch.rs
//!                             on one plain-TCP server, RESP written/parsed  store/wire.rs
//!                             in place                                       store/commands.rs
//!                             tracked / confirmed: records in memory, kept  store/live.rs
//!                             by pushed invalidations; confirmed serves     store/fence.rs
//!                             them under a lease (writers wait for acks)
//!                           role ∩ narrowing ⊇ route's require               permissions.rs
//!                           → Verdict::Allow(Identity) | Verdict::Deny       denial.rs
//!             Deny: JSON error + WWW-Authenticate / Retry-After, nothing forwarded
//!             pass: the request to forward, rebuilt once (no case map:     identity.rs
//!                           names go upstream lowercased)
//!                           5. strip client X-Auth-* (+ credential)
//!                           6. set X-Request-Id and X-Auth-* from the Identity
//!                              (values are slices of the packed record or made
//!                              once per conf role, names made at conf load)
//!          ──► upstream_peer            route's next upstream (round-robin); TLS with SNI and
//!                                       a verified certificate on upstream_tls routes  tls.rs
//!          ──► upstream_request_filter  refuses a request `pass` did not rebuild; the signed
//!                                       assertion on sign_identity routes   assertion.rs
//!          ──► upstream ──► logging     one line per request, prefix only, never a secret
//! ```
//!
//! Fail closed: Redis errors and timeouts answer 503 `auth_unavailable`, a full bcrypt queue
//! 503 `overloaded`; only a completed pipeline forwards a protected request. After a timeout
//! the connection gets a `PING` (on a cluster, every primary does), and is replaced if that
//! times out too: a connection that died silently (store/connection.rs; behind Sentinel it
//! is dropped at once and the primary looked up again; strict reads' own connection on one
//! server is dropped by the batch that timed out, store/wire.rs).
//!
//! Steps 3-4 live in auth.rs's `Authenticator`, shared with the management API; it also
//! notes each use (last_used.rs) and each denial (audit.rs) for recorder.rs, which writes them
//! from a background task so the request never waits.
//!
//! Writes (manage.rs, through store.rs) end with a fence: in confirmed mode a write is
//! acknowledged only once every gateway holding a lease has applied it (store/fence.rs).
//!
//! Off the request path: admin.rs (`/healthz`, `/readyz`, `/metrics` and the management API
//! of api/ on `admin_listen`), metrics.rs (every metric), conf.rs (the validated conf),
//! manage.rs (rules for creating and revoking, shared by the CLI and the API, with the audit
//! trail), tls.rs (certificates, keys and CA bundles checked at load: the HTTPS listener,
//! upstream TLS, `rediss://`), listing.rs (how credentials are shown), commands.rs and cli.rs (the CLI), serve.rs
//! (Pingora server) with linger.rs (graceful upgrade and stop), demo.rs and testkit (real Redis and echo upstream for the demo, the tests
//! and the benches).

pub mod access_log;
pub mod admin;
pub mod api;
pub mod assertion;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod causes;
pub mod cli;
pub mod client_addr;
pub mod commands;
pub mod conf;
pub mod credential;
pub mod demo;
pub mod denial;
pub mod explain;
pub mod forward_auth;
pub mod hasher;
pub mod hygiene;
pub mod identity;
pub mod last_used;
pub mod lifetime;
pub mod limiter;
pub mod linger;
pub mod listing;
pub mod manage;
pub mod metrics;
pub mod permissions;
pub mod proxy;
pub mod recorder;
pub mod request_id;
pub mod routes;
pub mod serve;
pub mod store;
pub mod testkit;
pub mod tls;
pub mod token;
pub mod verify;
