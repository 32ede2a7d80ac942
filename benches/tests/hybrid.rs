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
    assert!(json["figures"][0]["data"]["worker_busy_increase_max"].is_f64());
    assert!(r
        .targets
        .iter()
        .any(|t| t.measure.starts_with("fig6: fw1 worker CPU time") && t.met.is_some()));
}
