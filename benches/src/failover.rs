//! `ftfw-lab failover`: a two-node cluster in one process, no root, no NIC.
//!
//! Two real appliances (`Appliance::start`, the code ftfwd runs) on `mem`
//! ports in transparent mode, replication over an emulated dedicated link
//! ([`crate::synclink`]: loopback, with the bandwidth, delay and loss the
//! run asks for) and the built-in election ([`ElectionDriver`]). A hub on
//! the calling thread joins a virtual client host to both firewalls'
//! `outside` ports and a virtual server host to both `inside` ports: every
//! frame a host sends goes to both firewalls, every frame a firewall emits
//! goes to the host on that side (the backup does not forward, so only the
//! active firewall's copies arrive). Frames between the hosts can be delayed
//! to emulate a round-trip time. The hosts speak just enough TCP for
//! HTTP-like downloads: handshake, a 16-byte request, `object_size` bytes in
//! MSS segments with a fixed window of segments in flight, cumulative ACKs,
//! go-back-N retransmission on a fixed RTO, FIN. Sequence, ack and window
//! numbers are exact, so the firewalls' window tracking is left strict (not
//! `tcp_be_liberal`). A share of the transfers can run over UDP instead
//! (a request datagram, the object in datagrams whose length tells their
//! index, per-datagram acknowledgements, go-back-N; see [`udp_len`]).
//!
//! Mid-run fw1 (the primary) crashes: the sync link is cut (what fw1 sent
//! that has not reached fw2 is lost), its election driver is dropped with no
//! shutdown message and its appliance stopped; the hub stops delivering to
//! and from it. fw2 must detect the silence, commit the replicated flows and
//! forward; the run counts the transfers that were established at the crash
//! and completed anyway.
//!
//! A [`Cluster`] can also carry several traffic phases without a crash (the
//! performance experiments): each phase uses its own client address, so the
//! flows of one phase never meet the leftovers of another.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ftfw_control::appliance::Appliance;
use ftfw_control::config;
use ftfw_control::console::proto::{Payload, Request, Response};
use ftfw_control::console::ConsoleHandler;
use ftfw_control::election_driver::ElectionDriver;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::{parse_frame, FrameSpec, L4Spec, TcpOptions};
use ftfw_dataplane::port::mem::{self, FanoutHost, MemPort};
use ftfw_dataplane::port::{PacketBuf, Port};
use serde::Serialize;

use crate::synclink::{LinkCounters, LinkKind, LinkParams, SyncLink};

const KEY: &str = "000102030405060708090a0b0c0d0e0f1011121314151617";
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];
const SERVER_PORT: u16 = 80;
/// The server's port for UDP transfers.
const UDP_PORT: u16 = 4433;
/// Datagrams the server keeps unacknowledged per UDP transfer.
const UDP_WINDOW: usize = 16;
const BASE_PORT: u16 = 20000;
/// Transfers one phase may run (one client port each).
pub const MAX_TRANSFERS: usize = 40_000;
/// Traffic phases one cluster may run (one client address each).
pub const MAX_PHASES: u8 = 200;
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

/// The sync transport the cluster replicates with (`[sync] transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// FT-FW: sequence tracking, ACK/NACK, resend of the current state.
    Ftfw,
    /// The same datagrams with no recovery (conntrackd's NOTRACK over UDP).
    UdpBestEffort,
    /// NOTRACK over a TCP stream.
    Tcp,
}

impl Transport {
    /// Every transport, in the order the experiments compare them.
    pub const ALL: [Transport; 3] = [Transport::Ftfw, Transport::UdpBestEffort, Transport::Tcp];

    /// The name in the configuration file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ftfw => "ftfw",
            Transport::UdpBestEffort => "udp-best-effort",
            Transport::Tcp => "tcp",
        }
    }

    fn link_kind(self) -> LinkKind {
        match self {
            Transport::Tcp => LinkKind::Stream,
            Transport::Ftfw | Transport::UdpBestEffort => LinkKind::Datagram,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct FailoverOpts {
    /// Transfers (distinct client ports), at most [`MAX_TRANSFERS`].
    pub transfers: usize,
    /// Bytes per transfer.
    pub object_size: usize,
    /// Transfers under way at once.
    pub concurrency: usize,
    /// Crash fw1 this long after the first SYN; `None`: once half of the
    /// transfers are done (or half the bytes delivered) and a third of
    /// those under way are established (past three quarters: any).
    pub crash_at: Option<Duration>,
    /// Run without crashing fw1.
    pub no_crash: bool,
    /// Negative control: right after the crash, flush fw2's external cache
    /// (as if nothing had been replicated), so established transfers must
    /// break.
    pub flush_backup_at_crash: bool,
    /// Initial sequence numbers and the sync link's losses come from this.
    pub seed: u64,
    /// A transfer with no progress for this long is broken.
    pub stall: Duration,
    /// Hard limit of the traffic phase.
    pub max_run: Duration,
    /// Replication on (fw1 and fw2) or off (fw1 alone, no sync, no
    /// election; no crash possible).
    pub replication: bool,
    /// The sync transport.
    pub transport: Transport,
    /// The dedicated link (its seed is replaced by `seed`).
    pub link: LinkParams,
    /// Round-trip time between the client and the server hosts.
    pub rtt: Duration,
    /// Share (0..=1) of the transfers made over UDP instead of TCP.
    pub udp_share: f64,
    /// Whether the hub hands the hosts' frames to the backup as well (a
    /// transparent hub). Off, only fw1 sees them until it crashes, as
    /// behind a switch that follows the active firewall.
    pub mirror_to_backup: bool,
    /// `[sync] defer = true` on both nodes (with the `ftfw` transport
    /// only): a new flow's first packet leaves fw1 once fw2 acknowledged
    /// the flow.
    pub defer: bool,
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
            replication: true,
            transport: Transport::Ftfw,
            link: LinkParams::default(),
            rtt: Duration::ZERO,
            udp_share: 0.0,
            mirror_to_backup: true,
            defer: true,
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
    /// Transfers under way at once.
    pub concurrency: usize,
    /// Of the transfers, those made over UDP.
    pub udp_transfers: usize,
    /// Of the established at the crash, those over UDP.
    pub udp_established_at_crash: usize,
    /// Of those, the ones that completed.
    pub udp_recovered: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Whether replication (and fw2) was on.
    pub replication: bool,
    /// The sync transport.
    pub transport: Transport,
    /// Whether `[sync] defer` was on (ftfw transport only).
    pub defer: bool,
    /// Loss probability of the sync link.
    pub sync_loss: f64,
    /// One-way delay of the sync link.
    pub sync_delay_ms: f64,
    /// Bandwidth of the sync link.
    pub sync_bandwidth_bps: u64,
    /// Round-trip time between client and server.
    pub rtt_ms: f64,
    /// Whether fw1 was crashed.
    pub crashed: bool,
    /// Whether fw2's external cache was flushed at the crash (negative
    /// control).
    pub flushed_backup: bool,
    /// Milliseconds from the first SYN to the crash.
    pub crash_at_ms: Option<f64>,
    /// Transfers with the handshake done and not finished at the crash.
    pub flows_established_at_crash: usize,
    /// Of those, the ones fw2 had in its external cache right after the
    /// crash (as far as it had processed what reached it).
    pub flows_replicated_at_crash: Option<usize>,
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
    /// Crash to the moment every recovered transfer had traffic through fw2
    /// again (the last one's first segment forwarded by fw2).
    pub time_to_recover_ms: Option<f64>,
    /// Crash to the first segment of a pre-crash transfer forwarded by fw2.
    pub time_to_first_recovery_ms: Option<f64>,
    /// Crash to fw2 reporting the active role.
    pub takeover_ms: Option<f64>,
    /// fw2's takeover as its console reports it: the steps (commit,
    /// forward, announce, export) with their times, flows committed.
    pub takeover_steps: Option<ftfw_control::console::proto::RoleChange>,
    /// fw1's sync messages sent (before the crash).
    pub sync_msgs: u64,
    /// fw1's sync bytes sent (before the crash).
    pub sync_bytes: u64,
    /// What the dedicated link carried and lost (both directions).
    pub sync_link: LinkCounters,
    /// Completed transfers per second of the traffic phase.
    pub sessions_per_sec: f64,
    /// Object bytes delivered per second of the traffic phase, in Mbit/s.
    pub data_rate_mbps: f64,
    /// Server retransmission timeouts (each resends its window, go-back-N).
    pub retransmit_timeouts: u64,
    /// Frames fw1 sent out of its ports before the crash (all of them
    /// without a crash).
    pub fw1_forwarded: u64,
    /// Frames fw2 sent out of its ports.
    pub fw2_forwarded: u64,
    /// Frames fw2 dropped as a backup.
    pub fw2_standby_dropped: u64,
    /// Time fw1's worker spent handling frames (its busy time).
    pub fw1_worker_busy_ms: f64,
    /// CPU time of fw1's sync thread (`None` without replication).
    pub fw1_sync_cpu_ms: Option<f64>,
    /// Packets either firewall found invalid (window tracking and state).
    pub invalid: u64,
    /// First packets fw1 held (defer), up to the crash.
    pub fw1_deferred: u64,
    /// Of those, released by fw2's ACK.
    pub fw1_defer_released: u64,
    /// Of those, released by the timeout.
    pub fw1_defer_timeouts: u64,
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
    let link = &r.sync_link;
    format!(
        "failover: {} transfers of {} bytes ({} at once, {} over UDP), seed {}, rtt {:.0} ms\n\
         sync: {}{}, link {:.0} Mbit/s, delay {:.1} ms, loss {:.0}%\n\
         crash of fw1: {}\n\
         established at the crash: {}, replicated to fw2 by then: {}, recovered: {} ({:.1}%)\n\
         completed: {}, broken: {} ({} reset)\n\
         time to recover: {} (first flow {}, fw2 active after {})\n\
         fw1 sync before the crash: {} msgs, {} bytes; link delivered {}, lost {}, \
         retransmitted {}, queue drops {}, cut {}\n\
         frames forwarded: fw1 {}, fw2 {} (fw2 dropped {} as backup), invalid {}\n\
         defer on fw1: {} held, {} released by ACK, {} by timeout\n\
         retransmission timeouts: {}, hub drops: {}\n\
         traffic phase {:.0} ms ({:.0} sessions/s, {:.0} Mbit/s), whole run {:.0} ms\n",
        r.transfers,
        r.object_size,
        r.concurrency,
        r.udp_transfers,
        r.seed,
        r.rtt_ms,
        if r.replication {
            r.transport.as_str()
        } else {
            "off"
        },
        if r.defer { " (defer)" } else { "" },
        r.sync_bandwidth_bps as f64 / 1e6,
        r.sync_delay_ms,
        r.sync_loss * 100.0,
        if r.crashed {
            opt(r.crash_at_ms).replace(" ms", " ms after the first SYN")
        } else {
            "none".to_string()
        },
        r.flows_established_at_crash,
        r.flows_replicated_at_crash
            .map_or_else(|| "-".to_string(), |n| n.to_string()),
        r.flows_recovered,
        r.recovery_ratio * 100.0,
        r.transfers_completed,
        r.broken_transfers,
        r.reset_transfers,
        opt(r.time_to_recover_ms),
        opt(r.time_to_first_recovery_ms),
        opt(r.takeover_ms),
        r.sync_msgs,
        r.sync_bytes,
        link.delivered,
        link.lost,
        link.retransmissions,
        link.queue_drops,
        link.discarded_at_cut,
        r.fw1_forwarded,
        r.fw2_forwarded,
        r.fw2_standby_dropped,
        r.invalid,
        r.fw1_deferred,
        r.fw1_defer_released,
        r.fw1_defer_timeouts,
        r.retransmit_timeouts,
        r.hub_drops,
        r.run_ms,
        r.sessions_per_sec,
        r.data_rate_mbps,
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
    /// The node's sync thread (to read its CPU time).
    sync_tid: Option<u32>,
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

    /// `(sync msgs out, sync bytes out)`.
    fn sync_counters(&mut self) -> anyhow::Result<(u64, u64)> {
        match self.ok(Request::SyncStatus)? {
            Payload::SyncStatus(s) => Ok((s.msgs_out, s.bytes_out)),
            p => bail!("unexpected answer {p:?}"),
        }
    }

    /// `(deferred, defer_released, defer_timeouts)` of the node's workers.
    fn defer_counters(&mut self) -> anyhow::Result<(u64, u64, u64)> {
        match self.ok(Request::Stats)? {
            Payload::Stats(s) => {
                let t = s.total;
                Ok((t.deferred, t.defer_released, t.defer_timeouts))
            }
            p => bail!("unexpected answer {p:?}"),
        }
    }

    /// The node's worker counters that the report uses.
    fn fw_counters(&mut self) -> anyhow::Result<FwCounters> {
        match self.ok(Request::Stats)? {
            Payload::Stats(s) => {
                let fields = s.total.fields();
                let get = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map_or(0, |(_, v)| *v)
                };
                Ok(FwCounters {
                    tx: get("tx"),
                    invalid: get("invalid"),
                    standby_dropped: get("standby_dropped"),
                    busy_ns: get("busy_ns"),
                    sync_cpu_ns: self.sync_tid.and_then(thread_cpu_ns).unwrap_or(0),
                })
            }
            p => bail!("unexpected answer {p:?}"),
        }
    }
}

/// Worker counters of a node, and its sync thread's CPU time.
#[derive(Clone, Copy, Debug, Default)]
struct FwCounters {
    tx: u64,
    invalid: u64,
    standby_dropped: u64,
    busy_ns: u64,
    sync_cpu_ns: u64,
}

impl FwCounters {
    fn since(self, b: FwCounters) -> FwCounters {
        FwCounters {
            tx: self.tx - b.tx,
            invalid: self.invalid - b.invalid,
            standby_dropped: self.standby_dropped - b.standby_dropped,
            busy_ns: self.busy_ns - b.busy_ns,
            sync_cpu_ns: self.sync_cpu_ns.saturating_sub(b.sync_cpu_ns),
        }
    }
}

/// This process's thread ids.
fn thread_ids() -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU time of thread `tid` in nanoseconds (`/proc/self/task/TID/schedstat`).
fn thread_cpu_ns(tid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// The thread named `name` among `tids`.
fn thread_named(tids: &[u32], name: &str) -> Option<u32> {
    tids.iter().copied().find(|t| {
        std::fs::read_to_string(format!("/proc/self/task/{t}/comm")).is_ok_and(|c| c.trim() == name)
    })
}

/// A port free for UDP and TCP on 127.0.0.1 to 127.0.0.4 (the two nodes
/// and the sync link's two relay addresses).
fn free_port() -> anyhow::Result<u16> {
    'next: for _ in 0..200 {
        let a = UdpSocket::bind("127.0.0.1:0")?;
        let port = a.local_addr()?.port();
        for last in 1..=4u8 {
            let ip = Ipv4Addr::new(127, 0, 0, last);
            if (last > 1 && UdpSocket::bind((ip, port)).is_err())
                || TcpListener::bind((ip, port)).is_err()
            {
                continue 'next;
            }
        }
        return Ok(port);
    }
    bail!("no port free for UDP and TCP on 127.0.0.1 to 127.0.0.4")
}

/// How one node is configured.
struct NodeSpec<'a> {
    tag: &'a str,
    id: u32,
    priority: u8,
    local: &'a str,
    /// Where its sync messages go (the link's relay address).
    sync_peer: &'a str,
    /// The other node (election messages go there directly).
    peer: &'a str,
    peer_id: u32,
    sync_port: u16,
    election_port: u16,
}

fn node(spec: &NodeSpec<'_>, opts: &FailoverOpts) -> anyhow::Result<Node> {
    let tag = spec.tag;
    let dir = std::env::temp_dir().join(format!(
        "ftfw-lab-failover-{tag}-{}-{}",
        std::process::id(),
        spec.sync_port
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         [[port]]\nname = \"outside\"\nbackend = \"mem\"\n\n[[port]]\nname = \"inside\"\nbackend = \"mem\"\n\n\
         [[bridge]]\nports = [\"outside\", \"inside\"]\n\n[conntrack]\ncapacity = 262144\n\n\
         [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\", \"accept in outside proto tcp dport {SERVER_PORT} ct new\", \"accept in outside proto udp dport {UDP_PORT} ct new\"]\n\n"
    );
    if opts.replication {
        let transport = match opts.transport {
            Transport::Ftfw if opts.defer => "defer = true\n".to_string(),
            Transport::Ftfw => String::new(),
            t => format!("transport = \"{}\"\n", t.as_str()),
        };
        text += &format!(
            "[sync]\nlocal = \"{}\"\npeer = \"{}\"\nport = {}\nalive_interval_ms = 50\n{transport}\n\
             [failover]\nmode = \"election\"\nnode = {}\npriority = {}\nkey = \"{KEY}\"\n\
             port = {}\ncheck_interval_ms = 50\n\n\
             [[failover.peer]]\nnode = {}\naddress = \"{}\"\n",
            spec.local,
            spec.sync_peer,
            spec.sync_port,
            spec.id,
            spec.priority,
            spec.election_port,
            spec.peer_id,
            spec.peer,
        );
    }
    let path = dir.join("ftfwd.toml");
    std::fs::write(&path, text)?;
    let cfg = config::load(&path)?;
    let mut hosts = Vec::new();
    let mut ends: Vec<Vec<MemPort>> = Vec::new();
    let before = thread_ids();
    let app = Appliance::start(cfg, &mut |i, p, w, n| {
        if w == 0 {
            let (host, mut e) = mem::fanout(&format!("{tag}-{}", p.name), &p.name, n, 4096);
            e.reverse();
            hosts.push((i, host));
            ends.push(e);
        }
        Ok(Box::new(ends[i].pop().expect("one end per worker")))
    })?;
    let driver = if opts.replication {
        Some(ElectionDriver::new(app.config(), Instant::now())?)
    } else {
        None
    };
    hosts.sort_by_key(|(i, _)| *i);
    let mut it = hosts.into_iter().map(|(_, h)| h);
    let (Some(client), Some(server)) = (it.next(), it.next()) else {
        bail!("expected two ports")
    };
    let new: Vec<u32> = thread_ids()
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect();
    // A new thread names itself once it runs: wait for it a little.
    let mut sync_tid = None;
    for _ in 0..100 {
        sync_tid = thread_named(&new, "ftfw-sync");
        if sync_tid.is_some() || !opts.replication {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Node {
        app,
        sync_tid,
        driver,
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
    cip: Ipv4Addr,
    sport: u16,
    /// Over UDP (see [`udp_len`]) instead of TCP.
    udp: bool,
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
    /// First segment fw2 forwarded to the client after the crash.
    resumed_at: Option<Instant>,
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

fn seg(
    cip: Ipv4Addr,
    from_client: bool,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    len: usize,
) -> Vec<u8> {
    let (src_ip, dst_ip, src_mac, dst_mac, src_port, dst_port) = if from_client {
        (cip, SERVER_IP, CLIENT_MAC, SERVER_MAC, sport, SERVER_PORT)
    } else {
        (SERVER_IP, cip, SERVER_MAC, CLIENT_MAC, SERVER_PORT, sport)
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

/// A UDP datagram of a UDP transfer with `len` bytes of payload.
fn dgram(cip: Ipv4Addr, from_client: bool, sport: u16, len: usize) -> Vec<u8> {
    let (src_ip, dst_ip, src_mac, dst_mac, src_port, dst_port) = if from_client {
        (cip, SERVER_IP, CLIENT_MAC, SERVER_MAC, sport, UDP_PORT)
    } else {
        (SERVER_IP, cip, SERVER_MAC, CLIENT_MAC, UDP_PORT, sport)
    };
    FrameSpec {
        src_mac,
        dst_mac,
        src_ip: IpAddr::V4(src_ip),
        dst_ip: IpAddr::V4(dst_ip),
        l4: L4Spec::Udp { src_port, dst_port },
        payload_len: len,
        ..FrameSpec::default()
    }
    .to_vec()
    .expect("a valid UDP frame")
}

/// UDP transfers carry no header of their own: datagram `k` of an object
/// is `1000 + k % 256` bytes long (the last one is what remains), so its
/// length tells the receiver which one it is; with 16 in flight that is
/// unambiguous. The client acknowledges every datagram with a datagram of
/// `1 + next % 256` bytes (`next`: the index it expects), the request is 16
/// bytes. The server goes back to the first unacknowledged datagram after
/// an RTO without progress; the client repeats its request, or its last
/// acknowledgement, after an RTO without data.
fn udp_len(k: usize) -> usize {
    1000 + k % 256
}

/// Byte offset of UDP datagram `k`.
fn udp_offset(k: usize) -> usize {
    let (laps, r) = (k / 256, k % 256);
    1000 * k + laps * (255 * 256 / 2) + r * r.saturating_sub(1) / 2
}

/// Payload length of a UDP frame (`None`: not UDP from/to our ports).
fn udp_payload(m: &ftfw_dataplane::meta::PacketMeta) -> usize {
    let ip_hdr = usize::from(m.l4_offset.saturating_sub(m.l3_offset));
    usize::from(m.ip_len).saturating_sub(ip_hdr + 8)
}

/// The run's state apart from the cluster.
struct Hosts {
    t: Vec<Transfer>,
    size: usize,
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    crash: Option<Instant>,
    recovered_at: Option<Instant>,
    /// Client address of this traffic phase.
    cip: Ipv4Addr,
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
        if m.tuple.proto == 17 {
            self.client_rx_udp(&m, fw, now);
            return;
        }
        if m.tuple.proto != 6
            || m.tuple.src_port != SERVER_PORT
            || m.tuple.dst_ip() != IpAddr::V4(self.cip)
        {
            return;
        }
        let Some(i) = self.index(m.tuple.dst_port) else {
            return;
        };
        let size = self.size;
        let x = &mut self.t[i];
        let tcp = m.tcp;
        if fw == 1 && x.established_at_crash && self.crash.is_some() && x.resumed_at.is_none() {
            x.resumed_at = Some(now);
        }
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
                    self.to_server.push_back(seg(
                        x.cip,
                        true,
                        x.sport,
                        seq,
                        x.c_rcv_nxt,
                        f::ACK,
                        0,
                    ));
                    self.to_server.push_back(seg(
                        x.cip,
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
                    self.to_server.push_back(seg(
                        x.cip,
                        true,
                        x.sport,
                        c_snd,
                        x.c_rcv_nxt,
                        f::ACK,
                        0,
                    ));
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
                    self.to_server.push_back(seg(
                        x.cip,
                        true,
                        x.sport,
                        c_snd,
                        x.c_rcv_nxt,
                        flags,
                        0,
                    ));
                }
            }
            St::Done => {
                if tcp.flags & f::FIN != 0 {
                    // The server did not see our FIN-ACK: send it again.
                    self.to_server.push_back(seg(
                        x.cip,
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
        if m.tuple.proto == 17 {
            self.server_rx_udp(&m, now);
            return;
        }
        if m.tuple.proto != 6
            || m.tuple.dst_port != SERVER_PORT
            || m.tuple.src_ip() != IpAddr::V4(self.cip)
        {
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
                self.to_client.push_back(seg(
                    x.cip,
                    false,
                    x.sport,
                    x.s_iss,
                    c_data,
                    f::SYN | f::ACK,
                    0,
                ));
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
                .push_back(seg(x.cip, false, x.sport, seq, ack, f::ACK, 0));
        }
    }

    /// A UDP datagram that reached the client host from firewall `fw`.
    fn client_rx_udp(&mut self, m: &ftfw_dataplane::meta::PacketMeta, fw: usize, now: Instant) {
        if m.tuple.src_port != UDP_PORT || m.tuple.dst_ip() != IpAddr::V4(self.cip) {
            return;
        }
        let Some(i) = self.index(m.tuple.dst_port) else {
            return;
        };
        let size = self.size;
        let x = &mut self.t[i];
        if !x.udp {
            return;
        }
        if fw == 1 && x.established_at_crash && self.crash.is_some() && x.resumed_at.is_none() {
            x.resumed_at = Some(now);
        }
        // c_rcv_nxt: the index of the datagram expected next.
        let k = x.c_rcv_nxt as usize;
        let want = udp_len(k).min(size - x.got);
        if matches!(x.st, St::SynSent | St::Established) && udp_payload(m) == want && want > 0 {
            x.got += want;
            x.c_rcv_nxt += 1;
            self.delivered += want;
            x.last_progress = now;
            x.st = if x.got == size {
                St::Done
            } else {
                St::Established
            };
        }
        if x.st != St::Broken {
            x.c_last_tx = now;
            self.to_server
                .push_back(dgram(x.cip, true, x.sport, 1 + x.c_rcv_nxt as usize % 256));
        }
    }

    /// A UDP datagram that reached the server host.
    fn server_rx_udp(&mut self, m: &ftfw_dataplane::meta::PacketMeta, now: Instant) {
        if m.tuple.dst_port != UDP_PORT || m.tuple.src_ip() != IpAddr::V4(self.cip) {
            return;
        }
        let Some(i) = self.index(m.tuple.src_port) else {
            return;
        };
        let x = &mut self.t[i];
        if !x.udp {
            return;
        }
        let len = udp_payload(m);
        if len == REQ_LEN as usize {
            if !x.s_req {
                x.s_open = true;
                x.s_req = true;
                x.s_timer = now;
            }
            return;
        }
        if !x.s_req || !(1..=256).contains(&len) {
            return;
        }
        // The acknowledgement names the next index modulo 256; it lies in
        // s_una ..= s_nxt.
        let ahead = (len - 1 + 256 - x.s_una % 256) % 256;
        let next = x.s_una + ahead;
        if next > x.s_una && next <= x.s_nxt {
            x.s_una = next;
            x.s_timer = now;
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
            if x.udp {
                if now.duration_since(x.c_last_tx) > RTO {
                    x.c_last_tx = now;
                    let len = if x.got == 0 {
                        REQ_LEN as usize
                    } else {
                        1 + x.c_rcv_nxt as usize % 256
                    };
                    self.to_server.push_back(dgram(x.cip, true, x.sport, len));
                }
                if !x.s_req {
                    continue;
                }
                if x.s_una < x.s_nxt && now.duration_since(x.s_timer) > RTO {
                    x.s_nxt = x.s_una;
                    x.s_timer = now;
                    self.retransmitted += 1;
                }
                while x.s_nxt < x.s_una + UDP_WINDOW && udp_offset(x.s_nxt) < size {
                    let len = udp_len(x.s_nxt).min(size - udp_offset(x.s_nxt));
                    self.to_client.push_back(dgram(x.cip, false, x.sport, len));
                    x.s_nxt += 1;
                }
                continue;
            }
            // Client retransmissions: SYN and request.
            if now.duration_since(x.c_last_tx) > RTO {
                if x.st == St::SynSent {
                    x.c_last_tx = now;
                    self.to_server
                        .push_back(seg(x.cip, true, x.sport, x.c_iss, 0, f::SYN, 0));
                } else if !x.req_acked && x.got == 0 {
                    x.c_last_tx = now;
                    self.to_server.push_back(seg(
                        x.cip,
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
                    self.to_client.push_back(seg(
                        x.cip,
                        false,
                        x.sport,
                        seq,
                        ack,
                        f::FIN | f::ACK,
                        0,
                    ));
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
                    .push_back(seg(x.cip, false, x.sport, seq, ack, flags, len));
                x.s_nxt += len;
            }
        }
    }
}

/// Frames on their way from a host to the firewalls, each with the time it
/// arrives (half the round-trip time after it was sent).
#[derive(Default)]
struct HostWire {
    q: VecDeque<(Instant, Vec<u8>)>,
}

impl HostWire {
    fn send_all(&mut self, from: &mut VecDeque<Vec<u8>>, due: Instant) {
        self.q.extend(from.drain(..).map(|fr| (due, fr)));
    }

    /// Hands every frame that has arrived to the live nodes' ports on one
    /// side (only to fw1 while it lives when `mirror` is off); returns the
    /// copies dropped on full rings.
    fn deliver(
        &mut self,
        now: Instant,
        nodes: &mut [Node],
        client_side: bool,
        mirror: bool,
    ) -> u64 {
        let mut drops = 0;
        let mut b = [PacketBuf::new()];
        while self.q.front().is_some_and(|(t, _)| *t <= now) {
            let Some((_, frame)) = self.q.pop_front() else {
                break;
            };
            let fw1_alive = nodes[0].alive;
            for (i, n) in nodes.iter_mut().enumerate() {
                if !n.alive || (!mirror && i > 0 && fw1_alive) {
                    continue;
                }
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

/// How many transfers established at the crash `n`'s external cache holds.
fn known_to(n: &mut Node, h: &Hosts) -> anyhow::Result<usize> {
    let filter = ftfw_control::console::proto::FlowFilter {
        src: Some(IpAddr::V4(h.cip)),
        ..Default::default()
    };
    match n.ok(Request::ExternalList {
        filter,
        limit: Some(1_000_000),
    })? {
        Payload::ExternalFlows(l) => Ok(l
            .flows
            .iter()
            .filter_map(|f| f.original.sport)
            .filter_map(|p| h.index(p))
            .filter(|&i| h.t[i].established_at_crash)
            .count()),
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
        // Half of the transfers done, and a third of those under way
        // established (past three quarters, any): with a long RTT the
        // transfers drift in waves, and a crash between two waves would
        // find none established.
        None => {
            let done = h.t.iter().filter(|x| x.st == St::Done).count();
            let est = h.t.iter().filter(|x| x.st == St::Established).count();
            let live = h.t.iter().filter(|x| x.live()).count();
            // Progress: transfers done or bytes delivered, whichever is
            // further (few transfers of large objects finish together).
            let (n, total) = (h.t.len(), h.size * h.t.len());
            let half = done * 2 >= n || h.delivered * 2 >= total;
            let three_quarters = done * 4 >= n * 3 || h.delivered * 4 >= total * 3;
            half && est > 0 && (est * 3 >= live || three_quarters)
        }
    }
}

fn check(opts: &FailoverOpts) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_TRANSFERS).contains(&opts.transfers),
        "transfers must be between 1 and {MAX_TRANSFERS}"
    );
    anyhow::ensure!(
        (1..=1 << 30).contains(&opts.object_size),
        "object size must be between 1 byte and 1 GiB"
    );
    anyhow::ensure!(opts.concurrency >= 1, "concurrency must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&opts.udp_share),
        "the UDP share must be between 0 and 1"
    );
    anyhow::ensure!(
        opts.replication || opts.no_crash,
        "without replication there is no backup to fail over to: use no_crash"
    );
    Ok(())
}

/// A running cluster: fw1 (primary) and, with replication, fw2 and the
/// sync link between them.
pub struct Cluster {
    nodes: Vec<Node>,
    link: Option<SyncLink>,
    replication: bool,
    transport: Transport,
    link_params: LinkParams,
    started: Instant,
    phase: u8,
    crashed: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replication", &self.replication)
            .field("transport", &self.transport)
            .field("phase", &self.phase)
            .field("crashed", &self.crashed)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes first: their sync threads must not outlive the link's
        // relay by much, and the relay must not wait for them.
        self.nodes.clear();
        if let Some(l) = &mut self.link {
            let _ = l.stop();
        }
    }
}

impl Cluster {
    /// Starts the nodes (and the link) of `opts` and waits for fw1 to be
    /// primary and fw2 synced.
    pub fn start(opts: &FailoverOpts, mut progress: impl FnMut(&str)) -> anyhow::Result<Cluster> {
        let started = Instant::now();
        let mut link_params = opts.link;
        link_params.seed = opts.seed;
        if !opts.replication {
            let nodes = vec![node(
                &NodeSpec {
                    tag: "fw1",
                    id: 1,
                    priority: 200,
                    local: "127.0.0.1",
                    sync_peer: "127.0.0.3",
                    peer: "127.0.0.2",
                    peer_id: 2,
                    sync_port: free_port()?,
                    election_port: 0,
                },
                opts,
            )?];
            return Ok(Cluster {
                nodes,
                link: None,
                replication: false,
                transport: opts.transport,
                link_params,
                started,
                phase: 0,
                crashed: false,
            });
        }
        let (sp, ep) = (free_port()?, free_port()?);
        let addr = |last: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), sp);
        let link = SyncLink::start(
            opts.transport.link_kind(),
            link_params,
            addr(3),
            addr(4),
            addr(1),
            addr(2),
        )?;
        let mut nodes = vec![
            node(
                &NodeSpec {
                    tag: "fw1",
                    id: 1,
                    priority: 200,
                    local: "127.0.0.1",
                    sync_peer: "127.0.0.3",
                    peer: "127.0.0.2",
                    peer_id: 2,
                    sync_port: sp,
                    election_port: ep,
                },
                opts,
            )?,
            node(
                &NodeSpec {
                    tag: "fw2",
                    id: 2,
                    priority: 100,
                    local: "127.0.0.2",
                    sync_peer: "127.0.0.4",
                    peer: "127.0.0.1",
                    peer_id: 1,
                    sync_port: sp,
                    election_port: ep,
                },
                opts,
            )?,
        ];
        progress("cluster up, waiting for fw1 to become primary and fw2 to sync");
        settle(&mut nodes, "fw1 primary and fw2 synced", |ns| {
            Ok(ns[0].role()? == "active" && ns[1].role()? == "backup" && ns[1].synced_to(1)?)
        })?;
        Ok(Cluster {
            nodes,
            link: Some(link),
            replication: true,
            transport: opts.transport,
            link_params,
            started,
            phase: 0,
            crashed: false,
        })
    }

    /// One traffic phase of `opts` (transfers, object size, concurrency,
    /// crash, stall, rtt); the cluster's own settings (replication,
    /// transport, link) are those it was started with.
    pub fn traffic(
        &mut self,
        opts: &FailoverOpts,
        mut progress: impl FnMut(&str),
    ) -> anyhow::Result<FailoverReport> {
        check(opts)?;
        anyhow::ensure!(!self.crashed, "fw1 has crashed: start a new cluster");
        anyhow::ensure!(
            self.replication || opts.no_crash,
            "without replication there is no backup to fail over to"
        );
        anyhow::ensure!(
            self.phase < MAX_PHASES,
            "at most {MAX_PHASES} phases per cluster"
        );
        let cip = Ipv4Addr::new(192, 0, 2, 10 + self.phase);
        self.phase += 1;
        let nodes = &mut self.nodes;
        let mirror = opts.mirror_to_backup;
        let half_rtt = opts.rtt / 2;
        let (sync0, fw1_0) = (
            if self.replication {
                nodes[0].sync_counters()?
            } else {
                (0, 0)
            },
            nodes[0].fw_counters()?,
        );
        let fw2_0 = if nodes.len() > 1 {
            nodes[1].fw_counters()?
        } else {
            FwCounters::default()
        };
        let link0 = self
            .link
            .as_ref()
            .map(SyncLink::counters)
            .unwrap_or_default();
        let defer0 = nodes[0].defer_counters()?;

        let mut rng = opts.seed ^ 0x5EED_F00D ^ (u64::from(self.phase) << 32);
        let t0 = Instant::now();
        let transfers: Vec<Transfer> = (0..opts.transfers)
            .map(|i| Transfer {
                cip,
                sport: BASE_PORT + i as u16,
                // Spread evenly: every k-th transfer is UDP.
                udp: opts.udp_share > 0.0
                    && ((i + 1) as f64 * opts.udp_share).floor()
                        > (i as f64 * opts.udp_share).floor(),
                st: St::Idle,
                reset: false,
                c_iss: splitmix(&mut rng) as u32,
                c_rcv_nxt: 0,
                got: 0,
                req_acked: false,
                c_last_tx: t0,
                last_progress: t0,
                established_at_crash: false,
                resumed_at: None,
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
            cip,
            retransmitted: 0,
            delivered: 0,
        };
        let (mut wire_to_fw_c, mut wire_to_fw_s) = (HostWire::default(), HostWire::default());
        let mut next_open = 0usize;
        let mut hub_drops = 0u64;
        let mut last_poll = t0;
        let mut last_report = t0;
        let mut last_role_check = t0;
        let (mut sync_msgs, mut sync_bytes) = (0, 0);
        let mut fw1 = FwCounters::default();
        let mut fw1_defer = (0, 0, 0);
        let mut takeover: Option<Instant> = None;
        let mut replicated_at_crash = None;
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
                if let Some(l) = &self.link {
                    l.cut();
                }
                let n1 = &mut nodes[0];
                n1.driver = None;
                (sync_msgs, sync_bytes) = n1.sync_counters()?;
                n1.app.stop();
                n1.alive = false;
                self.crashed = true;
                // Stopped workers publish their final counters.
                fw1 = n1.fw_counters()?;
                fw1_defer = n1.defer_counters()?;
                if opts.flush_backup_at_crash {
                    nodes[1].ok(Request::FlushExternal)?;
                }
                h.crash = Some(now);
                for x in &mut h.t {
                    x.established_at_crash = x.st == St::Established;
                }
                if self.replication {
                    replicated_at_crash = Some(known_to(&mut nodes[1], &h)?);
                }
                progress(&format!(
                    "crashed fw1 at {:.0} ms with {} transfers established",
                    ms(now.duration_since(t0)),
                    h.t.iter().filter(|x| x.established_at_crash).count()
                ));
            }
            if let Some(c) = h.crash {
                if takeover.is_none()
                    && now.duration_since(last_role_check) >= Duration::from_millis(5)
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
            // Open transfers up to the concurrency; with an RTT, the first
            // ones are spread over one RTT so that they do not run in
            // lockstep (real clients never start in the same microsecond).
            let live = h.t.iter().filter(|x| x.live()).count();
            for _ in live..opts.concurrency {
                if next_open >= h.t.len()
                    || (next_open < opts.concurrency
                        && now < t0 + opts.rtt * next_open as u32 / opts.concurrency as u32)
                {
                    break;
                }
                let x = &mut h.t[next_open];
                next_open += 1;
                x.st = St::SynSent;
                x.c_last_tx = now;
                x.last_progress = now;
                h.to_server.push_back(if x.udp {
                    x.c_rcv_nxt = 0;
                    dgram(x.cip, true, x.sport, REQ_LEN as usize)
                } else {
                    seg(x.cip, true, x.sport, x.c_iss, 0, f::SYN, 0)
                });
            }
            h.tick(now, opts.stall);
            wire_to_fw_c.send_all(&mut h.to_server, now + half_rtt);
            wire_to_fw_s.send_all(&mut h.to_client, now + half_rtt);
            hub_drops += wire_to_fw_c.deliver(now, nodes, true, mirror);
            hub_drops += wire_to_fw_s.deliver(now, nodes, false, mirror);
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
                    // Small objects finish within a few bursts: crash
                    // before taking more of them.
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
            if next_open >= h.t.len()
                && h.t.iter().all(|x| !x.live())
                && !crash_due(&h, opts, now, t0)
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
        if h.crash.is_none() {
            if self.replication {
                let (m, b) = nodes[0].sync_counters()?;
                (sync_msgs, sync_bytes) = (m - sync0.0, b - sync0.1);
            }
            fw1 = nodes[0].fw_counters()?.since(fw1_0);
            fw1_defer = nodes[0].defer_counters()?;
        } else {
            (sync_msgs, sync_bytes) = (sync_msgs - sync0.0, sync_bytes - sync0.1);
            fw1 = fw1.since(fw1_0);
        }
        let takeover_steps = match (h.crash, nodes.len() > 1) {
            (Some(_), true) => match nodes[1].ok(Request::Status)? {
                Payload::Status(s) => s.last_takeover,
                p => bail!("unexpected answer {p:?}"),
            },
            _ => None,
        };
        let fw2 = if nodes.len() > 1 {
            nodes[1].fw_counters()?.since(fw2_0)
        } else {
            FwCounters::default()
        };
        let link = self
            .link
            .as_ref()
            .map(SyncLink::counters)
            .unwrap_or_default();
        let est = h.t.iter().filter(|x| x.established_at_crash).count();
        let recovered: Vec<&Transfer> =
            h.t.iter()
                .filter(|x| x.established_at_crash && x.st == St::Done)
                .collect();
        let resumed = |pick: fn(Duration, Duration) -> Duration| {
            let c = h.crash?;
            recovered
                .iter()
                .filter_map(|x| x.resumed_at.map(|r| r.duration_since(c)))
                .reduce(pick)
                .map(ms)
        };
        let run_secs = end.duration_since(t0).as_secs_f64().max(1e-6);
        let completed = h.t.iter().filter(|x| x.st == St::Done).count();
        let lp = self.link_params;
        let udp_est = h.t.iter().filter(|x| x.udp && x.established_at_crash);
        Ok(FailoverReport {
            transfers: opts.transfers,
            object_size: opts.object_size,
            concurrency: opts.concurrency,
            udp_transfers: h.t.iter().filter(|x| x.udp).count(),
            udp_established_at_crash: udp_est.clone().count(),
            udp_recovered: udp_est.filter(|x| x.st == St::Done).count(),
            seed: opts.seed,
            replication: self.replication,
            transport: self.transport,
            defer: self.replication && self.transport == Transport::Ftfw && opts.defer,
            sync_loss: lp.loss,
            sync_delay_ms: ms(lp.delay),
            sync_bandwidth_bps: lp.bandwidth_bps,
            rtt_ms: ms(opts.rtt),
            crashed: h.crash.is_some(),
            flushed_backup: h.crash.is_some() && opts.flush_backup_at_crash,
            crash_at_ms: h.crash.map(|c| ms(c.duration_since(t0))),
            flows_established_at_crash: est,
            flows_replicated_at_crash: replicated_at_crash,
            flows_recovered: recovered.len(),
            recovery_ratio: if est == 0 {
                1.0
            } else {
                recovered.len() as f64 / est as f64
            },
            broken_transfers: h.t.iter().filter(|x| x.st == St::Broken).count(),
            reset_transfers: h.t.iter().filter(|x| x.reset).count(),
            transfers_completed: completed,
            time_to_recover_ms: resumed(Duration::max),
            time_to_first_recovery_ms: resumed(Duration::min),
            takeover_ms: h.crash.zip(takeover).map(|(c, t)| ms(t.duration_since(c))),
            takeover_steps,
            sync_msgs,
            sync_bytes,
            sync_link: LinkCounters {
                delivered: link.delivered - link0.delivered,
                delivered_bytes: link.delivered_bytes - link0.delivered_bytes,
                lost: link.lost - link0.lost,
                retransmissions: link.retransmissions - link0.retransmissions,
                queue_drops: link.queue_drops - link0.queue_drops,
                discarded_at_cut: link.discarded_at_cut - link0.discarded_at_cut,
            },
            sessions_per_sec: completed as f64 / run_secs,
            data_rate_mbps: h.delivered as f64 * 8.0 / run_secs / 1e6,
            retransmit_timeouts: h.retransmitted,
            fw1_forwarded: fw1.tx,
            fw2_forwarded: fw2.tx,
            fw2_standby_dropped: fw2.standby_dropped,
            invalid: fw1.invalid + fw2.invalid,
            fw1_worker_busy_ms: fw1.busy_ns as f64 / 1e6,
            fw1_sync_cpu_ms: self.replication.then_some(fw1.sync_cpu_ns as f64 / 1e6),
            fw1_deferred: fw1_defer.0 - defer0.0,
            fw1_defer_released: fw1_defer.1 - defer0.1,
            fw1_defer_timeouts: fw1_defer.2 - defer0.2,
            hub_drops,
            run_ms: ms(end.duration_since(t0)),
            total_ms: ms(self.started.elapsed()),
        })
    }
}

/// Runs the experiment on a cluster of its own; `progress` gets a line now
/// and then.
pub fn run(opts: &FailoverOpts, mut progress: impl FnMut(&str)) -> anyhow::Result<FailoverReport> {
    check(opts)?;
    let mut c = Cluster::start(opts, &mut progress)?;
    c.traffic(opts, progress)
}
