//! Secret checks: bcrypt verify at costs 4, 6, 10 and 12 (the number that sizes
//! `verify.pool_threads`), and the SHA-256 check of API keys.
//! `cargo bench --bench hasher`
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use patgate::hasher::{bcrypt_hash, sha256_hex, sha256_matches};
use patgate::token::{self, Kind};
use std::hint::black_box;
use std::time::Duration;

fn bcrypt_verify(c: &mut Criterion) {
    let generated = token::generate(Kind::Pat);
    let input = generated.hash_input().to_vec();
    let mut group = c.benchmark_group("bcrypt_verify");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for cost in [4u32, 6, 10, 12] {
        let hash = bcrypt_hash(&input, cost).expect("hash");
        group.bench_with_input(BenchmarkId::from_parameter(cost), &hash, |b, hash| {
            b.iter(|| bcrypt::verify(black_box(&input), black_box(hash)).unwrap_or(false))
        });
    }
    group.finish();
}

fn api_key_check(c: &mut Criterion) {
    let generated = token::generate(Kind::ApiKey);
    let stored = sha256_hex(generated.hash_input());
    c.bench_function("sha256_api_key_check", |b| {
        b.iter(|| sha256_matches(black_box(generated.hash_input()), black_box(&stored)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bcrypt_verify, api_key_check
}
criterion_main!(benches);
