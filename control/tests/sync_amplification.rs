//! Bounded replies on the sync link (issue 16): one appliance (127.0.0.1)
//! with 10,000 flows, its peer a plain FT-FW engine speaking conntrackd's
//! format on 127.0.0.2 that acknowledges everything, and an attacker
//! sending from the peer's address. No root needed.
//!
//! The attack of the issue: 16-byte NACKs reaching about 131,000 sequence
//! numbers back. Before, the first one made ftfwd export its whole table
//! (10,009 flows in 535 datagrams); now what it sends in reply is at most
//! ten times what it received.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ftfw_control::console::proto::{Payload, Request, SyncStatusInfo};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::flow::FlowState;
use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::{Engine, EngineConfig, Event};
use ftfw_sync::wire::{flags, EncodeOptions, Header, MsgType};
use ftfw_testkit::flows::{flow, tuple};
use ftfw_testkit::mem::{free_port, ok, start_mem, MemNode};

const FLOWS: u16 = 10_000;

fn sync_status(n: &mut MemNode) -> SyncStatusInfo {
    let Payload::SyncStatus(s) = ok(n.app.handle(Request::SyncStatus)) else {
        panic!("not sync status")
    };
    s
}

/// The peer: an FT-FW engine on 127.0.0.2 that answers A.
struct Peer {
    sock: UdpSocket,
    a: SocketAddr,
    engine: Engine<WireCodec>,
    buf: Vec<u8>,
    applied: usize,
}

impl Peer {
    fn new(port: u16) -> Peer {
        let sock = UdpSocket::bind(("127.0.0.2", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        Peer {
            sock,
            a: SocketAddr::from(([127, 0, 0, 1], port)),
            engine: Peer::engine(7_000_000),
            buf: vec![0; 65536],
            applied: 0,
        }
    }

    fn engine(initial_seq: u32) -> Engine<WireCodec> {
        Engine::new(
            EngineConfig {
                alive_interval: Duration::from_millis(50),
                initial_seq,
                ..EngineConfig::default()
            },
            WireCodec::new(EncodeOptions::default()),
            Instant::now(),
        )
    }

    /// Receives what A sent within a few ms; returns the bytes of flow
    /// messages in it (control messages, ALIVE and ACK, are not replies).
    /// With `answer`, feeds it to the engine and sends what it has.
    fn step(&mut self, answer: bool) -> usize {
        let mut flow_bytes = 0;
        while let Ok((n, from)) = self.sock.recv_from(&mut self.buf) {
            assert_eq!(from.ip(), self.a.ip());
            let d = &self.buf[..n];
            let mut off = 0;
            while off < d.len() {
                let h = Header::parse(&d[off..]).expect("A sends well-formed datagrams");
                if h.msg_type() != Some(MsgType::Ctl) {
                    flow_bytes += usize::from(h.len);
                }
                off += usize::from(h.len.max(8));
            }
            if answer {
                self.engine.handle_datagram(Instant::now(), &self.buf[..n]);
            }
            self.sock
                .set_read_timeout(Some(Duration::from_millis(1)))
                .unwrap();
        }
        self.sock
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        if answer {
            while let Some(ev) = self.engine.poll_event() {
                if matches!(ev, Event::Apply { .. }) {
                    self.applied += 1;
                }
            }
            let now = Instant::now();
            self.engine.handle_timeout(now);
            let mut out = Vec::new();
            while self.engine.poll_transmit(now, &mut out) {
                self.sock.send_to(&out, self.a).unwrap();
            }
        }
        flow_bytes
    }
}

/// Appliance A on 127.0.0.1 (its peer on 127.0.0.2) with `flows` flows.
fn node(name: &str, port: u16, flows: u16) -> MemNode {
    let dir = std::env::temp_dir().join(format!("ftfw-{name}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {}[conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"accept\"\n\n\
         [sync]\nlocal = \"127.0.0.1\"\npeer = \"127.0.0.2\"\nport = {port}\n\
         alive_interval_ms = 50\nstartup_resync = false\n",
        ftfw_testkit::mem::MEM_BRIDGE
    );
    let a = start_mem(name, dir, &text);
    let states: Vec<FlowState> = (0..flows)
        .map(|i| {
            let mut fj = flow(
                "tcp",
                tuple("192.0.2.50", "198.51.100.50", Some(20000 + i), Some(80)),
                Some("ESTABLISHED"),
            );
            fj.timeout = 600;
            FlowState::try_from(fj).unwrap()
        })
        .collect();
    assert_eq!(
        a.app.import_flows_with(states, true),
        Ok((usize::from(flows), 0))
    );
    a
}

/// Runs the peer until it applied every flow and A's queues are empty,
/// with `restart_exports` full exports to a restarted peer done.
fn converge(a: &mut MemNode, peer: &mut Peer, restart_exports: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        peer.step(true);
        let s = sync_status(a);
        if peer.applied >= usize::from(FLOWS)
            && s.resend_queue == 0
            && s.tx_queue == 0
            && s.restart_exports == restart_exports
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the peer never got and acknowledged every flow: {} applied, {s:?}",
            peer.applied
        );
    }
}

#[test]
fn far_reaching_nacks_from_the_peer_address_get_at_most_ten_times_their_size() {
    let port = free_port();
    let mut peer = Peer::new(port);
    let mut a = node("amp", port, FLOWS);
    // The peer gets every flow and acknowledges it: A's resend queue
    // empties (the usual state of a healthy pair). Then it restarts (a new
    // incarnation says HELLO): A forgets what it sent before, which a NACK
    // can no longer get, and sends the restarted peer its table.
    converge(&mut a, &mut peer, 0);
    peer.engine = Peer::engine(9_000_000);
    peer.applied = 0;
    converge(&mut a, &mut peer, 1);
    let before = sync_status(&mut a);

    // The attacker, from the peer's address (another port): six NACKs,
    // each numbered as the peer's next message would be, reaching 131,000
    // numbers before A's next one.
    let liar = UdpSocket::bind("127.0.0.2:0").unwrap();
    let seq = peer.engine.seq_out();
    let mut received = 0;
    for k in 0..6u32 {
        let mut d = Header::new(MsgType::Ctl, flags::NACK, 16, seq.wrapping_add(k))
            .to_bytes()
            .to_vec();
        d.extend_from_slice(&before.seq_out.wrapping_sub(131_000).to_be_bytes());
        d.extend_from_slice(&before.seq_out.wrapping_sub(1).to_be_bytes());
        assert_eq!(d.len(), 16);
        liar.send_to(&d, ("127.0.0.1", port)).unwrap();
        received += d.len();
    }
    ftfw_testkit::wait_until("A to take the NACKs", Duration::from_secs(10), || {
        sync_status(&mut a).nacks_in >= before.nacks_in + 6
    });
    // Everything A sends for a second (twenty ALIVE intervals; the old
    // re-export was out within a few ms): no flow messages beyond the
    // budget. The peer stays quiet meanwhile.
    let mut replies = 0;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        replies += peer.step(false);
    }
    let s = sync_status(&mut a);
    assert!(
        replies <= 10 * received,
        "A sent {replies} bytes of flows for {received} bytes of NACKs: {s:?}"
    );
    assert_eq!(
        s.nacks_unrecoverable - before.nacks_unrecoverable,
        6,
        "{s:?}"
    );
    assert_eq!(s.exports, before.exports, "no re-export: {s:?}");
    // Everything sent again (the NACKs also reach the few ACKs A sent
    // the peer, which are stored too): within ten times the NACKs.
    assert!(
        s.reply_bytes - before.reply_bytes <= 10 * received as u64,
        "{s:?}"
    );
}

/// RESYNC is the one request answered with the whole table; a stream of
/// them gets one answer per hold-off (5 s), the requests within it one
/// answer at its end.
#[test]
fn resync_requests_are_answered_at_most_once_per_hold_off() {
    const HOLDOFF: Duration = Duration::from_secs(5);
    let port = free_port();
    let mut peer = Peer::new(port);
    let mut a = node("amp-resync", port, 1000);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sync_status(&mut a).tx_queue > 0 || peer.applied < 1000 {
        peer.step(true);
        assert!(Instant::now() < deadline, "the peer never got the flows");
    }
    let before = sync_status(&mut a);
    let liar = UdpSocket::bind("127.0.0.2:0").unwrap();
    let seq = peer.engine.seq_out();
    let start = Instant::now();
    for k in 0..20u32 {
        let mut d = Header::new(MsgType::Ctl, flags::RESYNC, 16, seq.wrapping_add(k))
            .to_bytes()
            .to_vec();
        d.extend_from_slice(&[0; 8]);
        liar.send_to(&d, ("127.0.0.1", port)).unwrap();
        // One at a time, each after A took the last (and queued its answer).
        ftfw_testkit::wait_until("A to take the RESYNC", Duration::from_secs(10), || {
            let s = sync_status(&mut a);
            s.resyncs_in > before.resyncs_in + u64::from(k) && s.tx_queue == 0
        });
        peer.step(false);
    }
    let s = sync_status(&mut a);
    let elapsed = start.elapsed();
    let answered =
        s.resyncs_in - before.resyncs_in - (s.resyncs_deferred - before.resyncs_deferred);
    let periods = u64::try_from(elapsed.as_millis() / HOLDOFF.as_millis()).unwrap();
    assert!(
        answered <= 1 + periods,
        "{answered} answers started in {elapsed:?}: {s:?}"
    );
    assert!(s.resyncs_deferred > before.resyncs_deferred, "{s:?}");
    // The deferred requests get their one answer at the hold-off's end.
    let exports = s.exports;
    ftfw_testkit::wait_until("the deferred answer", HOLDOFF * 3, || {
        peer.step(false);
        sync_status(&mut a).exports > exports
    });
}
