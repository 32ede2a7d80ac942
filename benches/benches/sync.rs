//! The sync engine's transmit path in memory: encoding one flow message,
//! and an `Engine<WireCodec>` turning bursts of flow deltas into MTU
//! datagrams (with a peer engine acknowledging them, outside the timing).
#![allow(clippy::cast_possible_truncation)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftfw_dataplane::flow::{status, FlowKey, FlowState, TcpState};
use ftfw_lab::sync_bench::flow_key;
use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::{Codec, Engine, EngineConfig, FlowKind};

fn state(key: FlowKey, timeout: u32) -> FlowState {
    FlowState {
        key,
        tcp_state: TcpState::Established,
        status: status::SEEN_REPLY | status::ASSURED | status::CONFIRMED,
        timeout_secs: timeout,
        mark: 0,
        wscale: [7, 7],
        counters: Default::default(),
        extras: Default::default(),
    }
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync_encode");
    g.throughput(Throughput::Elements(1));
    let st = state(flow_key(12345), 300);
    let mut codec = WireCodec::default();
    let mut out = Vec::with_capacity(1500);
    g.bench_function("flow_msg", |b| {
        b.iter(|| {
            out.clear();
            codec
                .encode_flow(7, false, false, FlowKind::Update, &st, &mut out)
                .unwrap();
            out.len()
        })
    });
    g.finish();
}

fn engine(c: &mut Criterion) {
    const FLOWS: u32 = 100_000;
    const BURST: u32 = 512;
    let mut g = c.benchmark_group("sync_engine");
    g.throughput(Throughput::Elements(u64::from(BURST)));
    g.bench_function("burst_512_to_datagrams", |b| {
        let t0 = Instant::now();
        let cfg = EngineConfig::default();
        let mut tx = Engine::new(cfg.clone(), WireCodec::default(), t0);
        let mut rx = Engine::new(cfg, WireCodec::default(), t0);
        let (mut buf, mut back) = (Vec::with_capacity(1500), Vec::with_capacity(1500));
        let (mut next, mut round) = (0u32, 0u32);
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let now = Instant::now();
                let start = Instant::now();
                for _ in 0..BURST {
                    tx.push_delta(now, FlowKind::Update, state(flow_key(next), round));
                    next += 1;
                    if next == FLOWS {
                        next = 0;
                        round += 1;
                    }
                }
                let mut grams = Vec::new();
                while tx.poll_transmit(now, &mut buf) {
                    grams.push(buf.clone());
                }
                spent += start.elapsed();
                // The peer, untimed: decode, acknowledge.
                for d in &grams {
                    rx.handle_datagram(now, d);
                }
                while rx.poll_event().is_some() {}
                rx.handle_timeout(now);
                let mut acks = Vec::new();
                while rx.poll_transmit(now, &mut back) {
                    acks.push(back.clone());
                }
                let start = Instant::now();
                for a in &acks {
                    tx.handle_datagram(now, a);
                }
                spent += start.elapsed();
            }
            spent
        })
    });
    g.finish();
}

criterion_group!(benches, encode, engine);
criterion_main!(benches);
