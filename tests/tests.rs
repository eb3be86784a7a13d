//! One integration binary: each test starts its own redis-server, echo upstream and the real
//! `patgate` binary, so tests run in parallel without sharing state.

/// Harness: private Redis, echo upstream, gateway process, raw HTTP client.
mod support;

/// The admin listener: health, readiness, metrics.
mod admin;
/// SPEC §4 row by row: each credential failure's status, code, body and challenge.
mod auth;
/// Bad input: tokens in the query, odd bytes, oversized headers, smuggling, secret hygiene.
mod bad_input;
/// The CLI: create/list/revoke output, refusals with nothing written, check and serve.
mod cli;
/// Real Redis topologies: a 3-primary cluster and a Sentinel set (failover under traffic), also
/// served over TLS only.
mod cluster;
/// Confirmed mode: writes wait for every gateway's acknowledgement (or its lease to end), so
/// a zero-round-trip warm path keeps strict mode's guarantee.
mod confirmed;
/// `patgate demo`: its printed curl lines work, Ctrl-C stops everything.
mod demo;
/// The fast path: verified-secret cache, single flight, one round trip, tracked mode.
mod fast_path;
/// Failing closed: Redis stopped, paused, slow, killed, restarted empty, down at start, its
/// connection reset mid-request and under traffic; a saturated bcrypt pool.
mod faults;
/// Forward-auth mode, called directly and by a real nginx `auth_request`.
mod forward_auth;
/// Identity headers: stripping forged ones, credential forwarding, exact injected values.
mod headers;
/// Live checks: role changes, narrowing, suspension, removal, membership, revocation, expiry.
mod live_checks;
/// The management API: self-service, admin, cross-org, policy, audit, last used, leaks, prune.
mod management;
/// Route choice: 404s, open routes, host/method/path specificity, unsafe paths.
mod routing;
/// TLS: the HTTPS listener (curl, HTTP/1.1 and HTTP/2), verified HTTPS upstreams (SNI, the
/// route's CA, failing closed on a wrong one), `rediss://` with a private CA.
mod tls;
/// Graceful upgrade: a new process takes the sockets, no request fails; a bad conf never wins.
mod upgrade;
