//! Fuzz target for `patgate::conf::Conf::parse`: ops write the YAML, and a bad conf must be an
//! error naming the file, never a panic.
//!
//! Two things in a conf reach outside the process: upstream names are resolved (DNS) and
//! files are read (`identity_headers.signing_key_file`, the TLS certificate, key and CA files).
//! So that the fuzzer neither sends DNS queries nor reads files such as `/dev/zero`, an input
//! that is YAML has every upstream that is not an `IP:port` replaced by `127.0.0.1:1` and every
//! file key removed before parsing (`tls:` as a whole, whose keys are required); an input that
//! is not YAML is parsed as it is (it fails before either step) unless it mentions an upstream
//! or a `_file` key.
//!
//! Properties: `Err` displays as `fuzz.yaml: ...`; `Ok` holds a conf within the documented
//! ranges (timeout, bcrypt cost, pool, negative-cache TTL), with an admin role that exists and
//! at least one route, each with an upstream, a safe absolute path prefix and only known
//! required permissions.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patgate::conf::Conf;
use patgate::routes::{path_is_safe, Access};
use serde_yaml::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Replaces what would make parsing leave the process (see the module doc).
fn stay_local(value: &mut Value) {
    let Value::Mapping(top) = value else { return };
    if let Some(Value::Mapping(headers)) = top.get_mut("identity_headers") {
        headers.remove("signing_key_file");
    }
    top.remove("tls");
    if let Some(Value::Mapping(redis)) = top.get_mut("redis") {
        redis.remove("ca_file");
    }
    let Some(Value::Sequence(routes)) = top.get_mut("routes") else {
        return;
    };
    for route in routes {
        let Value::Mapping(route) = route else {
            continue;
        };
        if let Some(Value::Mapping(tls)) = route.get_mut("upstream_tls") {
            tls.remove("ca_file");
        }
        let Some(upstream) = route.get_mut("upstream") else {
            continue;
        };
        match upstream {
            Value::Sequence(list) => list.iter_mut().for_each(local_upstream),
            other => local_upstream(other),
        }
    }
}

fn local_upstream(upstream: &mut Value) {
    let is_ip = matches!(upstream, Value::String(s) if s.parse::<SocketAddr>().is_ok());
    if !is_ip && !matches!(upstream, Value::Sequence(_) | Value::Mapping(_)) {
        *upstream = Value::String("127.0.0.1:1".into());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = match serde_yaml::from_str::<Value>(text) {
        Ok(mut value) => {
            stay_local(&mut value);
            match serde_yaml::to_string(&value) {
                Ok(text) => text,
                Err(_) => return,
            }
        }
        // Not YAML: Conf::parse fails on it too, before resolving or reading anything; the
        // guard only makes sure of that should the two parsers ever disagree.
        Err(_) if !text.contains("upstream") && !text.contains("_file") => {
            text.to_string()
        }
        Err(_) => return,
    };
    let conf = match Conf::parse(Path::new("fuzz.yaml"), &text) {
        Ok(conf) => conf,
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.yaml: "), "{message}");
            return;
        }
    };
    assert!((Duration::from_millis(1)..=Duration::from_secs(60)).contains(&conf.redis.timeout));
    assert!((4..=31).contains(&conf.verify.bcrypt_cost));
    assert!(conf.verify.pool_threads >= 1 && conf.verify.pool_queue >= 1);
    assert!(conf.verify.negative_ttl <= Duration::from_secs(60));
    assert!(conf.roles.get(&conf.policy.admin_role).is_some());
    assert!(!conf.routes.is_empty());
    for route in conf.routes.iter() {
        assert!(!route.upstreams.is_empty(), "{}", route.name);
        assert!(route.path_prefix.starts_with('/') && path_is_safe(&route.path_prefix));
        if let Access::Protected { require } = &route.access {
            assert!(
                require.iter().all(|p| conf.roles.is_known(p)),
                "{require:?}"
            );
        }
    }
});
