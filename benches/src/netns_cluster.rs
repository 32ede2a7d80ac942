//! `ftfw-lab netns cluster`: an N-member multi-primary cluster of ftfwd on
//! AF_PACKET ports with real kernel TCP endpoints (root, issue 12).
//!
//! ```text
//!                   +-- fw1 (o)  (i) --+
//! client --[brc]----+-- fw2 (o)  (i) --+----[brs]-- server
//!  192.0.2.1        +-- fwN (o)  (i) --+             192.0.2.2
//!                   fw1..fwN (y) --[bry]-- sync + cluster, 203.0.113.1..N
//! ```
//!
//! The hubs are Linux bridges with ageing 0 in one namespace, so every
//! member sees every frame; the members are transparent bridges (client and
//! server share a subnet). Each forwards only the frames whose bucket it
//! owns (a frame that is not IP goes by its two MACs); the frame it emits
//! is flooded by the other hub to the other members, which drop it as not
//! theirs (`not_owner`): every frame crosses exactly once, no loop. The
//! members replicate to each other with FT-FW and the lowest live id keeps
//! the bucket map.
//!
//! With `--routed` the members are routers instead: the client
//! (192.0.2.1/24) and the server (198.51.100.2/24) route each other's
//! subnet through the cluster's virtual addresses .254, which every member
//! answers at the cluster's shared multicast MAC (`[cluster] shared_mac`,
//! as CLUSTERIP did); each member has its own addresses (.11, .12, ...)
//! and routes only the flows of its buckets.
//!
//! Scenarios, each with a batch of concurrent transfers (the lab's
//! HTTP-like client, paused mid-way) running through every member:
//! - `crash`: SIGKILL of one member; its buckets are committed and
//!   forwarded by their backups, no transfer breaks;
//! - `rejoin`: the member is restarted; it resyncs, becomes ready and gets
//!   a share back by planned hand-offs, no transfer breaks;
//! - `drain`: `ftfwctl cluster drain K` moves every bucket off K with no
//!   transfer broken; `undrain` gives it a share back.
//!
//! Namespaces are created by the run and removed when it ends, whatever
//! happens; only documentation address ranges are used and nothing is
//! routed out of a namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use ftfw_testkit::netns::{self, sh, NetnsLab};
use serde_json::Value;

use crate::netns_failover::{fetch_result, hub_bridge, lab_bins, Lab, KEY};

mod pings;
mod scenarios;
mod uplinks;

pub use pings::FragmentedPings;

/// Which scenario(s) to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// SIGKILL of a member mid-transfer.
    Crash,
    /// `crash`, then the member is restarted mid-transfer.
    Rejoin,
    /// `ftfwctl cluster drain` mid-transfer, then `undrain`.
    Drain,
    /// `crash`, `rejoin` and `drain` in turn on one lab.
    All,
}

/// What the run does.
#[derive(Clone, Debug)]
pub struct ClusterNetnsOptions {
    /// Where ftfwd, ftfwctl and ftfw-lab are (default: next to this
    /// program).
    pub bin_dir: Option<PathBuf>,
    /// Members (2 to 8).
    pub nodes: u32,
    /// Concurrent transfers of each batch.
    pub transfers: usize,
    /// Object size of each transfer.
    pub bytes: u64,
    /// Pause of each transfer after its first 64 KiB (the fault comes
    /// during it).
    pub pause_ms: u64,
    /// The member crashed, restarted or drained.
    pub victim: u32,
    /// What to run.
    pub scenario: Scenario,
    /// Routed mode: client and server on two subnets with the cluster's
    /// virtual addresses as gateways, answered at its shared multicast MAC
    /// (`[cluster] shared_mac`); default transparent.
    pub routed: bool,
    /// Workers per member (several: bucket commits go to the worker the
    /// AF_PACKET steering program sends the flow's packets to).
    pub workers: usize,
    /// `mode = "primary-backup"`: member 1 (the master when the cluster
    /// forms) owns every bucket; default multi-primary.
    pub primary_backup: bool,
    /// `uplinks_down_when_idle`: a member owning no buckets keeps its
    /// outside link (`o`) down; the lab's scripts run `ip link set` in
    /// the member's namespace (`uplinks.rs`).
    pub uplinks_down_when_idle: bool,
    /// `[cluster] kernel_filter`: other members' frames dropped in the
    /// kernel (default) or by the workers.
    pub kernel_filter: bool,
}

impl Default for ClusterNetnsOptions {
    fn default() -> Self {
        ClusterNetnsOptions {
            bin_dir: None,
            nodes: 3,
            transfers: 200,
            bytes: 300_000,
            pause_ms: 5000,
            victim: 2,
            scenario: Scenario::All,
            routed: false,
            workers: 1,
            primary_backup: false,
            uplinks_down_when_idle: false,
            kernel_filter: true,
        }
    }
}

impl ClusterNetnsOptions {
    /// Checks the ranges the command line accepts.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!((2..=8).contains(&self.nodes), "--nodes must be 2 to 8");
        anyhow::ensure!(
            (1..=1000).contains(&self.transfers),
            "--transfers must be 1 to 1000"
        );
        anyhow::ensure!(
            (100_000..=100_000_000).contains(&self.bytes),
            "--bytes must be between 100000 and 100000000 (transfers pause after 64 KiB)"
        );
        anyhow::ensure!(
            (500..=20_000).contains(&self.pause_ms),
            "--pause-ms must be 500 to 20000"
        );
        anyhow::ensure!(
            (1..=self.nodes).contains(&self.victim),
            "--victim must be a member (1 to {})",
            self.nodes
        );
        anyhow::ensure!((1..=8).contains(&self.workers), "--workers must be 1 to 8");
        Ok(())
    }
}

/// One member's worker counters over a scenario (differences).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MemberCounters {
    /// The member.
    pub node: u32,
    /// Frames received from both ports.
    pub rx: u64,
    /// Frames transmitted (forwarded).
    pub tx: u64,
    /// Frames of buckets another member owns, dropped.
    pub not_owner: u64,
}

/// What one scenario measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScenarioReport {
    /// `crash`, `rejoin` or `drain`.
    pub scenario: Scenario,
    /// The member crashed, restarted or drained.
    pub node: u32,
    /// Transfers running through the cluster at the event (all batches of
    /// the scenario).
    pub transfers: usize,
    /// Of those, completed intact.
    pub completed: usize,
    /// Of those, broken (reset, stalled, corrupt).
    pub broken: usize,
    /// The errors of the broken ones.
    pub errors: Vec<String>,
    /// Milliseconds from the event (SIGKILL, restart, drain request) until
    /// every live member applied the same new map, every bucket is
    /// forwarded by exactly one live member, no move is under way (and,
    /// after a rejoin, the member owns a share).
    pub time_to_settle_ms: u64,
    /// Buckets each member owned before the event (index = id - 1).
    pub owned_before: Vec<u32>,
    /// Buckets each member owned once settled (0 for a dead one).
    pub owned_after: Vec<u32>,
    /// Buckets whose owner changed (from the maps before and after: the
    /// sum of what the gaining members gained).
    pub buckets_moved: u64,
    /// Flows committed from the replicated caches meanwhile (driver
    /// counters `committed_flows`, summed).
    pub flows_committed: u64,
    /// `drain`: milliseconds from `undrain` until the member owns a share
    /// again and the map is applied everywhere.
    pub undrain_ms: Option<u64>,
    /// `drain`: what the member owns after `undrain`.
    pub owned_after_undrain: Option<u32>,
    /// `uplinks_down_when_idle`: each member's outside link (index = id
    /// minus 1) before the event, `KERNEL/REPORTED`: its administrative
    /// state in the member's namespace (`up`, `down`), then the member's
    /// `uplinks.state` in `ftfwctl cluster status`; `-`: not running.
    /// Empty when off.
    pub uplinks_before: Vec<String>,
    /// The same once settled (after a drain: once the drained member
    /// owns nothing and its uplink went down).
    pub uplinks_after: Vec<String>,
    /// `drain`: the same after `undrain`.
    pub uplinks_after_undrain: Vec<String>,
    /// Worker counters of the members alive throughout, over the scenario.
    pub counters: Vec<MemberCounters>,
}

/// What the run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterNetnsReport {
    /// Members.
    pub nodes: u32,
    /// "transparent" or "routed".
    pub mode: &'static str,
    /// Workers per member.
    pub workers: usize,
    /// Buckets of the map.
    pub buckets: u32,
    /// Concurrent transfers per batch.
    pub transfers: usize,
    /// Object size.
    pub bytes: u64,
    /// Milliseconds from the start of the members until the first map was
    /// applied everywhere with every member owning a share.
    pub startup_ms: u64,
    /// The scenarios run, in order.
    pub scenarios: Vec<ScenarioReport>,
    /// Frames each live member received per second once the traffic was
    /// over (a forwarding loop would keep it high).
    pub idle_rx_per_s: Vec<u64>,
    /// Whether other members' frames were dropped in the kernel
    /// (`[cluster] kernel_filter`).
    pub kernel_filter: bool,
    /// Over the scenarios, frames the workers of the members alive
    /// throughout received per frame forwarded (no loop: 2N-1 with N
    /// members forwarding and no kernel filter, about 1 with it; a little
    /// more while buckets move).
    pub rx_per_forwarded: f64,
    /// Fragmented pings after start-up (see [`FragmentedPings`]).
    pub fragmented_pings: FragmentedPings,
}

impl ClusterNetnsReport {
    /// Whether every scenario passed: nothing broken, ownership as it
    /// should be.
    pub fn passed(&self) -> bool {
        self.scenarios.iter().all(|s| {
            s.broken == 0
                && s.completed == s.transfers
                && match s.scenario {
                    Scenario::Crash => s.owned_after[s.node as usize - 1] == 0,
                    Scenario::Rejoin => s.owned_after[s.node as usize - 1] > 0,
                    Scenario::Drain => {
                        s.owned_after[s.node as usize - 1] == 0
                            && s.owned_after_undrain.is_some_and(|o| o > 0)
                    }
                    Scenario::All => true,
                }
        })
    }

    /// The text `ftfw-lab netns cluster` prints (ends with a newline).
    pub fn text(&self) -> String {
        let mut o = format!(
            "{} members ({}, {} worker(s) each), {} buckets, batches of {} transfers of {} bytes; map applied everywhere {} ms after start\n",
            self.nodes, self.mode, self.workers, self.buckets, self.transfers, self.bytes, self.startup_ms
        );
        for s in &self.scenarios {
            let name = serde_json::to_value(s.scenario).unwrap_or_default();
            o += &format!(
                "{} fw{}: transfers {}, completed {}, broken {}; settled in {} ms, {} bucket(s) moved, {} flow(s) committed; owned {:?} -> {:?}\n",
                name.as_str().unwrap_or("?"),
                s.node,
                s.transfers,
                s.completed,
                s.broken,
                s.time_to_settle_ms,
                s.buckets_moved,
                s.flows_committed,
                s.owned_before,
                s.owned_after
            );
            if !s.uplinks_after.is_empty() {
                o += &format!(
                    "  uplinks (outside link per member): {:?} -> {:?}\n",
                    s.uplinks_before, s.uplinks_after
                );
                if !s.uplinks_after_undrain.is_empty() {
                    o += &format!("  uplinks after undrain: {:?}\n", s.uplinks_after_undrain);
                }
            }
            if let (Some(ms), Some(owned)) = (s.undrain_ms, s.owned_after_undrain) {
                o += &format!("  undrain: owns {owned} bucket(s) again {ms} ms later\n");
            }
            for e in &s.errors {
                o += &format!("  broken: {e}\n");
            }
        }
        o += &format!(
            "no loop: {:.2} frames received per frame forwarded (kernel filter {}), idle rx/s per member {:?}\n",
            self.rx_per_forwarded,
            if self.kernel_filter { "on" } else { "off" },
            self.idle_rx_per_s
        );
        o += &format!(
            "fragmented pings (3,000 bytes): {} of {} answered\n",
            self.fragmented_pings.received, self.fragmented_pings.sent
        );
        o
    }
}

const CLIENT: &str = "192.0.2.1/24";
/// The cluster's multicast MAC in routed mode.
const SHARED_MAC: &str = "03:00:5e:00:00:01";
const BUCKETS: u32 = 4096;

/// The running lab: namespaces, members, server.
pub struct ClusterLab {
    lab: Lab,
    o: ClusterNetnsOptions,
    /// PID of each member's ftfwd (`None`: dead).
    pids: Vec<Option<u32>>,
    configs: Vec<PathBuf>,
    starts: u32,
    /// Batches of transfers started (names their hold files).
    batches: u32,
}

/// A batch of transfers: one `ftfw-lab fetch --parallel` in the client's
/// namespace, stopped by its PID if dropped unfinished. Its transfers stay
/// paused mid-way (after `pause_ms`) until [`Batch::release`], so a slow
/// start cannot let them finish before the scenario acts on them.
struct Batch {
    child: Option<Child>,
    transfers: usize,
    hold_file: PathBuf,
}

impl Batch {
    /// Lets the paused transfers go on.
    fn release(&self) {
        let _ = std::fs::remove_file(&self.hold_file);
    }

    /// Releases it and waits for it: (completed, errors).
    fn finish(mut self) -> (usize, Vec<String>) {
        self.release();
        let Some(child) = self.child.take() else {
            return (0, vec!["not started".into()]);
        };
        let v = fetch_result(child);
        let results = match v {
            Value::Array(a) => a,
            v => vec![v],
        };
        let completed = results.iter().filter(|r| r["ok"] == true).count();
        let mut errors: Vec<String> = results
            .iter()
            .filter(|r| r["ok"] != true)
            .map(|r| r["error"].as_str().unwrap_or("unknown").to_string())
            .collect();
        if results.len() < self.transfers {
            errors.push(format!(
                "{} result(s) missing",
                self.transfers - results.len()
            ));
        }
        (completed, errors)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.release();
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The coordinator part of `ftfwctl cluster status --json`.
fn coord(v: &Value) -> &Value {
    if v["coordinator"].is_object() {
        &v["coordinator"]
    } else {
        &v["cluster"]["coordinator"]
    }
}

/// `nodes[id]` of a coordinator status.
fn node_entry(c: &Value, id: u32) -> &Value {
    c["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == id))
        .unwrap_or(&Value::Null)
}

/// Per live member: (id, [buckets_gained, committed_flows, rx, tx,
/// not_owner]).
type Sample = Vec<(u32, [u64; 5])>;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ClusterLab {
    /// Builds the namespaces and starts every member; returns once the
    /// first map is applied everywhere with every member owning a share.
    pub fn start(o: &ClusterNetnsOptions) -> anyhow::Result<(ClusterLab, u64)> {
        o.check()?;
        let bin = lab_bins(o.bin_dir.as_deref(), "cluster")?;
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run_no = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lab = Lab {
            net: NetnsLab::new("ftfwcl", &format!("x{run_no}"))?,
            bin,
        };
        let mut cl = ClusterLab {
            lab,
            o: o.clone(),
            pids: vec![None; o.nodes as usize],
            configs: Vec::new(),
            starts: 0,
            batches: 0,
        };
        cl.build()?;
        for k in 1..=o.nodes {
            let p = cl.config(k)?;
            cl.configs.push(p);
        }
        let t0 = Instant::now();
        for k in 1..=o.nodes {
            cl.start_member(k)?;
            if k == 1 && o.primary_backup {
                // Member 1 is the primary (the scenarios' victim): it
                // forms the cluster alone before the others start.
                cl.lab.wait("member 1 to own every bucket", 20, || {
                    cl.cluster_status(1).is_some_and(|v| {
                        coord(&v)["forwarding"].as_u64() == Some(u64::from(BUCKETS))
                    })
                })?;
            }
        }
        cl.wait_settled("the first bucket map applied by every member", 30, None)?;
        let startup_ms = ms(t0.elapsed());
        let exe = cl.lab.exe("ftfw-lab");
        let s = cl.lab.ns("s");
        cl.lab.spawn(
            &s,
            &exe,
            &["serve", "--listen", cl.server(), "--max-conns", "1024"],
            "server.out",
        )?;
        cl.lab.wait("a first fetch through the cluster", 20, || {
            cl.lab
                .fetch(cl.server(), 10_000, 0)
                .map(fetch_result)
                .is_ok_and(|r| r["ok"] == true)
        })?;
        Ok((cl, startup_ms))
    }

    /// The lab's directory (configurations, logs).
    pub fn dir(&self) -> &Path {
        self.lab.dir()
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let n = self.o.nodes;
        let mut roles = vec!["c".to_string(), "s".to_string(), "h".to_string()];
        roles.extend((1..=n).map(|k| k.to_string()));
        for r in &roles {
            let ns = self.lab.net.add_ns(r)?;
            // No IPv6 link-local chatter (router solicitations, MLD) on
            // the hubs: the frames crossing are the lab's own.
            sh(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ])?;
        }
        let h = self.lab.ns("h");
        for br in ["brc", "brs", "bry"] {
            hub_bridge(&h, br)?;
        }
        let mut links = vec![
            ("c".to_string(), "c0", "hc".to_string(), "brc"),
            ("s".to_string(), "s0", "hs".to_string(), "brs"),
        ];
        for k in 1..=n {
            links.push((k.to_string(), "o", format!("h{k}o"), "brc"));
            links.push((k.to_string(), "i", format!("h{k}i"), "brs"));
            links.push((k.to_string(), "y", format!("h{k}y"), "bry"));
        }
        for (role, ifname, hub_if, br) in &links {
            let ns = self.lab.ns(role);
            self.lab.net.veth((&ns, ifname), (&h, hub_if))?;
            if *br != "bry" {
                for (x, i) in [(ns.as_str(), *ifname), (h.as_str(), hub_if.as_str())] {
                    self.lab.net.offloads_off(x, i)?;
                }
            }
            sh(&["ip", "-n", &h, "link", "set", hub_if, "master", br])?;
        }
        let (c, s) = (self.lab.ns("c"), self.lab.ns("s"));
        for ns in [&c, &s] {
            // Small socket buffers: a paused transfer stops the server
            // (zero window) instead of its whole object sitting in the
            // buffers, so the rest crosses the cluster after the fault.
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.tcp_rmem=4096 16384 32768",
                "net.ipv4.tcp_wmem=4096 16384 32768",
            ])?;
        }
        self.lab.net.ip(&c, &["addr", "add", CLIENT, "dev", "c0"])?;
        if self.o.routed {
            // Two subnets, each host routing the other's through the
            // cluster's virtual address (inside the lab only).
            self.lab
                .net
                .ip(&s, &["addr", "add", "198.51.100.2/24", "dev", "s0"])?;
            self.lab.net.ip(
                &c,
                &["route", "add", "198.51.100.0/24", "via", "192.0.2.254"],
            )?;
            self.lab.net.ip(
                &s,
                &["route", "add", "192.0.2.0/24", "via", "198.51.100.254"],
            )?;
        } else {
            self.lab
                .net
                .ip(&s, &["addr", "add", "192.0.2.2/24", "dev", "s0"])?;
        }
        for k in 1..=n {
            let ns = self.lab.ns(&k.to_string());
            self.lab.net.ip(
                &ns,
                &["addr", "add", &format!("203.0.113.{k}/24"), "dev", "y"],
            )?;
        }
        Ok(())
    }

    /// The server's listening address.
    fn server(&self) -> &'static str {
        if self.o.routed {
            "198.51.100.2:8080"
        } else {
            "192.0.2.2:8080"
        }
    }

    /// Member `k`'s `[dataplane]` mode, ports and what routed mode adds.
    fn forwarding_config(&self, k: u32) -> String {
        if !self.o.routed {
            return format!(
                "[dataplane]\nworkers = {}\npoll_mode = \"adaptive\"\n\n\
                    [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"o\"\n\n\
                    [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"i\"\n\n\
                    [[bridge]]\nports = [\"outside\", \"inside\"]\n\n",
                self.o.workers
            );
        }
        format!(
            "[dataplane]\nworkers = {w}\npoll_mode = \"adaptive\"\nmode = \"routed\"\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"o\"\naddresses = [\"192.0.2.{a}/24\"]\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"i\"\naddresses = [\"198.51.100.{a}/24\"]\n\n\
             [[virtual_address]]\nport = \"outside\"\naddress = \"192.0.2.254/24\"\n\n\
             [[virtual_address]]\nport = \"inside\"\naddress = \"198.51.100.254/24\"\n\n",
            a = 10 + k,
            w = self.o.workers,
        )
    }

    fn config(&self, k: u32) -> anyhow::Result<PathBuf> {
        let dir = self.dir();
        let mut members = String::new();
        for j in 1..=self.o.nodes {
            members += &format!("\n[[cluster.member]]\nid = {j}\naddress = \"203.0.113.{j}\"\n");
        }
        let text = format!(
            "[daemon]\nconsole_socket = \"{d}/fw{k}.sock\"\n\n\
             {fwd}\
             [conntrack]\ncapacity = 65536\n\n\
             [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\", \"accept in outside proto tcp dport 8080 ct new\", \"accept proto icmp\"]\n\n\
             [sync]\ntransport = \"ftfw\"\nlocal = \"203.0.113.{k}\"\nport = 3780\ninterface = \"y\"\nalive_interval_ms = 50\n\n\
             [cluster]\nnode = {k}\nmode = \"{mode}\"\nbuckets = {BUCKETS}\nbackups = 1\nreplicate = \"all\"\nport = 3782\nheartbeat_ms = 50\nauto_rebalance = true\nkernel_filter = {kf}\nkey = \"{KEY}\"\n{shared}{uplinks}{members}",
            d = dir.display(),
            fwd = self.forwarding_config(k),
            mode = if self.o.primary_backup {
                "primary-backup"
            } else {
                "multi-primary"
            },
            uplinks = self.uplink_config()?,
            kf = self.o.kernel_filter,
            shared = if self.o.routed {
                format!("shared_mac = \"{SHARED_MAC}\"\n")
            } else {
                String::new()
            },
        );
        let p = dir.join(format!("fw{k}.toml"));
        std::fs::write(&p, text)?;
        Ok(p)
    }

    fn start_member(&mut self, k: u32) -> anyhow::Result<()> {
        let ns = self.lab.ns(&k.to_string());
        let ftfwd = self.lab.exe("ftfwd");
        let cfg = self.configs[k as usize - 1]
            .to_str()
            .context("configuration path not UTF-8")?
            .to_string();
        self.starts += 1;
        let log = format!("fw{k}-{}.out", self.starts);
        let pid = self.lab.spawn(&ns, &ftfwd, &["--config", &cfg], &log)?;
        self.pids[k as usize - 1] = Some(pid);
        let sock = self.dir().join(format!("fw{k}.sock"));
        self.lab
            .net
            .wait_console(&self.lab.exe("ftfwctl"), &sock, Duration::from_secs(20))
            .with_context(|| format!("logs in {}", self.dir().display()))
    }

    fn live(&self) -> Vec<u32> {
        (1..=self.o.nodes)
            .filter(|k| self.pids[*k as usize - 1].is_some())
            .collect()
    }

    fn cluster_status(&self, k: u32) -> Option<Value> {
        self.lab.ctl(k, &["cluster", "status"])
    }

    /// Every live member's coordinator status, if every one answers.
    fn statuses(&self) -> Option<Vec<(u32, Value)>> {
        self.live()
            .into_iter()
            .map(|k| self.cluster_status(k).map(|v| (k, coord(&v).clone())))
            .collect()
    }

    /// Whether the live members agree on one applied map, each sees the
    /// others alive, their forwarding sets cover every bucket once (by
    /// count), no move is under way; `owner` (member, owns a share or
    /// not) holds; in multi-primary every live member not drained owns a
    /// share.
    fn settled(&self, owner: Option<(u32, bool)>) -> Option<Vec<(u32, Value)>> {
        let st = self.statuses()?;
        let live = self.live();
        let v0 = st.first()?.1["map_version"].as_u64()?;
        let mut forwarding = 0;
        for (k, c) in &st {
            let (m, a) = (c["map_version"].as_u64()?, c["applied_version"].as_u64()?);
            if m == 0 || m != a || m != v0 {
                return None;
            }
            if c["pending"].as_array().is_some_and(|p| !p.is_empty()) {
                return None;
            }
            for j in 1..=self.o.nodes {
                let e = node_entry(c, j);
                let alive = e["alive"] == true;
                if alive != live.contains(&j) {
                    return None;
                }
                if j == *k
                    && live.contains(&j)
                    && e["drained"] != true
                    && e["owned"] == 0
                    && !self.o.primary_backup
                {
                    return None;
                }
            }
            forwarding += c["forwarding"].as_u64()?;
        }
        if forwarding != u64::from(BUCKETS) {
            return None;
        }
        if let Some((who, owns)) = owner {
            let owned = node_entry(&st[0].1, who)["owned"].as_u64()?;
            if (owned > 0) != owns {
                return None;
            }
        }
        Some(st)
    }

    fn wait_settled(
        &self,
        what: &str,
        secs: u64,
        owner: Option<(u32, bool)>,
    ) -> anyhow::Result<Vec<(u32, Value)>> {
        let mut got = None;
        self.lab.wait(what, secs, || {
            got = self.settled(owner);
            got.is_some()
        })?;
        got.context("settled")
    }

    /// Buckets each member owns in the map of the first live member.
    fn owned(&self, st: &[(u32, Value)]) -> Vec<u32> {
        (1..=self.o.nodes)
            .map(|j| {
                st.first()
                    .and_then(|(_, c)| node_entry(c, j)["owned"].as_u64())
                    .and_then(|o| u32::try_from(o).ok())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Counters of every live member.
    fn sample(&self) -> Sample {
        self.live()
            .into_iter()
            .map(|k| {
                let c = self.cluster_status(k).unwrap_or_default();
                let c = coord(&c);
                let s = self.lab.ctl(k, &["stats"]).unwrap_or_default();
                let t = |n: &str| netns::counter(&s, n).unwrap_or(0);
                (
                    k,
                    [
                        c["counters"]["buckets_gained"].as_u64().unwrap_or(0),
                        c["driver"]["committed_flows"].as_u64().unwrap_or(0),
                        t("rx"),
                        t("tx"),
                        t("not_owner"),
                    ],
                )
            })
            .collect()
    }

    fn batch(&mut self) -> anyhow::Result<Batch> {
        let t = self.o.transfers;
        self.batches += 1;
        let hold_file = self.lab.dir().join(format!("hold-{}", self.batches));
        std::fs::write(&hold_file, b"")
            .with_context(|| format!("creating {}", hold_file.display()))?;
        let child = self
            .lab
            .net
            .command(&self.lab.ns("c"), self.lab.exe("ftfw-lab"))
            .args([
                "fetch",
                "--connect",
                self.server(),
                "--bytes",
                &self.o.bytes.to_string(),
                "--stall-ms",
                "15000",
                "--pause-ms",
                &self.o.pause_ms.to_string(),
                "--hold-file",
                &hold_file.to_string_lossy(),
                "--parallel",
                &t.max(2).to_string(),
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the transfers")?;
        // One transfer asked for: the second one runs too but is not
        // counted (`--parallel` is at least 2 for a JSON array).
        Ok(Batch {
            child: Some(child),
            transfers: t.max(2),
            hold_file,
        })
    }
}

/// Runs the scenario(s). Needs root, iproute2 and ethtool, and ftfwd,
/// ftfwctl and ftfw-lab in `bin_dir` (default: next to this program).
pub fn run_netns_cluster(o: &ClusterNetnsOptions) -> anyhow::Result<ClusterNetnsReport> {
    let (mut lab, startup_ms) = ClusterLab::start(o)?;
    // A first round, not counted, lets routed members learn the hosts'
    // link addresses (a member holds only 16 packets per worker while it
    // solicits; the first round's 48 fragments may overflow that).
    lab.fragmented_pings()?;
    let fragmented_pings = lab.fragmented_pings()?;
    let mut scenarios = Vec::new();
    let steps: &[Scenario] = match o.scenario {
        Scenario::Crash => &[Scenario::Crash],
        Scenario::Rejoin => &[Scenario::Crash, Scenario::Rejoin],
        Scenario::Drain => &[Scenario::Drain],
        Scenario::All => &[Scenario::Crash, Scenario::Rejoin, Scenario::Drain],
    };
    for s in steps {
        let r = match s {
            Scenario::Crash => lab.crash(),
            Scenario::Rejoin => lab.rejoin(),
            _ => lab.drain(),
        }
        .with_context(|| format!("logs in {}", lab.dir().display()))?;
        scenarios.push(r);
    }
    let idle_rx_per_s = lab.idle_rx_per_s();
    let (rx, tx) = scenarios
        .iter()
        .flat_map(|s| &s.counters)
        .fold((0u64, 0u64), |(r, t), c| (r + c.rx, t + c.tx));
    #[allow(clippy::cast_precision_loss)]
    let rx_per_forwarded = if tx == 0 { 0.0 } else { rx as f64 / tx as f64 };
    Ok(ClusterNetnsReport {
        nodes: o.nodes,
        mode: if o.routed { "routed" } else { "transparent" },
        workers: o.workers,
        buckets: BUCKETS,
        transfers: o.transfers,
        bytes: o.bytes,
        startup_ms,
        scenarios,
        idle_rx_per_s,
        kernel_filter: o.kernel_filter,
        rx_per_forwarded,
        fragmented_pings,
    })
}
