//! The neighbor table (ARP / NDP cache) without per-packet locks.
//!
//! Workers read an immutable [`NeighborTable`] snapshot (loaded once per
//! burst from an `ArcSwap`). What they learn (from ARP and NS/NA addressed
//! to us) becomes a [`NeighborUpdate`] pushed onto a bounded lock-free ring
//! (a full ring drops the update and the worker counts it); the control
//! thread drains the ring into the one mutable [`NeighborBook`], which
//! bounds the table ([`NeighborBook::capacity`], refusals counted), expires
//! entries nobody refreshed, and publishes a new snapshot when anything
//! changed. Misses are answered by a solicitation, rate-limited per
//! destination by each worker's [`SolicitLimiter`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::packet::ethernet::MacAddr;

use super::prefix::IpKey;

/// A worker re-pushes an entry it sees again after this long, so the
/// entry's age restarts; and probes (solicits) a neighbor whose entry is
/// older than this while still forwarding to it.
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);
/// Entries not refreshed for this long are removed.
pub const EXPIRE_AFTER: Duration = Duration::from_secs(600);
/// Least time between two solicitations of one destination by one worker.
pub const SOLICIT_INTERVAL: Duration = Duration::from_secs(1);

/// One neighbor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// Its MAC.
    pub mac: MacAddr,
    /// Appliance-wide index of the port it was learned on.
    pub port: u16,
    /// When it was last learned or confirmed.
    pub updated: Instant,
}

/// What a worker learned about one neighbor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborUpdate {
    /// Its address.
    pub ip: IpKey,
    /// What it says about itself.
    pub neighbor: Neighbor,
}

/// An immutable snapshot of the neighbor table.
#[derive(Clone, Debug, Default)]
pub struct NeighborTable {
    map: HashMap<IpKey, Neighbor>,
}

impl NeighborTable {
    /// The entry for `ip`.
    #[inline]
    pub fn get(&self, ip: &IpKey) -> Option<&Neighbor> {
        self.map.get(ip)
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry, sorted by address.
    pub fn entries(&self) -> Vec<(IpKey, Neighbor)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Whether a worker seeing `update` should push it: the entry is
    /// missing, different, or old enough to refresh.
    #[inline]
    pub fn needs_update(&self, ip: &IpKey, n: &Neighbor) -> bool {
        match self.map.get(ip) {
            None => true,
            Some(e) => {
                e.mac != n.mac
                    || e.port != n.port
                    || n.updated.saturating_duration_since(e.updated) >= REFRESH_AFTER
            }
        }
    }
}

/// The control thread's mutable table, published as [`NeighborTable`]s.
#[derive(Debug)]
pub struct NeighborBook {
    table: NeighborTable,
    capacity: usize,
    changed: bool,
    /// Updates refused because the table was full.
    pub full: u64,
    /// Entries learned or changed.
    pub learned: u64,
    /// Entries expired.
    pub expired: u64,
}

impl NeighborBook {
    /// An empty book holding at most `capacity` entries.
    pub fn new(capacity: usize) -> NeighborBook {
        NeighborBook {
            table: NeighborTable::default(),
            capacity,
            changed: false,
            full: 0,
            learned: 0,
            expired: 0,
        }
    }

    /// Most entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Applies one update; a new entry beyond the capacity is refused and
    /// counted.
    pub fn apply(&mut self, u: NeighborUpdate) {
        let len = self.table.map.len();
        match self.table.map.get_mut(&u.ip) {
            Some(e) => {
                if e.mac != u.neighbor.mac || e.port != u.neighbor.port {
                    self.learned += 1;
                    self.changed = true;
                }
                if u.neighbor.updated > e.updated || e.mac != u.neighbor.mac {
                    *e = u.neighbor;
                    self.changed = true;
                }
            }
            None if len >= self.capacity => self.full += 1,
            None => {
                self.table.map.insert(u.ip, u.neighbor);
                self.learned += 1;
                self.changed = true;
            }
        }
    }

    /// Removes entries not refreshed for [`EXPIRE_AFTER`] before `now`.
    pub fn expire(&mut self, now: Instant) {
        let before = self.table.map.len();
        self.table
            .map
            .retain(|_, n| now.saturating_duration_since(n.updated) < EXPIRE_AFTER);
        let gone = before - self.table.map.len();
        if gone > 0 {
            self.expired += gone as u64;
            self.changed = true;
        }
    }

    /// A new snapshot if anything changed since the last one.
    pub fn take_snapshot(&mut self) -> Option<NeighborTable> {
        std::mem::take(&mut self.changed).then(|| self.table.clone())
    }

    /// The current table.
    pub fn table(&self) -> &NeighborTable {
        &self.table
    }
}

/// Per-worker rate limit of solicitations: a small direct-mapped table of
/// (destination, last solicitation). A collision only makes a solicitation
/// possible early. Fixed size, no allocation after creation.
#[derive(Debug)]
pub struct SolicitLimiter {
    slots: Box<[Option<(IpKey, Instant)>; SolicitLimiter::SLOTS]>,
}

impl Default for SolicitLimiter {
    fn default() -> Self {
        SolicitLimiter {
            slots: Box::new([None; SolicitLimiter::SLOTS]),
        }
    }
}

impl SolicitLimiter {
    /// Slots.
    pub const SLOTS: usize = 256;

    /// Whether `ip` may be solicited at `now`; if so, remembers it.
    #[inline]
    pub fn allow(&mut self, ip: &IpKey, now: Instant) -> bool {
        let h = ip.addr.iter().fold(0usize, |h, &b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        let slot = &mut self.slots[h % Self::SLOTS];
        if let Some((k, t)) = slot {
            if k == ip && now.saturating_duration_since(*t) < SOLICIT_INTERVAL {
                return false;
            }
        }
        *slot = Some((*ip, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(ip: [u8; 4], mac: u8, at: Instant) -> NeighborUpdate {
        NeighborUpdate {
            ip: IpKey::v4(ip),
            neighbor: Neighbor {
                mac: [2, 0, 0, 0, 0, mac],
                port: 0,
                updated: at,
            },
        }
    }

    #[test]
    fn book_learns_bounds_expires_and_publishes() {
        let t0 = Instant::now();
        let mut b = NeighborBook::new(2);
        assert!(b.take_snapshot().is_none());
        b.apply(upd([192, 0, 2, 1], 1, t0));
        b.apply(upd([192, 0, 2, 2], 2, t0));
        b.apply(upd([192, 0, 2, 3], 3, t0));
        assert_eq!((b.full, b.learned), (1, 2));
        let s = b.take_snapshot().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(&IpKey::v4([192, 0, 2, 2])).unwrap().mac[5], 2);
        assert!(b.take_snapshot().is_none(), "nothing changed");
        // A changed MAC replaces the entry.
        b.apply(upd([192, 0, 2, 1], 9, t0));
        assert_eq!(
            b.take_snapshot()
                .unwrap()
                .get(&IpKey::v4([192, 0, 2, 1]))
                .unwrap()
                .mac[5],
            9
        );
        // Refreshed entries survive expiry, stale ones go.
        b.apply(upd([192, 0, 2, 2], 2, t0 + Duration::from_secs(500)));
        b.expire(t0 + EXPIRE_AFTER + Duration::from_secs(1));
        assert_eq!(b.expired, 1);
        let s = b.take_snapshot().unwrap();
        assert_eq!(s.entries().len(), 1);
        assert!(s.get(&IpKey::v4([192, 0, 2, 2])).is_some());
    }

    #[test]
    fn needs_update_only_when_new_changed_or_old() {
        let t0 = Instant::now();
        let mut b = NeighborBook::new(8);
        let u = upd([192, 0, 2, 1], 1, t0);
        assert!(b.table().needs_update(&u.ip, &u.neighbor));
        b.apply(u);
        let s = b.take_snapshot().unwrap();
        assert!(!s.needs_update(&u.ip, &u.neighbor));
        let later = Neighbor {
            updated: t0 + REFRESH_AFTER,
            ..u.neighbor
        };
        assert!(s.needs_update(&u.ip, &later));
        let moved = Neighbor {
            port: 1,
            ..u.neighbor
        };
        assert!(s.needs_update(&u.ip, &moved));
    }

    #[test]
    fn limiter() {
        let t0 = Instant::now();
        let mut l = SolicitLimiter::default();
        let a = IpKey::v4([198, 51, 100, 2]);
        assert!(l.allow(&a, t0));
        assert!(!l.allow(&a, t0 + Duration::from_millis(999)));
        assert!(l.allow(&a, t0 + SOLICIT_INTERVAL));
        assert!(l.allow(&IpKey::v4([198, 51, 100, 3]), t0));
    }
}
