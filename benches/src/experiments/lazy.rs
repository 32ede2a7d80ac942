//! `lazy`: hFT-FW's Bayes lazy replication (section VI, figures 3-10),
//! messages saved and wrong predictions by classification threshold (the
//! paper's "barrier" 0.125 .. 0.50), with homogeneous and heterogeneous
//! client-server latencies.
//!
//! Trace-driven on the code ftfwd's sync thread runs ([`Lazy`], sans-IO,
//! so on a virtual clock): a seeded stream of TCP connections over 64
//! services (16 clients x 4 servers x 4 ports, the ports differing in the
//! share of long connections), each passing SYN_SENT, SYN_RECV,
//! ESTABLISHED, the FIN states and TIME_WAIT at the times its round trip
//! and its length give, then ending. Every state change goes through
//! `Lazy::on_change` and `poll_barrier` as in the sync thread; what they
//! return is "sent", i.e. what the backup holds. At crash instants spread
//! over the run, every connection past its handshake and not closing is
//! checked: it is lost when the backup holds no ESTABLISHED (or later)
//! state of it. The model leaves out the link: a sent change is held at
//! once (eager replication loses nothing here), so the figures are what
//! the predictor itself costs.

use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ftfw_dataplane::flow::{proto, status, FlowState, TcpState, Tuple};
use ftfw_dataplane::rng::splitmix64;
use ftfw_sync::engine::FlowKind;
use ftfw_sync::lazy::{Lazy, LazyConfig, Verdict};
use serde::Serialize;

use super::clusters::Spread;

/// Latency of the connections: the paper's two settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Latency {
    /// Every connection 30 ms RTT (the paper's measured ~30 ms).
    Homogeneous,
    /// RTT per connection from a normal distribution clipped to 20-500 ms
    /// (the paper: netem, normal, 20-500 ms).
    Heterogeneous,
}

impl Latency {
    /// Both, in the paper's order.
    pub const ALL: [Latency; 2] = [Latency::Homogeneous, Latency::Heterogeneous];

    fn rtt(self, rng: &mut u64) -> Duration {
        match self {
            Latency::Homogeneous => Duration::from_millis(30),
            Latency::Heterogeneous => {
                // Mean 260 ms, sd 80 ms (Box-Muller), clipped to 20..500.
                let (u1, u2) = (unit(rng).max(1e-12), unit(rng));
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                Duration::from_secs_f64((260.0 + 80.0 * z).clamp(20.0, 500.0) / 1000.0)
            }
        }
    }
}

/// What the `lazy` experiment runs.
#[derive(Debug, Clone)]
pub struct LazyOpts {
    /// Classification thresholds (`[sync.lazy] threshold`; the paper's
    /// "barrier": 0.125, 0.25, 0.35, 0.50).
    pub thresholds: Vec<f64>,
    /// Connections per run.
    pub connections: usize,
    /// Seeds per point.
    pub seeds: usize,
    /// First seed.
    pub seed: u64,
    /// The time barrier (the paper: 200 ms): the least.
    pub barrier: Duration,
    /// The most a flow's barrier grows to (twice its round trip; equal to
    /// `barrier`: fixed, as the paper ran).
    pub max_barrier: Duration,
    /// Crash instants per run.
    pub crashes: usize,
}

impl Default for LazyOpts {
    fn default() -> Self {
        LazyOpts {
            thresholds: vec![0.125, 0.25, 0.35, 0.5],
            connections: 20_000,
            seeds: 3,
            seed: 1,
            barrier: Duration::from_millis(200),
            max_barrier: Duration::from_millis(1000),
            crashes: 40,
        }
    }
}

/// One run's counts.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LazyRun {
    /// Seed.
    pub seed: u64,
    /// State changes (messages eager replication sends).
    pub changes: u64,
    /// Messages sent (at once or late).
    pub sent: u64,
    /// Changes predicted transitional that turned out stable (sent late:
    /// the paper's wrong predictions).
    pub wrong_predictions: u64,
    /// Connections established (and not closing) at the crash instants,
    /// summed over them.
    pub established_at_crashes: u64,
    /// Of those, the ones the backup held no ESTABLISHED (or later) state of.
    pub lost_at_crashes: u64,
}

impl LazyRun {
    /// `1 - sent / changes`.
    pub fn saved_ratio(&self) -> f64 {
        ratio(self.changes - self.sent.min(self.changes), self.changes)
    }

    /// `wrong_predictions / changes` (the paper's wrong-prediction rate).
    pub fn wrong_prediction_ratio(&self) -> f64 {
        ratio(self.wrong_predictions, self.changes)
    }

    /// `lost_at_crashes / established_at_crashes`.
    pub fn lost_ratio(&self) -> f64 {
        ratio(self.lost_at_crashes, self.established_at_crashes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// One (latency, threshold) point over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct LazyPoint {
    /// Latency setting.
    pub latency: Latency,
    /// Classification threshold.
    pub threshold: f64,
    /// Messages saved (`1 - sent / changes`): min, median, max.
    pub saved_ratio: Spread,
    /// Wrong predictions over changes.
    pub wrong_prediction_ratio: Spread,
    /// Established connections lost at a crash over established ones.
    pub lost_ratio: Spread,
    /// Every run.
    pub runs: Vec<LazyRun>,
}

/// The experiment's result (`--json`: `lazy`).
#[derive(Debug, Clone, Serialize)]
pub struct LazyReport {
    /// Messages saved at the default threshold (0.125), the worse of the
    /// two latency settings (median over the seeds).
    pub saved_ratio: f64,
    /// Established connections lost at a crash because they were not
    /// replicated, over established connections, at the default
    /// threshold: the worse latency setting (median over the seeds).
    pub wrong_ratio: f64,
    /// The threshold of the two figures above.
    pub threshold: f64,
    /// Time barrier (ms): the least.
    pub barrier_ms: f64,
    /// The most a flow's barrier grows to (ms; twice its round trip).
    pub max_barrier_ms: f64,
    /// Connections per run.
    pub connections: usize,
    /// Crash instants per run.
    pub crashes: usize,
    /// Every point.
    pub points: Vec<LazyPoint>,
    /// How it ran.
    pub how_run: String,
    /// What the paper reports.
    pub paper: String,
}

/// The paper's figures.
pub const PAPER: &str = "hFT-FW, 200 ms barrier: homogeneous latency (~30 ms): threshold 0.125 \
     saves about 50% of the state changes, 0.50 saves more with about 18% wrong predictions; \
     heterogeneous latency (20-500 ms): 0.125 saves about 40%, 0.25 already about 19% wrong; \
     low threshold: 40-50% saved, about 2% wrong";

/// Ports of the services and the share of their connections that are long
/// (seconds), the rest lasting one to four round trips.
const SERVICES: [(u16, f64); 4] = [(80, 0.05), (443, 0.15), (25, 0.4), (22, 0.95)];

fn unit(rng: &mut u64) -> f64 {
    (splitmix64(rng) >> 11) as f64 / (1u64 << 53) as f64
}

/// One state change of the trace (ordered by time, then by sequence).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ev {
    at: Duration,
    seq: u64,
    conn: u32,
    /// `None`: the connection ends (DESTROY).
    state: Option<TcpState>,
}

fn flow_state(conn: u32, st: TcpState) -> FlowState {
    let svc = conn as usize % 64;
    let (client, server, port) = (svc % 16, (svc / 16) % 4, SERVICES[svc / 16 % 4].0);
    let orig = Tuple::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + client as u8)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20 + server as u8)),
        proto::TCP,
        1024 + (conn % 60_000) as u16,
        port,
    );
    let mut s = FlowState::established_tcp(orig, 120);
    s.tcp_state = st;
    if matches!(st, TcpState::SynSent) {
        s.status = status::CONFIRMED;
    }
    s
}

/// The state changes of `n` connections: arrivals at 400 per second.
fn trace(n: usize, latency: Latency, seed: u64) -> Vec<Ev> {
    let mut rng = seed ^ 0x1A2F_u64.wrapping_mul(0x9E37_79B9);
    let mut evs = Vec::with_capacity(n * 8);
    let mut t = Duration::ZERO;
    let mut seq = 0u64;
    let ms = |x: f64| Duration::from_secs_f64(x / 1000.0);
    for c in 0..n {
        let conn = u32::try_from(c).unwrap_or(u32::MAX);
        t += ms(-unit(&mut rng).max(1e-12).ln() * 2.5);
        let rtt = latency.rtt(&mut rng);
        let long_share = SERVICES[(c % 64) / 16].1;
        let data = if unit(&mut rng) < long_share {
            // Seconds: 300 ms plus exponential, mean 5 s.
            ms(300.0 - unit(&mut rng).max(1e-12).ln() * 5000.0)
        } else {
            rtt * (1 + (splitmix64(&mut rng) % 4) as u32)
        };
        let one_ms = ms(1.0);
        let steps = [
            (Duration::ZERO, Some(TcpState::SynSent)),
            (rtt, Some(TcpState::SynRecv)),
            (rtt + one_ms, Some(TcpState::Established)),
            (rtt + one_ms + data, Some(TcpState::FinWait)),
            (rtt * 2 + one_ms + data, Some(TcpState::CloseWait)),
            (rtt * 2 + one_ms * 2 + data, Some(TcpState::LastAck)),
            (rtt * 3 + one_ms * 2 + data, Some(TcpState::TimeWait)),
            // TIME_WAIT's 2 s (a short timeout, as busy firewalls set it).
            (rtt * 3 + one_ms * 2 + data + ms(2000.0), None),
        ];
        for (off, state) in steps {
            seq += 1;
            evs.push(Ev {
                at: t + off,
                seq,
                conn,
                state,
            });
        }
    }
    evs.sort_unstable();
    evs
}

/// One run of the trace through the predictor.
pub fn run_one(opts: &LazyOpts, latency: Latency, threshold: f64, seed: u64) -> LazyRun {
    let evs = trace(opts.connections, latency, seed);
    let mut lazy = Lazy::new(LazyConfig {
        barrier: opts.barrier,
        max_barrier: opts.max_barrier.max(opts.barrier),
        threshold,
        ..LazyConfig::default()
    });
    let n = opts.connections;
    // What the backup holds of each connection, and its true state.
    let mut backup: Vec<Option<TcpState>> = vec![None; n];
    let mut truth: Vec<Option<TcpState>> = vec![None; n];
    let end = evs.last().map_or(Duration::ZERO, |e| e.at);
    // Crash instants over the run after a 10% warm-up (the paper's curves
    // settle once the classifier has learnt).
    let mut crashes: BinaryHeap<std::cmp::Reverse<Duration>> = (0..opts.crashes)
        .map(|k| {
            let f = 0.1 + 0.9 * (k as f64 + 0.5) / opts.crashes.max(1) as f64;
            std::cmp::Reverse(end.mul_f64(f))
        })
        .collect();
    let t0 = Instant::now();
    let mut run = LazyRun {
        seed,
        ..LazyRun::default()
    };
    let mut index_of_port: Vec<u32> = vec![u32::MAX; 60_000];
    for e in &evs {
        // Crashes due before this change.
        while let Some(&std::cmp::Reverse(c)) = crashes.peek() {
            if c > e.at {
                break;
            }
            crashes.pop();
            for (kind, st) in lazy.poll_barrier(t0 + c) {
                run.sent += 1;
                record(&mut backup, &index_of_port, kind, &st);
            }
            for (i, s) in truth.iter().enumerate() {
                if matches!(s, Some(TcpState::Established)) {
                    run.established_at_crashes += 1;
                    let held = backup[i].is_some_and(|b| (b as u8) >= TcpState::Established as u8);
                    run.lost_at_crashes += u64::from(!held);
                }
            }
        }
        let now = t0 + e.at;
        for (kind, st) in lazy.poll_barrier(now) {
            run.sent += 1;
            record(&mut backup, &index_of_port, kind, &st);
        }
        let c = e.conn as usize;
        index_of_port[c % 60_000] = e.conn;
        let (kind, st) = match e.state {
            Some(TcpState::SynSent) => (FlowKind::New, TcpState::SynSent),
            Some(s) => (FlowKind::Update, s),
            None => (FlowKind::Destroy, truth[c].unwrap_or(TcpState::TimeWait)),
        };
        truth[c] = e.state;
        run.changes += 1;
        if let Verdict::Send(k, s) = lazy.on_change(now, kind, flow_state(e.conn, st)) {
            run.sent += 1;
            record(&mut backup, &index_of_port, k, &s);
        }
    }
    run.wrong_predictions = lazy.stats().delayed;
    run
}

fn record(backup: &mut [Option<TcpState>], index_of_port: &[u32], kind: FlowKind, st: &FlowState) {
    let port = usize::from(st.key.orig.src_port) - 1024;
    let Some(&c) = index_of_port.get(port) else {
        return;
    };
    let Some(b) = backup.get_mut(c as usize) else {
        return;
    };
    *b = match kind {
        FlowKind::Destroy => None,
        FlowKind::New | FlowKind::Update => Some(st.tcp_state),
    };
}

/// Runs every point.
pub fn run(opts: &LazyOpts, mut step: impl FnMut(&str)) -> LazyReport {
    let mut points = Vec::new();
    for latency in Latency::ALL {
        for &th in &opts.thresholds {
            step(&format!("lazy: {latency:?} latency, threshold {th}"));
            let runs: Vec<LazyRun> = (0..opts.seeds)
                .map(|k| run_one(opts, latency, th, super::loss::seed(opts.seed, k)))
                .collect();
            points.push(point(latency, th, runs));
        }
    }
    let default_th = LazyConfig::default().threshold;
    let at_default = points
        .iter()
        .filter(|p| (p.threshold - default_th).abs() < 1e-9);
    let saved_ratio = at_default
        .clone()
        .map(|p| p.saved_ratio.median)
        .reduce(f64::min)
        .unwrap_or(0.0);
    let wrong_ratio = at_default
        .map(|p| p.lost_ratio.median)
        .reduce(f64::max)
        .unwrap_or(0.0);
    LazyReport {
        saved_ratio,
        wrong_ratio,
        threshold: default_th,
        barrier_ms: opts.barrier.as_secs_f64() * 1000.0,
        max_barrier_ms: opts.max_barrier.max(opts.barrier).as_secs_f64() * 1000.0,
        connections: opts.connections,
        crashes: opts.crashes,
        points,
        how_run: format!(
            "trace-driven through ftfw_sync::lazy (the sync thread's code) on a virtual clock: \
             {} TCP connections per run at 400/s over 64 services (ports 80/443/25/22 with \
             5/15/40/95% long connections of 0.3 s + exp(5 s), the rest 1-4 RTT), TIME_WAIT 2 s; \
             barrier {} ms, or twice the flow's round trip up to {} ms; \
             {} crash instants per run after a 10% warm-up; {} seeds per point; the link is not \
             modelled (a sent change is held by the backup at once)",
            opts.connections,
            opts.barrier.as_millis(),
            opts.max_barrier.max(opts.barrier).as_millis(),
            opts.crashes,
            opts.seeds
        ),
        paper: PAPER.into(),
    }
}

/// A point's spread over its runs.
pub fn point(latency: Latency, threshold: f64, runs: Vec<LazyRun>) -> LazyPoint {
    let sp = |f: fn(&LazyRun) -> f64| {
        Spread::of(runs.iter().map(f)).unwrap_or(Spread {
            min: 0.0,
            median: 0.0,
            max: 0.0,
            n: 0,
        })
    };
    LazyPoint {
        latency,
        threshold,
        saved_ratio: sp(LazyRun::saved_ratio),
        wrong_prediction_ratio: sp(LazyRun::wrong_prediction_ratio),
        lost_ratio: sp(LazyRun::lost_ratio),
        runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_of_a_run() {
        let r = LazyRun {
            seed: 1,
            changes: 200,
            sent: 90,
            wrong_predictions: 4,
            established_at_crashes: 400,
            lost_at_crashes: 2,
        };
        assert!((r.saved_ratio() - 0.55).abs() < 1e-12);
        assert!((r.wrong_prediction_ratio() - 0.02).abs() < 1e-12);
        assert!((r.lost_ratio() - 0.005).abs() < 1e-12);
        assert_eq!(LazyRun::default().lost_ratio(), 0.0);
    }

    #[test]
    fn point_spread_is_min_median_max_of_the_runs() {
        let run = |sent| LazyRun {
            changes: 100,
            sent,
            ..LazyRun::default()
        };
        let p = point(Latency::Homogeneous, 0.125, vec![run(60), run(40), run(50)]);
        assert!((p.saved_ratio.min - 0.4).abs() < 1e-12);
        assert!((p.saved_ratio.median - 0.5).abs() < 1e-12);
        assert!((p.saved_ratio.max - 0.6).abs() < 1e-12);
    }

    #[test]
    fn a_threshold_that_never_holds_saves_nothing_and_loses_nothing() {
        // P(stable) is at least 1/(n+2) > 0: a threshold of 1e-9 holds
        // no change, so every change is sent and nothing is lost.
        let opts = LazyOpts {
            connections: 2_000,
            crashes: 10,
            ..LazyOpts::default()
        };
        let r = run_one(&opts, Latency::Homogeneous, 1e-9, 7);
        assert_eq!(r.changes, 2_000 * 8);
        // DESTROYs of known flows are sent too.
        assert_eq!(r.sent, r.changes);
        assert!(r.established_at_crashes > 0);
        assert_eq!(r.lost_at_crashes, 0);
        assert_eq!(r.wrong_predictions, 0);
    }

    #[test]
    fn a_high_threshold_saves_more_and_loses_more_than_a_low_one() {
        let opts = LazyOpts {
            connections: 4_000,
            crashes: 20,
            ..LazyOpts::default()
        };
        let low = run_one(&opts, Latency::Heterogeneous, 0.125, 3);
        let high = run_one(&opts, Latency::Heterogeneous, 0.5, 3);
        assert!(low.saved_ratio() > 0.0, "{low:?}");
        assert!(high.saved_ratio() >= low.saved_ratio(), "{low:?} {high:?}");
        assert!(
            high.wrong_predictions >= low.wrong_predictions,
            "{low:?} {high:?}"
        );
    }

    #[test]
    fn heterogeneous_rtts_stay_within_20_to_500_ms() {
        let mut rng = 5;
        for _ in 0..10_000 {
            let r = Latency::Heterogeneous.rtt(&mut rng);
            assert!((Duration::from_millis(20)..=Duration::from_millis(500)).contains(&r));
        }
    }
}
