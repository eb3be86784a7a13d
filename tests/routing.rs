use crate::support::{Env, Options};

#[test]
fn unmatched_path_is_404_no_route_and_nothing_is_forwarded() {
    let env = Env::start();
    let response = env.get("/nowhere", &[]);
    response.assert_denied(404, "no_route");
    assert_eq!(response.header("www-authenticate"), None);
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn unmatched_method_is_404_no_route() {
    let env = Env::start();
    env.request("OPTIONS", "/v1/repos", &[])
        .assert_denied(404, "no_route");
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn path_prefixes_match_whole_segments_only() {
    let env = Env::start();
    env.get("/v1/repository", &[])
        .assert_denied(404, "no_route");
    env.get("/v1/repos/42", &[])
        .assert_denied(401, "missing_credential");
}

#[test]
fn open_route_is_proxied_without_a_credential_and_without_identity() {
    let env = Env::start();
    let received = env.get("/healthz?probe=1", &[]).echoed();
    assert_eq!(received.path, "/healthz?probe=1");
    assert!(received
        .headers
        .iter()
        .all(|(n, _)| !n.to_ascii_lowercase().starts_with("x-auth-")));
}

#[test]
fn exact_host_route_beats_a_generic_one_for_the_same_path() {
    let env = Env::start();
    // docs.example.test serves /v1/repos openly; other hosts require a credential.
    env.get("/v1/repos", &[("Host", "docs.example.test")])
        .echoed();
    env.get("/v1/repos", &[("Host", "api.example.test")])
        .assert_denied(401, "missing_credential");
}

#[test]
fn wildcard_host_route_applies_to_subdomains_only() {
    let env = Env::start();
    let viewer = env.user_with_pat("vic", "acme", "viewer");
    let bearer = format!("Bearer {viewer}");
    // *.tenant.test requires repos:write on every path: a viewer is refused there…
    env.get(
        "/anything",
        &[("Host", "eu.tenant.test"), ("Authorization", &bearer)],
    )
    .assert_denied(403, "insufficient_scope");
    // …but the bare domain is not a subdomain, so it falls to the generic routes.
    env.get(
        "/anything",
        &[("Host", "tenant.test"), ("Authorization", &bearer)],
    )
    .assert_denied(404, "no_route");
}

#[test]
fn dot_segments_and_encoded_slashes_are_refused_before_routing() {
    let env = Env::start();
    for path in [
        "/healthz/../v1/billing",
        "/healthz/%2e%2e/v1/billing",
        "/healthz%2F..%2Fv1",
        "/healthz/..;/v1/billing",
        "/v1//billing",
        "/v1/;x/billing",
        "/v1/%62illing",
        // Tomcat would serve /v1/billing, nginx /v1;x/billing: two routes here, so neither.
        "/v1;x/billing",
    ] {
        env.get(path, &[]).assert_denied(400, "invalid_path");
    }
    assert_eq!(env.upstream.count(), 0);
}

#[test]
fn a_harmless_segment_parameter_and_a_trailing_host_dot_route_as_without() {
    let env = Env::start();
    let token = env.user_with_pat("vera", "acme", "viewer");
    let bearer = format!("Bearer {token}");
    // A parameter that does not change the route (Tomcat and nginx agree: repos-read) passes,
    // and the path goes upstream as sent.
    let received = env
        .get("/v1/repos/7;jsessionid=1", &[("Authorization", &bearer)])
        .echoed();
    assert_eq!(received.path, "/v1/repos/7;jsessionid=1");
    // Here /v1/billing;jsessionid=1 is billing to Tomcat and no route literally: refused.
    env.get("/v1/billing;jsessionid=1", &[("Authorization", &bearer)])
        .assert_denied(400, "invalid_path");
    // docs.example.test. is docs.example.test: its open route, not the protected one.
    let received = env
        .get("/v1/repos", &[("Host", "docs.example.test.")])
        .echoed();
    assert_eq!(received.header("x-auth-user"), None);
    assert_eq!(env.upstream.count(), 2);
}

#[test]
fn a_parameter_or_another_case_cannot_reach_an_open_route_under_a_protected_one() {
    let backend = patgate::testkit::upstream::Upstream::start().expect("upstream");
    let route = |name: &str, prefix: &str, access: &str| {
        format!(
            "  - name: {name}\n    path_prefix: {prefix}\n    upstream: {}\n    {access}\n",
            backend.addr()
        )
    };
    let env = Env::start_with(Options {
        extra_routes: [
            route("v1-root", "/v1", "require: [repos:write]"),
            route("v1-public", "/v1/public", "auth: none"),
        ]
        .concat(),
        ..Options::default()
    });
    env.get("/v1/public/docs", &[]).echoed();
    // Tomcat reads /v1/public;x/docs as the open /v1/public/docs, but nginx, Go or Express
    // read a segment "public;x" under the protected /v1: the stricter reading decides.
    env.get("/v1/public;x/docs", &[])
        .assert_denied(401, "missing_credential");
    env.get("/v1/public;x", &[])
        .assert_denied(401, "missing_credential");
    // The same for case: ASP.NET Core reads /v1/Public/docs as the open route, a
    // case-sensitive server as a segment "Public" under the protected /v1.
    env.get("/v1/Public/docs", &[])
        .assert_denied(401, "missing_credential");
    // Mixed case after the prefix (an id) changes nothing.
    env.get("/v1/public/AbC123", &[]).echoed();
    assert_eq!(backend.count(), 2);
}
