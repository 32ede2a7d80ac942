//! The suite report as text for the terminal and as markdown.

use super::{kb, Figure, FigureData, SuiteReport};
use crate::failover;

use super::targets::{msf, pct};

/// One figure's table, for the terminal and for markdown.
pub(super) struct Table {
    /// Column headers on the terminal (short) and in markdown (long).
    pub(super) short: Vec<&'static str>,
    pub(super) long: Vec<&'static str>,
    pub(super) rows: Vec<Vec<String>>,
    pub(super) note: String,
}

pub(super) fn table(f: &Figure) -> Table {
    let opt = |n: Option<usize>| n.map_or_else(|| "-".into(), |n| n.to_string());
    match &f.data {
        FigureData::Performance { points, .. } => Table {
            short: vec![
                "object",
                "sess/s off",
                "on",
                "drop",
                "on+defer",
                "drop",
                "Mbit/s off",
                "on",
                "on+defer",
                "wrk µs off",
                "on",
                "on+defer",
                "drop",
                "+ est",
                "+ lazy",
                "sync µs",
            ],
            long: vec![
                "object",
                "sessions/s off",
                "on",
                "drop",
                "on + defer",
                "drop",
                "Mbit/s off",
                "on",
                "on + defer",
                "worker µs/session off",
                "on",
                "on + defer",
                "worker capacity drop (on)",
                "worker +% level established",
                "worker +% lazy",
                "sync thread µs/session",
            ],
            rows: points
                .iter()
                .map(|p| {
                    vec![
                        kb(p.object_size),
                        format!("{:.0}", p.sessions_per_sec_off),
                        format!("{:.0}", p.sessions_per_sec_on),
                        pct(p.session_rate_drop),
                        format!("{:.0}", p.sessions_per_sec_defer),
                        pct(p.session_rate_drop_defer),
                        format!("{:.0}", p.data_rate_mbps_off),
                        format!("{:.0}", p.data_rate_mbps_on),
                        format!("{:.0}", p.data_rate_mbps_defer),
                        format!("{:.2}", p.worker_us_per_session_off),
                        format!("{:.2}", p.worker_us_per_session_on),
                        format!("{:.2}", p.worker_us_per_session_defer),
                        pct(p.worker_capacity_drop),
                        p.worker_busy_increase_established
                            .map_or_else(|| "-".into(), pct),
                        p.worker_busy_increase_lazy.map_or_else(|| "-".into(), pct),
                        format!("{:.2}", p.sync_us_per_session_on),
                    ]
                })
                .collect(),
            note: "Sessions/s and Mbit/s are the whole lab's (hosts, both firewalls, the link) on \
                   this machine's cores; the worker columns are fw1's forwarding core alone (its \
                   thread CPU time per session), the drop of its capacity with replication on, and the increase of \
                   that time over replication off with level established and with lazy \
                   replication (figure 6); the sync \
                   column is fw1's sync thread CPU per session."
                .into(),
        },
        FigureData::ClusterPerf { points, how_run } => super::clusters::perf_table(points, how_run),
        FigureData::ClusterRecovery {
            points,
            pair_bytes_per_flow,
            how_run,
        } => super::clusters::recovery_table(points, *pair_bytes_per_flow, how_run),
        FigureData::Recovery { points } => Table {
            short: vec![
                "transport",
                "object",
                "established",
                "replicated",
                "recovered",
                "ratio",
                "broken",
                "recovered in",
                "fw2 active in",
            ],
            long: vec![
                "transport",
                "object",
                "established",
                "replicated at the crash",
                "recovered",
                "ratio",
                "broken",
                "time to recover",
                "takeover",
            ],
            rows: points
                .iter()
                .map(|p| {
                    vec![
                        p.transport.as_str().to_string(),
                        kb(p.object_size),
                        p.established.to_string(),
                        opt(p.replicated),
                        p.recovered.to_string(),
                        super::loss::ratio_text(p),
                        p.broken.to_string(),
                        super::loss::time_text(p),
                        msf(p.takeover_ms),
                    ]
                })
                .collect(),
            note: if points.iter().any(|p| p.spread.is_some()) {
                "With loss on the sync link each point runs over several seeds: ratio and time \
                 to recover are median (min-max); the other columns are the median run's."
                    .into()
            } else {
                String::new()
            },
        },
    }
}

impl Table {
    /// Right-aligned columns.
    fn text(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([self.short[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.short.len()).map(width).collect();
        let line = |cells: Vec<&str>| {
            let mut l = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            l.push('\n');
            l
        };
        let mut out = line(self.short.clone());
        for r in &self.rows {
            out += &line(r.iter().map(String::as_str).collect());
        }
        if !self.note.is_empty() {
            out += &format!("({})\n", self.note);
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!(
            "| {} |\n|{}\n",
            self.long.join(" | "),
            "---|".repeat(self.long.len())
        );
        for r in &self.rows {
            out += &format!("| {} |\n", r.join(" | "));
        }
        if !self.note.is_empty() {
            out += &format!("\n{}\n", self.note);
        }
        out
    }
}

/// The human report.
pub fn render(r: &SuiteReport) -> String {
    let mut out = String::new();
    if let Some(c) = &r.crash {
        out += "== crash of the primary (defaults) ==\n";
        out += &failover::render(c);
        out += "\n";
    }
    for f in &r.figures {
        out += &format!("== {} ({}) ==\npaper: {}\n", f.title, f.id, f.paper);
        out += &table(f).text();
        out += "\n";
    }
    out += &super::hybrid::markdown(r.lazy.as_ref(), r.migration.as_ref(), r.levels.as_ref());
    if !r.targets.is_empty() {
        out += "== paper vs ftfw ==\n";
        for t in &r.targets {
            out += &format!(
                "{}: {}  [paper: {}; target {}: {}]\n",
                t.measure,
                t.ftfw,
                t.paper,
                t.target,
                match t.met {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None => "not measured",
                }
            );
        }
    }
    out += &format!("suite ran in {:.1} s\n", r.total_secs);
    out
}

/// The markdown report (`--report FILE`).
pub fn markdown(r: &SuiteReport) -> String {
    let mut out = String::from("# ftfw failover lab: the FT-FW paper's evaluation, rerun\n\n");
    out += "Paper: Neira, Gasca, Lefèvre, *Demystifying cluster-based fault-tolerant firewalls* \
            (FT-FW), section 7. Paper values are those its text states; its testbed used \
            conntrackd 1.0.0, keepalived (VRRP advert 2 s), 200 concurrent HTTP downloads, 1 GbE. \
            Ours: `ftfw-lab failover`, two ftfw appliances in one process, emulated sync link.\n\n";
    if !r.targets.is_empty() {
        out += "## Paper vs ftfw\n\n| measure | paper | ftfw | target | met |\n|---|---|---|---|---|\n";
        for t in &r.targets {
            out += &format!(
                "| {} | {} | {} | {} | {} |\n",
                t.measure,
                t.paper,
                t.ftfw,
                t.target,
                match t.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "-",
                }
            );
        }
        out += "\n";
    }
    if let Some(c) = &r.crash {
        out += &format!(
            "## Crash of the primary (defaults)\n\n{} transfers of {}, {} established at the crash, \
             {} recovered ({}), {} broken; fw2 active after {}, every recovered transfer moving \
             again after {}.\n\n",
            c.transfers,
            kb(c.object_size),
            c.flows_established_at_crash,
            c.flows_recovered,
            pct(c.recovery_ratio),
            c.broken_transfers,
            msf(c.takeover_ms),
            msf(c.time_to_recover_ms)
        );
    }
    for f in &r.figures {
        out += &format!("## {} ({})\n\nPaper: {}\n\n", f.title, f.id, f.paper);
        out += &table(f).markdown();
        out += "\n";
    }
    out += &super::hybrid::markdown(r.lazy.as_ref(), r.migration.as_ref(), r.levels.as_ref());
    out += &format!("Suite time: {:.1} s.\n", r.total_secs);
    out
}
