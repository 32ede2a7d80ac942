//! Commands the control thread sends to a worker: the only way anything but
//! the worker touches its shard. They travel through a bounded lock-free
//! queue and are served between bursts; answers go back on a channel.

use std::sync::mpsc::Sender;

use crate::flow::{FlowKey, FlowState};

/// A predicate over flows (console filters).
pub type FlowPredicate = Box<dyn Fn(&FlowState) -> bool + Send>;

/// A request to a worker.
pub enum Command {
    /// Send the states of the flows matching the predicate, at most `limit`.
    List {
        /// Which flows.
        filter: FlowPredicate,
        /// At most this many states.
        limit: usize,
        /// (matching flows, total matched).
        reply: Sender<(Vec<FlowState>, usize)>,
    },
    /// A chunk of the whole table for a replication re-export: up to `max`
    /// states from slab slot `from` on, and where to continue (`None` at the
    /// end).
    Export {
        /// First slab slot to look at.
        from: u32,
        /// At most this many states.
        max: usize,
        /// (states, next slot).
        reply: Sender<(Vec<FlowState>, Option<u32>)>,
    },
    /// Insert or replace a flow.
    Upsert {
        /// The flow.
        state: Box<FlowState>,
        /// Ok or the reason it was refused.
        reply: Sender<Result<(), String>>,
    },
    /// Insert or replace many flows at once (commit of an external cache,
    /// bulk import). Answers (inserted or replaced, refused because full).
    UpsertMany {
        /// The flows.
        states: Vec<FlowState>,
        /// Emit deltas for them (operator imports) or not (state that came
        /// from a peer: commit, direct-mode injection).
        replicate: bool,
        /// (inserted or replaced, refused).
        reply: Sender<(usize, usize)>,
    },
    /// Delete one flow by identity.
    Remove {
        /// Which flow.
        key: FlowKey,
        /// Whether it existed.
        reply: Sender<bool>,
    },
    /// Delete many flows by identity without emitting deltas (a peer's
    /// DESTROYs in direct mode).
    RemoveImported {
        /// Which flows.
        keys: Vec<FlowKey>,
        /// How many existed.
        reply: Option<Sender<usize>>,
    },
    /// Publish the counters now and say so (a console `stats` wants the
    /// latest, not the last periodic snapshot).
    Publish {
        /// Answered once the counters are published.
        reply: Sender<()>,
    },
    /// Delete every flow matching the predicate.
    RemoveWhere {
        /// Which flows.
        filter: FlowPredicate,
        /// How many were deleted.
        reply: Sender<usize>,
    },
    /// The worker's expectations, each with the seconds it has left.
    ExpectList {
        /// (expectation, seconds left).
        reply: Sender<Vec<(crate::helper::Expectation, u32)>>,
    },
    /// Send frames out of a port (appliance-wide index): the gratuitous
    /// ARPs and unsolicited neighbor advertisements of a takeover. Answers
    /// how many the port accepted.
    Transmit {
        /// Appliance-wide port index.
        port: u16,
        /// Whole Ethernet frames.
        frames: Vec<Vec<u8>>,
        /// How many were sent.
        reply: Option<Sender<usize>>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Command::List { .. } => "List",
            Command::Export { .. } => "Export",
            Command::Upsert { .. } => "Upsert",
            Command::UpsertMany { .. } => "UpsertMany",
            Command::Remove { .. } => "Remove",
            Command::RemoveImported { .. } => "RemoveImported",
            Command::RemoveWhere { .. } => "RemoveWhere",
            Command::Publish { .. } => "Publish",
            Command::Transmit { .. } => "Transmit",
            Command::ExpectList { .. } => "ExpectList",
        };
        f.write_str(name)
    }
}
