//! Prometheus metrics (`[metrics] listen = "127.0.0.1:9779"`).
//!
//! The values come from the console's own answers (`status`, `stats`,
//! `sync status`, `cluster status`), gathered into a [`Snapshot`] by
//! [`Snapshot::collect`]: ftfwd's metrics thread asks its console socket
//! like `ftfwctl` does, so a scrape and `ftfwctl stats --json` cannot
//! disagree and the metrics thread never touches the workers or the
//! control loop's state. [`encode`] turns a snapshot into the Prometheus
//! text exposition format (version 0.0.4, with the `prometheus` crate's
//! encoder); [`server`] serves it over HTTP.
//!
//! Names: `ftfw_<source>_<field>` with the unit in the name (`_total` on
//! counters, `_bytes`, `_seconds`); a worker's counters carry a `worker`
//! label, a port's a `port` label, a cluster peer's a `node` label.

mod families;
mod help;
pub mod server;

use prometheus::proto::MetricFamily;

use crate::console::proto::{
    ClusterInfo, Payload, Request, Response, StatsInfo, StatusInfo, SyncStatusInfo,
};

pub use families::{port_metric, worker_metric, MetricName};

/// The console answers one scrape is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `ftfwctl status`.
    pub status: StatusInfo,
    /// `ftfwctl stats`.
    pub stats: StatsInfo,
    /// `ftfwctl sync status` (`None`: no `[sync]`).
    pub sync: Option<SyncStatusInfo>,
    /// `ftfwctl cluster status` (`None`: no `[cluster]`).
    pub cluster: Option<ClusterInfo>,
}

impl Snapshot {
    /// Asks `ask` (a console connection, or the appliance's handler
    /// in-process) for the four answers. `sync status` and `cluster status`
    /// errors mean the section is not configured; `status` and `stats`
    /// must succeed.
    pub fn collect(
        mut ask: impl FnMut(Request) -> Result<Response, String>,
    ) -> Result<Snapshot, String> {
        let status = match ask(Request::Status)? {
            Response::Ok(Payload::Status(s)) => s,
            other => return Err(format!("status: unexpected answer {other:?}")),
        };
        let stats = match ask(Request::Stats)? {
            Response::Ok(Payload::Stats(s)) => s,
            other => return Err(format!("stats: unexpected answer {other:?}")),
        };
        let sync = match ask(Request::SyncStatus)? {
            Response::Ok(Payload::SyncStatus(s)) => Some(s),
            _ => None,
        };
        let cluster = match ask(Request::ClusterStatus)? {
            Response::Ok(Payload::Cluster(c)) => Some(c),
            _ => None,
        };
        Ok(Snapshot {
            status,
            stats,
            sync,
            cluster,
        })
    }
}

/// The snapshot in the Prometheus text exposition format.
pub fn encode(snap: &Snapshot) -> String {
    let families: Vec<MetricFamily> = families::build(snap);
    let mut out = String::new();
    // Encoding into a String fails only on an invalid family (no metrics,
    // or a type mismatch), which `build` never makes; say so rather than
    // serve half a page.
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
        return format!("# ftfw: cannot encode metrics: {e}\n");
    }
    out
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
