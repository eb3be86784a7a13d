//! The integration harness: a private redis-server, an echo upstream and the real `patgate`
//! binary with a conf written into a temp dir, plus a raw HTTP/1.1 client (raw so tests can
//! send duplicate, oddly-cased and malformed headers exactly as written).

#![allow(dead_code)]

/// A CA and server certificates made at run time (rcgen).
pub mod certs;

use patgate::testkit::free_port;
use patgate::testkit::redis::{RedisServer, TlsFiles};
use patgate::testkit::upstream::{Received, Upstream};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Knobs a test may turn in the generated conf.
pub struct Options {
    /// `server.threads`: 2 unless a test needs the one-thread default (and its runtime).
    pub server_threads: usize,
    pub bcrypt_cost: u32,
    pub pool_threads: usize,
    pub pool_queue: usize,
    pub timeout_ms: u64,
    pub allow_no_expiry: bool,
    pub max_lifetime: &'static str,
    pub failures_per_client: u32,
    pub failures_per_prefix: u32,
    pub freshness: &'static str,
    pub cache_entries: usize,
    pub negative_ttl_ms: u64,
    pub access_log: &'static str,
    pub rust_log: &'static str,
    pub last_used_seconds: u64,
    pub grace_seconds: u64,
    /// Start Redis TLS-only with these files; the conf says `rediss://` and `redis.ca_file`.
    pub redis_tls: Option<TlsFiles>,
    /// Start Redis requiring this password (`requirepass`); the conf's URL carries it.
    pub redis_password: Option<&'static str>,
    /// `forward_auth.caller`: the proxy whose headers name a forward-auth call's request.
    pub forward_auth_caller: &'static str,
    /// Top-level YAML appended to the conf (e.g. `tls_listen:` and `tls:`).
    pub extra_conf: String,
    /// Route list items appended after the standard routes.
    pub extra_routes: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            server_threads: 2,
            bcrypt_cost: 4,
            pool_threads: 2,
            pool_queue: 64,
            timeout_ms: 200,
            allow_no_expiry: false,
            max_lifetime: "365d",
            failures_per_client: 1000,
            failures_per_prefix: 1000,
            freshness: "strict",
            cache_entries: 1000,
            negative_ttl_ms: 5000,
            access_log: "plain",
            rust_log: "info",
            last_used_seconds: 60,
            grace_seconds: 5,
            redis_tls: None,
            redis_password: None,
            forward_auth_caller: "nginx",
            extra_conf: String::new(),
            extra_routes: String::new(),
        }
    }
}

/// Everything one test needs, torn down on drop.
pub struct Env {
    pub redis: RedisServer,
    pub upstream: Upstream,
    pub port: u16,
    pub admin_port: u16,
    pub conf_path: PathBuf,
    gateway: Option<Child>,
    log_path: PathBuf,
    dir: tempfile::TempDir,
    options: Options,
}

/// Another gateway process on the same Redis and upstream, with its own port.
pub struct SecondGateway {
    pub port: u16,
    child: Child,
}

impl SecondGateway {
    /// Its process id (to stop and resume it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SecondGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `error` code of a denial body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }

    /// Asserts a JSON denial with this status and code, and returns self.
    #[track_caller]
    pub fn assert_denied(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(self.error(), code, "{self:?}");
        assert!(self.json()["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        self
    }

    /// The headers the echo upstream reports it received (for a 200 from the upstream).
    pub fn echoed(&self) -> Received {
        assert_eq!(self.status, 200, "body: {}", self.body);
        let value = self.json();
        let headers = value["headers"]
            .as_array()
            .expect("echo body")
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap_or("").to_string(),
                    pair[1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        Received {
            method: value["method"].as_str().unwrap_or("").to_string(),
            path: value["path"].as_str().unwrap_or("").to_string(),
            headers,
            body_len: value["body_len"].as_u64().unwrap_or(0) as usize,
        }
    }
}

/// Output of one CLI run.
pub struct Cli {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    pub fn from(output: Output) -> Cli {
        Cli {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn expect_ok(self) -> Cli {
        assert!(self.ok, "command failed: {}", self.stderr);
        self
    }

    #[track_caller]
    pub fn expect_refused(self, message_part: &str) -> Cli {
        assert!(
            !self.ok,
            "command should have failed; stdout: {}",
            self.stdout
        );
        assert!(
            self.stderr.contains(message_part),
            "stderr {:?} lacks {message_part:?}",
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "nothing on stdout when refused: {:?}",
            self.stdout
        );
        self
    }
}

/// The identity-signing key every test gateway uses (`identity_headers.signing_key_file`).
pub const SIGNING_KEY: &str = "test-signing-key-0123456789abcdef-0123456789";

pub fn patgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_patgate")
}

/// The CLI seeding steps every harness needs, against the conf at the given path.
pub struct CliFor<'a>(pub &'a std::path::Path);

impl CliFor<'_> {
    /// Puts `user` in `org` with `role`.
    pub fn member(&self, user: &str, org: &str, role: &str) {
        run_cli(self.0, &["user", "put", user, "--org", org, "--role", role]).expect_ok();
    }

    /// Creates a PAT with extra CLI args; returns the token.
    pub fn pat_with(&self, user: &str, org: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "token", "create", "--user", user, "--org", org, "--name", "test",
        ];
        args.extend_from_slice(extra);
        run_cli(self.0, &args).expect_ok().stdout.trim().to_string()
    }

    /// Creates an API key; `admin` must be an admin of `org`.
    pub fn apikey(&self, org: &str, role: &str, admin: &str) -> String {
        self.apikey_with(org, role, admin, &[])
    }

    /// Creates an API key with extra CLI args (e.g. `--permissions`); returns the token.
    pub fn apikey_with(&self, org: &str, role: &str, admin: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "apikey",
            "create",
            "--org",
            org,
            "--role",
            role,
            "--created-by",
            admin,
            "--name",
            "ci",
        ];
        args.extend_from_slice(extra);
        run_cli(self.0, &args).expect_ok().stdout.trim().to_string()
    }
}

/// Runs `patgate -c <conf_path> <args>` to completion (logging at `warn`).
pub fn run_cli(conf_path: &std::path::Path, args: &[&str]) -> Cli {
    let output = Command::new(patgate_bin())
        .arg("-c")
        .arg(conf_path)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run patgate");
    Cli::from(output)
}

impl Env {
    pub fn start() -> Env {
        Env::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Env {
        let redis = match (&options.redis_tls, options.redis_password) {
            (None, None) => RedisServer::start(),
            (Some(files), None) => RedisServer::start_tls(files.clone()),
            (None, Some(password)) => {
                RedisServer::start_with_password_and_args(password, |_, _| {
                    Ok((Vec::new(), Vec::new()))
                })
            }
            (Some(_), Some(_)) => panic!("a Redis with TLS and a password is not offered"),
        }
        .unwrap_or_else(|e| panic!("{e}"));
        let upstream = Upstream::start().expect("echo upstream");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port().expect("free port");
        let admin_port = free_port().expect("free port");
        let conf_path = dir.path().join("patgate.yaml");
        let conf = conf_text(
            &options,
            port,
            admin_port,
            &format!("url: {}", redis.url()),
            &upstream.addr().to_string(),
            dir.path(),
        );
        std::fs::write(&conf_path, conf).expect("write conf");
        let log_path = dir.path().join("gateway.log");
        let mut env = Env {
            redis,
            upstream,
            port,
            admin_port,
            conf_path,
            gateway: None,
            log_path,
            dir,
            options,
        };
        env.spawn_gateway();
        env
    }

    fn spawn_gateway(&mut self) {
        let log = std::fs::File::create(&self.log_path).expect("log file");
        let child = Command::new(patgate_bin())
            .arg("-c")
            .arg(&self.conf_path)
            .arg("serve")
            .env("RUST_LOG", self.options.rust_log)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn patgate");
        self.gateway = Some(child);
        let (port, admin_port) = (self.port, self.admin_port);
        eventually(
            Duration::from_secs(20),
            "gateway and admin listener to accept",
            || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
            },
            || self.log(),
        );
        // Accepting is not proof that *our* process listens: it must also still be running
        // (a gateway that could not bind exits).
        let exited = self
            .gateway
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten());
        assert!(
            exited.is_none(),
            "gateway exited: {exited:?}\n{}",
            self.log()
        );
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs `patgate -c <conf> <args>`.
    pub fn cli(&self, args: &[&str]) -> Cli {
        run_cli(&self.conf_path, args)
    }

    /// Puts `user` in `org` with `role`.
    pub fn member(&self, user: &str, org: &str, role: &str) {
        CliFor(&self.conf_path).member(user, org, role);
    }

    /// Creates a PAT with extra CLI args; returns the token.
    pub fn pat_with(&self, user: &str, org: &str, extra: &[&str]) -> String {
        CliFor(&self.conf_path).pat_with(user, org, extra)
    }

    /// Makes `user` a member of `org` with `role` and gives them a PAT.
    pub fn user_with_pat(&self, user: &str, org: &str, role: &str) -> String {
        self.member(user, org, role);
        self.pat_with(user, org, &[])
    }

    /// Creates an API key; `admin` must be an admin of `org`.
    pub fn apikey(&self, org: &str, role: &str, admin: &str) -> String {
        CliFor(&self.conf_path).apikey(org, role, admin)
    }

    /// Creates an API key with extra CLI args; returns the token.
    pub fn apikey_with(&self, org: &str, role: &str, admin: &str, extra: &[&str]) -> String {
        CliFor(&self.conf_path).apikey_with(org, role, admin, extra)
    }

    /// Sends a request with `Connection: close` and reads the whole response.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request_with_body(method, path, headers, "")
    }

    pub fn request_with_body(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        send(self.port, method, path, headers, body)
    }

    /// Starts another gateway on the same Redis and upstream (same options, its own port).
    pub fn start_second_gateway(&self) -> SecondGateway {
        let dir = self
            .dir
            .path()
            .join(format!("second-{}", free_port().expect("port")));
        std::fs::create_dir_all(&dir).expect("dir");
        let port = free_port().expect("free port");
        let conf = conf_text(
            &self.options,
            port,
            free_port().expect("free port"),
            &format!("url: {}", self.redis.url()),
            &self.upstream.addr().to_string(),
            &dir,
        );
        let conf_path = dir.join("patgate.yaml");
        std::fs::write(&conf_path, conf).expect("write conf");
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log");
        let child = Command::new(patgate_bin())
            .arg("-c")
            .arg(&conf_path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn second patgate");
        let second = SecondGateway { port, child };
        eventually(
            Duration::from_secs(20),
            "second gateway to listen",
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
            String::new,
        );
        second
    }

    /// A plain connection of the test's own to its private Redis (for fault commands and
    /// writes the CLI does not make).
    pub fn redis_conn(&self) -> redis::Connection {
        redis::Client::open(self.redis.url())
            .expect("client")
            .get_connection()
            .expect("connection to the test's redis")
    }

    /// Calls of `command` Redis has served so far (`INFO commandstats`).
    pub fn redis_calls(&self, command: &str) -> u64 {
        let mut conn = redis::Client::open(self.redis.url())
            .expect("client")
            .get_connection()
            .expect("connection");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut conn)
            .expect("INFO");
        let needle = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
        info.lines()
            .find_map(|line| line.strip_prefix(&needle))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// Sends raw bytes to a gateway on `port` and reads until it closes (or 5 s pass).
pub fn send_raw(port: u16, bytes: &[u8]) -> Option<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(bytes).expect("send");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    raw.windows(4)
        .any(|w| w == b"\r\n\r\n")
        .then(|| parse_response(&raw))
}

/// GET with a bearer token to a gateway on `port`.
pub fn get_bearer_on(port: u16, path: &str, token: &str) -> Response {
    let value = format!("Bearer {token}");
    send(port, "GET", path, &[("Authorization", &value)], "")
}

fn send(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

impl Env {
    /// GET on the admin listener.
    pub fn admin_get(&self, path: &str) -> Response {
        send(self.admin_port, "GET", path, &[], "")
    }

    /// The value of one sample in `/metrics` (0 if absent), e.g.
    /// `patgate_requests_total{route="repos-read",outcome="allowed"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        let body = self.admin_get("/metrics").body;
        body.lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers)
    }

    /// GET with `Authorization: Bearer <token>`.
    pub fn get_bearer(&self, path: &str, token: &str) -> Response {
        let value = format!("Bearer {token}");
        self.get(path, &[("Authorization", &value)])
    }

    /// Starts the gateway again with the same conf (after [`Env::stop_gateway`]).
    pub fn respawn_gateway(&mut self) {
        self.stop_gateway();
        self.spawn_gateway();
    }

    /// The running gateway process's id.
    pub fn gateway_pid(&self) -> u32 {
        self.gateway.as_ref().map_or(0, Child::id)
    }

    /// Swaps in `next` as the gateway process (after a graceful upgrade); returns the old one.
    pub fn replace_gateway(&mut self, next: Child) -> Option<Child> {
        self.gateway.replace(next)
    }

    /// The temp dir holding the conf, logs and sockets.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn stop_gateway(&mut self) {
        if let Some(mut child) = self.gateway.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_gateway();
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log ---\n{}\n--- redis log ---\n{}",
                self.log(),
                self.redis.log()
            );
        }
    }
}

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.trim().split(';').next().unwrap_or("0"), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// Polls `condition` until it holds or `limit` passes; panics with `context()` then.
#[track_caller]
pub fn eventually(
    limit: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "timed out after {limit:?} waiting for {what}\n{}",
        context()
    );
}

/// A syntactically valid token (right checksum) that reuses `token`'s prefix with another
/// secret: reaches Redis and bcrypt, and must fail as a wrong secret.
pub fn same_prefix_other_secret(token: &str) -> String {
    let other = patgate::token::generate(patgate::token::Kind::of_prefix(token).expect("kind"));
    let body = format!(
        "{}{}",
        &token[..10],
        &other.token[10..other.token.len() - 6]
    );
    patgate::token::seal(&body)
}

/// The gateway conf for `o`; `redis_location` is the line under `redis:` saying where Redis
/// is (`url: …`, `cluster: […]`, or a `sentinel:` block with its own indented lines).
pub fn conf_text(
    o: &Options,
    port: u16,
    admin_port: u16,
    redis_location: &str,
    upstream: &str,
    dir: &std::path::Path,
) -> String {
    std::fs::write(dir.join("identity.key"), SIGNING_KEY).expect("write signing key");
    let dir = dir.display();
    format!(
        r#"listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin_port}
redis:
  {redis_location}
  timeout_ms: {timeout}
  freshness: {freshness}
{redis_ca}verify:
  bcrypt_cost: {cost}
  pool_threads: {threads}
  pool_queue: {queue}
  cache_entries: {cache_entries}
  negative_ttl_ms: {negative_ttl_ms}
policy:
  default_lifetime: 30d
  max_lifetime: {max_lifetime}
  allow_no_expiry: {allow_no_expiry}
  admin_role: admin
identity_headers:
  signing_key_file: {dir}/identity.key
forward_auth:
  path: /_patgate/auth
  caller: {forward_auth_caller}
access_log:
  format: {access_log}
limits:
  window_seconds: 60
  failures_per_client: {per_client}
  failures_per_prefix: {per_prefix}
last_used:
  interval_seconds: {last_used}
server:
  threads: {server_threads}
  pid_file: {dir}/patgate.pid
  upgrade_sock: {dir}/upgrade.sock
  grace_period_seconds: {grace}
  graceful_shutdown_timeout_seconds: 10
roles:
  - name: viewer
    permissions: [repos:read]
  - name: member
    permissions: [repos:read, repos:write, patgate:tokens]
  - name: admin
    permissions: ["*"]
  - name: owner
    permissions: ["*"]
permissions: [billing:read]
routes:
  - name: health
    path_prefix: /healthz
    upstream: {upstream}
    auth: none
  - name: repos-read
    methods: [GET, HEAD]
    path_prefix: /v1/repos
    upstream: {upstream}
    require: [repos:read]
  - name: repos-write
    methods: [POST, PUT, PATCH, DELETE]
    path_prefix: /v1/repos
    upstream: {upstream}
    require: [repos:write]
  - name: billing
    path_prefix: /v1/billing
    upstream: {upstream}
    require: [billing:read]
  - name: whoami
    path_prefix: /v1/whoami
    upstream: {upstream}
    require: []
  - name: legacy
    path_prefix: /legacy
    upstream: {upstream}
    require: []
    forward_credentials: true
  - name: public-docs
    host: docs.example.test
    path_prefix: /v1/repos
    upstream: {upstream}
    auth: none
  - name: signed
    path_prefix: /v1/signed
    upstream: {upstream}
    require: []
    sign_identity: true
  - name: tenant-writes
    host: "*.tenant.test"
    path_prefix: /
    upstream: {upstream}
    require: [repos:write]
{extra_routes}{extra_conf}"#,
        timeout = o.timeout_ms,
        cost = o.bcrypt_cost,
        threads = o.pool_threads,
        queue = o.pool_queue,
        max_lifetime = o.max_lifetime,
        allow_no_expiry = o.allow_no_expiry,
        per_client = o.failures_per_client,
        per_prefix = o.failures_per_prefix,
        freshness = o.freshness,
        cache_entries = o.cache_entries,
        negative_ttl_ms = o.negative_ttl_ms,
        access_log = o.access_log,
        last_used = o.last_used_seconds,
        grace = o.grace_seconds,
        server_threads = o.server_threads,
        redis_ca = o
            .redis_tls
            .as_ref()
            .map(|tls| format!("  ca_file: {}\n", tls.ca_file.display()))
            .unwrap_or_default(),
        forward_auth_caller = o.forward_auth_caller,
        extra_routes = o.extra_routes,
        extra_conf = o.extra_conf,
    )
}

impl Env {
    /// A management API call on the admin listener, authenticated with `token` (none when
    /// empty), with a JSON body (none when empty).
    pub fn api(&self, method: &str, path: &str, token: &str, body: &str) -> Response {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![];
        if !token.is_empty() {
            headers.push(("Authorization", bearer.as_str()));
        }
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        send(self.admin_port, method, path, &headers, body)
    }

    /// As [`Env::api`], expecting `status`; returns the JSON body.
    pub fn api_ok(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
        status: u16,
    ) -> serde_json::Value {
        let response = self.api(method, path, token, body);
        assert_eq!(
            response.status, status,
            "{method} {path}: {}",
            response.body
        );
        response.json()
    }
}
