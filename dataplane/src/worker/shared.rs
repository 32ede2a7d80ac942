//! What a worker shares with the control and sync threads: published
//! counters, the command queue, the delta ring and the atomic switches
//! (forwarding, buckets, defer, CPU accounting).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use super::{Command, PublishedCounters, PublishedPortStats, WorkerPort, DEFER_TIMEOUT_US};
use crate::conntrack::DeltaRing;

/// What a worker shares with the control thread.
#[derive(Debug)]
pub struct WorkerShared {
    /// Worker number.
    pub id: u16,
    /// Published counters.
    pub counters: PublishedCounters,
    /// Published port counters, by position in the worker's port list.
    pub ports: Vec<(String, u16, PublishedPortStats)>,
    /// Console commands for this worker.
    pub commands: ArrayQueue<Command>,
    /// The shard's delta ring.
    pub deltas: Arc<DeltaRing>,
    pub(super) stop: AtomicBool,
    /// Whether frames are forwarded (active node) or dropped and counted
    /// (backup node).
    pub(super) forwarding: AtomicBool,
    /// Cluster: the buckets this node forwards (off outside a cluster).
    pub buckets: crate::buckets::BucketOwnership,
    /// DPDK ports with symmetric RSS: how the NIC spreads flows over the
    /// workers (`None`: the software steering hash decides).
    pub rss: Option<crate::port::rss::RssModel>,
    /// Defer the first packets of new flows (set by the sync thread while
    /// `[sync] defer` is on and the peer is up).
    /// Synchronous writes: hold every packet that changed replicated
    /// state, not only first packets.
    pub(super) defer_every_change: AtomicBool,
    pub(super) defer_active: AtomicBool,
    /// The ring push count up to which the peer acknowledged every delta
    /// (published by the sync thread; held packets tagged at or below it
    /// go out).
    pub(super) defer_released: AtomicU64,
    /// The tag of the newest packet held (published by the worker).
    pub(super) defer_wanted: AtomicU64,
    /// How long a packet is held at most, in microseconds.
    pub(super) defer_timeout_us: AtomicU64,
    /// Count `busy_cpu_ns` (two thread-CPU-clock system calls per busy
    /// iteration; the lab's worker time): off unless asked for.
    pub(super) cpu_accounting: AtomicBool,
    /// Cluster: drop other members' frames in the kernel where the port
    /// can (`[cluster] kernel_filter`); read with the ownership's
    /// generation.
    pub(super) kernel_bucket_filter: AtomicBool,
    /// Bumped when `kernel_bucket_filter` changes.
    pub(super) filter_setting: AtomicU64,
}

impl WorkerShared {
    /// Starts (active node) or stops (backup node) forwarding; takes effect
    /// at the worker's next burst.
    pub fn set_forwarding(&self, on: bool) {
        self.forwarding.store(on, Ordering::Release);
    }

    /// Counts the thread CPU time of busy iterations (`busy_cpu_ns`); it
    /// costs two system calls per busy iteration, so it is off by default.
    pub fn set_cpu_accounting(&self, on: bool) {
        self.cpu_accounting.store(on, Ordering::Relaxed);
    }

    /// Cluster: whether the worker's ports drop the frames of buckets
    /// this node does not own in the kernel, where they can (AF_PACKET
    /// sockets; see `port::steer::bucket_filter_program`). Takes effect
    /// at the worker's next iteration.
    pub fn set_kernel_bucket_filter(&self, on: bool) {
        self.kernel_bucket_filter.store(on, Ordering::Relaxed);
        self.filter_setting.fetch_add(1, Ordering::Release);
    }

    /// Whether the worker forwards.
    pub fn is_forwarding(&self) -> bool {
        self.forwarding.load(Ordering::Acquire)
    }

    /// `[sync] write = "sync"`: while deferring is active, every packet
    /// that changed replicated state waits for the peer's acknowledgement
    /// (or the timeout), not only a new flow's first packet.
    pub fn set_defer_every_change(&self, on: bool) {
        self.defer_every_change.store(on, Ordering::Release);
    }

    /// Turns deferring of new flows' first packets on or off (see
    /// `worker/defer.rs`); off transmits every held packet at once.
    pub fn set_defer_active(&self, on: bool) {
        self.defer_active.store(on, Ordering::Release);
    }

    /// Whether the worker defers first packets.
    pub fn defer_active(&self) -> bool {
        self.defer_active.load(Ordering::Acquire)
    }

    /// Sets how long a first packet is held at most (at least 1 µs).
    pub fn set_defer_timeout(&self, t: Duration) {
        let us = u64::try_from(t.as_micros()).unwrap_or(u64::MAX).max(1);
        self.defer_timeout_us.store(us, Ordering::Relaxed);
    }

    /// Releases held packets tagged at or below `count` (a delta ring
    /// push count whose deltas the peer has acknowledged). Never moves
    /// back.
    pub fn release_deferred(&self, count: u64) {
        self.defer_released.fetch_max(count, Ordering::Release);
    }

    /// The release count published so far.
    pub fn deferred_released(&self) -> u64 {
        self.defer_released.load(Ordering::Acquire)
    }

    /// The tag of the newest packet held so far (0: none yet). Above
    /// [`WorkerShared::deferred_released`] while a packet waits.
    pub fn deferred_wanted(&self) -> u64 {
        self.defer_wanted.load(Ordering::Acquire)
    }

    /// Asks the worker to stop after its current iteration.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Queues a command; gives it back if the queue is full.
    pub fn send(&self, cmd: Command) -> Result<(), Command> {
        self.commands.push(cmd)
    }
}

impl WorkerShared {
    /// The shared state of worker `id` over `ports` and the shard's delta
    /// ring: forwarding, nothing deferred, CPU accounting off.
    pub(super) fn new(id: u16, ports: &[WorkerPort], ring: Arc<DeltaRing>) -> WorkerShared {
        WorkerShared {
            id,
            counters: PublishedCounters::default(),
            ports: ports
                .iter()
                .map(|p| {
                    (
                        p.port.name().to_string(),
                        p.index,
                        PublishedPortStats::default(),
                    )
                })
                .collect(),
            commands: ArrayQueue::new(64),
            deltas: ring,
            stop: AtomicBool::new(false),
            forwarding: AtomicBool::new(true),
            buckets: crate::buckets::BucketOwnership::default(),
            rss: ports.iter().find_map(|p| p.port.rss_model()),
            defer_active: AtomicBool::new(false),
            defer_every_change: AtomicBool::new(false),
            defer_released: AtomicU64::new(0),
            defer_wanted: AtomicU64::new(0),
            defer_timeout_us: AtomicU64::new(DEFER_TIMEOUT_US),
            cpu_accounting: AtomicBool::new(false),
            kernel_bucket_filter: AtomicBool::new(false),
            filter_setting: AtomicU64::new(0),
        }
    }
}
