//! `bench pipeline`'s human-readable report.

use super::{Backend, PipelineReport, NAT_RULE};

/// A stage breakdown in the worker's order: `rx 17.0, parse 24.1, ...`.
fn stages_text(st: &std::collections::BTreeMap<String, f64>) -> String {
    ["rx", "parse", "lookup", "decide", "tx", "harness"]
        .iter()
        .filter_map(|k| st.get(*k).map(|v| format!("{k} {v:.1}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The human-readable report.
pub fn render(r: &PipelineReport) -> String {
    let c = &r.counters;
    let stages = stages_text(&r.stages_ns_per_packet);
    let mut out = format!(
        "ftfw pipeline benchmark (one core, {backend} ports, {size}-byte frames, {rules} rules)\n\
         \n\
         {:<28}{:>14}\n{:<28}{:>14.3}\n{:<28}{:>14.3}\n{:<28}{:>14.2}\n{:<28}{:>14.1}\n{:<28}{:>14.0}\n{:<28}{:>14}\n{:<28}{:>14}\n\
         \n\
         counters (pipeline phase): rx {} tx {} fast_path {} accepted {} dropped_by_rule {} invalid {} table_full {} early_drops {} ring_full {}\n\
         targets: ratio >= 0.5 at 1M flows / 64-byte packets; >= 1M new sessions/s per core; <= 128 bytes per flow entry\n",
        "flows established",
        r.flows,
        "pipeline Mpps",
        r.mpps,
        "baseline Mpps (parse+fwd)",
        r.baseline_mpps,
        "ratio",
        r.ratio,
        "ns per packet",
        r.ns_per_packet,
        "new sessions per second",
        r.new_sessions_per_sec,
        "bytes per flow entry",
        r.entry_bytes,
        "bytes per flow (with index)",
        r.bytes_per_flow,
        c.rx,
        c.tx,
        c.fast_path,
        c.accepted,
        c.dropped_by_rule,
        c.invalid,
        c.table_full,
        c.early_drops,
        c.ring_full,
        size = r.size,
        rules = r.rules,
        backend = match r.backend {
            Backend::Mem => "mem",
            Backend::Dpdk => "DPDK net_ring",
        },
    );
    out += &format!("ns per packet by stage (stage clock on): {}\n", stages);
    if let (Some(m), Some(ratio)) = (r.nat_mpps, r.nat_over_plain) {
        out += &format!(
            "with NAT ({NAT_RULE}): {m:.3} Mpps, nat_over_plain {ratio:.2} (target >= 0.8), {} packets rewritten, {:.0} new translated flows/s\n",
            r.nat_translated.unwrap_or(0),
            r.nat_new_sessions_per_sec.unwrap_or(0.0)
        );
    }
    if let Some(st) = &r.nat_stages_ns_per_packet {
        out += &format!("with NAT, ns per packet: {}\n", stages_text(st));
    }
    if let (Some(t), Some(p)) = (
        r.shard_new_translated_flows_per_sec,
        r.shard_new_flows_per_sec,
    ) {
        out += &format!(
            "a shard alone (no frames): {t:.0} new translated flows/s (target >= 1M), {p:.0} plain\n"
        );
    }
    if let (Some(c), Some(m), Some(one)) = (
        r.multi_primary_capacity,
        r.multi_primary_ns_per_packet,
        r.single_owner_ns_per_packet,
    ) {
        out += &format!(
            "as one of two multi-primary members (every other bucket, all frames arriving): {m:.0} ns/packet against {one:.0} owning every bucket: two members on a core each have {c:.2}x one node's capacity (target >= 1.8)\n"
        );
    }
    if let (Some(c), Some(f)) = (
        r.multi_primary_capacity_filtered,
        r.filtered_member_ns_per_frame,
    ) {
        out += &format!(
            "the same member with the bucket filter on its port: its worker received {:.0}% of the frames, {f:.0} ns per frame offered: {c:.2}x (target >= 1.8)\n",
            100.0 * r.filtered_member_received_share.unwrap_or(0.0)
        );
    }
    out
}
