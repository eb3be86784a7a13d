use crate::support::{patgate_bin, Env, Options};
use std::process::Command;

#[test]
fn token_create_prints_only_the_token_on_stdout() {
    let env = Env::start();
    env.member("alice", "acme", "member");
    let out = env
        .cli(&[
            "token", "create", "--user", "alice", "--org", "acme", "--name", "laptop",
        ])
        .expect_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", out.stdout);
    let token = lines[0];
    assert!(patgate::token::parse(token).is_ok());
    assert!(out.stderr.contains(&token[..10]));
    assert!(
        !out.stderr.contains(token),
        "the secret must not be repeated on stderr"
    );
    assert!(out.stderr.contains("expires in 30 days"), "{}", out.stderr);
}

#[test]
fn token_list_shows_prefixes_and_state_but_never_the_secret() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let second = env.pat_with("alice", "acme", &["--expires", "12h"]);
    env.cli(&["token", "revoke", &second[..10]]).expect_ok();
    let table = env.cli(&["token", "list", "--user", "alice"]).expect_ok();
    assert!(table.stdout.contains(&token[..10]));
    assert!(!table.stdout.contains(&token) && !table.stdout.contains(&second));
    let json = env
        .cli(&["token", "list", "--user", "alice", "--json"])
        .expect_ok();
    let list: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    let state_of = |prefix: &str| {
        list.iter()
            .find(|t| t["prefix"] == prefix)
            .map(|t| t["state"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(state_of(&token[..10]).as_deref(), Some("active"));
    assert_eq!(state_of(&second[..10]).as_deref(), Some("revoked"));
    assert!(!json.stdout.contains("$2"), "no hash in listings");
    assert!(list.iter().all(|t| t.get("hash").is_none()));
}

#[test]
fn apikey_list_and_user_show_have_json_forms() {
    let env = Env::start();
    env.member("root", "acme", "admin");
    let key = env.apikey("acme", "viewer", "root");
    let json = env
        .cli(&["apikey", "list", "--org", "acme", "--json"])
        .expect_ok();
    let list: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(list[0]["prefix"], &key[..10]);
    assert_eq!(list[0]["role"], "viewer");
    assert_eq!(list[0]["created_by"], "root");
    let user = env.cli(&["user", "show", "root", "--json"]).expect_ok();
    let user: serde_json::Value = serde_json::from_str(&user.stdout).expect("json");
    assert_eq!(user["status"], "active");
    assert_eq!(user["orgs"]["acme"], "admin");
}

/// Asserts that a refused create wrote nothing: the user's and org's listings stay empty.
fn assert_nothing_written(env: &Env) {
    let tokens = env
        .cli(&["token", "list", "--user", "alice", "--json"])
        .expect_ok();
    assert_eq!(tokens.stdout.trim(), "[]");
    let keys = env
        .cli(&["apikey", "list", "--org", "acme", "--json"])
        .expect_ok();
    assert_eq!(keys.stdout.trim(), "[]");
}

#[test]
fn invalid_token_requests_are_refused_and_write_nothing() {
    let env = Env::start();
    env.member("alice", "acme", "member");
    let create = |extra: &[&str]| {
        let mut args = vec![
            "token", "create", "--user", "alice", "--org", "acme", "--name", "x",
        ];
        args.extend_from_slice(extra);
        env.cli(&args)
    };
    create(&["--permissions", "repo:read"]).expect_refused("unknown permission \"repo:read\"");
    create(&["--permissions", "billing:read"]).expect_refused("does not grant billing:read");
    create(&["--expires", "400d"]).expect_refused("above the policy maximum");
    create(&["--expires", "never"]).expect_refused("without expiry are not allowed");
    create(&["--expires", "3 days"]).expect_refused("invalid duration");
    // A multi-byte last character is refused, not split in half (it used to panic).
    create(&["--expires", "30天"]).expect_refused("invalid duration");
    env.cli(&[
        "token", "create", "--user", "alice", "--org", "globex", "--name", "x",
    ])
    .expect_refused("has no role in org \"globex\"");
    env.cli(&[
        "token", "create", "--user", "nobody", "--org", "acme", "--name", "x",
    ])
    .expect_refused("not found");
    env.cli(&[
        "token", "create", "--user", "alice", "--org", "acme", "--name", "",
    ])
    .expect_refused("--name");
    env.cli(&["user", "put", "alice", "--org", "acme", "--role", "czar"])
        .expect_refused("unknown role \"czar\"");
    env.cli(&["user", "put", "al ice", "--org", "acme", "--role", "member"])
        .expect_refused("invalid user id");
    assert_nothing_written(&env);
}

#[test]
fn api_key_rules_are_enforced_and_refusals_write_nothing() {
    let env = Env::start();
    env.member("alice", "acme", "member");
    env.member("root", "acme", "admin");
    let create = |role: &str, by: &str, extra: &[&str]| {
        let mut args = vec![
            "apikey",
            "create",
            "--org",
            "acme",
            "--role",
            role,
            "--created-by",
            by,
            "--name",
            "ci",
        ];
        args.extend_from_slice(extra);
        env.cli(&args)
    };
    create("viewer", "alice", &[]).expect_refused("is not an admin of org \"acme\"");
    create("viewer", "ghost", &[]).expect_refused("not found");
    create("czar", "root", &[]).expect_refused("unknown role");
    create("viewer", "root", &["--permissions", "repos:write"])
        .expect_refused("does not grant repos:write");
    create("viewer", "root", &["--expires", "366d"]).expect_refused("above the policy maximum");
    env.cli(&["user", "suspend", "root"]).expect_ok();
    create("viewer", "root", &[]).expect_refused("is not active");
    assert_nothing_written(&env);
}

#[test]
fn api_key_role_may_not_exceed_the_creators() {
    let env = Env::start_with(Options::default());
    // With admin_role = admin and admin the highest role, an admin may create any role up to
    // admin; an admin of another org is not an admin here.
    env.member("root", "acme", "admin");
    env.member("other", "globex", "admin");
    env.apikey("acme", "admin", "root");
    env.cli(&[
        "apikey",
        "create",
        "--org",
        "acme",
        "--role",
        "viewer",
        "--created-by",
        "other",
        "--name",
        "x",
    ])
    .expect_refused("is not an admin of org \"acme\"");
}

#[test]
fn no_expiry_is_allowed_only_when_policy_says_so() {
    let env = Env::start_with(Options {
        allow_no_expiry: true,
        max_lifetime: "never",
        ..Options::default()
    });
    env.member("alice", "acme", "member");
    let token = env.pat_with("alice", "acme", &["--expires", "never"]);
    env.get_bearer("/v1/repos", &token).echoed();
    let list = env
        .cli(&["token", "list", "--user", "alice", "--json"])
        .expect_ok();
    assert!(list.stdout.contains("\"expires\":null"), "{}", list.stdout);
    // Unbounded policy still has a longest finite lifetime: beyond 100 years the expiry
    // arithmetic (and Redis's EXPIREAT) would overflow, so it is refused with nothing written.
    for too_long in ["36501d", "18446744073709551615s"] {
        env.cli(&[
            "token",
            "create",
            "--user",
            "alice",
            "--org",
            "acme",
            "--name",
            "far",
            "--expires",
            too_long,
        ])
        .expect_refused("longer than 100 years");
    }
    let list = env
        .cli(&["token", "list", "--user", "alice", "--json"])
        .expect_ok();
    assert!(!list.stdout.contains("\"far\""), "{}", list.stdout);
}

#[test]
fn revoke_refuses_unknown_and_wrong_kind_prefixes() {
    let env = Env::start();
    env.member("root", "acme", "admin");
    let key = env.apikey("acme", "viewer", "root");
    env.cli(&["token", "revoke", &key[..10]])
        .expect_refused("is not a pat prefix");
    env.cli(&["token", "revoke", "pat_zzzzzz"])
        .expect_refused("not found");
    env.cli(&["apikey", "revoke", "nonsense"])
        .expect_refused("is not a api_key prefix");
    env.get_bearer("/v1/repos", &key).echoed();
}

#[test]
fn check_accepts_a_good_conf_and_reaches_redis() {
    let env = Env::start();
    let out = env.cli(&["check"]).expect_ok();
    assert!(
        out.stdout
            .contains("ok (9 routes, 4 roles, redis reachable)"),
        "{}",
        out.stdout
    );
}

#[test]
fn check_names_file_key_and_problem_for_a_bad_conf() {
    let env = Env::start();
    let bad = env.conf_path.with_file_name("bad.yaml");
    let text = std::fs::read_to_string(&env.conf_path)
        .expect("conf")
        .replace("require: [billing:read]", "require: [biling:read]");
    std::fs::write(&bad, text).expect("write");
    let out = Command::new(patgate_bin())
        .arg("-c")
        .arg(&bad)
        .arg("check")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}: routes[3] \"billing\": require: unknown permission \"biling:read\"",
        bad.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // serve refuses the same conf before listening.
    let out = Command::new(patgate_bin())
        .arg("serve")
        .arg("-c")
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown permission"));
}

#[test]
fn check_fails_when_redis_is_unreachable() {
    let mut env = Env::start();
    env.redis.kill();
    let out = env.cli(&["check"]);
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("redis.url: cannot reach redis://127.0.0.1:"),
        "{}",
        out.stderr
    );
}

#[test]
fn explain_shows_each_check_and_the_decision_without_a_secret() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let prefix = &token[..10];
    let explain = |path: &str, method: &str| {
        let out = env
            .cli(&[
                "explain",
                "--token-prefix",
                prefix,
                "--method",
                method,
                "--path",
                path,
                "--json",
            ])
            .expect_ok();
        serde_json::from_str::<serde_json::Value>(&out.stdout).expect("json")
    };
    let allowed = explain("/v1/repos", "GET");
    assert_eq!(allowed["route"], "repos-read");
    assert_eq!(allowed["decision"], "allowed");
    let checks: Vec<&str> = allowed["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["check"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        checks,
        vec![
            "path",
            "route",
            "prefix",
            "record",
            "secret",
            "expiry",
            "owner",
            "membership",
            "permissions"
        ]
    );
    let billing = explain("/v1/billing", "GET");
    assert_eq!(billing["decision"], "insufficient_scope");
    assert_eq!(billing["reason"], "missing_permission");
    assert_eq!(explain("/nowhere", "GET")["decision"], "no_route");
    assert_eq!(explain("/healthz", "GET")["decision"], "open");
    env.cli(&["user", "suspend", "alice"]).expect_ok();
    let suspended = explain("/v1/repos", "GET");
    assert_eq!(suspended["decision"], "invalid_token");
    assert_eq!(suspended["reason"], "account_inactive");
    let text = env
        .cli(&["explain", "--token-prefix", prefix, "--path", "/v1/repos"])
        .expect_ok();
    assert!(text.stdout.contains("[FAIL] owner"), "{}", text.stdout);
    assert!(
        text.stdout
            .contains("decision: invalid_token (account_inactive)"),
        "{}",
        text.stdout
    );
}
