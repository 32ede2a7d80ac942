//! Conntrack: lookups of established flows in shards of growing size, and
//! creation of new flows.
#![allow(clippy::cast_possible_truncation)]

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ftfw_dataplane::conntrack::{ConntrackConfig, DeltaRing, Shard, Track};
use ftfw_dataplane::meta::PacketMeta;
use ftfw_dataplane::packet::parse_frame;
use ftfw_lab::pktgen;

fn established(flows: u64) -> (Shard, Vec<PacketMeta>) {
    let ring = DeltaRing::new(1 << 20);
    let mut s = Shard::new(
        ConntrackConfig {
            capacity: flows as usize + 1024,
            ..Default::default()
        },
        Instant::now(),
        ring.clone(),
    );
    let mut metas = Vec::with_capacity(flows as usize);
    for i in 0..flows {
        let t = pktgen::flow_tuple(i, true, [198, 51, 100]);
        for (_, fr) in pktgen::opening(&t) {
            let m = parse_frame(&fr).unwrap();
            if let Track::New(nf) = s.track(0, &m, 0) {
                s.confirm(0, &nf, 1).unwrap();
            }
            while ring.pop().is_some() {}
        }
        let [d, _] = pktgen::data_frames(&t, 60);
        metas.push(parse_frame(&d).unwrap());
    }
    (s, metas)
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_established_lookup");
    g.throughput(Throughput::Elements(1));
    for flows in [1_000u64, 100_000, 1_000_000] {
        let (mut s, metas) = established(flows);
        let step = 7919 % flows.max(1);
        let mut i = 0u64;
        g.bench_function(BenchmarkId::from_parameter(flows), |b| {
            b.iter(|| {
                i = (i + step) % flows;
                std::hint::black_box(s.track(0, &metas[i as usize], 0))
            })
        });
    }
    g.finish();
}

/// An empty shard of 4096 flows (with its NAT tables made, as a worker
/// whose rules have `nat` lines does, if `nat`) and 1000 new flows' SYNs.
fn thousand_syns(nat: bool) -> (Shard, Vec<PacketMeta>) {
    let mut s = Shard::new(
        ConntrackConfig {
            capacity: 4096,
            ..Default::default()
        },
        Instant::now(),
        DeltaRing::new(4096),
    );
    if nat {
        s.make_nat_tables();
    }
    let mut gen = pktgen::NewFlowGen::new(false, 60);
    let mut buf = Vec::new();
    let metas: Vec<PacketMeta> = (0..1000)
        .map(|_| {
            gen.next_into(&mut buf);
            parse_frame(&buf).unwrap()
        })
        .collect();
    (s, metas)
}

fn create(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_new_flow");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000_syns", |b| {
        b.iter_batched(
            || thousand_syns(false),
            |(mut s, metas)| {
                for m in &metas {
                    if let Track::New(nf) = s.track(0, m, 0) {
                        let _ = s.confirm(0, &nf, 1);
                    }
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// New flows source-NATed as `bench pipeline --nat` does (250 clients
/// sharing each source port, a pool of 200 addresses): the rule's
/// translation chosen (`nat::alloc::choose`, shard lookups of every
/// candidate) and the flow made with both indexes. Beside
/// `conntrack_new_flow` on the same SYNs, this is the cost of NAT's port
/// allocation per new flow.
fn create_translated(c: &mut Criterion) {
    use ftfw_dataplane::nat::alloc::{choose, Steering};
    let rule = ftfw_dataplane::acl::parse_rules(ftfw_lab::bench::NAT_RULE, "bench", 1, &|_| None)
        .expect("the NAT rule parses")
        .nat_rules();
    let target = rule.iter().next().expect("one rule").0.target();
    let steer = Steering {
        workers: 1,
        buckets: 0,
        rss: None,
    };
    let mut g = c.benchmark_group("conntrack_new_translated_flow");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000_syns", |b| {
        b.iter_batched(
            || thousand_syns(true),
            |(mut s, metas)| {
                for m in &metas {
                    if let Track::New(nf) = s.track(0, m, 0) {
                        let orig = nf.key().orig;
                        let choice = choose(&target, &orig, &steer, &|t| s.reply_taken(t, 0));
                        if let Some(c) = choice {
                            let _ = s.confirm_nat(0, &nf, 1, Default::default(), c.reply);
                        }
                    }
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, lookup, create, create_translated);
criterion_main!(benches);
