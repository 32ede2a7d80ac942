//! The control thread's end of the sync thread: [`SyncHandle`] sends
//! [`SyncRequest`]s over a bounded channel and waits, with a timeout, for
//! the answer the sync thread sends back after its iteration.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ftfw_dataplane::buckets::BucketSet;
use ftfw_dataplane::flow::FlowState;
use ftfw_dataplane::worker::WorkerShared;

use super::peer::passes;
use super::replica::ReplicaMap;
use super::EXPORT_CHUNK;
use crate::console::proto::{FlowFilter, FlowsListing, PeerSyncInfo, SyncStatusInfo};
use crate::import::{ImportError, ANSWER_TIMEOUT};
use ftfw_dataplane::flow::FlowKey;
use ftfw_dataplane::worker::Command;

/// How long the console waits for the sync thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a commit may take (64M flows at the largest capacity).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// What the control thread asks of the sync thread.
pub(super) enum SyncRequest {
    Status(Sender<SyncStatusInfo>),
    /// The external expectation cache (`expect external`).
    ExpectExternal(Sender<Vec<crate::console::proto::ExpectJson>>),
    /// External flows matching `filter` from peer `from` (every peer when
    /// `None`).
    ExternalList {
        from: Option<u32>,
        filter: FlowFilter,
        limit: usize,
        reply: Sender<Result<FlowsListing, SyncError>>,
    },
    /// One piece of a streamed external listing (see [`ExternalPager`]).
    ExternalPage {
        at: (usize, usize),
        slots: usize,
        want: usize,
        filter: FlowFilter,
        reply: Sender<ExternalPage>,
    },
    /// The external cache's flows, for a commit.
    Snapshot(Sender<Vec<FlowState>>),
    /// Import the external cache into the shards (emptying it if `take`).
    Commit {
        take: bool,
        reply: Sender<Result<(usize, usize), ImportError>>,
    },
    Resync(Sender<bool>),
    FlushExternal(Sender<u64>),
    /// Send our whole table to the peer (after a takeover).
    ExportAll(Sender<()>),
    /// Send our whole table and remember when it was all sent (planned
    /// handover).
    ExportForHandover(Sender<()>),
    /// Whether the peer acknowledged everything up to the end of that
    /// export (`None`: no handover export was asked for).
    HandoverAcked(Sender<Option<bool>>),
    /// Which peers get the changes of which bucket (`None`: every peer).
    SetReplicaMap {
        map: Option<Arc<ReplicaMap>>,
        reply: Sender<Result<(), SyncError>>,
    },
    /// See [`SyncHandle::commit_buckets`].
    CommitBuckets {
        from: Option<u32>,
        buckets: BucketSet,
        take: bool,
        reply: Sender<Result<(usize, usize), SyncError>>,
    },
    /// See [`SyncHandle::flush_buckets`].
    FlushBuckets {
        to: u32,
        buckets: BucketSet,
        reply: Sender<Result<u64, SyncError>>,
    },
    /// See [`SyncHandle::flush_acked`].
    FlushAcked {
        token: u64,
        reply: Sender<Option<bool>>,
    },
    /// See [`SyncHandle::prune_external`].
    PruneExternal {
        owned: Vec<(u32, BucketSet)>,
        reply: Sender<usize>,
    },
    /// See [`SyncHandle::peers_status`].
    PeersStatus(Sender<Vec<PeerSyncInfo>>),
}

/// Why a request to the sync thread failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Its request queue is full, or it has stopped.
    #[error("the sync thread is busy or stopped")]
    Busy,
    /// It did not answer in time.
    #[error("the sync thread did not answer")]
    NoAnswer,
    /// A commit into the shards failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// No replication channel to that cluster node (not a member, or this
    /// node replicates to a classic pair's single peer).
    #[error("node {0} is not a sync peer")]
    UnknownPeer(u32),
    /// A request that makes no sense as given (a replica map of no
    /// buckets, a bucket set of another size than the map's).
    #[error("{0}")]
    Invalid(String),
}

/// One piece of an external listing: the flows of a range of cache
/// slots, in cache order (every peer's cache in turn).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExternalPage {
    /// The first `want` flows of the range that match the filter.
    pub flows: Vec<crate::console::proto::FlowJson>,
    /// Every match in the range, listed or not.
    pub matched: u64,
    /// Where the next piece starts (peer channel, slot); `None`: the end.
    pub next: Option<(usize, usize)>,
}

/// Asks the sync thread for an external listing a piece at a time, from
/// any thread ([`SyncHandle::external_pager`]).
#[derive(Clone, Debug)]
pub struct ExternalPager {
    requests: SyncSender<SyncRequest>,
}

impl ExternalPager {
    /// The piece at `at` (start at `(0, 0)`): at most `slots` cache slots
    /// looked at, at most `want` flows listed.
    pub fn page(
        &self,
        at: (usize, usize),
        slots: usize,
        want: usize,
        filter: &FlowFilter,
    ) -> Result<ExternalPage, SyncError> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .try_send(SyncRequest::ExternalPage {
                at,
                slots,
                want,
                filter: filter.clone(),
                reply: tx,
            })
            .map_err(|_| SyncError::Busy)?;
        rx.recv_timeout(REQUEST_TIMEOUT)
            .map_err(|_| SyncError::NoAnswer)
    }
}

/// The control thread's end: requests to the sync thread and its stop.
#[derive(Debug)]
pub struct SyncHandle {
    pub(super) requests: SyncSender<SyncRequest>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) deltas: Arc<AtomicU64>,
    pub(super) thread: Option<JoinHandle<()>>,
    /// The workers (evictions walk their shards from the caller's thread).
    pub(super) workers: Vec<Arc<WorkerShared>>,
}

impl std::fmt::Debug for SyncRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncRequest::Status(_) => "Status",
            SyncRequest::ExpectExternal(_) => "ExpectExternal",
            SyncRequest::ExternalList { .. } => "ExternalList",
            SyncRequest::ExternalPage { .. } => "ExternalPage",
            SyncRequest::Snapshot(_) => "Snapshot",
            SyncRequest::Commit { .. } => "Commit",
            SyncRequest::Resync(_) => "Resync",
            SyncRequest::FlushExternal(_) => "FlushExternal",
            SyncRequest::ExportAll(_) => "ExportAll",
            SyncRequest::ExportForHandover(_) => "ExportForHandover",
            SyncRequest::HandoverAcked(_) => "HandoverAcked",
            SyncRequest::SetReplicaMap { .. } => "SetReplicaMap",
            SyncRequest::CommitBuckets { .. } => "CommitBuckets",
            SyncRequest::FlushBuckets { .. } => "FlushBuckets",
            SyncRequest::FlushAcked { .. } => "FlushAcked",
            SyncRequest::PruneExternal { .. } => "PruneExternal",
            SyncRequest::PeersStatus(_) => "PeersStatus",
        })
    }
}

impl SyncHandle {
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> SyncRequest) -> Result<T, SyncError> {
        self.ask_within(REQUEST_TIMEOUT, make)
    }

    fn ask_within<T>(
        &self,
        timeout: Duration,
        make: impl FnOnce(Sender<T>) -> SyncRequest,
    ) -> Result<T, SyncError> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .try_send(make(tx))
            .map_err(|_| SyncError::Busy)?;
        rx.recv_timeout(timeout).map_err(|_| SyncError::NoAnswer)
    }

    /// Replication state and counters.
    pub fn status(&self) -> Result<SyncStatusInfo, SyncError> {
        self.ask(SyncRequest::Status)
    }

    /// The external cache's flows matching `filter`, at most `limit` (in a
    /// cluster: every peer's cache).
    pub fn external_list(
        &self,
        filter: FlowFilter,
        limit: usize,
    ) -> Result<FlowsListing, SyncError> {
        self.external_list_from(None, filter, limit)
    }

    /// The flows cluster node `from` replicated to us (every peer's when
    /// `None`) matching `filter`, at most `limit`: which flows a node would
    /// take over from that peer. [`SyncError::UnknownPeer`] when `from` is
    /// not a sync peer.
    pub fn external_list_from(
        &self,
        from: Option<u32>,
        filter: FlowFilter,
        limit: usize,
    ) -> Result<FlowsListing, SyncError> {
        self.ask(|reply| SyncRequest::ExternalList {
            from,
            filter,
            limit,
            reply,
        })?
    }

    /// Asks for an external listing a piece at a time (`ftfwctl external
    /// list`, streamed; see `appliance/external_stream.rs`).
    pub fn external_pager(&self) -> ExternalPager {
        ExternalPager {
            requests: self.requests.clone(),
        }
    }

    /// A copy of the external cache (timeouts aged), for a commit.
    pub fn external_snapshot(&self) -> Result<Vec<FlowState>, SyncError> {
        self.ask(SyncRequest::Snapshot)
    }

    /// Imports the external cache into the shards, streaming from the sync
    /// thread (see [`ExternalCache::commit_into`](super::ExternalCache::commit_into)); `take` empties it.
    /// The sync thread does nothing else meanwhile (well under a second at
    /// 1M flows). Returns (inserted or replaced, refused).
    pub fn commit(&self, take: bool) -> Result<(usize, usize), SyncError> {
        let span = tracing::info_span!("commit", take);
        let _in = span.enter();
        let t0 = std::time::Instant::now();
        // A commit is bounded by the cache size (about 1 s per million
        // flows here), not by the usual answer time.
        let r = self.ask_within(COMMIT_TIMEOUT, |reply| SyncRequest::Commit { take, reply })?;
        match &r {
            Ok((committed, refused)) => tracing::info!(
                committed,
                refused,
                micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
                "external cache committed to the flow table"
            ),
            Err(e) => tracing::warn!(error = %e, "commit failed"),
        }
        Ok(r?)
    }

    /// Queues a RESYNC request to the peer.
    pub fn resync(&self) -> Result<bool, SyncError> {
        let span = tracing::info_span!("resync");
        let _in = span.enter();
        let queued = self.ask(SyncRequest::Resync)?;
        tracing::info!(queued, "resync requested from the peer");
        Ok(queued)
    }

    /// The peer's expectations in the external expectation cache
    /// (`[sync] expectations`), with the seconds each has left.
    pub fn external_expectations(
        &self,
    ) -> Result<Vec<crate::console::proto::ExpectJson>, SyncError> {
        self.ask(SyncRequest::ExpectExternal)
    }

    /// Empties the external cache (flows and expectations); returns the
    /// flows it held.
    pub fn flush_external(&self) -> Result<u64, SyncError> {
        self.ask(SyncRequest::FlushExternal)
    }

    /// Queues a full export of every shard to the peer (what a new primary
    /// does so that the old one, back as a backup, has our table).
    pub fn export_all(&self) -> Result<(), SyncError> {
        self.ask(SyncRequest::ExportAll)
    }

    /// Starts a full export for a planned handover; see
    /// [`SyncHandle::handover_acked`].
    pub fn export_for_handover(&self) -> Result<(), SyncError> {
        self.ask(SyncRequest::ExportForHandover)
    }

    /// Whether the peer has acknowledged every message sent up to the end
    /// of the handover export: then it holds our whole table. `None` when
    /// no handover export was started.
    pub fn handover_acked(&self) -> Result<Option<bool>, SyncError> {
        self.ask(SyncRequest::HandoverAcked)
    }

    /// Cluster: which peers receive the changes (and RESYNC answers and
    /// re-exports) of the flows of each bucket; `None` (the default) sends
    /// everything to every peer. Ids in the map that are not sync peers
    /// (this node's own, say) are ignored. A peer that newly backs up a
    /// bucket does not get its existing flows from this: the driver sends
    /// them with [`SyncHandle::flush_buckets`]. Refused in a classic pair.
    pub fn set_replica_map(&self, map: Option<Arc<ReplicaMap>>) -> Result<(), SyncError> {
        self.ask(|reply| SyncRequest::SetReplicaMap { map, reply })?
    }

    /// Cluster takeover of buckets from a dead node: imports into our shards
    /// (without deltas, as [`SyncHandle::commit`]) the cached flows that
    /// node `from` (any peer when `None`) replicated to us whose bucket is
    /// in `buckets` (its universe is the cluster's bucket count), removing
    /// them from that cache when `take`; then queues our flows of those
    /// buckets for export to every other peer (each gets those of its
    /// replica buckets), so their caches of *this* node hold them. Returns
    /// (inserted or replaced, refused because a table was full).
    pub fn commit_buckets(
        &self,
        from: Option<u32>,
        buckets: &BucketSet,
        take: bool,
    ) -> Result<(usize, usize), SyncError> {
        let buckets = buckets.clone();
        self.ask_within(COMMIT_TIMEOUT, |reply| SyncRequest::CommitBuckets {
            from,
            buckets,
            take,
            reply,
        })?
    }

    /// Planned move of buckets to node `to`: queues our shards' flows of
    /// `buckets` for export to `to` only. Returns a token for
    /// [`SyncHandle::flush_acked`]. [`SyncError::Busy`] when too many
    /// exports already wait for that peer (try again later).
    pub fn flush_buckets(&self, to: u32, buckets: &BucketSet) -> Result<u64, SyncError> {
        let buckets = buckets.clone();
        self.ask(|reply| SyncRequest::FlushBuckets { to, buckets, reply })?
    }

    /// Whether the peer of a [`SyncHandle::flush_buckets`] has acknowledged
    /// every message we sent up to the end of that flush (then it holds
    /// those flows): `Some(false)` while not, `None` for a token unknown
    /// (never given, or forgotten: the newest 256 are kept).
    pub fn flush_acked(&self, token: u64) -> Result<Option<bool>, SyncError> {
        self.ask(|reply| SyncRequest::FlushAcked { token, reply })
    }

    /// After a move settled, the old owner drops its own flows of
    /// `buckets` from the shards without emitting deltas (no DESTROY goes
    /// to the peers: the new owner keeps the flows alive). Walks the
    /// shards from the caller's thread. Returns how many were removed.
    pub fn evict_buckets(&self, buckets: &BucketSet) -> Result<usize, SyncError> {
        evict(&self.workers, buckets)
    }

    /// After a move settled, drops from each listed peer's cache the flows
    /// whose bucket that peer no longer owns: `owned` gives, per node, the
    /// buckets it owns now. Nodes not listed (or not peers) keep their
    /// cache. Returns how many flows were dropped.
    pub fn prune_external(&self, owned: Vec<(u32, BucketSet)>) -> Result<usize, SyncError> {
        self.ask(|reply| SyncRequest::PruneExternal { owned, reply })
    }

    /// Per peer: its link state and counters (one entry in a pair).
    pub fn peers_status(&self) -> Result<Vec<PeerSyncInfo>, SyncError> {
        self.ask(SyncRequest::PeersStatus)
    }

    /// Deltas the sync thread has taken from the workers' rings.
    pub fn deltas_consumed(&self) -> u64 {
        self.deltas.load(Ordering::Relaxed)
    }

    /// Stops the thread (after one last transmit) and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes our shards' flows of `buckets` without deltas: each shard is
/// walked with `Command::Export`, the keys of those buckets collected, then
/// removed with `Command::RemoveImported`. Returns how many were removed.
fn evict(workers: &[Arc<WorkerShared>], buckets: &BucketSet) -> Result<usize, SyncError> {
    let f = Some(Arc::new(buckets.clone()));
    let mut removed = 0;
    for w in workers {
        let mut keys: Vec<FlowKey> = Vec::new();
        let mut from = Some(0u32);
        while let Some(slot) = from {
            let (tx, rx) = mpsc::channel();
            send_cmd(
                w,
                Command::Export {
                    from: slot,
                    max: EXPORT_CHUNK,
                    reply: tx,
                },
            )?;
            let (states, next) = rx
                .recv_timeout(ANSWER_TIMEOUT)
                .map_err(|_| SyncError::NoAnswer)?;
            keys.extend(states.iter().filter(|s| passes(&f, s)).map(|s| s.key));
            from = next;
        }
        while !keys.is_empty() {
            let rest = keys.split_off(keys.len().saturating_sub(EXPORT_CHUNK));
            let (tx, rx) = mpsc::channel();
            send_cmd(
                w,
                Command::RemoveImported {
                    keys: rest,
                    reply: Some(tx),
                },
            )?;
            removed += rx
                .recv_timeout(ANSWER_TIMEOUT)
                .map_err(|_| SyncError::NoAnswer)?;
        }
    }
    tracing::info!(buckets = %buckets.ranges(), removed, "evicted our flows of some buckets");
    Ok(removed)
}

/// Sends `cmd` to worker `w`, retrying while its queue is full.
fn send_cmd(w: &WorkerShared, mut cmd: Command) -> Result<(), SyncError> {
    let deadline = Instant::now() + QUEUE_RETRY;
    loop {
        match w.send(cmd) {
            Ok(()) => return Ok(()),
            Err(back) if Instant::now() < deadline => {
                cmd = back;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(_) => return Err(SyncError::Busy),
        }
    }
}

/// How long a worker's full command queue is retried.
pub(super) const QUEUE_RETRY: Duration = Duration::from_secs(5);
