//! `bench forward`, `cluster`, `netns cluster` and the DPDK backend choice of the command
//! line (the rest is in `main.rs` and `failover_cli.rs`).

use super::*;

#[cfg(feature = "dpdk")]
pub(crate) fn dpdk_backend() -> anyhow::Result<Backend> {
    ftfw_lab::dpdk::init(0)?;
    Ok(Backend::Dpdk)
}

#[cfg(not(feature = "dpdk"))]
pub(crate) fn dpdk_backend() -> anyhow::Result<Backend> {
    anyhow::bail!("--backend dpdk needs ftfw-lab built with --features dpdk")
}

#[cfg(feature = "dpdk")]
pub(crate) fn bench_forward(a: ForwardArgs) -> anyhow::Result<ExitCode> {
    use ftfw_lab::forward::{self, ForwardOpts};
    if let Some(json) = a.inside {
        let opts: ForwardOpts = serde_json::from_str(&json)?;
        println!("{}", serde_json::to_string(&forward::run_inside(&opts)?)?);
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        a.duration > 0.0 && a.duration <= 600.0,
        "--duration must be in (0, 600] seconds"
    );
    anyhow::ensure!(
        (60..=1514).contains(&a.size),
        "--size must be between 60 and 1514"
    );
    anyhow::ensure!(
        (1..=1_000_000).contains(&a.flows),
        "--flows must be between 1 and 1000000"
    );
    anyhow::ensure!(
        (1..=20).contains(&a.rounds),
        "--rounds must be between 1 and 20"
    );
    anyhow::ensure!(
        a.gen_core != a.fwd_core,
        "--gen-core and --fwd-core must differ"
    );
    let opts = ForwardOpts {
        duration_secs: a.duration,
        size: a.size,
        flows: a.flows,
        rounds: a.rounds,
        gen_core: a.gen_core,
        fwd_core: a.fwd_core,
        testpmd: a.testpmd,
        link: match a.link {
            crate::LinkArg::Memif => forward::Link::Memif,
            crate::LinkArg::Veth => forward::Link::Veth,
        },
    };
    let r = forward::run(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", forward::render(&r));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn cluster_cmd(a: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let (fault, victim) = match (a.no_fault, a.drain) {
        (true, _) => (failover::Fault::None, a.crash),
        (false, Some(d)) => (failover::Fault::Drain, d),
        (false, None) => (failover::Fault::Crash, a.crash),
    };
    let o = failover::ClusterLabOpts {
        nodes: a.nodes,
        victim,
        fault,
        mode: if a.primary_backup {
            "primary-backup"
        } else {
            "multi-primary"
        },
        buckets: a.buckets,
        backups: a.backups,
        replicate_all: !a.replicate_backups,
        dead_after_ms: a.dead_after_ms,
        traffic: failover::FailoverOpts {
            transfers: a.transfers,
            object_size: a.object_size,
            concurrency: a.concurrency,
            crash_at: a.crash_at_ms.map(std::time::Duration::from_millis),
            seed: a.seed,
            ..failover::FailoverOpts::default()
        },
    };
    let r = failover::run_cluster(&o, |line| eprintln!("{line}"))?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", failover::render_cluster(&r));
    }
    Ok(if r.broken_transfers == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next().ok_or("a MAC address has six bytes")?;
        *b = u8::from_str_radix(p, 16).map_err(|e| format!("{p}: {e}"))?;
    }
    if parts.next().is_some() {
        return Err("a MAC address has six bytes".into());
    }
    Ok(mac)
}

/// `ftfw-lab inject`: hand-made frames out of `interface`.
pub(crate) fn inject_cmd(
    interface: &str,
    tcp_ack: bool,
    from: SocketAddr,
    to: SocketAddr,
    dst_mac: Option<[u8; 6]>,
    count: u32,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(tcp_ack, "choose what to inject (--tcp-ack)");
    anyhow::ensure!(
        from.is_ipv4() == to.is_ipv4(),
        "--from and --to must be the same address family"
    );
    let mut port = AfPacketPort::open(&AfPacketConfig {
        promiscuous: false,
        ..AfPacketConfig::new(interface)
    })?;
    let spec = FrameSpec {
        src_mac: mac_address(interface).unwrap_or([2, 0, 0, 0, 0, 0xfe]),
        dst_mac: dst_mac.unwrap_or([0xff; 6]),
        src_ip: from.ip(),
        dst_ip: to.ip(),
        l4: L4Spec::Tcp {
            src_port: from.port(),
            dst_port: to.port(),
            seq: 0x1234_5678,
            ack: 0x0abc_def0,
            flags: tcp_flags::ACK,
            window: 512,
            options: TcpOptions::default(),
        },
        ..FrameSpec::default()
    };
    let frame = spec.to_vec()?;
    let mut sent = 0;
    for _ in 0..count {
        let mut b = [PacketBuf::new()];
        b[0].set(&frame);
        sent += port.tx_burst(&mut b);
    }
    // Let the TX ring drain before the socket closes.
    port.wait_rx(Duration::from_millis(50));
    anyhow::ensure!(sent == count as usize, "sent {sent} of {count} frames");
    println!("sent {sent} TCP ACK frames out of {interface}");
    Ok(ExitCode::SUCCESS)
}

/// `ftfw-lab netns cluster`'s options.
#[derive(clap::Args, Debug)]
pub(crate) struct NetnsClusterArgs {
    /// Members.
    #[arg(long, default_value_t = 3)]
    pub(crate) nodes: u32,
    /// Concurrent transfers of each batch.
    #[arg(long, default_value_t = 200)]
    pub(crate) transfers: usize,
    /// Object size of each transfer.
    #[arg(long, default_value_t = 300_000)]
    pub(crate) bytes: u64,
    /// Least pause of each transfer after its first 64 KiB (the
    /// transfers stay paused until the fault has come).
    #[arg(long, default_value_t = 5000)]
    pub(crate) pause_ms: u64,
    /// The member killed, restarted or drained.
    #[arg(long, default_value_t = 2)]
    pub(crate) victim: u32,
    /// What to run (rejoin crashes the member first).
    #[arg(long, value_enum, default_value_t = ScenarioArg::All)]
    pub(crate) scenario: ScenarioArg,
    /// Members as routers: the hosts' gateways are the cluster's
    /// virtual addresses at its shared MAC.
    #[arg(long)]
    pub(crate) routed: bool,
    /// Workers per member.
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,
    /// `[cluster] mode = "primary-backup"` (the victim should be 1,
    /// the primary) instead of multi-primary.
    #[arg(long)]
    pub(crate) primary_backup: bool,
    /// `[cluster] uplinks_down_when_idle`: a member owning no buckets
    /// keeps its outside link down (scripts running `ip link set`).
    #[arg(long)]
    pub(crate) uplinks_down_when_idle: bool,
    /// `[cluster] kernel_filter = false`: every member's workers
    /// receive every frame and drop other members' themselves (the
    /// default drops them in the kernel).
    #[arg(long)]
    pub(crate) no_kernel_filter: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ftfw-lab netns cluster`.
pub(crate) fn netns_cluster_cmd(a: NetnsClusterArgs) -> anyhow::Result<ExitCode> {
    use ftfw_lab::netns_cluster::{run_netns_cluster, ClusterNetnsOptions, Scenario};
    let o = ClusterNetnsOptions {
        bin_dir: None,
        nodes: a.nodes,
        transfers: a.transfers,
        bytes: a.bytes,
        pause_ms: a.pause_ms,
        victim: a.victim,
        scenario: match a.scenario {
            ScenarioArg::Crash => Scenario::Crash,
            ScenarioArg::Rejoin => Scenario::Rejoin,
            ScenarioArg::Drain => Scenario::Drain,
            ScenarioArg::All => Scenario::All,
        },
        routed: a.routed,
        workers: a.workers,
        primary_backup: a.primary_backup,
        uplinks_down_when_idle: a.uplinks_down_when_idle,
        kernel_filter: !a.no_kernel_filter,
    };
    o.check()?;
    let r = run_netns_cluster(&o)?;
    print_report(&r, a.json, || r.text(), r.passed())
}

/// Prints a lab's report (one JSON object, or its text) and exits 1 if
/// it did not pass.
pub(crate) fn print_report<R: serde::Serialize>(
    r: &R,
    json: bool,
    text: impl FnOnce() -> String,
    passed: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        print!("{}", text());
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
