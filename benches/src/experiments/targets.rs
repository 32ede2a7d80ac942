//! The paper's claims as targets: each measured figure against what the
//! paper's text states.

use super::{kb, Figure, FigureData, PerfPoint, RecoveryPoint, Target};
use crate::failover::{FailoverReport, Transport};

pub(super) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

pub(super) fn msf(x: Option<f64>) -> String {
    x.map_or_else(|| "never".to_string(), |v| format!("{v:.0} ms"))
}

pub(super) fn recovery<'a>(figures: &'a [Figure], id: &str) -> Option<&'a [RecoveryPoint]> {
    figures
        .iter()
        .find(|f| f.id == id)
        .and_then(|f| match &f.data {
            FigureData::Recovery { points } => Some(points.as_slice()),
            _ => None,
        })
}

pub(super) fn perf<'a>(figures: &'a [Figure], id: &str) -> Option<&'a [PerfPoint]> {
    figures
        .iter()
        .find(|f| f.id == id)
        .and_then(|f| match &f.data {
            FigureData::Performance { points, .. } => Some(points.as_slice()),
            _ => None,
        })
}

/// Recovery over every run of `points` with `transport`: (recovered,
/// established).
pub(super) fn pooled(points: &[RecoveryPoint], transport: Transport) -> (usize, usize) {
    points
        .iter()
        .filter(|p| p.transport == transport)
        .map(super::loss::pooled)
        .fold((0, 0), |(r, e), (pr, pe)| (r + pr, e + pe))
}

pub(super) fn ratio((r, e): (usize, usize)) -> f64 {
    if e == 0 {
        1.0
    } else {
        r as f64 / e as f64
    }
}

pub(super) fn targets(crash: Option<&FailoverReport>, figures: &[Figure]) -> Vec<Target> {
    let mut t = Vec::new();
    let worst = |pts: &[RecoveryPoint]| {
        pts.iter()
            .map(|p| p.recovery_ratio)
            .fold(f64::INFINITY, f64::min)
    };
    if let Some(pts) = recovery(figures, "fig9") {
        let w = worst(pts);
        let sizes: Vec<String> = pts
            .iter()
            .map(|p| format!("{} {}", kb(p.object_size), pct(p.recovery_ratio)))
            .collect();
        t.push(Target {
            measure: "recovery, healthy link, every object size".into(),
            paper: "no better than without replication for objects < 5 KB".into(),
            ftfw: format!("worst {} ({})", pct(w), sizes.join(", ")),
            target: "100%".into(),
            met: Some(w >= 1.0),
        });
    }
    if let Some(pts) = recovery(figures, "fig11") {
        let f = ratio(pooled(pts, Transport::Ftfw));
        let u = ratio(pooled(pts, Transport::UdpBestEffort));
        let c = ratio(pooled(pts, Transport::Tcp));
        t.push(Target {
            measure: "recovery, 20% loss on the sync link (all sizes pooled)".into(),
            paper: "FT-FW best; TCP and UDP poor for objects > 10 KB".into(),
            ftfw: format!(
                "FT-FW {}, best-effort UDP {}, TCP {}",
                pct(f),
                pct(u),
                pct(c)
            ),
            target: "FT-FW >= 99%".into(),
            met: Some(f >= 0.99),
        });
    }
    let ttr = |id: &str| {
        recovery(figures, id).map(|pts| {
            pts.iter()
                .map(|p| format!("{} {}", p.transport, msf(p.time_to_recover_ms)))
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    let ftfw_ttr = |id: &str| {
        recovery(figures, id).and_then(|pts| {
            pts.iter()
                .find(|p| p.transport == Transport::Ftfw)
                .and_then(|p| p.time_to_recover_ms)
        })
    };
    if let Some(s) = ttr("fig13") {
        let v = ftfw_ttr("fig13");
        t.push(Target {
            measure: "time to recover, healthy link".into(),
            paper: "FT-FW and UDP 6-7 s, TCP 15 s".into(),
            ftfw: s,
            target: "FT-FW < 1 s".into(),
            met: Some(v.is_some_and(|v| v < 1000.0)),
        });
    } else if let Some(c) = crash {
        t.push(Target {
            measure: "time to recover, healthy link".into(),
            paper: "FT-FW and UDP 6-7 s, TCP 15 s".into(),
            ftfw: msf(c.time_to_recover_ms),
            target: "< 1 s".into(),
            met: Some(c.time_to_recover_ms.is_some_and(|v| v < 1000.0)),
        });
    }
    if let Some(s) = ttr("fig14") {
        let v = ftfw_ttr("fig14");
        t.push(Target {
            measure: "time to recover, 20% loss".into(),
            paper: "FT-FW about 9 s, TCP 15 s, UDP 130 s".into(),
            ftfw: s,
            target: "FT-FW < 1 s".into(),
            met: Some(v.is_some_and(|v| v < 1000.0)),
        });
    }
    if let Some(pts) = perf(figures, "fig6") {
        let worst = pts
            .iter()
            .max_by(|a, b| a.session_rate_drop.total_cmp(&b.session_rate_drop));
        if let Some(w) = worst {
            t.push(Target {
                measure: "session-rate drop with replication on (worst object size)".into(),
                paper: "14% (0-1 KB objects)".into(),
                ftfw: format!(
                    "{} at {} ({:.0} vs {:.0} sessions/s); with defer {}; fw1's worker capacity drop {}",
                    pct(w.session_rate_drop),
                    kb(w.object_size),
                    w.sessions_per_sec_on,
                    w.sessions_per_sec_off,
                    pct(w.session_rate_drop_defer),
                    pct(w.worker_capacity_drop)
                ),
                target: "<= 5%".into(),
                met: Some(w.session_rate_drop <= 0.05),
            });
        }
    }
    if let Some(pts) = perf(figures, "fig7") {
        let w = pts
            .iter()
            .map(|p| p.session_rate_drop)
            .fold(f64::NEG_INFINITY, f64::max);
        t.push(Target {
            measure: "session-rate drop with replication on, 50 ms RTT".into(),
            paper: "negligible".into(),
            ftfw: format!("worst {}", pct(w)),
            target: "<= 5%".into(),
            met: Some(w <= 0.05),
        });
    }
    t.extend(super::clusters::targets(figures));
    if let Some(FigureData::Performance {
        worker_busy_increase_max: Some(est),
        worker_busy_increase_max_lazy: lazy,
        worker_busy_increase_max_full: full,
        ..
    }) = figures.iter().find(|f| f.id == "fig6").map(|f| &f.data)
    {
        let best = lazy.map_or(*est, |l| l.min(*est));
        t.push(Target {
            measure:
                "fig6: fw1 worker CPU time per session, increase over no replication (worst size)"
                    .into(),
            paper: "-".into(),
            ftfw: format!(
                "level established {}, lazy {}, full eager {}",
                pct(*est),
                lazy.map_or_else(|| "-".into(), pct),
                full.map_or_else(|| "-".into(), pct)
            ),
            target: "<= 5% with level established or lazy replication".into(),
            met: Some(best <= 0.05),
        });
    }
    t
}
