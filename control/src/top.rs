//! `ftfwctl top`: a live view of one node, from the same console answers
//! as the metrics ([`Snapshot`]): role and peers, packets per second per
//! worker, bits per second per port, flows and new flows per second, the
//! sync queues and the peer's silence, the last takeover with its steps.
//! Rates are the difference of two snapshots over the time between them.

use std::time::{Duration, Instant};

use ratatui::backend::{Backend, TestBackend};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::{Frame, Terminal};

use crate::metrics::Snapshot;

/// Seconds between refreshes.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Two snapshots and the time between them.
#[derive(Debug)]
pub struct Sample<'a> {
    /// The earlier snapshot (`None` on the first refresh: no rates yet).
    pub prev: Option<&'a Snapshot>,
    /// The latest.
    pub cur: &'a Snapshot,
    /// Time between them.
    pub dt: Duration,
}

fn rate(prev: Option<u64>, cur: u64, dt: Duration) -> Option<f64> {
    let secs = dt.as_secs_f64();
    prev.filter(|_| secs > 0.0)
        .map(|p| cur.saturating_sub(p) as f64 / secs)
}

/// A rate for people: `12.3k`, `4.56M`; `-` before there is one.
pub fn human(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(v) if v >= 1e9 => format!("{:.2}G", v / 1e9),
        Some(v) if v >= 1e6 => format!("{:.2}M", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1}k", v / 1e3),
        Some(v) => format!("{v:.0}"),
    }
}

fn header(s: &Sample<'_>) -> Vec<Line<'static>> {
    let st = &s.cur.status;
    let mut peers = String::new();
    if let Some(e) = &st.election {
        let master = e.get("master").map_or("none".into(), ToString::to_string);
        peers = format!("  election: master {master}");
        if let Some(ps) = e.get("peers").and_then(|p| p.as_array()) {
            for p in ps {
                let node = p.get("node").map(ToString::to_string).unwrap_or_default();
                let state = p.get("state").and_then(|v| v.as_str()).unwrap_or("?");
                peers.push_str(&format!(" {node}:{state}"));
            }
        }
    }
    if let Some(sync) = &s.cur.sync {
        peers.push_str(&format!("  peer {} {}", sync.destination, sync.peer_state));
    }
    if let Some(c) = &s.cur.cluster {
        if let Some(nodes) = c.coordinator.get("nodes").and_then(|n| n.as_array()) {
            peers.push_str("  members");
            for n in nodes {
                let id = n.get("node").map(ToString::to_string).unwrap_or_default();
                let alive = n.get("alive").and_then(|a| a.as_bool()).unwrap_or(false);
                peers.push_str(&format!(" {id}:{}", if alive { "up" } else { "down" }));
            }
        }
    }
    vec![
        Line::from(format!(
            "ftfwd {}  role {}  failover {}  up {}s  workers {}",
            st.version, st.role, st.failover, st.uptime_secs, st.workers
        ))
        .style(Style::default().add_modifier(Modifier::BOLD)),
        Line::from(format!(
            "peers:{}",
            if peers.is_empty() {
                " none".into()
            } else {
                peers
            }
        )),
    ]
}

fn workers_table(s: &Sample<'_>) -> Table<'static> {
    let prev = s.prev.map(|p| &p.stats.workers);
    let mut rows: Vec<Row<'static>> = Vec::new();
    let mut total = (0u64, 0u64, 0u64, 0u64);
    let mut prev_total = (0u64, 0u64);
    for (i, w) in s.cur.stats.workers.iter().enumerate() {
        let p = prev.and_then(|p| p.get(i));
        let pps = rate(p.map(|p| p.rx), w.rx, s.dt);
        let new = rate(p.map(|p| p.flows_created), w.flows_created, s.dt);
        rows.push(Row::new(vec![
            format!("worker {i}"),
            human(pps),
            human(rate(p.map(|p| p.tx), w.tx, s.dt)),
            w.flows.to_string(),
            human(new),
            human(rate(
                p.map(|p| p.dropped_by_rule + p.invalid),
                w.dropped_by_rule + w.invalid,
                s.dt,
            )),
        ]));
        total = (
            total.0 + w.rx,
            total.1 + w.tx,
            total.2 + w.flows,
            total.3 + w.flows_created,
        );
        if let Some(p) = p {
            prev_total = (prev_total.0 + p.rx, prev_total.1 + p.flows_created);
        }
    }
    let has_prev = prev.is_some();
    rows.push(
        Row::new(vec![
            "total".to_string(),
            human(rate(has_prev.then_some(prev_total.0), total.0, s.dt)),
            "".into(),
            total.2.to_string(),
            human(rate(has_prev.then_some(prev_total.1), total.3, s.dt)),
            "".into(),
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    );
    Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Length(10),
        ],
    )
    .header(
        Row::new(vec![
            "",
            "rx pkt/s",
            "tx pkt/s",
            "flows",
            "new flows/s",
            "drop/s",
        ])
        .style(Style::default().add_modifier(Modifier::UNDERLINED)),
    )
}

fn ports_line(s: &Sample<'_>) -> Line<'static> {
    let mut out = String::from("ports bit/s:");
    for p in &s.cur.stats.ports {
        let prev = s
            .prev
            .and_then(|x| x.stats.ports.iter().find(|q| q.name == p.name));
        let rx = rate(
            prev.map(|q| q.stats.rx_bytes * 8),
            p.stats.rx_bytes * 8,
            s.dt,
        );
        let tx = rate(
            prev.map(|q| q.stats.tx_bytes * 8),
            p.stats.tx_bytes * 8,
            s.dt,
        );
        out.push_str(&format!("  {} rx {} tx {}", p.name, human(rx), human(tx)));
    }
    Line::from(out)
}

fn sync_line(s: &Sample<'_>) -> Line<'static> {
    match &s.cur.sync {
        None => Line::from("sync: not configured"),
        Some(y) => {
            let lag = y
                .peer_last_heard_ms
                .map_or("never".into(), |ms| format!("{ms} ms ago"));
            Line::from(format!(
                "sync: queue {} unacked {} external {} heard {}  out {}/s",
                y.tx_queue,
                y.resend_queue,
                y.external_flows,
                lag,
                human(rate(
                    s.prev.and_then(|p| p.sync.as_ref()).map(|p| p.msgs_out),
                    y.msgs_out,
                    s.dt
                )),
            ))
        }
    }
}

fn takeover_lines(s: &Sample<'_>) -> Vec<Line<'static>> {
    match &s.cur.status.last_takeover {
        None => vec![Line::from("last takeover: none")],
        Some(t) => {
            let mut v = vec![Line::from(format!(
                "last takeover: at {} in {} us, {} flows committed",
                t.at, t.total_us, t.flows_committed
            ))];
            v.extend(t.steps.iter().map(|st| {
                Line::from(format!("  {:<16} {:>9} us {}", st.step, st.micros, st.note))
            }));
            v
        }
    }
}

/// Draws one frame.
pub fn draw(f: &mut Frame<'_>, s: &Sample<'_>) {
    let workers = u16::try_from(s.cur.stats.workers.len()).unwrap_or(u16::MAX);
    let chunks = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(workers.saturating_add(2)),
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .split(f.area());
    f.render_widget(Paragraph::new(header(s)), chunks[0]);
    f.render_widget(workers_table(s), chunks[1]);
    f.render_widget(Paragraph::new(vec![ports_line(s), sync_line(s)]), chunks[2]);
    f.render_widget(
        Paragraph::new(takeover_lines(s)).block(Block::default()),
        chunks[3],
    );
    f.render_widget(Paragraph::new("q quits"), chunks[4]);
}

/// One frame as text, `width` × `height` (`--once`).
pub fn render_text(s: &Sample<'_>, width: u16, height: u16) -> String {
    let mut term = match Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(e) => return format!("cannot draw: {e}\n"),
    };
    if let Err(e) = term.draw(|f| draw(f, s)) {
        return format!("cannot draw: {e}\n");
    }
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The live view until `q` (or Esc, or Ctrl-C): `fetch` is asked for a
/// snapshot every [`REFRESH`].
pub fn run_live(mut fetch: impl FnMut() -> Result<Snapshot, String>) -> Result<(), String> {
    use crossterm::event::{self, Event, KeyCode, KeyModifiers};
    let mut term = ratatui::init();
    let result = (|| {
        let mut prev: Option<(Instant, Snapshot)> = None;
        loop {
            let cur = fetch()?;
            let now = Instant::now();
            let sample = Sample {
                prev: prev.as_ref().map(|(_, s)| s),
                cur: &cur,
                dt: prev.as_ref().map_or(Duration::ZERO, |(t, _)| now - *t),
            };
            term.draw(|f| draw(f, &sample)).map_err(|e| e.to_string())?;
            prev = Some((now, cur));
            let deadline = now + REFRESH;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if !event::poll(left).map_err(|e| e.to_string())? {
                    break;
                }
                if let Event::Key(k) = event::read().map_err(|e| e.to_string())? {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    let _ = term.backend_mut().flush();
    result
}
