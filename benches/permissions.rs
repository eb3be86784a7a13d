//! The permission algebra on every request: role ∩ narrowing, then what the route lacks.
//! `cargo bench --bench permissions`
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use patgate::permissions::Roles;
use std::hint::black_box;
use std::time::Duration;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn algebra(c: &mut Criterion) {
    let roles = Roles::new(
        vec![
            (
                "viewer".into(),
                strings(&["repos:read", "issues:read", "wiki:read"]),
            ),
            (
                "member".into(),
                strings(&[
                    "repos:read",
                    "repos:write",
                    "issues:read",
                    "issues:write",
                    "wiki:read",
                    "wiki:write",
                ]),
            ),
            ("admin".into(), strings(&["*"])),
        ],
        strings(&["billing:read", "billing:write", "org:admin"]),
    )
    .expect("roles");
    let require = strings(&["repos:read", "issues:write"]);
    let narrowing = strings(&["repos:read", "issues:write", "wiki:read"]);
    let mut group = c.benchmark_group("permissions");
    group.bench_function("role_only", |b| {
        b.iter(|| {
            roles
                .effective(black_box("member"), None)
                .missing(black_box(&require))
                .is_empty()
        })
    });
    group.bench_function("role_and_narrowing", |b| {
        b.iter(|| {
            roles
                .effective(black_box("member"), Some(black_box(&narrowing)))
                .missing(black_box(&require))
                .is_empty()
        })
    });
    group.bench_function("star_listed", |b| {
        b.iter(|| {
            roles
                .listed(&roles.effective(black_box("admin"), None))
                .len()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = algebra
}
criterion_main!(benches);
