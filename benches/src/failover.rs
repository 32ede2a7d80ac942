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

mod cluster;
mod hosts;
mod kernel_link;
mod migrate;
mod multi;
mod node;
mod report;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

pub use self::cluster::Cluster;
pub use self::kernel_link::in_own_netns;
pub use self::migrate::MigrationRun;
pub use self::multi::{
    render_cluster, run_cluster, ClusterLabOpts, ClusterLabReport, Fault, MAX_LAB_NODES,
};
pub use self::report::{render, FailoverReport};
use crate::synclink::{LinkKind, LinkParams};

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
    /// Bayes lazy replication (`[sync.lazy]`) on both nodes with this
    /// barrier; `None`: off.
    pub lazy_barrier: Option<Duration>,
    /// `[sync] level` on both nodes (`full`, `established`, `none`);
    /// `None`: the default (`full`).
    pub sync_level: Option<&'static str>,
    /// `[sync] defer_timeout_ms` with `defer` (10 ms, the default).
    pub defer_timeout: Duration,
    /// `[sync] write = "sync"` (with `defer`, `ftfw` transport): every
    /// packet whose decision changed replicated state waits for the peer.
    pub write_sync: bool,
    /// `[conntrack] capacity` of both nodes (and so fw2's external cache).
    pub flow_capacity: usize,
    /// The sync link is kernel TCP/UDP between the nodes, made lossy by
    /// nftables, instead of the emulated link (only inside a lab
    /// namespace: `ftfw-lab netns loss`); the link's bandwidth and delay
    /// do not apply.
    pub kernel_link: bool,
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
            lazy_barrier: None,
            sync_level: None,
            defer_timeout: Duration::from_millis(10),
            write_sync: false,
            flow_capacity: 262_144,
            kernel_link: false,
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
        opts.lazy_barrier
            .is_none_or(|b| (Duration::from_millis(1)..=Duration::from_secs(60)).contains(&b)),
        "the lazy barrier must be between 1 ms and 60 s"
    );
    anyhow::ensure!(
        (1024..=1 << 24).contains(&opts.flow_capacity),
        "the flow capacity must be between 1024 and 16777216"
    );
    anyhow::ensure!(
        !opts.write_sync || opts.defer,
        "synchronous writes need defer (write = \"sync\" holds packets as defer does)"
    );
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

/// Runs the experiment on a cluster of its own; `progress` gets a line now
/// and then.
pub fn run(opts: &FailoverOpts, mut progress: impl FnMut(&str)) -> anyhow::Result<FailoverReport> {
    check(opts)?;
    let mut c = Cluster::start(opts, &mut progress)?;
    c.traffic(opts, progress)
}
