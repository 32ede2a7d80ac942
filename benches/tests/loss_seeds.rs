//! A loss point of the failover lab runs over several seeds and reports
//! min, median and max (issue 13: one run at 20% loss said 0 of 92, others
//! 83-100%).

use std::process::Command;

#[test]
fn a_loss_point_reports_min_median_and_max_over_three_seeds() {
    let dir = std::env::temp_dir().join(format!("ftfw-lab-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let report = dir.join("lab.md");
    let out = Command::new(env!("CARGO_BIN_EXE_ftfw-lab"))
        .args([
            "failover",
            "--experiments",
            "fig11",
            "--loss-sizes",
            "20000",
            "--seed",
            "5",
            "--seeds",
            "3",
            "--json",
            "--report",
        ])
        .arg(&report)
        .output()
        .expect("ftfw-lab runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let points = j["figures"]["fig11"]["points"].as_array().expect("points");
    assert_eq!(points.len(), 3, "one point per transport: {j}");
    for p in points {
        let s = &p["spread"];
        assert_eq!(s["seeds"], 3, "{p}");
        let runs = s["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 3, "{p}");
        // Three distinct seeds, the first the point's usual one.
        let seeds: Vec<u64> = runs.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
        assert_eq!(seeds[0], 5 + 20_000, "{p}");
        assert!(seeds[0] != seeds[1] && seeds[1] != seeds[2], "{p}");
        let mut ratios: Vec<f64> = runs
            .iter()
            .map(|r| r["recovery_ratio"].as_f64().unwrap())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let r = &s["recovery_ratio"];
        assert_eq!(r["min"].as_f64(), Some(ratios[0]), "{p}");
        assert_eq!(r["median"].as_f64(), Some(ratios[1]), "{p}");
        assert_eq!(r["max"].as_f64(), Some(ratios[2]), "{p}");
        // The point's own fields are the median run's.
        assert_eq!(p["recovery_ratio"].as_f64(), Some(ratios[1]), "{p}");
        for run in runs {
            assert!(run["established"].as_u64().unwrap() > 0, "{run}");
        }
    }
    // FT-FW recovers every established flow in every seed.
    assert_eq!(points[0]["transport"], "ftfw");
    assert_eq!(points[0]["spread"]["recovery_ratio"]["min"], 1.0, "{j}");
    let md = std::fs::read_to_string(&report).expect("a report");
    assert!(md.contains("median (min-max)"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
