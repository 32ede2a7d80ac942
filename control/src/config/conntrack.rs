//! `[conntrack]`: table capacity, delta ring and per-protocol timeouts.

use serde::Deserialize;

use super::Checker;

/// Smallest total flow capacity.
pub const MIN_CAPACITY: u64 = 1024;
/// Largest total flow capacity.
pub const MAX_CAPACITY: u64 = 64 * 1024 * 1024;
/// Smallest per-worker delta ring.
pub const MIN_DELTA_RING: u64 = 16;
/// Largest per-worker delta ring.
pub const MAX_DELTA_RING: u64 = 1 << 20;
/// Largest conntrack timeout in seconds (ten years).
pub const MAX_TIMEOUT_SECS: u64 = 10 * 365 * 86400;

/// `[conntrack]`: the flow table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Total flows, split evenly over the workers.
    pub capacity: usize,
    /// Accept out-of-window TCP packets instead of marking them invalid.
    pub tcp_be_liberal: bool,
    /// Pick up TCP connections mid-stream.
    pub tcp_loose: bool,
    /// Per-worker state-delta ring slots (a power of two).
    pub delta_ring: usize,
    /// Timeouts per protocol state.
    pub timeouts: Timeouts,
}

/// Conntrack timeouts in seconds (Linux defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP SYN_SENT.
    pub tcp_syn_sent: u32,
    /// TCP SYN_RECV.
    pub tcp_syn_recv: u32,
    /// TCP ESTABLISHED.
    pub tcp_established: u32,
    /// TCP FIN_WAIT.
    pub tcp_fin_wait: u32,
    /// TCP CLOSE_WAIT.
    pub tcp_close_wait: u32,
    /// TCP LAST_ACK.
    pub tcp_last_ack: u32,
    /// TCP TIME_WAIT.
    pub tcp_time_wait: u32,
    /// TCP CLOSE.
    pub tcp_close: u32,
    /// TCP SYN_SENT2.
    pub tcp_syn_sent2: u32,
    /// UDP, one direction seen.
    pub udp: u32,
    /// UDP, both directions seen.
    pub udp_stream: u32,
    /// ICMP.
    pub icmp: u32,
    /// Any other protocol.
    pub generic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 432000,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            tcp_syn_sent2: 120,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            generic: 600,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConntrack {
    pub(super) capacity: i64,
    pub(super) tcp_be_liberal: bool,
    pub(super) tcp_loose: bool,
    pub(super) delta_ring: i64,
    pub(super) timeouts: RawTimeouts,
}

impl Default for RawConntrack {
    fn default() -> Self {
        RawConntrack {
            capacity: 262144,
            tcp_be_liberal: false,
            tcp_loose: false,
            delta_ring: 8192,
            timeouts: RawTimeouts::default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) tcp_syn_sent: Option<i64>,
    pub(super) tcp_syn_recv: Option<i64>,
    pub(super) tcp_established: Option<i64>,
    pub(super) tcp_fin_wait: Option<i64>,
    pub(super) tcp_close_wait: Option<i64>,
    pub(super) tcp_last_ack: Option<i64>,
    pub(super) tcp_time_wait: Option<i64>,
    pub(super) tcp_close: Option<i64>,
    tcp_syn_sent2: Option<i64>,
    pub(super) udp: Option<i64>,
    pub(super) udp_stream: Option<i64>,
    pub(super) icmp: Option<i64>,
    pub(super) generic: Option<i64>,
}

impl Checker<'_> {
    /// Checks `[conntrack]`; `workers` share the capacity.
    pub(super) fn conntrack(&mut self, c: &RawConntrack, workers: usize) -> ConntrackConfig {
        let capacity_ok = self.range("conntrack.capacity", c.capacity, MIN_CAPACITY, MAX_CAPACITY);
        let capacity = capacity_ok.unwrap_or(MIN_CAPACITY);
        let delta_ring = self
            .range(
                "conntrack.delta_ring",
                c.delta_ring,
                MIN_DELTA_RING,
                MAX_DELTA_RING,
            )
            .unwrap_or(MIN_DELTA_RING);
        if !delta_ring.is_power_of_two() {
            self.error(
                "conntrack.delta_ring",
                format!("{delta_ring} is not a power of two"),
            );
        }
        let mut timeouts = Timeouts::default();
        {
            let t = &c.timeouts;
            let fields: [(&str, Option<i64>, &mut u32); 13] = [
                ("tcp_syn_sent", t.tcp_syn_sent, &mut timeouts.tcp_syn_sent),
                ("tcp_syn_recv", t.tcp_syn_recv, &mut timeouts.tcp_syn_recv),
                (
                    "tcp_established",
                    t.tcp_established,
                    &mut timeouts.tcp_established,
                ),
                ("tcp_fin_wait", t.tcp_fin_wait, &mut timeouts.tcp_fin_wait),
                (
                    "tcp_close_wait",
                    t.tcp_close_wait,
                    &mut timeouts.tcp_close_wait,
                ),
                ("tcp_last_ack", t.tcp_last_ack, &mut timeouts.tcp_last_ack),
                (
                    "tcp_time_wait",
                    t.tcp_time_wait,
                    &mut timeouts.tcp_time_wait,
                ),
                ("tcp_close", t.tcp_close, &mut timeouts.tcp_close),
                (
                    "tcp_syn_sent2",
                    t.tcp_syn_sent2,
                    &mut timeouts.tcp_syn_sent2,
                ),
                ("udp", t.udp, &mut timeouts.udp),
                ("udp_stream", t.udp_stream, &mut timeouts.udp_stream),
                ("icmp", t.icmp, &mut timeouts.icmp),
                ("generic", t.generic, &mut timeouts.generic),
            ];
            for (name, v, slot) in fields {
                if let Some(v) = v {
                    let field = format!("conntrack.timeouts.{name}");
                    if let Some(v) = self.range(&field, v, 1, MAX_TIMEOUT_SECS) {
                        *slot = u32::try_from(v).unwrap_or(u32::MAX);
                    }
                }
            }
        }
        let conntrack = ConntrackConfig {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            tcp_be_liberal: c.tcp_be_liberal,
            tcp_loose: c.tcp_loose,
            delta_ring: usize::try_from(delta_ring).unwrap_or(usize::MAX),
            timeouts,
        };
        if capacity_ok.is_some() && conntrack.capacity < workers * 1024 {
            self.error(
                "conntrack.capacity",
                format!(
                    "{} gives fewer than 1024 flows to each of {workers} workers",
                    conntrack.capacity
                ),
            );
        }
        conntrack
    }
}
