//! Routed mode: the dataplane as an IP router (with the same stateful
//! filter in its forwarding path).
//!
//! - [`arp`], [`nd`]: ARP and IPv6 neighbor discovery frames, parsed and
//!   written without allocating; gratuitous ARP and unsolicited NA for
//!   takeover.
//! - [`neighbor`]: the neighbor table as immutable snapshots published by
//!   the control thread from what workers learn (bounded ring), and the
//!   per-worker solicitation rate limit.
//! - [`route`]: connected and static routes, longest prefix match.
//! - [`forward`]: TTL decrement, ICMP time exceeded, echo replies, MAC
//!   rewrite.
//! - [`router`]: the per-frame decisions a worker takes in routed mode.
//!
//! Shared state without per-packet locks: the L3 configuration
//! ([`L3Config`]: ports' MACs and addresses, virtual addresses, routes) and
//! the neighbor table are `ArcSwap`ped snapshots that a worker loads once
//! per burst; workers write nothing shared except the bounded learn ring.
//!
//! Virtual addresses (VIPs) are answered (ARP, NS, ping) only while the
//! node forwards: a backup stops answering for them the moment forwarding
//! is turned off, and [`announce_frames`] gives the gratuitous ARPs and
//! unsolicited NAs a new active node sends.

pub mod arp;
pub mod forward;
pub mod nd;
pub mod neighbor;
pub mod prefix;
pub mod route;
pub mod router;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;

use crate::packet::ethernet::MacAddr;

pub use neighbor::{Neighbor, NeighborBook, NeighborTable, NeighborUpdate, SolicitLimiter};
pub use prefix::{IpKey, Prefix, PrefixError};
pub use route::{Route, RouteError, RouteKind, RouteTable};
pub use router::Router;

/// Neighbor updates buffered between the workers and the control thread.
pub const LEARN_RING: usize = 1024;
/// Default bound of the neighbor table.
pub const DEFAULT_NEIGHBOR_CAPACITY: usize = 4096;

/// One port as routed mode sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L3Port {
    /// Name (for the console).
    pub name: String,
    /// Its MAC: the source of everything we send there.
    pub mac: MacAddr,
    /// Its own addresses (always answered).
    pub addresses: Vec<Prefix>,
}

/// A virtual address: answered and announced only while the node forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualAddress {
    /// Appliance-wide port index.
    pub port: u16,
    /// The address with its prefix.
    pub address: Prefix,
}

/// The immutable L3 configuration a worker reads.
#[derive(Clone, Debug)]
pub struct L3Config {
    /// Ports by appliance-wide index.
    pub ports: Vec<L3Port>,
    /// Virtual addresses.
    pub vips: Vec<VirtualAddress>,
    /// Routes.
    pub routes: RouteTable,
    /// Routed cluster: the multicast MAC every member answers for the
    /// virtual addresses with (as CLUSTERIP did), so that every member
    /// receives what hosts send to them and each keeps its buckets' frames.
    /// `None`: the virtual addresses are at the ports' own MACs.
    pub shared_mac: Option<MacAddr>,
}

impl L3Config {
    /// Builds the configuration: connected routes from every port address
    /// and virtual address, then the static routes `(to, via)`.
    pub fn new(
        ports: Vec<L3Port>,
        vips: Vec<VirtualAddress>,
        statics: &[(Prefix, IpAddr)],
    ) -> Result<L3Config, RouteError> {
        let mut connected = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            connected.extend(p.addresses.iter().map(|a| (*a, i)));
        }
        connected.extend(vips.iter().map(|v| (v.address, v.port)));
        let routes = RouteTable::build(&connected, statics)?;
        Ok(L3Config {
            ports,
            vips,
            routes,
            shared_mac: None,
        })
    }

    /// The same with the virtual addresses at a cluster's shared
    /// (multicast) MAC.
    #[must_use]
    pub fn with_shared_mac(mut self, mac: MacAddr) -> L3Config {
        self.shared_mac = Some(mac);
        self
    }

    /// Whether `ip` is one of the virtual addresses.
    #[inline]
    pub fn is_virtual(&self, ip: &IpKey) -> bool {
        self.vips.iter().any(|v| v.address.key() == *ip)
    }

    /// The MAC an ARP or NS answer for `ip` on `port` announces: the
    /// shared MAC for a virtual address of a routed cluster, else the
    /// port's.
    #[inline]
    pub fn answer_mac(&self, port: u16, ip: &IpKey) -> Option<MacAddr> {
        let own = self.ports.get(usize::from(port))?.mac;
        Some(match self.shared_mac {
            Some(m) if self.is_virtual(ip) => m,
            _ => own,
        })
    }

    /// Whether a frame sent to `mac` is for this node: its port's MAC, or
    /// the cluster's shared MAC.
    #[inline]
    pub fn accepts_mac(&self, port_mac: MacAddr, mac: MacAddr) -> bool {
        mac == port_mac || self.shared_mac == Some(mac)
    }

    /// Whether `ip` is ours on any port: a port address, or a virtual
    /// address while `active`.
    #[inline]
    pub fn is_local(&self, ip: &IpKey, active: bool) -> bool {
        self.ports
            .iter()
            .any(|p| p.addresses.iter().any(|a| a.key() == *ip))
            || (active && self.vips.iter().any(|v| v.address.key() == *ip))
    }

    /// Whether `ip` is ours on port `port` (answered by ARP / NS there).
    #[inline]
    pub fn answers_on(&self, port: u16, ip: &IpKey, active: bool) -> bool {
        self.ports
            .get(usize::from(port))
            .is_some_and(|p| p.addresses.iter().any(|a| a.key() == *ip))
            || (active
                && self
                    .vips
                    .iter()
                    .any(|v| v.port == port && v.address.key() == *ip))
    }

    /// Whether `ip` lies in a subnet of port `port` (its addresses' or its
    /// virtual addresses'): only such neighbors are learned there.
    #[inline]
    pub fn on_link(&self, port: u16, ip: &IpKey) -> bool {
        self.ports
            .get(usize::from(port))
            .is_some_and(|p| p.addresses.iter().any(|a| a.contains(ip)))
            || self
                .vips
                .iter()
                .any(|v| v.port == port && v.address.contains(ip))
    }

    /// The address port `port` sends from to reach `toward` (same family):
    /// one in the same subnet if any, else the first of the family, else a
    /// virtual address of the port.
    pub fn source_for(&self, port: u16, toward: &IpKey) -> Option<IpAddr> {
        let p = self.ports.get(usize::from(port))?;
        let fam = |a: &&Prefix| a.addr.is_ipv6() == toward.v6;
        p.addresses
            .iter()
            .filter(fam)
            .find(|a| a.contains(toward))
            .or_else(|| p.addresses.iter().find(fam))
            .or_else(|| {
                self.vips
                    .iter()
                    .filter(|v| v.port == port)
                    .map(|v| &v.address)
                    .find(fam)
            })
            .map(|a| a.addr)
    }
}

/// Counters of the neighbor machinery kept by the control thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighborStats {
    /// Entries now.
    pub entries: u64,
    /// Most entries.
    pub capacity: u64,
    /// Entries learned or changed.
    pub learned: u64,
    /// Entries expired.
    pub expired: u64,
    /// New entries refused because the table was full.
    pub table_full: u64,
}

/// What the workers and the control thread share in routed mode.
#[derive(Debug)]
pub struct L3Shared {
    config: ArcSwap<L3Config>,
    neighbors: ArcSwap<NeighborTable>,
    learned: ArrayQueue<NeighborUpdate>,
    book: Mutex<NeighborBook>,
    table_full: AtomicU64,
}

impl L3Shared {
    /// Shared state for `config` with a neighbor table of at most
    /// `neighbor_capacity` entries.
    pub fn new(config: L3Config, neighbor_capacity: usize) -> Arc<L3Shared> {
        Arc::new(L3Shared {
            config: ArcSwap::from_pointee(config),
            neighbors: ArcSwap::from_pointee(NeighborTable::default()),
            learned: ArrayQueue::new(LEARN_RING),
            book: Mutex::new(NeighborBook::new(neighbor_capacity)),
            table_full: AtomicU64::new(0),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<L3Config> {
        self.config.load_full()
    }

    /// Replaces the configuration (workers see it at their next burst).
    pub fn set_config(&self, config: L3Config) {
        self.config.store(Arc::new(config));
    }

    /// The neighbor table snapshot in force.
    pub fn neighbors(&self) -> Arc<NeighborTable> {
        self.neighbors.load_full()
    }

    /// Worker side: offers an update; false if the ring is full.
    #[inline]
    pub fn learn(&self, u: NeighborUpdate) -> bool {
        self.learned.push(u).is_ok()
    }

    /// Control side: applies up to `budget` learned updates, expires stale
    /// entries and publishes a new snapshot if anything changed. Returns the
    /// updates applied.
    pub fn publish_neighbors(&self, now: Instant, budget: usize) -> usize {
        let mut book = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        while n < budget {
            let Some(u) = self.learned.pop() else { break };
            book.apply(u);
            n += 1;
        }
        book.expire(now);
        self.table_full.store(book.full, Ordering::Relaxed);
        if let Some(t) = book.take_snapshot() {
            self.neighbors.store(Arc::new(t));
        }
        n
    }

    /// Control side: the neighbor counters.
    pub fn neighbor_stats(&self) -> NeighborStats {
        let book = self.book.lock().unwrap_or_else(|e| e.into_inner());
        NeighborStats {
            entries: book.table().len() as u64,
            capacity: book.capacity() as u64,
            learned: book.learned,
            expired: book.expired,
            table_full: self.table_full.load(Ordering::Relaxed),
        }
    }
}

/// The frames a node that just became active sends: one gratuitous ARP per
/// IPv4 virtual address and one unsolicited neighbor advertisement (override
/// flag) per IPv6 virtual address, each as (port index, frame).
pub fn announce_frames(config: &L3Config) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    for v in &config.vips {
        let Some(port) = config.ports.get(usize::from(v.port)) else {
            continue;
        };
        let mut buf = vec![0u8; nd::FRAME_LEN.max(arp::FRAME_LEN)];
        let at = config.shared_mac.unwrap_or(port.mac);
        let n = match v.address.addr {
            IpAddr::V4(a) => arp::write_gratuitous(&mut buf, port.mac, at, a.octets()),
            IpAddr::V6(a) => nd::write_unsolicited_na(&mut buf, port.mac, at, &a.octets()),
        };
        if let Ok(n) = n {
            buf.truncate(n);
            out.push((v.port, buf));
        }
    }
    out
}

/// A locally administered unicast MAC derived from a port name (FNV-1a),
/// for ports without a hardware address (`mem`).
pub fn derived_mac(name: &str) -> MacAddr {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let b = h.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> L3Config {
        L3Config::new(
            vec![
                L3Port {
                    name: "outside".into(),
                    mac: derived_mac("outside"),
                    addresses: vec![
                        "192.0.2.253/24".parse().unwrap(),
                        "2001:db8:1::fd/64".parse().unwrap(),
                    ],
                },
                L3Port {
                    name: "inside".into(),
                    mac: derived_mac("inside"),
                    addresses: vec!["198.51.100.253/24".parse().unwrap()],
                },
            ],
            vec![
                VirtualAddress {
                    port: 0,
                    address: "192.0.2.254/24".parse().unwrap(),
                },
                VirtualAddress {
                    port: 0,
                    address: "2001:db8:1::fe/64".parse().unwrap(),
                },
            ],
            &[(
                "203.0.113.0/24".parse().unwrap(),
                "198.51.100.9".parse().unwrap(),
            )],
        )
        .unwrap()
    }

    #[test]
    fn locality_and_sources() {
        let c = cfg();
        let vip = IpKey::v4([192, 0, 2, 254]);
        let own = IpKey::v4([198, 51, 100, 253]);
        assert!(c.is_local(&own, false));
        assert!(!c.is_local(&vip, false));
        assert!(c.is_local(&vip, true));
        assert!(c.answers_on(0, &vip, true));
        assert!(!c.answers_on(1, &vip, true));
        assert!(!c.answers_on(0, &own, true), "not on that port");
        assert!(c.on_link(0, &IpKey::v4([192, 0, 2, 7])));
        assert!(!c.on_link(1, &IpKey::v4([192, 0, 2, 7])));
        assert_eq!(
            c.source_for(0, &IpKey::v4([192, 0, 2, 7])),
            Some("192.0.2.253".parse().unwrap())
        );
        assert_eq!(
            c.source_for(1, &"2001:db8::1".parse::<IpAddr>().unwrap().into()),
            None
        );
        assert_eq!(
            c.routes.lookup(&IpKey::v4([203, 0, 113, 1])).unwrap().port,
            1
        );
    }

    #[test]
    fn announce_one_frame_per_vip() {
        let c = cfg();
        let f = announce_frames(&c);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0, 0);
        assert_eq!(f[0].1.len(), arp::FRAME_LEN);
        let a = arp::parse(&f[0].1, 14).unwrap();
        assert!(a.is_gratuitous());
        assert_eq!((a.spa, a.sha), ([192, 0, 2, 254], derived_mac("outside")));
        let m = crate::packet::parse_frame(&f[1].1).unwrap();
        let na = nd::NdInfo::parse(&f[1].1, &m).unwrap();
        assert_eq!(na.flags & nd::FLAG_OVERRIDE, nd::FLAG_OVERRIDE);
        assert_eq!(IpKey::v6(na.target).to_string(), "2001:db8:1::fe");
    }

    #[test]
    fn derived_macs_are_local_unicast_and_distinct() {
        let a = derived_mac("outside");
        let b = derived_mac("inside");
        assert_ne!(a, b);
        assert_eq!(a[0] & 0x03, 0x02);
        assert_eq!(a, derived_mac("outside"));
    }

    #[test]
    fn shared_publishes_learned_neighbors() {
        let s = L3Shared::new(cfg(), 1);
        let now = Instant::now();
        let u = |last: u8| NeighborUpdate {
            ip: IpKey::v4([192, 0, 2, last]),
            neighbor: Neighbor {
                mac: [2, 0, 0, 0, 0, last],
                port: 0,
                updated: now,
            },
        };
        assert!(s.learn(u(1)) && s.learn(u(2)));
        assert!(s.neighbors().is_empty());
        assert_eq!(s.publish_neighbors(now, 16), 2);
        let t = s.neighbors();
        assert_eq!(t.len(), 1);
        assert!(t.get(&IpKey::v4([192, 0, 2, 1])).is_some());
        let st = s.neighbor_stats();
        assert_eq!((st.entries, st.capacity, st.table_full), (1, 1, 1));
    }
}
