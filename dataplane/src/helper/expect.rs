//! The per-worker expectation table: connections a helper announced,
//! waiting for their first packet.
//!
//! Bounded: at most `capacity` expectations (a full table refuses new ones
//! and counts them) and at most one per master flow and helper (a newer
//! announce replaces the older one, as Linux does with the FTP helper's
//! `max_expected` of 1). Expectations time out; a matched expectation is
//! removed (the new flow is RELATED once). Kept as a small vector: lookups
//! happen only for new flows while the table is not empty, and the table
//! holds a few entries per active control connection.

use crate::flow::{Addr, FlowKey, Tuple};

use super::Helper;

/// How a connection announced by a translated master is translated: it
/// follows the master's NAT (Linux's `nf_nat_follow_master`). The
/// announce was rewritten to the translated address and port; the
/// expected flow's reply comes from the address and port the announcer
/// really listens on, `reply_src:reply_src_port`, and goes to
/// `reply_dst` (the other end as the announcer knows it), at the new
/// flow's source port (remapped if that clashes or would steer the reply
/// to another worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectNat {
    /// The announcer's own address.
    pub reply_src: Addr,
    /// The port it announced.
    pub reply_src_port: u16,
    /// The other end's address, as the announcer's side sees it.
    pub reply_dst: Addr,
}

/// One expected connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// The master flow (the control connection) that announced it.
    pub master: FlowKey,
    /// The expected flow's original tuple; `src_port` 0 matches any source
    /// port.
    pub tuple: Tuple,
    /// The helper that announced it.
    pub helper: Helper,
    /// Second (worker clock) it expires at.
    pub expires: u32,
    /// The translation it follows (its master is translated), replicated
    /// with it (conntrackd's EXP_NAT_* attributes).
    pub nat: Option<ExpectNat>,
}

impl Expectation {
    /// Whether the first packet of a new flow with original tuple `t` in
    /// `zone` is the expected one.
    pub fn matches(&self, t: &Tuple, zone: u16) -> bool {
        let e = &self.tuple;
        zone == self.master.zone
            && e.proto == t.proto
            && e.v6 == t.v6
            && e.src == t.src
            && e.dst == t.dst
            && e.dst_port == t.dst_port
            && (e.src_port == 0 || e.src_port == t.src_port)
    }
}

/// Counters of an expectation table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpectStats {
    /// Expectations created (replacements included).
    pub created: u64,
    /// New flows that matched an expectation (became RELATED).
    pub matched: u64,
    /// Expectations that timed out unused.
    pub expired: u64,
    /// Expectations refused because the table was full.
    pub table_full: u64,
    /// Expectations removed because their master flow ended.
    pub master_ended: u64,
}

/// The expectations of one worker.
#[derive(Clone, Debug)]
pub struct ExpectTable {
    items: Vec<Expectation>,
    capacity: usize,
    stats: ExpectStats,
    /// Changes so far (insert, take, expiry, removal): replication looks
    /// at the table only when this moved.
    changes: u64,
}

/// Expectations one worker holds by default.
pub const DEFAULT_CAPACITY: usize = 1024;

impl Default for ExpectTable {
    fn default() -> Self {
        ExpectTable::new(DEFAULT_CAPACITY)
    }
}

impl ExpectTable {
    /// A table of at most `capacity` expectations (allocated up front).
    pub fn new(capacity: usize) -> ExpectTable {
        ExpectTable {
            items: Vec::with_capacity(capacity),
            capacity,
            stats: ExpectStats::default(),
            changes: 0,
        }
    }

    /// Changes so far (see [`SharedExpect::changes`]).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether no expectation is waiting.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Expectations waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The most it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counters.
    pub fn stats(&self) -> &ExpectStats {
        &self.stats
    }

    /// The expectations waiting (console, replication).
    pub fn iter(&self) -> impl Iterator<Item = &Expectation> {
        self.items.iter()
    }

    /// Adds `e` at second `now`, replacing the same master's earlier
    /// expectation of the same helper. Returns `false` (counted) if the
    /// table is full.
    pub fn insert(&mut self, now: u32, e: Expectation) -> bool {
        if let Some(old) = self
            .items
            .iter_mut()
            .find(|x| x.master == e.master && x.helper == e.helper)
        {
            *old = e;
            self.stats.created += 1;
            self.changes += 1;
            return true;
        }
        if self.items.len() >= self.capacity {
            self.expire(now);
        }
        if self.items.len() >= self.capacity {
            self.stats.table_full += 1;
            return false;
        }
        self.items.push(e);
        self.stats.created += 1;
        self.changes += 1;
        true
    }

    /// Takes the expectation the first packet of a new flow `t` in `zone`
    /// at second `now` matches, if any (an expired one matches nothing).
    pub fn take(&mut self, now: u32, t: &Tuple, zone: u16) -> Option<Expectation> {
        let i = self
            .items
            .iter()
            .position(|e| e.expires > now && e.matches(t, zone))?;
        self.stats.matched += 1;
        self.changes += 1;
        Some(self.items.swap_remove(i))
    }

    /// Whether an expectation of another master than `master` waits for
    /// the same connection as `t` (a translated announce then moves to
    /// another port).
    pub fn clashes(&self, now: u32, t: &Tuple, master: &FlowKey) -> bool {
        self.items.iter().any(|e| {
            e.expires > now
                && e.master != *master
                && e.tuple.dst == t.dst
                && e.tuple.dst_port == t.dst_port
                && e.tuple.src == t.src
                && e.tuple.proto == t.proto
        })
    }

    /// Whether the first packet of a new flow `t` in `zone` at second
    /// `now` would match an expectation (which stays).
    pub fn expects(&self, now: u32, t: &Tuple, zone: u16) -> bool {
        self.items
            .iter()
            .any(|e| e.expires > now && e.matches(t, zone))
    }

    /// Removes expectations due by second `now`; returns how many.
    pub fn expire(&mut self, now: u32) -> usize {
        let before = self.items.len();
        self.items.retain(|e| e.expires > now);
        let n = before - self.items.len();
        self.stats.expired += n as u64;
        if n > 0 {
            self.changes += 1;
        }
        n
    }

    /// Removes the expectations of `master` (it ended); returns how many.
    pub fn remove_with_master(&mut self, master: &FlowKey) -> usize {
        let n = self.remove_where(|e| e.master == *master);
        self.stats.master_ended += n as u64;
        n
    }

    /// Removes the expectations `f` picks (their master ended, a peer's
    /// expectation was withdrawn); returns how many.
    pub fn remove_where(&mut self, mut f: impl FnMut(&Expectation) -> bool) -> usize {
        let before = self.items.len();
        self.items.retain(|e| !f(e));
        let n = before - self.items.len();
        if n > 0 {
            self.changes += 1;
        }
        n
    }
}

/// The expectation table all workers of an appliance share: a data
/// connection's first packet reaches the worker its own tuple hashes to,
/// not its master's, and its source port is not known in advance. Workers
/// look only while `count` is not zero (one atomic load per new flow), so
/// the lock is taken only by new flows while some connection is expected
/// and by helpers creating expectations.
#[derive(Debug)]
pub struct SharedExpect {
    count: std::sync::atomic::AtomicUsize,
    changes: std::sync::atomic::AtomicU64,
    table: std::sync::Mutex<ExpectTable>,
}

impl Default for SharedExpect {
    fn default() -> Self {
        SharedExpect::new(DEFAULT_CAPACITY)
    }
}

impl SharedExpect {
    /// A shared table of at most `capacity` expectations.
    pub fn new(capacity: usize) -> SharedExpect {
        SharedExpect {
            count: std::sync::atomic::AtomicUsize::new(0),
            changes: std::sync::atomic::AtomicU64::new(0),
            table: std::sync::Mutex::new(ExpectTable::new(capacity)),
        }
    }

    /// Whether no connection is expected (no lock).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    /// Expectations waiting (no lock).
    pub fn len(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs `f` on the table under its lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut ExpectTable) -> R) -> R {
        // A worker that panicked holding the lock left a consistent table
        // (every method leaves it whole): keep using it.
        let mut t = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = f(&mut t);
        self.count
            .store(t.len(), std::sync::atomic::Ordering::Release);
        self.changes
            .store(t.changes(), std::sync::atomic::Ordering::Release);
        r
    }

    /// Changes to the table so far (no lock): the sync thread compares it
    /// with the last value it saw before it takes the lock to look.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }
}
