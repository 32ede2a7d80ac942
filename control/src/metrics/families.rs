//! The metric families of a [`Snapshot`]: names, help, types and labels.

use std::collections::BTreeMap;

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use serde_json::Value;

use super::{help, Snapshot};
use crate::console::proto::{StepHistogram, WorkerStats};

/// How a console field is exported.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricName {
    /// The metric name (with `_total` for a counter).
    pub name: String,
    /// A counter (else a gauge).
    pub counter: bool,
    /// The exported value is the field divided by this (nanoseconds to
    /// seconds: 1e9).
    pub divisor: f64,
}

impl MetricName {
    fn new(name: impl Into<String>, counter: bool) -> MetricName {
        MetricName {
            name: name.into(),
            counter,
            divisor: 1.0,
        }
    }
}

/// The metric of a worker counter of `ftfwctl stats` (label `worker`).
/// Conntrack's own counters are `ftfw_conntrack_*`; the flow table's size
/// and capacity are gauges.
pub fn worker_metric(field: &str) -> MetricName {
    match field {
        "flows" => MetricName::new("ftfw_conntrack_flows", false),
        "capacity" => MetricName::new("ftfw_conntrack_capacity_flows", false),
        "rx" => MetricName::new("ftfw_worker_rx_frames_total", true),
        "tx" => MetricName::new("ftfw_worker_tx_frames_total", true),
        "tx_dropped" => MetricName::new("ftfw_worker_tx_dropped_frames_total", true),
        "busy_ns" => MetricName {
            name: "ftfw_worker_busy_seconds_total".into(),
            counter: true,
            divisor: 1e9,
        },
        "flows_created" | "flows_destroyed" | "flows_expired" | "table_full" | "early_drops"
        | "invalid" | "related" | "timeouts_clamped" => {
            MetricName::new(format!("ftfw_conntrack_{field}_total"), true)
        }
        // Any other time in nanoseconds (busy_cpu_ns): seconds, as
        // Prometheus names units.
        _ if field.ends_with("_ns") => MetricName {
            name: format!(
                "ftfw_worker_{}_seconds_total",
                field.trim_end_matches("_ns")
            ),
            counter: true,
            divisor: 1e9,
        },
        _ => MetricName::new(format!("ftfw_worker_{field}_total"), true),
    }
}

/// The metric of a port counter of `ftfwctl stats` (label `port`).
pub fn port_metric(field: &str) -> MetricName {
    MetricName::new(format!("ftfw_port_{field}_total"), true)
}

const PORT_HELP: &[(&str, &str)] = &[
    ("rx_packets", "Frames received."),
    ("rx_bytes", "Bytes received."),
    ("tx_packets", "Frames transmitted."),
    ("tx_bytes", "Bytes transmitted."),
    (
        "rx_dropped",
        "Frames the backend dropped on receive (ring overrun, kernel drops).",
    ),
    (
        "tx_dropped",
        "Frames that could not be transmitted (ring full, send error).",
    ),
    ("truncated", "Frames truncated to the frame capacity."),
    (
        "rx_missed",
        "Frames the device missed on receive (its queues were full).",
    ),
    ("rx_errors", "Receive errors the device counted."),
    ("tx_errors", "Transmit errors the device counted."),
];

/// `sync status` fields that are levels, not counts.
const SYNC_GAUGES: &[&str] = &[
    "seq_out",
    "seq_in",
    "resend_queue",
    "tx_queue",
    "external_flows",
    "external_capacity",
    "peer_last_heard_ms",
    "last_heard_ms",
    "buffered_bytes",
    "buffer_capacity",
];

/// String fields exported as a state (`name{name="value"} 1`).
const STATES: &[&str] = &[
    "state",
    "role",
    "main_state",
    "sub_state",
    "peer_state",
    "hello",
    "mode",
    "transport",
    "link",
    "udp_offload",
    "defer",
    "level",
    "stage",
];

/// Whether a string field is exported as a state.
pub(super) fn is_state(field: &str) -> bool {
    STATES.contains(&field)
}

/// Objects whose numbers are counters (election, cluster).
const COUNTER_OBJECTS: &[&str] = &["counters", "codec", "driver"];

#[derive(Default)]
struct Builder {
    families: BTreeMap<String, MetricFamily>,
}

impl Builder {
    fn push(&mut self, name: &str, help: &str, kind: MetricType, m: Metric) {
        let f = self.families.entry(name.to_string()).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(name.to_string());
            f.set_help(help.trim().to_string());
            f.set_field_type(kind);
            f
        });
        // A name derived twice with two types keeps its first.
        if f.get_field_type() == kind {
            f.mut_metric().push(m);
        }
    }

    fn value(&mut self, name: &str, help: &str, counter: bool, labels: &[(&str, &str)], v: f64) {
        let mut m = Metric::default();
        m.set_label(label_pairs(labels));
        if counter {
            let mut c = Counter::default();
            c.set_value(v);
            m.set_counter(c);
            self.push(name, help, MetricType::COUNTER, m);
        } else {
            let mut g = Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
            self.push(name, help, MetricType::GAUGE, m);
        }
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: f64) {
        self.value(name, help, false, labels, v);
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: f64) {
        self.value(name, help, true, labels, v);
    }

    fn step_histogram(&mut self, h: &StepHistogram) {
        let mut m = Metric::default();
        m.set_label(label_pairs(&[("role", &h.role), ("step", &h.step)]));
        let mut hist = Histogram::default();
        hist.set_sample_count(h.count);
        hist.set_sample_sum(h.sum_us as f64 / 1e6);
        hist.set_bucket(
            h.buckets
                .iter()
                .map(|b| {
                    let mut x = Bucket::default();
                    x.set_upper_bound(b.le_us as f64 / 1e6);
                    x.set_cumulative_count(b.count);
                    x
                })
                .collect(),
        );
        m.set_histogram(hist);
        self.push(
            "ftfw_role_change_step_duration_seconds",
            "How long each step of a role change took (commit, forward, announce, export to peer, stop forwarding, resync request).",
            MetricType::HISTOGRAM,
            m,
        );
    }
}

fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| {
            let mut p = LabelPair::default();
            p.set_name((*k).to_string());
            p.set_value((*v).to_string());
            p
        })
        .collect()
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Every family of `snap`, sorted by name.
pub(super) fn build(snap: &Snapshot) -> Vec<MetricFamily> {
    let mut b = Builder::default();
    status(&mut b, snap);
    workers(&mut b, snap);
    ports(&mut b, snap);
    takeover(&mut b, snap);
    if let Some(s) = &snap.sync {
        if let Ok(v) = serde_json::to_value(s) {
            let src = Source::new("ftfwctl sync status", help::Root::Sync);
            flatten(&mut b, "ftfw_sync", &src, "", &v, &[], true);
        }
    }
    if let Some(e) = &snap.status.election {
        let src = Source::new("ftfwctl status: election", help::Root::Election);
        flatten(&mut b, "ftfw_election", &src, "", e, &[], false);
    }
    if let Some(c) = &snap.cluster {
        let src = Source::new("ftfwctl cluster status", help::Root::Cluster);
        flatten(&mut b, "ftfw_cluster", &src, "", &c.coordinator, &[], false);
        flatten_peers(&mut b, &c.sync_peers);
    }
    b.families
        .into_values()
        .filter(|f| !f.get_metric().is_empty())
        .collect()
}

fn status(b: &mut Builder, snap: &Snapshot) {
    let s = &snap.status;
    b.gauge(
        "ftfw_info",
        "ftfwd's version and modes (always 1).",
        &[
            ("version", &s.version),
            ("mode", &s.mode),
            ("poll_mode", &s.poll_mode),
            ("failover", &s.failover),
        ],
        1.0,
    );
    b.gauge(
        "ftfw_uptime_seconds",
        "Seconds since ftfwd started.",
        &[],
        s.uptime_secs as f64,
    );
    b.gauge("ftfw_workers", "Worker threads.", &[], s.workers as f64);
    for role in ["active", "backup", "fault"] {
        let v = if s.role == role { 1.0 } else { 0.0 };
        b.gauge(
            "ftfw_role",
            "The node's role: 1 for the current one (active forwards).",
            &[("role", role)],
            v,
        );
    }
    b.gauge(
        "ftfw_rules",
        "Rules in the loaded rule set.",
        &[],
        s.rules.count as f64,
    );
    b.gauge(
        "ftfw_rules_loaded_timestamp_seconds",
        "When the rule set was loaded (Unix time).",
        &[],
        s.rules.loaded_at as f64,
    );
    b.gauge(
        "ftfw_rules_last_reload_failed",
        "1 while the last rule reload failed (the previous set stays in force).",
        &[],
        if s.last_reload_error.is_some() {
            1.0
        } else {
            0.0
        },
    );
    b.counter(
        "ftfw_deltas_consumed_total",
        "State deltas taken from the workers' rings by the control or sync thread.",
        &[],
        s.deltas_consumed as f64,
    );
    if let Some(k) = &s.state_keeper {
        b.gauge(
            "ftfw_state_file_flows",
            "Flows kept in the state file.",
            &[],
            k.flows as f64,
        );
        b.gauge(
            "ftfw_state_file_bytes",
            "Size of the state file.",
            &[],
            k.file_bytes as f64,
        );
        for (name, help, v) in [
            ("records", "Changes written to the state file.", k.records),
            (
                "snapshots",
                "Whole snapshots written to the state file.",
                k.snapshots,
            ),
            (
                "reexports",
                "Shards read again after a delta ring overflow.",
                k.reexports,
            ),
            (
                "write_errors",
                "Failed writes of the state file.",
                k.write_errors,
            ),
        ] {
            b.counter(
                &format!("ftfw_state_file_{name}_total"),
                help,
                &[],
                v as f64,
            );
        }
    }
}

fn workers(b: &mut Builder, snap: &Snapshot) {
    for (i, w) in snap.stats.workers.iter().enumerate() {
        let worker = i.to_string();
        for ((field, v), (_, doc)) in w.fields().into_iter().zip(WorkerStats::FIELD_DOCS) {
            let m = worker_metric(field);
            b.value(
                &m.name,
                doc,
                m.counter,
                &[("worker", &worker)],
                v as f64 / m.divisor,
            );
        }
    }
}

fn ports(b: &mut Builder, snap: &Snapshot) {
    for p in &snap.stats.ports {
        let Ok(Value::Object(fields)) = serde_json::to_value(p.stats) else {
            continue;
        };
        for (field, v) in fields {
            let Some(v) = v.as_u64() else { continue };
            let help = PORT_HELP
                .iter()
                .find(|(f, _)| *f == field)
                .map_or("Port counter.", |(_, h)| h);
            b.counter(
                &port_metric(&field).name,
                help,
                &[("port", &p.name)],
                v as f64,
            );
        }
    }
}

fn takeover(b: &mut Builder, snap: &Snapshot) {
    let s = &snap.status;
    for role in ["active", "backup", "fault"] {
        b.counter(
            "ftfw_role_changes_total",
            "Role changes since start, by the role changed to.",
            &[("role", role)],
            s.role_changes.get(role).copied().unwrap_or(0) as f64,
        );
    }
    if let Some(t) = &s.last_takeover {
        b.gauge(
            "ftfw_last_takeover_timestamp_seconds",
            "When this node last became active (Unix time).",
            &[],
            t.at as f64,
        );
        b.gauge(
            "ftfw_last_takeover_duration_seconds",
            "How long the last takeover took, from the request to its last step.",
            &[],
            secs(t.total_us),
        );
        b.gauge(
            "ftfw_last_takeover_committed_flows",
            "Flows the last takeover committed from the external cache.",
            &[],
            t.flows_committed as f64,
        );
    }
    for h in &s.role_change_steps {
        b.step_histogram(h);
    }
}

fn flatten_peers(b: &mut Builder, peers: &Value) {
    let Value::Array(peers) = peers else { return };
    for p in peers {
        let node = p.get("node").and_then(Value::as_u64).map(|n| n.to_string());
        let address = p.get("address").and_then(Value::as_str).unwrap_or_default();
        let node = node.unwrap_or_else(|| address.to_string());
        let src = Source::new("ftfwctl cluster status: sync peer", help::Root::Sync);
        flatten(
            b,
            "ftfw_cluster_sync_peer",
            &src,
            "",
            p,
            &[("node", &node)],
            true,
        );
    }
}

/// Where a flattened answer comes from: its console command (the help of
/// a field without its own) and which help table describes its fields.
struct Source {
    name: &'static str,
    root: help::Root,
}

impl Source {
    fn new(name: &'static str, root: help::Root) -> Source {
        Source { name, root }
    }
}

fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Exports the numbers, booleans and states of a console JSON answer.
/// Numbers are counters when `counters` says so (sync) or inside a
/// [`COUNTER_OBJECTS`] object, except the [`SYNC_GAUGES`] levels;
/// `_ms` and `_us` fields become `_seconds`; arrays of objects label
/// their elements by `node` (else by position).
fn flatten(
    b: &mut Builder,
    prefix: &str,
    source: &Source,
    path: &str,
    v: &Value,
    labels: &[(&str, &str)],
    counters: bool,
) {
    let Value::Object(map) = v else { return };
    for (k, x) in map {
        let key = sanitize(k);
        let name = format!("{prefix}_{key}");
        let path = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let help = match help::field_help(source.root, &path) {
            Some(h) => h.to_string(),
            None => format!("{}: {path}.", source.name),
        };
        match x {
            Value::Number(n) => {
                let Some(mut f) = n.as_f64() else { continue };
                let mut name = name;
                if let Some(base) = name.strip_suffix("_ms_ago") {
                    name = format!("{base}_age_seconds");
                    f /= 1e3;
                } else if let Some(base) = name.strip_suffix("_ms") {
                    name = format!("{base}_seconds");
                    f /= 1e3;
                } else if let Some(base) = name.strip_suffix("_us") {
                    name = format!("{base}_seconds");
                    f /= 1e6;
                }
                let counter = counters && !SYNC_GAUGES.contains(&k.as_str());
                if counter {
                    name.push_str("_total");
                }
                b.value(&name, &help, counter, labels, f);
            }
            Value::Bool(t) => b.gauge(&name, &help, labels, if *t { 1.0 } else { 0.0 }),
            Value::String(s) if is_state(k) => {
                let mut l = labels.to_vec();
                l.push((key.as_str(), s.as_str()));
                b.gauge(&name, &help, &l, 1.0);
            }
            Value::Object(_) => {
                let inner = counters || COUNTER_OBJECTS.contains(&k.as_str());
                flatten(b, &name, source, &path, x, labels, inner);
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_object() {
                        continue;
                    }
                    let id = item
                        .get("node")
                        .and_then(Value::as_u64)
                        .map_or_else(|| i.to_string(), |n| n.to_string());
                    let label = if item.get("node").is_some() {
                        "node"
                    } else {
                        "index"
                    };
                    let mut l = labels.to_vec();
                    if l.iter().any(|(n, _)| *n == label) {
                        continue;
                    }
                    l.push((label, id.as_str()));
                    let mut item = item.clone();
                    if let Value::Object(m) = &mut item {
                        m.remove("node");
                    }
                    flatten(b, &name, source, &path, &item, &l, counters);
                }
            }
            _ => {}
        }
    }
}
