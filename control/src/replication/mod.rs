//! State replication: the sync thread that runs FT-FW on the dedicated link.
//! (`[sync] transport` may instead pick best effort over the same UDP
//! link, or best effort over TCP connections, see `tcp.rs`.)
//!
//! Layer: between the workers (which produce state deltas into bounded
//! rings) and the peers (conntrackd 1.4.7 or other ftfwd nodes). The
//! thread owns the sync link's sockets and one [`peer::PeerChannel`] per
//! peer: its protocol engine ([`ftfw_sync::engine::Engine`] with the
//! conntrackd wire codec, so its own sequence space, ACK/NACK, resend
//! queue, HELLO and RESYNC), its external cache, when it was last heard
//! and the exports queued for it. The control thread talks to it only
//! through [`SyncHandle`].
//!
//! Pair and cluster:
//! - A classic pair (no `[cluster]`, `SyncConfig::peers` empty) has one
//!   channel over the configured link (unicast, multicast or TCP), exactly
//!   conntrackd 1.4.7's protocol.
//! - A cluster (`[cluster]`: `peers` lists every other member) has one
//!   channel per peer over one UDP socket bound to `local:port`; each
//!   datagram goes to the channel of its source address, and datagrams
//!   from any other address are counted as foreign and dropped. Our
//!   datagrams to a peer go to its address at the same port. Each delta is
//!   decided once (sync level, lazy replication) and pushed to every
//!   channel, or, with a replica map ([`SyncHandle::set_replica_map`]),
//!   to the peers that back up the flow's bucket. A RESYNC from a peer, an
//!   overflow of its engine's queues, a HELLO of a restarted peer are
//!   handled on its channel alone: a re-export goes to that peer only. A
//!   peer's cache holds the flows that came from that node; commit, list
//!   and flush act on all of them, and the bucket requests of `cluster.rs`
//!   on some (`commit_buckets`, `flush_buckets`/`flush_acked`,
//!   `evict_buckets`, `prune_external`). Defer waits for every peer that
//!   is up (see `defer.rs`). Each peer's cache is bounded by
//!   `external_capacity` on its own, and each engine's queues as in a
//!   pair; bucket exports queued per peer are bounded (`peer.rs`), flush
//!   tokens too (`cluster.rs`).
//!
//! One iteration (bounded work each, so no source can starve another):
//! 1. serve at most [`REQUESTS_PER_ITERATION`] console requests;
//! 2. read at most [`RECV_BUDGET`] datagrams into their channels' engines,
//!    each datagram's events delivered (5.) before the next is read;
//! 3. move at most [`DELTA_BUDGET`] deltas from each worker's ring into the
//!    engines, as long as every transmit queue has room (a full ring is
//!    counted by the worker and repaired by a re-export of that shard to
//!    every peer);
//! 4. feed each channel's running export (RESYNC answer, re-export, bucket
//!    flush) chunk by chunk;
//! 5. apply received flows to their channel's external cache, or inject
//!    them into the owning shard (direct mode), without emitting deltas;
//! 6. run the engines' timers and send what they have, at most
//!    [`SEND_BUDGET`] datagrams per channel.
//!
//! When an iteration finds nothing to do the thread yields a few times and
//! then sleeps on the socket until the engines' next deadline, at most
//! [`IDLE_SLEEP`]: the poll-mode workers never wake it, so this bounds the
//! latency from a delta to its datagram when the link is quiet (mio's
//! poll rounds it up to a whole millisecond). A sleep shorter than
//! [`IDLE_SLEEP`] (a prompt ACK due, a held packet's delta to pick up)
//! waits on the UDP socket with `ppoll` instead, to the microsecond.
//!
//! Invariants: every queue between the workers and the peers is bounded
//! and its overflow is counted and has a recovery path (re-export to the
//! channel that overflowed, RESYNC); state that came from a peer is never
//! replicated back to it.

pub mod auth;
#[cfg(test)]
mod batch_tests;
pub mod cache;
mod cluster;
mod defer;
mod expect;
mod handle;
mod peer;
mod replica;
mod requests;
mod socket;
mod status;
mod tcp;
mod transport;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftfw_dataplane::conntrack::DeltaKind;
use ftfw_dataplane::flow::{FlowKey, FlowState};
use ftfw_dataplane::port::datagram::{RecvBatch, SYSCALL_BATCH};
use ftfw_dataplane::worker::{Command, WorkerShared};
use ftfw_sync::engine::{Event, FlowKind, HelloState};
use ftfw_sync::lazy::Verdict;
use mio::{Events, Poll};

use crate::config::{SyncConfig, SyncMode};
use crate::import::owner_worker;

pub use cache::{CacheStats, ExternalCache, ExternalEntry};
pub use expect::ExpectSource;
use handle::SyncRequest;
pub use handle::{ExternalPage, ExternalPager, SyncError, SyncHandle};
use peer::PeerChannel;
pub use replica::ReplicaMap;

/// Console requests served per iteration.
pub const REQUESTS_PER_ITERATION: usize = 4;
/// Datagrams read per iteration.
pub const RECV_BUDGET: usize = 256;
/// Largest datagram the sync thread reads whole (the UDP maximum; each
/// `recvmmsg` slot has this room, only the pages a datagram touches are
/// ever resident).
const MAX_DATAGRAM: usize = 65536;
/// Deltas taken from each worker's ring per iteration.
pub const DELTA_BUDGET: usize = 4096;
/// Datagrams sent per iteration (per channel).
pub const SEND_BUDGET: usize = 256;
/// Flows per export chunk asked of a worker.
pub const EXPORT_CHUNK: usize = 4096;
/// Longest sleep of an idle sync thread.
pub const IDLE_SLEEP: Duration = Duration::from_micros(500);
/// Idle iterations spent yielding before sleeping.
const IDLE_SPINS: u32 = 32;

/// Why the sync thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The sync link's sockets could not be opened (an address not on this
    /// host, a missing interface).
    #[error("sync link")]
    Link(#[source] std::io::Error),
    /// The thread could not be spawned.
    #[error("starting the sync thread")]
    Thread(#[source] std::io::Error),
}

/// Opens the sync link and starts the sync thread. Errors (an address not
/// on this host, a missing interface) name what failed.
pub fn spawn(
    cfg: &SyncConfig,
    workers: Vec<Arc<WorkerShared>>,
    expect: ExpectSource,
) -> Result<SyncHandle, SpawnError> {
    let now = Instant::now();
    let link = transport::Link::open(cfg, now).map_err(SpawnError::Link)?;
    let (tx, rx) = mpsc::sync_channel(64);
    let stop = Arc::new(AtomicBool::new(false));
    let deltas = Arc::new(AtomicU64::new(0));
    let cluster = !cfg.peers.is_empty();
    let channels: Vec<PeerChannel> = if cluster {
        cfg.peers
            .iter()
            .map(|p| {
                let addr = socket::canonical(p.address);
                let dest = link.peer_addr(p.address, cfg.port);
                PeerChannel::new(cfg, Some(p.node), addr, Some(dest), now)
            })
            .collect()
    } else {
        let addr = socket::canonical(cfg.destination.addr());
        vec![PeerChannel::new(cfg, None, addr, None, now)]
    };
    // Only FT-FW acknowledges what arrived: with a best-effort transport
    // there is nothing to wait for, and defer stays off.
    let defer = defer::DeferRelease::new(
        cfg.defer && cfg.transport.reliable(),
        cfg.defer_timeout,
        &workers,
    );
    for w in &workers {
        w.set_defer_every_change(cfg.sync_writes);
    }
    // UDP reads batches of datagrams (`recvmmsg`); TCP reads its stream
    // into one buffer.
    let (rx_buf, rx_batch) = match link {
        transport::Link::Udp(_) => (Vec::new(), RecvBatch::new(SYSCALL_BATCH, MAX_DATAGRAM)),
        transport::Link::Tcp(_) => (vec![0u8; MAX_DATAGRAM], RecvBatch::default()),
    };
    let core = SyncCore {
        expects: expect::ExpectSync::new(
            cfg.expectations,
            cfg.mode == SyncMode::Direct,
            expect,
            now,
        ),
        lazy: cfg.lazy.map(ftfw_sync::lazy::Lazy::new),
        defer,
        channels,
        cluster,
        link,
        cfg: cfg.clone(),
        workers: workers.clone(),
        requests: rx,
        stop: stop.clone(),
        deltas: deltas.clone(),
        inject: Vec::new(),
        counters: Counters::default(),
        replicas: None,
        flushes: cluster::Flushes::default(),
        handover: None,
        tx_buf: Vec::with_capacity(cfg.mtu),
        rx_buf,
        rx_batch,
        seal: peer::Sealing {
            auth: cfg
                .psk
                .as_ref()
                .map(|p| auth::SyncAuth::new(p.keys.clone(), cfg.local, auth::unix_micros())),
            buf: Vec::with_capacity(cfg.mtu),
        },
        key_file: cfg
            .psk
            .as_ref()
            .and_then(|p| p.file.clone())
            .map(|path| crate::keyring::KeyFileWatch::new(path, now)),
    };
    let pin = cfg.core;
    let thread = std::thread::Builder::new()
        .name("ftfw-sync".into())
        .spawn(move || {
            if let Some(id) = pin {
                if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                    tracing::warn!(core = id, "could not pin the sync thread to its core");
                }
            }
            let mut core = core;
            if let Err(e) = core.run() {
                tracing::error!(error = %e, "sync thread stopped");
                core.defer.stop(&core.workers);
            }
        })
        .map_err(SpawnError::Thread)?;
    tracing::info!(local = %cfg.local, destination = %cfg.destination.addr(), port = cfg.port,
        peers = cfg.peers.len(), mode = cfg.mode.as_str(), transport = cfg.transport.as_str(),
        "replication started");
    Ok(SyncHandle {
        requests: tx,
        stop,
        deltas,
        thread: Some(thread),
        workers,
    })
}

/// Counters the sync thread keeps besides the channels'.
#[derive(Default)]
struct Counters {
    /// Datagrams from no peer's address.
    foreign: u64,
    recv_errors: u64,
    deltas: u64,
    injected: u64,
}

/// Direct-mode injections waiting for a worker's command queue.
enum Inject {
    Upsert(Vec<FlowState>),
    Remove(Vec<FlowKey>),
}

struct SyncCore {
    /// One per peer (exactly one in a pair), in `cfg.peers` order.
    channels: Vec<PeerChannel>,
    /// Whether this is a cluster node (`cfg.peers` not empty).
    cluster: bool,
    link: transport::Link,
    cfg: SyncConfig,
    workers: Vec<Arc<WorkerShared>>,
    requests: Receiver<SyncRequest>,
    stop: Arc<AtomicBool>,
    deltas: Arc<AtomicU64>,
    /// Per worker: batches for direct mode, oldest first.
    inject: Vec<VecDeque<Inject>>,
    counters: Counters,
    /// Cluster: which channels get which bucket (`None`: all of them).
    replicas: Option<cluster::Replicas>,
    /// Bucket flushes and handover exports waiting for their ACK.
    flushes: cluster::Flushes,
    /// Planned handover: the flush token of each channel's export.
    handover: Option<Vec<u64>>,
    tx_buf: Vec<u8>,
    /// TCP: the stream's next run of messages.
    rx_buf: Vec<u8>,
    /// UDP: the datagrams of one `recvmmsg`.
    rx_batch: RecvBatch,
    /// Deferred first packets: release bookkeeping (see `defer.rs`).
    defer: defer::DeferRelease,
    /// Bayes lazy replication (`[sync.lazy]`): holds the changes of flows
    /// predicted to end before the barrier.
    lazy: Option<ftfw_sync::lazy::Lazy>,
    /// Authenticated replication (`[sync] psk`): keys, counters, windows.
    seal: peer::Sealing,
    /// `[sync] psk_file`, watched for changes (the shared watch the
    /// election and cluster drivers use too).
    key_file: Option<crate::keyring::KeyFileWatch>,
    /// Expectation replication (`[sync] expectations`, `expect.rs`).
    expects: expect::ExpectSync,
}

fn flow_kind(k: DeltaKind) -> FlowKind {
    match k {
        DeltaKind::Created => FlowKind::New,
        DeltaKind::Updated => FlowKind::Update,
        DeltaKind::Destroyed => FlowKind::Destroy,
    }
}

/// Pushes one decided change to every channel that gets it (all, or those
/// the replica map names for its bucket).
fn push_to_peers(
    channels: &mut [PeerChannel],
    replicas: Option<&cluster::Replicas>,
    now: Instant,
    kind: FlowKind,
    state: FlowState,
) {
    let n = channels.len();
    let mut state = Some(state);
    for (i, ch) in channels.iter_mut().enumerate() {
        let Some(st) = state.as_ref() else { break };
        if replicas.is_some_and(|r| !r.wants(i, st)) {
            continue;
        }
        // The last channel takes the state; the others get copies.
        let st = if i + 1 == n {
            state.take()
        } else {
            Some(st.clone())
        };
        if let Some(st) = st {
            ch.engine.push_delta(now, kind, st);
        }
    }
}

impl SyncCore {
    fn run(&mut self) -> std::io::Result<()> {
        let mut poll = Poll::new()?;
        self.link.register(poll.registry())?;
        let mut events = Events::with_capacity(16);
        self.inject = (0..self.workers.len()).map(|_| VecDeque::new()).collect();
        let mut idle = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            let work = self.iterate(Instant::now());
            if work > 0 {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle < IDLE_SPINS {
                std::thread::yield_now();
                continue;
            }
            let now = Instant::now();
            let sleep = self
                .channels
                .iter()
                .filter_map(|c| c.engine.poll_timeout())
                .chain(self.lazy.as_ref().and_then(|l| l.next_deadline()))
                .min()
                .map_or(IDLE_SLEEP, |t| t.saturating_duration_since(now))
                .min(self.defer.idle_sleep(IDLE_SLEEP));
            // A sleep a deadline or a held packet shortened (a prompt ACK
            // due, a held packet's delta to pick up) must not become a
            // whole millisecond; a plain idle sleep may.
            if sleep < IDLE_SLEEP && self.link.wait_precise(sleep) {
                continue;
            }
            if let Err(e) = poll.poll(&mut events, Some(sleep)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        // Last words: whatever is queued goes out now.
        let now = Instant::now();
        self.drain_deltas(now);
        let late = now + self.cfg.flush_delay + Duration::from_millis(1);
        for ch in &mut self.channels {
            ch.engine.handle_timeout(late);
        }
        self.transmit(late);
        // Held packets stay held: the appliance stops its workers next
        // (which drop them), and a crash must not let first packets out
        // whose flows the peers may not have.
        Ok(())
    }

    /// One bounded iteration; returns how much work it found.
    fn iterate(&mut self, now: Instant) -> usize {
        let mut work = self.serve_requests(now);
        // TCP only: accept, connect, flush the send buffer.
        work += self.link.service(now);
        work += self.receive(now);
        work += self.drain_deltas(now);
        let replicas = self.replicas.as_ref();
        work += self.expects.poll(now, &mut self.channels, |i| {
            replicas.and_then(|r| r.filter(i))
        });
        work += self.pump_lazy(now);
        let backlogged = self.link.backlogged();
        for ch in &mut self.channels {
            work += ch.pump_export(now, &self.workers, backlogged);
        }
        work += self.deliver_events(now);
        work += self.flush_injections();
        for i in 0..self.channels.len() {
            if self.channels[i].deferred_resync_due(now) {
                tracing::info!(peer = %self.channels[i].addr,
                    "answering the peer's deferred resync: exporting every shard to it");
                self.export_all_to(i);
                work += 1;
            }
            if self.channels[i].engine.take_needs_reexport() {
                tracing::warn!(peer = %self.channels[i].addr,
                    "replication queue overflow: re-exporting every shard to that peer");
                self.export_all_to(i);
                work += 1;
            }
        }
        if self.link.take_repair() {
            tracing::warn!("sync tcp link dropped or lost messages: re-exporting every shard");
            for i in 0..self.channels.len() {
                self.export_all_to(i);
            }
            work += 1;
        }
        for ch in &mut self.channels {
            if ch.engine.poll_timeout().is_some_and(|t| t <= now) {
                ch.engine.handle_timeout(now);
            }
        }
        let work = work + self.transmit_deferring(now);
        // A flush (or handover export) is all sent once nothing of it is
        // left to queue or transmit.
        self.flushes.mark(&self.channels);
        work
    }

    /// Takes the key file again when it changed (at most once per
    /// [`crate::keyring::KEY_FILE_CHECK`]); a file that does not parse is
    /// refused, counted (the watch's errors, `key_reload_errors`) and
    /// logged, and the keys in use stay. The first reading is the ring
    /// the configuration already gave: not a reload.
    fn reload_keys(&mut self, now: Instant) {
        let (Some(kf), Some(auth)) = (&mut self.key_file, &mut self.seal.auth) else {
            return;
        };
        kf.reload(now, "sync", |ring| {
            auth.set_keys(ring.clone());
            Ok::<(), std::convert::Infallible>(())
        });
    }

    fn receive(&mut self, now: Instant) -> usize {
        self.reload_keys(now);
        if matches!(self.link, transport::Link::Udp(_)) {
            return self.receive_batches(now);
        }
        let mut buf = std::mem::take(&mut self.rx_buf);
        let mut n = 0;
        while n < RECV_BUDGET {
            match self.link.recv(&mut buf) {
                Ok(Some((len, Some(ip)))) => {
                    if let Some(d) = buf.get_mut(..len) {
                        self.take_datagram(now, d, ip);
                    }
                }
                Ok(Some((_, None))) => self.counters.foreign += 1,
                Ok(None) => break,
                Err(e) => {
                    self.counters.recv_errors += 1;
                    tracing::debug!(error = %e, "sync link receive error");
                    break;
                }
            }
            n += 1;
        }
        self.rx_buf = buf;
        n
    }

    /// [`SyncCore::receive`] over UDP: up to [`SYSCALL_BATCH`] datagrams a
    /// `recvmmsg`, each handled as if read alone.
    fn receive_batches(&mut self, now: Instant) -> usize {
        let mut batch = std::mem::take(&mut self.rx_batch);
        let mut n = 0;
        while n < RECV_BUDGET {
            let transport::Link::Udp(udp) = &self.link else {
                break;
            };
            let asked = (RECV_BUDGET - n).min(SYSCALL_BATCH);
            let got = match udp.recv_batch(&mut batch, asked) {
                Ok(got) => got,
                Err(e) => {
                    // ICMP errors (peer not listening yet) surface here.
                    self.counters.recv_errors += 1;
                    tracing::debug!(error = %e, "sync link receive error");
                    break;
                }
            };
            for i in 0..got {
                let Some((d, from)) = batch.get_mut(i) else {
                    continue;
                };
                let ip = match &self.link {
                    transport::Link::Udp(u) => from.and_then(|a| u.accept(a)),
                    transport::Link::Tcp(_) => None,
                };
                match ip {
                    Some(ip) => self.take_datagram(now, d, ip),
                    None => self.counters.foreign += 1,
                }
            }
            n += got;
            if got < asked {
                // The socket is empty: no need to ask it again.
                break;
            }
        }
        self.rx_batch = batch;
        n
    }

    /// One datagram (or TCP run of messages) from `ip`, a known address:
    /// opened (authenticated mode; the others are counted by `auth`), to
    /// its channel's engine (or counted as foreign), and its events
    /// delivered.
    fn take_datagram(&mut self, now: Instant, d: &mut [u8], ip: IpAddr) {
        let alive = self.cfg.alive_interval;
        let len = match &mut self.seal.auth {
            Some(a) => match a.open(ip, d) {
                Some(l) => l,
                None => return,
            },
            None => d.len(),
        };
        let ch = if self.cluster {
            self.channels.iter_mut().find(|c| c.addr == ip)
        } else {
            self.channels.first_mut()
        };
        match (ch, d.get(..len)) {
            (Some(ch), Some(d)) => ch.on_datagram(now, d, alive),
            _ => self.counters.foreign += 1,
        }
        // Its flows into the cache (or shards) now, while the decoded
        // states are still in the CPU's cache: a bulk fills a datagram
        // with 24 of them, a whole receive budget with 6,000 (1.7 MB of
        // events).
        self.deliver_events(now);
    }

    fn drain_deltas(&mut self, now: Instant) -> usize {
        let mut moved = 0;
        for w in 0..self.workers.len() {
            let ring = self.workers[w].deltas.clone();
            if ring.take_reexport() {
                tracing::warn!(
                    worker = w,
                    "delta ring overflowed: re-exporting the worker's shard"
                );
                for i in 0..self.channels.len() {
                    let f = self.replica_filter(i);
                    self.channels[i].export.add(w, f);
                }
            }
            let mut k = 0;
            while k < DELTA_BUDGET && self.channels.iter().all(|c| c.engine.tx_space() > 0) {
                let Some(d) = ring.pop() else { break };
                let kind = flow_kind(d.kind);
                let decided = match &mut self.lazy {
                    None => Some((kind, d.state())),
                    Some(lazy) => match lazy.on_change(now, kind, d.state()) {
                        Verdict::Send(kind, state) => Some((kind, state)),
                        Verdict::Hold => None,
                    },
                };
                if let Some((kind, st)) = decided {
                    push_to_peers(&mut self.channels, self.replicas.as_ref(), now, kind, st);
                }
                k += 1;
            }
            moved += k;
        }
        self.counters.deltas += moved as u64;
        self.deltas.store(self.counters.deltas, Ordering::Relaxed);
        moved
    }

    /// Lazy replication: held changes of flows that rested in that state
    /// past the barrier go out now (as NEW if the peers never heard of the
    /// flow). When a full export runs, everything held goes out first (the
    /// export sends the shards' flows anyway; their later DESTROY must then
    /// be sent too).
    fn pump_lazy(&mut self, now: Instant) -> usize {
        let Some(lazy) = &mut self.lazy else {
            return 0;
        };
        let mut late = lazy.poll_barrier(now);
        if self.channels.iter().any(|c| c.export.running()) {
            late.extend(lazy.release_all());
        }
        let n = late.len();
        for (kind, st) in late {
            push_to_peers(&mut self.channels, self.replicas.as_ref(), now, kind, st);
        }
        n
    }

    fn deliver_events(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for i in 0..self.channels.len() {
            while let Some(ev) = self.channels[i].engine.poll_event() {
                n += 1;
                match ev {
                    Event::Apply { kind, state } => match self.cfg.mode {
                        SyncMode::ExternalCache => self.channels[i].cache.apply(now, kind, state),
                        SyncMode::Direct => self.queue_injection(kind, state),
                    },
                    Event::Expect { kind, exp } => self.expects.apply(now, kind, exp),
                    Event::ResyncRequested => {
                        if self.channels[i].take_resync_request(now) {
                            tracing::info!(peer = %self.channels[i].addr,
                                "the peer asked for a resync: exporting every shard to it");
                            self.export_all_to(i);
                        } else {
                            tracing::info!(peer = %self.channels[i].addr,
                                "the peer asked for a resync again within the hold-off: \
                                 answering at its end");
                        }
                    }
                    Event::PeerRestarted => {
                        tracing::info!(peer = %self.channels[i].addr, "the sync peer (re)started");
                        let c = &mut self.channels[i];
                        let restarted = std::mem::take(&mut c.restarted);
                        let due = c.last_restart_export.is_none_or(|t| {
                            now.saturating_duration_since(t) >= peer::RESTART_EXPORT_HOLDOFF
                        });
                        // A restarted peer lost what it held: send it our
                        // table (what changed while it was down included),
                        // at most once per hold-off. Its own startup RESYNC,
                        // if it asks, joins the export running then.
                        if restarted && due {
                            c.last_restart_export = Some(now);
                            c.counters.restart_exports += 1;
                            tracing::info!(peer = %c.addr,
                                "exporting every shard to the restarted peer");
                            self.export_all_to(i);
                        }
                    }
                    Event::OutOfSync => {
                        tracing::warn!(peer = %self.channels[i].addr,
                            "every message from the sync peer was stale for a while: \
                             re-based on its sequence, asked it for a resync");
                        let c = &mut self.channels[i];
                        c.resync_pending_since = Some(now);
                        c.sweep_before = Some(now);
                    }
                }
            }
        }
        n
    }

    fn queue_injection(&mut self, kind: FlowKind, state: FlowState) {
        let w = owner_worker(&state.key, &self.workers);
        let Some(q) = self.inject.get_mut(w) else {
            return;
        };
        self.counters.injected += 1;
        match kind {
            FlowKind::Destroy => match q.back_mut() {
                Some(Inject::Remove(v)) if v.len() < EXPORT_CHUNK => v.push(state.key),
                _ => q.push_back(Inject::Remove(vec![state.key])),
            },
            FlowKind::New | FlowKind::Update => match q.back_mut() {
                Some(Inject::Upsert(v)) if v.len() < EXPORT_CHUNK => v.push(state),
                _ => q.push_back(Inject::Upsert(vec![state])),
            },
        }
    }

    /// Hands direct-mode batches to their workers, in order, as far as the
    /// command queues take them.
    fn flush_injections(&mut self) -> usize {
        let mut n = 0;
        for (w, q) in self.inject.iter_mut().enumerate() {
            while let Some(batch) = q.pop_front() {
                let cmd = match batch {
                    Inject::Upsert(states) => {
                        // Nobody waits for the answer.
                        let (tx, _rx) = mpsc::channel();
                        Command::UpsertMany {
                            states,
                            replicate: false,
                            reply: tx,
                        }
                    }
                    Inject::Remove(keys) => Command::RemoveImported { keys, reply: None },
                };
                match self.workers[w].send(cmd) {
                    Ok(()) => n += 1,
                    Err(cmd) => {
                        let back = match cmd {
                            Command::UpsertMany { states, .. } => Inject::Upsert(states),
                            Command::RemoveImported { keys, .. } => Inject::Remove(keys),
                            _ => break,
                        };
                        q.push_front(back);
                        break;
                    }
                }
            }
        }
        n
    }

    /// [`SyncCore::transmit`], with defer's extras: while a worker holds a
    /// first packet, a partly filled datagram goes out now (as if its flush
    /// delay had passed); then marks and releases (see `defer.rs`).
    fn transmit_deferring(&mut self, now: Instant) -> usize {
        let alive3 = self.cfg.alive_interval * 3;
        let ready =
            |c: &PeerChannel| c.up(now, alive3) && c.engine.hello_state() == HelloState::Done;
        let any_ready = self.channels.iter().any(ready);
        self.defer.update_active(any_ready, &self.workers);
        let at = if self.defer.urgent(&self.workers) {
            now + self.cfg.flush_delay
        } else {
            now
        };
        let n = self.transmit(at);
        // A pair waits for its one peer (as conntrackd's peer, always); a
        // cluster for the peers that are ready.
        let cluster = self.cluster;
        self.defer
            .after_transmit(&self.channels, |c| !cluster || ready(c), &self.workers);
        n
    }

    fn transmit(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for ch in &mut self.channels {
            n += ch.transmit(now, &mut self.link, &mut self.tx_buf, &mut self.seal);
        }
        n
    }
}
