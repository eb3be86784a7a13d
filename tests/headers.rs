use crate::support::Env;

const FORGED: [(&str, &str); 7] = [
    ("X-Auth-User", "mallory"),
    ("x-auth-user", "mallory2"),
    ("X-AUTH-ROLE", "admin"),
    ("X-Auth-Org", "evilcorp"),
    ("x-AuTh-Something-New", "1"),
    // CGI-style servers (PHP, Rack, uWSGI) read these as X-Auth-User / X-Auth-Permissions.
    ("X-Auth_User", "mallory3"),
    ("x_auth_permissions", "billing:read"),
];

/// Whether a header name is an identity header in any spelling, underscores included.
fn identity_spelling(name: &str) -> bool {
    name.to_ascii_lowercase()
        .replace('_', "-")
        .starts_with("x-auth-")
}

#[test]
fn forged_identity_headers_are_stripped_on_open_routes() {
    let env = Env::start();
    let received = env.get("/healthz", &FORGED).echoed();
    assert!(
        received.headers.iter().all(|(n, _)| !identity_spelling(n)),
        "{:?}",
        received.headers
    );
}

#[test]
fn forged_identity_headers_are_replaced_on_protected_routes() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "viewer");
    let bearer = format!("Bearer {token}");
    let mut headers = FORGED.to_vec();
    headers.push(("Authorization", &bearer));
    let received = env.get("/v1/repos", &headers).echoed();
    assert_eq!(received.header_all("x-auth-user"), vec!["alice"]);
    assert_eq!(received.header_all("x-auth-role"), vec!["viewer"]);
    assert_eq!(received.header_all("x-auth-org"), vec!["acme"]);
    assert!(received.header_all("x-auth-something-new").is_empty());
    assert!(received.header_all("x-auth_user").is_empty());
    assert!(received.header_all("x_auth_permissions").is_empty());
}

#[test]
fn a_connection_header_cannot_strip_the_identity_the_gateway_sets() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "viewer");
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        // One header: Pingora reads only the first `Connection` for `close`, and the test
        // client sends its own `Connection: close` after these.
        (
            "Connection",
            "close, X-Auth-User, x-auth-role,X_Auth_Org , X-Request-Id, X-Hop",
        ),
        ("X-Hop", "hop-by-hop, as its client asked"),
    ];
    let received = env.get("/v1/repos", &headers).echoed();
    assert_eq!(received.header_all("x-auth-user"), vec!["alice"]);
    assert_eq!(received.header_all("x-auth-role"), vec!["viewer"]);
    assert_eq!(received.header_all("x-auth-org"), vec!["acme"]);
    assert_eq!(received.header_all("x-request-id").len(), 1);
    assert!(
        received.header_all("x-hop").is_empty(),
        "{:?}",
        received.headers
    );
}

#[test]
fn an_api_key_request_carries_no_user_header_in_any_spelling() {
    let env = Env::start();
    env.member("root", "acme", "admin");
    let key = env.apikey("acme", "viewer", "root");
    let mut headers = FORGED.to_vec();
    headers.push(("X-API-Key", &key));
    let received = env.get("/v1/repos", &headers).echoed();
    let users: Vec<&(String, String)> = received
        .headers
        .iter()
        .filter(|(n, _)| identity_spelling(n) && n.to_ascii_lowercase().ends_with("user"))
        .collect();
    assert!(users.is_empty(), "{users:?}");
    assert_eq!(
        received.header_all("x-auth-permissions"),
        vec!["repos:read"]
    );
}

#[test]
fn exactly_the_identity_headers_are_injected() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let received = env.get_bearer("/v1/repos", &token).echoed();
    let mut injected: Vec<(String, String)> = received
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-auth-"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    injected.sort();
    let expected: Vec<(String, String)> = [
        ("x-auth-credential-type", "pat"),
        ("x-auth-org", "acme"),
        (
            "x-auth-permissions",
            "patgate:tokens repos:read repos:write",
        ),
        ("x-auth-role", "member"),
        ("x-auth-token-prefix", &token[..10]),
        ("x-auth-user", "alice"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(injected, expected);
}

#[test]
fn admin_star_is_sent_as_every_known_permission_sorted() {
    let env = Env::start();
    let token = env.user_with_pat("root", "acme", "admin");
    let received = env.get_bearer("/v1/repos", &token).echoed();
    assert_eq!(
        received.header("x-auth-permissions"),
        Some("billing:read patgate:admin patgate:tokens repos:read repos:write")
    );
}

#[test]
fn credentials_are_stripped_before_forwarding() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");
    let received = env
        .get(
            "/v1/repos",
            &[("Authorization", &bearer), ("X-API-Key", &token)],
        )
        .echoed();
    assert!(received.header_all("authorization").is_empty());
    assert!(received.header_all("x-api-key").is_empty());
    // Open routes strip them too: an upstream never sees a credential unless a route says so.
    let received = env
        .get(
            "/healthz",
            &[("Authorization", &bearer), ("X-Api-Key", &token)],
        )
        .echoed();
    assert!(received.header_all("authorization").is_empty());
    assert!(received.header_all("x-api-key").is_empty());
    // An underscore spelling is the same header to a CGI-style upstream (HTTP_X_API_KEY).
    let received = env
        .get(
            "/v1/repos",
            &[("Authorization", &bearer), ("X_API_Key", "key_forged")],
        )
        .echoed();
    assert!(
        received
            .headers
            .iter()
            .all(|(name, _)| !name.eq_ignore_ascii_case("x_api_key")),
        "{:?}",
        received.headers
    );
}

#[test]
fn forward_credentials_route_keeps_them() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");
    let received = env.get("/legacy/x", &[("Authorization", &bearer)]).echoed();
    assert_eq!(received.header("authorization"), Some(bearer.as_str()));
    assert_eq!(received.header("x-auth-user"), Some("alice"));
}

#[test]
fn other_headers_and_the_body_pass_through() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");
    let response = env.request_with_body(
        "POST",
        "/v1/repos?x=1",
        &[
            ("Authorization", &bearer),
            ("X-Request-Thing", "kept"),
            ("Content-Type", "text/plain"),
        ],
        "hello",
    );
    let received = response.echoed();
    assert_eq!(received.method, "POST");
    assert_eq!(received.path, "/v1/repos?x=1");
    assert_eq!(received.header("x-request-thing"), Some("kept"));
    assert_eq!(received.body_len, 5);
}

#[test]
fn request_id_is_kept_or_made_and_travels_both_ways() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");
    let kept = env.get(
        "/v1/repos",
        &[("Authorization", &bearer), ("X-Request-Id", "trace-42")],
    );
    assert_eq!(kept.header("x-request-id"), Some("trace-42"));
    assert_eq!(kept.echoed().header_all("x-request-id"), vec!["trace-42"]);
    let made = env.get("/healthz", &[("X-Request-Id", "bad id with spaces")]);
    let id = made.header("x-request-id").expect("an id").to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(made.echoed().header_all("x-request-id"), vec![id.as_str()]);
    let denied = env.get("/v1/repos", &[("X-Request-Id", "deny-1")]);
    denied.assert_denied(401, "missing_credential");
    assert_eq!(denied.header("x-request-id"), Some("deny-1"));
    crate::support::eventually(
        std::time::Duration::from_secs(5),
        "the log line",
        || env.log().contains("request_id=deny-1"),
        || env.log(),
    );
}

/// Verifies an `X-Auth-Assertion` the way an upstream would, from the headers it received,
/// independently of patgate's code.
fn upstream_verifies(received: &patgate::testkit::upstream::Received, key: &[u8]) -> bool {
    use hmac::Mac;
    let Some(assertion) = received.header("x-auth-assertion") else {
        return false;
    };
    let fields: Vec<&str> = assertion.split(';').collect();
    let (Some(t), Some(sig)) = (
        fields.iter().find_map(|f| f.strip_prefix("t=")),
        fields.iter().find_map(|f| f.strip_prefix("sig=")),
    ) else {
        return false;
    };
    let header = |n: &str| received.header(n).unwrap_or("").to_string();
    let signed = [
        "v1".to_string(),
        t.to_string(),
        received.method.clone(),
        received.path.clone(),
        header("x-auth-credential-type"),
        header("x-auth-token-prefix"),
        header("x-auth-user"),
        header("x-auth-org"),
        header("x-auth-role"),
        header("x-auth-permissions"),
    ]
    .join("\n");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    mac.update(signed.as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = patgate::proxy::unix_now();
    let fresh = t.parse::<u64>().is_ok_and(|t| now.abs_diff(t) <= 60);
    fresh && expected == sig
}

#[test]
fn signed_routes_carry_an_assertion_the_upstream_can_verify() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let bearer = format!("Bearer {token}");
    let received = env
        .get("/v1/signed/a?b=1", &[("Authorization", &bearer)])
        .echoed();
    assert!(
        upstream_verifies(&received, crate::support::SIGNING_KEY.as_bytes()),
        "{:?}",
        received.headers
    );
    assert!(!upstream_verifies(
        &received,
        b"another key entirely, 32 bytes long"
    ));
    // Unsigned routes carry none, and a client cannot plant one.
    let received = env
        .get(
            "/v1/repos",
            &[
                ("Authorization", &bearer),
                ("X-Auth-Assertion", "v1;t=1;sig=00"),
            ],
        )
        .echoed();
    assert_eq!(received.header("x-auth-assertion"), None);
}
