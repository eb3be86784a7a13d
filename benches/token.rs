//! Token parsing: the first thing every protected request does, before any Redis call.
//! `cargo bench --bench token`
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use patgate::token::{self, Kind};
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = parse
}
criterion_main!(benches);
