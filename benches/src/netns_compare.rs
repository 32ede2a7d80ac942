//! `ftfw-lab netns compare` (root): one bulk TCP transfer through three
//! set-ups built on the same namespaces, veths and rules, each measured
//! in the same run, so their ratio says what ftfw costs against the
//! kernel:
//!
//! - `bridge`: a plain Linux bridge (no filtering): the ceiling;
//! - `nft`: the same bridge with `br_netfilter` and an nftables `inet`
//!   forward chain with conntrack and the rules ftfw runs (the Linux
//!   stateful firewall an operator would compare us with);
//! - `ftfw`: ftfwd bridging the two veths on AF_PACKET.
//!
//! Offloads are off on every veth in every set-up (ftfw's AF_PACKET ports
//! need complete frames; the kernel gets no GSO advantage either). The
//! transfer is `ftfw-lab fetch` from `ftfw-lab serve`: one connection,
//! `bytes` long, `rounds` times per set-up in turn (bridge, nft, ftfw,
//! bridge, ...) so drift on a shared machine hits all three alike; each
//! figure is the median in MB/s (10^6 bytes per second), with the CPU
//! time the machine spent per GB (`/proc/stat`, around each transfer).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ftfw_testkit::netns::{run, NetnsLab};
use ftfw_testkit::try_wait_until;
use serde::Serialize;

/// What to run.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Bytes per transfer.
    pub bytes: u64,
    /// Transfers per set-up.
    pub rounds: usize,
    /// ftfwd's worker threads.
    pub workers: usize,
    /// `poll_mode = "busy"` instead of adaptive.
    pub busy: bool,
    /// Where ftfwd, ftfwctl and ftfw-lab are (default: beside this program).
    pub bin_dir: Option<PathBuf>,
}

/// The result, printed as one JSON object with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// Median MB/s through ftfwd on AF_PACKET ports (the default backend).
    pub ftfw_mbps: f64,
    /// Median MB/s through ftfwd on AF_XDP ports.
    pub ftfw_af_xdp_mbps: f64,
    /// Median MB/s through the bridge with nftables conntrack.
    pub nft_mbps: f64,
    /// Median MB/s through the plain bridge.
    pub bridge_mbps: f64,
    /// `ftfw_mbps / nft_mbps` (target: at least 1).
    pub ftfw_vs_nft: f64,
    /// `ftfw_mbps / bridge_mbps`.
    pub ftfw_vs_bridge: f64,
    /// `ftfw_af_xdp_mbps / nft_mbps`.
    pub ftfw_af_xdp_vs_nft: f64,
    /// Each round's AF_PACKET figure over the same round's nftables one:
    /// min, median, max (the rounds run in turn, so a round's pair shares
    /// the machine's load of the moment).
    pub ftfw_vs_nft_paired: Spread,
    /// The same for AF_XDP.
    pub ftfw_af_xdp_vs_nft_paired: Spread,
    /// CPU seconds the whole machine spent per GB transferred (every
    /// process and the kernel's softirqs: both TCP ends and the
    /// forwarding), median of the rounds, per set-up. What a set-up costs,
    /// whatever its rate.
    pub cpu_s_per_gb: CpuPerGb,
    /// Every round, MB/s, per set-up.
    pub rounds_ftfw: Vec<f64>,
    /// Every round through ftfwd on AF_XDP.
    pub rounds_ftfw_af_xdp: Vec<f64>,
    /// Every round through nft.
    pub rounds_nft: Vec<f64>,
    /// Every round through the bridge.
    pub rounds_bridge: Vec<f64>,
    /// Bytes per transfer.
    pub bytes: u64,
    /// ftfwd's workers.
    pub workers: usize,
    /// ftfwd's poll mode (`adaptive` or `busy`).
    pub poll_mode: &'static str,
    /// Always "MB/s" (10^6 bytes per second).
    pub unit: &'static str,
}

/// [`CompareReport::cpu_s_per_gb`] of each set-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CpuPerGb {
    /// The plain bridge.
    pub bridge: f64,
    /// The bridge with nftables conntrack.
    pub nft: f64,
    /// ftfwd on AF_PACKET.
    pub ftfw: f64,
    /// ftfwd on AF_XDP.
    pub ftfw_af_xdp: f64,
}

/// `/proc/stat`'s unit (`USER_HZ`, 100 on Linux whatever the kernel's
/// own tick rate).
const USER_HZ: f64 = 100.0;

/// Busy time of the whole machine so far, in `USER_HZ` ticks, from the
/// `cpu` line of `/proc/stat`: user, nice, system, irq and softirq (idle,
/// iowait and the time the hypervisor stole are not ours).
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal ...
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?)
}

fn busy_now() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    busy_ticks(&stat).context("no cpu line in /proc/stat")
}

/// Minimum, median and maximum of some rounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    /// The smallest.
    pub min: f64,
    /// The middle one (the upper of the two middle ones for an even count).
    pub median: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (all zero when empty).
    pub fn of(v: &[f64]) -> Spread {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        match (v.first(), v.get(v.len() / 2), v.last()) {
            (Some(&min), Some(&median), Some(&max)) => Spread { min, median, max },
            _ => Spread::default(),
        }
    }

    /// The per-round ratios `a[i] / b[i]` (rounds where `b` is 0 left out).
    pub fn of_ratios(a: &[f64], b: &[f64]) -> Spread {
        let r: Vec<f64> = a
            .iter()
            .zip(b)
            .filter(|(_, &d)| d > 0.0)
            .map(|(&n, &d)| n / d)
            .collect();
        Spread::of(&r)
    }
}

impl CompareOptions {
    /// Checks the ranges the command line accepts.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1_000_000..=10_000_000_000).contains(&self.bytes),
            "--bytes must be between 1000000 and 10000000000"
        );
        anyhow::ensure!(
            (1..=20).contains(&self.rounds),
            "--rounds must be between 1 and 20"
        );
        anyhow::ensure!(
            (1..=8).contains(&self.workers),
            "--workers must be between 1 and 8"
        );
        Ok(())
    }
}

impl CompareReport {
    /// The one-line summary `ftfw-lab netns compare` prints.
    pub fn summary(&self) -> String {
        let (p, x) = (&self.ftfw_vs_nft_paired, &self.ftfw_af_xdp_vs_nft_paired);
        format!(
            "bridge {:.0} MB/s, bridge + nftables conntrack {:.0} MB/s, ftfw {:.0} MB/s (AF_PACKET) and {:.0} MB/s (AF_XDP): ftfw/nft {:.2} and {:.2}, ftfw/bridge {:.2} (median of {}, {} bytes, offloads off); round by round, ftfw/nft min-median-max {:.2}-{:.2}-{:.2} (AF_PACKET) and {:.2}-{:.2}-{:.2} (AF_XDP); CPU seconds per GB: bridge {:.2}, nft {:.2}, ftfw {:.2} (AF_PACKET) and {:.2} (AF_XDP)",
            self.bridge_mbps,
            self.nft_mbps,
            self.ftfw_mbps,
            self.ftfw_af_xdp_mbps,
            self.ftfw_vs_nft,
            self.ftfw_af_xdp_vs_nft,
            self.ftfw_vs_bridge,
            self.rounds_ftfw.len(),
            self.bytes,
            p.min,
            p.median,
            p.max,
            x.min,
            x.median,
            x.max,
            self.cpu_s_per_gb.bridge,
            self.cpu_s_per_gb.nft,
            self.cpu_s_per_gb.ftfw,
            self.cpu_s_per_gb.ftfw_af_xdp,
        )
    }
}

const RULES: &str = "policy drop\n\
accept ct established,related\n\
drop ct invalid\n\
accept in outside proto tcp dport 5201 ct new\n\
accept proto icmp\n";

/// The same policy for nftables (bridged IPv4 through `br_netfilter`; the
/// input interface there is the bridge, so the client is named by its
/// address instead of its port).
const NFT: &str = "table inet fw {\n\
  chain forward {\n\
    type filter hook forward priority 0; policy drop;\n\
    ct state established,related accept\n\
    ct state invalid drop\n\
    ip saddr 192.0.2.1 tcp dport 5201 ct state new accept\n\
    ip protocol icmp accept\n\
  }\n\
}\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Bridge,
    Nft,
    /// ftfwd with ports of this backend.
    Ftfw(&'static str),
}

/// Runs the comparison. Needs root, iproute2, ethtool and nft.
pub fn run_compare(o: &CompareOptions) -> anyhow::Result<CompareReport> {
    let bin = match &o.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("locating ftfw-lab")?
            .parent()
            .context("ftfw-lab has no directory")?
            .to_path_buf(),
    };
    for b in ["ftfwd", "ftfwctl", "ftfw-lab"] {
        if !bin.join(b).exists() {
            bail!(
                "{} not found next to ftfw-lab: build them (cargo build --release -p ftfw-control -p ftfw-lab)",
                bin.join(b).display()
            );
        }
    }
    let id = run(std::process::Command::new("id").arg("-u"))?;
    if String::from_utf8_lossy(&id.stdout).trim() != "0" {
        bail!("ftfw-lab netns compare needs root (network namespaces)");
    }
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run_no = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // One queue per worker (AF_XDP serves queue w with worker w).
    let mut lab =
        NetnsLab::client_firewall_server_queues("ftfwcmp", &format!("x{run_no}"), Some(o.workers))?;
    let (c, f, s) = (lab.ns("c"), lab.ns("f"), lab.ns("s"));
    lab.ip(&c, &["addr", "add", "192.0.2.1/24", "dev", "c0"])?;
    lab.ip(&s, &["addr", "add", "192.0.2.2/24", "dev", "s0"])?;
    let listen = "192.0.2.2:5201";
    lab.spawn(
        &s,
        bin.join("ftfw-lab"),
        &["serve", "--listen", listen],
        Some("serve.log"),
    )?;
    let dir = lab.dir().to_path_buf();
    std::fs::write(dir.join("rules.conf"), RULES)?;
    std::fs::write(dir.join("fw.nft"), NFT)?;
    for backend in ["af_packet", "af_xdp"] {
        std::fs::write(
            dir.join(format!("ftfwd-{backend}.toml")),
            format!(
                "[daemon]\nconsole_socket = \"ftfwd.sock\"\nstate_file = \"\"\n\n\
             [dataplane]\nworkers = {}\npoll_mode = \"{}\"\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"{}\"\ninterface = \"c1\"\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"{}\"\ninterface = \"s1\"\n\n\
             [[bridge]]\nports = [\"outside\", \"inside\"]\n\n[rules]\nfile = \"rules.conf\"\n",
                o.workers,
                if o.busy { "busy" } else { "adaptive" },
                backend,
                backend,
            ),
        )?;
    }

    let mut rounds = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..o.rounds {
        for (k, setup) in [
            Setup::Bridge,
            Setup::Nft,
            Setup::Ftfw("af_packet"),
            Setup::Ftfw("af_xdp"),
        ]
        .into_iter()
        .enumerate()
        {
            let fwd = enter(&mut lab, &f, setup, &bin, &dir)?;
            // A first short fetch proves the path works (and warms it).
            try_wait_until(
                &format!("a first fetch through {setup:?}"),
                Duration::from_secs(10),
                || fetch(&lab, &c, &bin, listen, 100_000).is_ok(),
            )?;
            let busy = busy_now()?;
            let mbps = fetch(&lab, &c, &bin, listen, o.bytes)
                .with_context(|| format!("transfer through {setup:?}"))?;
            #[allow(clippy::cast_precision_loss)]
            let (ticks, gb) = (
                (busy_now()?.saturating_sub(busy)) as f64,
                o.bytes as f64 / 1e9,
            );
            rounds[k].push(mbps);
            cpu[k].push(ticks / USER_HZ / gb);
            leave(&mut lab, &f, setup, fwd)?;
        }
    }
    let med = |v: &[f64]| Spread::of(v).median;
    let [bridge, nft, ftfw, ftfw_xdp] = rounds;
    let [cpu_bridge, cpu_nft, cpu_ftfw, cpu_xdp] = cpu;
    let cpu_s_per_gb = CpuPerGb {
        bridge: med(&cpu_bridge),
        nft: med(&cpu_nft),
        ftfw: med(&cpu_ftfw),
        ftfw_af_xdp: med(&cpu_xdp),
    };
    let (b, n, w, x) = (med(&bridge), med(&nft), med(&ftfw), med(&ftfw_xdp));
    let ftfw_vs_nft_paired = Spread::of_ratios(&ftfw, &nft);
    let ftfw_af_xdp_vs_nft_paired = Spread::of_ratios(&ftfw_xdp, &nft);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(CompareReport {
        ftfw_mbps: w,
        nft_mbps: n,
        bridge_mbps: b,
        ftfw_vs_nft: ratio(w, n),
        ftfw_vs_bridge: ratio(w, b),
        ftfw_af_xdp_mbps: x,
        ftfw_af_xdp_vs_nft: ratio(x, n),
        ftfw_vs_nft_paired,
        ftfw_af_xdp_vs_nft_paired,
        cpu_s_per_gb,
        rounds_ftfw_af_xdp: ftfw_xdp,
        rounds_ftfw: ftfw,
        rounds_nft: nft,
        rounds_bridge: bridge,
        bytes: o.bytes,
        workers: o.workers,
        poll_mode: if o.busy { "busy" } else { "adaptive" },
        unit: "MB/s",
    })
}

/// Builds `setup` in the firewall namespace; returns ftfwd's PID for ftfw.
fn enter(
    lab: &mut NetnsLab,
    f: &str,
    setup: Setup,
    bin: &Path,
    dir: &Path,
) -> anyhow::Result<Option<u32>> {
    match setup {
        Setup::Bridge | Setup::Nft => {
            lab.ip(f, &["link", "add", "br0", "type", "bridge"])?;
            lab.ip(f, &["link", "set", "c1", "master", "br0"])?;
            lab.ip(f, &["link", "set", "s1", "master", "br0"])?;
            lab.ip(f, &["link", "set", "br0", "up"])?;
            if setup == Setup::Nft {
                bridge_nf(lab, f, true)?;
                let out = lab.exec(
                    f,
                    "nft",
                    &["-f", dir.join("fw.nft").to_str().context("path")?],
                )?;
                if !out.status.success() {
                    bail!("nft: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
            Ok(None)
        }
        Setup::Ftfw(backend) => {
            let cfg = dir.join(format!("ftfwd-{backend}.toml"));
            let pid = lab.spawn(
                f,
                bin.join("ftfwd"),
                &["--config", cfg.to_str().context("path")?],
                Some("ftfwd.log"),
            )?;
            lab.wait_console(
                &bin.join("ftfwctl"),
                &dir.join("ftfwd.sock"),
                Duration::from_secs(20),
            )?;
            Ok(Some(pid))
        }
    }
}

/// Takes `setup` down again.
fn leave(lab: &mut NetnsLab, f: &str, setup: Setup, fwd: Option<u32>) -> anyhow::Result<()> {
    match setup {
        Setup::Bridge | Setup::Nft => {
            if setup == Setup::Nft {
                let _ = lab.exec(f, "nft", &["delete", "table", "inet", "fw"])?;
                bridge_nf(lab, f, false)?;
            }
            lab.ip(f, &["link", "del", "br0"])?;
            // The ports stay up (leaving the bridge keeps their state).
            lab.ip(f, &["link", "set", "c1", "up"])?;
            lab.ip(f, &["link", "set", "s1", "up"])?;
        }
        Setup::Ftfw(_) => {
            if let Some(pid) = fwd {
                ftfw_testkit::netns::signal(pid, "TERM")?;
                lab.wait_exit(pid, Duration::from_secs(10))?;
            }
        }
    }
    Ok(())
}

/// Bridged IPv4 through the `inet` hooks (`br_netfilter`), in `ns` only.
fn bridge_nf(lab: &NetnsLab, ns: &str, on: bool) -> anyhow::Result<()> {
    let cmd = format!(
        "echo {} > /proc/sys/net/bridge/bridge-nf-call-iptables",
        u8::from(on)
    );
    let out = lab.exec(ns, "sh", &["-c", &cmd])?;
    if !out.status.success() {
        bail!("br_netfilter: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// One transfer from the client namespace; MB/s.
fn fetch(lab: &NetnsLab, c: &str, bin: &Path, server: &str, bytes: u64) -> anyhow::Result<f64> {
    let b = bytes.to_string();
    let out = lab.exec(
        c,
        bin.join("ftfw-lab"),
        &[
            "fetch",
            "--connect",
            server,
            "--bytes",
            &b,
            "--stall-ms",
            "3000",
            "--json",
        ],
    )?;
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("fetch said: {}", String::from_utf8_lossy(&out.stdout)))?;
    if r["ok"] != true {
        bail!("fetch failed: {r}");
    }
    let ms = r["elapsed_ms"].as_f64().unwrap_or(0.0).max(1.0);
    #[allow(clippy::cast_precision_loss)]
    let mb = bytes as f64 / 1e6;
    Ok(mb / (ms / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn busy_ticks_sum_user_nice_system_irq_softirq() {
        use super::busy_ticks;
        let stat = "cpu  100 2 30 900 7 4 5 60 0 0\ncpu0 50 1 15 450 3 2 2 30 0 0\nintr 1\n";
        assert_eq!(busy_ticks(stat), Some(100 + 2 + 30 + 4 + 5));
        assert_eq!(busy_ticks("cpu0 1 2 3 4 5 6 7\n"), None);
        assert_eq!(busy_ticks("cpu  1 2 x 4 5 6 7\n"), None);
        assert_eq!(busy_ticks("cpu  1 2 3 4\n"), None);
    }

    #[test]
    fn spreads_of_rounds_and_of_paired_ratios() {
        let s = Spread::of(&[3.0, 1.0, 2.0, 5.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 3.0, 5.0));
        assert_eq!(Spread::of(&[]), Spread::default());
        // Round i of one set-up over round i of the other, not medians over
        // medians; a round the other set-up measured as 0 is left out.
        let r = Spread::of_ratios(&[300.0, 330.0, 280.0, 9.0], &[330.0, 300.0, 350.0, 0.0]);
        assert_eq!(r.min, 0.8);
        assert!((r.median - 300.0 / 330.0).abs() < 1e-12, "{r:?}");
        assert_eq!(r.max, 1.1);
    }
}
