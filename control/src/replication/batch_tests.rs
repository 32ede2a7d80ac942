//! The sync link's datagram batches (`sendmmsg`/`recvmmsg`) end to end:
//! two channels over loopback UDP, as two sync threads drive them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ftfw_dataplane::flow::{proto, FlowKey, FlowState, TcpState, Tuple};
use ftfw_dataplane::port::datagram::{RecvBatch, Segmentation};
use ftfw_sync::engine::{Event, FlowKind};

use super::peer::{PeerChannel, Sealing};
use super::transport::tests::{cfg, free_udp_port};
use super::transport::Link;

fn flow(i: u16) -> FlowState {
    FlowState {
        key: FlowKey {
            orig: Tuple::new(
                std::net::Ipv4Addr::new(192, 0, 2, 10).into(),
                std::net::Ipv4Addr::new(198, 51, 100, 1).into(),
                proto::TCP,
                10_000 + i,
                443,
            ),
            zone: 0,
        },
        tcp_state: TcpState::Established,
        status: 0,
        timeout_secs: 300,
        mark: 0,
        wscale: [0, 0],
        counters: Default::default(),
        extras: Default::default(),
    }
}

/// One end: its link and its channel to the other.
struct End {
    link: Link,
    ch: PeerChannel,
    rx: RecvBatch,
    seal: Sealing,
    buf: Vec<u8>,
    /// Distinct flows applied (a HELLO exchange may send a flow again).
    applied: std::collections::HashSet<u16>,
    /// Datagrams received, and the reads that took them.
    datagrams: usize,
    reads: usize,
}

impl End {
    fn new(local: &str, peer: &str, port: u16, now: Instant) -> End {
        let c = cfg(local, peer, port);
        End {
            link: Link::open(&c, now).unwrap(),
            ch: PeerChannel::new(&c, None, peer.parse().unwrap(), None, now),
            rx: RecvBatch::new(64, 65536),
            seal: Sealing::default(),
            buf: Vec::new(),
            applied: Default::default(),
            datagrams: 0,
            reads: 0,
        }
    }

    /// Reads what waits (batches), into the engine; returns datagrams read
    /// and their payloads.
    fn receive(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let Link::Udp(u) = &self.link else {
            panic!("udp")
        };
        loop {
            let n = u.recv_batch(&mut self.rx, 64).unwrap();
            self.datagrams += n;
            self.reads += self.rx.reads();
            for i in 0..n {
                let (d, from) = self.rx.get_mut(i).unwrap();
                let ip: Option<IpAddr> = from.and_then(|a| u.accept(a));
                assert!(ip.is_some(), "from the peer");
                got.push(d.to_vec());
                self.ch.on_datagram(now, d, Duration::from_secs(1));
            }
            if n == 0 {
                break;
            }
        }
        while let Some(ev) = self.ch.engine.poll_event() {
            if let Event::Apply { state, .. } = ev {
                self.applied.insert(state.key.orig.src_port);
            }
        }
        got
    }

    fn transmit(&mut self, now: Instant) -> usize {
        self.ch
            .transmit(now, &mut self.link, &mut self.buf, &mut self.seal)
    }
}

/// 600 flows make a few dozen datagrams; one transmit sends them all in
/// one batch, the peer reads them in batches, applies every flow and
/// acknowledges; the sender's resend queue empties. The datagrams are
/// alike (600 alike flows), so with `udp_offload` (the default) they
/// leave in segmented sends and arrive in fewer, coalesced reads.
#[test]
fn a_batch_of_datagrams_all_arrives_and_is_acknowledged() {
    let port = free_udp_port();
    let t0 = Instant::now();
    let mut a = End::new("127.0.0.1", "127.0.0.2", port, t0);
    let mut b = End::new("127.0.0.2", "127.0.0.1", port, t0);
    const FLOWS: u16 = 600;
    for i in 0..FLOWS {
        a.ch.engine.push_delta(t0, FlowKind::New, flow(i));
    }
    // Past the flush delay: partial datagrams go too.
    let late = t0 + Duration::from_millis(50);
    let first = a.transmit(late);
    assert!(first >= 10, "one transmit sent {first} datagrams");
    assert_eq!(a.ch.unsent(), 0);
    assert_eq!(a.ch.counters.send_errors, 0);
    let Link::Udp(u) = &a.link else { panic!("udp") };
    assert_eq!(u.segmentation(), Segmentation::On);
    assert_eq!(a.link.udp_offload(), "on");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut now = late;
    loop {
        now += Duration::from_millis(10);
        b.receive(now);
        b.ch.engine.handle_timeout(now);
        b.transmit(now);
        a.receive(now);
        a.ch.engine.handle_timeout(now);
        a.transmit(now);
        let s = a.ch.engine.stats();
        if b.applied.len() == usize::from(FLOWS)
            && s.resend_queue_depth == 0
            && s.tx_queue_depth == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all acknowledged: applied {} of {FLOWS}, {s:?}",
            b.applied.len()
        );
        // Wait for the peer's datagrams (bounded), not a fixed sleep.
        a.link.wait_precise(Duration::from_millis(5));
    }
    assert_eq!(b.applied, (10_000..10_000 + FLOWS).collect());
    let s = a.ch.engine.stats();
    assert!(s.acks_in > 0, "{s:?}");
    assert_eq!(b.ch.engine.stats().lost, 0, "nothing was lost on loopback");
    assert!(
        b.reads < b.datagrams / 2,
        "{} datagrams in {} reads",
        b.datagrams,
        b.reads
    );
}

/// With `udp_offload = false` every datagram is sent and read alone.
#[test]
fn without_udp_offload_every_datagram_is_a_read_of_its_own() {
    let port = free_udp_port();
    let t0 = Instant::now();
    let mut c = cfg("127.0.0.1", "127.0.0.2", port);
    c.udp_offload = false;
    let mut a = End::new("127.0.0.1", "127.0.0.2", port, t0);
    a.link = Link::open(&c, t0).unwrap();
    let mut c = cfg("127.0.0.2", "127.0.0.1", port);
    c.udp_offload = false;
    let mut b = End::new("127.0.0.2", "127.0.0.1", port, t0);
    b.link = Link::open(&c, t0).unwrap();
    for i in 0..300 {
        a.ch.engine.push_delta(t0, FlowKind::New, flow(i));
    }
    let sent = a.transmit(t0 + Duration::from_millis(50));
    assert!(sent >= 10, "{sent}");
    let Link::Udp(u) = &a.link else { panic!("udp") };
    assert_eq!(u.segmentation(), Segmentation::Off);
    assert_eq!(a.link.udp_offload(), "off");
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.datagrams < sent {
        b.link.wait_precise(Duration::from_millis(100));
        b.receive(t0);
        assert!(Instant::now() < deadline, "{} of {sent}", b.datagrams);
    }
    assert_eq!((b.datagrams, b.reads), (sent, sent));
}

/// A datagram the kernel refuses in the middle of a batch (longer than
/// UDP allows) is counted as a send error and dropped; the datagrams
/// before and after it still go, in order.
#[test]
fn a_failed_datagram_in_a_batch_is_counted_and_the_rest_still_go() {
    let port = free_udp_port();
    let t0 = Instant::now();
    let mut a = End::new("127.0.0.1", "127.0.0.2", port, t0);
    let b = End::new("127.0.0.2", "127.0.0.1", port, t0);
    a.ch.queue_unsent(b"first");
    a.ch.queue_unsent(&vec![0u8; 70_000]);
    a.ch.queue_unsent(b"third");
    let n = a.transmit(t0);
    assert_eq!(n, 3, "all three left the batch");
    assert_eq!(a.ch.counters.send_errors, 1);
    assert_eq!(a.ch.unsent(), 0);
    let Link::Udp(u) = &b.link else { panic!("udp") };
    let mut rx = RecvBatch::new(8, 65536);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 2 {
        b.link.wait_precise(Duration::from_millis(100));
        let k = u.recv_batch(&mut rx, 8).unwrap();
        for i in 0..k {
            got.push(rx.get_mut(i).unwrap().0.to_vec());
        }
        assert!(Instant::now() < deadline, "got {got:?}");
    }
    assert_eq!(got, vec![b"first".to_vec(), b"third".to_vec()]);
}
