//! Help text of the `sync status` and sync peer fields (their console
//! documentation; `console/proto.rs`).

/// `(field, help)`; fields of `SyncStatusInfo`, `TcpLinkInfo` and
/// `PeerSyncInfo` that are exported.
pub(super) const SYNC_HELP: &[(&str, &str)] = &[
    ("mode", "`external-cache` or `direct`."),
    ("transport", "`[sync] transport`: `ftfw`, `udp-best-effort` or `tcp`."),
    ("link", "What carries it: `udp`, `multicast` or `tcp`."),
    ("udp_offload", "UDP offload of the link (`[sync] udp_offload`): `on` (segmented sends, coalesced reads), `off` (configured off), `refused` (the kernel refused a segmented send: datagrams go one by one), or empty for the `tcp` transport."),
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
    ("acks_in", "ACKs received."),
    ("acked", "Resend-queue entries freed by the peer's ACKs."),
    ("nacks_ignored", "NACKs received and ignored (best-effort transports resend nothing)."),
    ("skipped_requeued", "Stored messages the peer skipped when it acknowledged later ones (a message and its NACK were lost), sent again."),
    ("probes", "Tail-loss probes (ALIVE sent early to make the peer acknowledge)."),
    ("encode_errors", "Messages that could not be encoded or did not fit a datagram, dropped."),
    ("ctl_queue", "Control messages (ACK, NACK, RESYNC, ALIVE) waiting to be sent."),
    ("event_queue", "Protocol events (peer restart, out of sync, resync asked) waiting for the sync thread."),
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
    ("expectations", "`[sync] expectations`: confirmed expectations (FTP and TFTP data connections helpers announced) are replicated, as conntrackd's ExpectationSync."),
    ("expectations_sent", "Expectation messages queued for the peer (EXP_NEW when a helper created one, EXP_DEL when it was used or timed out; export copies included)."),
    ("expectations_received", "Expectation messages taken from the peer."),
    ("expectations_ignored", "Expectation messages from the peer skipped because `[sync] expectations` is off (acknowledged, not applied)."),
    ("expectations_external", "The peer's expectations in the external expectation cache (`ftfwctl expect external`)."),
    ("expectations_refused", "Peer expectations refused because the external expectation cache or the expectation table was full."),
    ("expectations_committed", "Peer expectations put into the expectation table (by commit or a takeover, or at once in direct mode)."),
    ("defer", "Deferred first packets: `off` (not configured), `on` (configured, not active now: no peer, or the handshake is not done) or `active`."),
    ("defer_held", "First packets held so far (summed over workers)."),
    ("defer_released", "Held packets released by the peer's ACK."),
    ("defer_timeouts", "Held packets released by the timeout (or because defer went inactive)."),
    ("defer_overflow", "Packets not held because a worker's defer queue was full."),
    ("level", "`[sync] level`, the default replication level of new flows."),
    ("deltas_merged", "State changes the workers merged into a waiting change of the same flow in the same loop iteration: only the newest state is replicated, one message instead of several."),
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

/// Which table describes a flattened answer's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Root {
    /// `sync status` and sync peers: by the field's own name.
    Sync,
    /// `status`'s `election` object: by the field's path.
    Election,
    /// `cluster status`'s coordinator view: by the field's path.
    Cluster,
}

/// `(path, help)` of the election status (`ftfwctl status`, `election`):
/// paths of nested fields are joined with `.`, array elements take the
/// array's name (`peers.role`).
pub(super) const ELECTION_HELP: &[(&str, &str)] = &[
    ("node", "This node's id."),
    ("state", "The election's full state, e.g. `service/full-check-a/uplink`."),
    ("main_state", "Main state: `init`, `decide`, `backup`, `handover`, `service` or `final`."),
    ("sub_state", "Sub-state within the main state (empty for decide and final)."),
    ("role", "Coarse role: `unknown`, `init`, `backup`, `handover` or `primary`."),
    ("priority", "This node's configured priority."),
    ("freshness.synced", "This node holds a complete copy of the state (a full resync from the master finished)."),
    ("freshness.seq", "The last sync sequence this node applied (higher is fresher)."),
    ("master", "The node our status table names master."),
    ("designated", "The successor the master designated (preemption)."),
    ("peers.priority", "The peer's configured priority."),
    ("peers.role", "The peer's role as last reported."),
    ("peers.synced", "The peer holds a complete copy of the state."),
    ("peers.seq", "The peer's last applied sync sequence."),
    ("peers.master", "The peer is the master."),
    ("peers.designated", "The master designated the peer to take over (preemption)."),
    ("peers.dead", "The master marked the peer dead."),
    ("peers.last_seen_ms_ago", "Seconds since the peer's last authenticated message."),
    ("last_role_change_ms_ago", "Seconds since this node's role last changed."),
    ("init_cycles", "Init cycles run (a node stuck in init keeps counting)."),
    ("counters.msgs_in", "Authenticated election messages handled."),
    ("counters.msgs_out", "Election messages queued for sending."),
    ("counters.ignored", "Inputs dropped by the state table or its guards (stale replies, denies for old attempts, messages a state does not take)."),
    ("counters.queued", "Inputs queued for a later state."),
    ("counters.queue_dropped", "Queued inputs dropped because the queue was full."),
    ("counters.stale_results", "Procedure results for a procedure the state machine had moved on from."),
    ("counters.procedure_timeouts", "Procedures that overran their maximum time (counted failed)."),
    ("counters.invalid_transitions", "Inputs the state table calls invalid (must stay 0)."),
    ("counters.takeovers", "Times this node entered service (became the primary)."),
    ("counters.resignations", "Times this node left service."),
    ("counters.role_changes", "Role changes of this node."),
    ("counters.checks_answered", "Service checks answered as master."),
    ("counters.denies_sent", "Takeovers vetoed as master."),
    ("counters.peers_marked_dead", "Peers marked dead as master."),
    ("counters.output_dropped", "Datagrams or events dropped because the driver did not poll."),
    ("codec.accepted", "Election datagrams accepted."),
    ("codec.encoded", "Election datagrams encoded."),
    ("codec.malformed_header", "Election datagrams rejected: too short, wrong magic or version."),
    ("codec.unauthenticated", "Election datagrams rejected: authentication tag mismatch."),
    ("codec.malformed", "Election datagrams rejected: authentic, but the body did not parse."),
    ("codec.replayed", "Election datagrams rejected: counter not increasing (replay, reordering) or our own id."),
    ("driver.datagrams_in", "Election datagrams received from configured peers."),
    ("driver.datagrams_out", "Election datagrams sent."),
    ("driver.rejected", "Election datagrams the machine rejected (bad tag, replay, malformed)."),
    ("driver.foreign", "Election datagrams from addresses that are no configured peer (dropped)."),
    ("driver.send_errors", "Election socket send errors."),
    ("driver.procedures", "Procedures (checks and actions) run."),
    ("driver.procedures_failed", "Procedures that failed."),
    ("driver.key_reloads", "Election key file changes taken (the key ring reloaded; not the reading at start)."),
    ("driver.key_reload_errors", "Election key file changes refused (the keys in use stay)."),
    ("keys.ids", "The ids of the election key ring in use (`key_file` written as `ID HEX` lines)."),
    ("keys.sending", "The key id election messages are sealed with: the newest of the ring."),
    ("health.last.corrected", "Hardware health: corrected memory errors (EDAC ce_count, summed over controllers) at the last reading."),
    ("health.last.uncorrected", "Hardware health: uncorrected memory errors (EDAC ue_count) at the last reading."),
    ("health.last.pcie_fatal", "Hardware health: fatal PCIe AER errors at the last reading."),
    ("health.last.max_temp_mc", "Hardware health: the hottest thermal zone at the last reading, in millidegrees Celsius."),
];

/// `(path, help)` of the cluster coordinator's view (`ftfwctl cluster
/// status`), as [`ELECTION_HELP`].
pub(super) const CLUSTER_HELP: &[(&str, &str)] = &[
    ("node", "This node's id."),
    ("incarnation", "This node's incarnation (its start time)."),
    ("state", "This node: `joining`, `ready` or `draining`."),
    ("master", "The cluster's master: the lowest live node id."),
    ("acting_master", "This node acts as master now (past the start-up grace, holding the newest map anyone reports)."),
    ("map_version", "The bucket map this node holds (0: none)."),
    ("applied_version", "The newest bucket map this node fully applied."),
    ("buckets", "Buckets in the map."),
    ("forwarding", "Buckets this node forwards now."),
    ("ready", "This node finished its start-up resync (or no peer answered within the grace time) and may own buckets."),
    ("nodes.alive", "The node is this one, or was heard within the dead-after time."),
    ("nodes.master", "The node is the master."),
    ("nodes.state", "The node's state as its last heartbeat said."),
    ("nodes.last_heard_ms", "Milliseconds since the node's last authenticated message."),
    ("nodes.dead_after_ms", "Milliseconds of silence after which this node declares the node dead: dead_after_ms, raised after false deaths up to dead_after_max_ms, halving back every dead_after_relax_ms while its silences fit."),
    ("nodes.false_deaths", "Times the node was heard again, with the same incarnation, after a silence longer than its dead-after time (declared dead while alive)."),
    ("nodes.incarnation", "The node's incarnation (start time) as last heard."),
    ("nodes.owned", "Buckets the map gives the node."),
    ("nodes.backup", "Buckets the node backs up in the map."),
    ("nodes.flows", "Flows in the node's table (its load), as last heard."),
    ("nodes.map_version", "The newest map the node holds, as last heard."),
    ("nodes.applied_version", "The newest map the node fully applied, as last heard."),
    ("nodes.drained", "An operator drained the node."),
    ("pending.stage", "A bucket move under way: `waiting_release`, `committing`, `flushing` or `releasing`."),
    ("pending.peer", "The other node of a bucket move under way."),
    ("pending.buckets", "Buckets in a move under way."),
    ("counters.codec.accepted", "Cluster datagrams accepted."),
    ("counters.codec.encoded", "Cluster datagrams encoded."),
    ("counters.codec.malformed_header", "Cluster datagrams rejected: too short or long, wrong magic or version."),
    ("counters.codec.unauthenticated", "Cluster datagrams rejected: authentication tag mismatch."),
    ("counters.codec.unknown_node", "Cluster datagrams rejected: authentic, from a node not in the configuration."),
    ("counters.codec.malformed", "Cluster datagrams rejected: authentic, but the body did not parse."),
    ("counters.codec.replayed", "Cluster datagrams rejected: counter not increasing (replay, reordering) or our own id."),
    ("counters.messages_out", "Cluster datagrams handed to the driver."),
    ("counters.transmit_overflow", "Cluster datagrams dropped because the transmit queue was full."),
    ("counters.stale_maps", "Bucket maps older than the one held (ignored)."),
    ("counters.foreign_maps", "Bucket maps whose bucket count or node table does not match the configuration (ignored)."),
    ("counters.unexpected_releases", "Bucket releases for a map not held yet, or for buckets not waited for (ignored)."),
    ("counters.requests", "Operator requests received as master (drain, undrain, rebalance)."),
    ("counters.bad_requests", "Operator requests for a node not in the configuration (ignored)."),
    ("counters.maps_applied", "Bucket maps adopted (newer than the one held)."),
    ("counters.maps_skipped", "Bucket maps adopted that skipped versions this node never held (its buckets' flows were also imported from every member lost since)."),
    ("counters.maps_made", "Bucket maps this node made as master."),
    ("counters.buckets_gained", "Buckets this node started forwarding."),
    ("counters.buckets_lost", "Buckets this node stopped forwarding."),
    ("counters.takeovers", "Buckets gained from a dead or restarted owner."),
    ("counters.planned_moves", "Buckets gained from a live owner after its release (planned moves)."),
    ("counters.flush_failures", "Bucket flushes the driver reported failed (retried)."),
    ("counters.merges", "Buckets merged again from a node after this node forwarded them: a late release, or a false death."),
    ("counters.own_stalls", "Times this node's own timers ran more than two heartbeats late; its peers' silence over the stall was not held against them."),
    ("counters.false_deaths", "Peers heard again, with the same incarnation, after a silence longer than their dead-after time (declared dead while alive); each raised that peer's dead-after time."),
    ("counters.release_timeouts", "Buckets of planned moves committed without the old owner's release: it held this node's map (so stopped forwarding them) for twice dead_after_max and released nothing."),
    ("driver.datagrams_in", "Cluster datagrams received from members."),
    ("driver.datagrams_out", "Cluster datagrams sent."),
    ("driver.foreign", "Cluster datagrams from addresses that are no member (dropped)."),
    ("driver.send_errors", "Cluster socket send errors."),
    ("driver.commits", "Commits of gained buckets' flows into the dataplane."),
    ("driver.committed_flows", "Flows committed by those commits."),
    ("driver.flushes", "Flushes of moved buckets' flows to their new owner."),
    ("driver.flush_timeouts", "Flushes that timed out."),
    ("driver.evicted_flows", "Flows evicted after a bucket move settled."),
    ("driver.pruned_flows", "Stale cached flows pruned."),
    ("driver.sync_errors", "Requests to the sync thread that failed."),
    ("driver.key_reloads", "Cluster key file changes taken (the key ring reloaded; not the reading at start)."),
    ("driver.key_reload_errors", "Cluster key file changes refused (the keys in use stay)."),
    ("keys.ids", "The ids of the cluster key ring in use (`key_file` written as `ID HEX` lines)."),
    ("keys.sending", "The key id cluster messages are sealed with: the newest of the ring."),
    ("driver.announced", "Routed cluster: gratuitous ARPs and unsolicited neighbor advertisements sent for the virtual addresses at the shared MAC."),
    ("uplinks.state", "`[cluster] uplinks_down_when_idle`: the uplinks as this node knows them: `unknown` (nothing run yet), `down`, `going_up` (activation or check running), `up`, `going_down`, `failed` (the last script failed; see `last_failure`)."),
    ("uplinks.wanted_up", "This node wants its uplinks up: it forwards buckets, waits to forward some, or the map gives it some. Otherwise it wants them down."),
    ("uplinks.running", "The uplink script running now: `activate_uplink`, `uplink_check` or `deactivate_uplink`."),
    ("uplinks.last_failure", "The uplink script whose last run failed (retried every second while still wanted); null once one succeeds."),
    ("uplinks.waiting_buckets", "Buckets whose forwarding waits for the uplinks to come up (bounded by the scripts' time limit; a failed activation lets them through)."),
    ("uplinks.counters.activations", "`activate_uplink` script runs."),
    ("uplinks.counters.activate_failures", "`activate_uplink` runs that failed (non-zero exit, killed at the time limit, or not started)."),
    ("uplinks.counters.checks", "`uplink_check` script runs (after each activation, when configured)."),
    ("uplinks.counters.check_failures", "`uplink_check` runs that failed."),
    ("uplinks.counters.deactivations", "`deactivate_uplink` script runs."),
    ("uplinks.counters.deactivate_failures", "`deactivate_uplink` runs that failed (the uplinks may still be up on a member owning no buckets)."),
    ("uplinks.counters.held_forwards", "Times forwarding gained buckets waited for the uplinks to come up."),
    ("uplinks.counters.forwarded_despite_failure", "Times this node started forwarding although its uplinks' activation or check failed (not forwarding would break the buckets' flows for certain)."),
    ("uplinks.counters.script_timeouts", "Uplink scripts killed at `uplink_timeout_ms`."),
    ("uplinks.counters.scripts_not_started", "Uplink scripts that could not be started (missing, not executable)."),
];

/// The help of the field at `path` (dot-separated) of a `root` answer.
pub(super) fn field_help(root: Root, path: &str) -> Option<&'static str> {
    let table = match root {
        Root::Sync => return sync_help(path.rsplit('.').next().unwrap_or(path)),
        Root::Election => ELECTION_HELP,
        Root::Cluster => CLUSTER_HELP,
    };
    table.iter().find(|(p, _)| *p == path).map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::{field_help, sync_help, Root};
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

    /// The paths of the fields `flatten` exports (numbers, booleans,
    /// states; `null` as the number or object it is at other times),
    /// array elements under the array's name, their `node` being a label.
    fn exported_paths(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        let serde_json::Value::Object(m) = v else {
            return;
        };
        for (k, x) in m {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match x {
                serde_json::Value::Object(_) => exported_paths(x, &p, out),
                serde_json::Value::Array(items) => {
                    for item in items {
                        let mut item = item.clone();
                        if let serde_json::Value::Object(im) = &mut item {
                            im.remove("node");
                        }
                        exported_paths(&item, &p, out);
                    }
                }
                serde_json::Value::String(_) if !super::super::families::is_state(k) => {}
                _ => out.push(p),
            }
        }
    }

    /// Every exported field of the election's and the cluster
    /// coordinator's status has its own help (not the generic "ftfwctl
    /// status: election: FIELD."): a new field without one fails here.
    #[test]
    fn every_election_and_cluster_field_has_help() {
        use crate::cluster::coordinator::{Coordinator, CoordinatorConfig};
        use crate::cluster::status::PendingMove;
        use crate::election::{Election, ElectionConfig, NodeId, Peer};
        use std::time::{Duration, Instant};

        let now = Instant::now();
        let cfg = ElectionConfig::new(
            NodeId(1),
            200,
            vec![Peer {
                node: NodeId(2),
                priority: 100,
            }],
            b"metrics-help-test-key".to_vec(),
        );
        let mut election =
            serde_json::to_value(Election::new(cfg, now).unwrap().status(now)).unwrap();
        // What the driver adds: the hardware health monitor's reading.
        let sample = crate::health::Sample {
            corrected: Some(1),
            uncorrected: Some(0),
            pcie_fatal: Some(0),
            max_temp_mc: Some(40_000),
            unreadable: Vec::new(),
        };
        election["health"] = serde_json::json!({ "root": "/sys", "last": sample, "trigger": null });
        election["driver"] =
            serde_json::to_value(crate::election_driver::DriverStats::default()).unwrap();
        // A key ring file, with none taken yet (`null`s) and with one.
        let watch = crate::keyring::KeyFileWatch::new("/etc/ftfw/keys".into(), now);
        let ring = crate::keyring::Keyring::single(3, vec![7; 16]).unwrap();
        let with_ring =
            crate::keyring::KeyFileWatch::new("/etc/ftfw/keys".into(), now).with_ring(ring);
        election["keys"] = crate::keyring::status_json(&watch);
        let mut election_ring = election.clone();
        election_ring["keys"] = crate::keyring::status_json(&with_ring);
        let coord = Coordinator::new(
            CoordinatorConfig {
                node: 1,
                nodes: vec![1, 2],
                buckets: 16,
                backups: 1,
                heartbeat: Duration::from_millis(100),
                dead_after: Duration::from_millis(350),
                dead_after_max: Duration::from_millis(2000),
                dead_after_relax: Duration::from_secs(30),
                auto_rebalance_on_join: true,
                key: b"0123456789abcdef-cluster-key".to_vec(),
                primary_backup: false,
                incarnation: 1,
            },
            now,
        )
        .unwrap();
        let mut cluster = serde_json::to_value(coord.status(now)).unwrap();
        // What the driver adds, and a move under way.
        cluster["ready"] = true.into();
        cluster["driver"] =
            serde_json::to_value(crate::cluster_driver::ClusterDriverStats::default()).unwrap();
        cluster["pending"] = serde_json::json!([PendingMove {
            stage: "flushing",
            peer: Some(2),
            buckets: 3,
            ranges: "0-2".into(),
        }]);
        cluster["keys"] = crate::keyring::status_json(&with_ring);
        // `uplinks_down_when_idle`: the gate's view, a script running.
        let text = include_str!("../../../configs/cluster.toml")
            .replacen(
                "auto_rebalance = true\n",
                "auto_rebalance = true\nuplinks_down_when_idle = true\nuplinks = [\"outside\"]\n",
                1,
            )
            .replacen(
                "[[cluster.member]]",
                "[cluster.scripts]\nactivate_uplink = \"/bin/true\"\ndeactivate_uplink = \"/bin/true\"\n[[cluster.member]]",
                1,
            );
        let config = crate::config::parse(&text, "/etc/ftfw/cluster.toml").unwrap();
        let c = config.cluster.as_ref().unwrap();
        let mut uplinks = crate::cluster_uplinks::DriverUplinks::new(
            1,
            c.uplinks.as_ref().unwrap(),
            &config,
            now,
        );
        assert!(uplinks.take_actions(now).is_empty());
        cluster["uplinks"] = uplinks.status_json();
        assert_eq!(cluster["uplinks"]["running"], "deactivate_uplink");
        for (root, v, not_exported) in [
            (Root::Election, &election, &["health.trigger"][..]),
            (Root::Election, &election_ring, &["health.trigger"][..]),
            (Root::Cluster, &cluster, &[][..]),
        ] {
            let mut paths = Vec::new();
            exported_paths(v, "", &mut paths);
            assert!(paths.len() > 20, "{root:?}: only {paths:?}");
            for p in paths {
                if not_exported.contains(&p.as_str()) {
                    continue;
                }
                assert!(field_help(root, &p).is_some(), "{root:?}: {p} has no help");
            }
        }
    }
}
