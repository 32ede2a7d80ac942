//! `ftfw-lab failover --plot DIR`: one SVG per experiment, laid out like
//! the paper's figures (rates and recovery against object size on a log
//! axis; time to recover per sync transport as bars).

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use plotters::prelude::*;

use crate::experiments::{Figure, FigureData, PerfPoint, RecoveryPoint, SuiteReport};
use crate::failover::Transport;

const SIZE: (u32, u32) = (900, 420);

fn colour(i: usize) -> RGBColor {
    [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ][i % 3]
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

fn perf(path: &Path, f: &Figure, points: &[PerfPoint]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(&format!("{} ({})", f.title, f.id), ("sans-serif", 18))
        .map_err(err)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
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
            (FigureData::Performance { points }, _) => perf(&path, f, points)?,
            (FigureData::Recovery { points }, "fig13" | "fig14") => time(&path, f, points)?,
            (FigureData::Recovery { points }, _) => recovery(&path, f, points)?,
        }
        files.push(path);
    }
    Ok(files)
}
