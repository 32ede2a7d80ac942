//! The replication status `ftfwctl sync status` shows (and the sync peers
//! of `cluster status`).

use serde::{Deserialize, Serialize};

/// Replication status (`ftfwctl sync status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatusInfo {
    /// `external-cache` or `direct`.
    pub mode: String,
    /// `[sync] transport`: `ftfw`, `udp-best-effort` or `tcp`.
    pub transport: String,
    /// What carries it: `udp`, `multicast` or `tcp`.
    #[serde(default)]
    pub link: String,
    /// Whether lost messages are recovered (FT-FW ACK/NACK) or only
    /// counted (best effort).
    #[serde(default)]
    pub reliable: bool,
    /// UDP offload of the link (`[sync] udp_offload`): `on` (segmented
    /// sends, coalesced reads), `off` (configured off), `refused` (the
    /// kernel refused a segmented send: datagrams go one by one), or empty
    /// for the `tcp` transport.
    #[serde(default)]
    pub udp_offload: String,
    /// The TCP connections (transport `tcp` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpLinkInfo>,
    /// Our address and port on the sync link.
    pub local: String,
    /// Where our datagrams go.
    pub destination: String,
    /// The peer: `up` (heard within three ALIVE intervals), `out_of_sync`
    /// (heard, but its messages of late all rejected as stale; see
    /// `out_of_sync`), `down` (silent longer), or `unknown` (never heard).
    pub peer_state: String,
    /// Milliseconds since the peer's last datagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_last_heard_ms: Option<u64>,
    /// Our HELLO handshake: `init`, `say` (waiting for HELLO_BACK), `done`.
    pub hello: String,
    /// Sequence number of our next message.
    pub seq_out: u32,
    /// Last peer sequence number accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_in: Option<u32>,
    /// Messages waiting for the peer's ACK.
    pub resend_queue: u64,
    /// Flows waiting to be sent.
    pub tx_queue: u64,
    /// Messages in and out.
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Datagrams in.
    pub datagrams_in: u64,
    /// Datagrams out.
    pub datagrams_out: u64,
    /// Peer messages found missing (sequence gaps).
    pub lost: u64,
    /// Gaps larger than the resend queue (a far jump of the peer's
    /// sequence number), one each, not in `lost`.
    #[serde(default)]
    pub seq_jumps: u64,
    /// Messages rejected for their header or framing.
    pub malformed: u64,
    /// Messages with a valid header but a bad payload.
    pub malformed_payload: u64,
    /// Messages dropped as old (sequence before the expected one).
    pub stale: u64,
    /// Messages we sent again after a NACK.
    pub retransmitted: u64,
    /// NACKs received.
    pub nacks_in: u64,
    /// ACKs received.
    #[serde(default)]
    pub acks_in: u64,
    /// Resend-queue entries freed by the peer's ACKs.
    #[serde(default)]
    pub acked: u64,
    /// NACKs received and ignored (best-effort transports resend nothing).
    #[serde(default)]
    pub nacks_ignored: u64,
    /// Stored messages the peer skipped when it acknowledged later ones
    /// (a message and its NACK were lost), sent again.
    #[serde(default)]
    pub skipped_requeued: u64,
    /// Tail-loss probes (ALIVE sent early to make the peer acknowledge).
    #[serde(default)]
    pub probes: u64,
    /// Messages that could not be encoded or did not fit a datagram,
    /// dropped.
    #[serde(default)]
    pub encode_errors: u64,
    /// Control messages (ACK, NACK, RESYNC, ALIVE) waiting to be sent.
    #[serde(default)]
    pub ctl_queue: u64,
    /// Protocol events (peer restart, out of sync, resync asked) waiting
    /// for the sync thread.
    #[serde(default)]
    pub event_queue: u64,
    /// NACKs of entries already dropped from the resend queue (not
    /// answered in plain mode, as conntrackd; with a key answered by
    /// re-exporting the table, at most once per hold-off).
    #[serde(default)]
    pub nacks_unrecoverable: u64,
    /// Of those, NACKs within the hold-off of the last re-export: not
    /// answered (a peer cannot make us resend the table again and again).
    #[serde(default)]
    pub nack_reexports_suppressed: u64,
    /// NACKs whose answer the reply budget (10x the bytes received from
    /// the peer, plus what it acknowledged, plus 64 KiB/s, at most 64 KiB)
    /// cut short; the rest follows as the budget refills.
    #[serde(default)]
    pub replies_limited: u64,
    /// Bytes of messages sent again (NACK answers).
    #[serde(default)]
    pub reply_bytes: u64,
    /// Times the peer restarted (a new HELLO).
    pub peer_restarts: u64,
    /// Every message from the peer has been rejected as stale for at least
    /// one ALIVE interval while it keeps sending: our view of its sequence
    /// numbers is wrong (then `peer_state` is `out_of_sync`). After three
    /// intervals we re-base on it and ask it for a RESYNC on our own.
    #[serde(default)]
    pub out_of_sync: bool,
    /// Those recoveries (re-base and RESYNC request) so far.
    #[serde(default)]
    pub out_of_sync_resyncs: u64,
    /// Datagrams from addresses other than the peer's, dropped.
    pub foreign_datagrams: u64,
    /// Authenticated replication (`[sync] psk` / `psk_file`) is on.
    #[serde(default)]
    pub authenticated: bool,
    /// The key id our datagrams are sealed with (0: plain mode).
    #[serde(default)]
    pub key_id: u32,
    /// Datagrams from a peer's address that did not authenticate (too
    /// short, plain, a wrong key or a changed bit), dropped.
    #[serde(default)]
    pub auth_failed: u64,
    /// Authentic datagrams taken before (or older than the replay window),
    /// dropped.
    #[serde(default)]
    pub replayed: u64,
    /// Datagrams sealed with a key id we do not have, dropped.
    #[serde(default)]
    pub unknown_key_id: u64,
    /// Key file changes taken.
    #[serde(default)]
    pub key_reloads: u64,
    /// Key file changes refused (the keys in use stay).
    #[serde(default)]
    pub key_reload_errors: u64,
    /// Send errors on the socket.
    pub send_errors: u64,
    /// State deltas taken from the workers.
    pub deltas_in: u64,
    /// Deltas lost because a worker's ring was full (repaired by re-export).
    pub ring_overflows: u64,
    /// Queue overflows in the protocol engine (transmit, resend, control,
    /// event).
    pub queue_overflows: u64,
    /// Full-table exports run (RESYNC answers and re-exports).
    pub exports: u64,
    /// Flows sent by those exports.
    pub exported_flows: u64,
    /// RESYNCs the peer asked of us.
    pub resyncs_in: u64,
    /// Of those, requests within the hold-off (5 s) of the last answer's
    /// start: answered once, at its end.
    #[serde(default)]
    pub resyncs_deferred: u64,
    /// Full exports sent because a HELLO showed the peer restarted (at
    /// most one per 10 s per peer).
    #[serde(default)]
    pub restart_exports: u64,
    /// Whether the answer to our last RESYNC request (at start, or
    /// `ftfwctl resync`) is known to be complete: the peer went idle
    /// (ALIVE) after sending it. True when we never asked.
    #[serde(default)]
    pub resync_complete: bool,
    /// Flows in the external cache.
    pub external_flows: u64,
    /// External cache capacity.
    pub external_capacity: u64,
    /// New peer flows refused because the external cache was full.
    pub external_full: u64,
    /// Peer flows injected into the shards (direct mode).
    pub injected: u64,
    /// `[sync] expectations`: confirmed expectations are replicated.
    #[serde(default)]
    pub expectations: bool,
    /// Expectation messages queued for the peer (EXP_NEW and EXP_DEL,
    /// export copies included).
    #[serde(default)]
    pub expectations_sent: u64,
    /// Expectation messages taken from the peer.
    #[serde(default)]
    pub expectations_received: u64,
    /// Expectation messages from the peer skipped because
    /// `[sync] expectations` is off (acknowledged, not applied).
    #[serde(default)]
    pub expectations_ignored: u64,
    /// The peer's expectations in the external expectation cache.
    #[serde(default)]
    pub expectations_external: u64,
    /// Peer expectations refused: the external expectation cache or the
    /// expectation table was full.
    #[serde(default)]
    pub expectations_refused: u64,
    /// Peer expectations put into the expectation table (by commit, or
    /// at once in direct mode).
    #[serde(default)]
    pub expectations_committed: u64,
    /// Deferred first packets: `off` (not configured), `on` (configured,
    /// not active now: no peer, or the handshake is not done) or `active`.
    #[serde(default)]
    pub defer: String,
    /// First packets held so far (summed over workers).
    #[serde(default)]
    pub defer_held: u64,
    /// Held packets released by the peer's ACK.
    #[serde(default)]
    pub defer_released: u64,
    /// Held packets released by the timeout (or because defer went inactive).
    #[serde(default)]
    pub defer_timeouts: u64,
    /// Packets not held because a worker's defer queue was full.
    #[serde(default)]
    pub defer_overflow: u64,
    /// Bayes lazy replication (`[sync.lazy]`): predictions, messages
    /// saved, flows sent late, the knowledge base. `None`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy: Option<ftfw_sync::lazy::LazyStats>,
    /// `[sync] level`, the default replication level of new flows.
    #[serde(default)]
    pub level: String,
    /// State changes the workers did not replicate because of their
    /// flow's sync level (`established` before it is assured, `none`).
    #[serde(default)]
    pub level_skipped: u64,
    /// State changes the workers merged into a change of the same flow
    /// still waiting in the same loop iteration (only the newest state is
    /// replicated): deltas saved.
    #[serde(default)]
    pub deltas_merged: u64,
}

/// One sync peer's channel (`SyncHandle::peers_status`): in a cluster one
/// per other member, in a classic pair the one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSyncInfo {
    /// Its cluster node id (`None` for a classic pair's peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// Its address on the sync link.
    pub address: String,
    /// `up` (heard within three ALIVE intervals), `out_of_sync` (heard,
    /// but its messages of late all rejected as stale), `down` or
    /// `unknown` (never heard).
    pub state: String,
    /// Milliseconds since its last datagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heard_ms: Option<u64>,
    /// Our HELLO handshake with it: `init`, `say` or `done`.
    pub hello: String,
    /// Sequence number of our next message to it.
    pub seq_out: u32,
    /// Its last sequence number we accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_in: Option<u32>,
    /// Flows waiting to be sent to it.
    pub tx_queue: u64,
    /// Messages to it waiting for its ACK.
    pub resend_queue: u64,
    /// Messages received from it.
    pub msgs_in: u64,
    /// Messages sent to it.
    pub msgs_out: u64,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
    /// Its messages found missing (sequence gaps).
    pub lost: u64,
    /// Messages sent to it again (NACK, skipped range).
    pub retransmitted: u64,
    /// Queue overflows of its engine (each repaired by a re-export to it
    /// or a RESYNC).
    pub queue_overflows: u64,
    /// Flows in its external cache (what it replicated to us).
    pub external_flows: u64,
    /// Exports to it run (RESYNC answers, re-exports, bucket flushes).
    pub exports: u64,
    /// RESYNCs it asked of us.
    pub resyncs_in: u64,
    /// Whether its answer to our last RESYNC request is known complete.
    pub resync_complete: bool,
    /// Its messages of late all rejected as stale (see
    /// [`SyncStatusInfo::out_of_sync`]).
    #[serde(default)]
    pub out_of_sync: bool,
    /// Re-bases on it and RESYNC requests after being out of sync.
    #[serde(default)]
    pub out_of_sync_resyncs: u64,
}

/// The TCP sync link's connections and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpLinkInfo {
    /// Our connection to the peer (our messages) is established.
    pub out_up: bool,
    /// The peer's connection to us (its messages) is established.
    pub in_up: bool,
    /// The peer's end of that connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_from: Option<String>,
    /// Outgoing connections established.
    pub connects: u64,
    /// Outgoing connect attempts that failed or timed out (retried every
    /// ALIVE interval).
    pub connect_failures: u64,
    /// Established outgoing connections that ended.
    pub disconnects: u64,
    /// Incoming connections accepted from the peer.
    pub accepted: u64,
    /// Incoming connections that ended.
    pub in_closed: u64,
    /// Incoming connections refused (not from the peer's address).
    pub refused: u64,
    /// Bytes waiting in the send buffer.
    pub buffered_bytes: u64,
    /// Send buffer size.
    pub buffer_capacity: u64,
    /// Datagrams dropped because the send buffer was full.
    pub send_drops: u64,
    /// Bytes of half-sent datagrams dropped with a lost connection.
    pub cut_bytes: u64,
    /// Incoming connections closed for a bad message length.
    pub framing_errors: u64,
    /// Full exports run to repair drops and lost connections.
    pub repairs: u64,
}
