//! Route lookup over 10, 100 and 1,000 routes, for a hit near the end and a miss.
//! `cargo bench --bench routes`
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use patgate::routes::{Access, HostMatch, Route, RouteTable};
use std::hint::black_box;
use std::time::Duration;

fn table(n: usize) -> RouteTable {
    let upstream = vec!["127.0.0.1:3000".parse().expect("addr")];
    let routes = (0..n)
        .map(|i| {
            let host = match i % 3 {
                0 => HostMatch::Any,
                1 => HostMatch::parse(Some(&format!("api{i}.example.com"))).expect("host"),
                _ => HostMatch::parse(Some(&format!("*.t{i}.example.com"))).expect("host"),
            };
            let methods = (i % 2 == 0).then(|| vec!["GET".to_string(), "HEAD".to_string()]);
            Route::new(
                format!("r{i}"),
                host,
                methods,
                format!("/v1/service{i}/items"),
                upstream.clone(),
                Access::Protected {
                    require: vec!["repos:read".into()],
                },
                false,
            )
        })
        .collect();
    RouteTable::new(routes)
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [10usize, 100, 1000] {
        let routes = table(n);
        // The last generic route: found after scanning most of the table.
        let last_any = (0..n).rev().find(|i| i % 3 == 0).expect("a generic route");
        let hit_path = format!("/v1/service{last_any}/items/42");
        group.bench_with_input(BenchmarkId::new("hit", n), &hit_path, |b, path| {
            b.iter(|| {
                routes
                    .lookup(black_box(Some("api.example.com")), "GET", black_box(path))
                    .is_ok_and(|route| route.is_some())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("miss", n),
            &"/nowhere/at/all",
            |b, path| {
                b.iter(|| {
                    routes
                        .lookup(black_box(Some("api.example.com")), "GET", black_box(path))
                        .is_ok_and(|route| route.is_none())
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = lookup
}
criterion_main!(benches);
