//! Human-readable rendering of console responses for `ftfwctl`: pure
//! functions from payloads to text (every output ends with a newline).

use std::fmt::Write as _;

mod cluster;
mod expect;
mod l3;
mod sync;
pub use expect::expectations;
pub use l3::{neighbors, routes};
pub use sync::sync_status;

use super::proto::{
    CommitResult, FlowJson, FlowsListing, Payload, ReloadResult, RoleChange, RulesInfo, StatsInfo,
    StatusInfo, TupleJson,
};

/// Renders any payload.
pub fn payload(p: &Payload) -> String {
    match p {
        Payload::Status(s) => status(s),
        Payload::Stats(s) => stats(s),
        Payload::Flows(l) => flows(l),
        Payload::FlowAdded { flow } => format!("{}\nflow added\n", flow_line(flow)),
        Payload::FlowsDeleted { deleted } => format!("{deleted} flow entries have been deleted.\n"),
        Payload::Rules(r) => rules(r),
        Payload::Reloaded(r) => reload(r),
        Payload::SyncStatus(s) => sync_status(s),
        Payload::ExternalFlows(l) => external(l),
        Payload::Expectations(l) => expectations(l),
        Payload::Committed(c) => committed(c),
        Payload::ResyncRequested { .. } => "resync requested from the peer\n".to_string(),
        Payload::ExternalFlushed { flushed } => {
            format!("external cache flushed: {flushed} flow(s) removed\n")
        }
        Payload::Notified(c) => role_change(c),
        Payload::MigrationStarted { to } => format!(
            "migration to node {to} started: exporting our table; `ftfwctl status` shows its progress\n"
        ),
        Payload::Cluster(c) => cluster::status(c),
        Payload::ClusterRequested { change } => format!(
            "{} requested: the coordinator carries it out; `ftfwctl cluster status` shows the map\n",
            change.describe()
        ),
        Payload::Neighbors(n) => neighbors(n),
        Payload::Routes(r) => routes(r),
        Payload::RestartScheduled { keeps_flows: true } => {
            "restarting: the flow table is handed to the new process\n".to_string()
        }
        Payload::RestartScheduled { keeps_flows: false } => {
            "restarting: no state file here, the new process starts with an empty table (a replicated node resyncs from its peer)\n".to_string()
        }
    }
}

/// `ftfwctl notify ...` and the last takeover in `status`.
pub fn role_change(c: &RoleChange) -> String {
    let mut o = format!(
        "role {} at {} ({} us in all, {} flow(s) committed)\n",
        c.role, c.at, c.total_us, c.flows_committed
    );
    let rows: Vec<Vec<String>> = c
        .steps
        .iter()
        .map(|s| {
            vec![
                s.step.clone(),
                s.micros.to_string(),
                if s.note.is_empty() {
                    "-".to_string()
                } else {
                    s.note.clone()
                },
            ]
        })
        .collect();
    o.push_str(&table(&["step", "us", "note"], &rows));
    o
}

fn json_str(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The election part of `ftfwctl status`: this node, then one line per
/// other node in rank order.
pub fn election(e: &serde_json::Value) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "election:  node {} ({}), priority {}, state {}, master {}, synced {}",
        json_str(&e["node"]),
        json_str(&e["role"]),
        json_str(&e["priority"]),
        json_str(&e["state"]),
        json_str(&e["master"]),
        json_str(&e["freshness"]["synced"]),
    );
    if let Some(k) = key_ring(&e["keys"], &e["driver"]) {
        let _ = writeln!(o, "  {k}");
    }
    if let Some(peers) = e["peers"].as_array() {
        for p in peers {
            let seen = p["last_seen_ms_ago"].as_u64().map_or_else(
                || "never heard".to_string(),
                |ms| format!("heard {ms} ms ago"),
            );
            let _ = writeln!(
                o,
                "  peer {}: {}{}, priority {}, synced {}, seq {}, {seen}",
                json_str(&p["node"]),
                json_str(&p["role"]),
                if p["dead"].as_bool() == Some(true) {
                    " DEAD"
                } else {
                    ""
                },
                json_str(&p["priority"]),
                json_str(&p["synced"]),
                json_str(&p["seq"]),
            );
        }
    }
    o
}

/// The key ring line of the election's and the cluster's status, when
/// their `key_file` is a ring: its ids, the one messages are sealed with,
/// and the reloads (`keys` and `driver` of their status).
pub(crate) fn key_ring(keys: &serde_json::Value, driver: &serde_json::Value) -> Option<String> {
    let file = keys["file"].as_str()?;
    let ring = match keys["ids"].as_array() {
        Some(ids) => format!(
            "key ring {} from {file}, sealing with {}",
            ids.iter().map(json_str).collect::<Vec<_>>().join(" "),
            json_str(&keys["sending"])
        ),
        None => format!("key ring from {file}: not taken"),
    };
    Some(format!(
        "{ring}; {} reload(s), {} refused",
        json_str(&driver["key_reloads"]),
        json_str(&driver["key_reload_errors"])
    ))
}

/// `ftfwctl external list`: like `conntrackd -e`.
pub fn external(l: &FlowsListing) -> String {
    let mut o = String::new();
    for f in &l.flows {
        o.push_str(&flow_line(f));
        if let Some(a) = f.active_secs {
            let _ = write!(o, " [active since {a}s]");
        }
        o.push('\n');
    }
    let shown = l.flows.len() as u64;
    if shown < l.total {
        let _ = writeln!(
            o,
            "{shown} of {} external flow entries have been shown.",
            l.total
        );
    } else {
        let _ = writeln!(o, "{shown} external flow entries have been shown.");
    }
    o
}

/// `ftfwctl commit`.
pub fn committed(c: &CommitResult) -> String {
    let mut o = format!(
        "committed {} flow(s) from the external cache in {} ms\n",
        c.committed, c.millis
    );
    if c.refused > 0 {
        let _ = writeln!(o, "{} flow(s) refused: the flow table is full", c.refused);
    }
    o
}

/// A table: numeric columns (every cell a number or `-`) right-aligned,
/// the others left-aligned, two spaces between columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let numeric: Vec<bool> = (0..cols)
        .map(|i| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r.get(i).is_some_and(|c| {
                        c == "-"
                            || (!c.is_empty() && c.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                    })
                })
        })
        .collect();
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate().take(cols) {
            if i > 0 {
                l.push_str("  ");
            }
            if numeric[i] {
                let _ = write!(l, "{c:>w$}", w = width[i]);
            } else {
                let _ = write!(l, "{c:<w$}", w = width[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// `ftfwctl status`.
pub fn status(s: &StatusInfo) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "ftfwd {} (pid {}), up {}",
        s.version,
        s.pid,
        duration(s.uptime_secs)
    );
    let _ = writeln!(
        o,
        "dataplane: {} mode, {} worker(s), {} polling",
        s.mode, s.workers, s.poll_mode
    );
    let pct = if s.capacity == 0 {
        0.0
    } else {
        s.flows as f64 * 100.0 / s.capacity as f64
    };
    let _ = writeln!(o, "flows:     {} of {} ({pct:.1}%)", s.flows, s.capacity);
    let _ = writeln!(
        o,
        "deltas:    {} consumed from the workers' rings",
        s.deltas_consumed
    );
    let _ = writeln!(
        o,
        "rules:     {} rule(s), policy {}, from {}, loaded at {}",
        s.rules.count, s.rules.policy, s.rules.source, s.rules.loaded_at
    );
    if let Some(e) = &s.last_reload_error {
        let _ = writeln!(o, "last reload FAILED: {e}");
    }
    if !s.role.is_empty() {
        let _ = writeln!(o, "role:      {} (failover: {})", s.role, s.failover);
    }
    if let Some(e) = &s.election {
        o.push_str(&election(e));
    }
    if let Some(k) = &s.state_keeper {
        let _ = writeln!(
            o,
            "state file: {} ({} flows, {} bytes; {} changes, {} snapshots, {} shard re-reads, {} write errors)",
            k.path, k.flows, k.file_bytes, k.records, k.snapshots, k.reexports, k.write_errors
        );
        if let Some(r) = &k.restored {
            let _ = writeln!(
                o,
                "  restored at start: {} of {} flows (down {} s; {} expired, {} refused, {} bad records{})",
                r.restored,
                r.found,
                r.down_secs,
                r.expired,
                r.refused,
                r.bad_records,
                if r.truncated { ", last record cut" } else { "" }
            );
        }
    }
    if let Some(m) = &s.migration {
        let _ = writeln!(o, "migration: {m}");
    }
    if let Some(t) = &s.last_takeover {
        let steps: Vec<String> = t
            .steps
            .iter()
            .map(|st| format!("{} {} us", st.step, st.micros))
            .collect();
        let _ = writeln!(
            o,
            "takeover:  at {}, {} us ({}), {} flow(s) committed",
            t.at,
            t.total_us,
            steps.join(", "),
            t.flows_committed
        );
    }
    o.push('\n');
    let rows: Vec<Vec<String>> = s
        .ports
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.backend.clone(),
                p.interface.clone().unwrap_or_else(|| "-".into()),
                p.zone.to_string(),
                p.peer.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    o.push_str(&table(
        &["port", "backend", "interface", "zone", "bridged to"],
        &rows,
    ));
    o
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h{m:02}m")
    } else {
        format!("{h:02}h{m:02}m{s:02}s")
    }
}

/// `ftfwctl stats`: a counter-by-worker table with a total column, then a
/// table of port counters.
pub fn stats(s: &StatsInfo) -> String {
    let names: Vec<String> = (0..s.workers.len()).map(|i| format!("worker{i}")).collect();
    let mut headers: Vec<&str> = vec!["counter"];
    headers.extend(names.iter().map(String::as_str));
    headers.push("total");
    let per_worker: Vec<Vec<(&str, u64)>> = s.workers.iter().map(|w| w.fields()).collect();
    let rows: Vec<Vec<String>> = s
        .total
        .fields()
        .into_iter()
        .enumerate()
        .map(|(i, (name, total))| {
            let mut r = vec![name.to_string()];
            r.extend(per_worker.iter().map(|w| w[i].1.to_string()));
            r.push(total.to_string());
            r
        })
        .collect();
    let mut o = table(&headers, &rows);
    if !s.ports.is_empty() {
        o.push('\n');
        let rows: Vec<Vec<String>> = s
            .ports
            .iter()
            .map(|p| {
                let st = &p.stats;
                vec![
                    p.name.clone(),
                    st.rx_packets.to_string(),
                    st.rx_bytes.to_string(),
                    st.tx_packets.to_string(),
                    st.tx_bytes.to_string(),
                    st.rx_dropped.to_string(),
                    st.tx_dropped.to_string(),
                    st.truncated.to_string(),
                    st.rx_missed.to_string(),
                    st.rx_errors.to_string(),
                    st.tx_errors.to_string(),
                ]
            })
            .collect();
        o.push_str(&table(
            &[
                "port",
                "rx_packets",
                "rx_bytes",
                "tx_packets",
                "tx_bytes",
                "rx_dropped",
                "tx_dropped",
                "truncated",
                "rx_missed",
                "rx_errors",
                "tx_errors",
            ],
            &rows,
        ));
    }
    o
}

fn tuple(t: &TupleJson) -> String {
    let mut s = format!("src={} dst={}", t.src, t.dst);
    if let Some(ty) = t.icmp_type {
        let _ = write!(
            s,
            " type={} code={} id={}",
            ty,
            t.code.unwrap_or(0),
            t.id.unwrap_or(0)
        );
    } else if let (Some(sp), Some(dp)) = (t.sport, t.dport) {
        let _ = write!(s, " sport={sp} dport={dp}");
    }
    s
}

fn has_status(f: &FlowJson, name: &str) -> bool {
    f.status_names.iter().any(|n| n == name)
}

/// One flow, as `conntrack -L` prints it.
pub fn flow_line(f: &FlowJson) -> String {
    let num = f
        .proto_num
        .map_or_else(|| f.proto.clone(), |n| n.to_string());
    let mut s = format!("{:<8} {} {} ", f.proto, num, f.timeout);
    if let Some(st) = &f.state {
        let _ = write!(s, "{st} ");
    }
    s.push_str(&tuple(&f.original));
    if !has_status(f, "SEEN_REPLY") {
        s.push_str(" [UNREPLIED]");
    }
    if let Some(r) = &f.reply {
        s.push(' ');
        s.push_str(&tuple(r));
    }
    if has_status(f, "ASSURED") {
        s.push_str(" [ASSURED]");
    }
    let _ = write!(s, " mark={} zone={}", f.mark, f.zone);
    if let Some([o, r]) = f.vtags {
        let _ = write!(s, " vtag={o:#010x},{r:#010x}");
    }
    if !f.labels.is_empty() {
        let l: Vec<String> = f.labels.iter().map(ToString::to_string).collect();
        let _ = write!(s, " labels={}", l.join(","));
    }
    if let Some(h) = &f.helper {
        let _ = write!(s, " helper={h}");
    }
    if let Some(m) = &f.master {
        let _ = write!(s, " master={} {}", m.proto, tuple(&m.original));
    }
    s
}

/// `ftfwctl flows list`: one line per flow and a count line.
pub fn flows(l: &FlowsListing) -> String {
    let mut o = String::new();
    for f in &l.flows {
        o.push_str(&flow_line(f));
        o.push('\n');
    }
    let shown = l.flows.len() as u64;
    if shown < l.total {
        let _ = writeln!(
            o,
            "{shown} of {} matching flow entries have been shown.",
            l.total
        );
    } else {
        let _ = writeln!(o, "{shown} flow entries have been shown.");
    }
    o
}

/// `ftfwctl rules show`.
pub fn rules(r: &RulesInfo) -> String {
    let mut o = format!(
        "policy {} ({} rule(s) from {}, loaded at {})\n",
        r.policy,
        r.rules.len(),
        r.source,
        r.loaded_at
    );
    let rows: Vec<Vec<String>> = r
        .rules
        .iter()
        .map(|l| vec![l.index.to_string(), l.line.to_string(), l.text.clone()])
        .collect();
    if !rows.is_empty() {
        // The rule text reads better left-aligned: render it after the table.
        let nums = table(
            &["#", "line"],
            &rows.iter().map(|r| r[..2].to_vec()).collect::<Vec<_>>(),
        );
        for (i, l) in nums.lines().enumerate() {
            let text = if i == 0 {
                "rule"
            } else {
                rows[i - 1][2].as_str()
            };
            let _ = writeln!(o, "{l}  {text}");
        }
    }
    for n in &r.nat {
        let _ = writeln!(o, "nat line {}: {}", n.line, n.text);
    }
    o
}

/// `ftfwctl rules reload`.
pub fn reload(r: &ReloadResult) -> String {
    format!(
        "rules reloaded: {} rule(s) (was {}), policy {}, from {}\n",
        r.rules.count, r.previous_count, r.rules.policy, r.rules.source
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::console::proto::WorkerStats;
    use crate::console::proto::{PortCounters, PortInfo, RuleLine, RulesSummary, StepTime};
    use ftfw_dataplane::flow::{proto, status, Counters, FlowKey, FlowState, TcpState, Tuple};
    use ftfw_dataplane::port::PortStats;

    fn tcp() -> FlowJson {
        let orig = Tuple::new(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
            proto::TCP,
            40000,
            80,
        );
        FlowJson::from(&FlowState::established_tcp(orig, 431999))
    }

    #[test]
    fn flow_line_shows_sctp_tags_labels_helper_and_master() {
        let mut j = tcp();
        j.proto = "sctp".into();
        j.proto_num = Some(132);
        j.vtags = Some([0x1234_5678, 9]);
        j.labels = vec![1, 100];
        j.helper = Some("ftp".into());
        j.master = Some(crate::console::proto::MasterJson {
            proto: "tcp".into(),
            original: j.original.clone(),
        });
        let line = flow_line(&j);
        assert!(
            line.ends_with(
                " vtag=0x12345678,0x00000009 labels=1,100 helper=ftp master=tcp src=192.0.2.1 dst=198.51.100.2 sport=40000 dport=80"
            ),
            "{line}"
        );
    }

    #[test]
    fn flow_line_like_conntrack() {
        assert_eq!(
            flow_line(&tcp()),
            "tcp      6 431999 ESTABLISHED src=192.0.2.1 dst=198.51.100.2 sport=40000 dport=80 \
             src=198.51.100.2 dst=192.0.2.1 sport=80 dport=40000 [ASSURED] mark=0 zone=0"
        );
        let udp = FlowJson::from(&FlowState {
            key: FlowKey {
                orig: Tuple::new(
                    "2001:db8::1".parse().unwrap(),
                    "2001:db8::2".parse().unwrap(),
                    proto::UDP,
                    5353,
                    53,
                ),
                zone: 4,
            },
            tcp_state: TcpState::None,
            status: status::CONFIRMED,
            timeout_secs: 29,
            mark: 9,
            wscale: [0, 0],
            counters: [Counters::default(); 2],
            extras: Default::default(),
        });
        assert_eq!(
            flow_line(&udp),
            "udp      17 29 src=2001:db8::1 dst=2001:db8::2 sport=5353 dport=53 [UNREPLIED] \
             src=2001:db8::2 dst=2001:db8::1 sport=53 dport=5353 mark=9 zone=4"
        );
    }

    #[test]
    fn flows_count_line() {
        let l = FlowsListing {
            flows: vec![tcp()],
            total: 1,
        };
        assert!(flows(&l).ends_with("\n1 flow entries have been shown.\n"));
        let l = FlowsListing {
            flows: vec![tcp()],
            total: 5,
        };
        assert!(flows(&l).ends_with("\n1 of 5 matching flow entries have been shown.\n"));
        let l = FlowsListing {
            flows: vec![],
            total: 0,
        };
        assert_eq!(flows(&l), "0 flow entries have been shown.\n");
    }

    #[test]
    fn table_alignment() {
        let t = table(
            &["name", "n"],
            &[
                vec!["a".into(), "1".into()],
                vec!["longer".into(), "12345".into()],
            ],
        );
        assert_eq!(t, "name        n\na           1\nlonger  12345\n");
    }

    #[test]
    fn stats_table() {
        let s = StatsInfo::new(
            vec![
                WorkerStats {
                    rx: 10,
                    tx: 9,
                    ..Default::default()
                },
                WorkerStats {
                    rx: 5,
                    flows: 2,
                    ..Default::default()
                },
            ],
            vec![PortCounters {
                name: "outside".into(),
                stats: PortStats {
                    rx_packets: 15,
                    ..Default::default()
                },
            }],
        );
        let out = stats(&s);
        let lines: Vec<&str> = out.lines().collect();
        // The name column is as wide as the longest counter name.
        let longest = WorkerStats::default()
            .fields()
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap();
        let w = longest + 2;
        let row = |name: &str, a: u64, b: u64, t: u64| format!("{name:<w$}{a:>7}  {b:>7}  {t:>5}");
        assert_eq!(
            lines[0],
            format!("{:<w$}worker0  worker1  total", "counter")
        );
        assert_eq!(lines[1], row("rx", 10, 5, 15));
        assert_eq!(lines[2], row("tx", 9, 0, 9));
        assert!(lines.contains(&row("flows", 0, 2, 2).as_str()));
        assert!(out.contains("\nport     rx_packets"), "{out}");
        assert!(out.contains("\noutside          15"), "{out}");
    }

    #[test]
    fn status_text() {
        let s = StatusInfo {
            version: "0.1.0".into(),
            uptime_secs: 90061,
            pid: 42,
            workers: 2,
            poll_mode: "adaptive".into(),
            mode: "transparent".into(),
            ports: vec![
                PortInfo {
                    name: "outside".into(),
                    backend: "af_packet".into(),
                    interface: Some("veth-out".into()),
                    zone: 0,
                    peer: Some("inside".into()),
                },
                PortInfo {
                    name: "inside".into(),
                    backend: "mem".into(),
                    interface: None,
                    zone: 1,
                    peer: Some("outside".into()),
                },
            ],
            flows: 512,
            capacity: 1024,
            rules: RulesSummary {
                count: 3,
                policy: "drop".into(),
                source: "/etc/ftfw/rules.conf".into(),
                loaded_at: 7,
            },
            deltas_consumed: 3,
            last_reload_error: Some("rules.conf:4: unknown keyword".into()),
            role: "active".into(),
            failover: "keepalived".into(),
            last_takeover: Some(RoleChange {
                role: "active".into(),
                at: 1700000000,
                steps: vec![
                    StepTime {
                        step: "commit".into(),
                        micros: 900,
                        note: String::new(),
                    },
                    StepTime {
                        step: "forward".into(),
                        micros: 3,
                        note: String::new(),
                    },
                ],
                total_us: 903,
                flows_committed: 12,
            }),
            role_changes: Default::default(),
            role_change_steps: vec![],
            election: None,
            migration: Some("to node 2: done in 310 ms".into()),
            state_keeper: Some(crate::console::proto::StateKeeperInfo {
                path: "/run/ftfw/ftfwd.state".into(),
                flows: 3,
                records: 17,
                snapshots: 2,
                reexports: 0,
                write_errors: 0,
                file_bytes: 420,
                restored: Some(crate::keeper::RestoreReport {
                    found: 4,
                    restored: 3,
                    expired: 1,
                    down_secs: 2,
                    truncated: true,
                    ..Default::default()
                }),
            }),
        };
        let out = status(&s);
        assert!(
            out.contains("migration: to node 2: done in 310 ms\n"),
            "{out}"
        );
        assert!(
            out.contains("state file: /run/ftfw/ftfwd.state (3 flows, 420 bytes; 17 changes, 2 snapshots")
                && out.contains("restored at start: 3 of 4 flows (down 2 s; 1 expired, 0 refused, 0 bad records, last record cut)"),
            "{out}"
        );
        assert!(
            out.contains("role:      active (failover: keepalived)\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "takeover:  at 1700000000, 903 us (commit 900 us, forward 3 us), 12 flow(s) committed\n"
            ),
            "{out}"
        );
        assert!(
            out.starts_with("ftfwd 0.1.0 (pid 42), up 1d 01h01m\n"),
            "{out}"
        );
        assert!(out.contains("flows:     512 of 1024 (50.0%)\n"), "{out}");
        assert!(out.contains("last reload FAILED: rules.conf:4: unknown keyword\n"));
        assert!(
            out.ends_with(
                "port     backend    interface  zone  bridged to\n\
                 outside  af_packet  veth-out      0  inside\n\
                 inside   mem        -             1  outside\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn rules_text() {
        let r = RulesInfo {
            policy: "drop".into(),
            source: "inline".into(),
            loaded_at: 1,
            rules: vec![
                RuleLine {
                    index: 0,
                    line: 12,
                    text: "accept ct established,related".into(),
                },
                RuleLine {
                    index: 1,
                    line: 130,
                    text: "drop ct invalid".into(),
                },
            ],
            nat: vec![RuleLine {
                index: 0,
                line: 131,
                text: "nat src in inside to 203.0.113.1".into(),
            }],
        };
        assert_eq!(
            rules(&r),
            "policy drop (2 rule(s) from inline, loaded at 1)\n\
             #  line  rule\n\
             0    12  accept ct established,related\n\
             1   130  drop ct invalid\n\
             nat line 131: nat src in inside to 203.0.113.1\n"
        );
        assert_eq!(
            payload(&Payload::FlowsDeleted { deleted: 2 }),
            "2 flow entries have been deleted.\n"
        );
    }
}
