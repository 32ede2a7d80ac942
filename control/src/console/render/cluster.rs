//! `ftfwctl cluster status` as text.

use std::fmt::Write as _;

use serde_json::Value;

use crate::console::proto::ClusterInfo;

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The coordinator's view, one line per member, then one line per sync peer.
pub(super) fn status(c: &ClusterInfo) -> String {
    let mut out = String::new();
    let k = &c.coordinator;
    if k.is_null() {
        out.push_str("coordinator: not started yet\n");
    } else {
        let _ = writeln!(
            out,
            "node {}  master {}  map version {}  applied {}  buckets {}",
            text(&k["node"]),
            text(&k["master"]),
            text(&k["map_version"]),
            text(&k["applied_version"]),
            text(&k["buckets"]),
        );
        if let Some(members) = k["members"].as_array() {
            let _ = writeln!(
                out,
                "{:>6} {:<9} {:<9} {:>8} {:>8} {:>10} {:>10}",
                "node", "alive", "state", "owned", "backup", "flows", "heard_ms"
            );
            for m in members {
                let _ = writeln!(
                    out,
                    "{:>6} {:<9} {:<9} {:>8} {:>8} {:>10} {:>10}",
                    text(&m["node"]),
                    text(&m["alive"]),
                    text(&m["state"]),
                    text(&m["owned"]),
                    text(&m["backup"]),
                    text(&m["flows"]),
                    text(&m["last_heard_ms"]),
                );
            }
        }
        if let Some(p) = k.get("pending").filter(|p| !p.is_null()) {
            let _ = writeln!(out, "moves under way: {}", text(p));
        }
    }
    if let Some(peers) = c.sync_peers.as_array() {
        let _ = writeln!(
            out,
            "\nsync {:>6} {:<16} {:<8} {:>10} {:>10} {:>8} {:>10}",
            "peer", "address", "state", "msgs_out", "msgs_in", "lost", "external"
        );
        for p in peers {
            let _ = writeln!(
                out,
                "     {:>6} {:<16} {:<8} {:>10} {:>10} {:>8} {:>10}",
                text(&p["node"]),
                text(&p["address"]),
                text(&p["state"]),
                text(&p["msgs_out"]),
                text(&p["msgs_in"]),
                text(&p["lost"]),
                text(&p["external_flows"]),
            );
        }
    }
    out
}
