//! The verification pipeline with a warm cache, against a private redis-server: a warm PAT
//! in strict mode (one pipelined round trip), in tracked mode (zero), and an API key.
//! `cargo bench --bench verify`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use patgate::cache::{NegativeCache, VerifiedCache, NEGATIVE_ENTRIES};
use patgate::conf::{Conf, Freshness};
use patgate::hasher::BcryptPool;
use patgate::manage::{Manager, NewApiKey, NewToken};
use patgate::store::Store;
use patgate::testkit::redis::RedisServer;
use patgate::token;
use patgate::verify::{Verdict, Verifier};
use std::hint::black_box;
use std::time::Duration;

fn conf(redis: &RedisServer, dir: &std::path::Path) -> Conf {
    let text = format!(
        "listen: 127.0.0.1:1\nredis: {{url: '{}', timeout_ms: 1000}}\nverify: {{bcrypt_cost: 10}}\n\
         roles: [{{name: member, permissions: [repos:read, repos:write]}}, {{name: admin, permissions: ['*']}}]\n\
         routes: [{{name: api, path_prefix: /api, upstream: '127.0.0.1:1', require: [repos:read]}}]\n",
        redis.url()
    );
    let path = dir.join("patgate.yaml");
    std::fs::write(&path, text).expect("conf");
    Conf::load(&path).expect("conf")
}

fn pipeline(c: &mut Criterion) {
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = conf(&redis, dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (pat, key) = runtime.block_on(async {
        let store = Store::lazy(&conf.redis).expect("store");
        let manager = Manager {
            store: &store,
            conf: &conf,
            actor: patgate::manage::Actor::named("bench"),
        };
        manager
            .put_membership("bench", "acme", "admin")
            .await
            .expect("member");
        let now = patgate::proxy::unix_now();
        let pat = NewToken {
            user: "bench".into(),
            org: "acme".into(),
            name: "b".into(),
            expires: None,
            permissions: None,
        };
        let key = NewApiKey {
            org: "acme".into(),
            role: "member".into(),
            created_by: "bench".into(),
            name: "k".into(),
            expires: None,
            permissions: None,
        };
        let pat = manager.create_token(pat, now).await.expect("pat").token;
        let key = manager.create_apikey(key, now).await.expect("key").token;
        (pat, key)
    });
    let require = vec!["repos:read".to_string()];
    let pool = BcryptPool::start(1, 16).expect("pool");
    let cache = VerifiedCache::new(1000);
    let negative = NegativeCache::new(conf.verify.negative_ttl, NEGATIVE_ENTRIES);
    let mut group = c.benchmark_group("verify_warm");
    for (name, freshness) in [
        ("strict", Freshness::Strict),
        ("tracked", Freshness::Tracked),
    ] {
        let redis_conf = patgate::conf::RedisConf {
            freshness,
            ..conf.redis.clone()
        };
        let store = runtime
            .block_on(async { Store::for_gateway(&redis_conf, 1000) })
            .expect("store");
        let verifier = Verifier {
            store: &store,
            pool: &pool,
            cache: &cache,
            negative: &negative,
            roles: &conf.roles,
        };
        for (kind, presented) in [("pat", &pat), ("api_key", &key)] {
            let parsed = token::parse(presented).expect("token");
            let run =
                || runtime.block_on(verifier.verify(&parsed, &require, patgate::proxy::unix_now()));
            assert!(matches!(run(), Verdict::Allow(_)), "warm-up must allow");
            group.bench_function(format!("{kind}_{name}"), |b| b.iter(|| black_box(run())));
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = pipeline
}
criterion_main!(benches);
