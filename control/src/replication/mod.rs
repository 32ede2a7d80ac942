//! State replication: the sync thread that runs FT-FW on the dedicated link.
//! (`[sync] transport` may instead pick best effort over the same UDP
//! link, or best effort over TCP connections, see `tcp.rs`.)
//!
//! Layer: between the workers (which produce state deltas into bounded
//! rings) and the peer (conntrackd 1.4.7 or another ftfwd). The thread
//! owns the protocol engine ([`ftfw_sync::engine::Engine`] with the
//! conntrackd wire codec), the sync link's sockets, and the external cache.
//! The control thread talks to it only through [`SyncHandle`].
//!
//! One iteration (bounded work each, so no source can starve another):
//! 1. serve at most [`REQUESTS_PER_ITERATION`] console requests;
//! 2. read at most [`RECV_BUDGET`] datagrams into the engine;
//! 3. move at most [`DELTA_BUDGET`] deltas from each worker's ring into the
//!    engine, as long as its transmit queue has room (a full ring is
//!    counted by the worker and repaired by a re-export of that shard);
//! 4. feed a running export (RESYNC answer or re-export) chunk by chunk;
//! 5. apply received flows to the external cache, or inject them into the
//!    owning shard (direct mode), without emitting deltas for them;
//! 6. run the engine's timers and send what it has, at most
//!    [`SEND_BUDGET`] datagrams.
//!
//! When an iteration finds nothing to do the thread yields a few times and
//! then sleeps on the socket until the engine's next deadline, at most
//! [`IDLE_SLEEP`]: the poll-mode workers never wake it, so this bounds the
//! latency from a delta to its datagram when the link is quiet.
//!
//! Invariants: every queue between the workers and the peer is bounded and
//! its overflow is counted and has a recovery path (re-export, RESYNC);
//! state that came from the peer is never replicated back to it.

pub mod cache;
mod defer;
mod handle;
mod socket;
mod tcp;
mod transport;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftfw_dataplane::conntrack::DeltaKind;
use ftfw_dataplane::flow::{FlowKey, FlowState};
use ftfw_dataplane::worker::{Command, WorkerShared};
use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::{Engine, EngineConfig, Event, FlowKind, HelloState, Reliability};
use ftfw_sync::lazy::Verdict;
use ftfw_sync::wire::EncodeOptions;
use mio::{Events, Poll};

use crate::config::{SyncConfig, SyncDestination, SyncMode, SyncTransport};
use crate::console::proto::{FlowJson, FlowsListing, SyncStatusInfo, TcpLinkInfo};
use crate::import::owner_worker;

pub use cache::{CacheStats, ExternalCache, ExternalEntry};
use handle::SyncRequest;
pub use handle::{SyncError, SyncHandle};

/// Console requests served per iteration.
pub const REQUESTS_PER_ITERATION: usize = 4;
/// Datagrams read per iteration.
pub const RECV_BUDGET: usize = 256;
/// Deltas taken from each worker's ring per iteration.
pub const DELTA_BUDGET: usize = 4096;
/// Datagrams sent per iteration.
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
pub fn spawn(cfg: &SyncConfig, workers: Vec<Arc<WorkerShared>>) -> Result<SyncHandle, SpawnError> {
    let now = Instant::now();
    let link = transport::Link::open(cfg, now).map_err(SpawnError::Link)?;
    let (tx, rx) = mpsc::sync_channel(64);
    let stop = Arc::new(AtomicBool::new(false));
    let deltas = Arc::new(AtomicU64::new(0));
    let engine_cfg = EngineConfig {
        mtu: cfg.mtu,
        ack_window: cfg.ack_window,
        alive_interval: cfg.alive_interval,
        flush_delay: cfg.flush_delay,
        resend_queue_max: cfg.resend_queue,
        ack_delay: cfg.ack_delay,
        // With prompt ACKs (defer), an ACK that does not come within a few
        // ACK delays means a lost datagram: probe for it rather than wait
        // for the next message or ALIVE.
        probe_after: cfg.ack_delay.map(|d| (d * 5).max(Duration::from_millis(1))),
        // conntrackd starts its sequence space at the Unix time.
        initial_seq: u32::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() & 0xffff_ffff),
        )
        .unwrap_or(0),
        reliability: if cfg.transport.reliable() {
            Reliability::Ftfw
        } else {
            Reliability::BestEffort
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(engine_cfg, WireCodec::new(EncodeOptions::default()), now);
    if cfg.startup_resync {
        engine.request_resync(now);
    }
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
    let core = SyncCore {
        lazy: cfg.lazy.map(ftfw_sync::lazy::Lazy::new),
        defer,
        engine,
        link,
        cfg: cfg.clone(),
        cache: ExternalCache::new(cfg.external_capacity),
        workers,
        requests: rx,
        stop: stop.clone(),
        deltas: deltas.clone(),
        export: Export::default(),
        inject: Vec::new(),
        counters: Counters::default(),
        last_heard: None,
        resync_pending_since: cfg.startup_resync.then_some(now),
        handover: None,
        tx_buf: Vec::with_capacity(cfg.mtu),
        unsent: None,
        rx_buf: vec![0u8; 65536],
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
        mode = cfg.mode.as_str(), transport = cfg.transport.as_str(), "replication started");
    Ok(SyncHandle {
        requests: tx,
        stop,
        deltas,
        thread: Some(thread),
    })
}

/// A full-table export in progress (RESYNC answer or re-export).
#[derive(Default)]
struct Export {
    /// Workers still to walk, each with the slot to continue from.
    todo: VecDeque<(usize, u32)>,
    /// The chunk asked of a worker and not answered yet.
    inflight: Option<Receiver<(Vec<FlowState>, Option<u32>)>>,
    /// Which worker that is.
    inflight_worker: usize,
    /// States received and not yet given to the engine.
    buffer: VecDeque<FlowState>,
}

impl Export {
    fn running(&self) -> bool {
        !self.todo.is_empty() || self.inflight.is_some() || !self.buffer.is_empty()
    }

    /// Adds worker `w` from slot 0 unless it is already waiting to be walked
    /// from the start.
    fn add(&mut self, w: usize) {
        if !self.todo.iter().any(|&(x, slot)| x == w && slot == 0) {
            self.todo.push_back((w, 0));
        }
    }
}

/// Counters the sync thread keeps besides the engine's.
#[derive(Default)]
struct Counters {
    foreign: u64,
    send_errors: u64,
    recv_errors: u64,
    deltas: u64,
    exports: u64,
    exported: u64,
    resyncs_in: u64,
    injected: u64,
}

/// Direct-mode injections waiting for a worker's command queue.
enum Inject {
    Upsert(Vec<FlowState>),
    Remove(Vec<FlowKey>),
}

struct SyncCore {
    engine: Engine<WireCodec>,
    link: transport::Link,
    cfg: SyncConfig,
    cache: ExternalCache,
    workers: Vec<Arc<WorkerShared>>,
    requests: Receiver<SyncRequest>,
    stop: Arc<AtomicBool>,
    deltas: Arc<AtomicU64>,
    export: Export,
    /// Per worker: batches for direct mode, oldest first.
    inject: Vec<VecDeque<Inject>>,
    counters: Counters,
    last_heard: Option<Instant>,
    /// When we last asked the peer for its table, while its answer is not
    /// known to be complete.
    resync_pending_since: Option<Instant>,
    /// Planned handover: `Some(None)` while its export is being sent,
    /// `Some(Some(i))` once every message below send index `i` carries it.
    handover: Option<Option<u64>>,
    tx_buf: Vec<u8>,
    /// A datagram the socket refused (would block), sent first next time.
    unsent: Option<Vec<u8>>,
    rx_buf: Vec<u8>,
    /// Deferred first packets: release bookkeeping (see `defer.rs`).
    defer: defer::DeferRelease,
    /// Bayes lazy replication (`[sync.lazy]`): holds the changes of flows
    /// predicted to end before the barrier.
    lazy: Option<ftfw_sync::lazy::Lazy>,
}

fn flow_kind(k: DeltaKind) -> FlowKind {
    match k {
        DeltaKind::Created => FlowKind::New,
        DeltaKind::Updated => FlowKind::Update,
        DeltaKind::Destroyed => FlowKind::Destroy,
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
                .engine
                .poll_timeout()
                .into_iter()
                .chain(self.lazy.as_ref().and_then(|l| l.next_deadline()))
                .min()
                .map_or(IDLE_SLEEP, |t| t.saturating_duration_since(now))
                .min(self.defer.idle_sleep(IDLE_SLEEP));
            if let Err(e) = poll.poll(&mut events, Some(sleep)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        // Last words: whatever is queued goes out now.
        let now = Instant::now();
        self.drain_deltas(now);
        self.engine
            .handle_timeout(now + self.cfg.flush_delay + Duration::from_millis(1));
        self.transmit(now + self.cfg.flush_delay + Duration::from_millis(1));
        // Held packets stay held: the appliance stops its workers next
        // (which drop them), and a crash must not let first packets out
        // whose flows the peer may not have.
        Ok(())
    }

    /// One bounded iteration; returns how much work it found.
    fn iterate(&mut self, now: Instant) -> usize {
        let mut work = self.serve_requests(now);
        // TCP only: accept, connect, flush the send buffer.
        work += self.link.service(now);
        work += self.receive(now);
        work += self.drain_deltas(now);
        work += self.pump_lazy(now);
        work += self.pump_export(now);
        work += self.deliver_events(now);
        work += self.flush_injections();
        if self.engine.take_needs_reexport() {
            tracing::warn!("replication queue overflow: re-exporting every shard");
            for w in 0..self.workers.len() {
                self.export.add(w);
            }
            work += 1;
        }
        if self.link.take_repair() {
            tracing::warn!("sync tcp link dropped or lost messages: re-exporting every shard");
            for w in 0..self.workers.len() {
                self.export.add(w);
            }
            work += 1;
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        let work = work + self.transmit_deferring(now);
        // The handover export is all sent once nothing of it is left to
        // queue or transmit.
        if self.handover == Some(None)
            && !self.export.running()
            && self.engine.stats().tx_queue_depth == 0
        {
            self.handover = Some(Some(self.engine.sent_index()));
        }
        work
    }

    fn serve_requests(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while n < REQUESTS_PER_ITERATION {
            let req = match self.requests.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            };
            n += 1;
            match req {
                SyncRequest::Status(reply) => {
                    let _ = reply.send(self.status(now));
                }
                SyncRequest::ExternalList {
                    filter,
                    limit,
                    reply,
                } => {
                    let mut flows = Vec::new();
                    let mut total = 0u64;
                    for e in self.cache.iter() {
                        if filter.matches(&e.state) {
                            total += 1;
                            if flows.len() < limit {
                                let mut j = FlowJson::from(&e.state);
                                j.active_secs =
                                    Some(now.saturating_duration_since(e.since).as_secs());
                                flows.push(j);
                            }
                        }
                    }
                    let _ = reply.send(FlowsListing { flows, total });
                }
                SyncRequest::Snapshot(reply) => {
                    let _ = reply.send(self.cache.snapshot(now));
                }
                SyncRequest::Commit { take, reply } => {
                    let _ = reply.send(self.cache.commit_into(now, &self.workers, take));
                }
                SyncRequest::Resync(reply) => {
                    self.engine.request_resync(now);
                    self.resync_pending_since = Some(now);
                    let _ = reply.send(true);
                }
                SyncRequest::FlushExternal(reply) => {
                    let _ = reply.send(self.cache.flush() as u64);
                }
                SyncRequest::ExportAll(reply) => {
                    for w in 0..self.workers.len() {
                        self.export.add(w);
                    }
                    let _ = reply.send(());
                }
                SyncRequest::ExportForHandover(reply) => {
                    for w in 0..self.workers.len() {
                        self.export.add(w);
                    }
                    self.handover = Some(None);
                    let _ = reply.send(());
                }
                SyncRequest::HandoverAcked(reply) => {
                    let r = self
                        .handover
                        .map(|m| m.is_some_and(|i| self.engine.acked_below(i)));
                    let _ = reply.send(r);
                }
            }
        }
        n
    }

    fn receive(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while n < RECV_BUDGET {
            match self.link.recv(&mut self.rx_buf) {
                Ok(Some((len, true))) => {
                    self.last_heard = Some(now);
                    self.note_alive(now, len);
                    self.engine.handle_datagram(now, &self.rx_buf[..len]);
                }
                Ok(Some((_, false))) => self.counters.foreign += 1,
                Ok(None) => break,
                Err(e) => {
                    // ICMP errors (peer not listening yet) surface here.
                    self.counters.recv_errors += 1;
                    tracing::debug!(error = %e, "sync link receive error");
                    break;
                }
            }
            n += 1;
        }
        n
    }

    /// Completion of a resync answer. FT-FW does not mark the end of a bulk,
    /// so we infer it: a sender fills its datagrams with queued flow
    /// messages behind any control message, so a datagram of control
    /// messages only (ALIVE, ACK) means the peer had no flow left to send.
    /// One that arrives at least two ALIVE intervals after our request (time
    /// for the request to arrive and the bulk to start) comes after the
    /// whole answer.
    fn note_alive(&mut self, now: Instant, len: usize) {
        let Some(since) = self.resync_pending_since else {
            return;
        };
        if now.saturating_duration_since(since) < self.cfg.alive_interval * 2 {
            return;
        }
        let d = &self.rx_buf[..len];
        let mut off = 0;
        let mut seen = 0;
        while off < len {
            let Ok(h) = ftfw_sync::wire::Header::parse(&d[off..]) else {
                return;
            };
            if h.msg_type() != Some(ftfw_sync::wire::MsgType::Ctl) || h.len < 8 {
                return;
            }
            seen += 1;
            off += usize::from(h.len);
        }
        if seen > 0 {
            self.resync_pending_since = None;
            tracing::info!("resync from the peer complete");
        }
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
                self.export.add(w);
            }
            let mut k = 0;
            while k < DELTA_BUDGET && self.engine.tx_space() > 0 {
                let Some(d) = ring.pop() else { break };
                let kind = flow_kind(d.kind);
                match &mut self.lazy {
                    None => self.engine.push_delta(now, kind, d.state()),
                    Some(lazy) => {
                        if let Verdict::Send(kind, state) = lazy.on_change(now, kind, d.state()) {
                            self.engine.push_delta(now, kind, state);
                        }
                    }
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
    /// past the barrier go out now (as NEW if the peer never heard of the
    /// flow). When a full
    /// export runs, everything held goes out first (the export sends the
    /// shards' flows anyway; their later DESTROY must then be sent too).
    fn pump_lazy(&mut self, now: Instant) -> usize {
        let Some(lazy) = &mut self.lazy else {
            return 0;
        };
        let mut late = lazy.poll_barrier(now);
        if self.export.running() {
            late.extend(lazy.release_all());
        }
        let n = late.len();
        for (kind, st) in late {
            self.engine.push_delta(now, kind, st);
        }
        n
    }

    fn pump_export(&mut self, now: Instant) -> usize {
        if !self.export.running() {
            return 0;
        }
        let mut work = 0;
        // Give buffered states to the engine as far as it has room (and,
        // over TCP, while the stream is not backlogged: a bulk must not
        // fill the send buffer and cause the drops it would repair).
        let space = if self.link.backlogged() {
            0
        } else {
            self.engine.tx_space().min(self.export.buffer.len())
        };
        if space > 0 {
            let buf = &mut self.export.buffer;
            let n = self
                .engine
                .push_bulk(now, std::iter::from_fn(|| buf.pop_front()).take(space));
            self.counters.exported += n as u64;
            work += n;
        }
        // Collect an answered chunk.
        if let Some(rx) = &self.export.inflight {
            match rx.try_recv() {
                Ok((states, next)) => {
                    self.export.buffer.extend(states);
                    if let Some(slot) = next {
                        self.export
                            .todo
                            .push_front((self.export.inflight_worker, slot));
                    }
                    self.export.inflight = None;
                    work += 1;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    tracing::warn!(
                        worker = self.export.inflight_worker,
                        "a worker dropped an export request"
                    );
                    self.export.inflight = None;
                }
            }
        }
        // Ask for the next chunk once the buffer is mostly given away.
        if self.export.inflight.is_none() && self.export.buffer.len() < EXPORT_CHUNK {
            if let Some((w, from)) = self.export.todo.pop_front() {
                let (tx, rx) = mpsc::channel();
                let cmd = Command::Export {
                    from,
                    max: EXPORT_CHUNK,
                    reply: tx,
                };
                match self.workers[w].send(cmd) {
                    Ok(()) => {
                        self.export.inflight = Some(rx);
                        self.export.inflight_worker = w;
                    }
                    Err(_) => self.export.todo.push_front((w, from)),
                }
                work += 1;
            }
        }
        if !self.export.running() {
            self.counters.exports += 1;
            tracing::info!(
                flows = self.counters.exported,
                "export to the peer queued completely"
            );
        }
        work
    }

    fn deliver_events(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(ev) = self.engine.poll_event() {
            n += 1;
            match ev {
                Event::Apply { kind, state } => match self.cfg.mode {
                    SyncMode::ExternalCache => self.cache.apply(now, kind, state),
                    SyncMode::Direct => self.queue_injection(kind, state),
                },
                Event::ResyncRequested => {
                    self.counters.resyncs_in += 1;
                    tracing::info!("the peer asked for a resync: exporting every shard");
                    for w in 0..self.workers.len() {
                        self.export.add(w);
                    }
                }
                Event::PeerRestarted => {
                    tracing::info!("the sync peer (re)started");
                }
            }
        }
        n
    }

    fn queue_injection(&mut self, kind: FlowKind, state: FlowState) {
        let w = owner_worker(&state.key, self.workers.len());
        let q = &mut self.inject[w];
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
        let peer_up = self
            .last_heard
            .is_some_and(|t| now.saturating_duration_since(t) <= self.cfg.alive_interval * 3);
        self.defer
            .update_active(peer_up, self.engine.hello_state(), &self.workers);
        let at = if self.defer.urgent(&self.workers) {
            now + self.cfg.flush_delay
        } else {
            now
        };
        let n = self.transmit(at);
        self.defer.after_transmit(&self.engine, &self.workers);
        n
    }

    fn transmit(&mut self, now: Instant) -> usize {
        let mut n = 0;
        if let Some(d) = self.unsent.take() {
            match self.link.send(&d) {
                Ok(_) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.unsent = Some(d);
                    return 0;
                }
                Err(_) => self.counters.send_errors += 1,
            }
        }
        while n < SEND_BUDGET && self.engine.poll_transmit(now, &mut self.tx_buf) {
            match self.link.send(&self.tx_buf) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.unsent = Some(self.tx_buf.clone());
                    break;
                }
                Err(e) => {
                    // The datagram is lost; the protocol recovers it (NACK
                    // or the peer's resync).
                    self.counters.send_errors += 1;
                    tracing::debug!(error = %e, "sync link send error");
                }
            }
            n += 1;
        }
        n
    }

    fn status(&self, now: Instant) -> SyncStatusInfo {
        let s = self.engine.stats();
        let c = self.cache.stats();
        let alive3 = self.cfg.alive_interval * 3;
        let ring_overflows = self.workers.iter().map(|w| w.deltas.overflows()).sum();
        let mut deferred = ftfw_dataplane::worker::WorkerCounters::default();
        for w in &self.workers {
            deferred.add(&w.counters.load());
        }
        SyncStatusInfo {
            mode: self.cfg.mode.as_str().to_string(),
            transport: self.cfg.transport.as_str().to_string(),
            link: match (self.cfg.transport, self.cfg.destination) {
                (SyncTransport::Tcp, _) => "tcp",
                (_, SyncDestination::Unicast(_)) => "udp",
                (_, SyncDestination::Multicast(_)) => "multicast",
            }
            .to_string(),
            reliable: self.cfg.transport.reliable(),
            tcp: self.link.tcp().map(|t| {
                let c = t.counters;
                TcpLinkInfo {
                    out_up: t.out_up(),
                    in_up: t.incoming_from().is_some(),
                    in_from: t.incoming_from().map(|a| a.to_string()),
                    connects: c.connects,
                    connect_failures: c.connect_failures,
                    disconnects: c.disconnects,
                    accepted: c.accepted,
                    in_closed: c.in_closed,
                    refused: c.refused,
                    buffered_bytes: t.buffered() as u64,
                    buffer_capacity: tcp::SEND_BUFFER as u64,
                    send_drops: c.send_drops,
                    cut_bytes: c.cut_bytes,
                    framing_errors: c.framing_errors,
                    repairs: c.repairs,
                }
            }),
            local: std::net::SocketAddr::new(self.cfg.local, self.cfg.port).to_string(),
            destination: self.link.dest().to_string(),
            peer_state: match self.last_heard {
                None => "unknown",
                Some(t) if now.saturating_duration_since(t) <= alive3 => "up",
                Some(_) => "down",
            }
            .to_string(),
            peer_last_heard_ms: self.last_heard.map(|t| {
                u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
            }),
            hello: match self.engine.hello_state() {
                HelloState::Init => "init",
                HelloState::Say => "say",
                HelloState::Done => "done",
            }
            .to_string(),
            seq_out: self.engine.seq_out(),
            seq_in: self.engine.last_seq_in(),
            resend_queue: s.resend_queue_depth as u64,
            tx_queue: s.tx_queue_depth as u64,
            msgs_in: s.msgs_in,
            msgs_out: s.msgs_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            datagrams_in: s.datagrams_in,
            datagrams_out: s.datagrams_out,
            lost: s.lost,
            // A stream framing error is a malformed message too.
            malformed: s.malformed + self.link.tcp().map_or(0, |t| t.counters.framing_errors),
            malformed_payload: s.malformed_payload,
            stale: s.before,
            retransmitted: s.retransmitted,
            nacks_in: s.nacks_in,
            peer_restarts: s.peer_restarts,
            foreign_datagrams: self.counters.foreign,
            send_errors: self.counters.send_errors,
            deltas_in: self.counters.deltas,
            ring_overflows,
            queue_overflows: s.tx_overflow + s.resend_overflow + s.ctl_overflow + s.event_overflow,
            exports: self.counters.exports,
            exported_flows: self.counters.exported,
            resyncs_in: self.counters.resyncs_in,
            resync_complete: self.resync_pending_since.is_none(),
            external_flows: self.cache.len() as u64,
            external_capacity: self.cache.capacity() as u64,
            external_full: c.full,
            injected: self.counters.injected,
            defer: self.defer.state().to_string(),
            defer_held: deferred.deferred,
            defer_released: deferred.defer_released,
            defer_timeouts: deferred.defer_timeouts,
            defer_overflow: deferred.defer_overflow,
            lazy: self.lazy.as_ref().map(ftfw_sync::lazy::Lazy::stats),
            level: self.cfg.level.name().to_string(),
            level_skipped: deferred.sync_skipped,
        }
    }
}
