use crate::support::{eventually, Env, Options, Response};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn call(env: &Env, headers: &[(&str, &str)]) -> Response {
    env.request("GET", "/_patgate/auth", headers)
}

/// The six identity headers a forward-auth answer always carries.
const IDENTITY_HEADERS: [&str; 6] = [
    "x-auth-credential-type",
    "x-auth-token-prefix",
    "x-auth-org",
    "x-auth-role",
    "x-auth-permissions",
    "x-auth-user",
];

fn env_called_by(caller: &'static str) -> Env {
    Env::start_with(Options {
        forward_auth_caller: caller,
        ..Options::default()
    })
}

#[test]
fn traefik_style_calls_are_answered_not_proxied() {
    let env = env_called_by("traefik");
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");
    let original = |method: &'static str, uri: &'static str| {
        vec![
            ("X-Forwarded-Method", method),
            ("X-Forwarded-Host", "api.example.test"),
            ("X-Forwarded-Uri", uri),
        ]
    };
    let mut allowed = original("GET", "/v1/repos/7?x=1");
    allowed.push(("Authorization", &bearer));
    let response = call(&env, &allowed);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("x-auth-user"), Some("alice"));
    assert_eq!(response.header("x-auth-role"), Some("member"));
    assert_eq!(
        response.header("x-auth-permissions"),
        Some("patgate:tokens repos:read repos:write")
    );
    call(&env, &original("GET", "/v1/repos")).assert_denied(401, "missing_credential");
    let mut billing = original("GET", "/v1/billing");
    billing.push(("Authorization", &bearer));
    call(&env, &billing).assert_denied(403, "insufficient_scope");
    call(&env, &original("GET", "/nowhere")).assert_denied(404, "no_route");
    let open = call(&env, &original("GET", "/healthz"));
    assert_eq!(open.status, 200);
    // Every identity header, empty: a proxy copying the answer overwrites forged ones.
    for name in IDENTITY_HEADERS {
        assert_eq!(open.header(name), Some(""), "{name}");
    }
    // Only Traefik's own headers name the request: a client's X-Original-* (which Traefik
    // passes through) is not read.
    let mut forged = original("GET", "/v1/billing");
    forged.push(("X-Original-URI", "/healthz"));
    call(&env, &forged).assert_denied(401, "missing_credential");
    // A call without them is refused, not decided on a guess.
    let incomplete = call(
        &env,
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/healthz"),
        ],
    );
    incomplete.assert_denied(400, "invalid_request");
    assert_eq!(
        incomplete.json()["reason"].as_str(),
        Some("forward_auth_headers_missing")
    );
    assert_eq!(
        env.upstream.count(),
        0,
        "forward-auth calls never reach the upstream"
    );
}

#[test]
fn envoy_style_calls_carry_the_path_after_the_endpoint() {
    let env = env_called_by("envoy");
    env.member("root", "acme", "admin");
    let key = env.apikey("acme", "viewer", "root");
    let response = env.request("POST", "/_patgate/auth/v1/repos", &[("X-API-Key", &key)]);
    response.assert_denied(403, "insufficient_scope");
    // Forwarded-style headers do not count behind Envoy: the call itself names the request.
    let response = env.request(
        "GET",
        "/_patgate/auth/v1/billing",
        &[
            ("X-API-Key", &key),
            ("X-Forwarded-Uri", "/v1/repos"),
            ("X-Original-URI", "/v1/repos"),
        ],
    );
    response.assert_denied(403, "insufficient_scope");
    let response = env.request("GET", "/_patgate/auth/v1/repos/1", &[("X-API-Key", &key)]);
    assert_eq!(response.status, 200);
    // An API key has no user: the header is there, empty, so Envoy's copy of the answer
    // replaces a forged X-Auth-User instead of leaving it.
    assert_eq!(response.header("x-auth-user"), Some(""));
    assert_eq!(response.header("x-auth-role"), Some("viewer"));
    // Envoy removes the credential headers this names from the request it forwards.
    assert_eq!(
        response.header("x-envoy-auth-headers-to-remove"),
        Some("authorization, x-api-key")
    );
    let kept = env.request("GET", "/_patgate/auth/legacy", &[("X-API-Key", &key)]);
    assert_eq!(kept.status, 200);
    assert_eq!(
        kept.header("x-envoy-auth-headers-to-remove"),
        None,
        "a forward_credentials route keeps them"
    );
}

struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its worker; SIGKILL on the master would orphan it.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> String {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| {
            panic!("nginx not found: install it with `apt-get install nginx` (scripts/setup does)")
        })
}

/// A real nginx doing `auth_request` against patgate's forward-auth endpoint, in front of the
/// echo upstream.
fn start_nginx(env: &Env) -> Nginx {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = patgate::testkit::free_port().expect("port");
    let d = dir.path().display();
    let conf = format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_auth;
            auth_request_set $auth_type $upstream_http_x_auth_credential_type;
            auth_request_set $auth_prefix $upstream_http_x_auth_token_prefix;
            auth_request_set $auth_user $upstream_http_x_auth_user;
            auth_request_set $auth_org $upstream_http_x_auth_org;
            auth_request_set $auth_role $upstream_http_x_auth_role;
            auth_request_set $auth_permissions $upstream_http_x_auth_permissions;
            proxy_set_header X-Auth-Credential-Type $auth_type;
            proxy_set_header X-Auth-Token-Prefix $auth_prefix;
            proxy_set_header X-Auth-User $auth_user;
            proxy_set_header X-Auth-Org $auth_org;
            proxy_set_header X-Auth-Role $auth_role;
            proxy_set_header X-Auth-Permissions $auth_permissions;
            proxy_set_header Authorization "";
            proxy_set_header X-API-Key "";
            proxy_pass http://{upstream};
        }}
        location = /_auth {{
            internal;
            proxy_pass http://127.0.0.1:{gateway}/_patgate/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header Host $host;
        }}
    }}
}}
"#,
        upstream = env.upstream.addr(),
        gateway = env.port,
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("nginx conf");
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let error_log = dir.path().join("error.log");
    eventually(
        Duration::from_secs(10),
        "nginx to listen",
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        || std::fs::read_to_string(&error_log).unwrap_or_default(),
    );
    Nginx {
        child,
        port,
        _dir: dir,
    }
}

fn through_nginx(nginx: &Nginx, path: &str, headers: &[(&str, &str)]) -> Response {
    through_nginx_as(nginx, "GET", path, headers)
}

fn through_nginx_as(nginx: &Nginx, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", nginx.port)).expect("connect to nginx");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    crate::support::parse_response(&raw)
}

#[test]
fn nginx_auth_request_allows_denies_and_passes_the_identity() {
    let env = Env::start();
    let nginx = start_nginx(&env);
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");

    let allowed = through_nginx(
        &nginx,
        "/v1/repos/7",
        &[("Authorization", &bearer), ("X-Auth-User", "mallory")],
    );
    let received = allowed.echoed();
    assert_eq!(received.header_all("x-auth-user"), vec!["alice"]);
    assert_eq!(received.header("x-auth-org"), Some("acme"));
    assert_eq!(received.header("x-auth-role"), Some("member"));
    assert_eq!(received.header("authorization"), None);

    assert_eq!(
        through_nginx(&nginx, "/v1/repos", &[("X-Auth-User", "mallory")]).status,
        401
    );
    assert_eq!(
        through_nginx(&nginx, "/v1/billing", &[("Authorization", &bearer)]).status,
        403
    );
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    assert_eq!(
        through_nginx(&nginx, "/v1/repos", &[("Authorization", &bearer)]).status,
        401
    );
    assert_eq!(
        env.upstream.count(),
        1,
        "only the allowed request reached the upstream"
    );
}

#[test]
fn nginx_callers_cannot_be_told_another_request_or_pass_forged_identity() {
    let env = Env::start();
    let nginx = start_nginx(&env);
    let viewer = env.user_with_pat("vera", "acme", "viewer");
    let bearer = format!("Bearer {viewer}");
    env.member("root", "acme", "admin");
    let key = env.apikey("acme", "viewer", "root");

    // nginx passes the client's X-Forwarded-* to the auth call; they must not name the request.
    let open_instead = through_nginx(&nginx, "/v1/billing", &[("X-Forwarded-Uri", "/healthz")]);
    assert_eq!(open_instead.status, 401, "{}", open_instead.body);
    let read_instead = through_nginx_as(
        &nginx,
        "DELETE",
        "/v1/repos/7",
        &[
            ("Authorization", &bearer),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/v1/repos"),
        ],
    );
    assert_eq!(read_instead.status, 403, "{}", read_instead.body);
    assert_eq!(
        env.upstream.count(),
        0,
        "nothing denied reached the upstream"
    );

    // Forged identity headers are all replaced, and the credential never reaches the upstream.
    let received = through_nginx(
        &nginx,
        "/v1/repos",
        &[
            ("X-API-Key", &key),
            ("X-Auth-Permissions", "billing:read"),
            ("X-Auth-Credential-Type", "pat"),
            ("X-Auth-User", "mallory"),
        ],
    )
    .echoed();
    assert_eq!(
        received.header_all("x-auth-permissions"),
        vec!["repos:read"]
    );
    assert_eq!(received.header("x-auth-credential-type"), Some("api_key"));
    assert_eq!(received.header("x-auth-token-prefix"), Some(&key[..10]));
    assert_eq!(
        received.header("x-auth-user"),
        None,
        "an API key has no user"
    );
    assert_eq!(received.header("x-api-key"), None);
    assert_eq!(env.upstream.count(), 1);
}
