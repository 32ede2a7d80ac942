//! The sync link over TCP (`[sync] transport = "tcp"`, conntrackd's `TCP`
//! channel, which runs NOTRACK): the same messages as the UDP link, as a
//! byte stream.
//!
//! - Each node listens on `local:port` and connects to `peer:port` from
//!   `local` (ephemeral source port). Our messages go on the connection we
//!   opened; the peer's arrive on the one we accepted. An accepted
//!   connection from any address but the peer's is counted and closed; a
//!   new one from the peer replaces the old (the peer reconnected).
//! - Sending: the stream is the concatenation of the engine's datagrams.
//!   What the socket does not take waits in a userspace buffer bounded by
//!   [`SEND_BUFFER`], also while the connection is down (so a RESYNC
//!   request made before the first connect still goes out). A datagram
//!   that does not fit is dropped and counted. A connection that ends with
//!   a datagram half written drops its rest (the next connection starts on
//!   a message boundary).
//! - Repair: best effort has no retransmission, so whatever was dropped or
//!   lost with a connection is repaired by a full export to the peer once
//!   the link is up and the buffer drained ([`TcpLink::take_repair`]).
//! - Receiving: whole messages are framed by their header's length
//!   ([`ftfw_sync::wire::stream::frame`]); a bad length is a framing error:
//!   counted, the connection closed, the peer reconnects.
//! - Connecting: non-blocking; retried every `alive_interval` while the
//!   peer is down; an attempt that does not complete within
//!   [`connect_timeout`] is abandoned.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ftfw_sync::wire::stream::{self, MAX_MESSAGE_LEN};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::socket::{bind_device, canonical, ifindex, sockaddr};
use crate::config::{SyncConfig, SyncDestination};

/// Bytes of unsent stream kept in userspace.
pub(crate) const SEND_BUFFER: usize = 4 << 20;
/// Receive buffer: a whole batch for the engine plus a partial message.
const RECV_BUFFER: usize = 128 << 10;
/// Kernel socket buffers asked for (best effort, like the UDP link).
const SOCKET_BUFFER: usize = 4 << 20;
/// mio tokens of the link's sockets.
const LISTEN: Token = Token(1);
const INCOMING: Token = Token(2);
const OUTGOING: Token = Token(3);

/// How long a connect may take before it is abandoned and retried.
pub(crate) fn connect_timeout(alive: Duration) -> Duration {
    (alive * 3).max(Duration::from_secs(1))
}

/// Counters of the TCP link (what `ftfwctl sync status` shows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpCounters {
    /// Outgoing connections established.
    pub(crate) connects: u64,
    /// Outgoing connect attempts that failed or timed out.
    pub(crate) connect_failures: u64,
    /// Established outgoing connections that ended.
    pub(crate) disconnects: u64,
    /// Incoming connections accepted from the peer.
    pub(crate) accepted: u64,
    /// Incoming connections that ended (closed, reset, replaced, framing).
    pub(crate) in_closed: u64,
    /// Incoming connections refused: not from the peer's address.
    pub(crate) refused: u64,
    /// Incoming connections closed for a bad message length.
    pub(crate) framing_errors: u64,
    /// Datagrams dropped because the send buffer was full.
    pub(crate) send_drops: u64,
    /// Bytes of half-written datagrams dropped with a connection.
    pub(crate) cut_bytes: u64,
    /// Full exports started to repair drops and lost connections.
    pub(crate) repairs: u64,
}

/// Our outgoing connection.
enum Out {
    /// Not connected; the next attempt at `next_try`.
    Idle { next_try: Instant },
    /// A connect in progress since `since`.
    Connecting { stream: TcpStream, since: Instant },
    /// Connected; `wrote` once any byte went out on it.
    Up { stream: TcpStream, wrote: bool },
}

/// The accepted connection from the peer and its unframed bytes.
struct Incoming {
    stream: TcpStream,
    from: SocketAddr,
}

/// The TCP sync link.
pub(crate) struct TcpLink {
    listener: TcpListener,
    /// Source address of our connections (port 0).
    bind_from: SocketAddr,
    /// The peer's listening address.
    pub(crate) dest: SocketAddr,
    peer: IpAddr,
    interface: Option<String>,
    retry: Duration,
    connect_timeout: Duration,
    out: Out,
    inc: Option<Incoming>,
    /// Received bytes `[start, end)` not yet framed.
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Unsent stream bytes and the lengths of the datagrams in it; the
    /// first `head_sent` bytes of the first datagram are already written.
    sendq: VecDeque<u8>,
    lens: VecDeque<usize>,
    head_sent: usize,
    /// Something was dropped or lost: export everything once drained.
    repair: bool,
    registry: Option<Registry>,
    pub(crate) counters: TcpCounters,
}

impl std::fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpLink")
            .field("dest", &self.dest)
            .field("out_up", &self.out_up())
            .field("in_up", &self.inc.is_some())
            .field("buffered", &self.sendq.len())
            .field("counters", &self.counters)
            .finish()
    }
}

fn stream_socket(addr: &IpAddr, interface: Option<&str>) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    bind_device(&s, interface)?;
    Ok(s)
}

fn in_progress(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::EINPROGRESS)
}

impl TcpLink {
    /// Listens on `local:port`. Errors name the address that failed.
    pub(crate) fn open(cfg: &SyncConfig, now: Instant) -> io::Result<TcpLink> {
        let SyncDestination::Unicast(peer) = cfg.destination else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the tcp transport is unicast only",
            ));
        };
        let iface = cfg.interface.as_deref();
        let scope = match iface {
            Some(i) => ifindex(i)?,
            None => 0,
        };
        let local = sockaddr(cfg.local, cfg.port, scope);
        let l = stream_socket(&cfg.local, iface)?;
        l.set_reuse_address(true)?;
        l.bind(&local.into())
            .map_err(|e| io::Error::new(e.kind(), format!("binding tcp {local}: {e}")))?;
        l.listen(16)
            .map_err(|e| io::Error::new(e.kind(), format!("listening on tcp {local}: {e}")))?;
        Ok(TcpLink {
            listener: TcpListener::from_std(l.into()),
            bind_from: sockaddr(cfg.local, 0, scope),
            dest: sockaddr(peer, cfg.port, scope),
            peer,
            interface: cfg.interface.clone(),
            retry: cfg.alive_interval,
            connect_timeout: connect_timeout(cfg.alive_interval),
            out: Out::Idle { next_try: now },
            inc: None,
            inbuf: vec![0; RECV_BUFFER],
            start: 0,
            end: 0,
            sendq: VecDeque::new(),
            lens: VecDeque::new(),
            head_sent: 0,
            repair: false,
            registry: None,
            counters: TcpCounters::default(),
        })
    }

    /// Registers the listener (and later connections) with the sync
    /// thread's poll, so that it wakes on connects and data.
    pub(crate) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.listener, LISTEN, Interest::READABLE)?;
        self.registry = registry.try_clone().ok();
        Ok(())
    }

    fn watch(&self, s: &mut TcpStream, token: Token, interest: Interest) {
        if let Some(r) = &self.registry {
            if let Err(e) = r.register(s, token, interest) {
                tracing::debug!(error = %e, "sync tcp: could not register a connection");
            }
        }
    }

    fn unwatch(&self, s: &mut TcpStream) {
        if let Some(r) = &self.registry {
            let _ = r.deregister(s);
        }
    }

    /// Whether our outgoing connection is up.
    pub(crate) fn out_up(&self) -> bool {
        matches!(self.out, Out::Up { .. })
    }

    /// The peer's connection to us, if up.
    pub(crate) fn incoming_from(&self) -> Option<SocketAddr> {
        self.inc.as_ref().map(|i| i.from)
    }

    /// Bytes waiting in the send buffer.
    pub(crate) fn buffered(&self) -> usize {
        self.sendq.len()
    }

    /// Whether the send buffer is more than half full: bulk exports wait
    /// (live deltas do not, and are dropped and repaired if it fills).
    pub(crate) fn backlogged(&self) -> bool {
        self.sendq.len() > SEND_BUFFER / 2
    }

    /// True once when a repair export is due: something was dropped or
    /// lost with a connection, and the link is now up and drained.
    pub(crate) fn take_repair(&mut self) -> bool {
        if self.repair && self.out_up() && self.sendq.is_empty() {
            self.repair = false;
            self.counters.repairs += 1;
            return true;
        }
        false
    }

    /// Connection upkeep: accepts, connects, flushes, notices a closed
    /// outgoing connection. Bounded: a few syscalls plus the accept
    /// backlog. Returns how much it did (0 when idle).
    pub(crate) fn service(&mut self, now: Instant) -> usize {
        let mut work = self.accept();
        work += self.connect(now);
        work += self.flush();
        work + self.check_out_closed(now)
    }

    fn accept(&mut self) -> usize {
        let mut n = 0;
        loop {
            match self.listener.accept() {
                Ok((mut s, from)) => {
                    n += 1;
                    if canonical(from.ip()) != canonical(self.peer) {
                        self.counters.refused += 1;
                        tracing::debug!(%from, "sync tcp: refused a connection not from the peer");
                        continue; // dropped: closed
                    }
                    if let Some(mut old) = self.inc.take() {
                        self.unwatch(&mut old.stream);
                        self.counters.in_closed += 1;
                    }
                    self.counters.accepted += 1;
                    self.watch(&mut s, INCOMING, Interest::READABLE);
                    self.inc = Some(Incoming { stream: s, from });
                    self.start = 0;
                    self.end = 0;
                    tracing::info!(%from, "sync tcp: the peer connected");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ECONNABORTED and friends: the next accept may work.
                    tracing::debug!(error = %e, "sync tcp: accept failed");
                    break;
                }
            }
        }
        n
    }

    fn connect(&mut self, now: Instant) -> usize {
        match &mut self.out {
            Out::Idle { next_try } if now >= *next_try => {
                match self.start_connect() {
                    Ok(mut s) => {
                        self.watch(&mut s, OUTGOING, Interest::READABLE | Interest::WRITABLE);
                        self.out = Out::Connecting {
                            stream: s,
                            since: now,
                        };
                    }
                    Err(e) => {
                        self.counters.connect_failures += 1;
                        tracing::debug!(error = %e, dest = %self.dest, "sync tcp: connect failed");
                        self.out = Out::Idle {
                            next_try: now + self.retry,
                        };
                    }
                }
                1
            }
            Out::Connecting { stream, since } => {
                let failed = match stream.take_error() {
                    Ok(Some(e)) | Err(e) => Some(e),
                    Ok(None) => match stream.peer_addr() {
                        Ok(_) => None,
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                            if now.saturating_duration_since(*since) < self.connect_timeout {
                                return 0;
                            }
                            Some(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                        }
                        Err(e) => Some(e),
                    },
                };
                let Out::Connecting { mut stream, .. } =
                    std::mem::replace(&mut self.out, Out::Idle { next_try: now })
                else {
                    return 0;
                };
                match failed {
                    Some(e) => {
                        self.unwatch(&mut stream);
                        self.counters.connect_failures += 1;
                        tracing::debug!(error = %e, dest = %self.dest, "sync tcp: connect failed");
                        self.out = Out::Idle {
                            next_try: now + self.retry,
                        };
                    }
                    None => {
                        let _ = stream.set_nodelay(true);
                        self.counters.connects += 1;
                        tracing::info!(dest = %self.dest, "sync tcp: connected to the peer");
                        self.out = Out::Up {
                            stream,
                            wrote: false,
                        };
                    }
                }
                1
            }
            Out::Idle { .. } | Out::Up { .. } => 0,
        }
    }

    fn start_connect(&self) -> io::Result<TcpStream> {
        let s = stream_socket(&self.bind_from.ip(), self.interface.as_deref())?;
        s.bind(&self.bind_from.into())?;
        match s.connect(&self.dest.into()) {
            Ok(()) => {}
            Err(e) if in_progress(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(s.into()))
    }

    /// Our connection ended: cut a half-written datagram, note that a
    /// repair is due if anything went out on it, and reconnect at once.
    fn lose_out(&mut self, now: Instant, why: &dyn std::fmt::Display) {
        let old = std::mem::replace(&mut self.out, Out::Idle { next_try: now });
        if let Out::Up { mut stream, wrote } = old {
            self.unwatch(&mut stream);
            self.counters.disconnects += 1;
            tracing::info!(dest = %self.dest, reason = %why, "sync tcp: connection to the peer lost");
            // Bytes in the kernel's buffers may be gone with it.
            self.repair |= wrote;
        }
        if self.head_sent > 0 {
            let len = self.lens.pop_front().unwrap_or(0);
            let rest = len.saturating_sub(self.head_sent).min(self.sendq.len());
            self.sendq.drain(..rest);
            self.counters.cut_bytes += rest as u64;
            self.head_sent = 0;
            self.repair = true;
        }
    }

    /// The peer never writes on our connection: a read of 0 is its close,
    /// anything read is discarded.
    fn check_out_closed(&mut self, now: Instant) -> usize {
        let Out::Up { stream, .. } = &mut self.out else {
            return 0;
        };
        let mut scratch = [0u8; 256];
        match stream.read(&mut scratch) {
            Ok(0) => {
                self.lose_out(now, &"closed by the peer");
                1
            }
            Ok(_) => 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => {
                self.lose_out(now, &e);
                1
            }
        }
    }

    /// Writes buffered bytes while the socket takes them.
    fn flush(&mut self) -> usize {
        let mut work = 0;
        while !self.sendq.is_empty() {
            let Out::Up { stream, wrote } = &mut self.out else {
                break;
            };
            let (front, _) = self.sendq.as_slices();
            match stream.write(front) {
                Ok(0) => break,
                Ok(n) => {
                    *wrote = true;
                    work += 1;
                    self.sendq.drain(..n);
                    self.head_sent += n;
                    while let Some(&l) = self.lens.front() {
                        if self.head_sent < l {
                            break;
                        }
                        self.head_sent -= l;
                        self.lens.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.lose_out(Instant::now(), &e);
                    break;
                }
            }
        }
        work
    }

    /// Queues one datagram for the stream and writes what the socket
    /// takes. Never blocks: a datagram that does not fit the buffer is
    /// dropped, counted, and repaired later by a full export.
    pub(crate) fn send(&mut self, datagram: &[u8]) -> io::Result<usize> {
        if datagram.is_empty() {
            return Ok(0);
        }
        if self.sendq.len() + datagram.len() > SEND_BUFFER {
            self.counters.send_drops += 1;
            self.repair = true;
            return Ok(0);
        }
        self.sendq.extend(datagram);
        self.lens.push_back(datagram.len());
        self.flush();
        Ok(datagram.len())
    }

    fn close_incoming(&mut self) {
        if let Some(mut i) = self.inc.take() {
            self.unwatch(&mut i.stream);
            self.counters.in_closed += 1;
        }
        self.start = 0;
        self.end = 0;
    }

    /// Copies the next run of whole messages from the peer's connection
    /// into `out` (at most `out.len()` bytes): `Ok(Some((len, true)))`, or
    /// `Ok(None)` when no whole message is waiting. A framing error closes
    /// the connection. Bounded by one buffer's worth of reads.
    pub(crate) fn recv(&mut self, out: &mut [u8]) -> io::Result<Option<(usize, bool)>> {
        let limit = out.len();
        loop {
            if self.inc.is_none() {
                return Ok(None);
            }
            let pending = self.inbuf.get(self.start..self.end).unwrap_or(&[]);
            match stream::frame(pending, limit) {
                Err(e) => {
                    self.counters.framing_errors += 1;
                    let from = self.incoming_from();
                    tracing::warn!(error = %e, from = ?from, "sync tcp: framing error, closing the peer's connection");
                    self.close_incoming();
                    return Ok(None);
                }
                Ok(n) if n > 0 => {
                    let (Some(dst), Some(src)) = (out.get_mut(..n), pending.get(..n)) else {
                        return Ok(None);
                    };
                    dst.copy_from_slice(src);
                    self.start += n;
                    return Ok(Some((n, true)));
                }
                Ok(_) => {}
            }
            // Nothing whole yet: make room and read more.
            if self.start > 0 {
                self.inbuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end >= self.inbuf.len() || limit < MAX_MESSAGE_LEN {
                // A whole message always fits both buffers; this cannot
                // happen, but never spin on it.
                self.counters.framing_errors += 1;
                self.close_incoming();
                return Ok(None);
            }
            let Some(inc) = self.inc.as_mut() else {
                return Ok(None);
            };
            match inc.stream.read(&mut self.inbuf[self.end..]) {
                Ok(0) => {
                    tracing::info!(from = %inc.from, "sync tcp: the peer closed its connection");
                    self.close_incoming();
                    return Ok(None);
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::info!(from = %inc.from, error = %e, "sync tcp: the peer's connection failed");
                    self.close_incoming();
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SyncMode, SyncTransport};

    fn cfg(port: u16) -> SyncConfig {
        SyncConfig {
            mode: SyncMode::ExternalCache,
            local: "127.0.0.1".parse().unwrap(),
            destination: SyncDestination::Unicast("127.0.0.2".parse().unwrap()),
            port,
            interface: None,
            mtu: 1500,
            ack_window: 300,
            resend_queue: 1024,
            alive_interval: Duration::from_millis(50),
            flush_delay: Duration::from_micros(200),
            external_capacity: 1024,
            core: None,
            startup_resync: false,
            tcp_window_tracking: true,
            udp_offload: true,
            expectations: false,
            transport: SyncTransport::Tcp,
            defer: false,
            defer_timeout: Duration::from_millis(10),
            ack_delay: None,
            lazy: None,
            level: Default::default(),
            zone_levels: Vec::new(),
            peers: Vec::new(),
            sync_writes: false,
            psk: None,
        }
    }

    /// A link on 127.0.0.1 and a plain listener as its peer on 127.0.0.2.
    fn link_and_peer() -> (TcpLink, std::net::TcpListener) {
        loop {
            let peer = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
            let port = peer.local_addr().unwrap().port();
            if let Ok(l) = TcpLink::open(&cfg(port), Instant::now()) {
                return (l, peer);
            }
        }
    }

    fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_full_send_buffer_drops_whole_datagrams_and_repairs_once_drained() {
        let (mut link, peer) = link_and_peer();
        until("the connection", || {
            link.service(Instant::now());
            link.out_up()
        });
        let (mut conn, _) = peer.accept().unwrap();
        // The peer does not read: kernel buffers fill, then ours.
        let d = [0x5au8; 1400];
        let mut queued = 0u64;
        for _ in 0..50_000 {
            if link.send(&d).unwrap() == d.len() {
                queued += 1;
            }
            if link.counters.send_drops >= 10 {
                break;
            }
        }
        assert!(link.counters.send_drops >= 10, "{link:?}");
        assert!(link.buffered() <= SEND_BUFFER && link.buffered() > SEND_BUFFER / 2);
        assert!(link.backlogged());
        assert!(!link.take_repair(), "not before the buffer drained");
        // The peer reads everything; the stream holds whole datagrams only.
        let reader = std::thread::spawn(move || {
            conn.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut total = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                assert!(buf[..n].iter().all(|&b| b == 0x5a));
                total += n as u64;
            }
            total
        });
        until("the buffer to drain", || {
            link.service(Instant::now());
            link.buffered() == 0
        });
        assert!(link.take_repair(), "a repair export is due once drained");
        assert!(!link.take_repair(), "only once");
        assert_eq!(link.counters.repairs, 1);
        let total = reader.join().unwrap();
        assert_eq!(total, queued * d.len() as u64);
    }

    #[test]
    fn a_closed_connection_is_noticed_and_redialled() {
        let (mut link, peer) = link_and_peer();
        until("the connection", || {
            link.service(Instant::now());
            link.out_up()
        });
        let (conn, _) = peer.accept().unwrap();
        link.send(&[0x1a, 0x10, 0, 8, 0, 0, 0, 1]).unwrap();
        drop(conn);
        until("the loss to be noticed", || {
            link.service(Instant::now());
            !link.out_up()
        });
        assert_eq!(link.counters.disconnects, 1);
        until("a new connection", || {
            link.service(Instant::now());
            link.out_up()
        });
        let _conn = peer.accept().unwrap();
        assert_eq!(link.counters.connects, 2);
        // Bytes written on the lost connection may be gone: repair.
        assert!(link.take_repair());
        // With no listener at all, attempts fail and are retried.
        drop(peer);
        drop(_conn);
        until("failed attempts", || {
            link.service(Instant::now());
            link.counters.connect_failures >= 2
        });
    }
}
