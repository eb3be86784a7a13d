//! TLS end to end, with certificates made at run time (support/certs.rs): curl against the
//! HTTPS listener over HTTP/1.1 and HTTP/2, a TLS echo upstream verified by SNI and the
//! route's CA (and refused when either is wrong), Redis serving TLS only, and Redis
//! requiring a password.

use crate::support::certs::Ca;
use crate::support::{eventually, Env, Options, Response};
use patgate::testkit::free_port;
use patgate::testkit::redis::TlsFiles;
use patgate::testkit::upstream::Upstream;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What curl reported: the response, the HTTP version it spoke, and its exit code.
struct Curled {
    response: Response,
    version: String,
    exit: i32,
}

/// Runs `curl -sS -i <args>` and parses the response it printed.
fn curl(args: &[&str]) -> Curled {
    let output = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", "-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run curl ({e}): install it with `apt-get install curl` (scripts/setup --test-tools does)")
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (raw, summary) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let version = summary.split_whitespace().nth(1).unwrap_or("").to_string();
    let exit = output.status.code().unwrap_or(-1);
    let response = if raw.contains("\r\n\r\n") {
        crate::support::parse_response(raw.as_bytes())
    } else {
        Response {
            status: 0,
            headers: vec![],
            body: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    };
    Curled {
        response,
        version,
        exit,
    }
}

fn wait_for_port(env: &Env, port: u16) {
    eventually(
        Duration::from_secs(20),
        "the TLS listener to accept",
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        || env.log(),
    );
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn https_listener_serves_http1_and_http2_with_the_same_checks() {
    let pki = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(pki.path(), "gateway");
    let server = ca.issue("gateway", &["gateway.test"]);
    let tls_port = free_port().expect("port");
    let env = Env::start_with(Options {
        extra_conf: format!(
            "tls_listen: 127.0.0.1:{tls_port}\ntls:\n  cert_file: {}\n  key_file: {}\n",
            server.cert_file.display(),
            server.key_file.display()
        ),
        ..Options::default()
    });
    wait_for_port(&env, tls_port);
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Authorization: Bearer {token}");
    let resolve = format!("gateway.test:{tls_port}:127.0.0.1");
    let url = format!("https://gateway.test:{tls_port}/v1/repos/7");
    let ca_file = path(&ca.ca_file());
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let allowed = curl(&[
            "--cacert",
            &ca_file,
            "--resolve",
            &resolve,
            flag,
            "-H",
            &bearer,
            &url,
        ]);
        assert_eq!(allowed.exit, 0, "{flag}: {}", allowed.response.body);
        assert_eq!(
            allowed.version, version,
            "ALPN chose the protocol asked for"
        );
        let seen = allowed.response.echoed();
        assert_eq!(seen.path, "/v1/repos/7");
        assert_eq!(seen.header("X-Auth-Credential-Type"), Some("pat"));
        assert_eq!(seen.header("X-Auth-User"), Some("alice"));
        assert_eq!(seen.header("X-Auth-Org"), Some("acme"));
        assert_eq!(seen.header("X-Auth-Role"), Some("member"));
        assert_eq!(seen.header("X-Auth-Token-Prefix"), Some(&token[..10]));
        assert_eq!(
            seen.header("Authorization"),
            None,
            "the credential is stripped"
        );

        let denied = curl(&["--cacert", &ca_file, "--resolve", &resolve, flag, &url]);
        assert_eq!(denied.version, version);
        denied.response.assert_denied(401, "missing_credential");
        assert_eq!(
            denied.response.header("www-authenticate"),
            Some("Bearer realm=\"patgate\"")
        );
    }
    assert_eq!(
        env.upstream.count(),
        2,
        "only the two allowed requests went upstream"
    );

    // The client's verification is real: without the CA, curl refuses the certificate.
    let untrusted = curl(&["--resolve", &resolve, "-H", &bearer, &url]);
    assert_eq!(
        untrusted.exit, 60,
        "curl: peer certificate cannot be authenticated"
    );
    // And the plain listener still serves.
    assert_eq!(env.get_bearer("/v1/repos/7", &token).status, 200);
    assert_eq!(env.upstream.count(), 3);
}

#[test]
fn https_upstreams_are_verified_with_sni_and_the_routes_ca() {
    let pki = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(pki.path(), "upstream");
    let other = Ca::new(pki.path(), "other");
    let cert = ca.issue("backend", &["backend.test", "127.0.0.1"]);
    let backend = Upstream::start_tls(&cert.cert_pem(), &cert.key_pem()).expect("TLS upstream");
    let route = |name: &str, tls: &str| {
        format!(
            "  - name: {name}\n    path_prefix: /v1/{name}\n    upstream: {}\n    require: []\n    upstream_tls: {tls}\n",
            backend.addr()
        )
    };
    let good_ca = path(&ca.ca_file());
    let bad_ca = path(&other.ca_file());
    let routes = [
        route(
            "secure",
            &format!("{{sni: backend.test, ca_file: {good_ca}}}"),
        ),
        route("by-address", &format!("{{ca_file: {good_ca}}}")),
        route(
            "wrong-ca",
            &format!("{{sni: backend.test, ca_file: {bad_ca}}}"),
        ),
        route(
            "wrong-name",
            &format!("{{sni: elsewhere.test, ca_file: {good_ca}}}"),
        ),
    ];
    let env = Env::start_with(Options {
        extra_routes: routes.concat(),
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "viewer");

    let allowed = env.get_bearer("/v1/secure/1", &token);
    let seen = allowed.echoed();
    assert_eq!(seen.path, "/v1/secure/1");
    assert_eq!(seen.header("X-Auth-User"), Some("alice"));
    assert_eq!(seen.header("X-Auth-Role"), Some("viewer"));
    assert_eq!(seen.header("Authorization"), None);
    assert_eq!(
        backend.server_names().last(),
        Some(&Some("backend.test".to_string())),
        "the route's sni was sent"
    );
    // Without `sni`, the name is the upstream as written (here an IP: verified against the
    // certificate's IP address, and, per RFC 6066, no SNI is sent for an address).
    let by_address = env.get_bearer("/v1/by-address", &token);
    assert_eq!(by_address.echoed().header("X-Auth-User"), Some("alice"));
    assert_eq!(backend.server_names().last(), Some(&None));
    assert_eq!(backend.count(), 2);

    // A route whose CA did not issue the certificate fails closed: 502, and nothing reaches
    // the upstream, even though a connection verified for `secure` (same address, same SNI)
    // sits in the pool.
    for wrong in ["/v1/wrong-ca", "/v1/wrong-name"] {
        let failed_before = backend.failed_handshakes();
        let refused = env.get_bearer(wrong, &token);
        assert_eq!(refused.status, 502, "{wrong}: {}", refused.body);
        assert_eq!(backend.count(), 2, "{wrong}: nothing was served upstream");
        eventually(
            Duration::from_secs(5),
            "the upstream to see the refused handshake",
            || backend.failed_handshakes() > failed_before,
            || env.log(),
        );
    }
    // The verified route is unaffected.
    assert_eq!(env.get_bearer("/v1/secure/2", &token).status, 200);
    assert_eq!(backend.count(), 3);
}

#[test]
fn redis_with_a_password_serves_the_cli_and_the_gateway_and_the_password_is_never_shown() {
    const PASSWORD: &str = "redis-s3cret";
    let env = Env::start_with(Options {
        redis_password: Some(PASSWORD),
        ..Options::default()
    });
    assert!(env.redis.url().contains(&format!(":{PASSWORD}@")));
    let token = env.user_with_pat("alice", "acme", "member");
    let seen = env.get_bearer("/v1/repos", &token).echoed();
    assert_eq!(seen.header("X-Auth-User"), Some("alice"));
    let check = env.cli(&["check"]).expect_ok();
    assert!(check.stdout.contains("redis reachable"), "{}", check.stdout);
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");

    // The same conf without the password: refused by `check` with Redis's own reason.
    let conf = std::fs::read_to_string(&env.conf_path).expect("conf");
    let without = conf.replace(&format!(":{PASSWORD}@"), "");
    assert_ne!(conf, without);
    let without_path = env.dir().join("no-password.yaml");
    std::fs::write(&without_path, without).expect("write conf");
    let refused = crate::support::run_cli(&without_path, &["check"]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(refused.stderr.contains("NOAUTH"), "{}", refused.stderr);

    // Nothing the gateway or the CLI printed names the password (the URL is redacted).
    let log = env.log();
    assert!(log.contains("redis redis://***@127.0.0.1:"), "{log}");
    for shown in [
        env.log(),
        check.stdout,
        check.stderr,
        refused.stdout,
        refused.stderr,
    ] {
        assert!(
            !shown.contains(PASSWORD),
            "the password was shown:\n{shown}"
        );
    }
}

#[test]
fn check_opens_the_connection_the_gateway_would_so_a_user_barred_from_tracking_fails_it() {
    const PASSWORD: &str = "redis-s3cret";
    let env = Env::start_with(Options {
        redis_password: Some(PASSWORD),
        ..Options::default()
    });
    // An ACL user allowed every command but CLIENT, which tracked mode needs (CLIENT TRACKING).
    let mut admin = env
        .redis
        .connection(Duration::from_secs(2))
        .expect("connection");
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "notrack",
            "on",
            ">notrack-pw",
            "~*",
            "&*",
            "+@all",
            "-client",
        ])
        .query::<()>(&mut admin)
        .expect("ACL SETUSER");
    let conf = std::fs::read_to_string(&env.conf_path).expect("conf");
    let as_user = conf.replace(&format!(":{PASSWORD}@"), "notrack:notrack-pw@");
    assert_ne!(conf, as_user);
    let with_freshness = |freshness: &str| {
        let path = env.dir().join(format!("notrack-{freshness}.yaml"));
        let text = as_user.replace("freshness: strict", &format!("freshness: {freshness}"));
        std::fs::write(&path, text).expect("write conf");
        crate::support::run_cli(&path, &["check"])
    };
    // Strict needs no CLIENT command: the check passes.
    let strict = with_freshness("strict");
    assert!(strict.ok, "{}", strict.stderr);
    // Tracked would fail every request of the gateway: the check says so before it runs.
    let tracked = with_freshness("tracked");
    assert!(!tracked.ok, "{}", tracked.stdout);
    assert!(
        tracked.stderr.contains("cannot reach") && tracked.stderr.contains("NOPERM"),
        "{}",
        tracked.stderr
    );
    assert!(!tracked.stderr.contains("notrack-pw"), "{}", tracked.stderr);
}

#[test]
fn rediss_with_a_private_ca_serves_the_cli_and_the_gateway() {
    let pki = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(pki.path(), "redis");
    let cert = ca.issue("redis", &["127.0.0.1"]);
    let env = Env::start_with(Options {
        redis_tls: Some(TlsFiles {
            cert_file: cert.cert_file.clone(),
            key_file: cert.key_file.clone(),
            ca_file: ca.ca_file(),
        }),
        ..Options::default()
    });
    assert!(env.redis.url().starts_with("rediss://127.0.0.1:"));
    // The CLI writes over TLS, the gateway reads over TLS.
    let token = env.user_with_pat("alice", "acme", "member");
    let seen = env.get_bearer("/v1/repos", &token).echoed();
    assert_eq!(seen.header("X-Auth-User"), Some("alice"));
    assert_eq!(seen.header("X-Auth-Role"), Some("member"));
    let ready = env.admin_get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(env
        .cli(&["check"])
        .expect_ok()
        .stdout
        .contains("redis reachable"));
    let prefix = &token[..10];
    env.cli(&["token", "revoke", prefix]).expect_ok();
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");

    // Trusting another CA, the same server is unreachable: verification is not skipped.
    let other = Ca::new(pki.path(), "other");
    let conf = std::fs::read_to_string(&env.conf_path).expect("conf");
    let wrong = conf.replace(&path(&ca.ca_file()), &path(&other.ca_file()));
    assert_ne!(conf, wrong);
    let wrong_path = env.dir().join("wrong-ca.yaml");
    std::fs::write(&wrong_path, wrong).expect("write conf");
    let check = Command::new(crate::support::patgate_bin())
        .arg("-c")
        .arg(&wrong_path)
        .arg("check")
        .output()
        .expect("run patgate");
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("redis.url: cannot reach rediss://"),
        "{stderr}"
    );
}
