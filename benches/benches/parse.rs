//! Packet parsing: `parse_frame` on typical frames.
#![allow(clippy::cast_possible_truncation)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::{parse_frame, FrameSpec, L4Spec, TcpOptions};

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let tcp = |src: &str, dst: &str, vlan| FrameSpec {
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        vlan,
        l4: L4Spec::Tcp {
            src_port: 40000,
            dst_port: 80,
            seq: 1,
            ack: 1,
            flags: f::ACK,
            window: 512,
            options: TcpOptions::default(),
        },
        payload_len: 6,
        ..FrameSpec::default()
    };
    let udp = FrameSpec {
        src_ip: "192.0.2.1".parse().unwrap(),
        dst_ip: "198.51.100.53".parse().unwrap(),
        l4: L4Spec::Udp {
            src_port: 5353,
            dst_port: 53,
        },
        payload_len: 32,
        ..FrameSpec::default()
    };
    vec![
        (
            "tcp4",
            tcp("192.0.2.1", "198.51.100.2", None).to_vec().unwrap(),
        ),
        (
            "tcp4_vlan",
            tcp("192.0.2.1", "198.51.100.2", Some(100))
                .to_vec()
                .unwrap(),
        ),
        (
            "tcp6",
            tcp("2001:db8::1", "2001:db8::2", None).to_vec().unwrap(),
        ),
        ("udp4", udp.to_vec().unwrap()),
    ]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_frame");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in frames() {
        g.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, fr| {
            b.iter(|| parse_frame(std::hint::black_box(fr)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
