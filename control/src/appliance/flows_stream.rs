//! `flows list` written as the client reads it (see
//! `crate::console::stream`): the workers' tables are walked a chunk of
//! slots at a time (`Command::Export`, as the sync exports do) and each
//! chunk becomes JSON only when the client has read the previous one. The
//! line is byte for byte the one [`Response::Ok`] of the whole
//! [`FlowsListing`] would be (a test compares them); `total` comes last,
//! so it can count every match. Unlike the whole answer, the listing is
//! not one snapshot per worker: a flow created or removed during the walk
//! may or may not be in it.

use std::sync::mpsc;
use std::sync::Arc;

use ftfw_dataplane::worker::{Command, WorkerShared};

use super::COMMAND_TIMEOUT;
use crate::console::proto::{FlowFilter, FlowJson};
use crate::console::stream::ResponseStream;

/// Slots asked of a worker per piece.
const SLOTS_PER_PIECE: usize = 512;

/// A streamed `flows list` answer.
pub(super) struct FlowsStream {
    workers: Vec<Arc<WorkerShared>>,
    filter: FlowFilter,
    limit: usize,
    /// The worker walked now and the slot to continue from.
    worker: usize,
    from: u32,
    /// Flows written, matches counted.
    written: usize,
    total: u64,
    started: bool,
}

impl std::fmt::Debug for FlowsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowsStream")
            .field("worker", &self.worker)
            .field("from", &self.from)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl FlowsStream {
    pub(super) fn new(workers: Vec<Arc<WorkerShared>>, filter: FlowFilter, limit: usize) -> Self {
        FlowsStream {
            workers,
            filter,
            limit,
            worker: 0,
            from: 0,
            written: 0,
            total: 0,
            started: false,
        }
    }
}

impl ResponseStream for FlowsStream {
    fn fill(&mut self, out: &mut Vec<u8>) -> Result<bool, String> {
        if !self.started {
            self.started = true;
            out.extend_from_slice(br#"{"ok":true,"kind":"flows","flows":["#);
            return Ok(true);
        }
        let Some(w) = self.workers.get(self.worker) else {
            out.extend_from_slice(format!(r#"],"total":{}}}"#, self.total).as_bytes());
            return Ok(false);
        };
        let (tx, rx) = mpsc::channel();
        w.send(Command::Export {
            from: self.from,
            max: SLOTS_PER_PIECE,
            reply: tx,
        })
        .map_err(|_| format!("worker {}: command queue full", self.worker))?;
        let (states, next) = rx
            .recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| format!("worker {}: no answer", self.worker))?;
        for st in states.iter().filter(|s| self.filter.matches(s)) {
            self.total += 1;
            if self.written < self.limit {
                if self.written > 0 {
                    out.push(b',');
                }
                // Through a JSON value, as the whole answer is (its keys
                // sorted the same way).
                let v = serde_json::to_value(FlowJson::from(st)).map_err(|e| e.to_string())?;
                serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
                self.written += 1;
            }
        }
        match next {
            Some(slot) => self.from = slot,
            None => {
                self.worker += 1;
                self.from = 0;
            }
        }
        Ok(true)
    }

    fn buffered(&self) -> usize {
        0
    }
}
