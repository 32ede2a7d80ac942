//! `bench forward --link memif` (the default): a generator that is not the
//! bottleneck of its own measurement.
//!
//! ```text
//!   generator (gen_core)                     forwarder (fwd_core)
//!   net_memif server ==shared memory==> net_memif client -> [ftfw | testpmd] -> net_null (sink)
//! ```
//!
//! The generator is a thread of this process: it builds UDP frames of
//! `flows` flows into mbufs taken from its pool in bursts and offers them
//! to a `net_memif` server port. The forwarder connects to that port as
//! the memif client and sends what it forwards to a `net_null` port
//! (`no-rx=1`: it receives nothing and frees what it is given, as a NIC
//! does once a frame is on the wire). The forwarder is, in turn, the ftfw
//! worker pipeline (a thread of this process pinned to `fwd_core`) and
//! `dpdk-testpmd --forward-mode=io` (its forwarding lcore on `fwd_core`).
//!
//! What the forwarder takes off the memif ring is what it delivers: both
//! send every frame they receive to the sink (ftfw drops none of these
//! flows' frames, which the report checks with its drop counter), and the
//! sink never refuses one. So each round counts, over the same window,
//! the frames the generator built (`offered`) and the frames the memif
//! ring accepted (`delivered`); a ring that refuses frames is a forwarder
//! that is behind, as a NIC's missed counter would say. A forwarder whose
//! delivered rate is below [`OUTRUN`](super::OUTRUN) of the offered one was
//! outrun, and its rate is its own.
//!
//! Runs as root (EAL). No namespace is needed: the memif control socket is
//! a file under the system's temporary directory, removed afterwards.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftfw_dataplane::port::dpdk::{Device, DeviceConfig, DpdkPort, MbufBurst};
use ftfw_dataplane::port::BURST;
use ftfw_dataplane::worker::stages::StageTimes;

use super::{ForwardOpts, ForwardReport, Rounds, Testpmd};
use crate::pktgen;

/// The generator's counters, published every few bursts.
#[derive(Default)]
struct GenCounters {
    stop: AtomicBool,
    /// Asked to send (else idle: the memif PMD must not transmit while
    /// its peer connects or disconnects, which remaps the shared memory).
    send: AtomicBool,
    /// Sending (the generator's answer to `send`).
    sending: AtomicBool,
    /// Frames built and offered to the memif port.
    offered: AtomicU64,
    /// Frames the memif ring accepted (the forwarder took them).
    accepted: AtomicU64,
}

impl GenCounters {
    fn read(&self) -> (u64, u64) {
        (
            self.offered.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
        )
    }
}

/// The generator thread: replays `frames` on `port` until told to stop.
fn generate(mut port: DpdkPort, frames: Vec<Vec<u8>>, core: usize, c: Arc<GenCounters>) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        eprintln!("ftfw-lab: could not pin the generator to core {core}");
    }
    let dev = port.device().clone();
    let mut burst = MbufBurst::new();
    let (mut offered, mut accepted, mut at) = (0u64, 0u64, 0usize);
    let mut iters = 0u32;
    while !c.stop.load(Ordering::Relaxed) {
        if !c.send.load(Ordering::Acquire) {
            c.offered.store(offered, Ordering::Relaxed);
            c.accepted.store(accepted, Ordering::Relaxed);
            c.sending.store(false, Ordering::Release);
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        c.sending.store(true, Ordering::Release);
        if !dev.pool().alloc_bulk(&mut burst, BURST) {
            std::thread::yield_now();
            continue;
        }
        for i in 0..BURST {
            if let Some(m) = burst.get_mut(i) {
                m.append(&frames[at]);
            }
            at = if at + 1 == frames.len() { 0 } else { at + 1 };
        }
        accepted += port.tx_mbufs(&mut burst) as u64;
        offered += BURST as u64;
        // What the ring refused goes back to the pool.
        burst.clear();
        iters = iters.wrapping_add(1);
        if iters.is_multiple_of(16) {
            c.offered.store(offered, Ordering::Relaxed);
            c.accepted.store(accepted, Ordering::Relaxed);
        }
    }
    c.offered.store(offered, Ordering::Relaxed);
    c.accepted.store(accepted, Ordering::Relaxed);
}

/// The running generator; stopped and joined on drop.
struct Generator {
    counters: Arc<GenCounters>,
    /// The memif server device, for its link state.
    device: Arc<Device>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Generator {
    /// Starts sending once a forwarder is connected (bounded wait).
    fn resume(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.device.link().map(|l| l.up).unwrap_or(false) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "no forwarder connected to the memif link within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.counters.send.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops sending and waits until the generator is idle, so that the
    /// forwarder may disconnect.
    fn pause(&self) {
        self.counters.send.store(false, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.counters.sending.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.counters.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One measured window: waits (bounded) until the forwarder takes frames,
/// warms up (every flow opened), then counts for the duration. Returns
/// (delivered, offered) frames in the window and its length in seconds.
fn window(g: &Generator, opts: &ForwardOpts) -> anyhow::Result<(u64, u64, f64)> {
    g.resume()?;
    let r = measure(g, opts);
    g.pause();
    r
}

fn measure(g: &Generator, opts: &ForwardOpts) -> anyhow::Result<(u64, u64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let start = g.counters.read().1;
    while g.counters.read().1 < start + 10_000 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the forwarder took no frames from the memif link within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (o0, a0) = g.counters.read();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(opts.duration_secs));
    let (o1, a1) = g.counters.read();
    Ok((a1 - a0, o1 - o0, t0.elapsed().as_secs_f64()))
}

fn memif_client(sock: &std::path::Path) -> String {
    format!("net_memif1,role=client,id=0,socket={}", sock.display())
}

const SINK: &str = "net_null0,no-rx=1";

struct FtfwRound {
    delivered: u64,
    offered: u64,
    secs: f64,
    fast_path: u64,
    dropped: u64,
    sink_tx: u64,
    pool_start: u32,
    pool_end: u32,
    stages: StageTimes,
}

fn ftfw_round(
    g: &Generator,
    sock: &std::path::Path,
    opts: &ForwardOpts,
    stage_clock: bool,
) -> anyhow::Result<FtfwRound> {
    let open = |devargs: &str| -> anyhow::Result<DpdkPort> {
        Ok(DpdkPort::open(&DeviceConfig::new(devargs, 1), 0)?)
    };
    let outside = open(&memif_client(sock))?;
    let inside = open(SINK)?;
    let devices = [outside.device().clone(), inside.device().clone()];
    let pool_start: u32 = devices.iter().map(|d| d.pool().in_use()).sum();
    let sink_before = devices[1].stats().map(|s| s.tx_packets).unwrap_or(0);
    let fw = super::start_ftfw(Box::new(outside), Box::new(inside), opts, stage_clock)?;
    let (delivered, offered, secs) = window(g, opts)?;
    let (c, _missed, stages) = fw.stop();
    let sink_tx = devices[1].stats().map(|s| s.tx_packets).unwrap_or(0) - sink_before;
    let pool_end = devices.iter().map(|d| d.pool().in_use()).sum();
    drop(devices);
    Ok(FtfwRound {
        delivered,
        offered,
        secs,
        fast_path: c.fast_path,
        dropped: c.dropped_by_rule + c.invalid,
        sink_tx,
        pool_start,
        pool_end,
        stages,
    })
}

fn testpmd_round(
    g: &Generator,
    sock: &std::path::Path,
    opts: &ForwardOpts,
    huge: bool,
) -> anyhow::Result<(u64, u64, f64)> {
    let pmd = Testpmd::start(opts, [&memif_client(sock), SINK], huge)?;
    let r = window(g, opts)?;
    drop(pmd);
    Ok(r)
}

/// The socket file, removed on drop.
struct Socket(PathBuf);

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the memif benchmark (see the module documentation).
pub(super) fn run(opts: &ForwardOpts) -> anyhow::Result<ForwardReport> {
    super::require_testpmd(opts)?;
    let huge = crate::dpdk::init(opts.gen_core)?;
    let sock =
        Socket(std::env::temp_dir().join(format!("ftfw-bench-memif-{}.sock", std::process::id())));
    let _ = std::fs::remove_file(&sock.0);
    let server = DpdkPort::open(
        &DeviceConfig::new(
            &format!("net_memif0,role=server,id=0,socket={}", sock.0.display()),
            1,
        ),
        0,
    )?;
    let size = opts.size.max(pktgen::MIN_FRAME);
    let frames: Vec<Vec<u8>> = (0..opts.flows)
        .map(|i| {
            let t = pktgen::flow_tuple(i, true, [198, 51, 100]);
            let [mut d, _] = pktgen::data_frames(&t, size);
            d.resize(size, 0);
            d
        })
        .collect();
    let counters = Arc::new(GenCounters::default());
    let gen = Generator {
        counters: counters.clone(),
        device: server.device().clone(),
        thread: Some({
            let core = opts.gen_core;
            std::thread::Builder::new()
                .name("bench-gen".into())
                .spawn(move || generate(server, frames, core, counters))?
        }),
    };
    let mut rep = Rounds::default();
    let mut sink = 0u64;
    for _ in 0..opts.rounds.max(1) {
        let r = ftfw_round(&gen, &sock.0, opts, false)?;
        rep.ftfw.push(r.delivered as f64 / r.secs / 1e6);
        rep.offered_f.push(r.offered as f64 / r.secs / 1e6);
        rep.fast += r.fast_path;
        rep.dropped += r.dropped;
        sink += r.sink_tx;
        rep.pool_start.push(r.pool_start);
        rep.pool_end.push(r.pool_end);
        let (d, o, secs) = testpmd_round(&gen, &sock.0, opts, huge)?;
        rep.pmd.push(d as f64 / secs / 1e6);
        rep.offered_p.push(o as f64 / secs / 1e6);
    }
    // Where ftfw's time goes: one more round with the worker's stage
    // clock on, not rated (the clock's reads cost a few ns per packet).
    let clocked = ftfw_round(&gen, &sock.0, opts, true)?;
    drop(gen);
    let mut report = rep.report(opts, huge, Some(sink));
    report.ftfw_stages_ns_per_packet = Some(crate::bench::stage_map(&clocked.stages));
    Ok(report)
}
