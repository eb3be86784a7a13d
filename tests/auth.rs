use crate::support::{same_prefix_other_secret, Env};

#[test]
fn valid_pat_is_forwarded_with_its_identity() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let received = env.get_bearer("/v1/repos", &token).echoed();
    assert_eq!(received.header("x-auth-user"), Some("alice"));
    assert_eq!(received.header("x-auth-org"), Some("acme"));
    assert_eq!(received.header("x-auth-credential-type"), Some("pat"));
    assert_eq!(received.header("x-auth-token-prefix"), Some(&token[..10]));
    assert_eq!(received.header("authorization"), None);
}

#[test]
fn pat_is_accepted_in_x_api_key_and_api_key_as_bearer() {
    let env = Env::start();
    let pat = env.user_with_pat("alice", "acme", "admin");
    env.get("/v1/repos", &[("X-API-Key", &pat)]).echoed();
    let key = env.apikey("acme", "viewer", "alice");
    let received = env.get_bearer("/v1/repos", &key).echoed();
    assert_eq!(received.header("x-auth-credential-type"), Some("api_key"));
    assert_eq!(received.header("x-auth-user"), None);
    assert_eq!(received.header("x-auth-role"), Some("viewer"));
}

#[test]
fn no_credential_is_401_missing_credential_with_a_bare_challenge() {
    let env = Env::start();
    let response = env.get("/v1/repos", &[]);
    response.assert_denied(401, "missing_credential");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer realm=\"patgate\"")
    );
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn another_authorization_scheme_is_missing_credential() {
    let env = Env::start();
    let response = env.get("/v1/repos", &[("Authorization", "Basic YWxpY2U6cHc=")]);
    response.assert_denied(401, "missing_credential");
    assert!(response.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("Bearer"));
}

#[test]
fn two_different_credentials_are_400_ambiguous() {
    let env = Env::start();
    let a = env.user_with_pat("alice", "acme", "member");
    let b = env.user_with_pat("bob", "acme", "member");
    let bearer = format!("Bearer {a}");
    env.get(
        "/v1/repos",
        &[("Authorization", &bearer), ("X-API-Key", &b)],
    )
    .assert_denied(400, "ambiguous_credential");
    env.get("/v1/repos", &[("X-API-Key", &a), ("X-API-Key", &b)])
        .assert_denied(400, "ambiguous_credential");
    // The same token twice is one credential.
    env.get(
        "/v1/repos",
        &[("Authorization", &bearer), ("X-API-Key", &a)],
    )
    .echoed();
    assert_eq!(env.upstream.count(), 1);
}

#[track_caller]
fn assert_invalid_token(env: &Env, token: &str, message_part: &str) {
    let response = env.get_bearer("/v1/repos", token);
    response.assert_denied(401, "invalid_token");
    let challenge = response.header("www-authenticate").unwrap_or("");
    assert!(
        challenge.starts_with("Bearer realm=\"patgate\", error=\"invalid_token\""),
        "{challenge}"
    );
    let message = response.json()["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains(message_part),
        "{message:?} lacks {message_part:?}"
    );
}

#[test]
fn malformed_tokens_are_401_invalid_token() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let mut typo = token.clone().into_bytes();
    typo[20] = if typo[20] == b'x' { b'y' } else { b'x' };
    let cases = [
        "garbage".to_string(),
        token[..30].to_string(),
        String::from_utf8(typo).expect("ascii"),
        format!("tok_{}", &token[4..]),
        format!("{token}extra"),
    ];
    for case in &cases {
        assert_invalid_token(&env, case, "invalid");
    }
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn well_formed_but_unknown_prefix_is_invalid_token() {
    let env = Env::start();
    let unknown = patgate::token::generate(patgate::token::Kind::Pat).token;
    assert_invalid_token(&env, &unknown, "invalid");
    let unknown_key = patgate::token::generate(patgate::token::Kind::ApiKey).token;
    assert_invalid_token(&env, &unknown_key, "invalid");
}

#[test]
fn wrong_secret_under_a_real_prefix_is_invalid_token() {
    let env = Env::start();
    let pat = env.user_with_pat("alice", "acme", "admin");
    assert_invalid_token(&env, &same_prefix_other_secret(&pat), "invalid");
    let key = env.apikey("acme", "viewer", "alice");
    assert_invalid_token(&env, &same_prefix_other_secret(&key), "invalid");
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn revoked_token_is_invalid_token_on_the_next_request() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    assert_invalid_token(&env, &token, "revoked");
    assert_eq!(env.upstream.count(), 1);
}

#[test]
fn suspended_owner_is_invalid_token_saying_account_inactive() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.cli(&["user", "suspend", "alice"]).expect_ok();
    assert_invalid_token(&env, &token, "not active");
}

#[test]
fn owner_without_role_in_the_org_is_403_no_org_access() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.cli(&["user", "leave", "alice", "--org", "acme"])
        .expect_ok();
    let response = env.get_bearer("/v1/repos", &token);
    response.assert_denied(403, "no_org_access");
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn missing_permission_is_403_insufficient_scope_listing_it() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let response = env.get_bearer("/v1/billing/invoices", &token);
    response.assert_denied(403, "insufficient_scope");
    assert_eq!(
        response.json()["missing"],
        serde_json::json!(["billing:read"])
    );
    let challenge = response.header("www-authenticate").unwrap_or("");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn route_requiring_nothing_accepts_any_valid_credential() {
    let env = Env::start();
    let token = env.user_with_pat("vic", "acme", "viewer");
    let received = env.get_bearer("/v1/whoami", &token).echoed();
    assert_eq!(received.header("x-auth-permissions"), Some("repos:read"));
}

#[test]
fn a_client_over_its_failure_limit_gets_429_before_any_check() {
    let env = Env::start_with(crate::support::Options {
        failures_per_client: 3,
        ..Default::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    let warm = env.user_with_pat("bob", "acme", "member");
    env.get_bearer("/v1/repos", &warm).echoed();
    for _ in 0..3 {
        env.get_bearer("/v1/repos", "garbage")
            .assert_denied(401, "invalid_token");
    }
    // A token not verified here before is refused now: the client is limited, not the token…
    let response = env.get_bearer("/v1/repos", &token);
    response.assert_denied(429, "rate_limited");
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // …and so is a missing credential, but as what it is (SPEC §4's order).
    env.get("/v1/repos", &[])
        .assert_denied(401, "missing_credential");
    // A token verified on this instance before is no guess: others' failures from the same
    // address (a NAT, a proxy) do not lock it out.
    env.get_bearer("/v1/repos", &warm).echoed();
    assert_eq!(env.upstream.count(), 2);
}

#[test]
fn guesses_against_one_prefix_are_limited_for_that_prefix_only() {
    let env = Env::start_with(crate::support::Options {
        failures_per_prefix: 2,
        ..Default::default()
    });
    let alice = env.user_with_pat("alice", "acme", "member");
    let bob = env.user_with_pat("bob", "acme", "member");
    for _ in 0..2 {
        env.get_bearer("/v1/repos", &same_prefix_other_secret(&alice))
            .assert_denied(401, "invalid_token");
    }
    env.get_bearer("/v1/repos", &same_prefix_other_secret(&alice))
        .assert_denied(429, "rate_limited");
    env.get_bearer("/v1/repos", &alice)
        .assert_denied(429, "rate_limited");
    env.get_bearer("/v1/repos", &bob).echoed();
    assert_eq!(env.upstream.count(), 1);
}

#[test]
fn behind_a_trusted_proxy_failures_count_against_the_forwarded_client() {
    let env = Env::start_with(crate::support::Options {
        failures_per_client: 2,
        // The tests connect from 127.0.0.1: here that is the load balancer.
        extra_conf: "trusted_proxies: [127.0.0.1]\n".into(),
        ..Default::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");
    for _ in 0..2 {
        env.get(
            "/v1/repos",
            &[
                ("Authorization", "Bearer garbage"),
                ("X-Forwarded-For", "198.51.100.7, 203.0.113.1"),
            ],
        )
        .assert_denied(401, "invalid_token");
    }
    env.get(
        "/v1/repos",
        &[
            ("Authorization", &bearer),
            ("X-Forwarded-For", "203.0.113.1"),
        ],
    )
    .assert_denied(429, "rate_limited");
    // Another client behind the same proxy is not held back; the forged left entry is not
    // read (it names the limited address).
    env.get(
        "/v1/repos",
        &[
            ("Authorization", &bearer),
            ("X-Forwarded-For", "203.0.113.1, 203.0.113.2"),
        ],
    )
    .echoed();
    assert_eq!(env.upstream.count(), 1);
}

#[test]
fn guesses_against_a_public_prefix_do_not_lock_out_its_warm_holder() {
    let env = Env::start_with(crate::support::Options {
        failures_per_prefix: 2,
        ..Default::default()
    });
    let alice = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &alice).echoed();
    // The prefix is public (logs, listings, X-Auth-Token-Prefix): anyone can aim at it.
    for _ in 0..3 {
        env.get_bearer("/v1/repos", &same_prefix_other_secret(&alice));
    }
    env.get_bearer("/v1/repos", &same_prefix_other_secret(&alice))
        .assert_denied(429, "rate_limited");
    env.get_bearer("/v1/repos", &alice).echoed();
    // Still checked live: revoked, it is refused at once, limiter or not.
    env.cli(&["token", "revoke", &alice[..10]]).expect_ok();
    env.get_bearer("/v1/repos", &alice)
        .assert_denied(401, "invalid_token");
    assert_eq!(env.upstream.count(), 2);
}

#[test]
fn denials_carry_a_stable_reason_and_403s_name_what_the_route_requires() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let response = env.get_bearer("/v1/billing", &token);
    response.assert_denied(403, "insufficient_scope");
    assert_eq!(response.json()["reason"], "missing_permission");
    assert_eq!(
        response.header("x-auth-required-permissions"),
        Some("billing:read")
    );
    let unknown = patgate::token::generate(patgate::token::Kind::Pat).token;
    let response = env.get_bearer("/v1/repos", &unknown);
    assert_eq!(response.json()["reason"], "revoked_or_unknown");
    assert_eq!(response.header("x-auth-required-permissions"), None);
    assert_eq!(
        env.get_bearer("/v1/repos", "garbage").json()["reason"],
        "malformed"
    );
    env.cli(&["user", "leave", "alice", "--org", "acme"])
        .expect_ok();
    let response = env.get_bearer("/v1/repos", &token);
    response.assert_denied(403, "no_org_access");
    assert_eq!(response.json()["reason"], "org_mismatch");
    assert_eq!(
        response.header("x-auth-required-permissions"),
        Some("repos:read")
    );
}
