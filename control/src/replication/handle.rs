//! The control thread's end of the sync thread: [`SyncHandle`] sends
//! [`SyncRequest`]s over a bounded channel and waits, with a timeout, for
//! the answer the sync thread sends back after its iteration.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ftfw_dataplane::flow::FlowState;

use crate::console::proto::{FlowFilter, FlowsListing, SyncStatusInfo};
use crate::import::ImportError;

/// How long the console waits for the sync thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a commit may take (64M flows at the largest capacity).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// What the control thread asks of the sync thread.
pub(super) enum SyncRequest {
    Status(Sender<SyncStatusInfo>),
    ExternalList {
        filter: FlowFilter,
        limit: usize,
        reply: Sender<FlowsListing>,
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
}

/// The control thread's end: requests to the sync thread and its stop.
#[derive(Debug)]
pub struct SyncHandle {
    pub(super) requests: SyncSender<SyncRequest>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) deltas: Arc<AtomicU64>,
    pub(super) thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SyncRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncRequest::Status(_) => "Status",
            SyncRequest::ExternalList { .. } => "ExternalList",
            SyncRequest::Snapshot(_) => "Snapshot",
            SyncRequest::Commit { .. } => "Commit",
            SyncRequest::Resync(_) => "Resync",
            SyncRequest::FlushExternal(_) => "FlushExternal",
            SyncRequest::ExportAll(_) => "ExportAll",
            SyncRequest::ExportForHandover(_) => "ExportForHandover",
            SyncRequest::HandoverAcked(_) => "HandoverAcked",
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

    /// The external cache's flows matching `filter`, at most `limit`.
    pub fn external_list(
        &self,
        filter: FlowFilter,
        limit: usize,
    ) -> Result<FlowsListing, SyncError> {
        self.ask(|reply| SyncRequest::ExternalList {
            filter,
            limit,
            reply,
        })
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
        // A commit is bounded by the cache size (about 1 s per million
        // flows here), not by the usual answer time.
        Ok(self.ask_within(COMMIT_TIMEOUT, |reply| SyncRequest::Commit { take, reply })??)
    }

    /// Queues a RESYNC request to the peer.
    pub fn resync(&self) -> Result<bool, SyncError> {
        self.ask(SyncRequest::Resync)
    }

    /// Empties the external cache; returns how many flows it held.
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
