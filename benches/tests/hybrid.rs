//! Figure 6 with the hybrid replication modes, tiny: one object size, a
//! few transfers per phase. Behaviour only (the settings ran, the fields
//! are there and consistent with the measured times), no timing.

use ftfw_lab::experiments::{self, FigureData, SuiteOpts};

#[test]
fn fig6_measures_level_established_and_lazy_beside_off_and_full() {
    let opts = SuiteOpts {
        experiments: vec!["fig6".into()],
        sizes: vec![20_000],
        perf_rounds: 1,
        perf_transfers: Some(60),
        concurrency: 16,
        seed: 3,
        ..SuiteOpts::default()
    };
    let r = experiments::run(&opts, true).unwrap();
    assert_eq!(r.figures.len(), 1);
    let FigureData::Performance {
        points,
        worker_busy_increase_max,
        worker_busy_increase_max_lazy,
        worker_busy_increase_max_full,
    } = &r.figures[0].data
    else {
        panic!("fig6 is a performance figure")
    };
    let [p] = points.as_slice() else {
        panic!("one point per object size: {points:?}")
    };
    assert_eq!(p.broken, 0, "{p:?}");
    assert_eq!(p.transfers, 60);
    let off = p.worker_us_per_session_off;
    let est = p
        .worker_us_per_session_established
        .expect("level established ran");
    let lazy = p.worker_us_per_session_lazy.expect("lazy ran");
    for w in [off, p.worker_us_per_session_on, est, lazy] {
        // A session of 20 KB costs the worker some CPU time, and finitely
        // much (the CPU clock of the worker thread advanced).
        assert!(w > 0.0 && w.is_finite(), "{p:?}");
    }
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(worker_busy_increase_max.unwrap(), est / off - 1.0));
    assert!(close(
        worker_busy_increase_max_lazy.unwrap(),
        lazy / off - 1.0
    ));
    assert!(close(
        worker_busy_increase_max_full.unwrap(),
        p.worker_us_per_session_on / off - 1.0
    ));
    // In the JSON and among the targets.
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["figures"]["fig6"]["worker_busy_increase_max"].is_f64());
    assert!(r
        .targets
        .iter()
        .any(|t| t.measure.starts_with("fig6: fw1 worker CPU time") && t.met.is_some()));
}

/// The three hybrid replication experiments, small: every figure there,
/// consistent with its runs; the migration moves every flow (more than
/// the resend queue holds, so an export that outran the peer's
/// acknowledgements would lose some) with no queue overflow.
#[test]
fn lazy_levels_and_migration_report_their_figures() {
    use ftfw_lab::experiments::{HybridOpts, LazyOpts};
    let opts = SuiteOpts {
        experiments: vec!["lazy".into(), "levels".into(), "migration".into()],
        seed: 5,
        lazy: LazyOpts {
            thresholds: vec![0.125, 0.5],
            connections: 3_000,
            seeds: 2,
            crashes: 10,
            ..LazyOpts::default()
        },
        hybrid: HybridOpts {
            seeds: 2,
            level_transfers: 40,
            level_concurrency: 10,
            migration_flows: vec![2_000, 150_000],
            ..HybridOpts::default()
        },
        ..SuiteOpts::default()
    };
    let r = experiments::run(&opts, true).unwrap();
    assert!(r.figures.is_empty());

    let lazy = r.lazy.as_ref().expect("lazy ran");
    assert_eq!(lazy.points.len(), 4, "2 latencies x 2 thresholds");
    for p in &lazy.points {
        assert_eq!(p.runs.len(), 2);
        assert_eq!(p.saved_ratio.n, 2);
        assert!(p.saved_ratio.min <= p.saved_ratio.median);
        assert!(p.saved_ratio.median <= p.saved_ratio.max);
        assert!(p.runs.iter().all(|x| x.sent <= x.changes && x.changes > 0));
    }
    let at = |t: f64| lazy.points.iter().filter(move |p| p.threshold == t);
    let saved_min = at(0.125).map(|p| p.saved_ratio.median).fold(1.0, f64::min);
    let lost_max = at(0.125).map(|p| p.lost_ratio.median).fold(0.0, f64::max);
    assert_eq!(lazy.saved_ratio, saved_min);
    assert_eq!(lazy.wrong_ratio, lost_max);
    assert!(lazy.saved_ratio > 0.0 && lazy.saved_ratio < 1.0, "{lazy:?}");

    let m = r.migration.as_ref().expect("migration ran");
    assert_eq!(m.flows, 150_000);
    assert_eq!(m.points.len(), 2);
    for p in &m.points {
        for run in &p.runs {
            assert_eq!(run.flows_on_backup, p.flows as u64, "{run:?}");
            assert!(run.complete_ms.is_some(), "{run:?}");
            assert!(run.acked_ms <= run.switch_ms, "{run:?}");
            assert_eq!(run.sync_counters[2], 0, "queue overflows: {run:?}");
            assert_eq!(run.sync_counters[3], 0, "messages lost: {run:?}");
            assert_eq!(run.backup_external_full, 0, "{run:?}");
        }
    }
    assert_eq!(m.secs, m.points[1].secs.median);

    let l = r.levels.as_ref().expect("levels ran");
    assert_eq!(l.points.len(), 9, "3 write modes x 3 levels");
    for p in &l.points {
        assert_eq!(p.broken, 0, "{p:?}");
        assert_eq!(p.setup_median_ms.n, 2, "{p:?}");
        assert!(p.setup_median_ms.median > 0.0, "{p:?}");
    }
    assert!(l.sync_round_trip_us.is_finite() && l.sync_added_per_change_us.is_finite());

    let json = serde_json::to_value(&r).unwrap();
    assert!(json["lazy"]["saved_ratio"].is_f64());
    assert!(json["lazy"]["wrong_ratio"].is_f64());
    assert_eq!(json["migration"]["flows"], 150_000);
    assert!(json["migration"]["secs"].is_f64());
    for m in ["lazy (", "proactive migration", "`sync` writes"] {
        assert!(
            r.targets.iter().any(|t| t.measure.starts_with(m)),
            "target {m}: {:?}",
            r.targets
        );
    }
    let dir = std::env::temp_dir().join(format!("ftfw-lab-hybrid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = ftfw_lab::plot::write_all(&r, &dir).unwrap();
    assert_eq!(files.len(), 3);
    for f in &files {
        let svg = std::fs::read_to_string(f).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{f:?}");
    }
    let md = experiments::markdown(&r);
    assert!(md.contains("## Bayes lazy replication") && md.contains("## Proactive migration"));
    let _ = std::fs::remove_dir_all(&dir);
}
