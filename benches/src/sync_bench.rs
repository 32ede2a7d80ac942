//! `ftfw-lab bench sync`: the replication path on one core.
//!
//! A sender thread (the measured core) runs the real
//! `Engine<WireCodec>` the way the sync core will: it takes flow deltas
//! (IPv4 TCP ESTABLISHED state updates, as `Delta::state()` produces them),
//! lets the engine coalesce, encode and batch them into MTU datagrams, sends
//! those over loopback UDP, and feeds the peer's ACKs back. A receiver
//! thread runs a second engine that decodes everything, acknowledges it (so
//! the sender's resend queue drains as on a real link) and records what it
//! applied.
//!
//! Phases:
//! 1. warm-up (not timed): a bulk of every flow as NEW, as at startup or
//!    after a RESYNC, until the receiver has acknowledged all of it; this
//!    also completes the HELLO handshake;
//! 2. timed: for `duration`, bursts of UPDATE deltas round-robin over the
//!    flows (each pass over the flows changes their timeout), every burst
//!    followed by as many datagrams as the engine has ready;
//! 3. drain (not timed): no more deltas; runs until the sender's queues and
//!    resend queue are empty, then compares the receiver's final state of
//!    every flow with the last state pushed for it.
//!
//! When the sender's engine asks for a re-export (a queue overflowed), the
//! sender feeds every flow's current state again with `push_bulk`, as the
//! sync core does, in any phase; the report counts these `reexports`.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ftfw_control::keyring::Keyring;
use ftfw_control::replication::auth::{self, SyncAuth};
use ftfw_dataplane::conntrack::{Delta, DeltaKind};
use ftfw_dataplane::flow::{proto, status, FlowKey, TcpState, Tuple};
use ftfw_dataplane::port::datagram::{
    recv_batch, send_batch, set_coalesced_receive, DatagramBatch, RecvBatch, Segmentation,
    SYSCALL_BATCH,
};
use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::{Engine, EngineConfig, EngineStats, Event, FlowKind};
use ftfw_sync::wire::{EncodeOptions, MarkPolicy};

/// UDP payload a 1GbE link carries per second (957 Mb/s: 1500-byte frames
/// less Ethernet framing, IPv4 and UDP headers).
pub const GOODPUT_1G_BITS: f64 = 957e6;

/// Most flows the bench can name (the flow index is the low 24 bits of the
/// source address).
pub const MAX_FLOWS: u64 = 1 << 24;

/// Benchmark knobs.
#[derive(Debug, Clone)]
pub struct SyncOpts {
    /// Distinct flows.
    pub flows: u64,
    /// Length of the timed phase.
    pub duration: Duration,
    /// Deltas taken per sender iteration (one "drain of the delta rings").
    pub burst: usize,
    /// Link MTU.
    pub mtu: usize,
    /// Engine flush delay for partial datagrams.
    pub flush_delay: Duration,
    /// Alive/ACK timer of both engines (short, so the drain is quick).
    pub alive_interval: Duration,
    /// `TCPWindowTracking on` (adds TCP_WSCALE_ORIG/REPL, 16 bytes a message).
    pub window_tracking: bool,
    /// Send MARK in every message (as for ctnetlink-made flows, 8 bytes).
    pub mark_always: bool,
    /// Flows the commit benchmark imports (0 skips it).
    pub commit_flows: u64,
    /// Give up the drain after this long.
    pub drain_timeout: Duration,
    /// Authenticated replication (`[sync] psk`): every datagram sealed
    /// and opened with ftfwd's AES-256-GCM envelope and replay
    /// window, both ways.
    pub authenticated: bool,
    /// `[sync] udp_offload` (ftfwd's default): the sender's runs of
    /// equal-sized datagrams go out as segmented (GSO) sends and the
    /// receiver takes coalesced (GRO) reads, as the sync thread does.
    pub udp_offload: bool,
}

impl Default for SyncOpts {
    fn default() -> Self {
        SyncOpts {
            flows: 1_000_000,
            duration: Duration::from_secs(3),
            burst: 512,
            mtu: 1500,
            authenticated: false,
            udp_offload: true,
            flush_delay: EngineConfig::default().flush_delay,
            alive_interval: Duration::from_millis(100),
            window_tracking: false,
            mark_always: false,
            commit_flows: 1_000_000,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    /// Distinct flows.
    pub flows: u64,
    /// Seconds the timed phase ran.
    pub duration_secs: f64,
    /// Link MTU.
    pub mtu: usize,
    /// Datagrams sealed and opened (`[sync] psk`).
    pub authenticated: bool,
    /// Segmented sends and coalesced reads (`[sync] udp_offload`); false
    /// also when the kernel refused segmentation during the run.
    pub udp_offload: bool,
    /// Datagrams the receiver got per read (whole run; above 1 only with
    /// coalesced reads).
    pub datagrams_per_read: f64,
    /// Messages sent per second in the timed phase (sender, wall clock).
    pub msgs_per_sec: f64,
    /// Messages sent per second of the sender thread's CPU time.
    pub msgs_per_cpu_sec: f64,
    /// Share of the timed phase the sender thread was on a CPU.
    pub sender_cpu_share: f64,
    /// Deltas pushed per second in the timed phase.
    pub deltas_per_sec: f64,
    /// Datagram payload bytes per message (timed phase).
    pub bytes_per_msg: f64,
    /// Payload bytes per datagram / (MTU - 28) (timed phase).
    pub datagram_fill: f64,
    /// Datagrams sent per second (timed phase).
    pub datagrams_per_sec: f64,
    /// `msgs_per_sec * bytes_per_msg * 8 / 957e6`: the share of 1GbE UDP
    /// goodput this rate needs (>= 1: the sync core can fill the link).
    pub link_utilization_1g: f64,
    /// Messages per second in the warm-up bulk (wall clock).
    pub bulk_msgs_per_sec: f64,
    /// Deltas pushed in the timed phase.
    pub deltas: u64,
    /// Deltas merged into a message already pending (`deltas` minus the
    /// flow messages they became).
    pub coalesced: u64,
    /// Messages the sender sent over the whole run (data and control).
    pub msgs_sent: u64,
    /// Messages the receiver decoded over the whole run.
    pub msgs_received: u64,
    /// Flow messages the receiver applied.
    pub flow_msgs_applied: u64,
    /// Distinct flows the receiver applied at least once.
    pub distinct_flows_received: u64,
    /// Flows whose final state at the receiver differs from the last state
    /// pushed at the sender (0 when replication converged).
    pub final_state_mismatches: u64,
    /// Most messages for one flow sent in one flush interval (aligned
    /// windows of `flush_delay`, by the time the sender built the datagram).
    pub max_msgs_per_flow_per_flush: u64,
    /// Most messages for one flow in one datagram.
    pub max_msgs_per_flow_per_datagram: u64,
    /// Whether the drain completed (everything acknowledged).
    pub drained: bool,
    /// Full re-exports the sender ran because the engine asked for one
    /// (a queue overflowed; the re-exported messages count as sent).
    pub reexports: u64,
    /// Sender counters at the end.
    pub sender: EngineStatsReport,
    /// Receiver counters at the end.
    pub receiver: EngineStatsReport,
    /// Flows the commit benchmark imported (0: skipped).
    pub commit_flows: u64,
    /// Seconds the commit took.
    pub commit_secs: f64,
    /// Flows committed per second (`bench commit`, one worker).
    pub commit_flows_per_sec: f64,
}

/// The engine counters the report carries.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct EngineStatsReport {
    /// Messages sent.
    pub msgs_out: u64,
    /// Messages received.
    pub msgs_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Retransmitted messages.
    pub retransmitted: u64,
    /// Peer sequence numbers found missing.
    pub lost: u64,
    /// Malformed messages received.
    pub malformed: u64,
    /// NACKs received.
    pub nacks_in: u64,
    /// ACKs received.
    pub acks_in: u64,
    /// Deltas dropped: transmit queue full.
    pub tx_overflow: u64,
    /// Resend entries dropped: resend queue full.
    pub resend_overflow: u64,
    /// Control messages dropped: control queue full.
    pub ctl_overflow: u64,
    /// Events dropped: event queue full.
    pub event_overflow: u64,
    /// Messages that could not be encoded.
    pub encode_errors: u64,
    /// Resend queue depth at the end.
    pub resend_queue_depth: usize,
}

impl From<EngineStats> for EngineStatsReport {
    fn from(s: EngineStats) -> Self {
        EngineStatsReport {
            msgs_out: s.msgs_out,
            msgs_in: s.msgs_in,
            datagrams_out: s.datagrams_out,
            datagrams_in: s.datagrams_in,
            retransmitted: s.retransmitted,
            lost: s.lost,
            malformed: s.malformed + s.malformed_payload,
            nacks_in: s.nacks_in,
            acks_in: s.acks_in,
            tx_overflow: s.tx_overflow,
            resend_overflow: s.resend_overflow,
            ctl_overflow: s.ctl_overflow,
            event_overflow: s.event_overflow,
            encode_errors: s.encode_errors,
            resend_queue_depth: s.resend_queue_depth,
        }
    }
}

/// The key of flow `i`: 10.x.y.z (z..x = the low 24 bits of `i`) port
/// 40000 to 192.0.2.1 port 443, TCP.
pub fn flow_key(i: u32) -> FlowKey {
    let [_, a, b, c] = i.to_be_bytes();
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[10, a, b, c]);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&[192, 0, 2, 1]);
    // What `Tuple::new` builds for these IPv4 addresses, without going
    // through `IpAddr` (this runs on the measured core for every delta).
    FlowKey {
        orig: Tuple {
            src,
            dst,
            src_port: 40000,
            dst_port: 443,
            proto: proto::TCP,
            v6: false,
        },
        zone: 0,
    }
}

/// The flow index [`flow_key`] encoded, if `k` is one of ours.
pub fn flow_index(k: &FlowKey) -> Option<u32> {
    let s = &k.orig.src;
    (s[0] == 10 && !k.orig.v6).then(|| u32::from_be_bytes([0, s[1], s[2], s[3]]))
}

/// The timeout that names `round` (what the receiver checks).
fn timeout_of(round: u32) -> u32 {
    432_000u32.wrapping_sub(round)
}

/// The delta the dataplane would produce for flow `i` in pass `round`.
fn delta(i: u32, round: u32, kind: DeltaKind) -> Delta {
    Delta {
        kind,
        key: flow_key(i),
        tcp_state: TcpState::Established,
        status: status::SEEN_REPLY | status::ASSURED | status::CONFIRMED,
        timeout_secs: timeout_of(round),
        mark: 0,
        wscale: [7, 7],
        extras: None,
    }
}

fn engine_config(o: &SyncOpts) -> EngineConfig {
    EngineConfig {
        mtu: o.mtu - if o.authenticated { auth::OVERHEAD } else { 0 },
        alive_interval: o.alive_interval,
        flush_delay: o.flush_delay,
        ..EngineConfig::default()
    }
}

fn codec(o: &SyncOpts) -> WireCodec {
    WireCodec::new(EncodeOptions {
        tcp_window_tracking: o.window_tracking,
        commit_timeout: false,
        mark: if o.mark_always {
            MarkPolicy::Always
        } else {
            MarkPolicy::NonZero
        },
    })
}

/// CPU time of the calling thread, from /proc (0 where unavailable).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Send times of datagrams, shared by the two threads: slot `seq & MASK`
/// holds when the datagram whose first message has sequence number `seq`
/// was built (nanoseconds since the common base, plus 1; 0 = unknown). The
/// receiver reads the first message's `seq` from the datagram's header to
/// attribute each message to its send time, so the per-flush-interval count
/// measures the sender, not the receiver's scheduling.
struct SendClock {
    base: Instant,
    slots: Vec<AtomicU64>,
}

impl SendClock {
    const MASK: u32 = (1 << 20) - 1;

    fn new(base: Instant) -> SendClock {
        SendClock {
            base,
            slots: (0..=Self::MASK).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn record(&self, seq: u32, t: Instant) {
        self.slots[(seq & Self::MASK) as usize].store(self.nanos(t) + 1, Ordering::Release);
    }

    /// When the datagram was built, or `fallback` if unknown.
    fn sent_at(&self, datagram: &[u8], fallback: Instant) -> u64 {
        let seq = datagram
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes);
        match seq.map(|s| self.slots[(s & Self::MASK) as usize].load(Ordering::Acquire)) {
            Some(t) if t > 0 => t - 1,
            _ => self.nanos(fallback),
        }
    }
}

/// How long the receiver blocks for a datagram before running its timers.
const RX_POLL: Duration = Duration::from_micros(200);

/// Socket buffer size asked for on both sockets (the kernel caps it at
/// `net.core.rmem_max` / `wmem_max`): room for a scheduling hiccup of the
/// receiver at full rate (about 40,000 messages), so the bench measures the
/// engines rather than loopback drops; but well below what the sender's
/// resend queue (131,072 messages) covers: with more unacknowledged
/// messages than that queued in the kernel, the resend queue overflows and
/// only a re-export could repair the peer (this bench does none).
const SOCK_BUF: usize = 2 << 20;

/// The two ends' names in the key derivation (both sockets are on
/// 127.0.0.1; ftfwd uses each node's address on the sync link).
const SENDER_NAME: [u8; 4] = [192, 0, 2, 1];
const RECEIVER_NAME: [u8; 4] = [192, 0, 2, 2];

/// One end's sealing (`None`: plain datagrams).
struct Seal {
    auth: Option<SyncAuth>,
    peer: std::net::IpAddr,
    buf: Vec<u8>,
}

impl Seal {
    fn new(o: &SyncOpts, me: [u8; 4], peer: [u8; 4]) -> Seal {
        let keys = Keyring::single(1, (0u8..32).collect()).expect("a 32-byte key");
        Seal {
            auth: o
                .authenticated
                .then(|| SyncAuth::new(keys, Ipv4Addr::from(me).into(), auth::unix_micros())),
            peer: Ipv4Addr::from(peer).into(),
            buf: Vec::with_capacity(o.mtu),
        }
    }

    /// What goes on the wire for `d`.
    fn seal<'a>(&'a mut self, d: &'a [u8]) -> &'a [u8] {
        match &mut self.auth {
            Some(a) => {
                a.seal(d, auth::unix_micros(), &mut self.buf);
                &self.buf
            }
            None => d,
        }
    }

    /// The plain length of the datagram in `buf` (moved to its front), or
    /// `None` when it does not open.
    fn open(&mut self, buf: &mut [u8]) -> Option<usize> {
        match &mut self.auth {
            Some(a) => a.open(self.peer, buf),
            None => Some(buf.len()),
        }
    }
}

/// A loopback UDP socket with large buffers.
fn udp_socket() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_recv_buffer_size(SOCK_BUF)?;
    s.set_send_buffer_size(SOCK_BUF)?;
    s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    Ok(s.into())
}

/// What the receiver thread saw.
struct RxResult {
    stats: EngineStats,
    applied: u64,
    distinct: u64,
    /// Final round per flow (`u32::MAX`: never applied).
    last_round: Vec<u32>,
    max_per_flush: u64,
    max_per_datagram: u64,
    reads: u64,
}

fn receiver(
    opts: &SyncOpts,
    sock: UdpSocket,
    stop: &AtomicBool,
    clock: &SendClock,
) -> std::io::Result<RxResult> {
    let n = usize::try_from(opts.flows).unwrap_or(0);
    let mut eng = Engine::new(engine_config(opts), codec(opts), Instant::now());
    // What the receiver tracks per flow, in one place: one cache miss per
    // message at a million flows rather than three.
    #[derive(Clone, Copy)]
    struct Seen {
        /// Final round (`u32::MAX`: never applied).
        round: u32,
        /// The flush window of its last message and how many it got in it.
        window: u32,
        in_window: u8,
        /// Datagram of its last message.
        dgram: u64,
    }
    let mut seen = vec![
        Seen {
            round: u32::MAX,
            window: u32::MAX,
            in_window: 0,
            dgram: u64::MAX,
        };
        n
    ];
    let flush_ns = opts.flush_delay.as_nanos().max(1);
    let (mut applied, mut distinct, mut max_flush, mut max_dgram) = (0u64, 0u64, 0u64, 0u64);
    // As the sync thread: with coalesced reads, slots that hold the
    // largest one.
    let mut rbatch = if opts.udp_offload {
        set_coalesced_receive(sock.as_fd(), true)?;
        RecvBatch::new(SYSCALL_BATCH, 65_536)
    } else {
        RecvBatch::new(SYSCALL_BATCH, opts.mtu)
    };
    let mut reads = 0u64;
    let mut tbuf = Vec::with_capacity(opts.mtu);
    let mut dgram = 0u64;
    let mut seal = Seal::new(opts, RECEIVER_NAME, SENDER_NAME);
    // A fixed short timeout, set once: the receiver's timers (ACK window
    // flushes, alive) need no finer resolution, and a setsockopt per
    // datagram was a good part of the receiver's time.
    sock.set_read_timeout(Some(RX_POLL))?;
    while !stop.load(Ordering::Relaxed) {
        match recv_batch(sock.as_fd(), &mut rbatch, SYSCALL_BATCH) {
            Ok(got) => {
                reads += rbatch.reads() as u64;
                for k in 0..got {
                    let Some((rbuf, _)) = rbatch.get_mut(k) else {
                        continue;
                    };
                    let Some(len) = seal.open(rbuf) else {
                        continue;
                    };
                    let now = Instant::now();
                    dgram += 1;
                    let sent = u128::from(clock.sent_at(&rbuf[..len], now));
                    let w = u32::try_from(sent / flush_ns).unwrap_or(u32::MAX);
                    eng.handle_datagram(now, &rbuf[..len]);
                    while let Some(ev) = eng.poll_event() {
                        let Event::Apply { state, .. } = ev else {
                            continue;
                        };
                        applied += 1;
                        let Some(i) = flow_index(&state.key)
                            .map(|i| i as usize)
                            .filter(|&i| i < n)
                        else {
                            continue;
                        };
                        let f = &mut seen[i];
                        if f.round == u32::MAX {
                            distinct += 1;
                        }
                        f.round = 432_000u32.wrapping_sub(state.timeout_secs);
                        if f.window == w {
                            f.in_window = f.in_window.saturating_add(1);
                        } else {
                            (f.window, f.in_window) = (w, 1);
                        }
                        max_flush = max_flush.max(u64::from(f.in_window));
                        let per_dgram = if f.dgram == dgram { 2 } else { 1 };
                        f.dgram = dgram;
                        max_dgram = max_dgram.max(per_dgram);
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if eng.poll_timeout().is_some_and(|t| now >= t) {
            eng.handle_timeout(now);
        }
        while eng.poll_transmit(now, &mut tbuf) {
            sock.send(seal.seal(&tbuf))?;
        }
    }
    Ok(RxResult {
        stats: eng.stats(),
        applied,
        distinct,
        last_round: seen.iter().map(|f| f.round).collect(),
        max_per_flush: max_flush,
        max_per_datagram: max_dgram,
        reads,
    })
}

/// The measured side: one engine, one socket, one thread.
struct Sender {
    eng: Engine<WireCodec>,
    clock: Arc<SendClock>,
    sock: UdpSocket,
    buf: Vec<u8>,
    /// The datagrams of one pump, sealed, sent with `sendmmsg`.
    out: DatagramBatch,
    rbatch: RecvBatch,
    seal: Seal,
    /// Segmented sends (`udp_offload`), off for good if refused.
    seg: Segmentation,
    burst: usize,
    /// Round of the last delta pushed per flow.
    last_pushed: Vec<u32>,
    /// Next flow of a running re-export.
    export: Option<u32>,
    /// Re-exports started.
    reexports: u64,
}

impl Sender {
    /// Sends every datagram the engine has ready, takes every ACK waiting,
    /// and runs the timers.
    fn pump(&mut self, now: Instant) -> std::io::Result<()> {
        // As the sync thread does: everything the engine has ready, then
        // one `sendmmsg` per SYSCALL_BATCH datagrams.
        self.out.clear();
        loop {
            let seq = self.eng.seq_out();
            if !self.eng.poll_transmit(now, &mut self.buf) {
                break;
            }
            self.clock.record(seq, now);
            self.out.push(self.seal.seal(&self.buf));
        }
        let mut from = 0;
        while from < self.out.len() {
            match send_batch(self.sock.as_fd(), None, &self.out, from, &mut self.seg) {
                Ok(n) => from += n,
                // The kernel dropped it for us: the peer NACKs the gap.
                Err(e) if e.kind() == ErrorKind::WouldBlock => from += 1,
                Err(e) => return Err(e),
            }
        }
        loop {
            match recv_batch(self.sock.as_fd(), &mut self.rbatch, SYSCALL_BATCH) {
                Ok(got) => {
                    for k in 0..got {
                        let Some((d, _)) = self.rbatch.get_mut(k) else {
                            continue;
                        };
                        if let Some(len) = self.seal.open(d) {
                            self.eng.handle_datagram(now, &d[..len]);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                Err(e) => return Err(e),
            }
        }
        if self.eng.poll_timeout().is_some_and(|t| now >= t) {
            self.eng.handle_timeout(now);
        }
        self.feed_export(now);
        Ok(())
    }

    /// What the sync core does when the engine asks for a re-export (a
    /// queue overflowed, e.g. the resend queue while the receiver was off
    /// its CPU for longer than the queue covers): every flow's current
    /// state again, fed with `push_bulk` as the transmit queue has room.
    fn feed_export(&mut self, now: Instant) {
        if self.eng.take_needs_reexport() {
            self.export = Some(0);
            self.reexports += 1;
        }
        let Some(from) = self.export else {
            return;
        };
        let n = u32::try_from(self.last_pushed.len()).unwrap_or(u32::MAX);
        let room = u32::try_from(self.eng.tx_space().min(self.burst)).unwrap_or(0);
        let to = from.saturating_add(room).min(n);
        let pushed = &self.last_pushed;
        let took = self.eng.push_bulk(
            now,
            (from..to).map(|i| delta(i, pushed[i as usize], DeltaKind::Created).state()),
        );
        let next = from + u32::try_from(took).unwrap_or(0);
        self.export = (next < n).then_some(next);
    }

    /// Pumps until everything sent is acknowledged, or `timeout`.
    fn drain(&mut self, timeout: Duration) -> std::io::Result<bool> {
        let end = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            self.pump(now)?;
            let s = self.eng.stats();
            if s.resend_queue_depth == 0
                && s.tx_queue_depth == 0
                && s.ctl_queue_depth == 0
                && self.export.is_none()
            {
                return Ok(true);
            }
            if now >= end {
                return Ok(false);
            }
            thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Runs the benchmark (see the module docs).
pub fn run_sync(opts: &SyncOpts) -> anyhow::Result<SyncReport> {
    anyhow::ensure!(
        (1..=MAX_FLOWS).contains(&opts.flows),
        "flows must be between 1 and {MAX_FLOWS}"
    );
    let n = u32::try_from(opts.flows)?;
    let tx = udp_socket()?;
    let rx = udp_socket()?;
    let (tx_addr, rx_addr): (SocketAddr, SocketAddr) = (tx.local_addr()?, rx.local_addr()?);
    tx.connect(rx_addr)?;
    rx.connect(tx_addr)?;
    tx.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let clock = Arc::new(SendClock::new(Instant::now()));
    let rx_thread = {
        let (opts, stop, clock) = (opts.clone(), stop.clone(), clock.clone());
        thread::Builder::new()
            .name("sync-bench-rx".into())
            .spawn(move || receiver(&opts, rx, &stop, &clock))?
    };
    let result = sender(opts, n, tx, clock);
    stop.store(true, Ordering::Relaxed);
    let rxr = rx_thread
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    let mut r = result?;
    let mismatches = r
        .last_pushed
        .iter()
        .zip(&rxr.last_round)
        .filter(|(a, b)| a != b)
        .count() as u64;
    let (commit_secs, commit_fps, commit_flows) = if opts.commit_flows > 0 {
        let c = crate::bench::run_commit(opts.commit_flows, 1)?;
        (c.secs, c.commit_flows_per_sec, c.flows)
    } else {
        (0.0, 0.0, 0)
    };
    r.report.msgs_received = rxr.stats.msgs_in;
    r.report.flow_msgs_applied = rxr.applied;
    r.report.distinct_flows_received = rxr.distinct;
    r.report.final_state_mismatches = mismatches;
    r.report.max_msgs_per_flow_per_flush = rxr.max_per_flush;
    r.report.max_msgs_per_flow_per_datagram = rxr.max_per_datagram;
    r.report.receiver = rxr.stats.into();
    r.report.datagrams_per_read = rxr.stats.datagrams_in as f64 / rxr.reads.max(1) as f64;
    r.report.commit_flows = commit_flows;
    r.report.commit_secs = commit_secs;
    r.report.commit_flows_per_sec = commit_fps;
    Ok(r.report)
}

struct SenderResult {
    report: SyncReport,
    last_pushed: Vec<u32>,
}

fn sender(
    opts: &SyncOpts,
    n: u32,
    sock: UdpSocket,
    clock: Arc<SendClock>,
) -> anyhow::Result<SenderResult> {
    let mut s = Sender {
        eng: Engine::new(engine_config(opts), codec(opts), Instant::now()),
        clock,
        sock,
        buf: Vec::with_capacity(opts.mtu),
        out: DatagramBatch::with_capacity(SYSCALL_BATCH, opts.mtu),
        rbatch: RecvBatch::new(SYSCALL_BATCH, opts.mtu),
        seal: Seal::new(opts, SENDER_NAME, RECEIVER_NAME),
        seg: Segmentation::when(opts.udp_offload),
        burst: opts.burst,
        last_pushed: vec![0u32; n as usize],
        export: None,
        reexports: 0,
    };

    // 1. Warm-up: the startup bulk, every flow as NEW (round 0).
    let t_bulk = Instant::now();
    let mut bulk = (0..n).map(|i| delta(i, 0, DeltaKind::Created).state());
    loop {
        let now = Instant::now();
        let room = s.eng.tx_space().min(opts.burst);
        let took = s.eng.push_bulk(now, bulk.by_ref().take(room));
        s.pump(now)?;
        if took < room {
            break;
        }
    }
    let warm = s.drain(opts.drain_timeout)?;
    anyhow::ensure!(
        warm,
        "warm-up bulk was not acknowledged within the drain timeout"
    );
    let bulk_msgs = s.eng.stats().msgs_out;
    let bulk_secs = t_bulk.elapsed().as_secs_f64();

    // 2. Timed: bursts of UPDATE deltas, round-robin over the flows.
    let before = s.eng.stats();
    let (mut next, mut round, mut deltas) = (0u32, 1u32, 0u64);
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    let end = t0 + opts.duration;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let room = s.eng.tx_space().min(opts.burst);
        for _ in 0..room {
            let d = delta(next, round, DeltaKind::Updated);
            s.eng.push_delta(now, FlowKind::Update, d.state());
            s.last_pushed[next as usize] = round;
            deltas += 1;
            next += 1;
            if next == n {
                next = 0;
                round += 1;
            }
        }
        s.pump(now)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_secs_f64();
    let after = s.eng.stats();

    // 3. Drain.
    let drained = s.drain(opts.drain_timeout)?;
    let end_stats = s.eng.stats();

    let msgs = after.msgs_out - before.msgs_out;
    let bytes = after.bytes_out - before.bytes_out;
    let dgrams = after.datagrams_out - before.datagrams_out;
    let limit = opts.mtu.saturating_sub(28) as f64;
    let msgs_per_sec = msgs as f64 / secs;
    let bytes_per_msg = if msgs > 0 {
        bytes as f64 / msgs as f64
    } else {
        0.0
    };
    let report = SyncReport {
        flows: opts.flows,
        duration_secs: secs,
        mtu: opts.mtu,
        authenticated: opts.authenticated,
        udp_offload: s.seg == Segmentation::On,
        datagrams_per_read: 0.0,
        msgs_per_sec,
        msgs_per_cpu_sec: if cpu > 0.0 { msgs as f64 / cpu } else { 0.0 },
        sender_cpu_share: cpu / secs,
        deltas_per_sec: deltas as f64 / secs,
        bytes_per_msg,
        datagram_fill: if dgrams > 0 {
            bytes as f64 / dgrams as f64 / limit
        } else {
            0.0
        },
        datagrams_per_sec: dgrams as f64 / secs,
        link_utilization_1g: msgs_per_sec * bytes_per_msg * 8.0 / GOODPUT_1G_BITS,
        bulk_msgs_per_sec: bulk_msgs as f64 / bulk_secs,
        deltas,
        coalesced: deltas.saturating_sub(msgs),
        msgs_sent: end_stats.msgs_out,
        msgs_received: 0,
        flow_msgs_applied: 0,
        distinct_flows_received: 0,
        final_state_mismatches: 0,
        max_msgs_per_flow_per_flush: 0,
        max_msgs_per_flow_per_datagram: 0,
        drained,
        reexports: s.reexports,
        sender: end_stats.into(),
        receiver: EngineStatsReport::default(),
        commit_flows: 0,
        commit_secs: 0.0,
        commit_flows_per_sec: 0.0,
    };
    Ok(SenderResult {
        report,
        last_pushed: s.last_pushed,
    })
}

/// The human-readable report.
pub fn render(r: &SyncReport) -> String {
    format!(
        "sync bench: {} flows, {:.1} s, MTU {}, UDP offload {} ({:.1} datagrams per read)\n\
         \x20 sent        {:>12.0} msgs/s ({:.0} per CPU-second, sender on CPU {:.0} %)\n\
         \x20 bytes/msg   {:>12.1}   datagram fill {:.1} %   {:.0} datagrams/s\n\
         \x20 1GbE goodput share {:.2}\n\
         \x20 bulk        {:>12.0} msgs/s\n\
         \x20 deltas {} (coalesced {}), sent {} msgs, received {}, applied {} ({} distinct flows), final-state mismatches {}\n\
         \x20 max msgs per flow per flush interval {}, per datagram {}\n\
         \x20 sender: retransmitted {} tx_overflow {} resend_overflow {} ctl_overflow {} nacks_in {} re-exports {}; receiver: lost {} malformed {}\n\
         \x20 commit {} flows in {:.3} s: {:.0} flows/s\n",
        r.flows,
        r.duration_secs,
        r.mtu,
        if r.udp_offload { "on" } else { "off" },
        r.datagrams_per_read,
        r.msgs_per_sec,
        r.msgs_per_cpu_sec,
        r.sender_cpu_share * 100.0,
        r.bytes_per_msg,
        r.datagram_fill * 100.0,
        r.datagrams_per_sec,
        r.link_utilization_1g,
        r.bulk_msgs_per_sec,
        r.deltas,
        r.coalesced,
        r.msgs_sent,
        r.msgs_received,
        r.flow_msgs_applied,
        r.distinct_flows_received,
        r.final_state_mismatches,
        r.max_msgs_per_flow_per_flush,
        r.max_msgs_per_flow_per_datagram,
        r.sender.retransmitted,
        r.sender.tx_overflow,
        r.sender.resend_overflow,
        r.sender.ctl_overflow,
        r.sender.nacks_in,
        r.reexports,
        r.receiver.lost,
        r.receiver.malformed,
        r.commit_flows,
        r.commit_secs,
        r.commit_flows_per_sec,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_keys_are_what_tuple_new_builds_and_index_back() {
        for i in [0u32, 1, 255, 256, 65_535, 1 << 23, (1 << 24) - 1] {
            let k = flow_key(i);
            let t = Tuple::new(
                Ipv4Addr::from(0x0a00_0000 | i).into(),
                Ipv4Addr::new(192, 0, 2, 1).into(),
                proto::TCP,
                40000,
                443,
            );
            assert_eq!(k.orig, t);
            assert_eq!(flow_index(&k), Some(i));
        }
    }
}
