//! Bulk import of flows into the workers' shards.
//!
//! Layer: control plane, below both the appliance and the sync thread
//! (`replication`), which import through it: operator imports, commits of
//! the external cache at takeover and `ftfwctl commit`. It talks to the
//! workers only through their command queues ([`WorkerShared::send`]).
//!
//! Invariant: every flow goes to the shard of the worker that owns its hash
//! ([`owner_worker`]), so both directions of a flow meet in one shard.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ftfw_dataplane::flow::{FlowKey, FlowState};
use ftfw_dataplane::worker::{Command, WorkerShared};

/// How long an import waits for a worker to answer one chunk.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an import stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// A worker did not answer within [`ANSWER_TIMEOUT`].
    #[error("a worker did not answer")]
    NoAnswer,
    /// A worker's command queue stayed full with nothing of ours in it to
    /// wait for.
    #[error("worker {0} command queue is full")]
    QueueFull(usize),
}

/// The worker that owns a flow: the one its packets reach. The `mem`
/// ports' software fanout and the AF_PACKET fanout program steer by the
/// same symmetric hash ([`ftfw_dataplane::port::steer`]); DPDK ports with
/// symmetric RSS by their NIC's hash, which the workers' ports report.
pub fn owner_worker(key: &FlowKey, workers: &[Arc<WorkerShared>]) -> usize {
    owner_of(key, workers.len(), workers.first().and_then(|w| w.rss))
}

/// [`owner_worker`] among `workers` workers, under `rss` if the ports
/// spread flows by RSS.
pub fn owner_of(
    key: &FlowKey,
    workers: usize,
    rss: Option<ftfw_dataplane::port::rss::RssModel>,
) -> usize {
    match rss {
        Some(m) if workers > 1 => m.queue_of_tuple(&key.orig).min(workers - 1),
        _ => ftfw_dataplane::port::steer::worker_of(&key.orig, workers),
    }
}

/// Streams flows into the shards of the workers that own them: flows are
/// gathered per worker into chunks of [`Importer::CHUNK`] and each full
/// chunk is sent at once as one `UpsertMany`, without waiting for the
/// answer, so the caller's walk over its flows overlaps the workers'
/// inserts. Only a full command queue makes it wait for the oldest answer.
pub struct Importer<'a> {
    workers: &'a [Arc<WorkerShared>],
    replicate: bool,
    chunks: Vec<Vec<FlowState>>,
    pending: VecDeque<mpsc::Receiver<(usize, usize)>>,
    done: usize,
    refused: usize,
}

impl<'a> Importer<'a> {
    /// Flows per command.
    pub const CHUNK: usize = 8192;

    /// An importer into `workers`' shards; `replicate` says whether the
    /// imported flows are sent to the peer (operator imports) or not
    /// (state that came from the peer).
    pub fn new(workers: &'a [Arc<WorkerShared>], replicate: bool) -> Importer<'a> {
        Importer {
            workers,
            replicate,
            chunks: vec![Vec::new(); workers.len()],
            pending: VecDeque::new(),
            done: 0,
            refused: 0,
        }
    }

    /// Adds one flow; sends its worker's chunk when it is full.
    pub fn push(&mut self, st: FlowState) -> Result<(), ImportError> {
        let w = owner_worker(&st.key, self.workers);
        self.push_to(w, st)
    }

    /// Adds one flow for worker `w` (taken modulo the worker count): for
    /// state that was in that worker's shard before, where the port's
    /// steering (the kernel's fanout hash, RSS) put it, which
    /// [`owner_worker`] cannot always predict.
    pub fn push_to(&mut self, w: usize, st: FlowState) -> Result<(), ImportError> {
        let w = w % self.workers.len().max(1);
        self.chunks[w].push(st);
        if self.chunks[w].len() >= Self::CHUNK {
            self.send(w)?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), ImportError> {
        if let Some(rx) = self.pending.pop_front() {
            let (d, r) = rx
                .recv_timeout(ANSWER_TIMEOUT)
                .map_err(|_| ImportError::NoAnswer)?;
            self.done += d;
            self.refused += r;
        }
        Ok(())
    }

    fn send(&mut self, w: usize) -> Result<(), ImportError> {
        let states = std::mem::take(&mut self.chunks[w]);
        if states.is_empty() {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel();
        let mut cmd = Command::UpsertMany {
            states,
            replicate: self.replicate,
            reply: tx,
        };
        loop {
            match self.workers[w].send(cmd) {
                Ok(()) => break,
                Err(back) => {
                    cmd = back;
                    if self.pending.is_empty() {
                        return Err(ImportError::QueueFull(w));
                    }
                    self.wait_oldest()?;
                }
            }
        }
        self.pending.push_back(rx);
        Ok(())
    }

    /// Sends what is left and waits for every answer: (inserted or
    /// replaced, refused because a table was full).
    pub fn finish(mut self) -> Result<(usize, usize), ImportError> {
        for w in 0..self.workers.len() {
            self.send(w)?;
        }
        while !self.pending.is_empty() {
            self.wait_oldest()?;
        }
        Ok((self.done, self.refused))
    }
}

/// Imports `states` through an [`Importer`]. Returns (inserted or replaced,
/// refused because a table was full).
pub fn import_into(
    workers: &[Arc<WorkerShared>],
    states: Vec<FlowState>,
    replicate: bool,
) -> Result<(usize, usize), ImportError> {
    let mut imp = Importer::new(workers, replicate);
    for st in states {
        imp.push(st)?;
    }
    imp.finish()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use ftfw_dataplane::flow::Tuple;
    use ftfw_dataplane::port::rss::RssModel;

    use super::*;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            orig: Tuple::new(
                IpAddr::V4(Ipv4Addr::from(0xc000_0200 + (i & 0xff))),
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
                6,
                u16::try_from(1024 + i).unwrap(),
                443,
            ),
            zone: 0,
        }
    }

    /// Console-added and committed flows go where their packets arrive:
    /// by the software steering hash, or under RSS by the NIC's queue.
    #[test]
    fn a_flow_is_owned_by_the_worker_its_packets_reach() {
        let m = RssModel {
            reta_size: 128,
            queues: 4,
        };
        let mut differ = 0;
        for i in 0..500 {
            let k = key(i);
            let soft = owner_of(&k, 4, None);
            assert_eq!(soft, ftfw_dataplane::port::steer::worker_of(&k.orig, 4));
            let rss = owner_of(&k, 4, Some(m));
            assert_eq!(rss, m.queue_of_tuple(&k.orig));
            // The reply direction reaches the same worker.
            assert_eq!(rss, m.queue_of_tuple(&k.orig.reply()));
            differ += usize::from(rss != soft);
            assert_eq!(owner_of(&k, 1, Some(m)), 0);
        }
        assert!(differ > 100, "{differ}: the two spread flows differently");
    }
}
