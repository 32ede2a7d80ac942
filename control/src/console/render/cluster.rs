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
    let f = &c.kernel_filter;
    if f.is_object() {
        let _ = writeln!(
            out,
            "kernel bucket filter: {}, {} loads, {} failures; {} frames dropped by the workers (not_owner)",
            if f["configured"] == true { "on" } else { "off" },
            text(&f["loads"]),
            text(&f["failures"]),
            text(&f["not_owner"]),
        );
    }
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
        if let Some(line) = super::key_ring(&k["keys"], &k["driver"]) {
            let _ = writeln!(out, "{line}");
        }
        if let Some(line) = uplinks(&k["uplinks"]) {
            let _ = writeln!(out, "{line}");
        }

        if let Some(members) = k["nodes"].as_array() {
            let _ = writeln!(
                out,
                "{:>6} {:<9} {:<9} {:>8} {:>8} {:>10} {:>10} {:>13} {:>12}",
                "node",
                "alive",
                "state",
                "owned",
                "backup",
                "flows",
                "heard_ms",
                "dead_after_ms",
                "false_deaths"
            );
            for m in members {
                let _ = writeln!(
                    out,
                    "{:>6} {:<9} {:<9} {:>8} {:>8} {:>10} {:>10} {:>13} {:>12}",
                    text(&m["node"]),
                    text(&m["alive"]),
                    text(&m["state"]),
                    text(&m["owned"]),
                    text(&m["backup"]),
                    text(&m["flows"]),
                    text(&m["last_heard_ms"]),
                    text(&m["dead_after_ms"]),
                    text(&m["false_deaths"]),
                );
            }
        }
        if let Some(moves) = k["pending"].as_array().filter(|p| !p.is_empty()) {
            let _ = writeln!(out, "moves under way:");
            for m in moves {
                let _ = writeln!(
                    out,
                    "  {} {} buckets with node {} ({})",
                    text(&m["stage"]),
                    text(&m["buckets"]),
                    text(&m["peer"]),
                    text(&m["ranges"]),
                );
            }
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

/// `uplinks_down_when_idle`: one line (`None` when off).
fn uplinks(u: &Value) -> Option<String> {
    if !u.is_object() {
        return None;
    }
    let ports: Vec<String> = u["ports"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let c = &u["counters"];
    let wanted = if u["wanted_up"].as_bool() == Some(true) {
        "up"
    } else {
        "down"
    };
    let mut line = format!(
        "uplinks {}: {} (wanted {wanted}); activations {} ({} failed), checks {} ({} failed), deactivations {} ({} failed)",
        ports.join(","),
        text(&u["state"]),
        text(&c["activations"]),
        text(&c["activate_failures"]),
        text(&c["checks"]),
        text(&c["check_failures"]),
        text(&c["deactivations"]),
        text(&c["deactivate_failures"]),
    );
    if !u["running"].is_null() {
        let _ = write!(line, "; running {}", text(&u["running"]));
    }
    if !u["last_failure"].is_null() {
        let _ = write!(line, "; last failure {}", text(&u["last_failure"]));
    }
    if u["waiting_buckets"].as_u64().is_some_and(|n| n > 0) {
        let _ = write!(
            line,
            "; {} buckets wait for them",
            text(&u["waiting_buckets"])
        );
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Coordinator, CoordinatorConfig};

    #[test]
    fn a_key_ring_shows_its_ids_and_reloads() {
        let keys =
            serde_json::json!({"file": "/etc/ftfw/cluster.keys", "ids": [1, 2], "sending": 2});
        let driver = serde_json::json!({"key_reloads": 3, "key_reload_errors": 1});
        assert_eq!(
            super::super::key_ring(&keys, &driver).unwrap(),
            "key ring 1 2 from /etc/ftfw/cluster.keys, sealing with 2; 3 reload(s), 1 refused"
        );
        let none = serde_json::json!({"file": "/k", "ids": null, "sending": null});
        assert!(super::super::key_ring(&none, &driver)
            .unwrap()
            .starts_with("key ring from /k: not taken;"));
        // No ring file (a key in the configuration): no line.
        assert!(super::super::key_ring(&Value::Null, &driver).is_none());
    }

    #[test]
    fn a_coordinators_status_renders_one_row_per_member() {
        let now = std::time::Instant::now();
        let c = Coordinator::new(
            CoordinatorConfig {
                node: 1,
                nodes: vec![1, 2, 3],
                buckets: 64,
                backups: 1,
                heartbeat: std::time::Duration::from_millis(50),
                dead_after: std::time::Duration::from_millis(200),
                dead_after_max: std::time::Duration::from_millis(2000),
                dead_after_relax: std::time::Duration::from_secs(30),
                auto_rebalance_on_join: true,
                key: vec![7; 16],
                primary_backup: false,
                incarnation: 1,
            },
            now,
        )
        .unwrap();
        let info = ClusterInfo {
            coordinator: serde_json::to_value(c.status(now)).unwrap(),
            sync_peers: serde_json::json!([{"node": 2, "address": "203.0.113.2", "state": "up",
                "msgs_out": 5, "msgs_in": 4, "lost": 0, "external_flows": 3}]),
            kernel_filter: Value::Null,
        };
        let out = status(&info);
        assert!(out.starts_with("node 1  master 1  map version 0"), "{out}");
        assert!(!out.contains("kernel bucket filter"), "{out}");
        // The member table: the lines after its header, up to the blank line.
        let rows: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("node alive"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(rows.len(), 3, "{out}");
        assert!(rows[0].trim_start().starts_with("1 true"), "{out}");
        // A peer's failure detector: dead after 200 ms, no false death.
        let last2: Vec<&str> = rows[1].split_whitespace().rev().take(2).collect();
        assert_eq!(last2, ["0", "200"], "{out}");
        assert!(out.contains("203.0.113.2"), "{out}");
        assert!(!out.contains("uplinks"), "{out}");
        let mut with_filter = info.clone();
        with_filter.kernel_filter =
            serde_json::json!({"configured": true, "loads": 4, "failures": 0, "not_owner": 17});
        assert!(status(&with_filter).starts_with(
            "kernel bucket filter: on, 4 loads, 0 failures; 17 frames dropped by the workers (not_owner)"
        ));
    }

    #[test]
    fn the_uplinks_line_shows_state_failures_and_waiting_buckets() {
        let u = serde_json::json!({"state": "failed", "wanted_up": true, "running": null,
            "last_failure": "activate_uplink", "waiting_buckets": 0, "ports": ["outside"],
            "counters": {"activations": 2, "activate_failures": 1, "checks": 0,
                "check_failures": 0, "deactivations": 1, "deactivate_failures": 0}});
        assert_eq!(
            uplinks(&u).unwrap(),
            "uplinks outside: failed (wanted up); activations 2 (1 failed), checks 0 (0 failed), deactivations 1 (0 failed); last failure activate_uplink"
        );
        let mut w = u.clone();
        w["state"] = "going_up".into();
        w["running"] = "activate_uplink".into();
        w["last_failure"] = Value::Null;
        w["waiting_buckets"] = 16.into();
        assert!(uplinks(&w)
            .unwrap()
            .ends_with("; running activate_uplink; 16 buckets wait for them"));
        assert_eq!(uplinks(&Value::Null), None);
    }
}
