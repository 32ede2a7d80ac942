//! The report of a failover run and its text form.

use serde::Serialize;

use super::Transport;
use crate::synclink::LinkCounters;

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
    /// Transfers with the handshake done and not finished at the crash
    /// that still needed a firewall (not those that completed on frames
    /// forwarded before it, without one through the survivor).
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
    /// Connection set-up time (the client's SYN to its SYN-ACK), median
    /// over the TCP transfers that got one.
    pub setup_median_ms: Option<f64>,
    /// The same, 95th percentile.
    pub setup_p95_ms: Option<f64>,
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
    /// fw1's lazy replication counters at the crash (or the end); `None`
    /// when `[sync.lazy]` is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lazy: Option<ftfw_sync::lazy::LazyStats>,
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
    /// CPU time fw1's worker thread spent handling frames (its busy time;
    /// thread CPU time, so time descheduled on a shared core is not counted).
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
    ) + &r.lazy.map_or_else(String::new, |l| {
        format!(
            "lazy replication on fw1: {} changes held, {} sent at once; {} msgs saved, {} sent late\n",
            l.predicted_transitional, l.predicted_stable, l.saved_msgs, l.delayed
        )
    })
}
