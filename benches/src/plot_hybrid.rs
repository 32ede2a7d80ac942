//! The hybrid replication experiments' plots (`lazy.svg`,
//! `migration.svg`, `levels.svg`) and figure 6's worker-cost panel.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use plotters::prelude::*;

use crate::experiments::hybrid::{LEVELS, WRITES};
use crate::experiments::lazy::Latency;
use crate::experiments::{LazyReport, LevelsReport, MigrationReport, PerfPoint, Spread};

const SIZE: (u32, u32) = (900, 420);

fn colour(i: usize) -> RGBColor {
    [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(140, 86, 75),
    ][i % 6]
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// A series: label, (x, median) points and (x, min, max) whiskers.
type Series = (String, Vec<(f64, f64)>, Vec<(f64, f64, f64)>);

fn of_spreads(label: &str, pts: impl Iterator<Item = (f64, Spread)>, scale: f64) -> Series {
    let v: Vec<(f64, Spread)> = pts.collect();
    (
        label.to_string(),
        v.iter().map(|(x, s)| (*x, s.median * scale)).collect(),
        v.iter()
            .map(|(x, s)| (*x, s.min * scale, s.max * scale))
            .collect(),
    )
}

/// One panel with a linear x axis; `x_fmt` labels the ticks.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    x_fmt: &dyn Fn(&f64) -> String,
    x_labels: usize,
) -> anyhow::Result<()> {
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let (lo, hi) = (
        xs.clone().fold(f64::INFINITY, f64::min),
        xs.fold(f64::NEG_INFINITY, f64::max),
    );
    let (lo, hi) = if lo.is_finite() && hi > lo {
        let pad = (hi - lo) * 0.08;
        (lo - pad, hi + pad)
    } else {
        (0.0, 1.0)
    };
    let y_max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|w| w.2).chain(s.1.iter().map(|p| p.1)))
        .filter(|v| v.is_finite())
        .fold(1e-3, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(lo..hi, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_fmt)
        .x_labels(x_labels)
        .draw()
        .map_err(err)?;
    for (i, (label, pts, whiskers)) in series.iter().enumerate() {
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
                whiskers.iter().map(|&(x, lo, hi)| {
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

fn lazy(path: &Path, r: &LazyReport) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            &format!(
                "Bayes lazy replication, {} ms barrier (lazy; hFT-FW figs 3-10)",
                r.barrier_ms
            ),
            ("sans-serif", 18),
        )
        .map_err(err)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    for (area, lat) in [
        (left, Latency::Homogeneous),
        (right, Latency::Heterogeneous),
    ] {
        let pts: Vec<_> = r.points.iter().filter(|p| p.latency == lat).collect();
        let series = [
            of_spreads(
                "messages saved",
                pts.iter().map(|p| (p.threshold, p.saved_ratio)),
                100.0,
            ),
            of_spreads(
                "wrong predictions",
                pts.iter().map(|p| (p.threshold, p.wrong_prediction_ratio)),
                100.0,
            ),
            of_spreads(
                "established lost at a crash",
                pts.iter().map(|p| (p.threshold, p.lost_ratio)),
                100.0,
            ),
        ];
        panel(
            &area,
            &format!("{lat:?} latency"),
            "classification threshold",
            "%",
            &series,
            &|v| format!("{v:.3}"),
            8,
        )?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn migration(path: &Path, r: &MigrationReport) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "Proactive migration time (migration; hFT-FW fig 11)",
            ("sans-serif", 18),
        )
        .map_err(err)?;
    let x = |n: usize| (n.max(1) as f64).log10();
    let series = [
        of_spreads(
            "table acknowledged by the backup",
            r.points.iter().map(|p| (x(p.flows), p.secs)),
            1.0,
        ),
        of_spreads(
            "backup active",
            r.points.iter().map(|p| (x(p.flows), p.switch_secs)),
            1.0,
        ),
    ];
    panel(
        &root,
        "",
        "flows (log scale)",
        "seconds",
        &series,
        &|v| format!("{:.0}", 10f64.powf(*v)),
        6,
    )?;
    root.present().map_err(err)?;
    Ok(())
}

fn levels(path: &Path, r: &LevelsReport) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "Connection set-up time by sync level and write mode (levels; a-priori figs 5-7)",
            ("sans-serif", 18),
        )
        .map_err(err)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let level_x = |l: &str| LEVELS.iter().position(|x| *x == l).unwrap_or(0) as f64;
    for (area, caption, pick) in [
        (
            left,
            "median",
            (|p: &crate::experiments::hybrid::LevelPoint| p.setup_median_ms)
                as fn(&crate::experiments::hybrid::LevelPoint) -> Spread,
        ),
        (right, "95th percentile", |p| p.setup_p95_ms),
    ] {
        let series: Vec<Series> = WRITES
            .iter()
            .map(|w| {
                of_spreads(
                    &format!("write {w}"),
                    r.points
                        .iter()
                        .filter(|p| p.write == *w)
                        .map(|p| (level_x(&p.level), pick(p))),
                    1.0,
                )
            })
            .collect();
        panel(
            &area,
            caption,
            "sync level",
            "ms",
            &series,
            &|v| {
                let i = v.round();
                if (v - i).abs() < 0.05 && (0.0..3.0).contains(&i) {
                    LEVELS[i as usize].to_string()
                } else {
                    String::new()
                }
            },
            3,
        )?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Figure 6's worker cost per session by replication setting (off, full,
/// defer, level established, lazy) against object size, drawn into `area`.
pub(crate) fn worker_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    points: &[PerfPoint],
) -> anyhow::Result<()> {
    let x = |p: &PerfPoint| (p.object_size.max(1) as f64 / 1000.0).log10();
    let s = |label: &str, f: &dyn Fn(&PerfPoint) -> Option<f64>| -> Series {
        (
            label.to_string(),
            points.iter().filter_map(|p| Some((x(p), f(p)?))).collect(),
            Vec::new(),
        )
    };
    let series = [
        s("replication off", &|p| Some(p.worker_us_per_session_off)),
        s("on (full)", &|p| Some(p.worker_us_per_session_on)),
        s("on, with defer", &|p| Some(p.worker_us_per_session_defer)),
        s("on, level established", &|p| {
            p.worker_us_per_session_established
        }),
        s("on, lazy", &|p| p.worker_us_per_session_lazy),
    ];
    panel(
        area,
        "fw1 worker CPU per session",
        "object size (KB, log scale)",
        "µs/session",
        &series,
        &|v| format!("{:.1}", 10f64.powf(*v)),
        6,
    )
}

/// Writes the hybrid experiments' plots of `r` into `dir`.
pub fn write(r: &crate::experiments::SuiteReport, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if let Some(l) = &r.lazy {
        let p = dir.join("lazy.svg");
        lazy(&p, l)?;
        files.push(p);
    }
    if let Some(m) = &r.migration {
        let p = dir.join("migration.svg");
        migration(&p, m)?;
        files.push(p);
    }
    if let Some(l) = &r.levels {
        let p = dir.join("levels.svg");
        levels(&p, l)?;
        files.push(p);
    }
    Ok(files)
}
