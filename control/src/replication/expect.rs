//! Replication of confirmed expectations (`[sync] expectations`,
//! conntrackd's `ExpectationSync`).
//!
//! Sending: the workers share one expectation table
//! ([`SharedExpect`]), whose change counter is one atomic load. When it
//! moved (an announce, a use, an expiry: not per packet), and once a
//! second for timeouts, the sync thread copies the table (at most 1,024
//! entries)
//! under its lock and compares it with what the peers were told (`told`):
//! an expectation they have not heard of (or that changed: a newer
//! announce) goes out as EXP_NEW with the seconds it has left; one that is
//! gone (used by its data connection, timed out, removed with its master)
//! as EXP_DEL. Expectations exist only once a helper read a forwarded
//! packet of a confirmed master flow, so only confirmed expectations are
//! sent (SNE, section 4.1). A full export (RESYNC answer, re-export) sends
//! every expectation the peers were told as EXP_NEW too.
//!
//! Receiving: EXP messages land in the external expectation cache (NEW
//! replaces, UPDATE creates or updates, DESTROY removes; bounded by the
//! table's capacity, refusals counted), or in direct mode straight in the
//! shared table. A commit (`ftfwctl commit`, a takeover) puts the cached
//! expectations that have time left into the shared table, so a data
//! connection announced before a failover still opens after it. They are
//! then counted as told, so they are not sent back to the peer as new.
//! With the option off nothing is sent, and EXP messages from the peer are
//! acknowledged (sequence tracking as usual), counted
//! (`expectations_ignored`) and skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftfw_dataplane::flow::{FlowKey, Tuple};
use ftfw_dataplane::helper::{Expectation, SharedExpect};
use ftfw_sync::engine::FlowKind;

use super::peer::{passes_key, ExportFilter, PeerChannel};
use crate::console::proto::ExpectJson;

/// Look at the table at least this often (timeouts change nothing the
/// counter sees until a worker removes them).
const TIMEOUT_SCAN: Duration = Duration::from_secs(1);

/// The appliance's expectation table and the workers' clock.
#[derive(Clone, Debug)]
pub struct ExpectSource {
    /// The table the workers share.
    pub table: Arc<SharedExpect>,
    /// The workers' epoch (their `now` is whole seconds since it).
    pub epoch: Instant,
}

impl ExpectSource {
    /// The workers' clock at `now`.
    pub fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }
}

type Key = (FlowKey, Tuple);

fn key(e: &Expectation) -> Key {
    (e.master, e.tuple)
}

/// Counters shown in `sync status`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ExpectCounters {
    pub(super) sent: u64,
    pub(super) received: u64,
    pub(super) ignored: u64,
    pub(super) refused: u64,
    pub(super) committed: u64,
}

/// A peer's expectation as received: `exp.expires` is the seconds it had
/// left at `at`.
#[derive(Clone, Copy, Debug)]
struct Received {
    exp: Expectation,
    at: Instant,
}

impl Received {
    fn left(&self, now: Instant) -> u32 {
        let age =
            u32::try_from(now.saturating_duration_since(self.at).as_secs()).unwrap_or(u32::MAX);
        self.exp.expires.saturating_sub(age)
    }
}

/// The sync thread's expectation state (see the module docs).
pub(super) struct ExpectSync {
    enabled: bool,
    direct: bool,
    source: ExpectSource,
    /// What the peers were told, with the worker-clock expiry.
    told: HashMap<Key, Expectation>,
    seen_changes: u64,
    next_timeout_scan: Instant,
    /// The external expectation cache.
    external: HashMap<Key, Received>,
    capacity: usize,
    pub(super) counters: ExpectCounters,
}

impl ExpectSync {
    pub(super) fn new(enabled: bool, direct: bool, source: ExpectSource, now: Instant) -> Self {
        let capacity = source.table.with(|t| t.capacity());
        ExpectSync {
            enabled,
            direct,
            source,
            told: HashMap::new(),
            seen_changes: 0,
            next_timeout_scan: now + TIMEOUT_SCAN,
            external: HashMap::new(),
            capacity,
            counters: ExpectCounters::default(),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Expectations in the external cache with time left at `now`.
    pub(super) fn external_len(&self, now: Instant) -> usize {
        self.external.values().filter(|r| r.left(now) > 0).count()
    }

    /// Sends what changed in the shared table since the last look to
    /// every channel that backs up its master's bucket (`filter(i)`, the
    /// channel's replica filter, asked only when something changed; `None`
    /// without a replica map); returns the messages queued.
    pub(super) fn poll(
        &mut self,
        now: Instant,
        channels: &mut [PeerChannel],
        filter: impl Fn(usize) -> ExportFilter,
    ) -> usize {
        if !self.enabled {
            return 0;
        }
        let changes = self.source.table.changes();
        let timeouts = now >= self.next_timeout_scan;
        if changes == self.seen_changes && !timeouts {
            return 0;
        }
        self.seen_changes = changes;
        if timeouts {
            self.next_timeout_scan = now + TIMEOUT_SCAN;
        }
        let secs = self.source.secs(now);
        let filters: Vec<ExportFilter> = (0..channels.len()).map(filter).collect();
        let live: Vec<Expectation> = self
            .source
            .table
            .with(|t| t.iter().filter(|e| e.expires > secs).copied().collect());
        let mut n = 0;
        let mut current: HashMap<Key, Expectation> = HashMap::with_capacity(live.len());
        for e in live {
            current.insert(key(&e), e);
        }
        for (k, e) in &current {
            if self.told.get(k) != Some(e) {
                push(channels, &filters, now, FlowKind::New, relative(e, secs));
                n += 1;
            }
        }
        for (k, e) in &self.told {
            if !current.contains_key(k) {
                push(
                    channels,
                    &filters,
                    now,
                    FlowKind::Destroy,
                    relative(e, secs),
                );
                n += 1;
            }
        }
        self.told = current;
        self.counters.sent += n as u64;
        n
    }

    /// A full export to `ch`: every expectation the peers were told whose
    /// master passes `filter` (the channel's replica filter), as EXP_NEW.
    pub(super) fn export_to(&mut self, now: Instant, ch: &mut PeerChannel, filter: &ExportFilter) {
        if !self.enabled {
            return;
        }
        let secs = self.source.secs(now);
        for e in self
            .told
            .values()
            .filter(|e| e.expires > secs && passes_key(filter, &e.master))
        {
            ch.engine.push_expect(now, FlowKind::New, relative(e, secs));
            self.counters.sent += 1;
        }
    }

    /// An EXP message from the peer (`exp.expires`: seconds left).
    pub(super) fn apply(&mut self, now: Instant, kind: FlowKind, exp: Expectation) {
        if !self.enabled {
            self.counters.ignored += 1;
            return;
        }
        self.counters.received += 1;
        if self.direct {
            self.apply_direct(now, kind, exp);
            return;
        }
        let k = key(&exp);
        match kind {
            FlowKind::Destroy => {
                self.external.remove(&k);
            }
            FlowKind::New | FlowKind::Update => {
                if !self.external.contains_key(&k) && self.external.len() >= self.capacity {
                    self.drop_expired(now);
                }
                if !self.external.contains_key(&k) && self.external.len() >= self.capacity {
                    self.counters.refused += 1;
                    return;
                }
                self.external.insert(k, Received { exp, at: now });
            }
        }
    }

    fn apply_direct(&mut self, now: Instant, kind: FlowKind, exp: Expectation) {
        let secs = self.source.secs(now);
        let k = key(&exp);
        match kind {
            FlowKind::Destroy => {
                self.source.table.with(|t| t.remove_where(|e| key(e) == k));
                self.told.remove(&k);
            }
            FlowKind::New | FlowKind::Update => {
                let local = Expectation {
                    expires: secs.saturating_add(exp.expires),
                    ..exp
                };
                if self.source.table.with(|t| t.insert(secs, local)) {
                    self.told.insert(k, local);
                    self.counters.committed += 1;
                } else {
                    self.counters.refused += 1;
                }
            }
        }
    }

    fn drop_expired(&mut self, now: Instant) {
        self.external.retain(|_, r| r.left(now) > 0);
    }

    /// Puts the cached expectations with time left into the shared table
    /// (emptying the cache when `take`); returns (committed, refused).
    pub(super) fn commit(&mut self, now: Instant, take: bool) -> (usize, usize) {
        self.commit_matching(now, take, &None)
    }

    /// [`ExpectSync::commit`] of the expectations whose master passes
    /// `filter` (the buckets a cluster member takes over); `take` removes
    /// those from the cache.
    pub(super) fn commit_matching(
        &mut self,
        now: Instant,
        take: bool,
        filter: &ExportFilter,
    ) -> (usize, usize) {
        if !self.enabled {
            return (0, 0);
        }
        self.drop_expired(now);
        let secs = self.source.secs(now);
        let (mut done, mut refused) = (0, 0);
        let items: Vec<Expectation> = self
            .external
            .values()
            .filter(|r| passes_key(filter, &r.exp.master))
            .map(|r| Expectation {
                expires: secs.saturating_add(r.left(now)),
                ..r.exp
            })
            .collect();
        self.source.table.with(|t| {
            for e in &items {
                if t.insert(secs, *e) {
                    done += 1;
                } else {
                    refused += 1;
                }
            }
        });
        // Committed ones came from the peer: not news for it.
        for e in &items {
            self.told.insert(key(e), *e);
        }
        self.seen_changes = self.source.table.changes();
        if take {
            self.external
                .retain(|_, r| !passes_key(filter, &r.exp.master));
        }
        self.counters.committed += done as u64;
        self.counters.refused += refused as u64;
        (done, refused)
    }

    /// Empties the external cache; returns how many it held.
    pub(super) fn flush(&mut self) -> usize {
        let n = self.external.len();
        self.external.clear();
        n
    }

    /// The external cache, as `expect list` shows expectations.
    pub(super) fn external_list(&self, now: Instant) -> Vec<ExpectJson> {
        let mut v: Vec<&Received> = self.external.values().filter(|r| r.left(now) > 0).collect();
        v.sort_by_key(|r| {
            let (m, t) = (&r.exp.master.orig, &r.exp.tuple);
            (
                m.src, m.dst, m.src_port, m.dst_port, t.src, t.dst, t.dst_port,
            )
        });
        v.into_iter()
            .map(|r| ExpectJson::new(&r.exp, r.left(now)))
            .collect()
    }
}

/// `e` (worker-clock expiry) with the seconds it has left at `secs`, as
/// the engine sends it.
fn relative(e: &Expectation, secs: u32) -> Expectation {
    Expectation {
        expires: e.expires.saturating_sub(secs),
        ..*e
    }
}

fn push(
    channels: &mut [PeerChannel],
    filters: &[ExportFilter],
    now: Instant,
    kind: FlowKind,
    e: Expectation,
) {
    for (i, ch) in channels.iter_mut().enumerate() {
        if passes_key(filters.get(i).unwrap_or(&None), &e.master) {
            ch.engine.push_expect(now, kind, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::flow::proto;
    use ftfw_dataplane::helper::Helper;

    fn exp(i: u16, left: u32) -> Expectation {
        let c = "192.0.2.10".parse().unwrap();
        let s = "198.51.100.20".parse().unwrap();
        Expectation {
            master: FlowKey {
                orig: Tuple::new(c, s, proto::TCP, 40000 + i, 21),
                zone: 0,
            },
            tuple: Tuple::new(c, s, proto::TCP, 0, 50000 + i),
            helper: Helper::Ftp,
            expires: left,
            nat: None,
        }
    }

    fn sync(enabled: bool, capacity: usize, epoch: Instant) -> ExpectSync {
        let source = ExpectSource {
            table: Arc::new(SharedExpect::new(capacity)),
            epoch,
        };
        ExpectSync::new(enabled, false, source, epoch)
    }

    #[test]
    fn the_external_cache_is_bounded_and_follows_new_and_destroy() {
        let t0 = Instant::now();
        let mut x = sync(true, 2, t0);
        x.apply(t0, FlowKind::New, exp(1, 100));
        x.apply(t0, FlowKind::Update, exp(2, 100));
        x.apply(t0, FlowKind::New, exp(3, 100));
        assert_eq!(x.external_len(t0), 2);
        assert_eq!(x.counters.refused, 1);
        // NEW of a known one replaces it (no refusal), DESTROY removes.
        x.apply(t0, FlowKind::New, exp(2, 50));
        assert_eq!(x.counters.refused, 1);
        x.apply(t0, FlowKind::Destroy, exp(1, 0));
        assert_eq!(x.external_len(t0), 1);
        assert_eq!(x.counters.received, 5);
        // Expired ones make room.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(x.external_len(t1), 0);
        x.apply(t1, FlowKind::New, exp(4, 100));
        x.apply(t1, FlowKind::New, exp(5, 100));
        assert_eq!(x.external_len(t1), 2);
        assert_eq!(x.counters.refused, 1);
    }

    #[test]
    fn commit_ages_what_was_received_and_fills_the_table() {
        let t0 = Instant::now();
        let mut x = sync(true, 8, t0);
        let t1 = t0 + Duration::from_secs(5);
        x.apply(t1, FlowKind::New, exp(1, 100));
        x.apply(t1, FlowKind::New, exp(2, 20));
        let t2 = t1 + Duration::from_secs(30);
        assert_eq!(x.commit(t2, true), (1, 0), "the 20 s one expired");
        let got: Vec<Expectation> = x.source.table.with(|t| t.iter().copied().collect());
        // Worker clock 35 s + the 70 s it had left.
        assert_eq!(
            got,
            [Expectation {
                expires: 105,
                ..exp(1, 0)
            }]
        );
        assert_eq!(x.external_len(t2), 0, "taken");
        assert_eq!(x.counters.committed, 1);
        // Committed ones came from the peer: not told back as new.
        assert!(x.told.contains_key(&key(&got[0])));
    }

    /// A cluster member taking some buckets over commits the expectations
    /// of those buckets' control connections, and only those.
    #[test]
    fn a_bucket_commit_takes_the_expectations_of_its_buckets_only() {
        use ftfw_dataplane::buckets::{bucket_of_key, BucketSet};
        const B: u32 = 64;
        let t0 = Instant::now();
        let mut x = sync(true, 8, t0);
        let (a, b) = (exp(1, 100), exp(2, 100));
        let (ba, bb) = (bucket_of_key(&a.master, B), bucket_of_key(&b.master, B));
        assert_ne!(ba, bb, "the test needs two buckets");
        x.apply(t0, FlowKind::New, a);
        x.apply(t0, FlowKind::New, b);
        let only_a: ExportFilter = Some(Arc::new(BucketSet::from_iter_in(B, [ba])));
        assert_eq!(x.commit_matching(t0, true, &only_a), (1, 0));
        let got: Vec<FlowKey> = x
            .source
            .table
            .with(|t| t.iter().map(|e| e.master).collect());
        assert_eq!(got, [a.master]);
        // B's stays in the cache for whoever takes its bucket.
        assert_eq!(x.external_len(t0), 1);
        assert_eq!(x.commit(t0, true), (1, 0));
        assert_eq!(x.external_len(t0), 0);
    }

    /// In a cluster an expectation goes only to the channels whose replica
    /// filter holds its master's bucket (no filter: every channel).
    #[test]
    fn expectations_go_only_to_the_peers_that_back_up_their_masters_bucket() {
        use ftfw_dataplane::buckets::{bucket_of_key, BucketSet};
        const B: u32 = 64;
        let text = "[[port]]\nname = \"a\"\nbackend = \"mem\"\n\
                    [[port]]\nname = \"b\"\nbackend = \"mem\"\n\
                    [[bridge]]\nports = [\"a\", \"b\"]\n\
                    [sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n\
                    startup_resync = false\nexpectations = true\n";
        let cfg = crate::config::parse(text, "t.toml").unwrap().sync.unwrap();
        let t0 = Instant::now();
        let mut channels: Vec<PeerChannel> = ["192.0.2.2", "192.0.2.3", "192.0.2.4"]
            .iter()
            .map(|a| PeerChannel::new(&cfg, None, a.parse().unwrap(), None, t0))
            .collect();
        let mut x = sync(true, 8, t0);
        let (a, b) = (exp(1, 100), exp(2, 100));
        let (ba, bb) = (bucket_of_key(&a.master, B), bucket_of_key(&b.master, B));
        assert_ne!(ba, bb, "the test needs two buckets");
        x.source.table.with(|t| {
            assert!(t.insert(0, a));
            assert!(t.insert(0, b));
        });
        let set = |bs: &[u32]| Some(Arc::new(BucketSet::from_iter_in(B, bs.iter().copied())));
        // Channel 0 backs up A's bucket, channel 1 B's, channel 2 has no
        // replica map (a pair): it gets both.
        let filters = [set(&[ba]), set(&[bb]), None];
        assert_eq!(x.poll(t0, &mut channels, |i| filters[i].clone()), 2);
        let backlog: Vec<usize> = channels.iter().map(|c| c.engine.expect_backlog()).collect();
        assert_eq!(backlog, [1, 1, 2]);
        // A is used: its DESTROY goes where its NEW went.
        x.source
            .table
            .with(|t| t.remove_where(|e| e.master == a.master));
        assert_eq!(x.poll(t0, &mut channels, |i| filters[i].clone()), 1);
        let backlog: Vec<usize> = channels.iter().map(|c| c.engine.expect_backlog()).collect();
        assert_eq!(
            backlog,
            [1, 1, 2],
            "one message per expectation, the newest kind"
        );
    }

    #[test]
    fn with_the_option_off_messages_are_counted_and_skipped() {
        let t0 = Instant::now();
        let mut x = sync(false, 8, t0);
        x.apply(t0, FlowKind::New, exp(1, 100));
        assert_eq!(x.counters.ignored, 1);
        assert_eq!((x.counters.received, x.external_len(t0)), (0, 0));
        assert_eq!(x.commit(t0, true), (0, 0));
        assert_eq!(x.poll(t0, &mut [], |_| None), 0);
    }
}
