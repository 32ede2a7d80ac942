//! ACL classification: the compiled classifier against the linear scan, at
//! 100, 1,000 and 10,000 rules, on the same inputs.
#![allow(clippy::cast_possible_truncation)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ftfw_dataplane::acl;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("acl_classify");
    g.throughput(Throughput::Elements(1));
    for n in [100usize, 1_000, 10_000] {
        let set = acl::synthetic_rules(n, 7);
        let inputs = acl::synthetic_inputs(&set, 4096, 11);
        let compiled = set.compile();
        let linear = set.linear();
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("compiled", n), |b| {
            b.iter(|| {
                i = (i + 1) % inputs.len();
                std::hint::black_box(compiled.classify(&inputs[i].as_input()))
            })
        });
        let mut j = 0usize;
        g.bench_function(BenchmarkId::new("linear", n), |b| {
            b.iter(|| {
                j = (j + 1) % inputs.len();
                std::hint::black_box(linear.classify(&inputs[j].as_input()))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
