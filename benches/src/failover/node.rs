//! One node of the cluster: an appliance on mem ports, its election
//! driver, and the console queries the run makes of it.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ftfw_control::appliance::Appliance;
use ftfw_control::config;
use ftfw_control::console::proto::{Payload, Request, Response};
use ftfw_control::console::ConsoleHandler;
use ftfw_control::election_driver::ElectionDriver;
use ftfw_dataplane::port::mem::FanoutHost;
use ftfw_testkit::mem::{MemPorts, MEM_BRIDGE};

use super::{FailoverOpts, Transport, KEY, SERVER_PORT, UDP_PORT};

pub(super) struct Node {
    pub(super) app: Appliance,
    /// The node's sync thread (to read its CPU time).
    pub(super) sync_tid: Option<u32>,
    pub(super) driver: Option<ElectionDriver>,
    /// A cluster member's coordinator driver (`ftfw-lab cluster`).
    pub(super) cluster: Option<ftfw_control::cluster_driver::ClusterDriver>,
    pub(super) client: FanoutHost,
    pub(super) server: FanoutHost,
    pub(super) dir: PathBuf,
    pub(super) alive: bool,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.driver = None;
        self.cluster = None;
        self.app.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    pub(super) fn ok(&mut self, req: Request) -> anyhow::Result<Payload> {
        match self.app.handle(req) {
            Response::Ok(p) => Ok(p),
            Response::Error(e) => bail!("console error: {e}"),
        }
    }

    pub(super) fn role(&mut self) -> anyhow::Result<String> {
        match self.ok(Request::Status)? {
            Payload::Status(s) => Ok(s.role),
            p => bail!("unexpected answer {p:?}"),
        }
    }

    /// Whether this node, as a backup, follows node `master` and is synced.
    pub(super) fn synced_to(&mut self, master: u64) -> anyhow::Result<bool> {
        match self.ok(Request::Status)? {
            Payload::Status(s) => Ok(s
                .election
                .is_some_and(|e| e["freshness"]["synced"] == true && e["master"] == master)),
            p => bail!("unexpected answer {p:?}"),
        }
    }

    pub(super) fn poll(&mut self) {
        if let Some(d) = &mut self.driver {
            d.poll(Instant::now(), &mut self.app);
        }
        if let Some(d) = &mut self.cluster {
            d.poll(Instant::now(), &mut self.app);
        }
    }

    /// `(sync msgs out, sync bytes out)`.
    pub(super) fn sync_counters(&mut self) -> anyhow::Result<(u64, u64)> {
        match self.ok(Request::SyncStatus)? {
            Payload::SyncStatus(s) => Ok((s.msgs_out, s.bytes_out)),
            p => bail!("unexpected answer {p:?}"),
        }
    }

    /// The node's lazy replication counters (`None`: off).
    pub(super) fn lazy_stats(&mut self) -> anyhow::Result<Option<ftfw_sync::lazy::LazyStats>> {
        match self.ok(Request::SyncStatus)? {
            Payload::SyncStatus(s) => Ok(s.lazy),
            p => bail!("unexpected answer {p:?}"),
        }
    }

    /// `(deferred, defer_released, defer_timeouts)` of the node's workers.
    pub(super) fn defer_counters(&mut self) -> anyhow::Result<(u64, u64, u64)> {
        match self.ok(Request::Stats)? {
            Payload::Stats(s) => {
                let t = s.total;
                Ok((t.deferred, t.defer_released, t.defer_timeouts))
            }
            p => bail!("unexpected answer {p:?}"),
        }
    }

    /// The node's worker counters that the report uses.
    pub(super) fn fw_counters(&mut self) -> anyhow::Result<FwCounters> {
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
                    // The worker thread's CPU time in busy iterations, not
                    // their wall time (which counts time descheduled).
                    busy_ns: get("busy_cpu_ns"),
                    sync_cpu_ns: self.sync_tid.and_then(thread_cpu_ns).unwrap_or(0),
                })
            }
            p => bail!("unexpected answer {p:?}"),
        }
    }
}

/// Worker counters of a node, and its sync thread's CPU time.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FwCounters {
    pub(super) tx: u64,
    pub(super) invalid: u64,
    pub(super) standby_dropped: u64,
    pub(super) busy_ns: u64,
    pub(super) sync_cpu_ns: u64,
}

impl FwCounters {
    pub(super) fn since(self, b: FwCounters) -> FwCounters {
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
pub(super) fn thread_ids() -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU time of thread `tid` in nanoseconds (`/proc/self/task/TID/schedstat`).
pub(super) fn thread_cpu_ns(tid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// The thread named `name` among `tids`.
pub(super) fn thread_named(tids: &[u32], name: &str) -> Option<u32> {
    tids.iter().copied().find(|t| {
        std::fs::read_to_string(format!("/proc/self/task/{t}/comm")).is_ok_and(|c| c.trim() == name)
    })
}

/// A port free for UDP and TCP on 127.0.0.1 to 127.0.0.4 (the two nodes
/// and the sync link's two relay addresses).
pub(super) fn free_port() -> anyhow::Result<u16> {
    free_port_on(4)
}

/// `n` distinct ports, each free for UDP and TCP on 127.0.0.1 to
/// 127.0.0.`last` (a released port is often handed out again at once: two
/// probes in a row can return the same one, and the second socket bound
/// on it then fails).
pub(super) fn distinct_free_ports(n: usize, last: u8) -> anyhow::Result<Vec<u16>> {
    let mut out: Vec<u16> = Vec::with_capacity(n);
    for _ in 0..200 {
        if out.len() == n {
            break;
        }
        let p = free_port_on(last)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    anyhow::ensure!(
        out.len() == n,
        "no {n} distinct free ports on 127.0.0.1 to 127.0.0.{last}"
    );
    Ok(out)
}

/// A port free for UDP and TCP on 127.0.0.1 to 127.0.0.`last`.
pub(super) fn free_port_on(last: u8) -> anyhow::Result<u16> {
    'next: for _ in 0..200 {
        let a = UdpSocket::bind("127.0.0.1:0")?;
        let port = a.local_addr()?.port();
        for last in 1..=last {
            let ip = Ipv4Addr::new(127, 0, 0, last);
            if (last > 1 && UdpSocket::bind((ip, port)).is_err())
                || TcpListener::bind((ip, port)).is_err()
            {
                continue 'next;
            }
        }
        return Ok(port);
    }
    bail!("no port free for UDP and TCP on 127.0.0.1 to 127.0.0.{last}")
}

/// How one node is configured.
pub(super) struct NodeSpec<'a> {
    pub(super) tag: &'a str,
    pub(super) id: u32,
    pub(super) priority: u8,
    pub(super) local: &'a str,
    /// Where its sync messages go (the link's relay address).
    pub(super) sync_peer: &'a str,
    /// The other node (election messages go there directly).
    pub(super) peer: &'a str,
    pub(super) peer_id: u32,
    pub(super) sync_port: u16,
    pub(super) election_port: u16,
}

pub(super) fn node(spec: &NodeSpec<'_>, opts: &FailoverOpts) -> anyhow::Result<Node> {
    let tag = spec.tag;
    let dir = std::env::temp_dir().join(format!(
        "ftfw-lab-failover-{tag}-{}-{}",
        std::process::id(),
        spec.sync_port
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = {}\n\n\
         [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\", \"accept in outside proto tcp dport {SERVER_PORT} ct new\", \"accept in outside proto udp dport {UDP_PORT} ct new\"]\n\n",
        opts.flow_capacity
    );
    if opts.replication {
        let transport = match opts.transport {
            Transport::Ftfw if opts.defer => format!(
                "write = \"{}\"\ndefer_timeout_ms = {}\n",
                if opts.write_sync { "sync" } else { "defer" },
                opts.defer_timeout.as_millis().clamp(1, 1000)
            ),
            Transport::Ftfw => String::new(),
            t => format!("transport = \"{}\"\n", t.as_str()),
        };
        let transport = match opts.sync_level {
            Some(l) => format!("level = \"{l}\"\n{transport}"),
            None => transport,
        };
        // nftables drops on the kernel link must see each datagram, not a
        // segmented send (see kernel_link.rs).
        let transport = if opts.kernel_link {
            format!("udp_offload = false\n{transport}")
        } else {
            transport
        };
        let transport = match opts.lazy_barrier {
            Some(b) => format!("{transport}[sync.lazy]\nbarrier_ms = {}\n", b.as_millis()),
            None => transport,
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
    let before = thread_ids();
    let mut ports = MemPorts::new(tag, 4096);
    let app = Appliance::start(cfg, &mut |i, p, w, n| ports.open(i, p, w, n))?;
    // The lab measures the workers' CPU time (busy_cpu_ns).
    app.set_cpu_accounting(true);
    let driver = if opts.replication {
        Some(ElectionDriver::new(app.config(), Instant::now())?)
    } else {
        None
    };
    let mut it = ports.into_hosts().into_iter();
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
        cluster: None,
        client,
        server,
        dir,
        alive: true,
    })
}
