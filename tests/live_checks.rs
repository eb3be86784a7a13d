use crate::support::{eventually, Env};
use std::time::Duration;

fn post_bearer(env: &Env, token: &str) -> crate::support::Response {
    let bearer = format!("Bearer {token}");
    env.request("POST", "/v1/repos", &[("Authorization", &bearer)])
}

#[test]
fn role_downgrade_takes_effect_on_the_next_request() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    assert_eq!(
        post_bearer(&env, &token).echoed().header("x-auth-role"),
        Some("member")
    );
    env.member("alice", "acme", "viewer");
    post_bearer(&env, &token).assert_denied(403, "insufficient_scope");
    let received = env.get_bearer("/v1/repos", &token).echoed();
    assert_eq!(received.header("x-auth-role"), Some("viewer"));
    assert_eq!(received.header("x-auth-permissions"), Some("repos:read"));
}

#[test]
fn role_upgrade_takes_effect_on_the_next_request() {
    let env = Env::start();
    let token = env.user_with_pat("vic", "acme", "viewer");
    post_bearer(&env, &token).assert_denied(403, "insufficient_scope");
    env.member("vic", "acme", "admin");
    post_bearer(&env, &token).echoed();
    env.get_bearer("/v1/billing", &token).echoed();
}

#[test]
fn narrowed_token_gets_only_the_intersection() {
    let env = Env::start();
    env.member("alice", "acme", "member");
    let token = env.pat_with("alice", "acme", &["--permissions", "repos:read"]);
    let received = env.get_bearer("/v1/repos", &token).echoed();
    assert_eq!(received.header("x-auth-permissions"), Some("repos:read"));
    post_bearer(&env, &token).assert_denied(403, "insufficient_scope");
    // Narrowing never widens: downgraded to viewer, still only repos:read.
    env.member("alice", "acme", "admin");
    post_bearer(&env, &token).assert_denied(403, "insufficient_scope");
}

#[test]
fn suspension_stops_the_pat_and_reactivation_restores_it() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.cli(&["user", "suspend", "alice"]).expect_ok();
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    env.cli(&["user", "reactivate", "alice"]).expect_ok();
    env.get_bearer("/v1/repos", &token).echoed();
    assert_eq!(env.upstream.count(), 2);
}

#[test]
fn removal_stops_the_pat_for_good() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.cli(&["user", "remove", "alice"]).expect_ok();
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    env.cli(&["user", "reactivate", "alice"])
        .expect_refused("removal is final");
    // A suspension cannot overwrite "removed" either. (The status write checks for a removal
    // in the same script as the write, so a removal racing it stays final too; this shows the
    // refusal, not the race.)
    env.cli(&["user", "suspend", "alice"])
        .expect_refused("removal is final");
    env.cli(&["user", "put", "alice", "--org", "acme", "--role", "member"])
        .expect_refused("was removed");
    let shown = env.cli(&["user", "show", "alice", "--json"]).expect_ok();
    assert!(
        shown.stdout.contains(r#""status":"removed""#),
        "{}",
        shown.stdout
    );
    env.cli(&["user", "suspend", "nobody"])
        .expect_refused("not found");
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
}

#[test]
fn pat_stays_bound_to_its_org_when_membership_moves() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.cli(&["user", "leave", "alice", "--org", "acme"])
        .expect_ok();
    env.member("alice", "globex", "admin");
    env.get_bearer("/v1/repos", &token)
        .assert_denied(403, "no_org_access");
    // Back in acme as a viewer: the PAT acts in acme with the viewer role.
    env.member("alice", "acme", "viewer");
    let received = env.get_bearer("/v1/repos", &token).echoed();
    assert_eq!(received.header("x-auth-org"), Some("acme"));
    assert_eq!(received.header("x-auth-role"), Some("viewer"));
}

#[test]
fn revocation_is_immediate_and_final() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.get_bearer("/v1/repos", &token).echoed();
    env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
    let again = env.cli(&["token", "revoke", &token[..10]]).expect_ok();
    assert!(again.stderr.contains("already revoked"));
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
}

#[test]
fn short_lived_token_expires_with_an_expired_message() {
    let env = Env::start();
    env.member("alice", "acme", "member");
    let token = env.pat_with("alice", "acme", &["--expires", "2s"]);
    env.get_bearer("/v1/repos", &token).echoed();
    let mut last = None;
    eventually(
        Duration::from_secs(5),
        "token to expire",
        || {
            let response = env.get_bearer("/v1/repos", &token);
            let expired = response.status == 401;
            last = Some(response);
            expired
        },
        String::new,
    );
    let response = last.expect("a response");
    response.assert_denied(401, "invalid_token");
    assert!(response.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("expired"));
}

#[test]
fn api_key_survives_its_creators_removal_and_suspension() {
    let env = Env::start();
    env.member("root", "acme", "admin");
    let key = env.apikey("acme", "member", "root");
    env.cli(&["user", "suspend", "root"]).expect_ok();
    post_bearer(&env, &key).echoed();
    env.cli(&["user", "remove", "root"]).expect_ok();
    let received = post_bearer(&env, &key).echoed();
    assert_eq!(received.header("x-auth-role"), Some("member"));
    assert_eq!(received.header("x-auth-org"), Some("acme"));
}

#[test]
fn api_key_is_revoked_immediately() {
    let env = Env::start();
    env.member("root", "acme", "admin");
    let key = env.apikey("acme", "viewer", "root");
    env.get("/v1/repos", &[("X-API-Key", &key)]).echoed();
    env.cli(&["apikey", "revoke", &key[..10]]).expect_ok();
    env.get("/v1/repos", &[("X-API-Key", &key)])
        .assert_denied(401, "invalid_token");
}

#[test]
fn api_key_narrowing_is_enforced() {
    let env = Env::start();
    env.member("root", "acme", "admin");
    let key = env.apikey_with("acme", "member", "root", &["--permissions", "repos:read"]);
    env.get_bearer("/v1/repos", &key).echoed();
    post_bearer(&env, &key).assert_denied(403, "insufficient_scope");
}

#[test]
fn user_record_deleted_by_the_product_stops_the_pat() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    let mut redis = redis::Client::open(env.redis.url())
        .expect("client")
        .get_connection()
        .expect("conn");
    redis::cmd("DEL")
        .arg("patgate:user:alice")
        .exec(&mut redis)
        .expect("del");
    env.get_bearer("/v1/repos", &token)
        .assert_denied(401, "invalid_token");
}

#[test]
fn a_role_the_conf_does_not_define_grants_nothing() {
    let env = Env::start();
    let token = env.user_with_pat("alice", "acme", "member");
    env.member("root", "acme", "admin");
    let mut redis = redis::Client::open(env.redis.url())
        .expect("client")
        .get_connection()
        .expect("conn");
    // A membership written by the product (or left over from a role since removed from the
    // conf) naming a role the conf does not know.
    redis::cmd("HSET")
        .arg("patgate:user:alice")
        .arg("org:acme")
        .arg("ghost")
        .exec(&mut redis)
        .expect("hset");
    // Not even a route that requires nothing lets it through.
    env.get_bearer("/v1/whoami", &token)
        .assert_denied(403, "no_org_access");
    let key = env.apikey("acme", "viewer", "root");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("patgate:cred:{}", &key[..10]))
        .query(&mut redis)
        .expect("keys");
    redis::cmd("HSET")
        .arg(&keys[0])
        .arg("role")
        .arg("ghost")
        .exec(&mut redis)
        .expect("hset");
    env.get("/v1/whoami", &[("X-API-Key", &key)])
        .assert_denied(403, "no_org_access");
    assert_eq!(env.upstream.count(), 0);
}
