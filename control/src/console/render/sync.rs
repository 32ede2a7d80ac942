//! Rendering of the sync status (`ftfwctl sync status`).

use std::fmt::Write as _;

use super::super::proto::SyncStatusInfo;
use super::table;

/// `ftfwctl sync status`.
pub fn sync_status(s: &SyncStatusInfo) -> String {
    let mut o = String::new();
    let heard = s.peer_last_heard_ms.map_or_else(
        || "never heard".to_string(),
        |ms| format!("last heard {ms} ms ago"),
    );
    let link = if s.link.is_empty() || s.link == s.transport {
        s.transport.clone()
    } else {
        format!("{} over {}", s.transport, s.link)
    };
    let _ = writeln!(
        o,
        "sync:      {}, transport {link} ({}), {} -> {}",
        s.mode,
        if s.reliable {
            "reliable: ACK/NACK, retransmission"
        } else {
            "best effort: losses counted, not recovered"
        },
        s.local,
        s.destination
    );
    if s.authenticated {
        let _ = writeln!(
            o,
            "security:  authenticated and encrypted (AES-256-GCM), sending with key id {}",
            s.key_id
        );
    }
    if let Some(t) = &s.tcp {
        let updown = |up: bool| if up { "up" } else { "down" };
        let from = t
            .in_from
            .as_ref()
            .map_or_else(String::new, |f| format!(" from {f}"));
        let _ = writeln!(
            o,
            "tcp out:   {}; {} connect(s), {} failed attempt(s), {} disconnect(s)",
            updown(t.out_up),
            t.connects,
            t.connect_failures,
            t.disconnects
        );
        let _ = writeln!(
            o,
            "tcp in:    {}{from}; {} accepted, {} closed, {} refused (not the peer), {} framing error(s)",
            updown(t.in_up),
            t.accepted,
            t.in_closed,
            t.refused,
            t.framing_errors
        );
        let _ = writeln!(
            o,
            "tcp send:  {} of {} byte(s) buffered, {} datagram(s) dropped (buffer full), {} byte(s) cut, {} repair export(s)",
            t.buffered_bytes, t.buffer_capacity, t.send_drops, t.cut_bytes, t.repairs
        );
    }
    let _ = writeln!(
        o,
        "peer:      {} ({heard}), {} restart(s); our HELLO {}",
        s.peer_state, s.peer_restarts, s.hello
    );
    let seq_in = s.seq_in.map_or_else(|| "-".to_string(), |v| v.to_string());
    let _ = writeln!(
        o,
        "sequence:  next out {}, last in {seq_in}; resend queue {}, tx queue {}, control queue {}, events {}",
        s.seq_out, s.resend_queue, s.tx_queue, s.ctl_queue, s.event_queue
    );
    let _ = writeln!(
        o,
        "external:  {} of {} flow(s), {} refused (full); {} injected (direct)",
        s.external_flows, s.external_capacity, s.external_full, s.injected
    );
    if s.expectations || s.expectations_ignored > 0 {
        let _ = writeln!(
            o,
            "expect:    {}; {} sent, {} received, {} ignored (option off), {} external, {} refused, {} committed",
            if s.expectations { "replicated" } else { "off" },
            s.expectations_sent,
            s.expectations_received,
            s.expectations_ignored,
            s.expectations_external,
            s.expectations_refused,
            s.expectations_committed
        );
    }
    let _ = writeln!(
        o,
        "deltas:    {} from the workers, {} lost to full rings; {} export(s), {} flow(s) exported, {} resync request(s) in ({} deferred), {} export(s) to a restarted peer",
        s.deltas_in, s.ring_overflows, s.exports, s.exported_flows, s.resyncs_in, s.resyncs_deferred, s.restart_exports
    );
    let _ = writeln!(
        o,
        "defer:     {}; {} held, {} released by ACK, {} by timeout, {} not held (queue full)",
        if s.defer.is_empty() { "off" } else { &s.defer },
        s.defer_held,
        s.defer_released,
        s.defer_timeouts,
        s.defer_overflow
    );
    let _ = writeln!(
        o,
        "level:     {} by default; {} change(s) not replicated because of their flow's sync level, {} merged into a newer change of the same flow",
        if s.level.is_empty() { "full" } else { &s.level },
        s.level_skipped,
        s.deltas_merged
    );
    if let Some(l) = &s.lazy {
        let _ = writeln!(
            o,
            "lazy:      {} changes held as transitional, {} sent as stable; {} msgs saved, {} held changes sent late (wrong), {} stable ones superseded",
            l.predicted_transitional,
            l.predicted_stable,
            l.saved_msgs,
            l.delayed,
            l.stable_but_short
        );
        let _ = writeln!(
            o,
            "           knowledge base: {} keys used, {} bytes ({} per key); {} resets, {} evictions, {} untracked",
            l.keys_used,
            l.kb_bytes,
            ftfw_sync::lazy::KEY_BYTES,
            l.key_resets,
            l.key_evictions,
            l.untracked
        );
    }
    o.push('\n');
    let rows = vec![
        vec![
            "in".to_string(),
            s.msgs_in.to_string(),
            s.bytes_in.to_string(),
            s.datagrams_in.to_string(),
        ],
        vec![
            "out".to_string(),
            s.msgs_out.to_string(),
            s.bytes_out.to_string(),
            s.datagrams_out.to_string(),
        ],
    ];
    o.push_str(&table(&["", "messages", "bytes", "datagrams"], &rows));
    o.push('\n');
    let errs = [
        ("lost", s.lost),
        ("sequence jumps", s.seq_jumps),
        ("malformed", s.malformed),
        ("malformed payload", s.malformed_payload),
        ("stale", s.stale),
        ("retransmitted", s.retransmitted),
        ("out-of-sync resyncs", s.out_of_sync_resyncs),
        ("ACKs in", s.acks_in),
        ("  entries acknowledged", s.acked),
        ("  skipped, sent again", s.skipped_requeued),
        ("NACKs in", s.nacks_in),
        ("  ignored (best effort)", s.nacks_ignored),
        ("tail-loss probes", s.probes),
        ("encode errors", s.encode_errors),
        ("NACKs of dropped entries", s.nacks_unrecoverable),
        ("  re-exports suppressed", s.nack_reexports_suppressed),
        ("NACK answers limited", s.replies_limited),
        ("bytes sent again", s.reply_bytes),
        ("queue overflows", s.queue_overflows),
        ("foreign datagrams", s.foreign_datagrams),
        ("send errors", s.send_errors),
    ];
    let auth = [
        ("auth failed", s.auth_failed),
        ("replayed", s.replayed),
        ("unknown key id", s.unknown_key_id),
        ("key reloads", s.key_reloads),
        ("key reload errors", s.key_reload_errors),
    ];
    let auth = if s.authenticated { &auth[..] } else { &[] };
    let rows: Vec<Vec<String>> = errs
        .iter()
        .chain(auth)
        .map(|(k, v)| vec![k.to_string(), v.to_string()])
        .collect();
    o.push_str(&table(&["counter", "value"], &rows));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_status_names_the_transport_and_tcp_connections() {
        let mut s = SyncStatusInfo {
            mode: "external-cache".into(),
            transport: "ftfw".into(),
            link: "udp".into(),
            reliable: true,
            local: "192.0.2.1:3780".into(),
            destination: "192.0.2.2:3780".into(),
            ..SyncStatusInfo::default()
        };
        let o = sync_status(&s);
        assert!(o.starts_with("sync:      external-cache, transport ftfw over udp (reliable: ACK/NACK, retransmission), 192.0.2.1:3780 -> 192.0.2.2:3780\n"), "{o}");
        assert!(!o.contains("tcp"), "{o}");
        assert!(!o.contains("security") && !o.contains("auth failed"), "{o}");
        let mut a = s.clone();
        a.authenticated = true;
        a.key_id = 3;
        a.replayed = 5;
        let oa = sync_status(&a);
        assert!(oa.contains("sending with key id 3"), "{oa}");
        assert!(
            oa.lines()
                .any(|l| l.contains("replayed") && l.contains('5')),
            "{oa}"
        );
        s.transport = "tcp".into();
        s.link = "tcp".into();
        s.reliable = false;
        s.tcp = Some(crate::console::proto::TcpLinkInfo {
            out_up: true,
            in_up: false,
            connects: 2,
            disconnects: 1,
            refused: 3,
            framing_errors: 1,
            buffered_bytes: 1400,
            buffer_capacity: 4 << 20,
            send_drops: 5,
            repairs: 1,
            ..Default::default()
        });
        let o = sync_status(&s);
        assert!(
            o.contains("transport tcp (best effort: losses counted, not recovered)"),
            "{o}"
        );
        assert!(
            o.contains("tcp out:   up; 2 connect(s), 0 failed attempt(s), 1 disconnect(s)\n"),
            "{o}"
        );
        assert!(o.contains("tcp in:    down; 0 accepted, 0 closed, 3 refused (not the peer), 1 framing error(s)\n"), "{o}");
        assert!(o.contains("tcp send:  1400 of 4194304 byte(s) buffered, 5 datagram(s) dropped (buffer full), 0 byte(s) cut, 1 repair export(s)\n"), "{o}");
        // The JSON carries the same, and older JSON without it still reads.
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["tcp"]["send_drops"], 5);
        assert_eq!(j["transport"], "tcp");
        let mut old = j.clone();
        for k in ["tcp", "link", "reliable"] {
            old.as_object_mut().unwrap().remove(k);
        }
        let back: SyncStatusInfo = serde_json::from_value(old).unwrap();
        assert!(back.tcp.is_none());
    }
}
