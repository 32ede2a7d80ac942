//! The sync link: [`Link`] is either the UDP sockets below or the TCP
//! connections of `tcp.rs` (`[sync] transport = "tcp"`).
//!
//! The UDP sockets: unicast or multicast, IPv4 or IPv6, as conntrackd's
//! `UDP` and `Multicast` blocks set them up (transports `ftfw` and
//! `udp-best-effort` alike).
//!
//! - Unicast: one socket bound to `local:port`, sending to `peer:port`.
//!   Datagrams from any other source address are counted and dropped.
//! - Multicast: a receive socket bound to `group:port` and joined on the
//!   link's interface, and a send socket bound to `local` with the
//!   multicast interface set, TTL (hop limit) 1 and loopback off, so we
//!   never read our own datagrams. Datagrams from our own address are
//!   dropped anyway.
//!
//! Both sockets are non-blocking and bound to the link's interface when one
//! is configured (`SO_BINDTODEVICE`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Instant;

use ftfw_dataplane::port::datagram::{
    recv_batch, send_batch, set_coalesced_receive, DatagramBatch, RecvBatch, Segmentation,
};

use mio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};

use super::socket::{bind_device, canonical, ifindex, sockaddr};
use super::tcp::TcpLink;
use crate::config::{SyncConfig, SyncDestination, SyncTransport};

/// Receive buffer asked of the kernel: a burst of full datagrams from a
/// resync must not overflow it (conntrackd uses 2 MB buffers as well).
const SOCKET_BUFFER: usize = 4 << 20;

/// The open sockets of a UDP sync link.
#[derive(Debug)]
pub(crate) struct UdpLink {
    /// Receives the peer's datagrams.
    pub(crate) rx: UdpSocket,
    /// Sends ours (the same socket as `rx` for unicast).
    tx: Option<UdpSocket>,
    /// Where ours go.
    pub(crate) dest: SocketAddr,
    /// Datagrams are accepted only from this address (unicast peer) ...
    pub(crate) only_from: Option<IpAddr>,
    /// ... and never from this one (our own, multicast).
    pub(crate) not_from: IpAddr,
    /// Scope of IPv6 link-local peers (the interface's index, or 0).
    scope: u32,
    /// `[sync] udp_offload` as configured.
    offload: bool,
    /// Whether sends are segmented (`udp_offload`; turned off for good if
    /// the kernel refuses).
    segmentation: Segmentation,
}

fn socket_for(addr: &IpAddr) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    // Best effort: an unprivileged process may get less than it asks for.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    Ok(s)
}

impl UdpLink {
    /// With `on` (`[sync] udp_offload`): segmented sends, and coalesced
    /// reads on the receive socket. A kernel without coalesced receive
    /// keeps plain reads (said once in the log); segmentation finds out on
    /// its first send.
    fn with_offload(mut self, on: bool) -> UdpLink {
        self.offload = on;
        self.segmentation = Segmentation::when(on);
        if on {
            if let Err(e) = set_coalesced_receive(self.rx.as_fd(), true) {
                tracing::info!(error = %e, "sync link: no coalesced UDP receive (GRO)");
            }
        }
        self
    }

    /// Opens the sockets `cfg` describes. Errors name the address or
    /// interface that failed.
    pub(crate) fn open(cfg: &SyncConfig) -> io::Result<UdpLink> {
        let iface = cfg.interface.as_deref();
        let scope = match iface {
            Some(i) => ifindex(i)?,
            None => 0,
        };
        let local = sockaddr(cfg.local, cfg.port, scope);
        match cfg.destination {
            SyncDestination::Unicast(peer) => {
                let s = socket_for(&cfg.local)?;
                s.set_reuse_address(true)?;
                bind_device(&s, iface)?;
                s.bind(&local.into())
                    .map_err(|e| io::Error::new(e.kind(), format!("binding {local}: {e}")))?;
                Ok(UdpLink {
                    rx: UdpSocket::from_std(s.into()),
                    tx: None,
                    dest: sockaddr(peer, cfg.port, scope),
                    only_from: Some(peer),
                    not_from: cfg.local,
                    scope,
                    offload: false,
                    segmentation: Segmentation::Off,
                }
                .with_offload(cfg.udp_offload))
            }
            SyncDestination::Multicast(group) => {
                let rx = socket_for(&group)?;
                rx.set_reuse_address(true)?;
                bind_device(&rx, iface)?;
                let bind = SocketAddr::new(group, cfg.port);
                rx.bind(&bind.into())
                    .map_err(|e| io::Error::new(e.kind(), format!("binding {bind}: {e}")))?;
                let tx = socket_for(&cfg.local)?;
                bind_device(&tx, iface)?;
                let from = sockaddr(cfg.local, 0, scope);
                tx.bind(&from.into())
                    .map_err(|e| io::Error::new(e.kind(), format!("binding {from}: {e}")))?;
                match (group, cfg.local) {
                    (IpAddr::V4(g), IpAddr::V4(l)) => {
                        rx.join_multicast_v4(&g, &l).map_err(|e| {
                            io::Error::new(e.kind(), format!("joining {g} on {l}: {e}"))
                        })?;
                        tx.set_multicast_if_v4(&l)?;
                        tx.set_multicast_loop_v4(false)?;
                        tx.set_multicast_ttl_v4(1)?;
                    }
                    (IpAddr::V6(g), IpAddr::V6(_)) => {
                        rx.join_multicast_v6(&g, scope).map_err(|e| {
                            io::Error::new(e.kind(), format!("joining {g} on ifindex {scope}: {e}"))
                        })?;
                        tx.set_multicast_if_v6(scope)?;
                        tx.set_multicast_loop_v6(false)?;
                        tx.set_multicast_hops_v6(1)?;
                    }
                    _ => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "sync.local and sync.multicast_group differ in address family",
                        ))
                    }
                }
                Ok(UdpLink {
                    rx: UdpSocket::from_std(rx.into()),
                    tx: Some(UdpSocket::from_std(tx.into())),
                    dest: SocketAddr::new(group, cfg.port),
                    only_from: None,
                    not_from: cfg.local,
                    scope,
                    offload: false,
                    segmentation: Segmentation::Off,
                }
                .with_offload(cfg.udp_offload))
            }
        }
    }

    /// Opens a cluster node's socket: bound to `local:port`, accepting
    /// datagrams from any address but our own (the sync thread maps each
    /// source to its peer's channel and counts the others as foreign), and
    /// sending to each peer with [`UdpLink::send_to`].
    pub(crate) fn open_cluster(cfg: &SyncConfig) -> io::Result<UdpLink> {
        let iface = cfg.interface.as_deref();
        let scope = match iface {
            Some(i) => ifindex(i)?,
            None => 0,
        };
        let local = sockaddr(cfg.local, cfg.port, scope);
        let s = socket_for(&cfg.local)?;
        s.set_reuse_address(true)?;
        bind_device(&s, iface)?;
        s.bind(&local.into())
            .map_err(|e| io::Error::new(e.kind(), format!("binding {local}: {e}")))?;
        Ok(UdpLink {
            rx: UdpSocket::from_std(s.into()),
            tx: None,
            dest: sockaddr(cfg.destination.addr(), cfg.port, scope),
            only_from: None,
            not_from: cfg.local,
            scope,
            offload: false,
            segmentation: Segmentation::Off,
        }
        .with_offload(cfg.udp_offload))
    }

    /// Where a peer at `ip` listens: `ip:port`, scoped like our own
    /// address.
    pub(crate) fn peer_addr(&self, ip: IpAddr, port: u16) -> SocketAddr {
        sockaddr(ip, port, self.scope)
    }

    /// Sends one datagram to the destination (tests; the sync thread
    /// sends batches).
    #[cfg(test)]
    pub(crate) fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        self.tx
            .as_ref()
            .unwrap_or(&self.rx)
            .send_to(datagram, self.dest)
    }

    /// Sends datagrams `from..` of `batch` to `to` (the destination when
    /// `None`) with `sendmmsg`; see [`send_batch`] for the result.
    pub(crate) fn send_batch(
        &mut self,
        to: Option<SocketAddr>,
        batch: &DatagramBatch,
        from: usize,
    ) -> io::Result<usize> {
        let sock = self.tx.as_ref().unwrap_or(&self.rx);
        let was = self.segmentation;
        let r = send_batch(
            sock.as_fd(),
            Some(to.unwrap_or(self.dest)),
            batch,
            from,
            &mut self.segmentation,
        );
        if was != self.segmentation {
            tracing::info!(
                "sync link: the kernel refused segmented UDP sends (GSO); \
                 sending datagrams one by one"
            );
        }
        r
    }

    /// Whether sends are segmented now (see [`Segmentation`]).
    #[cfg(test)]
    pub(crate) fn segmentation(&self) -> Segmentation {
        self.segmentation
    }

    /// The source address of a datagram from `from` (IPv4-mapped folded),
    /// or `None` for a foreign one (to be counted and dropped).
    pub(crate) fn accept(&self, from: SocketAddr) -> Option<IpAddr> {
        let ip = canonical(from.ip());
        let ok =
            ip != canonical(self.not_from) && self.only_from.is_none_or(|p| canonical(p) == ip);
        ok.then_some(ip)
    }

    /// Receives one datagram; `Ok(None)` when nothing is waiting, else its
    /// length and its source address (IPv4-mapped folded), `None` for a
    /// datagram from a foreign address (to be counted and dropped).
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Option<IpAddr>)>> {
        match self.rx.recv_from(buf) {
            Ok((n, from)) => Ok(Some((n, self.accept(from)))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Receives up to `max` waiting datagrams with one `recvmmsg` into
    /// `batch`; 0 when nothing is waiting. Their sources go through
    /// [`UdpLink::accept`].
    pub(crate) fn recv_batch(&self, batch: &mut RecvBatch, max: usize) -> io::Result<usize> {
        match recv_batch(self.rx.as_fd(), batch, max) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// The sync link of the configured transport.
#[derive(Debug)]
pub(crate) enum Link {
    /// `ftfw` and `udp-best-effort`.
    Udp(UdpLink),
    /// `tcp` (boxed: it is much larger than the UDP link).
    Tcp(Box<TcpLink>),
}

impl Link {
    /// Opens the link `cfg` describes (sockets bound, nothing sent): a
    /// cluster's one socket when `cfg.peers` lists any.
    pub(crate) fn open(cfg: &SyncConfig, now: Instant) -> io::Result<Link> {
        if !cfg.peers.is_empty() {
            return UdpLink::open_cluster(cfg).map(Link::Udp);
        }
        match cfg.transport {
            SyncTransport::Ftfw | SyncTransport::UdpBestEffort => UdpLink::open(cfg).map(Link::Udp),
            SyncTransport::Tcp => TcpLink::open(cfg, now).map(|t| Link::Tcp(Box::new(t))),
        }
    }

    /// Registers the link's sockets with the sync thread's poll (token 0
    /// for UDP; the TCP link uses tokens 1 to 3).
    pub(crate) fn register(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Link::Udp(u) => registry.register(&mut u.rx, mio::Token(0), mio::Interest::READABLE),
            Link::Tcp(t) => t.register(registry),
        }
    }

    /// Where our messages go.
    pub(crate) fn dest(&self) -> SocketAddr {
        match self {
            Link::Udp(u) => u.dest,
            Link::Tcp(t) => t.dest,
        }
    }

    /// Sends datagrams `from..` of `batch` to `to` (the destination when
    /// `None`): over UDP up to
    /// [`ftfw_dataplane::port::datagram::SYSCALL_BATCH`] in one `sendmmsg`,
    /// over TCP one (queued on our connection to the one peer). Returns
    /// how many went (at least one, or 0 when none was left), or the error
    /// of datagram `from`, which did not go: the caller counts it and
    /// calls again from the next one, as it would with one send each.
    pub(crate) fn send_batch(
        &mut self,
        to: Option<SocketAddr>,
        batch: &DatagramBatch,
        from: usize,
    ) -> io::Result<usize> {
        match self {
            Link::Udp(u) => u.send_batch(to, batch, from),
            Link::Tcp(t) => match batch.get(from) {
                Some(d) => t.send(d).map(|_| 1),
                None => Ok(0),
            },
        }
    }

    /// Where a peer at `ip` listens on `port` (see [`UdpLink::peer_addr`]).
    pub(crate) fn peer_addr(&self, ip: IpAddr, port: u16) -> SocketAddr {
        match self {
            Link::Udp(u) => u.peer_addr(ip, port),
            Link::Tcp(_) => SocketAddr::new(ip, port),
        }
    }

    /// The next datagram (UDP) or run of whole messages (TCP) with its
    /// source address, `None` for a foreign one; see [`UdpLink::recv`].
    pub(crate) fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Option<IpAddr>)>> {
        match self {
            Link::Udp(u) => u.recv(buf),
            Link::Tcp(t) => {
                let peer = canonical(t.dest.ip());
                Ok(t.recv(buf)?.map(|(n, ok)| (n, ok.then_some(peer))))
            }
        }
    }

    /// Connection upkeep (TCP only); how much it did.
    pub(crate) fn service(&mut self, now: Instant) -> usize {
        match self {
            Link::Udp(_) => 0,
            Link::Tcp(t) => t.service(now),
        }
    }

    /// The TCP link, if that is the transport.
    /// `ftfwctl sync status`'s `udp_offload`: `on`, `off` (configured),
    /// `refused` (by the kernel), or empty over TCP.
    pub(crate) fn udp_offload(&self) -> &'static str {
        match self {
            Link::Udp(u) => match (u.offload, u.segmentation) {
                (false, _) => "off",
                (true, Segmentation::On) => "on",
                (true, Segmentation::Off) => "refused",
            },
            Link::Tcp(_) => "",
        }
    }

    pub(crate) fn tcp(&self) -> Option<&TcpLink> {
        match self {
            Link::Udp(_) => None,
            Link::Tcp(t) => Some(t),
        }
    }

    /// Whether a full export is due to repair what the link lost (TCP).
    pub(crate) fn take_repair(&mut self) -> bool {
        match self {
            Link::Udp(_) => false,
            Link::Tcp(t) => t.take_repair(),
        }
    }

    /// Whether bulk exports should wait for the link to drain (TCP).
    pub(crate) fn backlogged(&self) -> bool {
        self.tcp().is_some_and(TcpLink::backlogged)
    }

    /// Sleeps until a datagram arrives or `timeout` passes, to the
    /// microsecond (`ppoll`; the sync thread's mio poll rounds a timeout
    /// up to a whole millisecond). Returns false, having not slept, for a
    /// TCP link (several sockets: the caller waits on its poll instead).
    pub(crate) fn wait_precise(&self, timeout: std::time::Duration) -> bool {
        match self {
            Link::Udp(u) => {
                ftfw_dataplane::port::wait_any(&[u.rx.as_fd()], timeout);
                true
            }
            Link::Tcp(_) => false,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn link_local_v6_gets_a_scope_and_global_does_not() {
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let g: Ipv6Addr = "2001:db8::1".parse().unwrap();
        match sockaddr(IpAddr::V6(ll), 3780, 7) {
            SocketAddr::V6(a) => assert_eq!(a.scope_id(), 7),
            SocketAddr::V4(_) => panic!("v4"),
        }
        match sockaddr(IpAddr::V6(g), 3780, 7) {
            SocketAddr::V6(a) => assert_eq!(a.scope_id(), 0),
            SocketAddr::V4(_) => panic!("v4"),
        }
        assert_eq!(
            canonical("::ffff:192.0.2.1".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
        );
    }

    pub(in crate::replication) fn cfg(local: &str, peer: &str, port: u16) -> SyncConfig {
        SyncConfig {
            mode: crate::config::SyncMode::ExternalCache,
            local: local.parse().unwrap(),
            destination: SyncDestination::Unicast(peer.parse().unwrap()),
            port,
            interface: None,
            mtu: 1500,
            ack_window: 300,
            resend_queue: 1024,
            alive_interval: std::time::Duration::from_secs(1),
            flush_delay: std::time::Duration::from_micros(200),
            external_capacity: 1024,
            core: None,
            startup_resync: false,
            tcp_window_tracking: true,
            udp_offload: true,
            expectations: false,
            transport: crate::config::SyncTransport::Ftfw,
            defer: false,
            defer_timeout: std::time::Duration::from_millis(10),
            ack_delay: None,
            lazy: None,
            level: Default::default(),
            zone_levels: Vec::new(),
            peers: Vec::new(),
            sync_writes: false,
            psk: None,
        }
    }

    /// A free UDP port on loopback (port 0 is not allowed by the config).
    pub(in crate::replication) fn free_udp_port() -> u16 {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    }

    #[test]
    fn unicast_link_filters_by_source() {
        // Two links on loopback addresses.
        let port = free_udp_port();
        let a = UdpLink::open(&cfg("127.0.0.1", "127.0.0.2", port)).unwrap();
        let b = UdpLink::open(&cfg("127.0.0.2", "127.0.0.1", port)).unwrap();
        a.send(b"hello").unwrap();
        let stranger = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
        stranger.send_to(b"spoof", ("127.0.0.2", port)).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..1000 {
            match b.recv(&mut buf).unwrap() {
                Some((n, from)) => got.push((buf[..n].to_vec(), from.is_some())),
                None if got.len() == 2 => break,
                None => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        got.sort();
        assert_eq!(
            got,
            vec![(b"hello".to_vec(), true), (b"spoof".to_vec(), false)]
        );
    }

    /// The sync thread's sub-millisecond sleep ends when a datagram
    /// arrives, not at its timeout (an hour here: the waiting thread
    /// reports back within a bounded wait, or the test fails).
    #[test]
    fn precise_wait_on_a_udp_link_ends_when_a_datagram_arrives() {
        let port = free_udp_port();
        let a = UdpLink::open(&cfg("127.0.0.1", "127.0.0.2", port)).unwrap();
        let b = Link::Udp(UdpLink::open(&cfg("127.0.0.2", "127.0.0.1", port)).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let waited = b.wait_precise(std::time::Duration::from_secs(3600));
            let _ = tx.send(waited);
            b
        });
        a.send(b"ack").unwrap();
        let waited = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the wait did not end when the datagram arrived");
        assert!(waited, "a UDP link waits itself");
        let Link::Udp(b) = waiter.join().unwrap() else {
            panic!("not udp")
        };
        let mut buf = [0u8; 16];
        assert!(b.recv(&mut buf).unwrap().is_some(), "the datagram is there");
    }
}
