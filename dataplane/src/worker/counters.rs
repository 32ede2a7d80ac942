//! Worker counters: a plain struct the worker increments, published to an
//! atomic mirror that the control thread reads without locks.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($(#[doc = $doc:literal] $name:ident,)*) => {
        /// Per-worker counters. Summed over workers by the console.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct WorkerCounters {
            $(#[doc = $doc] pub $name: u64,)*
        }

        /// The atomic mirror of [`WorkerCounters`]; the worker is its only writer.
        #[derive(Debug, Default)]
        pub struct PublishedCounters {
            $($name: AtomicU64,)*
        }

        impl PublishedCounters {
            /// Stores a snapshot (relaxed: each field is independent).
            pub fn publish(&self, c: &WorkerCounters) {
                $(self.$name.store(c.$name, Ordering::Relaxed);)*
            }
            /// Reads the latest snapshot.
            pub fn load(&self) -> WorkerCounters {
                WorkerCounters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl WorkerCounters {
            /// Field-wise sum.
            pub fn add(&mut self, o: &WorkerCounters) {
                $(self.$name = self.$name.wrapping_add(o.$name);)*
            }
            /// Field names and their documentation (the metrics' help
            /// text), in declaration order.
            pub const FIELD_DOCS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($name), $doc),)*];
            /// Field names and values, in declaration order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    /// Frames received from all ports.
    rx,
    /// Frames transmitted to all ports.
    tx,
    /// Frames a port refused to transmit (ring full).
    tx_dropped,
    /// Frames not IP (ARP, LLDP) or IPv6 link control (ND) passed unfiltered.
    non_ip_passed,
    /// Non-IP frames of an ethertype not configured to pass (PPPoE...).
    non_ip_dropped,
    /// IPv6 packets with a type-0 routing header, dropped.
    rh0_dropped,
    /// Packets with a bad TCP, UDP, ICMP or ICMPv6 checksum, dropped before conntrack.
    bad_checksum,
    /// Frames that failed to parse.
    malformed,
    /// Later IP fragments (no L4 header) seen.
    fragments,
    /// Later fragments dropped: no first fragment of their datagram seen (or it expired).
    fragments_without_first,
    /// Later fragments dropped: overlapping a fragment received before (the datagram is dropped from then on).
    fragments_overlapping,
    /// Later fragments dropped: ending past 65,535 bytes, or their datagram too scattered to track.
    fragments_oversized,
    /// First fragments whose datagram could not be tracked (fragment table full; its later fragments are dropped).
    fragment_table_full,
    /// Packets dropped by a rule or the default policy.
    dropped_by_rule,
    /// New flows translated by a nat rule.
    nat_flows,
    /// Packets rewritten by NAT (both directions, ICMP errors included).
    nat_translated,
    /// New flows a nat rule matched but no free address and port could translate (dropped).
    nat_no_port,
    /// Packets of translated flows whose headers could not be rewritten (dropped).
    nat_failed,
    /// First fragments of ICMP errors about translated flows, dropped (later fragments cannot follow the rewrite of a quoted packet).
    nat_fragments_dropped,
    /// Expectations created by helpers (FTP PORT/PASV/EPRT/EPSV, TFTP requests).
    expectations_created,
    /// New flows that matched an expectation (ct state related).
    expectations_matched,
    /// Expectations that timed out unused (counted by the worker that removed them).
    expectations_expired,
    /// Expectations refused because the expectation table (1,024, shared by the workers) was full.
    expectations_table_full,
    /// Helper lines that looked like PORT/EPRT/227/229 (or TFTP requests) but did not parse.
    helper_malformed,
    /// FTP announces of an address other than the sender's (ignored, as Linux does).
    helper_address_mismatch,
    /// Control-connection segments read without their line state (helper state table full).
    helper_state_full,
    /// FTP announces rewritten to the translated address and port (the control connection is translated).
    helper_rewritten,
    /// FTP announces of a translated control connection that could not be rewritten (split over segments, no free port, or the frame would outgrow its buffer): no expectation; a segment that could not take the rewrite is dropped.
    helper_rewrite_failed,
    /// Packets whose TCP sequence or acknowledgement numbers (or SACK blocks) were moved after a rewrite changed a payload's length.
    seq_adjusted,
    /// Packets rejected (RST or ICMP unreachable sent back).
    rejected,
    /// Reject answers that could not be built or sent.
    reject_failed,
    /// Packets the ACL accepted.
    accepted,
    /// Packets of tracked flows decided by their cached verdict.
    fast_path,
    /// Packets conntrack classified INVALID.
    invalid,
    /// ICMP errors classified RELATED.
    related,
    /// New flows refused because the table was full.
    table_full,
    /// Unassured flows early-dropped to make room.
    early_drops,
    /// State deltas pushed to the ring.
    deltas,
    /// State deltas lost because the ring was full.
    ring_full,
    /// State changes merged into a waiting delta of the same flow (one loop iteration's deltas go to the ring together).
    deltas_merged,
    /// Deltas not emitted because of the flow's sync level (`sync established|none`).
    sync_skipped,
    /// Imported or added flows whose timeout was cut to the longest configured one.
    timeouts_clamped,
    /// Flows in the shard now.
    flows,
    /// Flows the shard can hold.
    capacity,
    /// Flows created.
    flows_created,
    /// Flows destroyed.
    flows_destroyed,
    /// Flows expired.
    flows_expired,
    /// Packets that matched a log rule.
    logged,
    /// Log records lost because the log ring was full.
    log_ring_full,
    /// Console commands served.
    commands,
    /// Loop iterations that found no frame.
    idle_polls,
    /// Nanoseconds spent in loop iterations that handled frames (busy time).
    busy_ns,
    /// CPU nanoseconds of the worker thread in iterations that handled frames (busy time, not counting time descheduled).
    busy_cpu_ns,
    /// Frames dropped because this node is a backup (not forwarding).
    standby_dropped,
    /// Cluster: frames of buckets another node owns, dropped silently (by the worker; those the kernel's bucket filter dropped are not counted).
    not_owner,
    /// Cluster: bucket filters given to the ports (AF_PACKET: loaded into the kernel; at each change of the buckets this node owns).
    bucket_filter_loads,
    /// Cluster: bucket filters the kernel refused (the worker then judges every frame itself).
    bucket_filter_failures,
    /// Frames handed to the worker that holds their flow (replies of translated flows steered to this worker).
    handed_off,
    /// Frames another worker handed to this one, decided here.
    handoff_received,
    /// Frames not handed over because the other worker's queue was full (dropped).
    handoff_full,
    /// Defer: first packets of new flows held until the peer acknowledged the flow.
    deferred,
    /// Defer: held packets transmitted once the peer acknowledged their flow.
    defer_released,
    /// Defer: held packets transmitted without an acknowledgement (timeout, or defer went inactive).
    defer_timeouts,
    /// Defer: packets transmitted at once because the defer queue was full.
    defer_overflow,
    /// Routed mode: packets routed (TTL decremented, MACs rewritten, sent).
    routed,
    /// Routed mode: ARP replies and neighbor advertisements for our addresses.
    arp_nd_answers,
    /// Routed mode: ARP requests and neighbor solicitations sent.
    arp_nd_solicits,
    /// Routed mode: packets whose next hop's MAC was unknown (a solicitation goes out).
    neighbor_miss,
    /// Routed mode: of those, packets held until the next hop is learned.
    neighbor_held,
    /// Routed mode: of those, packets dropped because every hold slot was in use.
    neighbor_hold_full,
    /// Routed mode: held packets routed once their next hop was learned (counted in `routed` too).
    neighbor_released,
    /// Routed mode: held packets dropped, their next hop not learned in time.
    neighbor_hold_expired,
    /// Routed mode: ICMP host unreachable answers sent for them.
    neighbor_unreachable,
    /// ICMP errors not sent (ICMP rejects; routed mode's time exceeded and unreachables): over 1000 a second per worker, or over one a second to one destination after a burst of 6.
    icmp_errors_limited,
    /// Routed mode: learned neighbors lost because the learn ring was full.
    learn_ring_full,
    /// Routed mode: packets dropped for want of a route (network unreachable sent).
    no_route,
    /// Routed mode: packets dropped at TTL / hop limit 1 (time exceeded sent).
    ttl_exceeded,
    /// Routed mode: echo requests to our addresses answered.
    echo_replies,
    /// Routed mode: other packets to our addresses, dropped.
    local_dropped,
    /// Routed mode: ARP / neighbor advertisements taken in (learned), not answered.
    l3_consumed,
    /// Routed mode: frames not for us (other MAC, multicast, foreign ARP/ND, not IP), dropped.
    l3_ignored,
}
