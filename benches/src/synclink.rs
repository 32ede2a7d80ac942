//! The lab's dedicated sync link: an emulated wire between two firewalls'
//! sync ports with settable bandwidth, one-way delay and loss.
//!
//! The relay sits between the nodes on loopback: fw1 is configured with the
//! relay's `a` address as its sync peer, fw2 with `b`. The relay forwards
//! what fw1 sends to `a` out of `b` to fw2 (so it comes from fw2's
//! configured peer address) and the other way round.
//!
//! - **Datagram** links (the `ftfw` and `udp-best-effort` transports):
//!   every datagram is serialized at the link's bandwidth behind the ones
//!   before it, lost with probability `loss` (decided by a seeded
//!   generator, one per direction, so the n-th datagram's fate depends only
//!   on the seed), and delivered `delay` later. A datagram that finds more
//!   than `queue_limit` bytes waiting is dropped at the tail, as a full
//!   switch or `tbf` queue would.
//! - **Stream** links (the `tcp` transport): the relay accepts each side's
//!   TCP connection and opens its own to the other side, and carries the
//!   byte stream in segments of at most [`SEGMENT`] bytes. Loss cannot be
//!   applied to a loopback TCP connection without privileges, so the relay
//!   applies a model of TCP loss recovery instead: a segment lost once is
//!   repaired one probe later (fast retransmit or tail loss probe,
//!   `max(2 × RTT, 10 ms)`); a retransmission lost again waits for the
//!   retransmission timeout (200 ms, Linux's minimum, doubling each time).
//!   Delivery is in order, so every later segment waits behind a lost one
//!   (head-of-line blocking). Congestion control is not modelled, which
//!   flatters TCP. When the stream backs up past `queue_limit` the relay
//!   stops reading (back-pressure on the sender, as TCP's window would).
//!
//! [`SyncLink::cut`] is the crash of fw1: nothing more is read from fw1,
//! whatever fw1 sent that has not reached fw2 by then is discarded
//! (datagrams still on the wire, segments still waiting for a
//! retransmission or behind one), and nothing more is delivered to fw1.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use ftfw_dataplane::rng::splitmix64;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

/// Largest segment the stream model carries (a 1500-byte MTU's TCP MSS
/// with timestamps).
pub const SEGMENT: usize = 1448;
/// Linux's minimum retransmission timeout.
const MIN_RTO: Duration = Duration::from_millis(200);
/// Floor of the tail loss probe timeout.
const MIN_PROBE: Duration = Duration::from_millis(10);
/// How often a missing outgoing connection is retried.
const CONNECT_RETRY: Duration = Duration::from_millis(20);

/// How the sync transport uses the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// UDP datagrams.
    Datagram,
    /// A TCP byte stream per direction.
    Stream,
}

/// The link's properties.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LinkParams {
    /// Bits per second.
    pub bandwidth_bps: u64,
    /// One-way delay.
    #[serde(serialize_with = "ser_ms")]
    pub delay: Duration,
    /// Probability that a datagram (or a segment's transmission) is lost.
    pub loss: f64,
    /// Seed of the loss decisions.
    pub seed: u64,
    /// Bytes that may wait for the wire per direction.
    pub queue_limit: usize,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            bandwidth_bps: 1_000_000_000,
            delay: Duration::ZERO,
            loss: 0.0,
            seed: 1,
            queue_limit: 2 << 20,
        }
    }
}

/// What crossed the link so far.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LinkCounters {
    /// Datagrams or segments handed to the far side.
    pub delivered: u64,
    /// Bytes handed to the far side.
    pub delivered_bytes: u64,
    /// Datagrams lost on the wire (datagram links).
    pub lost: u64,
    /// Segment transmissions lost and repaired by the TCP model.
    pub retransmissions: u64,
    /// Datagrams dropped at a full queue.
    pub queue_drops: u64,
    /// Datagrams or segments discarded by the cut.
    pub discarded_at_cut: u64,
}

#[derive(Default)]
struct Shared {
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
    lost: AtomicU64,
    retransmissions: AtomicU64,
    queue_drops: AtomicU64,
    discarded_at_cut: AtomicU64,
    cut: AtomicBool,
    stop: AtomicBool,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn lost(rng: &mut u64, p: f64) -> bool {
    p > 0.0 && (splitmix64(rng) >> 11) as f64 / (1u64 << 53) as f64 <= p
}

/// One direction of the wire: what is on it and when each piece arrives.
struct Wire {
    params: LinkParams,
    rng: u64,
    /// The wire is busy serializing until then.
    free_at: Instant,
    /// The previous piece's arrival (streams deliver in order).
    last_due: Instant,
    queue: VecDeque<(Instant, Vec<u8>)>,
    queued: usize,
}

impl Wire {
    fn new(params: LinkParams, salt: u64) -> Self {
        let now = Instant::now();
        Wire {
            params,
            rng: params.seed ^ salt,
            free_at: now,
            last_due: now,
            queue: VecDeque::new(),
            queued: 0,
        }
    }

    fn serialization(&self, len: usize) -> Duration {
        let bits = (len as u64 + 38) * 8; // Ethernet framing, preamble and gap
        Duration::from_nanos(bits.saturating_mul(1_000_000_000) / self.params.bandwidth_bps.max(1))
    }

    /// A datagram put on the wire now.
    fn datagram(&mut self, now: Instant, d: Vec<u8>, sh: &Shared) {
        if self.queued + d.len() > self.params.queue_limit {
            add(&sh.queue_drops, 1);
            return;
        }
        let depart = self.free_at.max(now) + self.serialization(d.len() + 28);
        self.free_at = depart;
        if lost(&mut self.rng, self.params.loss) {
            add(&sh.lost, 1);
            return;
        }
        self.queued += d.len();
        self.queue.push_back((depart + self.params.delay, d));
    }

    /// A stream segment put on the wire now, with the TCP loss model.
    fn segment(&mut self, now: Instant, d: Vec<u8>, sh: &Shared) {
        let depart = self.free_at.max(now) + self.serialization(d.len() + 52);
        self.free_at = depart;
        let rtt = self.params.delay * 2;
        let mut ready = depart + self.params.delay;
        let mut failures = 0u32;
        while lost(&mut self.rng, self.params.loss) {
            failures += 1;
            add(&sh.retransmissions, 1);
            ready += if failures == 1 {
                (rtt * 2).max(MIN_PROBE)
            } else {
                MIN_RTO.max(rtt) * (1 << (failures - 2).min(6))
            };
        }
        let due = ready.max(self.last_due);
        self.last_due = due;
        self.queued += d.len();
        self.queue.push_back((due, d));
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(t, _)| *t)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_due()? > now {
            return None;
        }
        let (_, d) = self.queue.pop_front()?;
        self.queued -= d.len();
        Some(d)
    }

    /// The cut: whatever has not arrived by `now` is gone.
    fn discard_undelivered(&mut self, now: Instant, sh: &Shared) {
        let before = self.queue.len();
        self.queue.retain(|(t, _)| *t <= now);
        self.queued = self.queue.iter().map(|(_, d)| d.len()).sum();
        add(&sh.discarded_at_cut, (before - self.queue.len()) as u64);
    }
}

/// The running relay.
pub struct SyncLink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    /// Address fw1 must use as its sync peer.
    pub a: SocketAddr,
    /// Address fw2 must use as its sync peer.
    pub b: SocketAddr,
}

impl std::fmt::Debug for SyncLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncLink")
            .field("a", &self.a)
            .field("b", &self.b)
            .finish_non_exhaustive()
    }
}

impl SyncLink {
    /// Starts a relay listening on `a` (fw1's side) and `b` (fw2's side),
    /// delivering to `fw1` and `fw2`.
    pub fn start(
        kind: LinkKind,
        params: LinkParams,
        a: SocketAddr,
        b: SocketAddr,
        fw1: SocketAddr,
        fw2: SocketAddr,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (0.0..1.0).contains(&params.loss),
            "sync link loss must be at least 0 and below 1"
        );
        anyhow::ensure!(
            params.bandwidth_bps > 0,
            "sync link bandwidth must be positive"
        );
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let thread = match kind {
            LinkKind::Datagram => {
                let sa = UdpSocket::bind(a).with_context(|| format!("sync link: binding {a}"))?;
                let sb = UdpSocket::bind(b).with_context(|| format!("sync link: binding {b}"))?;
                // Buffers as large as the nodes' own sync sockets (4 MiB):
                // the link's queue (2 MiB) is what drops, not the relay's
                // default 208 KiB socket buffer when a node bursts.
                for s in [&sa, &sb] {
                    let r = socket2::SockRef::from(s);
                    let _ = r.set_recv_buffer_size(4 << 20);
                    let _ = r.set_send_buffer_size(4 << 20);
                }
                std::thread::Builder::new()
                    .name("lab-sync-link".into())
                    .spawn(move || datagram_relay(&sh, params, sa, sb, fw1, fw2))?
            }
            LinkKind::Stream => {
                let la =
                    TcpListener::bind(a).with_context(|| format!("sync link: listening on {a}"))?;
                let lb =
                    TcpListener::bind(b).with_context(|| format!("sync link: listening on {b}"))?;
                std::thread::Builder::new()
                    .name("lab-sync-link".into())
                    .spawn(move || stream_relay(&sh, params, [la, lb], [a, b], [fw1, fw2]))?
            }
        };
        Ok(SyncLink {
            shared,
            thread: Some(thread),
            a,
            b,
        })
    }

    /// fw1 crashed: see the module documentation.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::Release);
    }

    /// The counters so far.
    pub fn counters(&self) -> LinkCounters {
        let s = &self.shared;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LinkCounters {
            delivered: g(&s.delivered),
            delivered_bytes: g(&s.delivered_bytes),
            lost: g(&s.lost),
            retransmissions: g(&s.retransmissions),
            queue_drops: g(&s.queue_drops),
            discarded_at_cut: g(&s.discarded_at_cut),
        }
    }

    /// Stops the relay; an error of its thread is returned.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("sync link thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for SyncLink {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Poll timeout: until the next arrival, at most `cap`.
fn wait_for(
    due: impl IntoIterator<Item = Option<Instant>>,
    now: Instant,
    cap: Duration,
) -> Duration {
    due.into_iter()
        .flatten()
        .map(|t| t.saturating_duration_since(now))
        .fold(cap, Duration::min)
}

fn datagram_relay(
    sh: &Shared,
    params: LinkParams,
    sa: UdpSocket,
    sb: UdpSocket,
    fw1: SocketAddr,
    fw2: SocketAddr,
) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let (mut sa, mut sb) = (sa, sb);
    poll.registry()
        .register(&mut sa, Token(0), Interest::READABLE)?;
    poll.registry()
        .register(&mut sb, Token(1), Interest::READABLE)?;
    let mut events = Events::with_capacity(16);
    // to_fw2 carries what fw1 sent to `a`; to_fw1 what fw2 sent to `b`.
    let mut to_fw2 = Wire::new(params, 0xA5A5);
    let mut to_fw1 = Wire::new(params, 0x5A5A);
    let mut buf = vec![0u8; 65536];
    let mut was_cut = false;
    while !sh.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let cut = sh.cut.load(Ordering::Acquire);
        if cut && !was_cut {
            was_cut = true;
            to_fw2.discard_undelivered(now, sh);
            to_fw1.discard_undelivered(Instant::now() - Duration::from_secs(3600), sh);
        }
        // What fw1 sent, bound for fw2.
        loop {
            match sa.recv_from(&mut buf) {
                Ok((n, from)) if from == fw1 && !cut => to_fw2.datagram(now, buf[..n].to_vec(), sh),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e).context("sync link: receiving from fw1"),
            }
        }
        loop {
            match sb.recv_from(&mut buf) {
                Ok((n, from)) if from == fw2 && !cut => to_fw1.datagram(now, buf[..n].to_vec(), sh),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e).context("sync link: receiving from fw2"),
            }
        }
        let now = Instant::now();
        while let Some(d) = to_fw2.pop_due(now) {
            // A refused or full destination loses the datagram, as a wire would.
            if sb.send_to(&d, fw2).is_ok() {
                add(&sh.delivered, 1);
                add(&sh.delivered_bytes, d.len() as u64);
            }
        }
        while let Some(d) = to_fw1.pop_due(now) {
            if sa.send_to(&d, fw1).is_ok() {
                add(&sh.delivered, 1);
                add(&sh.delivered_bytes, d.len() as u64);
            }
        }
        let timeout = wait_for(
            [to_fw2.next_due(), to_fw1.next_due()],
            Instant::now(),
            Duration::from_millis(20),
        );
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("sync link: poll"),
        }
    }
    Ok(())
}

/// One direction of a stream relay: the connection we accepted from the
/// sender, the wire, and our connection to the receiver.
struct StreamDir {
    inbound: Option<TcpStream>,
    outbound: Option<TcpStream>,
    /// Where the outbound connection goes, and the address it comes from.
    to: SocketAddr,
    from_ip: SocketAddr,
    next_connect: Instant,
    wire: Wire,
    /// Arrived bytes not yet written to the receiver.
    pending: Vec<u8>,
}

impl StreamDir {
    fn connect(&mut self, now: Instant) {
        if self.outbound.is_some() || now < self.next_connect {
            return;
        }
        self.next_connect = now + CONNECT_RETRY;
        let attempt = || -> std::io::Result<TcpStream> {
            let domain = socket2::Domain::for_address(self.to);
            let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            s.bind(&SocketAddr::new(self.from_ip.ip(), 0).into())?;
            s.set_nonblocking(true)?;
            s.set_nodelay(true)?;
            match s.connect(&self.to.into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc_einprogress()) => {}
                Err(e) => return Err(e),
            }
            Ok(TcpStream::from_std(s.into()))
        };
        if let Ok(s) = attempt() {
            self.outbound = Some(s);
        }
    }

    /// Reads what the sender wrote, segment by segment, unless the wire is
    /// backed up.
    fn read(&mut self, now: Instant, sh: &Shared, buf: &mut [u8]) {
        let Some(s) = &mut self.inbound else { return };
        while self.wire.queued < self.wire.params.queue_limit {
            match s.read(&mut buf[..SEGMENT]) {
                Ok(0) => {
                    self.inbound = None;
                    return;
                }
                Ok(n) => self.wire.segment(now, buf[..n].to_vec(), sh),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.inbound = None;
                    return;
                }
            }
        }
    }

    /// Writes what has arrived to the receiver.
    fn write(&mut self, now: Instant, sh: &Shared) {
        while let Some(d) = self.wire.pop_due(now) {
            add(&sh.delivered, 1);
            add(&sh.delivered_bytes, d.len() as u64);
            self.pending.extend_from_slice(&d);
        }
        let Some(s) = &mut self.outbound else { return };
        while !self.pending.is_empty() {
            match s.write(&self.pending) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::NotConnected => break,
                Err(_) => {
                    // The receiver went away: what it had not read is lost
                    // with the connection, as it would be with a real one.
                    self.outbound = None;
                    self.pending.clear();
                    break;
                }
            }
        }
    }
}

fn libc_einprogress() -> i32 {
    115 // EINPROGRESS on Linux
}

fn stream_relay(
    sh: &Shared,
    params: LinkParams,
    listeners: [TcpListener; 2],
    relay: [SocketAddr; 2],
    fws: [SocketAddr; 2],
) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let [mut la, mut lb] = listeners;
    poll.registry()
        .register(&mut la, Token(0), Interest::READABLE)?;
    poll.registry()
        .register(&mut lb, Token(1), Interest::READABLE)?;
    let mut events = Events::with_capacity(16);
    let now = Instant::now();
    // dirs[0]: fw1 → fw2 (accepted on `a`, connected from `b`); dirs[1]:
    // fw2 → fw1.
    let mut dirs = [
        StreamDir {
            inbound: None,
            outbound: None,
            to: fws[1],
            from_ip: relay[1],
            next_connect: now,
            wire: Wire::new(params, 0xA5A5),
            pending: Vec::new(),
        },
        StreamDir {
            inbound: None,
            outbound: None,
            to: fws[0],
            from_ip: relay[0],
            next_connect: now,
            wire: Wire::new(params, 0x5A5A),
            pending: Vec::new(),
        },
    ];
    let mut buf = vec![0u8; 65536];
    let mut was_cut = false;
    while !sh.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let cut = sh.cut.load(Ordering::Acquire);
        if cut && !was_cut {
            was_cut = true;
            dirs[0].inbound = None;
            dirs[0].wire.discard_undelivered(now, sh);
            dirs[1].inbound = None;
            dirs[1].outbound = None;
            dirs[1]
                .wire
                .discard_undelivered(now - Duration::from_secs(3600), sh);
            dirs[1].pending.clear();
        }
        for (i, l) in [&la, &lb].into_iter().enumerate() {
            loop {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        // Only the firewall on that side; after the cut,
                        // fw1 is gone. Registered, so what the firewall
                        // writes is read at once, not at the next poll
                        // timeout (up to 5 ms later: longer than a small
                        // transfer lives, so the model lost young flows
                        // even without loss).
                        if peer.ip() == fws[i].ip() && !(cut && i == 0) {
                            let _ = s.set_nodelay(true);
                            poll.registry()
                                .register(&mut s, Token(2 + i), Interest::READABLE)?;
                            dirs[i].inbound = Some(s);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).context("sync link: accept"),
                }
            }
        }
        for (i, d) in dirs.iter_mut().enumerate() {
            if cut && i == 1 {
                continue;
            }
            d.connect(now);
            d.read(now, sh, &mut buf);
            d.write(Instant::now(), sh);
        }
        let busy = dirs.iter().any(|d| !d.pending.is_empty());
        let cap = if busy {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(5)
        };
        let timeout = wait_for(
            [dirs[0].wire.next_due(), dirs[1].wire.next_due()],
            Instant::now(),
            cap,
        );
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("sync link: poll"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(loss: f64) -> LinkParams {
        LinkParams {
            loss,
            seed: 7,
            ..LinkParams::default()
        }
    }

    #[test]
    fn datagram_loss_follows_the_seed_and_the_rate() {
        let sh = Shared::default();
        let now = Instant::now();
        let run = |seed| {
            let mut w = Wire::new(
                LinkParams {
                    seed,
                    ..params(0.2)
                },
                1,
            );
            for _ in 0..10_000 {
                w.datagram(now, vec![0; 100], &sh);
            }
            w.queue.len()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same losses");
        assert!((7_700..8_300).contains(&a), "about 20% lost: {a} kept");
    }

    #[test]
    fn bandwidth_spaces_datagrams_and_delay_shifts_them() {
        let sh = Shared::default();
        let mut w = Wire::new(
            LinkParams {
                bandwidth_bps: 100_000_000,
                delay: Duration::from_millis(5),
                ..params(0.0)
            },
            1,
        );
        // After the wire was made: it is idle from its creation on.
        let now = Instant::now();
        for _ in 0..10 {
            w.datagram(now, vec![0; 1234], &sh);
        }
        // (1234 + 28 + 38) bytes at 100 Mbit/s: 104 µs each.
        let last = w.queue.back().unwrap().0 - now;
        assert_eq!(last, Duration::from_micros(5_000 + 10 * 104));
        assert!(w.pop_due(now).is_none(), "nothing arrives before the delay");
    }

    #[test]
    fn a_full_queue_drops_at_the_tail() {
        let sh = Shared::default();
        let now = Instant::now();
        let mut w = Wire::new(
            LinkParams {
                queue_limit: 1000,
                ..params(0.0)
            },
            1,
        );
        for _ in 0..5 {
            w.datagram(now, vec![0; 300], &sh);
        }
        assert_eq!(w.queue.len(), 3);
        assert_eq!(sh.queue_drops.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn stream_segments_arrive_in_order_behind_a_lost_one() {
        let sh = Shared::default();
        let now = Instant::now();
        let mut w = Wire::new(params(0.3), 3);
        for _ in 0..2_000 {
            w.segment(now, vec![0; 100], &sh);
        }
        let due: Vec<Instant> = w.queue.iter().map(|(t, _)| *t).collect();
        assert!(due.windows(2).all(|p| p[0] <= p[1]), "in order");
        let rx = sh.retransmissions.load(Ordering::Relaxed);
        assert!(rx > 400, "about 30% of transmissions lost: {rx}");
        // Some segment was lost twice: everything after it waited for a
        // retransmission timeout.
        assert!(*due.last().unwrap() - now >= MIN_RTO);
    }

    #[test]
    fn the_cut_discards_what_has_not_arrived() {
        let sh = Shared::default();
        let now = Instant::now();
        let mut w = Wire::new(
            LinkParams {
                delay: Duration::from_millis(50),
                ..params(0.0)
            },
            1,
        );
        w.datagram(now, vec![1; 10], &sh);
        w.discard_undelivered(now, &sh);
        assert!(w.queue.is_empty());
        assert_eq!(sh.discarded_at_cut.load(Ordering::Relaxed), 1);
    }
}
