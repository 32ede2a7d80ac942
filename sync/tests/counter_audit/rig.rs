//! The rig of the counter audit: an engine with the wire codec and a
//! virtual clock, peer messages as bytes, and the exact difference of two
//! stats snapshots.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ftfw_dataplane::flow::{proto, FlowState, Tuple};
use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::{Body, Codec, Engine, EngineConfig, EngineStats, FlowKind, Msg};
use ftfw_sync::wire::{EncodeOptions, Header, MsgType};

// ---------------------------------------------------------------- the rig

/// An engine, the virtual clock, and the datagrams it sent.
pub(crate) struct Rig {
    pub(crate) e: Engine<WireCodec>,
    pub(crate) now: Instant,
    /// Sequence number of our first message.
    pub(crate) first: u32,
    pub(crate) sent: Vec<Vec<u8>>,
}

pub(crate) const FIRST: u32 = 7000;

pub(crate) fn cfg() -> EngineConfig {
    EngineConfig {
        initial_seq: FIRST,
        resend_queue_max: 1024,
        // A datagram goes out as soon as it is asked for.
        flush_delay: Duration::ZERO,
        ..EngineConfig::default()
    }
}

pub(crate) fn rig_with(cfg: EngineConfig) -> Rig {
    let now = Instant::now();
    let first = cfg.initial_seq;
    Rig {
        e: Engine::new(cfg, WireCodec::new(EncodeOptions::default()), now),
        now,
        first,
        sent: Vec::new(),
    }
}

pub(crate) fn rig() -> Rig {
    rig_with(cfg())
}

pub(crate) fn flow(i: u8) -> FlowState {
    let orig = Tuple::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        proto::TCP,
        40000,
        443,
    );
    FlowState::established_tcp(orig, 300)
}

impl Rig {
    pub(crate) fn recv(&mut self, bytes: &[u8]) {
        self.e.handle_datagram(self.now, bytes);
    }

    pub(crate) fn push(&mut self, i: u8) {
        self.e.push_delta(self.now, FlowKind::New, flow(i));
    }

    /// Sends everything the engine wants to send now; returns the
    /// datagrams' total length.
    pub(crate) fn send(&mut self) -> u64 {
        let mut total = 0;
        let mut buf = Vec::new();
        while self.e.poll_transmit(self.now, &mut buf) {
            total += buf.len() as u64;
            self.sent.push(buf.clone());
        }
        total
    }

    /// Pushes flows `1..=n` and sends them.
    pub(crate) fn send_flows(&mut self, n: u8) -> u64 {
        for i in 1..=n {
            self.push(i);
        }
        self.send()
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
    }
}

/// One peer message, encoded by the wire codec.
pub(crate) fn msg(seq: u32, hello: bool, body: Body) -> Vec<u8> {
    let mut out = Vec::new();
    WireCodec::new(EncodeOptions::default())
        .encode(
            &Msg {
                seq,
                hello,
                hello_back: false,
                body,
            },
            &mut out,
        )
        .expect("encodes");
    out
}

pub(crate) fn alive(seq: u32) -> Vec<u8> {
    msg(seq, false, Body::Alive)
}

pub(crate) fn ack(seq: u32, from: u32, to: u32) -> Vec<u8> {
    msg(seq, false, Body::Ack { from, to })
}

pub(crate) fn nack(seq: u32, from: u32, to: u32) -> Vec<u8> {
    msg(seq, false, Body::Nack { from, to })
}

pub(crate) fn ct_new(seq: u32, i: u8) -> Vec<u8> {
    msg(
        seq,
        false,
        Body::Flow {
            kind: FlowKind::New,
            state: flow(i),
        },
    )
}

/// A message header of `len` (the rest zero bytes), as raw bytes.
pub(crate) fn raw(ty: MsgType, fl: u8, len: u16, seq: u32, total: usize) -> Vec<u8> {
    let mut m = Header::new(ty, fl, len, seq).to_bytes().to_vec();
    m.resize(total, 0);
    m
}

// ------------------------------------------------------- exact differences

/// Every field of a stats snapshot by name (from its serialization: the
/// key set the guard compares with).
pub(crate) fn fields(s: &EngineStats) -> BTreeMap<String, i128> {
    let v = serde_json::to_value(s).expect("serializes");
    v.as_object()
        .expect("an object")
        .iter()
        .map(|(k, x)| {
            let n = x.as_u64().unwrap_or_else(|| panic!("{k} is not a number"));
            (k.clone(), i128::from(n))
        })
        .collect()
}

/// What moved from `before` to the engine's stats now: exactly `moved`
/// (field, change), nothing else. Returns the fields named.
pub(crate) fn expect(
    case: &str,
    before: &EngineStats,
    r: &Rig,
    moved: &[(&'static str, i128)],
) -> Vec<&'static str> {
    let (a, b) = (fields(before), fields(&r.e.stats()));
    let got: BTreeMap<&str, i128> = a
        .iter()
        .filter_map(|(k, x)| {
            let d = b[k] - x;
            (d != 0).then_some((k.as_str(), d))
        })
        .collect();
    let want: BTreeMap<&str, i128> = moved.iter().copied().filter(|(_, d)| *d != 0).collect();
    for k in want.keys() {
        assert!(a.contains_key(*k), "{case}: {k} is no stats field");
    }
    assert_eq!(got, want, "{case}: fields that moved (field, change)");
    moved.iter().map(|(k, _)| *k).collect()
}

pub(crate) fn len(b: &[u8]) -> i128 {
    b.len() as i128
}
