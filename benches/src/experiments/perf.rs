//! Figures 6 and 7: session and data rate, replication off vs on (and on
//! with defer; figure 6 also level `established` and lazy replication),
//! with fw1's worker CPU time per session.

use std::time::Duration;

use super::{kb, paper, perf_transfers, Figure, FigureData, PerfPoint, Progress, SuiteOpts};
use crate::failover::{Cluster, FailoverOpts};

/// Best of a performance point's rounds: sessions/s, Mbit/s, broken
/// transfers, worker µs/session, sync µs/session.
type Best = (f64, f64, usize, f64, f64);

pub(super) fn perf_figure(
    opts: &SuiteOpts,
    base: &FailoverOpts,
    id: &str,
    rtt: Duration,
    p: &mut Progress,
) -> anyhow::Result<Figure> {
    let phase = |size: usize| FailoverOpts {
        transfers: opts
            .perf_transfers
            .unwrap_or_else(|| perf_transfers(size, rtt, opts.concurrency)),
        object_size: size,
        no_crash: true,
        rtt,
        mirror_to_backup: false,
        ..base.clone()
    };
    // Best of `perf_rounds`, off, on and on with defer alternating, one
    // cluster each: (sessions/s, Mbit/s, broken, worker µs/session, sync
    // µs/session). Figure 6 adds level `established` and lazy replication
    // (the hybrid modes whose worker cost the issue targets).
    let mut settings = vec![
        PerfSetting::OFF,
        PerfSetting::ON,
        PerfSetting {
            defer: true,
            ..PerfSetting::ON
        },
    ];
    if id == "fig6" {
        settings.push(PerfSetting {
            level: Some("established"),
            ..PerfSetting::ON
        });
        settings.push(PerfSetting {
            lazy: Some(Duration::from_millis(200)),
            ..PerfSetting::ON
        });
    }
    let mut best: Vec<Vec<Best>> =
        vec![vec![(0.0, 0.0, 0, f64::INFINITY, f64::INFINITY); settings.len()]; opts.sizes.len()];
    for round in 0..opts.perf_rounds {
        for (k, set) in settings.iter().enumerate() {
            let mut cluster = Cluster::start(
                &FailoverOpts {
                    replication: set.replication,
                    defer: set.defer,
                    sync_level: set.level,
                    lazy_barrier: set.lazy,
                    ..base.clone()
                },
                |_| {},
            )?;
            for (i, &s) in opts.sizes.iter().enumerate() {
                p.step(&format!(
                    "{id}: replication {}, {}, round {}",
                    set.name(),
                    kb(s),
                    round + 1
                ));
                let r = cluster.traffic(
                    &FailoverOpts {
                        defer: set.defer,
                        sync_level: set.level,
                        lazy_barrier: set.lazy,
                        ..phase(s)
                    },
                    |_| {},
                )?;
                let b = &mut best[i][k];
                b.0 = b.0.max(r.sessions_per_sec);
                b.1 = b.1.max(r.data_rate_mbps);
                b.2 += r.broken_transfers;
                let per = |ms: f64| ms * 1000.0 / r.transfers_completed.max(1) as f64;
                b.3 = b.3.min(per(r.fw1_worker_busy_ms));
                b.4 = b.4.min(per(r.fw1_sync_cpu_ms.unwrap_or(0.0)));
            }
        }
    }
    let drop = |off: f64, on: f64| if off > 0.0 { 1.0 - on / off } else { 0.0 };
    let points = opts
        .sizes
        .iter()
        .zip(&best)
        .map(|(&s, b)| {
            let (off, on, de) = (&b[0], &b[1], &b[2]);
            let increase = |w: f64| w / off.3 - 1.0;
            PerfPoint {
                object_size: s,
                sessions_per_sec_off: off.0,
                sessions_per_sec_on: on.0,
                session_rate_drop: drop(off.0, on.0),
                sessions_per_sec_defer: de.0,
                session_rate_drop_defer: drop(off.0, de.0),
                data_rate_mbps_off: off.1,
                data_rate_mbps_on: on.1,
                data_rate_drop: drop(off.1, on.1),
                data_rate_mbps_defer: de.1,
                worker_us_per_session_off: off.3,
                worker_us_per_session_on: on.3,
                worker_us_per_session_defer: de.3,
                sync_us_per_session_on: on.4,
                worker_capacity_drop: drop(1.0 / off.3, 1.0 / on.3),
                worker_busy_increase: increase(on.3),
                worker_us_per_session_established: b.get(3).map(|e| e.3),
                worker_busy_increase_established: b.get(3).map(|e| increase(e.3)),
                worker_us_per_session_lazy: b.get(4).map(|l| l.3),
                worker_busy_increase_lazy: b.get(4).map(|l| increase(l.3)),
                transfers: phase(s).transfers,
                broken: b.iter().map(|x| x.2).sum(),
            }
        })
        .collect::<Vec<PerfPoint>>();
    let max_of = |f: fn(&PerfPoint) -> Option<f64>| points.iter().filter_map(f).reduce(f64::max);
    let worker_busy_increase_max = max_of(|p| p.worker_busy_increase_established);
    let worker_busy_increase_max_lazy = max_of(|p| p.worker_busy_increase_lazy);
    let worker_busy_increase_max_full = max_of(|p| Some(p.worker_busy_increase));
    Ok(Figure {
        id: id.into(),
        title: format!(
            "Performance with {} RTT, replication off vs on (and on with defer)",
            if rtt.is_zero() {
                "negligible".to_string()
            } else {
                format!("{} ms", rtt.as_millis())
            }
        ),
        rtt_ms: rtt.as_secs_f64() * 1000.0,
        sync_loss: 0.0,
        paper: paper(id).into(),
        data: FigureData::Performance {
            points,
            worker_busy_increase_max,
            worker_busy_increase_max_lazy,
            worker_busy_increase_max_full,
        },
    })
}

/// One setting of a performance figure.
#[derive(Debug, Clone, Copy)]
struct PerfSetting {
    replication: bool,
    defer: bool,
    level: Option<&'static str>,
    lazy: Option<Duration>,
}

impl PerfSetting {
    const OFF: PerfSetting = PerfSetting {
        replication: false,
        defer: false,
        level: None,
        lazy: None,
    };
    const ON: PerfSetting = PerfSetting {
        replication: true,
        ..PerfSetting::OFF
    };

    fn name(&self) -> String {
        match (self.replication, self.defer, self.level, self.lazy) {
            (false, ..) => "off".into(),
            (true, true, ..) => "on with defer".into(),
            (true, _, Some(l), _) => format!("on, level {l}"),
            (true, _, _, Some(b)) => format!("on, lazy ({} ms barrier)", b.as_millis()),
            _ => "on".into(),
        }
    }
}
