use crate::support::{eventually, same_prefix_other_secret, Env, Options};
use serde_json::{json, Value};
use std::time::Duration;

fn prefix(token: &str) -> &str {
    &token[..10]
}

fn token_of(created: &Value) -> String {
    created["token"]
        .as_str()
        .expect("token in answer")
        .to_string()
}

/// acme: alice (member, self-service), ada (admin); globex: gus (admin).
fn orgs(env: &Env) -> (String, String, String) {
    let alice = env.user_with_pat("alice", "acme", "member");
    let ada = env.user_with_pat("ada", "acme", "admin");
    let gus = env.user_with_pat("gus", "globex", "admin");
    (alice, ada, gus)
}

#[test]
fn self_service_creates_lists_uses_and_revokes_own_pats() {
    let env = Env::start();
    let (alice, _, _) = orgs(&env);
    let created = env.api_ok(
        "POST",
        "/v1/tokens",
        &alice,
        r#"{"name":"laptop","expires":"7d"}"#,
        201,
    );
    let token = token_of(&created);
    let credential = &created["credential"];
    assert_eq!(credential["user"], "alice");
    assert_eq!(credential["org"], "acme");
    assert_eq!(credential["state"], "active");
    assert_eq!(credential["expiry"], "expires in 7 days");
    assert_eq!(credential["last_used_text"], "never used");
    // The secret is in that one answer only.
    let listed = env.api_ok("GET", "/v1/tokens", &alice, "", 200);
    assert!(!listed.to_string().contains(&token[10..]));
    let names: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{listed}");
    assert!(names.contains(&"laptop"));
    // It works on the gateway, and the use is recorded.
    env.get_bearer("/v1/repos", &token).echoed();
    eventually(
        Duration::from_secs(5),
        "last use to be recorded",
        || {
            let shown = env.api_ok(
                "GET",
                &format!("/v1/tokens/{}", prefix(&token)),
                &alice,
                "",
                200,
            );
            shown["last_used_text"] == "used just now"
                && shown["last_used"]["clients"] == json!(["127.0.0.1"])
        },
        || env.log(),
    );
    let revoked = env.api_ok(
        "DELETE",
        &format!("/v1/tokens/{}", prefix(&token)),
        &alice,
        "",
        200,
    );
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["revocation"], "revoked now");
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    let again = env.api_ok(
        "DELETE",
        &format!("/v1/tokens/{}", prefix(&token)),
        &alice,
        "",
        200,
    );
    assert_eq!(again["revocation"], "was already revoked");
}

#[test]
fn without_the_permission_or_a_credential_the_api_refuses() {
    let env = Env::start();
    let viewer = env.user_with_pat("vic", "acme", "viewer");
    let (alice, _, _) = orgs(&env);
    let refused = env.api("POST", "/v1/tokens", &viewer, r#"{"name":"x"}"#);
    refused.assert_denied(403, "forbidden");
    assert!(refused.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("patgate:tokens"));
    // Self-service is not administration.
    env.api("GET", "/v1/apikeys", &alice, "")
        .assert_denied(403, "forbidden");
    env.api("GET", "/v1/users/alice", &alice, "")
        .assert_denied(403, "forbidden");
    env.api("GET", "/v1/tokens?user=ada", &alice, "")
        .assert_denied(403, "forbidden");
    // Authentication answers exactly like the gateway.
    let missing = env.api("GET", "/v1/tokens", "", "");
    missing.assert_denied(401, "missing_credential");
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="patgate""#)
    );
    let wrong = same_prefix_other_secret(&alice);
    env.api("GET", "/v1/tokens", &wrong, "")
        .assert_denied(401, "invalid_token");
    env.cli(&["user", "suspend", "alice"]).expect_ok();
    env.api("GET", "/v1/tokens", &alice, "")
        .assert_denied(401, "invalid_token");
    assert_eq!(env.upstream.count(), 0, "the API never proxies");
}

#[test]
fn malformed_calls_get_clear_4xx_errors() {
    let env = Env::start();
    let (alice, ada, _) = orgs(&env);
    env.api("POST", "/v1/tokens", &alice, "{not json")
        .assert_denied(400, "invalid_request");
    let unknown = env.api(
        "POST",
        "/v1/tokens",
        &alice,
        r#"{"name":"x","scope":"all"}"#,
    );
    unknown.assert_denied(400, "invalid_request");
    assert!(unknown.body.contains("scope"), "{}", unknown.body);
    env.api("POST", "/v1/tokens", &alice, "")
        .assert_denied(400, "invalid_request");
    let wrong_method = env.api("PATCH", "/v1/tokens", &alice, "");
    wrong_method.assert_denied(405, "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), Some("GET, POST"));
    env.api("GET", "/v1/nothing/here", &alice, "")
        .assert_denied(404, "not_found");
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(70 * 1024));
    env.api("POST", "/v1/tokens", &alice, &big)
        .assert_denied(413, "body_too_large");
    env.api("GET", "/v1/audit?limit=0", &ada, "")
        .assert_denied(400, "invalid_request");
    env.api("GET", "/v1/audit?before=%2B", &ada, "")
        .assert_denied(400, "invalid_request");
    env.api("GET", "/v1/tokens/not-a-prefix", &alice, "")
        .assert_denied(404, "not_found");
    // Nothing was created by any of it.
    let listed = env.api_ok("GET", "/v1/tokens", &alice, "", 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}

#[test]
fn policy_is_enforced_as_in_the_cli() {
    let env = Env::start();
    let (alice, _, _) = orgs(&env);
    let cases = [
        (
            r#"{"name":"x","expires":"400d"}"#,
            "above the policy maximum",
        ),
        (r#"{"name":"x","expires":"never"}"#, "without expiry"),
        (r#"{"name":"x","expires":"soon"}"#, "invalid duration"),
        (r#"{"name":"x","expires":"1é"}"#, "invalid duration"),
        (
            r#"{"name":"x","permissions":["repos:delete"]}"#,
            "unknown permission",
        ),
        (r#"{"name":"x","permissions":["billing:read"]}"#, "lacks"),
        (r#"{"name":"","expires":"1d"}"#, "invalid --name"),
    ];
    for (body, message) in cases {
        let refused = env.api("POST", "/v1/tokens", &alice, body);
        assert!(
            matches!(refused.status, 403 | 422),
            "{body}: {} {}",
            refused.status,
            refused.body
        );
        assert!(
            refused.json()["message"]
                .as_str()
                .unwrap_or("")
                .contains(message),
            "{body}: {}",
            refused.body
        );
    }
    let listed = env.api_ok("GET", "/v1/tokens", &alice, "", 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "nothing created");
}

#[test]
fn admins_manage_members_of_their_own_org_only() {
    let env = Env::start();
    let (_, ada, gus) = orgs(&env);
    // Add bob to acme, then promote him.
    let bob = env.api_ok(
        "PUT",
        "/v1/users/bob/orgs/acme",
        &ada,
        r#"{"role":"viewer"}"#,
        200,
    );
    assert_eq!(
        bob,
        json!({"user": "bob", "status": "active", "orgs": {"acme": "viewer"}})
    );
    env.api_ok(
        "PUT",
        "/v1/users/bob/orgs/acme",
        &ada,
        r#"{"role":"member"}"#,
        200,
    );
    // Not above the admin's own role, not in another org.
    env.api(
        "PUT",
        "/v1/users/bob/orgs/acme",
        &ada,
        r#"{"role":"owner"}"#,
    )
    .assert_denied(403, "forbidden");
    env.api(
        "PUT",
        "/v1/users/bob/orgs/globex",
        &ada,
        r#"{"role":"viewer"}"#,
    )
    .assert_denied(403, "forbidden");
    env.api("PUT", "/v1/users/bob/orgs/acme", &ada, r#"{"role":"czar"}"#)
        .assert_denied(422, "refused");
    // globex's admin cannot see or touch acme's members.
    env.api("GET", "/v1/users/bob", &gus, "")
        .assert_denied(404, "not_found");
    env.api("POST", "/v1/users/bob/suspend", &gus, "")
        .assert_denied(404, "not_found");
    // An owner outranks the admin.
    env.member("olga", "acme", "owner");
    env.api("POST", "/v1/users/olga/suspend", &ada, "")
        .assert_denied(403, "forbidden");
    let olga_pat = env.pat_with("olga", "acme", &[]);
    env.api(
        "DELETE",
        &format!("/v1/tokens/{}", prefix(&olga_pat)),
        &ada,
        "",
    )
    .assert_denied(403, "forbidden");
    env.get_bearer("/v1/repos", &olga_pat).echoed();
    let owner_key = env.apikey("acme", "owner", "olga");
    env.api(
        "DELETE",
        &format!("/v1/apikeys/{}", prefix(&owner_key)),
        &ada,
        "",
    )
    .assert_denied(403, "forbidden");
    // A member of two orgs is suspended by an operator only.
    env.member("mia", "acme", "member");
    env.member("mia", "globex", "member");
    env.api("POST", "/v1/users/mia/suspend", &ada, "")
        .assert_denied(403, "forbidden");
    let shown = env.api_ok("GET", "/v1/users/mia", &ada, "", 200);
    assert_eq!(
        shown["orgs"],
        json!({"acme": "member"}),
        "only acme is shown"
    );
    // Suspension through the API takes effect on the gateway at once.
    let bob_pat = env.pat_with("bob", "acme", &[]);
    env.get_bearer("/v1/repos", &bob_pat).echoed();
    let suspended = env.api_ok("POST", "/v1/users/bob/suspend", &ada, "", 200);
    assert_eq!(suspended["status"], "suspended");
    env.get_bearer("/v1/repos", &bob_pat)
        .assert_denied(401, "invalid_token");
    env.api_ok("POST", "/v1/users/bob/reactivate", &ada, "", 200);
    env.get_bearer("/v1/repos", &bob_pat).echoed();
    env.api_ok("DELETE", "/v1/users/bob/orgs/acme", &ada, "", 200);
    env.get_bearer("/v1/repos", &bob_pat)
        .assert_denied(403, "no_org_access");
    let removed = env.api_ok("POST", "/v1/users/bob/remove", &ada, "", 404);
    assert_eq!(removed["error"], "not_found", "bob is no longer in acme");
}

#[test]
fn credentials_of_another_org_are_not_found_and_stay_valid() {
    let env = Env::start();
    let (alice, ada, gus) = orgs(&env);
    let alice_prefix = prefix(&alice);
    for (method, path) in [
        ("GET", format!("/v1/tokens/{alice_prefix}")),
        ("DELETE", format!("/v1/tokens/{alice_prefix}")),
        ("GET", "/v1/tokens?user=alice".to_string()),
        (
            "GET",
            format!("/v1/explain?token_prefix={alice_prefix}&path=/v1/repos"),
        ),
    ] {
        let response = env.api(method, &path, &gus, "");
        if path.contains("user=alice") {
            assert_eq!(response.status, 200, "{}", response.body);
            assert_eq!(response.json(), json!([]), "no acme token listed to globex");
        } else {
            response.assert_denied(404, "not_found");
        }
    }
    env.get_bearer("/v1/repos", &alice).echoed();
    // acme's admin sees and revokes it.
    let shown = env.api_ok("GET", &format!("/v1/tokens/{alice_prefix}"), &ada, "", 200);
    assert_eq!(shown["user"], "alice");
    env.api_ok(
        "DELETE",
        &format!("/v1/tokens/{alice_prefix}"),
        &ada,
        "",
        200,
    );
    env.get_bearer("/v1/repos", &alice)
        .assert_denied(401, "invalid_token");
}

#[test]
fn api_keys_follow_the_cli_rules() {
    let env = Env::start();
    let (alice, ada, _) = orgs(&env);
    let created = env.api_ok(
        "POST",
        "/v1/apikeys",
        &ada,
        r#"{"role":"member","name":"ci"}"#,
        201,
    );
    let key = token_of(&created);
    assert_eq!(created["credential"]["created_by"], "ada");
    assert_eq!(created["credential"]["role"], "member");
    env.get("/v1/repos", &[("X-API-Key", &key)]).echoed();
    env.api(
        "POST",
        "/v1/apikeys",
        &ada,
        r#"{"role":"owner","name":"x"}"#,
    )
    .assert_denied(403, "forbidden");
    env.api(
        "POST",
        "/v1/apikeys",
        &ada,
        r#"{"role":"member","name":"x","created_by":"alice"}"#,
    )
    .assert_denied(403, "forbidden");
    env.api(
        "POST",
        "/v1/apikeys",
        &alice,
        r#"{"role":"viewer","name":"x"}"#,
    )
    .assert_denied(403, "forbidden");
    // An admin API key acts for the org, on a named admin's authority.
    let admin_key = env.apikey("acme", "admin", "ada");
    env.api(
        "POST",
        "/v1/apikeys",
        &admin_key,
        r#"{"role":"viewer","name":"x"}"#,
    )
    .assert_denied(400, "invalid_request");
    let refused = env.api(
        "POST",
        "/v1/apikeys",
        &admin_key,
        r#"{"role":"viewer","name":"x","created_by":"alice"}"#,
    );
    refused.assert_denied(422, "refused");
    assert!(refused.body.contains("not an admin"), "{}", refused.body);
    env.api_ok(
        "POST",
        "/v1/apikeys",
        &admin_key,
        r#"{"role":"viewer","name":"nightly","created_by":"ada"}"#,
        201,
    );
    // ... and creates PATs for the org's members (the product's settings page).
    let for_alice = env.api_ok(
        "POST",
        "/v1/tokens",
        &admin_key,
        r#"{"user":"alice","name":"from settings"}"#,
        201,
    );
    // Its owner can see that the key, not she, made it.
    assert_eq!(for_alice["credential"]["user"], "alice");
    assert_eq!(
        for_alice["credential"]["created_by"],
        json!(&admin_key[..10])
    );
    env.get_bearer("/v1/repos", &token_of(&for_alice)).echoed();
    let keys = env.api_ok("GET", "/v1/apikeys", &ada, "", 200);
    assert_eq!(keys.as_array().map(Vec::len), Some(3));
    env.api_ok(
        "DELETE",
        &format!("/v1/apikeys/{}", prefix(&key)),
        &ada,
        "",
        200,
    );
    env.get("/v1/repos", &[("X-API-Key", &key)])
        .assert_denied(401, "invalid_token");
}

#[test]
fn a_narrowed_credential_cannot_mint_a_wider_one() {
    let env = Env::start();
    orgs(&env);
    let narrow = env.pat_with(
        "ada",
        "acme",
        &["--permissions", "patgate:admin,repos:read"],
    );
    let created = env.api_ok("POST", "/v1/tokens", &narrow, r#"{"name":"inherits"}"#, 201);
    assert_eq!(
        created["credential"]["permissions"],
        json!(["patgate:admin", "repos:read"])
    );
    let token = token_of(&created);
    env.request(
        "POST",
        "/v1/repos",
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .assert_denied(403, "insufficient_scope");
    env.api(
        "POST",
        "/v1/tokens",
        &narrow,
        r#"{"name":"wider","permissions":["repos:write"]}"#,
    )
    .assert_denied(403, "forbidden");
}

#[test]
fn a_narrowed_admin_key_mints_for_a_member_within_both() {
    let env = Env::start();
    orgs(&env);
    env.member("bob", "acme", "member");
    let narrow_key = env.apikey_with(
        "acme",
        "admin",
        "ada",
        &["--permissions", "patgate:admin,repos:read"],
    );
    let created = env.api_ok(
        "POST",
        "/v1/tokens",
        &narrow_key,
        r#"{"user":"bob","name":"inherits"}"#,
        201,
    );
    // Inherited: the key's permissions within bob's member role, so patgate:admin is dropped.
    assert_eq!(created["credential"]["permissions"], json!(["repos:read"]));
    env.api(
        "POST",
        "/v1/tokens",
        &narrow_key,
        r#"{"user":"bob","name":"wider","permissions":["repos:write"]}"#,
    )
    .assert_denied(403, "forbidden");
}

#[test]
fn an_admin_cannot_mint_a_pat_that_acts_as_someone_else() {
    let env = Env::start();
    let (_, ada, _) = orgs(&env);
    env.member("bob", "acme", "member");
    let refused = env.api(
        "POST",
        "/v1/tokens",
        &ada,
        r#"{"user":"bob","name":"as bob"}"#,
    );
    refused.assert_denied(403, "forbidden");
    assert!(
        refused.body.contains("created by its owner"),
        "{}",
        refused.body
    );
    let listed = env
        .cli(&["token", "list", "--user", "bob", "--json"])
        .expect_ok();
    assert_eq!(listed.stdout.trim(), "[]", "nothing was created");
}

#[test]
fn every_action_and_denial_is_in_the_audit_trail_without_secrets() {
    let env = Env::start();
    let (alice, ada, gus) = orgs(&env);
    let created = env.api_ok("POST", "/v1/tokens", &alice, r#"{"name":"a"}"#, 201);
    let token = token_of(&created);
    env.api_ok(
        "PUT",
        "/v1/users/bob/orgs/acme",
        &ada,
        r#"{"role":"viewer"}"#,
        200,
    );
    env.api_ok(
        "PUT",
        "/v1/users/bob/orgs/acme",
        &ada,
        r#"{"role":"member"}"#,
        200,
    );
    env.api_ok(
        "DELETE",
        &format!("/v1/tokens/{}", prefix(&token)),
        &ada,
        "",
        200,
    );
    env.api_ok("POST", "/v1/users/bob/suspend", &ada, "", 200);
    let audit = env.api_ok("GET", "/v1/audit?limit=50", &ada, "", 200);
    let entries = audit["entries"].as_array().expect("entries").clone();
    let brief: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["actor"].as_str().unwrap_or("").to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let p = prefix(&token).to_string();
    let expected_newest_first = [
        ("user.suspend", "ada", "bob"),
        ("token.revoke", "ada", p.as_str()),
        ("membership.put", "ada", "bob"),
        ("membership.put", "ada", "bob"),
        ("token.create", "alice", p.as_str()),
    ];
    for (i, (action, actor, target)) in expected_newest_first.iter().enumerate() {
        assert_eq!(
            (
                brief[i].0.as_str(),
                brief[i].1.as_str(),
                brief[i].2.as_str()
            ),
            (*action, *actor, *target),
            "{brief:?}"
        );
    }
    assert_eq!(entries[2]["details"]["previous_role"], "viewer");
    assert_eq!(entries[2]["details"]["role"], "member");
    // The CLI's setup actions (cli:<user>) are there too, filed under acme.
    assert!(brief.iter().any(|(a, actor, t)| a == "token.create"
        && actor.starts_with("cli:")
        && t == prefix(&ada)));
    // globex sees none of acme's entries.
    let theirs = env.api_ok("GET", "/v1/audit", &gus, "", 200);
    assert!(theirs["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| e["org"] == "globex"));
    // Denied requests go to their own stream, read with the CLI.
    env.get_bearer("/v1/billing", &alice)
        .assert_denied(403, "insufficient_scope");
    let wrong = same_prefix_other_secret(&alice);
    env.get_bearer("/v1/repos", &wrong)
        .assert_denied(401, "invalid_token");
    let mut denied = Vec::new();
    eventually(
        Duration::from_secs(5),
        "denials in the audit trail",
        || {
            let out = env
                .cli(&["audit", "tail", "--denied", "--json"])
                .expect_ok();
            denied = out
                .stdout
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
                .collect();
            denied.len() == 2
        },
        || env.log(),
    );
    assert_eq!(denied[0]["actor"], prefix(&alice));
    assert_eq!(denied[0]["target"], "billing");
    assert_eq!(denied[0]["details"]["error"], "insufficient_scope");
    assert_eq!(denied[0]["details"]["client"], "127.0.0.1");
    assert_eq!(denied[1]["details"]["reason"], "revoked_or_unknown");
    // No secret anywhere in the trail.
    let all = env.cli(&["audit", "tail", "-n", "1000"]).expect_ok().stdout
        + &env
            .cli(&["audit", "tail", "--denied", "-n", "1000"])
            .expect_ok()
            .stdout;
    for secret in [&token, &alice, &ada, &gus, &wrong] {
        assert!(
            !all.contains(&secret[10..]),
            "a secret leaked into the audit trail"
        );
    }
    assert!(
        all.contains("user.suspend actor=ada target=bob org=acme"),
        "{all}"
    );
}

#[test]
fn last_used_is_written_once_per_window_however_many_requests() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let written = r#"patgate_records_total{kind="last_used",result="written"}"#;
    for _ in 0..30 {
        env.get_bearer("/v1/repos", &token).echoed();
    }
    eventually(
        Duration::from_secs(5),
        "the first stamp",
        || env.metric(written) >= 1.0,
        || env.log(),
    );
    for _ in 0..30 {
        env.get_bearer("/v1/repos", &token).echoed();
    }
    // The first write was made; 59 more uses inside the 60 s window wrote nothing more.
    assert_eq!(env.metric(written), 1.0);
    let listed = env
        .cli(&["token", "list", "--user", "alice", "--json"])
        .expect_ok();
    let list: Value = serde_json::from_str(&listed.stdout).expect("JSON");
    assert_eq!(list[0]["last_used_text"], "used just now");
    let table = env.cli(&["token", "list", "--user", "alice"]).expect_ok();
    assert!(
        table.stdout.contains("used just now from 127.0.0.1"),
        "{}",
        table.stdout
    );
}

#[test]
fn pending_uses_are_flushed_after_the_window_with_distinct_clients() {
    let env = Env::start_with(Options {
        last_used_seconds: 1,
        ..Options::default()
    });
    let token = env.user_with_pat("alice", "acme", "member");
    for last in [1u8, 2, 3, 2, 4, 5, 6] {
        let response = get_from(env.port, [127, 0, 0, last], &token);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    let clients = || {
        let listed = env
            .cli(&["token", "list", "--user", "alice", "--json"])
            .expect_ok();
        let list: Value = serde_json::from_str(&listed.stdout).expect("JSON");
        list[0]["last_used"]["clients"].clone()
    };
    eventually(
        Duration::from_secs(10),
        "the pending stamp to be flushed",
        || {
            clients()
                == json!([
                    "127.0.0.6",
                    "127.0.0.5",
                    "127.0.0.4",
                    "127.0.0.2",
                    "127.0.0.3"
                ])
        },
        || format!("{}\n{}", clients(), env.log()),
    );
}

/// A GET with a bearer token from a chosen loopback source address.
fn get_from(port: u16, source: [u8; 4], token: &str) -> String {
    use std::io::{Read, Write};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::from((source, 0)))
            .expect("bind source");
        socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("connect")
            .into_std()
            .expect("std stream")
    });
    let mut stream = stream;
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /v1/repos HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    raw
}

#[test]
fn leaked_tokens_are_revoked_and_the_answer_does_not_tell_which_were_real() {
    let env = Env::start();
    let (alice, _, _) = orgs(&env);
    let key = env.apikey("acme", "member", "ada");
    let guess = same_prefix_other_secret(&alice);
    let other = env.pat_with("alice", "acme", &[]);
    let body = json!({ "tokens": [alice, key, guess, "not-a-token"] }).to_string();
    let answer = env.api_ok("POST", "/v1/leaks", "", &body, 200);
    let too_many = json!({ "tokens": vec!["x"; 21] }).to_string();
    env.api("POST", "/v1/leaks", "", &too_many)
        .assert_denied(400, "invalid_request");
    let mut expected = vec![prefix(&alice).to_string(), prefix(&key).to_string()];
    expected.sort();
    assert_eq!(answer["revoked"], json!(expected));
    assert_eq!(answer["malformed"], 1);
    env.get_bearer("/v1/repos", &alice)
        .assert_denied(401, "invalid_token");
    env.get("/v1/repos", &[("X-API-Key", &key)])
        .assert_denied(401, "invalid_token");
    env.get_bearer("/v1/repos", &other).echoed();
    // A guess under a real prefix answers exactly like the real token did.
    let fresh = env.pat_with("alice", "acme", &[]);
    let guess = same_prefix_other_secret(&fresh);
    let answer_guess = env.api_ok(
        "POST",
        "/v1/leaks",
        "",
        &json!({"tokens": [guess]}).to_string(),
        200,
    );
    assert_eq!(
        answer_guess,
        json!({"revoked": [prefix(&fresh)], "malformed": 0})
    );
    env.get_bearer("/v1/repos", &fresh).echoed();
    let trail = env.cli(&["audit", "tail", "-n", "100"]).expect_ok().stdout;
    let leak_lines: Vec<&str> = trail
        .lines()
        .filter(|l| l.contains("leak.revoke"))
        .collect();
    assert_eq!(leak_lines.len(), 2, "{trail}");
    assert!(leak_lines[0].contains("actor=leak-report:127.0.0.1"));
    // Rate limited per client: 10 calls a minute.
    let mut last = None;
    for _ in 0..8 {
        last = Some(env.api("POST", "/v1/leaks", "", r#"{"tokens":[]}"#));
    }
    let limited = last.expect("a response");
    limited.assert_denied(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
}

#[test]
fn prune_revokes_dormant_credentials_and_dry_run_only_lists() {
    let env = Env::start();
    let (alice, ada, gus) = orgs(&env);
    let dormant = env.pat_with("alice", "acme", &[]);
    let fresh_unused = env.pat_with("alice", "acme", &[]);
    // Make `dormant` (and the globex admin's PAT) look created long ago and never used.
    let mut conn = redis::Client::open(env.redis.url())
        .expect("client")
        .get_connection()
        .expect("connection");
    for old in [&dormant, &gus] {
        let _: () = redis::cmd("HSET")
            .arg(format!("patgate:cred:{}", prefix(old)))
            .arg("created")
            .arg(1_000_000)
            .query(&mut conn)
            .expect("HSET");
    }
    let listed = env.api_ok(
        "POST",
        "/v1/prune",
        &ada,
        r#"{"unused_for":"90d","dry_run":true}"#,
        200,
    );
    let prefixes: Vec<&str> = listed["credentials"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["prefix"].as_str())
        .collect();
    assert_eq!(prefixes, [prefix(&dormant)], "only acme's dormant PAT");
    env.get_bearer("/v1/repos", &dormant).echoed();
    // That use counts: nothing is dormant in acme now. The CLI prunes across orgs.
    eventually(
        Duration::from_secs(5),
        "the use to be recorded",
        || {
            let out = env
                .cli(&[
                    "token",
                    "prune",
                    "--unused-for",
                    "90d",
                    "--dry-run",
                    "--json",
                ])
                .expect_ok();
            let list: Value = serde_json::from_str(&out.stdout).expect("JSON");
            list.as_array().map(Vec::len) == Some(1)
        },
        || env.log(),
    );
    let out = env
        .cli(&["token", "prune", "--unused-for", "90d", "--json"])
        .expect_ok();
    let list: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(list[0]["prefix"], prefix(&gus));
    assert!(out.stderr.contains("revoked 1 dormant credential"));
    env.get_bearer("/v1/repos", &gus)
        .assert_denied(401, "invalid_token");
    for live in [&alice, &ada, &dormant, &fresh_unused] {
        env.get_bearer("/v1/repos", live).echoed();
    }
    let trail = env.cli(&["audit", "tail"]).expect_ok().stdout;
    assert!(trail.contains("prune.revoke actor=cli:"), "{trail}");
}

#[test]
fn explain_through_the_api_matches_the_cli() {
    let env = Env::start();
    let (alice, ada, _) = orgs(&env);
    let path = format!(
        "/v1/explain?token_prefix={}&method=post&path=/v1/billing",
        prefix(&alice)
    );
    let explained = env.api_ok("GET", &path, &ada, "", 200);
    assert_eq!(explained["route"], "billing");
    assert_eq!(explained["decision"], "insufficient_scope");
    let cli = env
        .cli(&[
            "explain",
            "--token-prefix",
            prefix(&alice),
            "--method",
            "post",
            "--path",
            "/v1/billing",
            "--json",
        ])
        .expect_ok();
    let from_cli: Value = serde_json::from_str(&cli.stdout).expect("JSON");
    assert_eq!(explained, from_cli);
    env.api("GET", "/v1/explain?path=/v1/repos", &ada, "")
        .assert_denied(400, "invalid_request");
}

#[test]
fn the_served_openapi_document_is_the_repo_file_and_valid() {
    let env = Env::start();
    let served = env.api_ok("GET", "/v1/openapi.json", "", "", 200);
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .expect("docs/openapi.json"),
    )
    .expect("JSON");
    assert_eq!(served, file);
    // A real validator (installed by scripts/setup).
    let validator = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/tools/venv/bin/openapi-spec-validator"
    );
    let out = std::process::Command::new(validator)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .output()
        .unwrap_or_else(|e| panic!("{validator}: {e}; run scripts/setup"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every documented operation exists on the server (no 404 "no endpoint" / 405).
    let paths = served["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12, "{}", paths.len());
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            if !["get", "post", "put", "delete"].contains(&method.as_str()) {
                continue;
            }
            let concrete = path
                .replace("{user}", "nobody")
                .replace("{org}", "acme")
                .replace("{prefix}", "pat_aaaaaa");
            let response = env.api(&method.to_ascii_uppercase(), &concrete, "", "");
            assert_ne!(response.status, 405, "{method} {path}");
            assert!(
                !response.body.contains("no endpoint"),
                "{method} {path} is documented but not served"
            );
        }
    }
}

#[test]
fn each_kind_of_change_leaves_its_audit_entry() {
    let env = Env::start();
    let (_, ada, _) = orgs(&env);
    env.api_ok(
        "PUT",
        "/v1/users/bob/orgs/acme",
        &ada,
        r#"{"role":"member"}"#,
        200,
    );
    let key = env.api_ok(
        "POST",
        "/v1/apikeys",
        &ada,
        r#"{"role":"viewer","name":"k"}"#,
        201,
    );
    let key_prefix = key["credential"]["prefix"]
        .as_str()
        .expect("prefix")
        .to_string();
    env.api_ok(
        "DELETE",
        &format!("/v1/apikeys/{key_prefix}"),
        &ada,
        "",
        200,
    );
    env.api_ok("POST", "/v1/users/bob/suspend", &ada, "", 200);
    env.api_ok("POST", "/v1/users/bob/reactivate", &ada, "", 200);
    env.api_ok("DELETE", "/v1/users/bob/orgs/acme", &ada, "", 200);
    env.cli(&["user", "put", "bob", "--org", "acme", "--role", "viewer"])
        .expect_ok();
    env.api_ok("POST", "/v1/users/bob/remove", &ada, "", 200);
    let trail = env.cli(&["audit", "tail", "-n", "100"]).expect_ok().stdout;
    for expected in [
        "membership.put actor=ada target=bob org=acme previous_role=none role=member".to_string(),
        format!("apikey.create actor=ada target={key_prefix} org=acme name=k role=viewer"),
        format!("apikey.revoke actor=ada target={key_prefix} org=acme"),
        "user.suspend actor=ada target=bob org=acme".to_string(),
        "user.reactivate actor=ada target=bob org=acme".to_string(),
        "membership.leave actor=ada target=bob org=acme".to_string(),
        "user.remove actor=ada target=bob org=acme".to_string(),
    ] {
        assert!(
            trail.contains(&expected),
            "missing {expected:?} in\n{trail}"
        );
    }
    assert!(trail.contains("membership.put actor=cli:"), "{trail}");
    let json = env.api_ok("GET", "/v1/audit?limit=1", &ada, "", 200);
    assert_eq!(json["entries"][0]["action"], "user.remove");
    assert!(json["next_before"].is_string());
}
