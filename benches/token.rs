//! Token parsing, the first thing every protected request does before any Redis call, and the
//! keyed digest that every authenticated request then computes for the verified-secret cache
//! (patgate's keyed BLAKE3 beside the HMAC-SHA256 it replaced, in one run).
//! `cargo bench --bench token`
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hmac::{Hmac, Mac};
use patgate::cache::VerifiedCache;
use patgate::token::{self, Kind};
use sha2::Sha256;
use std::hint::black_box;
use std::time::Duration;

fn parse(c: &mut Criterion) {
    let valid = token::generate(Kind::Pat).token;
    let mut typo = valid.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ascii");
    let mut group = c.benchmark_group("token_parse");
    for (name, input) in [
        ("valid", &valid),
        ("bad_checksum", &typo),
        ("garbage", &"not-a-token".to_string()),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter(|| token::parse(black_box(input)).is_ok())
        });
    }
    group.finish();
    c.bench_function("token_generate", |b| {
        b.iter(|| token::generate(black_box(Kind::ApiKey)))
    });
}

fn digest(c: &mut Criterion) {
    let token = token::generate(Kind::Pat).token;
    let cache = VerifiedCache::new(0);
    let key = [7u8; 32];
    let hmac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
    let mut group = c.benchmark_group("token_digest");
    group.bench_function("blake3_keyed", |b| {
        b.iter(|| cache.digest(black_box(token.as_bytes())))
    });
    group.bench_function("hmac_sha256", |b| {
        b.iter(|| {
            let mut mac = hmac.clone();
            mac.update(black_box(token.as_bytes()));
            <[u8; 32]>::from(mac.finalize().into_bytes())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = parse, digest
}
criterion_main!(benches);
