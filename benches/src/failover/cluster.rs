//! The cluster: start-up, the traffic phases, the crash and the report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::bail;
use ftfw_control::console::proto::{Payload, Request};
use ftfw_dataplane::port::{PacketBuf, Port};

use super::hosts::{HostWire, Hosts, St, Transfer};
use super::kernel_link::KernelLink;
use super::node::{distinct_free_ports, free_port, node, FwCounters, Node, NodeSpec};
use super::{check, FailoverOpts, FailoverReport, Transport, MAX_PHASES, POLL_EVERY};
use crate::synclink::{LinkCounters, LinkParams, SyncLink};

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
pub(super) fn known_to(n: &mut Node, h: &Hosts) -> anyhow::Result<usize> {
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

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether fw1 is to crash now.
pub(super) fn crash_due(h: &Hosts, opts: &FailoverOpts, now: Instant, t0: Instant) -> bool {
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

/// A running cluster: fw1 (primary) and, with replication, fw2 and the
/// sync link between them.
pub struct Cluster {
    pub(super) nodes: Vec<Node>,
    pub(super) link: Option<SyncLink>,
    /// With `kernel_link`: the nftables loss and cut of the direct link.
    pub(super) kernel: Option<KernelLink>,
    pub(super) replication: bool,
    pub(super) transport: Transport,
    pub(super) link_params: LinkParams,
    pub(super) started: Instant,
    pub(super) phase: u8,
    pub(super) crashed: bool,
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
    /// The link's counters (a kernel link: the packets its loss rules
    /// dropped, as `lost`).
    fn link_counters(link: &Option<SyncLink>, kernel: &Option<KernelLink>) -> LinkCounters {
        match (link, kernel) {
            (Some(l), _) => l.counters(),
            (None, Some(k)) => LinkCounters {
                lost: k.dropped(),
                ..LinkCounters::default()
            },
            (None, None) => LinkCounters::default(),
        }
    }

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
                kernel: None,
                replication: false,
                transport: opts.transport,
                link_params,
                started,
                phase: 0,
                crashed: false,
            });
        }
        let ports = distinct_free_ports(2, 4)?;
        let (sp, ep) = (ports[0], ports[1]);
        let addr = |last: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), sp);
        // The emulated link, or the kernel's between the nodes themselves.
        let (link, kernel) = if opts.kernel_link {
            (None, Some(KernelLink::start(sp, link_params.loss)?))
        } else {
            let l = SyncLink::start(
                opts.transport.link_kind(),
                link_params,
                addr(3),
                addr(4),
                addr(1),
                addr(2),
            )?;
            (Some(l), None)
        };
        let (peer_of_1, peer_of_2) = if opts.kernel_link {
            ("127.0.0.2", "127.0.0.1")
        } else {
            ("127.0.0.3", "127.0.0.4")
        };
        let mut nodes = vec![
            node(
                &NodeSpec {
                    tag: "fw1",
                    id: 1,
                    priority: 200,
                    local: "127.0.0.1",
                    sync_peer: peer_of_1,
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
                    sync_peer: peer_of_2,
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
            link,
            kernel,
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
        let link0 = Self::link_counters(&self.link, &self.kernel);
        let defer0 = nodes[0].defer_counters()?;

        let mut rng = opts.seed ^ 0x5EED_F00D ^ (u64::from(self.phase) << 32);
        let t0 = Instant::now();
        let mut h = Hosts::new(
            cip,
            opts.transfers,
            opts.object_size,
            opts.udp_share,
            &mut rng,
            t0,
        );
        let (mut wire_to_fw_c, mut wire_to_fw_s) = (HostWire::default(), HostWire::default());
        let mut next_open = 0usize;
        let mut hub_drops = 0u64;
        let mut last_poll = t0;
        let mut last_report = t0;
        let mut last_role_check = t0;
        let (mut sync_msgs, mut sync_bytes) = (0, 0);
        let mut fw1_lazy = None;
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
                if let Some(k) = &self.kernel {
                    k.cut()?;
                }
                let n1 = &mut nodes[0];
                n1.driver = None;
                (sync_msgs, sync_bytes) = n1.sync_counters()?;
                fw1_lazy = n1.lazy_stats()?;
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
                h.open(next_open, now);
                next_open += 1;
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
                        h.client_rx(&b.data, fw == 1, now);
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
                fw1_lazy = nodes[0].lazy_stats()?;
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
        let link = Self::link_counters(&self.link, &self.kernel);
        let est =
            h.t.iter()
                .filter(|x| x.needed_a_firewall_after_the_crash())
                .count();
        let recovered: Vec<&Transfer> = h.t.iter().filter(|x| x.recovered()).collect();
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
        let mut setups: Vec<f64> = h.t.iter().filter_map(|x| x.setup.map(ms)).collect();
        setups.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            (!setups.is_empty()).then(|| {
                let i = ((setups.len() - 1) as f64 * q).round() as usize;
                setups[i]
            })
        };
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
            setup_median_ms: quantile(0.5),
            setup_p95_ms: quantile(0.95),
            time_to_recover_ms: resumed(Duration::max),
            time_to_first_recovery_ms: resumed(Duration::min),
            takeover_ms: h.crash.zip(takeover).map(|(c, t)| ms(t.duration_since(c))),
            takeover_steps,
            sync_msgs,
            sync_bytes,
            lazy: fw1_lazy,
            sync_link: LinkCounters {
                delivered: link.delivered - link0.delivered,
                delivered_bytes: link.delivered_bytes - link0.delivered_bytes,
                // A kernel link's drops since it started (the set-up's too:
                // a TCP connection that lost segments then may still be
                // waiting for a retransmission timeout).
                lost: if self.kernel.is_some() {
                    link.lost
                } else {
                    link.lost - link0.lost
                },
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
