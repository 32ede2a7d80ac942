//! Counters the engine keeps (what `ftfwctl sync status` shows).

/// A snapshot of the engine's counters and queue depths.
///
/// Every field is driven by a case of `tests/counter_audit.rs`, which
/// fails when a field has none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    /// Messages received (decoded, any outcome).
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// Bytes of datagrams received.
    pub bytes_in: u64,
    /// Bytes of datagrams sent.
    pub bytes_out: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Messages sent again because the peer NACKed them (or because of the
    /// HELLO_BACK re-send, see [`super::Engine`]).
    pub retransmitted: u64,
    /// Peer sequence numbers found missing (the true size of each gap, not
    /// conntrackd's `+2`).
    pub lost: u64,
    /// Gaps larger than the resend queue could ever fill (a forged or
    /// corrupted number far ahead, or a peer that lost its state): one
    /// each, not added to `lost`.
    pub seq_jumps: u64,
    /// Messages dropped because their sequence number was old (or a stale
    /// duplicate HELLO).
    pub before: u64,
    /// Messages rejected for their header or framing, or ACK/NACK ranges
    /// with `to` before `from`.
    pub malformed: u64,
    /// Messages whose header was fine but whose payload was not (tracked and
    /// acknowledged, but not applied).
    pub malformed_payload: u64,
    /// Messages the codec refused to encode or that cannot fit a datagram
    /// (dropped).
    pub encode_errors: u64,
    /// ACKs received.
    pub acks_in: u64,
    /// NACKs received.
    pub nacks_in: u64,
    /// NACKs received and ignored (best effort retransmits nothing).
    pub nacks_ignored: u64,
    /// Entries freed from the resend queue by ACKs.
    pub acked: u64,
    /// Stored entries the peer skipped when it acknowledged later ones
    /// (message and NACK lost), sent again.
    pub skipped_requeued: u64,
    /// Tail-loss probes (ALIVE) sent.
    pub probes: u64,
    /// Current resend queue depth.
    pub resend_queue_depth: usize,
    /// Current data transmit queue depth (flows pending).
    pub tx_queue_depth: usize,
    /// Current control transmit queue depth.
    pub ctl_queue_depth: usize,
    /// Current event queue depth.
    pub event_queue_depth: usize,
    /// Deltas dropped because the transmit queue was full.
    pub tx_overflow: u64,
    /// Oldest resend entries dropped because the resend queue was full.
    pub resend_overflow: u64,
    /// Control messages dropped because the control queue was full.
    pub ctl_overflow: u64,
    /// Events dropped because the event queue was full.
    pub event_overflow: u64,
    /// NACKs that asked for entries this engine had already dropped
    /// (overflow or peer restart); answered by a re-export request only
    /// with `nack_reexport`.
    pub nack_unrecoverable: u64,
    /// Unrecoverable NACKs within `nack_reexport_holdoff` of the last one
    /// that re-exported: not answered.
    pub nack_reexport_suppressed: u64,
    /// NACKs (or ACKs skipping entries) whose answer the reply budget cut
    /// short: the rest follows as the budget refills (see `budget.rs`).
    pub replies_limited: u64,
    /// Bytes of messages sent again (NACK answers, skipped entries, the
    /// HELLO_BACK re-send).
    pub reply_bytes: u64,
    /// HELLOs seen that started a new peer incarnation.
    pub peer_restarts: u64,
    /// Times every message from the peer was stale for
    /// [`super::OUT_OF_SYNC_INTERVALS`] alive intervals (our view of its
    /// sequence was wrong) and we re-based on it and asked for a RESYNC.
    pub out_of_sync_resyncs: u64,
}
