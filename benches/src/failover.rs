//! `ftfw-lab failover`: a two-node cluster in one process, no root, no NIC.
//!
//! Two real appliances (`Appliance::start`, the code ftfwd runs) on `mem`
//! ports in transparent mode, FT-FW replication over loopback UDP
//! (127.0.0.1 and 127.0.0.2) and the built-in election
//! ([`ElectionDriver`]). A hub on the calling thread joins a virtual client
//! host to both firewalls' `outside` ports and a virtual server host to both
//! `inside` ports: every frame a host sends goes to both firewalls, every
//! frame a firewall emits goes to the host on that side (the backup does not
//! forward, so only the active firewall's copies arrive). The hosts speak
//! just enough TCP for HTTP-like downloads: handshake, a 16-byte request,
//! `object_size` bytes in MSS segments with a fixed window of segments in
//! flight, cumulative ACKs, go-back-N retransmission on a fixed RTO, FIN.
//! Sequence, ack and window numbers are exact, so the firewalls' window
//! tracking is left strict (not `tcp_be_liberal`).
//!
//! Mid-run fw1 (the primary) crashes: its election driver is dropped with no
//! shutdown message and its appliance stopped; the hub stops delivering to
//! and from it. fw2 must detect the silence, commit the replicated flows and
//! forward; the run counts the transfers that were established at the crash
//! and completed anyway.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ftfw_control::appliance::Appliance;
use ftfw_control::config;
use ftfw_control::console::proto::{Payload, Request, Response};
use ftfw_control::console::ConsoleHandler;
use ftfw_control::failover::ElectionDriver;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::{parse_frame, FrameSpec, L4Spec, TcpOptions};
use ftfw_dataplane::port::mem::{self, FanoutHost, MemPort};
use ftfw_dataplane::port::{PacketBuf, Port};
use serde::Serialize;

const KEY: &str = "000102030405060708090a0b0c0d0e0f1011121314151617";
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];
const SERVER_PORT: u16 = 80;
const BASE_PORT: u16 = 20000;
/// Maximum segment size of the server's data segments.
const MSS: usize = 1460;
/// Segments the server keeps in flight per transfer.
const WINDOW_SEGS: usize = 16;
/// Request length (`GET <size>` padded).
const REQ_LEN: u32 = 16;
/// Advertised window of both hosts (no window scaling).
const WINDOW: u16 = 65535;
/// Fixed retransmission timeout of both hosts.
const RTO: Duration = Duration::from_millis(200);
/// How often the election drivers run.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// What one run does.
#[derive(Debug, Clone)]
pub struct FailoverOpts {
    /// Transfers (distinct client ports), at most 40000.
    pub transfers: usize,
    /// Bytes per transfer.
    pub object_size: usize,
    /// Transfers under way at once.
    pub concurrency: usize,
    /// Crash fw1 this long after the first SYN; `None`: when half of all
    /// the bytes have been delivered.
    pub crash_at: Option<Duration>,
    /// Run without crashing fw1.
    pub no_crash: bool,
    /// Negative control: right after the crash, flush fw2's external cache
    /// (as if nothing had been replicated), so established transfers must
    /// break.
    pub flush_backup_at_crash: bool,
    /// Initial sequence numbers come from this.
    pub seed: u64,
    /// A transfer with no progress for this long is broken.
    pub stall: Duration,
    /// Hard limit of the traffic phase.
    pub max_run: Duration,
}

impl Default for FailoverOpts {
    fn default() -> Self {
        FailoverOpts {
            transfers: 200,
            object_size: 100_000,
            concurrency: 64,
            crash_at: None,
            no_crash: false,
            flush_backup_at_crash: false,
            seed: 1,
            stall: Duration::from_secs(5),
            max_run: Duration::from_secs(120),
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// Transfers attempted.
    pub transfers: usize,
    /// Bytes per transfer.
    pub object_size: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Whether fw1 was crashed.
    pub crashed: bool,
    /// Whether fw2's external cache was flushed at the crash (negative
    /// control).
    pub flushed_backup: bool,
    /// Milliseconds from the first SYN to the crash.
    pub crash_at_ms: Option<f64>,
    /// Transfers with the handshake done and not finished at the crash.
    pub flows_established_at_crash: usize,
    /// Of those, the ones that completed.
    pub flows_recovered: usize,
    /// `flows_recovered / flows_established_at_crash` (1 when none).
    pub recovery_ratio: f64,
    /// Transfers that saw a RST or stalled (all transfers).
    pub broken_transfers: usize,
    /// Of the broken ones, those that saw a RST.
    pub reset_transfers: usize,
    /// Transfers completed.
    pub transfers_completed: usize,
    /// Crash to the first data segment of a pre-crash transfer forwarded by
    /// fw2.
    pub time_to_recover_ms: Option<f64>,
    /// Crash to fw2 reporting the active role.
    pub takeover_ms: Option<f64>,
    /// fw1's sync messages sent before the crash.
    pub sync_msgs: u64,
    /// fw1's sync bytes sent before the crash.
    pub sync_bytes: u64,
    /// Server retransmission timeouts (each resends its window, go-back-N).
    pub retransmit_timeouts: u64,
    /// Frames fw1 sent out of its ports before the crash (all of them
    /// without a crash).
    pub fw1_forwarded: u64,
    /// Frames fw2 sent out of its ports.
    pub fw2_forwarded: u64,
    /// Frames fw2 dropped as a backup.
    pub fw2_standby_dropped: u64,
    /// Packets either firewall found invalid (window tracking and state).
    pub invalid: u64,
    /// Frames the hub could not hand to a full port ring.
    pub hub_drops: u64,
    /// Milliseconds of the traffic phase (first SYN to the last transfer
    /// finishing).
    pub run_ms: f64,
    /// Milliseconds of the whole run, cluster start-up included.
    pub total_ms: f64,
}

/// A human report of `r`.
pub fn render(r: &FailoverReport) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0} ms"));
    format!(
        "failover: {} transfers of {} bytes, seed {}\n\
         crash of fw1: {}\n\
         established at the crash: {}, recovered: {} ({:.1}%)\n\
         completed: {}, broken: {} ({} reset)\n\
         time to recover: {} (fw2 active after {})\n\
         fw1 sync before the crash: {} msgs, {} bytes\n\
         frames forwarded: fw1 {}, fw2 {} (fw2 dropped {} as backup), invalid {}\n\
         retransmission timeouts: {}, hub drops: {}\n\
         traffic phase {:.0} ms, whole run {:.0} ms\n",
        r.transfers,
        r.object_size,
        r.seed,
        if r.crashed {
            opt(r.crash_at_ms).replace(" ms", " ms after the first SYN")
        } else {
            "none".to_string()
        },
        r.flows_established_at_crash,
        r.flows_recovered,
        r.recovery_ratio * 100.0,
        r.transfers_completed,
        r.broken_transfers,
        r.reset_transfers,
        opt(r.time_to_recover_ms),
        opt(r.takeover_ms),
        r.sync_msgs,
        r.sync_bytes,
        r.fw1_forwarded,
        r.fw2_forwarded,
        r.fw2_standby_dropped,
        r.invalid,
        r.retransmit_timeouts,
        r.hub_drops,
        r.run_ms,
        r.total_ms,
    )
}

/// splitmix64: the run's only randomness (initial sequence numbers).
fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Node {
    app: Appliance,
    driver: Option<ElectionDriver>,
    client: FanoutHost,
    server: FanoutHost,
    dir: PathBuf,
    alive: bool,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.driver = None;
        self.app.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    fn ok(&mut self, req: Request) -> anyhow::Result<Payload> {
        match self.app.handle(req) {
            Response::Ok(p) => Ok(p),
            Response::Error(e) => bail!("console error: {e}"),
        }
    }

    fn role(&mut self) -> anyhow::Result<String> {
        match self.ok(Request::Status)? {
            Payload::Status(s) => Ok(s.role),
            p => bail!("unexpected answer {p:?}"),
        }
    }

    /// Whether this node, as a backup, follows node `master` and is synced.
    fn synced_to(&mut self, master: u64) -> anyhow::Result<bool> {
        match self.ok(Request::Status)? {
            Payload::Status(s) => Ok(s
                .election
                .is_some_and(|e| e["freshness"]["synced"] == true && e["master"] == master)),
            p => bail!("unexpected answer {p:?}"),
        }
    }

    fn poll(&mut self) {
        if let Some(d) = &mut self.driver {
            d.poll(Instant::now(), &mut self.app);
        }
    }
}

/// A UDP port free on both 127.0.0.1 and 127.0.0.2.
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0")?;
        let port = a.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.2", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no UDP port free on both 127.0.0.1 and 127.0.0.2")
}

#[allow(clippy::too_many_arguments)]
fn node(
    tag: &str,
    id: u32,
    priority: u8,
    local: &str,
    peer: &str,
    peer_id: u32,
    sync_port: u16,
    election_port: u16,
) -> anyhow::Result<Node> {
    let dir = std::env::temp_dir().join(format!(
        "ftfw-lab-failover-{tag}-{}-{sync_port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         [[port]]\nname = \"outside\"\nbackend = \"mem\"\n\n[[port]]\nname = \"inside\"\nbackend = \"mem\"\n\n\
         [[bridge]]\nports = [\"outside\", \"inside\"]\n\n[conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\", \"accept in outside proto tcp dport {SERVER_PORT} ct new\"]\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {sync_port}\nalive_interval_ms = 50\n\n\
         [failover]\nmode = \"election\"\nnode = {id}\npriority = {priority}\nkey = \"{KEY}\"\n\
         port = {election_port}\ncheck_interval_ms = 50\n\n\
         [[failover.peer]]\nnode = {peer_id}\naddress = \"{peer}\"\n"
    );
    let path = dir.join("ftfwd.toml");
    std::fs::write(&path, text)?;
    let cfg = config::load(&path)?;
    let mut hosts = Vec::new();
    let mut ends: Vec<Vec<MemPort>> = Vec::new();
    let app = Appliance::start(cfg, &mut |i, p, w, n| {
        if w == 0 {
            let (host, mut e) = mem::fanout(&format!("{tag}-{}", p.name), &p.name, n, 4096);
            e.reverse();
            hosts.push((i, host));
            ends.push(e);
        }
        Ok(Box::new(ends[i].pop().expect("one end per worker")))
    })?;
    let driver = ElectionDriver::new(app.config(), Instant::now())?;
    hosts.sort_by_key(|(i, _)| *i);
    let mut it = hosts.into_iter().map(|(_, h)| h);
    let (Some(client), Some(server)) = (it.next(), it.next()) else {
        bail!("expected two ports")
    };
    Ok(Node {
        app,
        driver: Some(driver),
        client,
        server,
        dir,
        alive: true,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Idle,
    SynSent,
    Established,
    Done,
    Broken,
}

/// One transfer: the client's and the server's ends of it.
struct Transfer {
    sport: u16,
    st: St,
    reset: bool,
    // Client.
    c_iss: u32,
    /// Next server sequence number the client expects.
    c_rcv_nxt: u32,
    got: usize,
    req_acked: bool,
    c_last_tx: Instant,
    last_progress: Instant,
    established_at_crash: bool,
    // Server.
    s_open: bool,
    s_iss: u32,
    /// Request received.
    s_req: bool,
    /// Offsets (0..=size+1, size is the FIN) acknowledged and sent next.
    s_una: usize,
    s_nxt: usize,
    s_timer: Instant,
}

impl Transfer {
    fn live(&self) -> bool {
        matches!(self.st, St::SynSent | St::Established)
    }
}

fn seg(from_client: bool, sport: u16, seq: u32, ack: u32, flags: u8, len: usize) -> Vec<u8> {
    let (src_ip, dst_ip, src_mac, dst_mac, src_port, dst_port) = if from_client {
        (
            CLIENT_IP,
            SERVER_IP,
            CLIENT_MAC,
            SERVER_MAC,
            sport,
            SERVER_PORT,
        )
    } else {
        (
            SERVER_IP,
            CLIENT_IP,
            SERVER_MAC,
            CLIENT_MAC,
            SERVER_PORT,
            sport,
        )
    };
    FrameSpec {
        src_mac,
        dst_mac,
        src_ip: IpAddr::V4(src_ip),
        dst_ip: IpAddr::V4(dst_ip),
        l4: L4Spec::Tcp {
            src_port,
            dst_port,
            seq,
            ack,
            flags,
            window: WINDOW,
            options: TcpOptions::default(),
        },
        payload_len: len,
        ..FrameSpec::default()
    }
    .to_vec()
    .expect("a valid TCP frame")
}

/// The run's state apart from the cluster.
struct Hosts {
    t: Vec<Transfer>,
    size: usize,
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    crash: Option<Instant>,
    recovered_at: Option<Instant>,
    retransmitted: u64,
    delivered: usize,
}

impl Hosts {
    fn index(&self, port: u16) -> Option<usize> {
        let i = usize::from(port.checked_sub(BASE_PORT)?);
        (i < self.t.len()).then_some(i)
    }

    /// A frame that reached the client host from firewall `fw` (0 or 1).
    fn client_rx(&mut self, frame: &[u8], fw: usize, now: Instant) {
        let Ok(m) = parse_frame(frame) else { return };
        if m.tuple.proto != 6 || m.tuple.src_port != SERVER_PORT {
            return;
        }
        let Some(i) = self.index(m.tuple.dst_port) else {
            return;
        };
        let size = self.size;
        let x = &mut self.t[i];
        let tcp = m.tcp;
        if tcp.flags & f::RST != 0 {
            if x.live() {
                x.st = St::Broken;
                x.reset = true;
            }
            return;
        }
        let c_snd = x.c_iss.wrapping_add(1 + REQ_LEN);
        match x.st {
            St::SynSent => {
                if tcp.flags & (f::SYN | f::ACK) == f::SYN | f::ACK
                    && tcp.ack == x.c_iss.wrapping_add(1)
                {
                    x.c_rcv_nxt = tcp.seq.wrapping_add(1);
                    x.st = St::Established;
                    x.last_progress = now;
                    x.c_last_tx = now;
                    let seq = x.c_iss.wrapping_add(1);
                    self.to_server
                        .push_back(seg(true, x.sport, seq, x.c_rcv_nxt, f::ACK, 0));
                    self.to_server.push_back(seg(
                        true,
                        x.sport,
                        seq,
                        x.c_rcv_nxt,
                        f::ACK | f::PSH,
                        REQ_LEN as usize,
                    ));
                }
            }
            St::Established => {
                if tcp.flags & f::SYN != 0 {
                    // A duplicate SYN-ACK: acknowledge it again.
                    self.to_server
                        .push_back(seg(true, x.sport, c_snd, x.c_rcv_nxt, f::ACK, 0));
                    return;
                }
                if tcp.flags & f::ACK != 0 && tcp.ack == c_snd {
                    x.req_acked = true;
                }
                let len = tcp.payload_len as usize;
                if len > 0 {
                    if fw == 1
                        && x.established_at_crash
                        && self.crash.is_some()
                        && self.recovered_at.is_none()
                    {
                        self.recovered_at = Some(now);
                    }
                    if tcp.seq == x.c_rcv_nxt && x.got + len <= size {
                        x.c_rcv_nxt = x.c_rcv_nxt.wrapping_add(tcp.payload_len);
                        x.got += len;
                        self.delivered += len;
                        x.last_progress = now;
                    }
                }
                let mut flags = f::ACK;
                if tcp.flags & f::FIN != 0
                    && tcp.seq.wrapping_add(tcp.payload_len) == x.c_rcv_nxt
                    && x.got == size
                {
                    x.c_rcv_nxt = x.c_rcv_nxt.wrapping_add(1);
                    x.st = St::Done;
                    flags |= f::FIN;
                }
                if len > 0 || flags & f::FIN != 0 {
                    self.to_server
                        .push_back(seg(true, x.sport, c_snd, x.c_rcv_nxt, flags, 0));
                }
            }
            St::Done => {
                if tcp.flags & f::FIN != 0 {
                    // The server did not see our FIN-ACK: send it again.
                    self.to_server.push_back(seg(
                        true,
                        x.sport,
                        c_snd,
                        x.c_rcv_nxt,
                        f::FIN | f::ACK,
                        0,
                    ));
                }
            }
            St::Idle | St::Broken => {}
        }
    }

    /// A frame that reached the server host.
    fn server_rx(&mut self, frame: &[u8], now: Instant, rng: &mut u64) {
        let Ok(m) = parse_frame(frame) else { return };
        if m.tuple.proto != 6 || m.tuple.dst_port != SERVER_PORT {
            return;
        }
        let Some(i) = self.index(m.tuple.src_port) else {
            return;
        };
        let size = self.size;
        let x = &mut self.t[i];
        let tcp = m.tcp;
        if tcp.flags & f::RST != 0 {
            if x.live() {
                x.st = St::Broken;
                x.reset = true;
            }
            return;
        }
        let c_data = x.c_iss.wrapping_add(1);
        if tcp.flags & f::SYN != 0 {
            if !x.s_open {
                x.s_open = true;
                x.s_iss = splitmix(rng) as u32;
            }
            if !x.s_req {
                self.to_client
                    .push_back(seg(false, x.sport, x.s_iss, c_data, f::SYN | f::ACK, 0));
            }
            return;
        }
        if !x.s_open {
            return;
        }
        if tcp.flags & f::ACK != 0 {
            let off = tcp.ack.wrapping_sub(x.s_iss.wrapping_add(1)) as usize;
            if off <= size + 1 && off > x.s_una {
                x.s_una = off;
                x.s_nxt = x.s_nxt.max(off);
                x.s_timer = now;
            }
        }
        if tcp.payload_len > 0 && tcp.seq == c_data && !x.s_req {
            x.s_req = true;
            x.s_timer = now;
        }
        if tcp.flags & f::FIN != 0 && x.s_req {
            let ack = c_data.wrapping_add(REQ_LEN + 1);
            let seq = x.s_iss.wrapping_add(2).wrapping_add(size as u32);
            self.to_client
                .push_back(seg(false, x.sport, seq, ack, f::ACK, 0));
        }
    }

    /// The server's sending and both hosts' timers.
    fn tick(&mut self, now: Instant, stall: Duration) {
        let size = self.size;
        for x in &mut self.t {
            if !x.live() {
                continue;
            }
            if now.duration_since(x.last_progress) > stall {
                x.st = St::Broken;
                continue;
            }
            // Client retransmissions: SYN and request.
            if now.duration_since(x.c_last_tx) > RTO {
                if x.st == St::SynSent {
                    x.c_last_tx = now;
                    self.to_server
                        .push_back(seg(true, x.sport, x.c_iss, 0, f::SYN, 0));
                } else if !x.req_acked && x.got == 0 {
                    x.c_last_tx = now;
                    self.to_server.push_back(seg(
                        true,
                        x.sport,
                        x.c_iss.wrapping_add(1),
                        x.c_rcv_nxt,
                        f::ACK | f::PSH,
                        REQ_LEN as usize,
                    ));
                }
            }
            if !x.s_req {
                continue;
            }
            // Server: go-back-N on timeout, then fill the window.
            if x.s_una < x.s_nxt && now.duration_since(x.s_timer) > RTO {
                x.s_nxt = x.s_una;
                x.s_timer = now;
                self.retransmitted += 1;
            }
            let ack = x.c_iss.wrapping_add(1 + REQ_LEN);
            while x.s_nxt <= size && x.s_nxt < x.s_una + WINDOW_SEGS * MSS {
                let seq = x.s_iss.wrapping_add(1).wrapping_add(x.s_nxt as u32);
                if x.s_nxt == size {
                    self.to_client
                        .push_back(seg(false, x.sport, seq, ack, f::FIN | f::ACK, 0));
                    x.s_nxt = size + 1;
                    break;
                }
                let len = MSS.min(size - x.s_nxt);
                let flags = if x.s_nxt + len == size {
                    f::ACK | f::PSH
                } else {
                    f::ACK
                };
                self.to_client
                    .push_back(seg(false, x.sport, seq, ack, flags, len));
                x.s_nxt += len;
            }
        }
    }
}

/// Hands every frame of `q` to the live nodes' ports on one side; returns
/// the copies dropped on full rings.
fn deliver(q: &mut VecDeque<Vec<u8>>, nodes: &mut [Node], client_side: bool) -> u64 {
    let mut drops = 0;
    let mut b = [PacketBuf::new()];
    while let Some(frame) = q.pop_front() {
        for n in nodes.iter_mut().filter(|n| n.alive) {
            b[0].set(&frame);
            let port = if client_side {
                &mut n.client
            } else {
                &mut n.server
            };
            if port.tx_burst(&mut b) != 1 {
                drops += 1;
            }
        }
    }
    drops
}

/// Runs the election drivers of the live nodes until `cond` holds or 15 s
/// pass.
fn settle(
    nodes: &mut [Node],
    what: &str,
    mut cond: impl FnMut(&mut [Node]) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond(nodes)? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        let until = Instant::now() + Duration::from_millis(10);
        while Instant::now() < until {
            for n in nodes.iter_mut() {
                n.poll();
            }
            std::thread::sleep(POLL_EVERY);
        }
    }
    Ok(())
}

fn sync_counters(n: &mut Node) -> anyhow::Result<(u64, u64)> {
    match n.ok(Request::SyncStatus)? {
        Payload::SyncStatus(s) => Ok((s.msgs_out, s.bytes_out)),
        p => bail!("unexpected answer {p:?}"),
    }
}

/// `(tx, invalid, standby_dropped)` of a node's workers.
fn fw_counters(n: &mut Node) -> anyhow::Result<(u64, u64, u64)> {
    match n.ok(Request::Stats)? {
        Payload::Stats(s) => {
            let fields = s.total.fields();
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map_or(0, |(_, v)| *v)
            };
            Ok((get("tx"), get("invalid"), get("standby_dropped")))
        }
        p => bail!("unexpected answer {p:?}"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether fw1 is to crash now.
fn crash_due(h: &Hosts, opts: &FailoverOpts, now: Instant, t0: Instant) -> bool {
    if h.crash.is_some() || opts.no_crash {
        return false;
    }
    match opts.crash_at {
        Some(at) => now.duration_since(t0) >= at,
        None => h.delivered * 2 >= h.size * h.t.len(),
    }
}

/// Runs the experiment; `progress` gets a line now and then.
pub fn run(opts: &FailoverOpts, mut progress: impl FnMut(&str)) -> anyhow::Result<FailoverReport> {
    anyhow::ensure!(
        (1..=40_000).contains(&opts.transfers),
        "transfers must be between 1 and 40000"
    );
    anyhow::ensure!(
        (1..=1 << 30).contains(&opts.object_size),
        "object size must be between 1 byte and 1 GiB"
    );
    let started = Instant::now();
    let (sp, ep) = (free_port()?, free_port()?);
    let mut nodes = vec![
        node("fw1", 1, 200, "127.0.0.1", "127.0.0.2", 2, sp, ep)?,
        node("fw2", 2, 100, "127.0.0.2", "127.0.0.1", 1, sp, ep)?,
    ];
    progress("cluster up, waiting for fw1 to become primary and fw2 to sync");
    settle(&mut nodes, "fw1 primary and fw2 synced", |ns| {
        Ok(ns[0].role()? == "active" && ns[1].role()? == "backup" && ns[1].synced_to(1)?)
    })?;

    let mut rng = opts.seed ^ 0x5EED_F00D;
    let t0 = Instant::now();
    let transfers: Vec<Transfer> = (0..opts.transfers)
        .map(|i| Transfer {
            sport: BASE_PORT + i as u16,
            st: St::Idle,
            reset: false,
            c_iss: splitmix(&mut rng) as u32,
            c_rcv_nxt: 0,
            got: 0,
            req_acked: false,
            c_last_tx: t0,
            last_progress: t0,
            established_at_crash: false,
            s_open: false,
            s_iss: 0,
            s_req: false,
            s_una: 0,
            s_nxt: 0,
            s_timer: t0,
        })
        .collect();
    let mut h = Hosts {
        t: transfers,
        size: opts.object_size,
        to_server: VecDeque::new(),
        to_client: VecDeque::new(),
        crash: None,
        recovered_at: None,
        retransmitted: 0,
        delivered: 0,
    };
    let mut next_open = 0usize;
    let mut hub_drops = 0u64;
    let mut last_poll = t0;
    let mut last_report = t0;
    let mut last_role_check = t0;
    let (mut sync_msgs, mut sync_bytes) = (0, 0);
    let mut fw1 = (0, 0, 0);
    let mut takeover: Option<Instant> = None;
    let mut bufs: Vec<PacketBuf> = (0..64).map(|_| PacketBuf::new()).collect();
    let end = loop {
        let now = Instant::now();
        if now.duration_since(t0) > opts.max_run {
            progress("hard time limit reached; unfinished transfers count as broken");
            for x in h.t.iter_mut().filter(|x| x.live() || x.st == St::Idle) {
                x.st = St::Broken;
            }
        }
        if now.duration_since(last_poll) >= POLL_EVERY {
            last_poll = now;
            for n in nodes.iter_mut().filter(|n| n.alive) {
                n.poll();
            }
        }
        // The crash.
        if crash_due(&h, opts, now, t0) {
            {
                (sync_msgs, sync_bytes) = sync_counters(&mut nodes[0])?;
                let n1 = &mut nodes[0];
                n1.driver = None;
                n1.app.stop();
                n1.alive = false;
                // Stopped workers publish their final counters.
                fw1 = fw_counters(n1)?;
                if opts.flush_backup_at_crash {
                    nodes[1].ok(Request::FlushExternal)?;
                }
                h.crash = Some(now);
                for x in &mut h.t {
                    x.established_at_crash = x.st == St::Established;
                }
                progress(&format!(
                    "crashed fw1 at {:.0} ms with {} transfers established",
                    ms(now.duration_since(t0)),
                    h.t.iter().filter(|x| x.established_at_crash).count()
                ));
            }
        }
        if let Some(c) = h.crash {
            if takeover.is_none() && now.duration_since(last_role_check) >= Duration::from_millis(5)
            {
                last_role_check = now;
                if nodes[1].role()? == "active" {
                    let t = Instant::now();
                    takeover = Some(t);
                    progress(&format!(
                        "fw2 active {:.0} ms after the crash",
                        ms(t.duration_since(c))
                    ));
                }
            }
        }
        // Open transfers up to the concurrency.
        let live = h.t.iter().filter(|x| x.live()).count();
        for _ in live..opts.concurrency {
            if next_open >= h.t.len() {
                break;
            }
            let x = &mut h.t[next_open];
            next_open += 1;
            x.st = St::SynSent;
            x.c_last_tx = now;
            x.last_progress = now;
            h.to_server
                .push_back(seg(true, x.sport, x.c_iss, 0, f::SYN, 0));
        }
        h.tick(now, opts.stall);
        hub_drops += deliver(&mut h.to_server, &mut nodes, true);
        hub_drops += deliver(&mut h.to_client, &mut nodes, false);
        // Frames the firewalls forwarded.
        let mut moved = 0;
        for (fw, n) in nodes.iter_mut().enumerate() {
            if !n.alive {
                continue;
            }
            for _ in 0..16 {
                let k = n.client.rx_burst(&mut bufs);
                for b in &bufs[..k] {
                    h.client_rx(&b.data, fw, now);
                }
                // Small objects finish within a few bursts: crash before
                // taking more of them.
                if crash_due(&h, opts, now, t0) {
                    break;
                }
                let j = n.server.rx_burst(&mut bufs);
                for b in &bufs[..j] {
                    h.server_rx(&b.data, now, &mut rng);
                }
                moved += k + j;
                if k + j == 0 {
                    break;
                }
            }
        }
        if now.duration_since(last_report) >= Duration::from_secs(1) {
            last_report = now;
            let done = h.t.iter().filter(|x| x.st == St::Done).count();
            let broken = h.t.iter().filter(|x| x.st == St::Broken).count();
            progress(&format!(
                "{:>6.1} s: {done}/{} done, {broken} broken, {} MB delivered",
                now.duration_since(t0).as_secs_f64(),
                h.t.len(),
                h.delivered / 1_000_000
            ));
        }
        if next_open >= h.t.len() && h.t.iter().all(|x| !x.live()) && !crash_due(&h, opts, now, t0)
        {
            break now;
        }
        if moved == 0 && h.to_server.is_empty() && h.to_client.is_empty() {
            std::thread::sleep(Duration::from_micros(100));
        }
    };
    // Let fw2's takeover be recorded even when the traffic ended first.
    if let (Some(_), None) = (h.crash, takeover) {
        let _ = settle(&mut nodes[1..], "fw2 active", |ns| {
            Ok(ns[0].role()? == "active")
        });
        takeover = Some(Instant::now());
    }
    // Workers publish counters now and then while busy, and always when
    // stopped: stop the survivors, then read.
    if h.crash.is_none() {
        (sync_msgs, sync_bytes) = sync_counters(&mut nodes[0])?;
        nodes[0].driver = None;
        nodes[0].app.stop();
        fw1 = fw_counters(&mut nodes[0])?;
    }
    nodes[1].driver = None;
    nodes[1].app.stop();
    let fw2 = fw_counters(&mut nodes[1])?;
    let est = h.t.iter().filter(|x| x.established_at_crash).count();
    let recovered =
        h.t.iter()
            .filter(|x| x.established_at_crash && x.st == St::Done)
            .count();
    let report = FailoverReport {
        transfers: opts.transfers,
        object_size: opts.object_size,
        seed: opts.seed,
        crashed: h.crash.is_some(),
        flushed_backup: h.crash.is_some() && opts.flush_backup_at_crash,
        crash_at_ms: h.crash.map(|c| ms(c.duration_since(t0))),
        flows_established_at_crash: est,
        flows_recovered: recovered,
        recovery_ratio: if est == 0 {
            1.0
        } else {
            recovered as f64 / est as f64
        },
        broken_transfers: h.t.iter().filter(|x| x.st == St::Broken).count(),
        reset_transfers: h.t.iter().filter(|x| x.reset).count(),
        transfers_completed: h.t.iter().filter(|x| x.st == St::Done).count(),
        time_to_recover_ms: h
            .crash
            .zip(h.recovered_at)
            .map(|(c, r)| ms(r.duration_since(c))),
        takeover_ms: h.crash.zip(takeover).map(|(c, t)| ms(t.duration_since(c))),
        sync_msgs,
        sync_bytes,
        retransmit_timeouts: h.retransmitted,
        fw1_forwarded: fw1.0,
        fw2_forwarded: fw2.0,
        fw2_standby_dropped: fw2.2,
        invalid: fw1.1 + fw2.1,
        hub_drops,
        run_ms: ms(end.duration_since(t0)),
        total_ms: ms(started.elapsed()),
    };
    Ok(report)
}
