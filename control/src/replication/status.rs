//! What `ftfwctl sync status` shows ([`SyncStatusInfo`], summed over the
//! channels in a cluster) and the per-peer view ([`PeerSyncInfo`]).

use std::time::Instant;

use ftfw_sync::engine::EngineStats;

use super::peer::PeerChannel;
use super::{tcp, SyncCore};
use crate::config::{SyncDestination, SyncTransport};
use crate::console::proto::{PeerSyncInfo, SyncStatusInfo, TcpLinkInfo};

fn millis_since(now: Instant, t: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
}

fn overflows(s: &EngineStats) -> u64 {
    s.tx_overflow + s.resend_overflow + s.ctl_overflow + s.event_overflow
}

impl SyncCore {
    /// Per peer: link state and counters.
    pub(super) fn peers_status(&self, now: Instant) -> Vec<PeerSyncInfo> {
        let alive3 = self.cfg.alive_interval * 3;
        self.channels
            .iter()
            .map(|c| {
                let s = c.engine.stats();
                PeerSyncInfo {
                    node: c.node,
                    address: c.addr.to_string(),
                    state: c.state_name(now, alive3).to_string(),
                    last_heard_ms: c.last_heard.map(|t| millis_since(now, t)),
                    hello: c.hello_name().to_string(),
                    seq_out: c.engine.seq_out(),
                    seq_in: c.engine.last_seq_in(),
                    tx_queue: s.tx_queue_depth as u64,
                    resend_queue: s.resend_queue_depth as u64,
                    msgs_in: s.msgs_in,
                    msgs_out: s.msgs_out,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    lost: s.lost,
                    retransmitted: s.retransmitted,
                    queue_overflows: overflows(&s),
                    external_flows: c.cache.len() as u64,
                    exports: c.counters.exports,
                    resyncs_in: c.counters.resyncs_in,
                    resync_complete: c.resync_pending_since.is_none(),
                    out_of_sync: c.engine.out_of_sync(now),
                    out_of_sync_resyncs: s.out_of_sync_resyncs,
                }
            })
            .collect()
    }

    /// The aggregate status: a pair's one channel as before; in a cluster
    /// the counters summed over the peers, `link` = `cluster`, the
    /// destination every peer's address, `peer_state` `up` only when every
    /// peer is, `hello` the least advanced handshake, and the sequence
    /// numbers those of the first peer.
    pub(super) fn status(&self, now: Instant) -> SyncStatusInfo {
        let alive3 = self.cfg.alive_interval * 3;
        let ring_overflows = self.workers.iter().map(|w| w.deltas.overflows()).sum();
        let mut deferred = ftfw_dataplane::worker::WorkerCounters::default();
        for w in &self.workers {
            deferred.add(&w.counters.load());
        }
        let first = self.channels.first();
        let mut out = SyncStatusInfo {
            mode: self.cfg.mode.as_str().to_string(),
            transport: self.cfg.transport.as_str().to_string(),
            link: match (self.cluster, self.cfg.transport, self.cfg.destination) {
                (true, _, _) => "cluster",
                (_, SyncTransport::Tcp, _) => "tcp",
                (_, _, SyncDestination::Unicast(_)) => "udp",
                (_, _, SyncDestination::Multicast(_)) => "multicast",
            }
            .to_string(),
            reliable: self.cfg.transport.reliable(),
            udp_offload: self.link.udp_offload().to_string(),
            tcp: self.link.tcp().map(|t| {
                let c = t.counters;
                TcpLinkInfo {
                    out_up: t.out_up(),
                    in_up: t.incoming_from().is_some(),
                    in_from: t.incoming_from().map(|a| a.to_string()),
                    connects: c.connects,
                    connect_failures: c.connect_failures,
                    disconnects: c.disconnects,
                    accepted: c.accepted,
                    in_closed: c.in_closed,
                    refused: c.refused,
                    buffered_bytes: t.buffered() as u64,
                    buffer_capacity: tcp::SEND_BUFFER as u64,
                    send_drops: c.send_drops,
                    cut_bytes: c.cut_bytes,
                    framing_errors: c.framing_errors,
                    repairs: c.repairs,
                }
            }),
            local: std::net::SocketAddr::new(self.cfg.local, self.cfg.port).to_string(),
            destination: if self.cluster {
                self.channels
                    .iter()
                    .filter_map(|c| c.dest.map(|d| d.to_string()))
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                self.link.dest().to_string()
            },
            peer_state: peer_state(&self.channels, now, alive3).to_string(),
            peer_last_heard_ms: self
                .channels
                .iter()
                .filter_map(|c| c.last_heard)
                .min_by_key(|&t| std::cmp::Reverse(t))
                .map(|t| millis_since(now, t)),
            hello: self
                .channels
                .iter()
                .map(PeerChannel::hello_name)
                .min_by_key(|h| match *h {
                    "init" => 0,
                    "say" => 1,
                    _ => 2,
                })
                .unwrap_or("init")
                .to_string(),
            seq_out: first.map_or(0, |c| c.engine.seq_out()),
            seq_in: first.and_then(|c| c.engine.last_seq_in()),
            foreign_datagrams: self.counters.foreign,
            authenticated: self.seal.auth.is_some(),
            key_id: self.seal.auth.as_ref().map_or(0, |a| u32::from(a.key_id())),
            auth_failed: self
                .seal
                .auth
                .as_ref()
                .map_or(0, |a| a.counters.auth_failed),
            replayed: self.seal.auth.as_ref().map_or(0, |a| a.counters.replayed),
            unknown_key_id: self
                .seal
                .auth
                .as_ref()
                .map_or(0, |a| a.counters.unknown_key_id),
            key_reloads: self
                .seal
                .auth
                .as_ref()
                .map_or(0, |a| a.counters.key_reloads),
            key_reload_errors: self.key_file.as_ref().map_or(0, |k| k.errors()),
            deltas_in: self.counters.deltas,
            ring_overflows,
            resync_complete: self
                .channels
                .iter()
                .all(|c| c.resync_pending_since.is_none()),
            injected: self.counters.injected,
            defer: self.defer.state().to_string(),
            defer_held: deferred.deferred,
            defer_released: deferred.defer_released,
            defer_timeouts: deferred.defer_timeouts,
            defer_overflow: deferred.defer_overflow,
            lazy: self.lazy.as_ref().map(ftfw_sync::lazy::Lazy::stats),
            level: self.cfg.level.name().to_string(),
            level_skipped: deferred.sync_skipped,
            deltas_merged: deferred.deltas_merged,
            // A stream framing error is a malformed message too.
            malformed: self.link.tcp().map_or(0, |t| t.counters.framing_errors),
            expectations: self.expects.enabled(),
            expectations_sent: self.expects.counters.sent,
            expectations_received: self.expects.counters.received,
            expectations_ignored: self.expects.counters.ignored,
            expectations_external: self.expects.external_len(now) as u64,
            expectations_refused: self.expects.counters.refused,
            expectations_committed: self.expects.counters.committed,
            ..SyncStatusInfo::default()
        };
        for c in &self.channels {
            let s = c.engine.stats();
            let k = c.cache.stats();
            add_engine_stats(&mut out, &s);
            out.out_of_sync |= c.engine.out_of_sync(now);
            out.send_errors += c.counters.send_errors;
            out.exports += c.counters.exports;
            out.exported_flows += c.counters.exported;
            out.resyncs_in += c.counters.resyncs_in;
            out.resyncs_deferred += c.counters.resyncs_deferred;
            out.restart_exports += c.counters.restart_exports;
            out.external_flows += c.cache.len() as u64;
            out.external_capacity += c.cache.capacity() as u64;
            out.external_full += k.full;
        }
        out
    }
}

/// Adds one channel's engine counters to the aggregate `sync status`
/// (the four overflows are shown summed, `queue_overflows`).
fn add_engine_stats(out: &mut SyncStatusInfo, s: &EngineStats) {
    out.acks_in += s.acks_in;
    out.acked += s.acked;
    out.nacks_ignored += s.nacks_ignored;
    out.skipped_requeued += s.skipped_requeued;
    out.probes += s.probes;
    out.encode_errors += s.encode_errors;
    out.ctl_queue += s.ctl_queue_depth as u64;
    out.event_queue += s.event_queue_depth as u64;
    out.resend_queue += s.resend_queue_depth as u64;
    out.tx_queue += s.tx_queue_depth as u64;
    out.msgs_in += s.msgs_in;
    out.msgs_out += s.msgs_out;
    out.bytes_in += s.bytes_in;
    out.bytes_out += s.bytes_out;
    out.datagrams_in += s.datagrams_in;
    out.datagrams_out += s.datagrams_out;
    out.lost += s.lost;
    out.seq_jumps += s.seq_jumps;
    out.malformed += s.malformed;
    out.malformed_payload += s.malformed_payload;
    out.stale += s.before;
    out.retransmitted += s.retransmitted;
    out.nacks_in += s.nacks_in;
    out.nacks_unrecoverable += s.nack_unrecoverable;
    out.nack_reexports_suppressed += s.nack_reexport_suppressed;
    out.replies_limited += s.replies_limited;
    out.reply_bytes += s.reply_bytes;
    out.peer_restarts += s.peer_restarts;
    out.out_of_sync_resyncs += s.out_of_sync_resyncs;
    out.queue_overflows += overflows(s);
}

/// `up` when every peer is (`out_of_sync` when some of them is that),
/// `unknown` when none was ever heard, else `down`.
fn peer_state(channels: &[PeerChannel], now: Instant, alive3: std::time::Duration) -> &'static str {
    if channels.iter().all(|c| c.up(now, alive3)) {
        if channels.iter().any(|c| c.engine.out_of_sync(now)) {
            "out_of_sync"
        } else {
            "up"
        }
    } else if channels.iter().all(|c| c.last_heard.is_none()) {
        "unknown"
    } else {
        "down"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each engine counter lands in its own `sync status` field (summed
    /// over the channels) and nowhere else; the four overflows are
    /// `queue_overflows`. The literal names every field, so a new engine
    /// field fails to compile here until it is placed.
    #[test]
    fn engine_counters_map_to_their_sync_status_fields() {
        let s = EngineStats {
            msgs_in: 1,
            msgs_out: 2,
            bytes_in: 3,
            bytes_out: 4,
            datagrams_in: 5,
            datagrams_out: 6,
            retransmitted: 7,
            lost: 8,
            seq_jumps: 9,
            before: 10,
            malformed: 11,
            malformed_payload: 12,
            encode_errors: 13,
            acks_in: 14,
            nacks_in: 15,
            nacks_ignored: 16,
            acked: 17,
            skipped_requeued: 18,
            probes: 19,
            resend_queue_depth: 20,
            tx_queue_depth: 21,
            ctl_queue_depth: 22,
            event_queue_depth: 23,
            tx_overflow: 100,
            resend_overflow: 200,
            ctl_overflow: 300,
            event_overflow: 400,
            nack_unrecoverable: 24,
            nack_reexport_suppressed: 25,
            replies_limited: 26,
            reply_bytes: 27,
            peer_restarts: 28,
            out_of_sync_resyncs: 29,
        };
        let mut out = SyncStatusInfo::default();
        add_engine_stats(&mut out, &s);
        add_engine_stats(&mut out, &s);
        let want: std::collections::BTreeMap<&str, u64> = [
            ("msgs_in", 1),
            ("msgs_out", 2),
            ("bytes_in", 3),
            ("bytes_out", 4),
            ("datagrams_in", 5),
            ("datagrams_out", 6),
            ("retransmitted", 7),
            ("lost", 8),
            ("seq_jumps", 9),
            ("stale", 10),
            ("malformed", 11),
            ("malformed_payload", 12),
            ("nacks_in", 15),
            ("encode_errors", 13),
            ("acks_in", 14),
            ("nacks_ignored", 16),
            ("acked", 17),
            ("skipped_requeued", 18),
            ("probes", 19),
            ("ctl_queue", 22),
            ("event_queue", 23),
            ("resend_queue", 20),
            ("tx_queue", 21),
            ("queue_overflows", 1000),
            ("nacks_unrecoverable", 24),
            ("nack_reexports_suppressed", 25),
            ("replies_limited", 26),
            ("reply_bytes", 27),
            ("peer_restarts", 28),
            ("out_of_sync_resyncs", 29),
        ]
        .into_iter()
        .map(|(k, v)| (k, 2 * v))
        .collect();
        let v = serde_json::to_value(&out).unwrap();
        let got: std::collections::BTreeMap<&str, u64> = v
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, x)| Some((k.as_str(), x.as_u64().filter(|n| *n != 0)?)))
            .collect();
        assert_eq!(got, want);
    }
}
