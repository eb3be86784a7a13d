use crate::support::{send_raw, Env, Options};

#[test]
fn a_token_in_the_query_string_is_never_read() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let path = format!("/v1/repos?access_token={token}&token={token}");
    env.get(&path, &[]).assert_denied(401, "missing_credential");
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn a_token_in_the_query_string_never_reaches_the_log() {
    // An upstream that refuses connections makes Pingora log the request (its summary).
    let dead = patgate::testkit::free_port().expect("port");
    let env = Env::start_with(Options {
        extra_routes: format!(
            "  - name: dead\n    path_prefix: /dead\n    upstream: 127.0.0.1:{dead}\n    auth: none\n"
        ),
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    let response = env.get(&format!("/dead/x?access_token={token}"), &[]);
    assert_eq!(response.status, 502, "{}", response.body);
    crate::support::eventually(
        std::time::Duration::from_secs(5),
        "the upstream failure to be logged",
        || env.log().contains("/dead/x"),
        || env.log(),
    );
    assert!(!env.log().contains(&token[10..]), "{}", env.log());
}

#[test]
fn non_utf8_and_oversized_credentials_are_invalid_tokens() {
    let env = Env::start();
    let request = b"GET /v1/repos HTTP/1.1\r\nHost: x\r\nX-API-Key: pat_\xff\xfe\xfd\r\nConnection: close\r\n\r\n";
    let response = send_raw(env.port, request).expect("a response");
    response.assert_denied(401, "invalid_token");
    let huge = format!("pat_{}", "a".repeat(4000));
    env.get_bearer("/v1/repos", &huge)
        .assert_denied(401, "invalid_token");
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn oversized_headers_and_control_bytes_get_a_4xx_and_nothing_is_forwarded() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let big = format!(
        "GET /v1/repos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(200_000)
    );
    let response = send_raw(env.port, big.as_bytes()).expect("an answer");
    response.assert_denied(431, "headers_too_large");
    let control = format!(
        "GET /v1/repos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Bad: a\x01b\r\nConnection: close\r\n\r\n"
    );
    // Refused by Pingora's header parser.
    let response = send_raw(env.port, control.as_bytes());
    assert_eq!(response.map(|r| r.status), Some(400));
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn content_length_with_transfer_encoding_is_framed_by_transfer_encoding_alone() {
    // RFC 9112 §6.1: such a request may be processed by Transfer-Encoding alone. The gateway
    // and the upstream then frame it the same way: no Content-Length is forwarded, and the
    // bytes after the chunked body never become a second, unauthenticated request.
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let smuggle = format!(
        "POST /v1/repos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /v1/billing HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    send_raw(env.port, smuggle.as_bytes()).expect("a response");
    let received = env.upstream.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].path, "/v1/repos");
    assert!(received[0].header_all("content-length").is_empty());
    assert_eq!(received[0].header("transfer-encoding"), Some("chunked"));
}

#[test]
fn conflicting_content_lengths_are_refused() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let request = format!(
        "POST /v1/repos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 4\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde"
    );
    // Pingora's parser refuses this before request_filter runs (hygiene.rs checks it again).
    let response = send_raw(env.port, request.as_bytes());
    assert_eq!(response.map(|r| r.status), Some(400));
    assert_eq!(env.upstream.count(), 0, "nothing forwarded");
}

#[test]
fn no_secret_reaches_logs_bodies_or_the_upstream_even_at_debug_level() {
    let env = Env::start_with(Options {
        access_log: "json",
        rust_log: "debug",
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    env.member("root", "acme", "admin");
    let key = env.apikey("acme", "viewer", "root");
    let wrong = crate::support::same_prefix_other_secret(&token);
    let mut bodies = Vec::new();
    for presented in [&token, &key, &wrong] {
        let bearer = format!("Bearer {presented}");
        for path in ["/v1/repos", "/v1/billing", "/nowhere"] {
            bodies.push(env.get(path, &[("Authorization", &bearer)]).body);
            bodies.push(env.get(path, &[("X-API-Key", presented.as_str())]).body);
        }
    }
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    bodies.push(env.get_bearer("/v1/repos", &token).body);
    let list = env
        .cli(&["token", "list", "--user", "alice", "--json"])
        .expect_ok()
        .stdout;
    let explain = env
        .cli(&[
            "explain",
            "--token-prefix",
            &token[..10],
            "--path",
            "/v1/repos",
        ])
        .expect_ok()
        .stdout;
    let upstream: String = env
        .upstream
        .received()
        .iter()
        .flat_map(|r| r.headers.iter().map(|(n, v)| format!("{n}: {v}\n")))
        .collect();
    crate::support::eventually(
        std::time::Duration::from_secs(5),
        "access lines",
        || env.log().matches("request_id").count() >= 19,
        || env.log(),
    );
    for secret in [&token, &key, &wrong] {
        let body = &secret[10..secret.len() - 6];
        for (place, text) in [
            ("gateway log", env.log()),
            ("redis log", env.redis.log()),
            ("bodies", bodies.join("\n")),
            ("upstream requests", upstream.clone()),
            ("token list", list.clone()),
            ("explain", explain.clone()),
        ] {
            assert!(!text.contains(body), "a secret appeared in the {place}");
        }
    }
}
