//! `ftfw-lab netns failover`: the failover experiment with real kernel TCP
//! endpoints (root).
//!
//! ```text
//!                  +-- fw1 (node 1, priority 200) --+
//! client --[hub]---+                                +---[hub]-- server
//!                  +-- fw2 (node 2, priority 100) --+
//!                  fw1 <== sync + election, tbf-shaped, optionally lossy ==> fw2
//! ```
//!
//! Network namespaces for the client, the server, the hubs (Linux bridges
//! with ageing 0, so both firewalls see every frame) and the two firewalls
//! are created by the command and removed when it ends, whatever happens.
//! ftfwd runs on AF_PACKET ports, transparent or routed (virtual addresses
//! as the hosts' gateways), with FT-FW replication and the built-in
//! election. The sync link is shaped with tbf (1 Gbit/s by default) and can
//! drop a share of fw1's sync datagrams with nftables `numgen random`. The
//! lab's own HTTP-like client fetches objects through fw1, each transfer
//! paused mid-way; fw1 gets SIGKILL; the report says how many transfers
//! completed or broke and how long the takeover took. Only documentation
//! address ranges are used, and only the lab's own prefixes are routed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ftfw_testkit::netns::{self, run, sh, NetnsLab};
use ftfw_testkit::try_wait_until;

mod ftp;

/// Who decides that fw2 takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    /// ftfwd's built-in election on the sync link.
    Election,
    /// keepalived (VRRP on the sync link) calling `ftfwctl notify`.
    Keepalived,
}

/// What the run does.
#[derive(Clone, Debug)]
pub struct NetnsOptions {
    /// Where ftfwd, ftfwctl and ftfw-lab are (default: next to this
    /// program).
    pub bin_dir: Option<PathBuf>,
    /// The failover detector.
    pub detector: Detector,
    /// After the takeover, restart fw1 and check it rejoins as a backup
    /// while a transfer runs through fw2 (election only).
    pub rejoin: bool,
    /// Concurrent transfers running when fw1 dies.
    pub transfers: usize,
    /// Object size of each.
    pub bytes: u64,
    /// Routed mode with virtual addresses instead of transparent.
    pub routed: bool,
    /// Share (0..1) of fw1's sync datagrams (or, with `tcp`, segments)
    /// dropped.
    pub sync_loss: f64,
    /// The sync transport (`[sync] transport`).
    pub sync_transport: crate::failover::Transport,
    /// tbf rate of the sync link, as `tc` takes it (`1gbit`).
    pub sync_rate: String,
    /// Election check interval.
    pub check_interval_ms: u64,
    /// Workers of each firewall (several: the AF_PACKET fanout program
    /// steers a flow to the worker its takeover commit goes to).
    pub workers: usize,
    /// FTP retrievals through source NAT instead of the lab's HTTP-like
    /// fetches (routed only; see `netns_failover/ftp.rs`).
    pub ftp: bool,
}

/// What it measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NetnsReport {
    /// Transparent or routed.
    pub mode: String,
    /// `http` (the lab's fetches) or `ftp` (FTP through source NAT, the
    /// modes in turn).
    pub workload: String,
    /// Transfers running when fw1 was killed.
    pub transfers: usize,
    /// Of those, completed intact.
    pub completed: usize,
    /// Of those, broken (reset, stalled, corrupt).
    pub broken: usize,
    /// The errors of the broken ones.
    pub errors: Vec<String>,
    /// Milliseconds from SIGKILL of fw1 to fw2 reporting itself active.
    pub time_to_recover_ms: u64,
    /// Flows fw2 committed at the takeover.
    pub flows_committed: u64,
    /// fw2's takeover steps with their times.
    pub takeover_steps: serde_json::Value,
    /// Sync datagrams fw1 sent before it died.
    pub sync_datagrams: u64,
    /// The sync link's shaping.
    pub sync_rate: String,
    /// Share of fw1's sync datagrams dropped on purpose.
    pub sync_loss: f64,
    /// The sync transport.
    pub sync_transport: crate::failover::Transport,
    /// The detector used.
    pub detector: Detector,
    /// With `rejoin`: fw1 came back as a backup of fw2 and the transfer
    /// running meanwhile completed (`None` without `rejoin`).
    pub rejoined_as_backup: Option<bool>,
}

impl NetnsOptions {
    /// Checks the ranges the command line accepts.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.ftp || (self.routed && !self.rejoin),
            "--ftp runs routed and without --rejoin"
        );
        anyhow::ensure!(
            (1..=64).contains(&self.transfers),
            "--transfers must be between 1 and 64"
        );
        anyhow::ensure!(
            (100_000..=100_000_000).contains(&self.bytes),
            "--bytes must be between 100000 and 100000000 (transfers pause after 64 KiB)"
        );
        anyhow::ensure!(
            (0.0..=0.9).contains(&self.sync_loss),
            "--sync-loss must be between 0 and 0.9"
        );
        anyhow::ensure!((1..=8).contains(&self.workers), "--workers must be 1 to 8");
        Ok(())
    }
}

impl NetnsReport {
    /// The text `ftfw-lab netns failover` prints (ends with a newline).
    pub fn text(&self) -> String {
        let mut o = format!(
            "{} pair, {} sync over a {} link with {:.0}% loss: fw1 killed with {} transfers running\n",
            self.mode,
            self.sync_transport,
            self.sync_rate,
            self.sync_loss * 100.0,
            self.transfers
        );
        o += &format!(
            "fw2 active {} ms later, {} flow(s) committed; transfers completed {}, broken {}\n",
            self.time_to_recover_ms, self.flows_committed, self.completed, self.broken
        );
        for e in &self.errors {
            o += &format!("  broken: {e}\n");
        }
        if let Some(ok) = self.rejoined_as_backup {
            o += &format!(
                "fw1 restarted: {}\n",
                if ok {
                    "rejoined as a backup, traffic undisturbed"
                } else {
                    "FAILED to rejoin cleanly"
                }
            );
        }
        o
    }

    /// Whether the run passed: nothing broken, and fw1 rejoined if asked to.
    pub fn passed(&self) -> bool {
        self.broken == 0 && self.rejoined_as_backup != Some(false)
    }
}

const ROLES: [&str; 5] = ["c", "s", "h", "1", "2"];
pub(crate) const KEY: &str = "5f0e1d2c3b4a69788796a5b4c3d2e1f0";

/// The namespace lab and where the programs it runs are (the cluster lab,
/// `netns_cluster`, uses it too).
pub(crate) struct Lab {
    pub(crate) net: NetnsLab,
    pub(crate) bin: PathBuf,
}

impl Lab {
    pub(crate) fn ns(&self, role: &str) -> String {
        self.net.ns(role)
    }

    pub(crate) fn dir(&self) -> &Path {
        self.net.dir()
    }

    pub(crate) fn exe(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    pub(crate) fn spawn(
        &mut self,
        ns: &str,
        program: &Path,
        args: &[&str],
        log: &str,
    ) -> anyhow::Result<u32> {
        self.net.spawn(ns, program, args, Some(log))
    }

    /// `ftfwctl --json ARGS` against fw`n` (`None`: no answer).
    pub(crate) fn ctl(&self, n: u32, args: &[&str]) -> Option<serde_json::Value> {
        let sock = self.dir().join(format!("fw{n}.sock"));
        netns::ctl_json(&self.exe("ftfwctl"), &sock, args).ok()
    }

    pub(crate) fn status(&self, n: u32) -> Option<serde_json::Value> {
        self.ctl(n, &["status"])
    }

    pub(crate) fn sync_status(&self, n: u32) -> Option<serde_json::Value> {
        self.ctl(n, &["sync", "status"])
    }

    pub(crate) fn wait(
        &self,
        what: &str,
        secs: u64,
        f: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        try_wait_until(what, Duration::from_secs(secs), f).with_context(|| {
            // The error names the logs: they must outlive the lab.
            self.net.keep_logs();
            format!("logs in {}", self.dir().display())
        })
    }

    pub(crate) fn fetch(&self, server: &str, bytes: u64, pause_ms: u64) -> anyhow::Result<Child> {
        self.net
            .command(&self.ns("c"), self.exe("ftfw-lab"))
            .args([
                "fetch",
                "--connect",
                server,
                "--bytes",
                &bytes.to_string(),
                "--stall-ms",
                "15000",
                "--pause-ms",
                &pause_ms.to_string(),
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a fetch")
    }
}

pub(crate) fn fetch_result(child: Child) -> serde_json::Value {
    match child.wait_with_output() {
        Ok(out) => serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| serde_json::json!({"ok": false, "error": "no result"})),
        Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
    }
}

fn build(lab: &mut Lab, o: &NetnsOptions) -> anyhow::Result<()> {
    for r in ROLES {
        lab.net.add_ns(r)?;
    }
    let h = lab.ns("h");
    for br in ["brc", "brs"] {
        hub_bridge(&h, br)?;
    }
    for (role, ifname, hub_if, br) in [
        ("c", "c0", "hc", "brc"),
        ("s", "s0", "hs", "brs"),
        ("1", "o", "h1o", "brc"),
        ("1", "i", "h1i", "brs"),
        ("2", "o", "h2o", "brc"),
        ("2", "i", "h2i", "brs"),
    ] {
        let n = lab.ns(role);
        lab.net.veth((&n, ifname), (&h, hub_if))?;
        for (ns, i) in [(&n, ifname), (&h, hub_if)] {
            lab.net.offloads_off(ns, i)?;
        }
        sh(&["ip", "-n", &h, "link", "set", hub_if, "master", br])?;
    }
    let (c, s) = (lab.ns("c"), lab.ns("s"));
    if o.routed {
        sh(&["ip", "-n", &c, "addr", "add", "192.0.2.1/24", "dev", "c0"])?;
        sh(&[
            "ip",
            "-n",
            &c,
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            "192.0.2.254",
        ])?;
        sh(&[
            "ip",
            "-n",
            &s,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            "s0",
        ])?;
        if !o.ftp {
            // With --ftp the server cannot answer the client's own
            // address: it sees the translated one only.
            sh(&[
                "ip",
                "-n",
                &s,
                "route",
                "add",
                "192.0.2.0/24",
                "via",
                "198.51.100.254",
            ])?;
        }
    } else {
        sh(&["ip", "-n", &c, "addr", "add", "192.0.2.1/24", "dev", "c0"])?;
        sh(&["ip", "-n", &s, "addr", "add", "192.0.2.2/24", "dev", "s0"])?;
    }
    let (n1, n2) = (lab.ns("1"), lab.ns("2"));
    lab.net.veth((&n1, "y"), (&n2, "y"))?;
    sh(&["ip", "-n", &n1, "addr", "add", "203.0.113.1/30", "dev", "y"])?;
    sh(&["ip", "-n", &n2, "addr", "add", "203.0.113.2/30", "dev", "y"])?;
    for n in [&n1, &n2] {
        // The dedicated link's bandwidth.
        sh(&[
            "ip",
            "netns",
            "exec",
            n,
            "tc",
            "qdisc",
            "add",
            "dev",
            "y",
            "root",
            "tbf",
            "rate",
            &o.sync_rate,
            "burst",
            "256kb",
            "latency",
            "20ms",
        ])?;
    }
    if o.sync_loss > 0.0 {
        // fw1's sync datagrams or segments (replication only, not the
        // election) are dropped at random.
        let pct = (o.sync_loss * 100.0).round() as u32;
        let n = n1.as_str();
        let pct = pct.to_string();
        let nft = |args: &[&str]| -> anyhow::Result<()> {
            let mut v = vec!["ip", "netns", "exec", n, "nft"];
            v.extend_from_slice(args);
            sh(&v).context("nftables is needed for --sync-loss (apt-get install nftables)")
        };
        let l4 = match o.sync_transport {
            crate::failover::Transport::Tcp => "tcp",
            _ => "udp",
        };
        nft(&["add", "table", "inet", "ftfwlab"])?;
        nft(&[
            "add",
            "chain",
            "inet",
            "ftfwlab",
            "out",
            "{ type filter hook output priority 0; policy accept; }",
        ])?;
        nft(&[
            "add", "rule", "inet", "ftfwlab", "out", l4, "dport", "3780", "numgen", "random",
            "mod", "100", "<", &pct, "counter", "drop",
        ])?;
    }
    Ok(())
}

fn fw_config(dir: &Path, n: u32, o: &NetnsOptions) -> anyhow::Result<PathBuf> {
    let (local, peer, prio, peer_id, pp) = if n == 1 {
        ("203.0.113.1", "203.0.113.2", 200, 2, 100)
    } else {
        ("203.0.113.2", "203.0.113.1", 100, 1, 200)
    };
    let forwarding = if o.routed {
        format!(
            "[dataplane]\nmode = \"routed\"\nworkers = {w}\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"o\"\naddresses = [\"192.0.2.1{n}/24\"]\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"i\"\naddresses = [\"198.51.100.1{n}/24\"]\n\n\
             [[virtual_address]]\nport = \"outside\"\naddress = \"192.0.2.254/24\"\n\n\
             [[virtual_address]]\nport = \"inside\"\naddress = \"198.51.100.254/24\"\n\n",
            w = o.workers,
        )
    } else {
        format!("[dataplane]\nworkers = {}\n\n", o.workers)
            + "[[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"o\"\n\n\
         [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"i\"\n\n\
         [[bridge]]\nports = [\"outside\", \"inside\"]\n\n"
    };
    let failover = match o.detector {
        Detector::Keepalived => "[failover]\nmode = \"keepalived\"\n".to_string(),
        Detector::Election => format!(
            "[failover]\nmode = \"election\"\nnode = {n}\npriority = {prio}\nkey = \"{KEY}\"\ncheck_interval_ms = {ci}\n\n\
             [[failover.peer]]\nnode = {peer_id}\naddress = \"{peer}\"\npriority = {pp}\n",
            ci = o.check_interval_ms,
        ),
    };
    let (rules, expectations) = if o.ftp {
        (ftp::rules(), "expectations = true\n")
    } else {
        (
            "\"accept ct established,related\", \"accept in outside proto tcp dport 8080 ct new\", \"accept proto icmp\"",
            "",
        )
    };
    let text = format!(
        "[daemon]\nconsole_socket = \"{d}/fw{n}.sock\"\n\n{forwarding}\
         [conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"drop\"\nrules = [{rules}]\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\ninterface = \"y\"\nalive_interval_ms = 100\ntransport = \"{t}\"\n{expectations}{offload}\n\
         {failover}",
        d = dir.display(),
        t = o.sync_transport.as_str(),
        // The loss rule on the output hook must see each datagram, not a
        // segmented send of many.
        offload = if o.sync_loss > 0.0 {
            "udp_offload = false\n"
        } else {
            ""
        },
    );
    let p = dir.join(format!("fw{n}.toml"));
    std::fs::write(&p, text)?;
    Ok(p)
}

/// Where ftfwd, ftfwctl and ftfw-lab are (`bin_dir`, default: next to
/// this program), checked to exist, and that we are root (`what` names the
/// command in the error).
pub(crate) fn lab_bins(bin_dir: Option<&Path>, what: &str) -> anyhow::Result<PathBuf> {
    let bin = match bin_dir {
        Some(d) => d.to_path_buf(),
        None => {
            let me = std::env::current_exe().context("locating ftfw-lab")?;
            me.parent()
                .context("ftfw-lab has no directory")?
                .to_path_buf()
        }
    };
    for b in ["ftfwd", "ftfwctl", "ftfw-lab"] {
        if !bin.join(b).exists() {
            bail!(
                "{} not found next to ftfw-lab: build them (cargo build --release -p ftfw-control)",
                bin.join(b).display()
            );
        }
    }
    let id = run(Command::new("id").arg("-u"))?;
    if String::from_utf8_lossy(&id.stdout).trim() != "0" {
        bail!("ftfw-lab netns {what} needs root (network namespaces)");
    }
    Ok(bin)
}

/// A hub: bridge `br` in namespace `h`, ageing 0 (every frame flooded to
/// every port), no STP, no multicast snooping, up.
pub(crate) fn hub_bridge(h: &str, br: &str) -> anyhow::Result<()> {
    sh(&[
        "ip",
        "-n",
        h,
        "link",
        "add",
        br,
        "type",
        "bridge",
        "ageing_time",
        "0",
        "stp_state",
        "0",
        "mcast_snooping",
        "0",
    ])?;
    sh(&["ip", "-n", h, "link", "set", br, "up"])
}

/// Runs the experiment. Needs root, iproute2, ethtool, tc (nft for
/// `sync_loss`, keepalived for that detector), and ftfwd, ftfwctl and
/// ftfw-lab in `bin_dir` (default: next to this program).
pub fn run_netns_failover(o: &NetnsOptions) -> anyhow::Result<NetnsReport> {
    let bin = lab_bins(o.bin_dir.as_deref(), "failover")?;
    // Unique per run, also for several runs in one process (tests).
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run_no = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut lab = Lab {
        net: NetnsLab::new("ftfwlab", &format!("x{run_no}"))?,
        bin,
    };
    build(&mut lab, o)?;
    let ftfwd = lab.exe("ftfwd");
    let c1 = fw_config(lab.dir(), 1, o)?;
    let c2 = fw_config(lab.dir(), 2, o)?;
    let fw1 = lab.spawn(
        &lab.ns("1"),
        &ftfwd,
        &["--config", c1.to_str().unwrap_or_default()],
        "fw1.out",
    )?;
    let mut ka1 = None;
    match o.detector {
        Detector::Election => {
            lab.wait("fw1 to become active", 20, || {
                lab.status(1).is_some_and(|s| s["role"] == "active")
            })?;
            lab.spawn(
                &lab.ns("2"),
                &ftfwd,
                &["--config", c2.to_str().unwrap_or_default()],
                "fw2.out",
            )?;
            lab.wait("fw2 to be a synced backup", 20, || {
                lab.status(2).is_some_and(|s| {
                    s["role"] == "backup" && s["election"]["freshness"]["synced"] == true
                })
            })?;
        }
        Detector::Keepalived => {
            lab.wait("fw1 to start as a backup", 20, || {
                lab.status(1).is_some_and(|s| s["role"] == "backup")
            })?;
            ka1 = Some(start_keepalived(&mut lab, 1)?);
            lab.wait("keepalived to make fw1 master", 20, || {
                lab.status(1).is_some_and(|s| s["role"] == "active")
            })?;
            lab.spawn(
                &lab.ns("2"),
                &ftfwd,
                &["--config", c2.to_str().unwrap_or_default()],
                "fw2.out",
            )?;
            lab.wait("fw2 to hear fw1 on the sync link", 20, || {
                lab.status(2).is_some_and(|s| s["role"] == "backup")
                    && lab.sync_status(2).is_some_and(|s| s["peer_state"] == "up")
            })?;
            start_keepalived(&mut lab, 2)?;
        }
    }
    let server = if o.routed {
        "198.51.100.2:8080"
    } else {
        "192.0.2.2:8080"
    };
    let idle = |lab: &Lab| {
        lab.sync_status(1).is_some_and(|s| {
            s["tx_queue"].as_u64() == Some(0) && s["resend_queue"].as_u64() == Some(0)
        })
    };
    let (transfers, ftp) = if o.ftp {
        let f = ftp::Ftp::start(&mut lab, o.bytes)?;
        lab.wait("a first FTP retrieval through fw1", 20, || {
            f.retrieve(&lab, "pasv", o.bytes)
                .map(ftp::result)
                .is_ok_and(|r| r["ok"] == true)
        })?;
        f.pause()?;
        let t: Vec<Child> = (0..o.transfers)
            .map(|i| f.retrieve(&lab, ftp::MODES[i % ftp::MODES.len()], o.bytes))
            .collect::<anyhow::Result<_>>()?;
        // The crash comes once every data connection has carried half of
        // its file and waits, and fw1 has nothing left to replicate.
        lab.wait(
            "every FTP transfer paused half-way and fw1's replication idle",
            30,
            || f.paused() >= o.transfers && idle(&lab),
        )?;
        (t, Some(f))
    } else {
        let exe = lab.exe("ftfw-lab");
        lab.spawn(
            &lab.ns("s"),
            &exe,
            &["serve", "--listen", server],
            "server.out",
        )?;
        lab.wait("a first fetch through fw1", 20, || {
            lab.fetch(server, 10_000, 0)
                .map(fetch_result)
                .is_ok_and(|r| r["ok"] == true)
        })?;
        // Each transfer pauses mid-way for 5 s: the wait below needs every
        // one established at once, and the fetches start one after another
        // (a process each, slow on a loaded machine), so the first must
        // still be paused when the last has started. With 2.5 s this wait
        // timed out now and then under load (stop 33's and 34's notes).
        let t: Vec<Child> = (0..o.transfers)
            .map(|_| lab.fetch(server, o.bytes, 5000))
            .collect::<anyhow::Result<_>>()?;
        // The crash comes once every transfer is established at fw1 (each
        // is then paused mid-way) and fw1's replication has had its
        // chance: nothing left to send, nothing waiting for fw2's
        // acknowledgement.
        let port = server.rsplit(':').next().unwrap_or("8080");
        lab.wait(
            "the transfers established at fw1 and replicated",
            20,
            || {
                let est = lab
                    .ctl(
                        1,
                        &[
                            "flows",
                            "list",
                            "-p",
                            "tcp",
                            "--dport",
                            port,
                            "--state",
                            "ESTABLISHED",
                        ],
                    )
                    .and_then(|l| l["total"].as_u64());
                est >= Some(o.transfers as u64) && idle(&lab)
            },
        )?;
        (t, None)
    };
    let sync_datagrams = lab
        .sync_status(1)
        .and_then(|s| s["datagrams_out"].as_u64())
        .unwrap_or(0);
    if let Some((parent, vrrp)) = &ka1 {
        // The whole node dies: keepalived frozen so it cannot respawn its
        // VRRP child, the child killed (no priority-0 advert), then the
        // parent.
        let read = |p: &Path| std::fs::read_to_string(p).map(|t| t.trim().to_string());
        let (parent, vrrp) = (read(parent)?, read(vrrp)?);
        sh(&["kill", "-STOP", &parent])?;
        sh(&["kill", "-KILL", &vrrp])?;
        sh(&["kill", "-KILL", &parent])?;
    }
    sh(&["kill", "-KILL", &fw1.to_string()])?;
    let killed = Instant::now();
    lab.wait("fw2 to take over", 30, || {
        lab.status(2).is_some_and(|s| s["role"] == "active")
    })?;
    let time_to_recover_ms = u64::try_from(killed.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Some(f) = &ftp {
        f.resume()?;
    }
    let mut completed = 0;
    let mut errors = Vec::new();
    for t in transfers {
        let r = if ftp.is_some() {
            ftp::result(t)
        } else {
            fetch_result(t)
        };
        if r["ok"] == true {
            completed += 1;
        } else {
            let e = r["error"].as_str().unwrap_or("unknown");
            errors.push(match r["mode"].as_str() {
                Some(m) => format!("{m}: {e} ({} bytes)", r["bytes"]),
                None => e.to_string(),
            });
        }
    }
    let s2 = lab.status(2).unwrap_or_default();
    let rejoined_as_backup = if o.rejoin && o.detector == Detector::Election {
        // fw1 comes back: it must stay a backup of fw2 without disturbing
        // a transfer that runs meanwhile.
        lab.spawn(
            &lab.ns("1"),
            &ftfwd,
            &["--config", c1.to_str().unwrap_or_default()],
            "fw1b.out",
        )?;
        let during = lab.fetch(server, o.bytes.min(2_000_000), 1500)?;
        let back = lab
            .wait("fw1 to rejoin as a backup", 20, || {
                lab.status(1)
                    .is_some_and(|s| s["role"] == "backup" && s["election"]["master"] == 2)
            })
            .is_ok();
        let r = fetch_result(during);
        Some(back && r["ok"] == true && lab.status(2).is_some_and(|s| s["role"] == "active"))
    } else {
        None
    };
    Ok(NetnsReport {
        mode: if o.routed { "routed" } else { "transparent" }.to_string(),
        workload: if o.ftp { "ftp" } else { "http" }.to_string(),
        transfers: o.transfers,
        completed,
        broken: o.transfers - completed,
        errors,
        time_to_recover_ms,
        flows_committed: s2["last_takeover"]["flows_committed"].as_u64().unwrap_or(0),
        takeover_steps: s2["last_takeover"]["steps"].clone(),
        sync_datagrams,
        sync_rate: o.sync_rate.clone(),
        sync_loss: o.sync_loss,
        sync_transport: o.sync_transport,
        detector: o.detector,
        rejoined_as_backup,
    })
}

/// Starts keepalived for fw`n` (VRRP over the sync link, unicast, 100 ms
/// adverts, no preemption; its notify scripts run `ftfwctl notify`).
/// Returns the parent's and the VRRP child's pid files.
fn start_keepalived(lab: &mut Lab, n: u32) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (me, other, prio) = if n == 1 {
        ("203.0.113.1", "203.0.113.2", 200)
    } else {
        ("203.0.113.2", "203.0.113.1", 100)
    };
    let ctl = lab.exe("ftfwctl");
    let sock = lab.dir().join(format!("fw{n}.sock"));
    let notify = |what: &str| {
        format!(
            "\"{} --socket {} notify {what}\"",
            ctl.display(),
            sock.display()
        )
    };
    let conf = format!(
        "global_defs {{\n  router_id fw{n}\n  script_user root\n  vrrp_version 3\n}}\n\
         vrrp_instance FTFW {{\n  state BACKUP\n  nopreempt\n  interface y\n  virtual_router_id 51\n  priority {prio}\n  advert_int 0.1\n\
         \x20 unicast_src_ip {me}\n  unicast_peer {{\n    {other}\n  }}\n\
         \x20 virtual_ipaddress {{\n    192.0.2.200/32 dev lo\n  }}\n\
         \x20 notify_master {}\n  notify_backup {}\n  notify_fault {}\n}}\n",
        notify("master"),
        notify("backup"),
        notify("fault"),
    );
    let path = lab.dir().join(format!("ka{n}.conf"));
    std::fs::write(&path, conf)?;
    let d = lab.dir().to_path_buf();
    let (p, r, c) = (
        d.join(format!("ka{n}.pid")),
        d.join(format!("ka{n}_vrrp.pid")),
        d.join(format!("ka{n}_chk.pid")),
    );
    let args = [
        "-n",
        "-l",
        "-D",
        "-G",
        "-P",
        "-f",
        path.to_str().unwrap_or_default(),
        "-p",
        p.to_str().unwrap_or_default(),
        "-r",
        r.to_str().unwrap_or_default(),
        "-c",
        c.to_str().unwrap_or_default(),
    ];
    lab.spawn(
        &lab.ns(&n.to_string()),
        Path::new("keepalived"),
        &args,
        &format!("ka{n}.out"),
    )
    .context("keepalived is needed for --detector keepalived (apt-get install keepalived)")?;
    Ok((p, r))
}
