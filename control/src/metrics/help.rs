//! Help text of the `sync status` and sync peer fields (their console
//! documentation; `console/proto.rs`).

/// `(field, help)`; fields of `SyncStatusInfo`, `TcpLinkInfo` and
/// `PeerSyncInfo` that are exported.
pub(super) const SYNC_HELP: &[(&str, &str)] = &[
    ("mode", "`external-cache` or `direct`."),
    ("transport", "`[sync] transport`: `ftfw`, `udp-best-effort` or `tcp`."),
    ("link", "What carries it: `udp`, `multicast` or `tcp`."),
    ("reliable", "Whether lost messages are recovered (FT-FW ACK/NACK) or only counted (best effort)."),
    ("peer_state", "The peer: `up` (heard within three ALIVE intervals), `out_of_sync` (heard, but its messages of late all rejected as stale; see `out_of_sync`), `down` (silent longer), or `unknown` (never heard)."),
    ("peer_last_heard_ms", "Milliseconds since the peer's last datagram."),
    ("hello", "Our HELLO handshake: `init`, `say` (waiting for HELLO_BACK), `done`."),
    ("seq_out", "Sequence number of our next message."),
    ("seq_in", "Last peer sequence number accepted."),
    ("resend_queue", "Messages waiting for the peer's ACK."),
    ("tx_queue", "Flows waiting to be sent."),
    ("msgs_in", "Messages received."),
    ("msgs_out", "Messages sent."),
    ("bytes_in", "Bytes in."),
    ("bytes_out", "Bytes out."),
    ("datagrams_in", "Datagrams in."),
    ("datagrams_out", "Datagrams out."),
    ("lost", "Peer messages found missing (sequence gaps)."),
    ("seq_jumps", "Gaps larger than the resend queue (a far jump of the peer's sequence number), one each, not in `lost`."),
    ("authenticated", "Authenticated replication (`[sync] psk` / `psk_file`) is on."),
    ("key_id", "The key id our datagrams are sealed with (0: plain mode)."),
    ("auth_failed", "Datagrams from a peer's address that did not authenticate (too short, plain, a wrong key or a changed bit), dropped."),
    ("replayed", "Authentic datagrams taken before (or older than the replay window), dropped."),
    ("unknown_key_id", "Datagrams sealed with a key id we do not have, dropped."),
    ("key_reloads", "Key file changes taken."),
    ("key_reload_errors", "Key file changes refused (the keys in use stay)."),
    ("restart_exports", "Full exports sent because a HELLO showed the peer restarted (at most one per 10 s per peer)."),
    ("malformed", "Messages rejected for their header or framing."),
    ("malformed_payload", "Messages with a valid header but a bad payload."),
    ("stale", "Messages dropped as old (sequence before the expected one)."),
    ("retransmitted", "Messages we sent again after a NACK."),
    ("nacks_in", "NACKs received."),
    ("nacks_unrecoverable", "NACKs of entries already dropped from the resend queue: not answered in plain mode (as conntrackd: anyone who can send from the peer's address could otherwise make us send the table for 16 bytes); with a key, answered by re-exporting the table, at most once per hold-off."),
    ("nack_reexports_suppressed", "Of those, NACKs within the hold-off of the last re-export: not answered (a peer cannot make us resend the table again and again)."),
    ("replies_limited", "NACKs (or ACKs skipping entries) whose answer the reply budget cut short: what a NACK makes us send again is paid from 10x the bytes received from the peer, plus the bytes it acknowledged, plus 64 KiB/s, holding at most 64 KiB. The rest follows as the budget refills."),
    ("reply_bytes", "Bytes of messages sent again (NACK answers, entries the peer skipped, the re-send after its HELLO_BACK)."),
    ("peer_restarts", "Times the peer restarted (a new HELLO)."),
    ("out_of_sync", "Every message from the peer has been rejected as stale for at least one ALIVE interval while it keeps sending: our view of its sequence numbers is wrong (then `peer_state` is `out_of_sync`). After three intervals we re-base on it and ask it for a RESYNC on our own."),
    ("out_of_sync_resyncs", "Those recoveries (re-base and RESYNC request) so far."),
    ("foreign_datagrams", "Datagrams from addresses other than the peer's, dropped."),
    ("send_errors", "Send errors on the socket."),
    ("deltas_in", "State deltas taken from the workers."),
    ("ring_overflows", "Deltas lost because a worker's ring was full (repaired by re-export)."),
    ("queue_overflows", "Queue overflows in the protocol engine (transmit, resend, control, event)."),
    ("exports", "Full-table exports run (RESYNC answers and re-exports)."),
    ("exported_flows", "Flows sent by those exports."),
    ("resyncs_in", "RESYNCs the peer asked of us."),
    ("resyncs_deferred", "Of those, requests within 5 s of the start of the last answer: answered once, at the end of those 5 s (the whole table is the one reply outside the reply budget, so it is rate-limited)."),
    ("resync_complete", "Whether the answer to our last RESYNC request (at start, or `ftfwctl resync`) is known to be complete: the peer went idle (ALIVE) after sending it. True when we never asked."),
    ("external_flows", "Flows in the external cache."),
    ("external_capacity", "External cache capacity."),
    ("external_full", "New peer flows refused because the external cache was full."),
    ("injected", "Peer flows injected into the shards (direct mode)."),
    ("defer", "Deferred first packets: `off` (not configured), `on` (configured, not active now: no peer, or the handshake is not done) or `active`."),
    ("defer_held", "First packets held so far (summed over workers)."),
    ("defer_released", "Held packets released by the peer's ACK."),
    ("defer_timeouts", "Held packets released by the timeout (or because defer went inactive)."),
    ("defer_overflow", "Packets not held because a worker's defer queue was full."),
    ("level", "`[sync] level`, the default replication level of new flows."),
    ("level_skipped", "State changes the workers did not replicate because of their flow's sync level (`established` before it is assured, `none`)."),
    ("out_up", "Our connection to the peer (our messages) is established."),
    ("in_up", "The peer's connection to us (its messages) is established."),
    ("connects", "Outgoing connections established."),
    ("connect_failures", "Outgoing connect attempts that failed or timed out (retried every ALIVE interval)."),
    ("disconnects", "Established outgoing connections that ended."),
    ("accepted", "Incoming connections accepted from the peer."),
    ("in_closed", "Incoming connections that ended."),
    ("refused", "Incoming connections refused (not from the peer's address)."),
    ("buffered_bytes", "Bytes waiting in the send buffer."),
    ("buffer_capacity", "Send buffer size."),
    ("send_drops", "Datagrams dropped because the send buffer was full."),
    ("cut_bytes", "Bytes of half-sent datagrams dropped with a lost connection."),
    ("framing_errors", "Incoming connections closed for a bad message length."),
    ("repairs", "Full exports run to repair drops and lost connections."),
    ("state", "`up` (heard within three ALIVE intervals), `out_of_sync` (heard, but its messages of late all rejected as stale), `down` or `unknown` (never heard)."),
    ("last_heard_ms", "Milliseconds since its last datagram."),
];

/// The help of a sync field, if it has one.
pub(super) fn sync_help(field: &str) -> Option<&'static str> {
    SYNC_HELP.iter().find(|(f, _)| *f == field).map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::sync_help;
    use crate::console::proto::{PeerSyncInfo, SyncStatusInfo, TcpLinkInfo};

    /// Every exported field of the sync answers has its own help: a new
    /// field without one fails here.
    #[test]
    fn every_sync_field_has_help() {
        let values = [
            serde_json::to_value(SyncStatusInfo::default()).unwrap(),
            serde_json::to_value(TcpLinkInfo::default()).unwrap(),
            serde_json::to_value(PeerSyncInfo::default()).unwrap(),
        ];
        for v in values {
            for (k, x) in v.as_object().unwrap() {
                if x.is_number() || x.is_boolean() {
                    assert!(sync_help(k).is_some(), "{k} has no help");
                }
            }
        }
    }
}
