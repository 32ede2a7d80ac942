//! `ftfw-lab`: benchmarks and lab tools for ftfw.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ftfw_dataplane::meta::tcp_flags;
use ftfw_dataplane::packet::{FrameSpec, L4Spec, TcpOptions};
use ftfw_dataplane::port::af_packet::{mac_address, AfPacketConfig, AfPacketPort};
use ftfw_dataplane::port::{PacketBuf, Port};
use ftfw_lab::bench::{self, Backend, PipelineOpts};
use ftfw_lab::sync_bench::{self, SyncOpts};
use ftfw_lab::{failover, probe};

mod commands;
mod failover_cli;
#[cfg(feature = "dpdk")]
use commands::bench_forward;
use commands::{
    cluster_cmd, dpdk_backend, inject_cmd, netns_cluster_cmd, parse_mac, print_report,
    NetnsClusterArgs,
};
use failover_cli::{failover_cmd, FailoverArgs, TransportArg};

/// Benchmarks and lab tools for the ftfw firewall.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// The failover lab: the FT-FW paper's evaluation (session and data
    /// rate with replication off and on, recovery by object size, recovery
    /// at 20% sync loss for FT-FW vs best-effort UDP vs TCP, time to
    /// recover) on a two-node cluster in this process (mem ports, emulated
    /// sync link, built-in election), with the paper's numbers beside ours.
    /// `--experiments crash` runs just one crash of the primary.
    Failover(Box<FailoverArgs>),
    /// One run of an N-node cluster in this process (mem ports, loopback
    /// sync, the cluster coordinator): transfers through every node, one
    /// node crashed (or drained) mid-run; prints recovery, buckets moved,
    /// time to recover and replication bytes per flow.
    Cluster(ClusterArgs),
    /// Serve objects to `fetch` clients (`GET N` -> N bytes), until stopped.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Connections served at once.
        #[arg(long, default_value_t = 512)]
        max_conns: usize,
    },
    /// Fetch one object from a `serve` server and check it.
    Fetch {
        /// Server address.
        #[arg(long)]
        connect: SocketAddr,
        /// Object size in bytes.
        #[arg(long)]
        bytes: u64,
        /// Fail when no progress is made for this long.
        #[arg(long, default_value_t = 5000)]
        stall_ms: u64,
        /// Pause this long after the first 64 KiB (keeps the connection open mid-transfer).
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
        /// After the pause, stay paused while this file exists (at most
        /// 120 s): a lab removes it once it has acted on the open
        /// connections.
        #[arg(long)]
        hold_file: Option<PathBuf>,
        /// Run this many fetches at once (one thread each); with `--json`
        /// prints one JSON array of their results.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: u16,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Experiments in network namespaces with real kernel endpoints (root).
    #[command(subcommand)]
    Netns(NetnsCmd),
    /// Send hand-made frames out of an interface (AF_PACKET; needs root).
    Inject {
        /// Interface to send on.
        #[arg(long)]
        interface: String,
        /// Send TCP ACK segments that belong to no connection.
        #[arg(long)]
        tcp_ack: bool,
        /// Source address and port.
        #[arg(long)]
        from: SocketAddr,
        /// Destination address and port.
        #[arg(long)]
        to: SocketAddr,
        /// Destination MAC address, `aa:bb:cc:dd:ee:ff` (default:
        /// broadcast; a host's TCP only takes frames sent to its own).
        #[arg(long, value_parser = parse_mac)]
        dst_mac: Option<[u8; 6]>,
        /// Frames to send.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Drive the worker pipeline over mem ports on one core and compare it
    /// with a null pipeline (parse and forward) in the same run.
    Pipeline(PipelineArgs),
    /// Time a bulk import of established flows into running workers (what
    /// committing the external cache costs at failover).
    Commit {
        /// Flows to import.
        #[arg(long, default_value_t = 1_000_000)]
        flows: u64,
        /// Workers to spread them over.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Drive the FT-FW sync path on one core: coalesce, encode, batch into
    /// MTU datagrams and send over loopback UDP to a second engine that
    /// decodes and acknowledges; also times a commit of `--commit-flows`.
    Sync(SyncArgs),
    /// Compare the worker pipeline on DPDK net_af_packet vdevs with
    /// dpdk-testpmd io-forward on the same vdevs over veths (root).
    #[cfg(feature = "dpdk")]
    Forward(ForwardArgs),
}

#[derive(Subcommand, Debug)]
enum NetnsCmd {
    /// Two ftfwd firewalls (replication + election) between a client and a
    /// server; fw1 is killed with SIGKILL while transfers run through it.
    /// Reports completed and broken transfers and the time to recover.
    Failover {
        /// Concurrent transfers running when fw1 dies.
        #[arg(long, default_value_t = 8)]
        transfers: usize,
        /// Object size of each transfer.
        #[arg(long, default_value_t = 3_000_000)]
        bytes: u64,
        /// Routed mode with virtual addresses (default: transparent).
        #[arg(long)]
        routed: bool,
        /// Share (0..1) of fw1's sync datagrams (tcp: segments) dropped
        /// (nftables numgen).
        #[arg(long, default_value_t = 0.0)]
        sync_loss: f64,
        /// Sync transport of both firewalls.
        #[arg(long, value_enum, default_value_t = TransportArg::Ftfw)]
        sync_transport: TransportArg,
        /// Sync link rate (tbf), as tc takes it.
        #[arg(long, default_value = "1gbit")]
        sync_rate: String,
        /// Election check interval in milliseconds.
        #[arg(long, default_value_t = 50)]
        check_interval_ms: u64,
        /// Workers of each firewall.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Failover detector: election (built in) or keepalived.
        #[arg(long, value_enum, default_value_t = DetectorArg::Election)]
        detector: DetectorArg,
        /// Then restart fw1 and check it rejoins as a backup (election).
        #[arg(long)]
        rejoin: bool,
        /// FTP retrievals (PASV, PORT, EPSV, EPRT in turn, Python's
        /// ftplib) through source NAT to the pair's virtual address,
        /// crashed half-way through their data; implies --routed.
        #[arg(long)]
        ftp: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The failover lab's TCP loss model against kernel TCP under
    /// nftables loss (figure 11's crash run, both ways, same seeds): runs
    /// itself in a network namespace it makes and removes.
    Loss(LossArgs),
    /// An N-member multi-primary cluster of ftfwd (transparent, behind
    /// hubs) between a client and a server: a member is killed, restarted
    /// and drained while transfers run through every member. Reports
    /// completed and broken transfers and how long the buckets took to be
    /// forwarded again.
    Cluster(NetnsClusterArgs),
    /// One bulk TCP transfer through a plain Linux bridge, the bridge with
    /// nftables conntrack and the same rules, and ftfwd, on the same
    /// namespaces in one run; median MB/s of each and ftfw's ratios.
    Compare {
        /// Bytes per transfer.
        #[arg(long, default_value_t = 300_000_000)]
        bytes: u64,
        /// Transfers per set-up (taken in turn).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// ftfwd's worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// ftfwd's workers spin instead of sleeping when idle
        /// (`poll_mode = "busy"`; default adaptive).
        #[arg(long)]
        busy: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ScenarioArg {
    Crash,
    Rejoin,
    Drain,
    All,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum DetectorArg {
    Election,
    Keepalived,
}

#[derive(Args, Debug)]
struct LossArgs {
    /// Sync transports (the model is `tcp`'s; the others' loss is exact).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [TransportArg::Tcp])]
    transports: Vec<TransportArg>,
    /// Loss rates of the sync link (0..0.9).
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.1, 0.2])]
    losses: Vec<f64>,
    /// Object sizes (bytes), as figure 11.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
    sizes: Vec<usize>,
    /// Seeds per point (min, median, max are reported).
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// First seed (each point adds its object size, as figure 11).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Concurrent transfers (figure 11: 200).
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Transfers per run (default: figure 11's count for the size).
    #[arg(long)]
    transfers: Option<usize>,
    /// Run here: we are already inside the lab's namespace.
    #[arg(long, hide = true)]
    inside: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ClusterArgs {
    /// Members (2 to 16).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// The node (id 1..N) to crash.
    #[arg(long, default_value_t = 2, conflicts_with = "drain")]
    crash: u32,
    /// Drain this node (a planned move) instead of crashing one.
    #[arg(long)]
    drain: Option<u32>,
    /// Neither crash nor drain (a baseline for the session rate).
    #[arg(long)]
    no_fault: bool,
    /// One node owns every bucket, the others back it up.
    #[arg(long)]
    primary_backup: bool,
    /// Buckets in the map.
    #[arg(long, default_value_t = 1024)]
    buckets: u32,
    /// Backups per bucket.
    #[arg(long, default_value_t = 1)]
    backups: u8,
    /// Replicate only to each bucket's backups (default: to every peer).
    #[arg(long)]
    replicate_backups: bool,
    /// Declare a silent member dead after this many ms (ftfwd's
    /// `cluster.dead_after_ms`; default four heartbeats, 200 ms).
    #[arg(long)]
    dead_after_ms: Option<u64>,
    /// Transfers.
    #[arg(long, default_value_t = 300)]
    transfers: usize,
    /// Object size in bytes.
    #[arg(long, default_value_t = 100_000)]
    object_size: usize,
    /// Transfers under way at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Fault this many ms after the first SYN (default: mid-run, as the
    /// failover lab).
    #[arg(long)]
    crash_at_ms: Option<u64>,
    /// Seed of the initial sequence numbers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SyncArgs {
    /// Distinct flows (IPv4 TCP, ESTABLISHED).
    #[arg(long, default_value_t = 1_000_000)]
    flows: u64,
    /// Seconds of the timed phase.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Deltas taken per sender iteration.
    #[arg(long, default_value_t = 512)]
    burst: usize,
    /// Link MTU.
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
    /// Flush delay of a partial datagram, microseconds.
    #[arg(long, default_value_t = 200)]
    flush_us: u64,
    /// Send TCP window scales (conntrackd `TCPWindowTracking on`).
    #[arg(long)]
    window_tracking: bool,
    /// Send MARK in every message (as for ctnetlink-made flows).
    #[arg(long)]
    mark: bool,
    /// Flows the commit benchmark imports (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    commit_flows: u64,
    /// Send and read every datagram alone (`[sync] udp_offload = false`)
    /// instead of segmented sends and coalesced reads.
    #[arg(long)]
    no_udp_offload: bool,
    /// Run twice in this one run, plain then authenticated (`[sync] psk`:
    /// every datagram sealed and opened), and report both and their ratio.
    #[arg(long)]
    compare_auth: bool,
    /// With --compare-auth: plain and authenticated runs alternate this
    /// many times (the machine's load changes between runs); the ratio is
    /// of the medians.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

/// `bench forward --link`.
#[cfg(feature = "dpdk")]
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LinkArg {
    Memif,
    Veth,
}

#[cfg(feature = "dpdk")]
#[derive(Args, Debug)]
struct ForwardArgs {
    /// Seconds per timed phase.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Frame size in bytes without FCS.
    #[arg(long, default_value_t = 60)]
    size: usize,
    /// UDP flows.
    #[arg(long, default_value_t = 1000)]
    flows: u64,
    /// ftfw / testpmd alternations; the best round of each is reported.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Generator core.
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
    /// Forwarder core (ftfw worker, testpmd forwarding lcore).
    #[arg(long, default_value_t = 1)]
    fwd_core: usize,
    /// testpmd program.
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: String,
    /// How the generator reaches the forwarder: memif (DPDK shared memory,
    /// a generator that outruns the forwarders) or veth (AF_PACKET vdevs
    /// over veths; the kernel sets the rate).
    #[arg(long, value_enum, default_value_t = LinkArg::Memif)]
    link: LinkArg,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// (internal) run inside the benchmark's namespace with these options.
    #[arg(long, hide = true)]
    inside: Option<String>,
}

#[derive(Args, Debug)]
struct PipelineArgs {
    /// Ports: mem (in-process rings) or dpdk (DPDK net_ring devices; needs
    /// the dpdk feature and EAL, so root).
    #[arg(long, value_enum, default_value_t = BackendArg::Mem)]
    backend: BackendArg,
    /// Established flows.
    #[arg(long, default_value_t = 1_000_000)]
    flows: u64,
    /// Share (0..1) of client packets that open a new flow.
    #[arg(long, default_value_t = 0.0)]
    new_share: f64,
    /// Frame size in bytes without FCS (60 is a 64-byte packet).
    #[arg(long, default_value_t = 60)]
    size: usize,
    /// Share (0..1) of established flows that are UDP; the rest are TCP.
    #[arg(long, default_value_t = 0.0)]
    udp_share: f64,
    /// Seconds per timed phase.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Extra synthetic rules in the classifier.
    #[arg(long, default_value_t = 1000)]
    rules: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also run the pipeline phase with every flow source-NATed and report
    /// `nat_mpps` and `nat_over_plain`.
    #[arg(long)]
    nat: bool,
    /// Also run the pipeline phase as one of two multi-primary members
    /// behind a hub (owning every other bucket: every frame arrives, half
    /// are dropped as another member's) and report
    /// `multi_primary_capacity`, the two-member cluster's capacity over
    /// one node's with a core per member.
    #[arg(long)]
    multi_primary: bool,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BackendArg {
    Mem,
    Dpdk,
}

fn main() -> ExitCode {
    // The in-process nodes' logs (ftfwd's own messages), on stderr, when
    // asked for with FTFW_LOG (e.g. `FTFW_LOG=info`), as ftfwd reads it.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("FTFW_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ftfw-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Failover(a) => failover_cmd(&a),
        Cmd::Cluster(a) => cluster_cmd(&a),
        Cmd::Bench(BenchCmd::Pipeline(a)) => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&a.new_share),
                "--new-share must be between 0 and 1"
            );
            anyhow::ensure!(
                (0.0..=1.0).contains(&a.udp_share),
                "--udp-share must be between 0 and 1"
            );
            anyhow::ensure!(
                (60..=1514).contains(&a.size),
                "--size must be between 60 and 1514"
            );
            anyhow::ensure!(
                a.duration > 0.0 && a.duration <= 600.0,
                "--duration must be in (0, 600] seconds"
            );
            anyhow::ensure!(
                a.flows >= 1 && a.flows <= 50_000_000,
                "--flows must be between 1 and 50000000"
            );
            let backend = match a.backend {
                BackendArg::Mem => Backend::Mem,
                BackendArg::Dpdk => dpdk_backend()?,
            };
            let opts = PipelineOpts {
                backend,
                flows: a.flows,
                new_share: a.new_share,
                size: a.size,
                udp_share: a.udp_share,
                duration: Duration::from_secs_f64(a.duration),
                rules: a.rules,
                seed: a.seed,
                nat: a.nat,
                multi_primary: a.multi_primary,
            };
            let json = a.json;
            let report = bench::run_pipeline(&opts, |phase| {
                if !json {
                    eprintln!("  .. {phase}");
                }
            });
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", bench::render(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench(BenchCmd::Commit {
            flows,
            workers,
            json,
        }) => {
            anyhow::ensure!(
                (1..=50_000_000).contains(&flows),
                "--flows must be between 1 and 50000000"
            );
            anyhow::ensure!(
                (1..=64).contains(&workers),
                "--workers must be between 1 and 64"
            );
            let r = bench::run_commit(flows, workers)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "imported {} flows into {} worker(s) in {:.3} s: {:.0} flows/s ({} refused)",
                    r.flows, r.workers, r.secs, r.commit_flows_per_sec, r.refused
                );
                println!(
                    "takeover commit (external cache streamed into the shards): {:.3} s",
                    r.total_secs
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench(BenchCmd::Sync(a)) => {
            anyhow::ensure!(
                a.duration > 0.0 && a.duration <= 600.0,
                "--duration must be in (0, 600] seconds"
            );
            anyhow::ensure!(
                (1..=sync_bench::MAX_FLOWS).contains(&a.flows),
                "--flows must be between 1 and {}",
                sync_bench::MAX_FLOWS
            );
            anyhow::ensure!(
                (1..=65_536).contains(&a.burst),
                "--burst must be between 1 and 65536"
            );
            anyhow::ensure!(
                (576..=65_535).contains(&a.mtu),
                "--mtu must be between 576 and 65535"
            );
            anyhow::ensure!(
                a.flush_us <= 1_000_000,
                "--flush-us must be at most 1000000"
            );
            anyhow::ensure!(
                a.commit_flows <= 50_000_000,
                "--commit-flows must be at most 50000000"
            );
            let opts = SyncOpts {
                flows: a.flows,
                duration: Duration::from_secs_f64(a.duration),
                burst: a.burst,
                mtu: a.mtu,
                flush_delay: Duration::from_micros(a.flush_us),
                window_tracking: a.window_tracking,
                mark_always: a.mark,
                commit_flows: a.commit_flows,
                udp_offload: !a.no_udp_offload,
                ..SyncOpts::default()
            };
            if a.compare_auth {
                anyhow::ensure!(
                    (1..=20).contains(&a.rounds),
                    "--rounds must be between 1 and 20"
                );
                let (mut plain, mut authenticated) = (Vec::new(), Vec::new());
                for _ in 0..a.rounds {
                    plain.push(sync_bench::run_sync(&opts)?);
                    authenticated.push(sync_bench::run_sync(&SyncOpts {
                        authenticated: true,
                        ..opts.clone()
                    })?);
                }
                let rates = |rs: &[sync_bench::SyncReport]| {
                    let mut v: Vec<f64> = rs.iter().map(|r| r.msgs_per_sec).collect();
                    v.sort_by(f64::total_cmp);
                    v
                };
                let (p, q) = (rates(&plain), rates(&authenticated));
                let median = |v: &[f64]| v[v.len() / 2];
                let ratio = median(&q) / median(&p);
                if a.json {
                    let j = serde_json::json!({
                        "plain": plain, "authenticated": authenticated,
                        "plain_msgs_per_sec": p, "authenticated_msgs_per_sec": q,
                        "authenticated_over_plain_median_msgs_per_sec": ratio,
                    });
                    println!("{j}");
                } else {
                    print!(
                        "plain (last run):\n{}",
                        sync_bench::render(&plain[plain.len() - 1])
                    );
                    print!(
                        "authenticated (last run):\n{}",
                        sync_bench::render(&authenticated[authenticated.len() - 1])
                    );
                    let show = |v: &[f64]| {
                        format!(
                            "min {:.0} median {:.0} max {:.0}",
                            v[0],
                            median(v),
                            v[v.len() - 1]
                        )
                    };
                    println!("plain msgs/s over {} runs: {}", p.len(), show(&p));
                    println!("authenticated msgs/s over {} runs: {}", q.len(), show(&q));
                    println!("authenticated / plain (medians): {ratio:.3}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let r = sync_bench::run_sync(&opts)?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", sync_bench::render(&r));
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "dpdk")]
        Cmd::Bench(BenchCmd::Forward(a)) => bench_forward(a),
        Cmd::Netns(NetnsCmd::Compare {
            bytes,
            rounds,
            workers,
            busy,
            json,
        }) => {
            let o = ftfw_lab::netns_compare::CompareOptions {
                bytes,
                rounds,
                workers,
                busy,
                bin_dir: None,
            };
            o.check()?;
            let r = ftfw_lab::netns_compare::run_compare(&o)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{}", r.summary());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Netns(NetnsCmd::Failover {
            transfers,
            bytes,
            routed,
            sync_loss,
            sync_transport,
            sync_rate,
            check_interval_ms,
            workers,
            detector,
            rejoin,
            ftp,
            json,
        }) => {
            let o = ftfw_lab::netns_failover::NetnsOptions {
                bin_dir: None,
                detector: match detector {
                    DetectorArg::Election => ftfw_lab::netns_failover::Detector::Election,
                    DetectorArg::Keepalived => ftfw_lab::netns_failover::Detector::Keepalived,
                },
                rejoin,
                transfers,
                bytes,
                routed: routed || ftp,
                sync_loss,
                sync_transport: sync_transport.into(),
                sync_rate,
                check_interval_ms,
                workers,
                ftp,
            };
            o.check()?;
            let r = ftfw_lab::netns_failover::run_netns_failover(&o)?;
            print_report(&r, json, || r.text(), r.passed())
        }
        Cmd::Netns(NetnsCmd::Loss(a)) => {
            use ftfw_lab::netns_loss::{run_inside, run_loss_check, LossCheckOptions};
            let o = LossCheckOptions {
                transports: a.transports.iter().map(|t| (*t).into()).collect(),
                losses: a.losses.clone(),
                sizes: a.sizes.clone(),
                seeds: a.seeds,
                seed: a.seed,
                concurrency: a.concurrency,
                transfers: a.transfers,
            };
            let r = if a.inside {
                run_inside(&o, |l| eprintln!("  .. {l}"))?
            } else {
                run_loss_check(&o)?
            };
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", r.text());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Netns(NetnsCmd::Cluster(a)) => netns_cluster_cmd(a),
        Cmd::Serve { listen, max_conns } => {
            probe::serve(listen, max_conns.max(1))
                .with_context(|| format!("serving on {listen}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fetch {
            connect,
            bytes,
            stall_ms,
            pause_ms,
            hold_file,
            parallel,
            json,
        } if parallel > 1 => {
            let stall = Duration::from_millis(stall_ms);
            let pause = probe::Pause {
                min: Duration::from_millis(pause_ms),
                hold_file,
            };
            let threads: Vec<_> = (0..parallel)
                .map(|_| {
                    let pause = pause.clone();
                    std::thread::spawn(move || probe::fetch(connect, bytes, stall, &pause))
                })
                .collect();
            let results: Vec<probe::FetchResult> = threads
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| probe::FetchResult {
                        ok: false,
                        bytes: 0,
                        elapsed_ms: 0,
                        error: Some("fetch thread panicked".into()),
                    })
                })
                .collect();
            let ok = results.iter().filter(|r| r.ok).count();
            if json {
                println!("{}", serde_json::to_string(&results)?);
            } else {
                println!("{ok} of {parallel} fetches from {connect} completed");
            }
            Ok(if ok == results.len() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Fetch {
            connect,
            bytes,
            stall_ms,
            pause_ms,
            hold_file,
            json,
            ..
        } => {
            let r = probe::fetch(
                connect,
                bytes,
                Duration::from_millis(stall_ms),
                &probe::Pause {
                    min: Duration::from_millis(pause_ms),
                    hold_file,
                },
            );
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else if r.ok {
                println!(
                    "fetched {} bytes from {connect} in {} ms",
                    r.bytes, r.elapsed_ms
                );
            } else {
                println!(
                    "fetch from {connect} failed after {} bytes: {}",
                    r.bytes,
                    r.error.as_deref().unwrap_or("?")
                );
            }
            Ok(if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Inject {
            interface,
            tcp_ack,
            from,
            to,
            dst_mac,
            count,
        } => inject_cmd(&interface, tcp_ack, from, to, dst_mac, count),
    }
}
