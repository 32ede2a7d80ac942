//! Two workers over fanned-out mem ports sharing one hand-off: a
//! translated flow whose reply tuple steers to the other worker (as a
//! Linux peer's kernel chooses NAT ports) is found and translated back.

use std::net::IpAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::*;
use crate::conntrack::ConntrackConfig;
use crate::flow::{proto, FlowKey, FlowState, TcpState, Tuple};
use crate::packet::{FrameSpec, L4Spec};
use crate::port::mem::{self, FanoutHost};
use crate::port::steer::worker_of;
use crate::port::{PacketBuf, Port};
use crate::worker::command::Command;
use crate::worker::{ActiveRules, WorkerCounters, WorkerSpec};

const CLIENT: &str = "192.0.2.1";
const SERVER: &str = "198.51.100.2";
const PUBLIC: &str = "203.0.113.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Rig {
    w: Vec<Worker>,
    client: FanoutHost,
    server: FanoutHost,
    handoff: Arc<HandOff>,
}

/// The rules of every rig: flows already tracked pass, and new ones to
/// port 53: a reply that finds no flow is dropped.
fn rules() -> Arc<ArcSwap<ActiveRules>> {
    let ports = |name: &str| match name {
        "outside" => Some(0),
        "inside" => Some(1),
        _ => None,
    };
    let set = crate::acl::parse_rules(
        "policy drop\naccept ct established,related\naccept proto udp dport 53 ct new\n",
        "test.rules",
        1,
        &ports,
    )
    .expect("rules parse");
    Arc::new(ArcSwap::from_pointee(ActiveRules {
        generation: 1,
        classifier: set.compile(),
        sync: Default::default(),
        nat: Default::default(),
        helpers: Default::default(),
    }))
}

/// Two workers sharing `handoff`, worker `id` on ports `o` and `i`.
fn workers(pairs: Vec<(Box<dyn Port>, Box<dyn Port>)>, handoff: &Arc<HandOff>) -> Vec<Worker> {
    let rules = rules();
    pairs
        .into_iter()
        .enumerate()
        .map(|(id, (o, i))| {
            let mut spec = WorkerSpec::bridged_pair(o, i, ConntrackConfig::default(), 1024);
            spec.id = u16::try_from(id).unwrap();
            spec.workers = 2;
            spec.handoff = Some(Arc::clone(handoff));
            Worker::new(spec, Arc::clone(&rules), None)
        })
        .collect()
}

fn rig() -> Rig {
    let (client, outside) = mem::fanout("client", "outside", 2, 4096);
    let (server, inside) = mem::fanout("server", "inside", 2, 4096);
    let handoff = HandOff::new(2);
    let pairs = outside
        .into_iter()
        .zip(inside)
        .map(|(o, i)| (Box::new(o) as Box<dyn Port>, Box::new(i) as Box<dyn Port>))
        .collect();
    let w = workers(pairs, &handoff);
    Rig {
        w,
        client,
        server,
        handoff,
    }
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    FrameSpec {
        src_ip: ip(src),
        dst_ip: ip(dst),
        l4: L4Spec::Udp {
            src_port: sport,
            dst_port: dport,
        },
        payload_len: 16,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

fn send(host: &mut FanoutHost, frame: &[u8]) {
    let mut b = [PacketBuf::new()];
    b[0].set(frame);
    assert_eq!(host.tx_burst(&mut b), 1);
}

fn recv_all(host: &mut FanoutHost) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b: Vec<PacketBuf> = (0..crate::port::BURST).map(|_| PacketBuf::new()).collect();
    loop {
        let n = host.rx_burst(&mut b);
        if n == 0 {
            return out;
        }
        out.extend(b[..n].iter().map(|x| x.data.to_vec()));
    }
}

impl Rig {
    /// Runs every worker until none receives anything more.
    fn run(&mut self) {
        let now = Instant::now();
        loop {
            let mut got = 0;
            for w in &mut self.w {
                got += w.poll_once(now);
            }
            // Handed frames are taken at the start of an iteration.
            for w in &mut self.w {
                got += w.poll_once(now);
            }
            if got == 0 {
                return;
            }
        }
    }

    fn counters(&mut self, w: usize) -> WorkerCounters {
        self.w[w].publish();
        self.w[w].shared().counters.load()
    }

    /// Adds `st` to worker `w`'s shard, as a commit or `flows add` does.
    fn upsert(&mut self, w: usize, st: FlowState) {
        let (tx, rx) = mpsc::channel();
        self.command(
            w,
            Command::Upsert {
                state: Box::new(st),
                reply: tx,
            },
        );
        assert_eq!(rx.recv().unwrap(), Ok(()));
    }

    fn command(&mut self, w: usize, c: Command) {
        self.w[w].shared().send(c).map_err(|_| ()).unwrap();
        self.w[w].poll_once(Instant::now());
    }
}

/// A flow translated by someone else's choice: `orig` from the client, its
/// reply tuple to PUBLIC at a port whose reply steers to the other worker.
fn foreign_flow() -> (FlowState, usize, Tuple) {
    let orig = Tuple::new(ip(CLIENT), ip(SERVER), proto::UDP, 4000, 53);
    let owner = worker_of(&orig, 2);
    let reply = (61000..)
        .map(|p| Tuple::new(ip(SERVER), ip(PUBLIC), proto::UDP, 53, p))
        .find(|r| worker_of(r, 2) != owner)
        .unwrap();
    let mut st = FlowState::established_tcp(orig, 60);
    st.tcp_state = TcpState::None;
    st.extras.reply = Some(reply);
    (st, owner, reply)
}

#[test]
fn a_reply_steered_to_another_worker_is_handed_to_the_flows_worker_and_translated() {
    let mut r = rig();
    let (st, owner, reply) = foreign_flow();
    let other = 1 - owner;
    r.upsert(owner, st.clone());
    assert_eq!(
        r.handoff.foreign().owner(&reply, 0),
        Some(u16::try_from(owner).unwrap())
    );
    // The server answers the translated address: the frame reaches the
    // other worker, which hands it over; the owner translates it back.
    let back = udp(SERVER, PUBLIC, 53, reply.dst_port);
    assert_eq!(r.server.worker_for(&back), other);
    send(&mut r.server, &back);
    r.run();
    let got = recv_all(&mut r.client);
    assert_eq!(got, vec![udp(SERVER, CLIENT, 53, 4000)], "translated back");
    assert_eq!(r.counters(other).handed_off, 1);
    assert_eq!(r.counters(owner).handoff_received, 1);
    // The original direction needs no hand-off and leaves translated.
    send(&mut r.client, &udp(CLIENT, SERVER, 4000, 53));
    r.run();
    assert_eq!(
        recv_all(&mut r.server),
        vec![udp(PUBLIC, SERVER, reply.dst_port, 53)]
    );
    // Once the flow is gone, so is its entry: the reply is dropped where
    // it arrives (policy drop), not handed over.
    let (tx, rx) = mpsc::channel();
    r.command(
        owner,
        Command::Remove {
            key: FlowKey {
                orig: st.key.orig,
                zone: 0,
            },
            reply: tx,
        },
    );
    assert!(rx.recv().unwrap());
    assert!(r.handoff.foreign().is_empty());
    send(&mut r.server, &back);
    r.run();
    assert!(recv_all(&mut r.client).is_empty());
    assert_eq!(r.counters(other).handed_off, 1);
}

#[test]
fn a_full_hand_off_queue_drops_and_counts_and_nothing_is_lost_below_it() {
    let mut r = rig();
    let (st, owner, reply) = foreign_flow();
    let other = 1 - owner;
    r.upsert(owner, st.clone());
    let back = udp(SERVER, PUBLIC, 53, reply.dst_port);
    let extra = 10;
    for _ in 0..HANDOFF_QUEUE + extra {
        send(&mut r.server, &back);
    }
    // Only the worker that receives them runs: its hand-off queue fills.
    let now = Instant::now();
    while r.w[other].poll_once(now) > 0 {}
    let c = r.counters(other);
    assert_eq!(
        (c.handed_off, c.handoff_full),
        (HANDOFF_QUEUE as u64, extra as u64)
    );
    r.run();
    assert_eq!(recv_all(&mut r.client).len(), HANDOFF_QUEUE);
    assert_eq!(r.counters(owner).handoff_received, HANDOFF_QUEUE as u64);
}

#[test]
fn the_fragments_of_a_datagram_follow_its_first_fragment_to_the_flows_worker() {
    let mut r = rig();
    // A source port whose flow steers to another worker than the
    // datagram's addresses alone (how every fragment is steered).
    let by_addr = worker_of(&Tuple::new(ip(CLIENT), ip(SERVER), proto::UDP, 0, 0), 2);
    let flow = |p| Tuple::new(ip(CLIENT), ip(SERVER), proto::UDP, p, 53);
    let sport = (4000..)
        .find(|&p| worker_of(&flow(p), 2) != by_addr)
        .unwrap();
    let owner = worker_of(&flow(sport), 2);
    let frags = crate::nat::tests::udp_fragments(CLIENT, SERVER, sport, 53, 3000);
    assert_eq!(frags.len(), 3);
    for f in &frags {
        assert_eq!(r.client.worker_for(f), by_addr);
        send(&mut r.client, f);
    }
    r.run();
    assert_eq!(recv_all(&mut r.server), frags, "forwarded whole, in order");
    assert_eq!(r.counters(by_addr).handed_off, 3);
    assert_eq!(r.counters(owner).handoff_received, 3);
    // The flow lives with the worker its unfragmented packets reach, so
    // the server's answer finds it there.
    assert_eq!(r.w[owner].pipeline().shard.len(), 1);
    assert_eq!(r.w[by_addr].pipeline().shard.len(), 0);
    let answer = udp(SERVER, CLIENT, 53, sport);
    assert_eq!(r.server.worker_for(&answer), owner);
    send(&mut r.server, &answer);
    r.run();
    assert_eq!(recv_all(&mut r.client), vec![answer]);
}

#[test]
fn an_icmp_error_steered_by_its_outer_addresses_is_handed_to_the_flows_worker() {
    let mut r = rig();
    // The kernel steers an ICMP error by its outer addresses, the router's
    // and the client's: pick a router whose error lands on the other
    // worker than the flow's.
    let sport = 4000;
    let out = udp(CLIENT, SERVER, sport, 53);
    let owner = r.client.worker_for(&out);
    let (router, err) = (1..=250)
        .map(|h| {
            let router = format!("198.51.100.{h}");
            let err = crate::nat::tests::icmp_error_about(&out, &router);
            (router, err)
        })
        .find(|(_, err)| r.server.worker_for(err) != owner)
        .unwrap();
    let other = 1 - owner;
    send(&mut r.client, &out);
    r.run();
    assert_eq!(recv_all(&mut r.server), vec![out.clone()]);
    // The error is related to the flow only in the owner's shard; without
    // the hand-off the other worker would find no flow and drop it.
    send(&mut r.server, &err);
    r.run();
    assert_eq!(recv_all(&mut r.client), vec![err], "from {router}");
    assert_eq!(r.counters(other).handed_off, 1);
    let c = r.counters(owner);
    assert_eq!((c.handoff_received, c.handed_off), (1, 0));
    assert_eq!(r.w[other].pipeline().shard.len(), 0);
}

/// `frame` (IPv6, UDP) with an empty destination options header before
/// its UDP header.
fn with_destination_options(frame: &[u8]) -> Vec<u8> {
    let (l3, nh) = (14, 14 + 6);
    let mut f = frame.to_vec();
    assert_eq!(f[nh], proto::UDP);
    f[nh] = 60;
    let plen = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) + 8;
    f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    // Next header UDP, length 0 (8 bytes), one PadN option of 4 bytes.
    f.splice(l3 + 40..l3 + 40, [proto::UDP, 0, 1, 4, 0, 0, 0, 0]);
    f
}

#[test]
fn an_ipv6_flow_whose_first_packet_has_extension_headers_lives_with_its_ports_worker() {
    let mut r = rig();
    let (c6, s6) = ("2001:db8::1", "2001:db8:1::2");
    // The kernel steers a packet with extension headers by its addresses
    // alone; the flow's later packets (without) by its ports too. Pick a
    // source port for which the two differ.
    let by_addr = worker_of(&Tuple::new(ip(c6), ip(s6), proto::UDP, 0, 0), 2);
    let sport = (4000..)
        .find(|&p| worker_of(&Tuple::new(ip(c6), ip(s6), proto::UDP, p, 53), 2) != by_addr)
        .unwrap();
    let owner = 1 - by_addr;
    let first = with_destination_options(&udp(c6, s6, sport, 53));
    let m = crate::packet::parse_frame(&first).unwrap();
    assert_eq!(m.tuple.src_port, sport, "the parser sees the ports");
    assert_eq!(r.client.worker_for(&first), by_addr);
    send(&mut r.client, &first);
    r.run();
    assert_eq!(recv_all(&mut r.server), vec![first]);
    assert_eq!(r.counters(by_addr).handed_off, 1);
    assert_eq!(
        r.w[owner].pipeline().shard.len(),
        1,
        "created by the flow's worker"
    );
    assert_eq!(r.w[by_addr].pipeline().shard.len(), 0);
    // The answer (no extension headers) reaches the owner and is a reply.
    let answer = udp(s6, c6, 53, sport);
    assert_eq!(r.server.worker_for(&answer), owner);
    send(&mut r.server, &answer);
    r.run();
    assert_eq!(recv_all(&mut r.client), vec![answer]);
    assert_eq!(r.counters(owner).handed_off, 0);
}

#[test]
fn an_icmp_error_about_a_foreign_translated_packet_reaches_the_flows_worker() {
    let mut r = rig();
    let (st, owner, reply) = foreign_flow();
    let other = 1 - owner;
    r.upsert(owner, st);
    send(&mut r.client, &udp(CLIENT, SERVER, 4000, 53));
    r.run();
    let out = recv_all(&mut r.server);
    assert_eq!(out, vec![udp(PUBLIC, SERVER, reply.dst_port, 53)]);
    // An error about the translated packet, steered to the worker that
    // does not hold the flow. Its quote steers there too (the reply tuple
    // does): only the table of foreign replies names the owner.
    let err = (1..=250)
        .map(|h| crate::nat::tests::icmp_error_about(&out[0], &format!("198.51.100.{h}")))
        .find(|e| r.server.worker_for(e) == other)
        .unwrap();
    send(&mut r.server, &err);
    r.run();
    let got = recv_all(&mut r.client);
    assert_eq!(got.len(), 1, "the error is forwarded");
    let m = crate::packet::parse_frame(&got[0]).unwrap();
    assert_eq!(
        m.tuple.dst_ip(),
        ip(CLIENT),
        "translated back to the client"
    );
    let inner = m.icmp_error.unwrap();
    assert_eq!(
        (
            inner.src_ip(),
            inner.src_port,
            inner.dst_ip(),
            inner.dst_port
        ),
        (ip(CLIENT), 4000, ip(SERVER), 53),
        "its quote too"
    );
    assert_eq!(r.counters(other).handed_off, 1);
    assert_eq!(r.counters(owner).handoff_received, 1);
}

/// A cluster member owning every other bucket: a corrupt frame of
/// another member's bucket counts only as `not_owner` (it is dropped
/// before its checksum is looked at); one of its own buckets is caught as
/// `bad_checksum`; an intact one passes.
#[test]
fn a_member_counts_another_members_frames_as_not_owner_and_its_own_bad_checksums() {
    use crate::buckets::{bucket_of_tuple, BucketSet};
    let mut r = rig();
    const BUCKETS: u32 = 64;
    let half = BucketSet::from_iter_in(BUCKETS, (0..BUCKETS).step_by(2));
    for w in &r.w {
        w.shared().buckets.set(&half);
    }
    let flow = |p| Tuple::new(ip(CLIENT), ip(SERVER), proto::UDP, p, 53);
    let owned = |p: &u16| half.contains(bucket_of_tuple(&flow(*p), BUCKETS));
    let theirs = (4000..).find(|p| !owned(p)).unwrap();
    let ours = (4000..).find(owned).unwrap();
    let corrupt = |p| {
        let mut f = udp(CLIENT, SERVER, p, 53);
        *f.last_mut().unwrap() ^= 0x5a;
        f
    };
    send(&mut r.client, &corrupt(theirs));
    send(&mut r.client, &corrupt(ours));
    r.run();
    assert!(recv_all(&mut r.server).is_empty());
    let (a, b) = (r.counters(0), r.counters(1));
    assert_eq!(a.not_owner + b.not_owner, 1);
    assert_eq!(a.bad_checksum + b.bad_checksum, 1);
    // An intact frame of our bucket passes.
    send(&mut r.client, &udp(CLIENT, SERVER, ours, 53));
    r.run();
    assert_eq!(recv_all(&mut r.server).len(), 1);
}

/// Outside a cluster every frame is ours, and its checksum is verified in
/// the parse pass: a corrupt UDP frame is dropped as `bad_checksum`, an
/// intact one of the same flow passes.
#[test]
fn outside_a_cluster_a_corrupt_frame_is_a_bad_checksum_and_an_intact_one_passes() {
    let mut r = rig();
    let mut bad = udp(CLIENT, SERVER, 4000, 53);
    *bad.last_mut().unwrap() ^= 0x5a;
    send(&mut r.client, &bad);
    r.run();
    assert!(recv_all(&mut r.server).is_empty());
    let (a, b) = (r.counters(0), r.counters(1));
    assert_eq!(a.bad_checksum + b.bad_checksum, 1);
    assert_eq!(a.not_owner + b.not_owner, 0);
    send(&mut r.client, &udp(CLIENT, SERVER, 4000, 53));
    r.run();
    assert_eq!(recv_all(&mut r.server).len(), 1);
}

/// A cluster member forwards every fragment of a datagram whose first
/// fragment is in its buckets, though the later fragments (no ports) hash
/// to another bucket; a member that does not own the first fragment's
/// bucket drops them all as `not_owner`, though it owns the later ones'.
/// Here the fragments reach the worker of the datagram's addresses and go
/// on to the flow's worker, all in one burst.
#[test]
fn a_member_forwards_the_later_fragments_of_the_datagrams_it_owns_and_no_others() {
    use crate::buckets::{bucket_of_tuple, BucketSet};
    const BUCKETS: u32 = 64;
    let bare = Tuple::new(ip(CLIENT), ip(SERVER), proto::UDP, 0, 0);
    let (by_addr, bz) = (worker_of(&bare, 2), bucket_of_tuple(&bare, BUCKETS));
    let flow = |p| Tuple::new(ip(CLIENT), ip(SERVER), proto::UDP, p, 53);
    let sport = (4000..)
        .find(|&p| worker_of(&flow(p), 2) != by_addr && bucket_of_tuple(&flow(p), BUCKETS) != bz)
        .unwrap();
    let b = bucket_of_tuple(&flow(sport), BUCKETS);
    let frags = crate::nat::tests::udp_fragments(CLIENT, SERVER, sport, 53, 3000);
    assert_eq!(frags.len(), 3);
    let run = |owned: BucketSet| {
        let mut r = rig();
        for w in &r.w {
            w.shared().buckets.set(&owned);
        }
        for f in &frags {
            send(&mut r.client, f);
        }
        r.run();
        let got = recv_all(&mut r.server);
        let not_owner = r.counters(0).not_owner + r.counters(1).not_owner;
        (got, not_owner)
    };
    // Owner of the datagram's flow, not of its bare addresses.
    let (got, not_owner) = run(BucketSet::from_iter_in(BUCKETS, [b]));
    assert_eq!(got.len(), frags.len(), "fragments forwarded");
    assert!(got == frags, "every fragment, in order");
    assert_eq!(not_owner, 0);
    // Every bucket but the flow's: the other member forwards it all.
    let (got, not_owner) = run(BucketSet::from_iter_in(
        BUCKETS,
        (0..BUCKETS).filter(|&x| x != b),
    ));
    assert!(got.is_empty(), "{} fragments forwarded", got.len());
    assert_eq!(not_owner, 3);
}

/// A port whose frames arrive at whichever worker the device chose, as an
/// AF_XDP queue's do.
struct Unsteered(mem::MemPort);

impl Port for Unsteered {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        self.0.rx_burst(bufs)
    }
    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        self.0.tx_burst(bufs)
    }
    fn wait_rx(&mut self, timeout: std::time::Duration) {
        self.0.wait_rx(timeout);
    }
    fn stats(&self) -> crate::port::PortStats {
        self.0.stats()
    }
    fn steers_by_flow(&self) -> bool {
        false
    }
}

#[test]
fn on_ports_that_do_not_steer_by_flow_every_frame_goes_to_its_flows_worker() {
    let handoff = HandOff::new(2);
    let mut hosts = Vec::new();
    let mut pairs: Vec<(Box<dyn Port>, Box<dyn Port>)> = Vec::new();
    for w in 0..2 {
        let (c, o) = mem::wire(&format!("client.{w}"), &format!("outside.{w}"), 64);
        let (s, i) = mem::wire(&format!("server.{w}"), &format!("inside.{w}"), 64);
        hosts.push((c, s));
        pairs.push((Box::new(Unsteered(o)), Box::new(Unsteered(i))));
    }
    let mut w = workers(pairs, &handoff);
    let run = |w: &mut Vec<Worker>| {
        for _ in 0..4 {
            for x in w.iter_mut() {
                x.poll_once(Instant::now());
            }
        }
    };
    let recv = |p: &mut mem::MemPort| {
        let mut b: Vec<PacketBuf> = (0..4).map(|_| PacketBuf::new()).collect();
        let n = p.rx_burst(&mut b);
        b[..n].iter().map(|x| x.data.to_vec()).collect::<Vec<_>>()
    };
    let query = udp(CLIENT, SERVER, 4000, 53);
    let owner = worker_of(&Tuple::new(ip(CLIENT), ip(SERVER), proto::UDP, 4000, 53), 2);
    let other = 1 - owner;
    // The query arrives at the other worker, the answer at the owner:
    // without the hand-off the other would make the flow and the owner
    // would drop the answer as a new flow the rules do not allow.
    let mut b = [PacketBuf::new()];
    b[0].set(&query);
    assert_eq!(hosts[other].0.tx_burst(&mut b), 1);
    run(&mut w);
    assert_eq!(
        recv(&mut hosts[owner].1),
        vec![query.clone()],
        "forwarded by the owner"
    );
    assert_eq!(w[other].pipeline().shard.len(), 0);
    assert_eq!(w[owner].pipeline().shard.len(), 1);
    let answer = udp(SERVER, CLIENT, 53, 4000);
    b[0].set(&answer);
    assert_eq!(hosts[owner].1.tx_burst(&mut b), 1);
    run(&mut w);
    assert_eq!(recv(&mut hosts[owner].0), vec![answer.clone()]);
    // And an answer that arrives at the other worker goes to the owner too.
    b[0].set(&answer);
    assert_eq!(hosts[other].1.tx_burst(&mut b), 1);
    run(&mut w);
    assert_eq!(recv(&mut hosts[owner].0), vec![answer]);
    w[other].publish();
    assert_eq!(w[other].shared().counters.load().handed_off, 2);
    assert_eq!(w[other].pipeline().shard.len(), 0);
}
