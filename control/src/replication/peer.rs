//! One replication channel: everything the sync thread keeps per peer.
//!
//! A classic pair has exactly one [`PeerChannel`]; a cluster has one per
//! other member. Each channel owns its FT-FW [`Engine`] (its own sequence
//! space, ACK/NACK window, resend queue, HELLO and RESYNC), the external
//! cache of the flows that came from that peer, when the peer was last
//! heard, whether our RESYNC request to it is answered, and the full-table
//! or bucket exports queued for it. The sync thread (`mod.rs`) owns the
//! socket and the workers, and drives every channel the same way.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Export messages unacknowledged at most (about 1 MB of IPv4 TCP flow
/// messages: 8 ms of a 1 Gbit/s link), so a bulk does not overrun the
/// link's and the peer's buffers and spend itself in retransmissions.
const EXPORT_WINDOW: usize = 16_384;

use ftfw_dataplane::buckets::{bucket_of_key, BucketSet};
use ftfw_dataplane::flow::FlowState;
use ftfw_dataplane::port::datagram::DatagramBatch;
use ftfw_dataplane::worker::{Command, WorkerShared};
use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::{Engine, EngineConfig, HelloState, Reliability};
use ftfw_sync::wire::EncodeOptions;

use super::auth;
use super::cache::ExternalCache;
use super::transport::Link;
use super::{EXPORT_CHUNK, SEND_BUDGET};
use crate::config::SyncConfig;

/// Most walk entries (worker, slot, filter) queued on one channel's
/// export: a full export needs one per worker, each bucket export one per
/// worker too. A bucket export that does not fit is refused (the caller
/// retries); a full export always fits (it replaces the worker's entries).
pub(super) const EXPORT_TODO_MAX: usize = 1024;

/// Which flows of a walk are sent: every flow, or those of some buckets
/// (the set's universe is the bucket count).
pub(super) type ExportFilter = Option<Arc<BucketSet>>;

/// Whether `st` passes `filter`.
pub(super) fn passes(filter: &ExportFilter, st: &FlowState) -> bool {
    passes_key(filter, &st.key)
}

/// Whether the flow `key` (or an expectation of that master) passes
/// `filter`.
pub(super) fn passes_key(filter: &ExportFilter, key: &ftfw_dataplane::flow::FlowKey) -> bool {
    filter
        .as_ref()
        .is_none_or(|b| b.contains(bucket_of_key(key, b.universe())))
}

/// A worker's answer to `Command::Export`: states and the next slot.
type Chunk = (Vec<FlowState>, Option<u32>);

/// A full-table or bucket export to one peer in progress (RESYNC answer,
/// re-export, flush of buckets).
#[derive(Default)]
pub(super) struct Export {
    /// Workers still to walk, each with the slot to continue from and the
    /// filter of that walk.
    todo: VecDeque<(usize, u32, ExportFilter)>,
    /// The chunk asked of a worker and not answered yet, that worker and
    /// the filter of its walk.
    inflight: Option<(Receiver<Chunk>, usize, ExportFilter)>,
    /// States received and not yet given to the engine.
    buffer: VecDeque<FlowState>,
}

impl Export {
    /// Whether anything is left to walk, collect or queue.
    pub(super) fn running(&self) -> bool {
        !self.todo.is_empty() || self.inflight.is_some() || !self.buffer.is_empty()
    }

    /// Adds a walk of worker `w` from slot 0. A full walk (`filter` None)
    /// replaces the worker's waiting walks (it sends everything they
    /// would); a walk already waiting with the same filter is not added
    /// twice. Returns false when a bucket walk does not fit
    /// ([`EXPORT_TODO_MAX`]).
    pub(super) fn add(&mut self, w: usize, filter: ExportFilter) -> bool {
        let same = |f: &ExportFilter| match (f, &filter) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        if self
            .todo
            .iter()
            .any(|(x, slot, f)| *x == w && *slot == 0 && (f.is_none() || same(f)))
        {
            return true;
        }
        if filter.is_none() {
            self.todo.retain(|(x, slot, _)| !(*x == w && *slot == 0));
        } else if self.todo.len() >= EXPORT_TODO_MAX {
            return false;
        }
        self.todo.push_back((w, 0, filter));
        true
    }

    /// Room for `n` more bucket walks.
    pub(super) fn has_room(&self, n: usize) -> bool {
        self.todo.len() + n <= EXPORT_TODO_MAX
    }
}

/// Counters a channel keeps besides its engine's.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ChannelCounters {
    /// Datagrams the socket refused.
    pub(super) send_errors: u64,
    /// Exports run to completion.
    pub(super) exports: u64,
    /// Flows those exports queued.
    pub(super) exported: u64,
    /// RESYNC requests received from the peer.
    pub(super) resyncs_in: u64,
    /// Full exports sent because a HELLO showed the peer restarted (what
    /// it missed while it was down).
    pub(super) restart_exports: u64,
    /// RESYNC requests that came within [`RESYNC_ANSWER_HOLDOFF`] of the
    /// last answer: answered once at its end.
    pub(super) resyncs_deferred: u64,
}

/// Shortest time between two exports a peer's restart starts (a peer
/// that restarts in a loop, or replayed HELLOs in plain mode, cannot make
/// us send the table more often).
pub(super) const RESTART_EXPORT_HOLDOFF: Duration = Duration::from_secs(10);

/// Shortest time between the starts of two answers to the peer's RESYNC
/// requests: a request within it is answered once, at its end (a peer, or
/// anyone sending from its address in plain mode, cannot make us send the
/// table more often; the table is the one reply outside the reply budget,
/// see `ftfw_sync::engine`).
pub(super) const RESYNC_ANSWER_HOLDOFF: Duration = Duration::from_secs(5);

/// The FT-FW engine settings `cfg` asks for (the same for every channel).
pub(super) fn engine_config(cfg: &SyncConfig) -> EngineConfig {
    EngineConfig {
        // A sealed datagram is `auth::OVERHEAD` bytes longer.
        mtu: cfg.mtu - if cfg.psk.is_some() { auth::OVERHEAD } else { 0 },
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
        // An unrecoverable NACK re-exports the table only from an
        // authenticated peer: in plain mode 16 bytes from the peer's
        // address would make us send all of it.
        nack_reexport: cfg.psk.is_some(),
        reliability: if cfg.transport.reliable() {
            Reliability::Ftfw
        } else {
            Reliability::BestEffort
        },
        ..EngineConfig::default()
    }
}

/// One peer's replication channel. See the module documentation.
pub(super) struct PeerChannel {
    /// The peer's cluster node id (`None` for a classic pair's peer).
    pub(super) node: Option<u32>,
    /// The peer's address (datagrams from it are this channel's).
    pub(super) addr: IpAddr,
    /// Where our datagrams go: `None` sends to the link's destination
    /// (a pair, unicast, multicast or TCP).
    pub(super) dest: Option<SocketAddr>,
    /// FT-FW for this peer.
    pub(super) engine: Engine<WireCodec>,
    /// The flows this peer replicated to us.
    pub(super) cache: ExternalCache,
    /// Exports queued to this peer.
    pub(super) export: Export,
    /// When the peer's last datagram arrived.
    pub(super) last_heard: Option<Instant>,
    /// When we last asked the peer for its table, while its answer is not
    /// known to be complete.
    pub(super) resync_pending_since: Option<Instant>,
    /// After an out-of-sync recovery: when its RESYNC was asked for. The
    /// external flows not refreshed since then are removed once the answer
    /// is complete (DESTROYs missed while out of sync).
    pub(super) sweep_before: Option<Instant>,
    /// Counters besides the engine's.
    pub(super) counters: ChannelCounters,
    /// This iteration's datagrams, sealed, sent together (`sendmmsg`);
    /// what the socket refused (would block) stays, in order, and goes
    /// first next time. At most [`SEND_BUDGET`] datagrams.
    unsent: DatagramBatch,
    /// A datagram of a new incarnation of a peer we had heard before
    /// arrived (not the first contact): it restarted.
    pub(super) restarted: bool,
    /// When a restart last started an export to the peer.
    pub(super) last_restart_export: Option<Instant>,
    /// When an answer to the peer's RESYNC last started.
    pub(super) last_resync_answer: Option<Instant>,
    /// A deferred RESYNC answer starts then.
    pub(super) resync_answer_at: Option<Instant>,
}

impl PeerChannel {
    /// A channel to the peer at `addr` with a fresh engine; asks the peer
    /// for its table when `cfg.startup_resync`.
    pub(super) fn new(
        cfg: &SyncConfig,
        node: Option<u32>,
        addr: IpAddr,
        dest: Option<SocketAddr>,
        now: Instant,
    ) -> PeerChannel {
        let mut engine = Engine::new(
            engine_config(cfg),
            WireCodec::new(EncodeOptions {
                tcp_window_tracking: cfg.tcp_window_tracking,
                ..EncodeOptions::default()
            }),
            now,
        );
        if cfg.startup_resync {
            engine.request_resync(now);
        }
        PeerChannel {
            node,
            addr,
            dest,
            engine,
            cache: ExternalCache::new(cfg.external_capacity),
            export: Export::default(),
            last_heard: None,
            resync_pending_since: cfg.startup_resync.then_some(now),
            sweep_before: None,
            counters: ChannelCounters::default(),
            unsent: DatagramBatch::default(),
            restarted: false,
            last_restart_export: None,
            last_resync_answer: None,
            resync_answer_at: None,
        }
    }

    /// Whether the peer was heard within `alive3` (three ALIVE intervals).
    pub(super) fn up(&self, now: Instant, alive3: Duration) -> bool {
        self.last_heard
            .is_some_and(|t| now.saturating_duration_since(t) <= alive3)
    }

    /// `up`, `out_of_sync` (heard, but every message of late was stale;
    /// see [`Engine::out_of_sync`]), `down` or `unknown` (never heard).
    pub(super) fn state_name(&self, now: Instant, alive3: Duration) -> &'static str {
        match self.last_heard {
            None => "unknown",
            Some(_) if self.up(now, alive3) && self.engine.out_of_sync(now) => "out_of_sync",
            Some(_) if self.up(now, alive3) => "up",
            Some(_) => "down",
        }
    }

    /// Our HELLO handshake with this peer, as the console names it.
    pub(super) fn hello_name(&self) -> &'static str {
        match self.engine.hello_state() {
            HelloState::Init => "init",
            HelloState::Say => "say",
            HelloState::Done => "done",
        }
    }

    /// The peer asked for our table: whether to start the answer now (see
    /// [`RESYNC_ANSWER_HOLDOFF`]); if not, it is scheduled and counted.
    pub(super) fn take_resync_request(&mut self, now: Instant) -> bool {
        self.counters.resyncs_in += 1;
        // Even while an answer is still being queued: joining it would
        // walk the table again for every request.
        match self.last_resync_answer {
            Some(t) if now.saturating_duration_since(t) < RESYNC_ANSWER_HOLDOFF => {
                self.counters.resyncs_deferred += 1;
                self.resync_answer_at
                    .get_or_insert(t + RESYNC_ANSWER_HOLDOFF);
                false
            }
            _ => {
                self.last_resync_answer = Some(now);
                true
            }
        }
    }

    /// Whether a deferred RESYNC answer is due now (then it starts).
    pub(super) fn deferred_resync_due(&mut self, now: Instant) -> bool {
        if self.resync_answer_at.is_some_and(|t| t <= now) {
            self.resync_answer_at = None;
            self.last_resync_answer = Some(now);
            return true;
        }
        false
    }

    /// Asks the peer for its table.
    pub(super) fn request_resync(&mut self, now: Instant) {
        self.engine.request_resync(now);
        self.resync_pending_since = Some(now);
    }

    /// Queues a walk of every worker's shard with `filter`; false when a
    /// bucket walk did not fit (nothing is queued then).
    pub(super) fn export_workers(&mut self, workers: usize, filter: ExportFilter) -> bool {
        if filter.is_some() && !self.export.has_room(workers) {
            return false;
        }
        for w in 0..workers {
            self.export.add(w, filter.clone());
        }
        true
    }

    /// A datagram from the peer's address, into the engine. Only one with at least one
    /// FT-FW message (a valid header) counts as hearing from the peer: an
    /// empty or garbage datagram from its address is counted malformed
    /// and cannot keep a silent peer looking `up`.
    pub(super) fn on_datagram(&mut self, now: Instant, data: &[u8], alive: Duration) {
        self.note_alive(now, data, alive);
        let before = self.engine.stats();
        self.engine.handle_datagram(now, data);
        let after = self.engine.stats();
        if after.msgs_in == before.msgs_in {
            return;
        }
        let heard = self.last_heard.replace(now).is_some();
        if heard && after.peer_restarts > before.peer_restarts {
            self.restarted = true;
        }
    }

    /// Completion of a resync answer. FT-FW does not mark the end of a bulk,
    /// so we infer it: a sender fills its datagrams with queued flow
    /// messages behind any control message, so a datagram of control
    /// messages only (ALIVE, ACK) means the peer had no flow left to send.
    /// One that arrives at least two ALIVE intervals after our request (time
    /// for the request to arrive and the bulk to start) comes after the
    /// whole answer.
    fn note_alive(&mut self, now: Instant, d: &[u8], alive: Duration) {
        let Some(since) = self.resync_pending_since else {
            return;
        };
        if now.saturating_duration_since(since) < alive * 2 {
            return;
        }
        let mut off = 0;
        let mut seen = 0;
        while off < d.len() {
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
            tracing::info!(peer = %self.addr, "resync from the peer complete");
            if let Some(t) = self.sweep_before.take() {
                let n = self.cache.sweep_older(t);
                tracing::info!(peer = %self.addr, removed = n,
                    "external flows the resync answer did not refresh removed");
            }
        }
    }

    /// Feeds the running export: buffered states into the engine as far as
    /// it has room (none while `backlogged`), collects an answered chunk,
    /// asks for the next one. Returns how much it did.
    pub(super) fn pump_export(
        &mut self,
        now: Instant,
        workers: &[Arc<WorkerShared>],
        backlogged: bool,
    ) -> usize {
        if !self.export.running() {
            return 0;
        }
        let mut work = 0;
        // Flow control: at most EXPORT_WINDOW messages and half the resend
        // queue unacknowledged (in
        // flight or queued). A bulk pushed faster than the link and the
        // peer take it would overflow the resend queue: the oldest entries
        // would be dropped before their loss is repaired, the peer would
        // jump the gap, and the export would end acknowledged but
        // incomplete (a migration of 1M flows lost 43% that way).
        let window = (self.engine.config().resend_queue_max / 2).min(EXPORT_WINDOW);
        let st = self.engine.stats();
        let unacked = st.resend_queue_depth + st.tx_queue_depth;
        let space = if backlogged {
            0
        } else {
            self.engine
                .tx_space()
                .min(self.export.buffer.len())
                .min(window.saturating_sub(unacked))
        };
        if space > 0 {
            let buf = &mut self.export.buffer;
            let n = self
                .engine
                .push_bulk(now, std::iter::from_fn(|| buf.pop_front()).take(space));
            self.counters.exported += n as u64;
            work += n;
        }
        if let Some((rx, w, filter)) = &self.export.inflight {
            match rx.try_recv() {
                Ok((states, next)) => {
                    if filter.is_some() {
                        self.export
                            .buffer
                            .extend(states.into_iter().filter(|s| passes(filter, s)));
                    } else {
                        self.export.buffer.extend(states);
                    }
                    if let Some(slot) = next {
                        self.export.todo.push_front((*w, slot, filter.clone()));
                    }
                    self.export.inflight = None;
                    work += 1;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    tracing::warn!(worker = *w, "a worker dropped an export request");
                    self.export.inflight = None;
                }
            }
        }
        if self.export.inflight.is_none() && self.export.buffer.len() < EXPORT_CHUNK {
            if let Some((w, from, filter)) = self.export.todo.pop_front() {
                let (tx, rx) = mpsc::channel();
                let cmd = Command::Export {
                    from,
                    max: EXPORT_CHUNK,
                    reply: tx,
                };
                match workers.get(w).map(|s| s.send(cmd)) {
                    Some(Ok(())) => self.export.inflight = Some((rx, w, filter)),
                    Some(Err(_)) => self.export.todo.push_front((w, from, filter)),
                    None => {}
                }
                work += 1;
            }
        }
        if !self.export.running() {
            self.counters.exports += 1;
            tracing::info!(
                peer = %self.addr,
                flows = self.counters.exported,
                "export to the peer queued completely"
            );
        }
        work
    }

    /// Sends what the engine has for this peer, at most [`SEND_BUDGET`]
    /// datagrams, through `link`: first what the socket refused last time,
    /// then (when that all went) the engine's next datagrams, sealed, in
    /// one batch. Returns how many went out (or were lost and counted).
    pub(super) fn transmit(
        &mut self,
        now: Instant,
        link: &mut Link,
        buf: &mut Vec<u8>,
        seal: &mut Sealing,
    ) -> usize {
        let mut n = self.send_unsent(link);
        if !self.unsent.is_empty() {
            return n;
        }
        while n + self.unsent.len() < SEND_BUDGET && self.engine.poll_transmit(now, buf) {
            seal.push(buf, &mut self.unsent);
        }
        n += self.send_unsent(link);
        n
    }

    /// Sends the batch in `unsent` until it is empty or the socket would
    /// block. A datagram that fails otherwise is lost, counted
    /// (`send_errors`) and skipped, and the rest still go: the protocol
    /// recovers it (NACK or the peer's resync). Returns how many left the
    /// batch.
    fn send_unsent(&mut self, link: &mut Link) -> usize {
        let mut from = 0;
        while from < self.unsent.len() {
            match link.send_batch(self.dest, &self.unsent, from) {
                Ok(0) => break,
                Ok(k) => from += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.counters.send_errors += 1;
                    tracing::debug!(error = %e, peer = %self.addr, "sync link send error");
                    from += 1;
                }
            }
        }
        self.unsent.consume(from);
        from
    }

    /// Datagrams the socket refused, waiting to go first.
    #[cfg(test)]
    pub(super) fn unsent(&self) -> usize {
        self.unsent.len()
    }

    /// Queues `d` as if the socket had refused it.
    #[cfg(test)]
    pub(super) fn queue_unsent(&mut self, d: &[u8]) {
        self.unsent.push(d);
    }
}

/// Authenticated replication's state on the send side: the keys and
/// counter (`None`: plain datagrams) and a buffer for the sealed one.
#[derive(Debug, Default)]
pub(super) struct Sealing {
    pub(super) auth: Option<auth::SyncAuth>,
    pub(super) buf: Vec<u8>,
}

impl Sealing {
    /// Appends `d` to `out` as it goes on the wire (sealed in
    /// authenticated mode).
    fn push(&mut self, d: &[u8], out: &mut DatagramBatch) {
        match &mut self.auth {
            Some(a) => {
                a.seal(d, auth::unix_micros(), &mut self.buf);
                out.push(&self.buf);
            }
            None => out.push(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(bs: &[u32]) -> ExportFilter {
        Some(Arc::new(BucketSet::from_iter_in(16, bs.iter().copied())))
    }

    #[test]
    fn export_walks_are_deduplicated_and_a_full_walk_covers_bucket_walks() {
        let mut e = Export::default();
        assert!(e.add(0, set(&[1])));
        assert!(e.add(0, set(&[1])));
        assert!(e.add(0, set(&[2])));
        assert!(e.add(1, set(&[1])));
        assert_eq!(e.todo.len(), 3);
        // A full walk of worker 0 replaces its bucket walks ...
        assert!(e.add(0, None));
        assert_eq!(e.todo.len(), 2);
        // ... and covers later ones.
        assert!(e.add(0, set(&[3])));
        assert!(e.add(0, None));
        assert_eq!(e.todo.len(), 2);
        assert!(e.running());
    }

    #[test]
    fn bucket_walks_are_bounded_but_full_walks_always_fit() {
        let mut e = Export::default();
        for b in 0..EXPORT_TODO_MAX {
            let w = b;
            assert!(e.add(w, set(&[1])));
        }
        assert!(!e.has_room(1));
        assert!(!e.add(EXPORT_TODO_MAX, set(&[1])));
        assert!(e.add(EXPORT_TODO_MAX, None));
        assert_eq!(e.todo.len(), EXPORT_TODO_MAX + 1);
    }

    #[test]
    fn filters_pass_the_flows_of_their_buckets() {
        use ftfw_dataplane::flow::{proto, FlowKey, Tuple};
        let st = |port: u16| FlowState {
            key: FlowKey {
                orig: Tuple::new(
                    std::net::Ipv4Addr::new(192, 0, 2, 1).into(),
                    std::net::Ipv4Addr::new(198, 51, 100, 1).into(),
                    proto::TCP,
                    port,
                    80,
                ),
                zone: 0,
            },
            tcp_state: ftfw_dataplane::flow::TcpState::Established,
            status: 0,
            timeout_secs: 300,
            mark: 0,
            wscale: [0, 0],
            counters: Default::default(),
            extras: Default::default(),
        };
        for p in 1000..1100 {
            let s = st(p);
            let b = bucket_of_key(&s.key, 16);
            assert!(passes(&None, &s));
            assert!(passes(&set(&[b]), &s));
            assert!(!passes(&set(&[(b + 1) % 16]), &s));
        }
    }
}
