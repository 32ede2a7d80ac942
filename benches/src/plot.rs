//! `ftfw-lab failover --plot DIR`: one SVG per experiment, laid out like
//! the paper's figures (rates and recovery against object size on a log
//! axis; time to recover per sync transport as bars).

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use plotters::prelude::*;

use crate::experiments::{
    ClusterPerfPoint, ClusterRecoveryPoint, Figure, FigureData, PerfPoint, RecoveryPoint,
    SeedSpread, Spread, SuiteReport, FIG8_SETTINGS,
};
use crate::failover::Transport;

const SIZE: (u32, u32) = (900, 420);

fn colour(i: usize) -> RGBColor {
    [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ][i % 4]
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

fn kb(size: usize) -> f64 {
    size as f64 / 1000.0
}

/// One panel: `series` of (label, points) against object size.
fn size_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    y_max: f64,
    legend: SeriesLabelPosition,
) -> anyhow::Result<()> {
    size_panel_whiskers(area, caption, y_desc, series, &[], y_max, legend)
}

/// [`size_panel`] with min-max whiskers: `whiskers[i]` holds (x, min,
/// max) of series `i`.
fn size_panel_whiskers(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    whiskers: &[Vec<(f64, f64, f64)>],
    y_max: f64,
    legend: SeriesLabelPosition,
) -> anyhow::Result<()> {
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
    let lo = xs.clone().fold(f64::INFINITY, f64::min);
    let hi = xs.fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(
            ((lo / 1.5).max(1e-3)..(hi * 1.5).max(1e-2)).log_scale(),
            0.0..y_max,
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("object size (KB)")
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .draw()
        .map_err(err)?;
    for (i, (label, pts)) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))
            .map_err(err)?;
        if let Some(w) = whiskers.get(i) {
            chart
                .draw_series(w.iter().map(|&(x, lo, hi)| {
                    PathElement::new(vec![(x, lo), (x, hi)], c.stroke_width(1))
                }))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Series of medians and their whiskers.
type Whiskered = (Vec<(String, Vec<(f64, f64)>)>, Vec<Vec<(f64, f64, f64)>>);

fn whiskered<P>(
    groups: &[(String, Vec<&P>)],
    x: impl Fn(&P) -> f64,
    y: impl Fn(&P) -> Option<Spread>,
) -> Whiskered {
    let mut series = Vec::new();
    let mut whiskers = Vec::new();
    for (label, pts) in groups {
        let v: Vec<(f64, Spread)> = pts.iter().filter_map(|p| Some((x(p), y(p)?))).collect();
        series.push((
            label.clone(),
            v.iter().map(|(x, s)| (*x, s.median)).collect(),
        ));
        whiskers.push(v.iter().map(|(x, s)| (*x, s.min, s.max)).collect());
    }
    (series, whiskers)
}

fn top(w: &Whiskered) -> f64 {
    w.1.iter()
        .flat_map(|v| v.iter().map(|t| t.2))
        .chain(w.0.iter().flat_map(|(_, p)| p.iter().map(|t| t.1)))
        .fold(1.0, f64::max)
        * 1.15
}

fn cluster_perf(path: &Path, f: &Figure, points: &[ClusterPerfPoint]) -> anyhow::Result<()> {
    let size = (SIZE.0 * 3 / 2, SIZE.1);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(&format!("{} ({})", f.title, f.id), ("sans-serif", 18))
        .map_err(err)?;
    let panels = root.split_evenly((1, 3));
    let groups: Vec<(String, Vec<&ClusterPerfPoint>)> = FIG8_SETTINGS
        .iter()
        .map(|s| {
            (
                (*s).to_string(),
                points.iter().filter(|p| p.setting == *s).collect(),
            )
        })
        .collect();
    let x = |p: &ClusterPerfPoint| kb(p.object_size);
    let sessions = whiskered(&groups, x, |p| p.sessions_per_sec);
    let bound = whiskered(&groups, x, |p| p.worker_bound_sessions_per_sec);
    let data = whiskered(&groups, x, |p| p.data_rate_mbps);
    for (area, caption, y, w, legend) in [
        (
            &panels[0],
            "Session rate (this machine)",
            "sessions/s",
            &sessions,
            SeriesLabelPosition::UpperRight,
        ),
        (
            &panels[1],
            "Worker-bound session rate (a core per node)",
            "sessions/s",
            &bound,
            SeriesLabelPosition::UpperRight,
        ),
        (
            &panels[2],
            "Data rate",
            "Mbit/s",
            &data,
            SeriesLabelPosition::UpperLeft,
        ),
    ] {
        size_panel_whiskers(area, caption, y, &w.0, &w.1, top(w), legend)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn fig12(path: &Path, f: &Figure, points: &[ClusterRecoveryPoint]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(&format!("{} ({})", f.title, f.id), ("sans-serif", 16))
        .map_err(err)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let rec = vec![(
        "worst run".to_string(),
        points
            .iter()
            .map(|p| (kb(p.object_size), p.recovery_ratio_min * 100.0))
            .collect::<Vec<_>>(),
    )];
    size_panel(
        &left,
        "Established flows recovered",
        "recovered (%)",
        &rec,
        105.0,
        SeriesLabelPosition::LowerLeft,
    )?;
    let all: Vec<&ClusterRecoveryPoint> = points.iter().collect();
    let groups = [
        ("every bucket forwarded again".to_string(), all.clone()),
        ("transfers moving again".to_string(), all),
    ];
    let x = |p: &ClusterRecoveryPoint| kb(p.object_size);
    let a = whiskered(&groups[..1], x, |p| p.time_to_recover_ms);
    let b = whiskered(&groups[1..], x, |p| p.time_to_resume_ms);
    let w: Whiskered = (
        a.0.into_iter().chain(b.0).collect(),
        a.1.into_iter().chain(b.1).collect(),
    );
    size_panel_whiskers(
        &right,
        "Time to recover",
        "ms after the crash",
        &w.0,
        &w.1,
        top(&w),
        SeriesLabelPosition::UpperLeft,
    )?;
    root.present().map_err(err)?;
    Ok(())
}

/// A panel against the number of nodes (linear axis).
fn nodes_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    w: &Whiskered,
) -> anyhow::Result<()> {
    let xs = w.0.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
    let hi = xs.fold(2.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(1.0..hi + 1.0, 0.0..top(w))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("nodes")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()
        .map_err(err)?;
    for (i, ((label, pts), whisk)) in w.0.iter().zip(&w.1).enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))
            .map_err(err)?;
        chart
            .draw_series(
                whisk.iter().map(|&(x, lo, hi)| {
                    PathElement::new(vec![(x, lo), (x, hi)], c.stroke_width(1))
                }),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    Ok(())
}

fn clusters(path: &Path, f: &Figure, points: &[ClusterRecoveryPoint]) -> anyhow::Result<()> {
    let size = (SIZE.0 * 3 / 2, SIZE.1);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(&format!("{} ({})", f.title, f.id), ("sans-serif", 16))
        .map_err(err)?;
    let panels = root.split_evenly((1, 3));
    let by = |rep: &str| -> Vec<&ClusterRecoveryPoint> {
        points
            .iter()
            .filter(|p| p.replicate == rep && p.fault == crate::failover::Fault::Crash)
            .collect()
    };
    let groups = vec![
        ("replicate to the backup".to_string(), by("backups")),
        ("replicate to every peer".to_string(), by("all")),
    ];
    let x = |p: &ClusterRecoveryPoint| p.nodes as f64;
    let ttr = whiskered(&groups, x, |p| p.time_to_recover_ms);
    nodes_panel(
        &panels[0],
        "Every bucket forwarded again",
        "ms after the crash",
        &ttr,
    )?;
    let mut setup = whiskered(&groups, x, |p| p.setup_median_ms);
    let after = whiskered(&groups, x, |p| p.setup_after_fault_median_ms);
    for ((label, pts), w) in after.0.into_iter().zip(after.1) {
        setup
            .0
            .push((format!("{label}, opened after the crash"), pts));
        setup.1.push(w);
    }
    nodes_panel(&panels[1], "Connection set-up (median)", "ms", &setup)?;
    let mut bytes = whiskered(&groups, x, |p| p.sync_bytes_per_flow);
    for (label, pts) in &groups {
        bytes.0.push((
            format!("expected ({})", label.trim_start_matches("replicate ")),
            pts.iter()
                .filter_map(|p| Some((x(p), p.expected_bytes_per_flow?)))
                .collect(),
        ));
        bytes.1.push(Vec::new());
    }
    nodes_panel(&panels[2], "Replication bytes per flow", "bytes", &bytes)?;
    root.present().map_err(err)?;
    Ok(())
}

fn perf(path: &Path, f: &Figure, points: &[PerfPoint]) -> anyhow::Result<()> {
    // Figure 6 also shows the worker's cost per session by setting (level
    // established and lazy included) in a second row.
    let hybrid = points
        .iter()
        .any(|p| p.worker_us_per_session_established.is_some());
    let size = if hybrid { (SIZE.0, SIZE.1 * 2) } else { SIZE };
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(&format!("{} ({})", f.title, f.id), ("sans-serif", 18))
        .map_err(err)?;
    let (top_row, bottom) = if hybrid {
        let (t, b) = root.split_vertically(SIZE.1);
        (t, Some(b))
    } else {
        (root.clone(), None)
    };
    if let Some(b) = &bottom {
        crate::plot_hybrid::worker_panel(b, points)?;
    }
    let (left, right) = top_row.split_horizontally(SIZE.0 / 2);
    let s = |g: fn(&PerfPoint) -> f64| {
        points
            .iter()
            .map(|p| (kb(p.object_size), g(p)))
            .collect::<Vec<_>>()
    };
    let sessions = [
        ("replication off".to_string(), s(|p| p.sessions_per_sec_off)),
        ("replication on".to_string(), s(|p| p.sessions_per_sec_on)),
        (
            "on, with defer".to_string(),
            s(|p| p.sessions_per_sec_defer),
        ),
    ];
    let data = [
        ("replication off".to_string(), s(|p| p.data_rate_mbps_off)),
        ("replication on".to_string(), s(|p| p.data_rate_mbps_on)),
        ("on, with defer".to_string(), s(|p| p.data_rate_mbps_defer)),
    ];
    let max = |ser: &[(String, Vec<(f64, f64)>)]| {
        ser.iter()
            .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
            .fold(1.0, f64::max)
            * 1.15
    };
    size_panel(
        &left,
        "Session rate",
        "sessions/s",
        &sessions,
        max(&sessions),
        SeriesLabelPosition::UpperRight,
    )?;
    size_panel(
        &right,
        "Data rate",
        "Mbit/s",
        &data,
        max(&data),
        SeriesLabelPosition::UpperLeft,
    )?;
    root.present().map_err(err)?;
    Ok(())
}

fn recovery(path: &Path, f: &Figure, points: &[RecoveryPoint]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (SIZE.0 / 2 + 100, SIZE.1)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(&format!("{} ({})", f.title, f.id), ("sans-serif", 16))
        .map_err(err)?;
    let series: Vec<(String, Vec<(f64, f64)>)> = Transport::ALL
        .iter()
        .filter_map(|t| {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.transport == *t)
                .map(|p| (kb(p.object_size), p.recovery_ratio * 100.0))
                .collect();
            (!pts.is_empty()).then(|| (t.as_str().to_string(), pts))
        })
        .collect();
    // Points over several seeds (loss): their min and max as series too.
    let mut series = series;
    for t in Transport::ALL {
        for (name, pick) in [
            (
                "min",
                (|s: &SeedSpread| s.recovery_ratio.min) as fn(&SeedSpread) -> f64,
            ),
            ("max", |s: &SeedSpread| s.recovery_ratio.max),
        ] {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.transport == t)
                .filter_map(|p| Some((kb(p.object_size), pick(p.spread.as_ref()?) * 100.0)))
                .collect();
            if !pts.is_empty() {
                series.push((format!("{t} {name} of seeds"), pts));
            }
        }
    }
    size_panel(
        &root,
        "Established flows recovered",
        "recovered (%)",
        &series,
        105.0,
        SeriesLabelPosition::LowerLeft,
    )?;
    root.present().map_err(err)?;
    Ok(())
}

fn time(path: &Path, f: &Figure, points: &[RecoveryPoint]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (SIZE.0 / 2 + 100, SIZE.1)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(&format!("{} ({})", f.title, f.id), ("sans-serif", 16))
        .map_err(err)?;
    let max = points
        .iter()
        .filter_map(|p| p.time_to_recover_ms)
        .fold(100.0, f64::max)
        * 1.2;
    let names: Vec<String> = points
        .iter()
        .map(|p| p.transport.as_str().to_string())
        .collect();
    let n = points.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(points.len().max(1))
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("time to recover (ms)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    for (i, p) in points.iter().enumerate() {
        let x = i as f64;
        let c = colour(i);
        match p.time_to_recover_ms {
            Some(v) => {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.3, 0.0), (x + 0.3, v)],
                        c.filled(),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{v:.0} ms, {:.0}%", p.recovery_ratio * 100.0),
                        (x - 0.28, v + max * 0.03),
                        ("sans-serif", 13),
                    )))
                    .map_err(err)?;
            }
            None => {
                chart
                    .draw_series(std::iter::once(Text::new(
                        "no flow recovered".to_string(),
                        (x - 0.28, max * 0.05),
                        ("sans-serif", 13),
                    )))
                    .map_err(err)?;
            }
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `DIR/<id>.svg` for every figure of `r`; returns the files.
pub fn write_all(r: &SuiteReport, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for f in &r.figures {
        let path = dir.join(format!("{}.svg", f.id));
        match (&f.data, f.id.as_str()) {
            (FigureData::Performance { points, .. }, _) => perf(&path, f, points)?,
            (FigureData::Recovery { points }, "fig13" | "fig14") => time(&path, f, points)?,
            (FigureData::Recovery { points }, _) => recovery(&path, f, points)?,
            (FigureData::ClusterPerf { points, .. }, _) => cluster_perf(&path, f, points)?,
            (FigureData::ClusterRecovery { points, .. }, "clusters") => clusters(&path, f, points)?,
            (FigureData::ClusterRecovery { points, .. }, _) => fig12(&path, f, points)?,
        }
        files.push(path);
    }
    files.extend(crate::plot_hybrid::write(r, dir)?);
    Ok(files)
}
