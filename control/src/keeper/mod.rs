//! The state keeper: a standalone node's flow table kept in a file that
//! outlives ftfwd, so established connections survive a crash (`kill -9`)
//! and a planned restart (`ftfwctl restart`, SIGUSR2: an upgrade).
//!
//! A node without `[sync]` has nobody to replicate to; its workers still
//! push every state change into their delta rings. The keeper thread takes
//! them (at most every [`TICK`]), folds them into a mirror of the table and
//! appends them to the state file (`[daemon] state_file`, by default next
//! to the console socket, so under `/run`: it survives the process, not a
//! reboot). When the appended changes outgrow the mirror the file is
//! rewritten from the mirror (a snapshot, written beside and renamed
//! over). A delta ring that overflowed makes the keeper re-read that
//! worker's shard. At most one tick of changes (10 ms) is lost in a crash.
//!
//! At start, before the workers forward, [`restore`] reads the file and
//! imports the live flows into the shards (without emitting deltas). Each
//! flow's timeout is shortened by the time the node was down; what has
//! run out is left behind. A planned restart first writes a snapshot of
//! the shards themselves (exact timeouts), then replaces the process
//! (same PID, same arguments, the binary now at the path it was started
//! from).
//!
//! A replicated pair does not use the keeper: there the peer holds the
//! state and a restarted node resyncs from it.

pub mod file;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ftfw_dataplane::conntrack::DeltaKind;
use ftfw_dataplane::flow::{FlowKey, FlowState};
use ftfw_dataplane::worker::{Command, WorkerShared};
use ftfw_sync::wire::MsgType;
use thiserror::Error;

/// How often the keeper takes deltas and writes them.
pub const TICK: Duration = Duration::from_millis(10);
/// Deltas taken from one ring per tick.
const RING_BUDGET: usize = 65_536;
/// Flows per export command when a shard is read whole.
const EXPORT_CHUNK: usize = 8192;
/// How long a worker may take to answer an export chunk.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The file is rewritten from the mirror when the appended changes exceed
/// this many bytes plus twice the snapshot.
const COMPACT_SLACK: u64 = 1 << 20;

/// What can go wrong with the state file.
#[derive(Debug, Error)]
pub enum KeeperError {
    /// A file operation failed.
    #[error("state file {}: {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file exists but is not an ftfw state file.
    #[error("{} is not an ftfw state file (no FTFW marker): left alone", path.display())]
    NotAStateFile {
        /// The file.
        path: PathBuf,
    },
    /// A worker did not answer a command.
    #[error("worker {worker} did not answer while its shard was read")]
    WorkerSilent {
        /// The worker.
        worker: usize,
    },
    /// Importing the restored flows failed.
    #[error("importing the restored flows: {0}")]
    Import(#[from] crate::import::ImportError),
    /// The keeper thread is gone.
    #[error("the state keeper thread has stopped")]
    Stopped,
}

/// Unix seconds now, as records carry them.
pub fn unix_secs() -> u32 {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// The keeper's counters (shown by `ftfwctl status`).
#[derive(Debug, Default)]
pub struct KeeperStats {
    /// Flows in the mirror (and so in the file).
    pub flows: AtomicU64,
    /// Changes written.
    pub records: AtomicU64,
    /// Snapshots written (start, compactions, planned restart).
    pub snapshots: AtomicU64,
    /// Shards re-read after a delta ring overflow.
    pub reexports: AtomicU64,
    /// Writes that failed (the next snapshot retries).
    pub write_errors: AtomicU64,
    /// Bytes in the file now.
    pub file_bytes: AtomicU64,
}

/// What one restore found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoreReport {
    /// Live flows in the file.
    pub found: u64,
    /// Imported into the shards.
    pub restored: u64,
    /// Left behind: their timeout ran out while the node was down.
    pub expired: u64,
    /// Refused by a full table.
    pub refused: u64,
    /// Records that did not decode.
    pub bad_records: u64,
    /// Whether the file ended inside a record (cut by a crash).
    pub truncated: bool,
    /// Seconds between the file's last write and the restore.
    pub down_secs: u64,
}

/// The keeper's copy of the table: each flow with the worker that has it.
pub type Mirror = HashMap<FlowKey, (u16, FlowState)>;

/// Reads `path` and imports its live flows into `workers`' shards,
/// without deltas: each into the shard it was in when the node had as many
/// workers (its frames are steered there), else into the one
/// [`owner_worker`](crate::import::owner_worker) picks. Timeouts are
/// shortened by the time since the file's last write. Returns the report
/// and the flows now in the table (the keeper's starting mirror). No
/// file: an empty report.
pub fn restore(
    path: &Path,
    workers: &[Arc<WorkerShared>],
) -> Result<(RestoreReport, Mirror), KeeperError> {
    let Some(rec) = file::read(path)? else {
        return Ok((RestoreReport::default(), HashMap::new()));
    };
    let now = unix_secs();
    let down = now.saturating_sub(rec.written_at);
    let mut report = RestoreReport {
        found: rec.flows.len() as u64,
        bad_records: rec.bad_records,
        truncated: rec.truncated,
        down_secs: u64::from(down),
        ..RestoreReport::default()
    };
    let same_workers = rec.workers.map(usize::from) == Some(workers.len());
    let mut live = Mirror::with_capacity(rec.flows.len());
    let mut imp = crate::import::Importer::new(workers, false);
    for (key, (w, mut f)) in rec.flows {
        if f.timeout_secs <= down {
            report.expired += 1;
            continue;
        }
        f.timeout_secs -= down;
        let w = match w {
            Some(w) if same_workers => usize::from(w),
            _ => crate::import::owner_worker(&key, workers),
        };
        imp.push_to(w, f.clone())?;
        live.insert(key, (u16::try_from(w).unwrap_or(u16::MAX), f));
    }
    let (done, refused) = imp.finish()?;
    report.restored = done as u64;
    report.refused = refused as u64;
    Ok((report, live))
}

/// Reads every worker's whole shard (the workers keep running): one list
/// per worker.
pub fn export_all(workers: &[Arc<WorkerShared>]) -> Result<Vec<Vec<FlowState>>, KeeperError> {
    (0..workers.len())
        .map(|w| export_worker(workers, w))
        .collect()
}

fn export_worker(workers: &[Arc<WorkerShared>], w: usize) -> Result<Vec<FlowState>, KeeperError> {
    let mut out = Vec::new();
    let mut from = 0u32;
    loop {
        let (tx, rx) = mpsc::channel();
        let cmd = Command::Export {
            from,
            max: EXPORT_CHUNK,
            reply: tx,
        };
        let mut cmd = Some(cmd);
        let deadline = std::time::Instant::now() + EXPORT_TIMEOUT;
        while let Some(c) = cmd.take() {
            if let Err(back) = workers[w].send(c) {
                if std::time::Instant::now() > deadline {
                    return Err(KeeperError::WorkerSilent { worker: w });
                }
                cmd = Some(back);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let (states, next) = rx
            .recv_timeout(EXPORT_TIMEOUT)
            .map_err(|_| KeeperError::WorkerSilent { worker: w })?;
        out.extend(states);
        match next {
            Some(n) => from = n,
            None => return Ok(out),
        }
    }
}

enum Request {
    /// Take every pending delta, write a snapshot of `flows` (or of the
    /// mirror), answer, and stop.
    Finish {
        flows: Option<Vec<Vec<FlowState>>>,
        reply: Sender<Result<u64, KeeperError>>,
    },
}

/// The running keeper thread.
#[derive(Debug)]
pub struct Keeper {
    path: PathBuf,
    stats: Arc<KeeperStats>,
    requests: Sender<Request>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Starts keeping `workers`' tables in `path`, from `mirror` (what
    /// [`restore`] imported). Writes a first snapshot before returning.
    pub fn spawn(
        path: PathBuf,
        workers: Vec<Arc<WorkerShared>>,
        mirror: Mirror,
    ) -> Result<Keeper, KeeperError> {
        let stats = Arc::new(KeeperStats::default());
        let (file, size) =
            file::write_snapshot(&path, &per_worker(&mirror, workers.len()), unix_secs())?;
        stats.snapshots.store(1, Ordering::Relaxed);
        stats.file_bytes.store(size, Ordering::Relaxed);
        stats.flows.store(mirror.len() as u64, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = State {
            path: path.clone(),
            reread_pending: vec![false; workers.len()],
            workers,
            mirror,
            file: Some(file),
            snapshot_bytes: size,
            file_bytes: size,
            buf: Vec::with_capacity(1 << 16),
            stats: stats.clone(),
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ftfw-keeper".into())
            .spawn(move || state.run(&rx, &stop2))
            .map_err(|source| KeeperError::Io {
                path: path.clone(),
                what: "starting the keeper thread for",
                source,
            })?;
        Ok(Keeper {
            path,
            stats,
            requests: tx,
            stop,
            thread: Some(thread),
        })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keeper's counters.
    pub fn stats(&self) -> &KeeperStats {
        &self.stats
    }

    /// Takes every pending change, writes a final snapshot (of `flows`,
    /// one list per worker, when given: a planned restart passes the
    /// shards' own export), and stops the thread. Returns the flows written.
    pub fn finish(mut self, flows: Option<Vec<Vec<FlowState>>>) -> Result<u64, KeeperError> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .send(Request::Finish { flows, reply: tx })
            .map_err(|_| KeeperError::Stopped)?;
        let r = rx.recv().map_err(|_| KeeperError::Stopped)?;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        r
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    path: PathBuf,
    workers: Vec<Arc<WorkerShared>>,
    mirror: Mirror,
    /// Workers whose shard must be read again (a failed re-read).
    reread_pending: Vec<bool>,
    /// The file, open for appending (`None` after a failed snapshot: the
    /// next tick tries a snapshot again).
    file: Option<std::fs::File>,
    snapshot_bytes: u64,
    file_bytes: u64,
    buf: Vec<u8>,
    stats: Arc<KeeperStats>,
}

impl State {
    fn run(&mut self, requests: &Receiver<Request>, stop: &AtomicBool) {
        loop {
            match requests.recv_timeout(TICK) {
                Ok(Request::Finish { flows, reply }) => {
                    let r = self.finish(flows);
                    let _ = reply.send(r);
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if stop.load(Ordering::Relaxed) {
                // Dropped without finish: keep what was taken so far.
                self.tick(usize::MAX);
                return;
            }
            self.tick(RING_BUDGET);
        }
    }

    fn finish(&mut self, flows: Option<Vec<Vec<FlowState>>>) -> Result<u64, KeeperError> {
        self.take_deltas(usize::MAX);
        if let Some(flows) = flows {
            self.mirror = flows
                .into_iter()
                .enumerate()
                .flat_map(|(w, l)| {
                    let w = u16::try_from(w).unwrap_or(u16::MAX);
                    l.into_iter().map(move |f| (f.key, (w, f)))
                })
                .collect();
        }
        self.snapshot()?;
        Ok(self.mirror.len() as u64)
    }

    /// One pass: re-read overflowed shards, take deltas, append them,
    /// compact when the appended part outgrew the snapshot.
    fn tick(&mut self, budget: usize) {
        self.take_deltas(budget);
        if self.file.is_none()
            || self.file_bytes > self.snapshot_bytes.saturating_mul(2) + COMPACT_SLACK
        {
            if let Err(e) = self.snapshot() {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("{e}");
            }
        }
        self.stats
            .flows
            .store(self.mirror.len() as u64, Ordering::Relaxed);
    }

    fn take_deltas(&mut self, budget: usize) {
        let now = unix_secs();
        for w in 0..self.workers.len() {
            let ring = self.workers[w].deltas.clone();
            let reread = ring.take_reexport() || self.reread_pending[w];
            // An overflowed ring is emptied first, so that nothing older
            // than the re-read is applied after it.
            let budget = if reread { usize::MAX } else { budget };
            let wid = u16::try_from(w).unwrap_or(u16::MAX);
            let mut k = 0;
            while k < budget {
                let Some(d) = ring.pop() else { break };
                if k == 0 {
                    file::encode_worker(&mut self.buf, wid);
                }
                k += 1;
                let st = d.state();
                let ty = match d.kind {
                    DeltaKind::Created => MsgType::CtNew,
                    DeltaKind::Updated => MsgType::CtUpd,
                    DeltaKind::Destroyed => MsgType::CtDel,
                };
                file::encode_record(&mut self.buf, ty, &st, now);
                if ty == MsgType::CtDel {
                    self.mirror.remove(&st.key);
                } else {
                    self.mirror.insert(st.key, (wid, st));
                }
                self.stats.records.fetch_add(1, Ordering::Relaxed);
            }
            if reread {
                self.reread(w);
            }
        }
        self.append();
    }

    /// A worker's ring overflowed: its changes are incomplete, so its
    /// flows in the mirror are replaced by a fresh read of its shard.
    fn reread(&mut self, w: usize) {
        match export_worker(&self.workers, w) {
            Ok(flows) => {
                let wid = u16::try_from(w).unwrap_or(u16::MAX);
                self.mirror.retain(|_, (fw, _)| *fw != wid);
                self.mirror
                    .extend(flows.into_iter().map(|f| (f.key, (wid, f))));
                self.stats.reexports.fetch_add(1, Ordering::Relaxed);
                // The appended part no longer folds to the mirror.
                self.file = None;
                self.reread_pending[w] = false;
            }
            Err(e) => {
                tracing::warn!("state keeper: {e}; asking again next tick");
                self.reread_pending[w] = true;
            }
        }
    }

    fn append(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Some(f) = &mut self.file {
            match f.write_all(&self.buf) {
                Ok(()) => {
                    self.file_bytes += self.buf.len() as u64;
                    self.stats
                        .file_bytes
                        .store(self.file_bytes, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %self.path.display(), "state file: appending: {e}");
                    // A partial append leaves a cut record: rewrite whole.
                    self.file = None;
                }
            }
        }
        self.buf.clear();
    }

    fn snapshot(&mut self) -> Result<(), KeeperError> {
        self.file = None;
        let (f, size) = file::write_snapshot(
            &self.path,
            &per_worker(&self.mirror, self.workers.len()),
            unix_secs(),
        )?;
        self.file = Some(f);
        self.snapshot_bytes = size;
        self.file_bytes = size;
        self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        self.stats.file_bytes.store(size, Ordering::Relaxed);
        Ok(())
    }
}

/// The mirror's flows grouped by worker, as a snapshot writes them.
fn per_worker(mirror: &Mirror, workers: usize) -> Vec<Vec<&FlowState>> {
    let mut out = vec![Vec::new(); workers.max(1)];
    for (w, f) in mirror.values() {
        if let Some(l) = out.get_mut(usize::from(*w)) {
            l.push(f);
        }
    }
    out
}
