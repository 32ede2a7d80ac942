//! Uplinks kept down while this node owns no buckets (`[cluster]
//! uplinks_down_when_idle`): Roelle's rule that a backup's uplinks are
//! activated only shortly before it takes over (DSOM 2002, 4.2.3 and 4.5),
//! for the members of a cluster that forward nothing (the spare of an n+1
//! cluster, the backups of a primary-backup one).
//!
//! [`UplinkGate`] is sans-IO and sits between the [`Coordinator`]'s
//! actions and the driver, which feeds it every [`Action`] and carries out
//! what comes out ([`GateOutput`]): the same actions, in the same order,
//! except that a [`Action::Forward`] that would start forwarding while the
//! uplinks are not known up is held until they are, and the uplink
//! procedures (`activate_uplink`, `uplink_check`, `deactivate_uplink`; the
//! operator's scripts) are requested in between. The coordinator is not
//! changed by any of this.
//!
//! Rules:
//! - The uplinks are wanted up while this node forwards buckets, holds a
//!   forward, or the map it holds gives it buckets (set by the driver,
//!   [`UplinkGate::set_assigned`]; so that a planned move's activation runs
//!   while the old owner still flushes), else down. At start the node owns
//!   nothing: they are brought down at once.
//! - Gaining the first buckets: activate, then the check if configured,
//!   then the held `Forward` goes out (the driver announces after it):
//!   Roelle's handover order (activate uplink, uplink check, take over).
//! - Losing the last bucket: the `Forward` of nothing goes out at once,
//!   then deactivate: the uplinks go down after forwarding stopped.
//! - One procedure at a time; a want that changed while one ran is acted
//!   on when it finishes.
//! - A failed activation (or check) is counted and the held `Forward` goes
//!   out anyway: the map gives these buckets to this node alone, so not
//!   forwarding them would break their flows for certain, while the
//!   uplinks may still work (or come back). The state shows `failed`; the
//!   procedure is retried every [`RETRY_AFTER`] while still wanted. A
//!   failed deactivation is counted, shown and retried the same way.
//!   Nothing here is fatal.
//!
//! [`Coordinator`]: super::Coordinator

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ftfw_dataplane::buckets::BucketSet;
use serde::Serialize;

use super::Action;

/// A failed uplink procedure still wanted is run again after this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// An uplink procedure the driver runs (an operator script), then reports
/// with [`UplinkGate::handle_done`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum UplinkOp {
    /// `activate_uplink`: bring the uplinks up.
    #[serde(rename = "activate_uplink")]
    Activate,
    /// `uplink_check`: are they usable (after an activation)?
    #[serde(rename = "uplink_check")]
    Check,
    /// `deactivate_uplink`: bring them down.
    #[serde(rename = "deactivate_uplink")]
    Deactivate,
}

impl UplinkOp {
    /// The procedure's name (as in `[cluster.scripts]`).
    pub fn name(self) -> &'static str {
        match self {
            UplinkOp::Activate => "activate_uplink",
            UplinkOp::Check => "uplink_check",
            UplinkOp::Deactivate => "deactivate_uplink",
        }
    }

    fn raises(self) -> bool {
        self != UplinkOp::Deactivate
    }
}

/// What the uplinks are, as far as this node knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkState {
    /// Nothing run yet.
    Unknown,
    /// Deactivated.
    Down,
    /// Activation (and check) running.
    GoingUp,
    /// Activated (and checked).
    Up,
    /// Deactivation running.
    GoingDown,
    /// The last procedure failed (`last_failure` says which).
    Failed,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateOutput {
    /// A coordinator action, to carry out as without the gate.
    Act(Action),
    /// Run an uplink procedure; report it with `token`.
    Run {
        /// Echo in [`UplinkGate::handle_done`].
        token: u64,
        /// What to run.
        op: UplinkOp,
    },
}

/// The gate's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UplinkCounters {
    /// `activate_uplink` runs.
    pub activations: u64,
    /// Those that failed (non-zero exit, time limit, not started).
    pub activate_failures: u64,
    /// `uplink_check` runs.
    pub checks: u64,
    /// Those that failed.
    pub check_failures: u64,
    /// `deactivate_uplink` runs.
    pub deactivations: u64,
    /// Those that failed.
    pub deactivate_failures: u64,
    /// Forwards held until the uplinks were up (or their activation
    /// failed).
    pub held_forwards: u64,
    /// Forwards let out after a failed activation or check (this node
    /// forwards with uplinks it could not bring up).
    pub forwarded_despite_failure: u64,
}

/// `ftfwctl cluster status`: `uplinks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UplinkStatus {
    /// What the uplinks are.
    pub state: UplinkState,
    /// Whether this node wants them up (it forwards, or is about to).
    pub wanted_up: bool,
    /// The procedure running now.
    pub running: Option<UplinkOp>,
    /// The last procedure that failed, if the last run of any failed.
    pub last_failure: Option<UplinkOp>,
    /// Buckets whose forwarding waits for the uplinks (0: none).
    pub waiting_buckets: u32,
    /// Counters.
    pub counters: UplinkCounters,
}

/// See the module documentation.
#[derive(Debug)]
pub struct UplinkGate {
    check: bool,
    state: UplinkState,
    running: Option<(u64, UplinkOp)>,
    /// The newest `Forward` held until the uplinks are up.
    held: Option<BucketSet>,
    /// The last `Forward` let out had buckets.
    forwarding: bool,
    /// The held map gives this node buckets.
    assigned: bool,
    last_failure: Option<UplinkOp>,
    retry_at: Option<Instant>,
    next_token: u64,
    out: VecDeque<GateOutput>,
    counters: UplinkCounters,
}

impl UplinkGate {
    /// A gate for a node that owns nothing yet: it asks for the uplinks to
    /// go down at once. `check`: an `uplink_check` follows each activation.
    pub fn new(check: bool, now: Instant) -> UplinkGate {
        let mut g = UplinkGate {
            check,
            state: UplinkState::Unknown,
            running: None,
            held: None,
            forwarding: false,
            assigned: false,
            last_failure: None,
            retry_at: None,
            next_token: 0,
            out: VecDeque::new(),
            counters: UplinkCounters::default(),
        };
        g.steer(now);
        g
    }

    /// One coordinator action, in the order `poll_action` gave it.
    pub fn push(&mut self, now: Instant, action: Action) {
        match action {
            Action::Forward(set) if !set.is_empty() => {
                let pass = self.forwarding
                    || (self.running.is_none()
                        && (self.state == UplinkState::Up || self.up_attempt_failed()));
                if pass {
                    if !self.forwarding && self.up_attempt_failed() {
                        self.counters.forwarded_despite_failure += 1;
                    }
                    self.forwarding = true;
                    self.out.push_back(GateOutput::Act(Action::Forward(set)));
                } else {
                    if self.held.is_none() {
                        self.counters.held_forwards += 1;
                    }
                    self.held = Some(set);
                }
            }
            Action::Forward(set) => {
                // Forwarding nothing: at once (a held forward is void).
                self.held = None;
                self.forwarding = false;
                self.out.push_back(GateOutput::Act(Action::Forward(set)));
            }
            other => self.out.push_back(GateOutput::Act(other)),
        }
        self.steer(now);
    }

    /// Whether the map held gives this node buckets (the driver calls this
    /// when the map changes): their uplinks are raised before the commit
    /// and forward that follow.
    pub fn set_assigned(&mut self, now: Instant, assigned: bool) {
        if self.assigned != assigned {
            self.assigned = assigned;
            self.steer(now);
        }
    }

    /// The procedure `token` finished; `ok` is its success.
    pub fn handle_done(&mut self, now: Instant, token: u64, ok: bool) {
        let Some((t, op)) = self.running else { return };
        if t != token {
            return;
        }
        self.running = None;
        match (op, ok) {
            (UplinkOp::Activate, true) if self.check => {
                self.start(UplinkOp::Check);
                return;
            }
            (UplinkOp::Activate | UplinkOp::Check, true) => {
                self.state = UplinkState::Up;
                self.last_failure = None;
                self.retry_at = None;
                self.release(false);
            }
            (UplinkOp::Deactivate, true) => {
                self.state = UplinkState::Down;
                self.last_failure = None;
                self.retry_at = None;
            }
            (op, false) => {
                match op {
                    UplinkOp::Activate => self.counters.activate_failures += 1,
                    UplinkOp::Check => self.counters.check_failures += 1,
                    UplinkOp::Deactivate => self.counters.deactivate_failures += 1,
                }
                self.state = UplinkState::Failed;
                self.last_failure = Some(op);
                self.retry_at = Some(now + RETRY_AFTER);
                if op.raises() {
                    self.release(true);
                }
            }
        }
        self.steer(now);
    }

    /// Timers (retries). Call at [`UplinkGate::poll_timeout`] or later.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.steer(now);
    }

    /// When a failed procedure is due again.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at.filter(|_| self.running.is_none())
    }

    /// The next output, oldest first.
    pub fn poll(&mut self) -> Option<GateOutput> {
        self.out.pop_front()
    }

    /// For `ftfwctl cluster status`.
    pub fn status(&self) -> UplinkStatus {
        UplinkStatus {
            state: self.state,
            wanted_up: self.wanted_up(),
            running: self.running.map(|(_, op)| op),
            last_failure: self.last_failure,
            waiting_buckets: self.held.as_ref().map_or(0, BucketSet::count),
            counters: self.counters,
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> UplinkCounters {
        self.counters
    }

    fn wanted_up(&self) -> bool {
        self.forwarding || self.held.is_some() || self.assigned
    }

    /// The last attempt to raise the uplinks failed (nothing runs now).
    fn up_attempt_failed(&self) -> bool {
        self.state == UplinkState::Failed && self.last_failure.is_some_and(UplinkOp::raises)
    }

    /// Lets the held forward out (`despite`: the activation failed).
    fn release(&mut self, despite: bool) {
        if let Some(set) = self.held.take() {
            if despite {
                self.counters.forwarded_despite_failure += 1;
            }
            self.forwarding = true;
            self.out.push_back(GateOutput::Act(Action::Forward(set)));
        }
    }

    /// Starts the procedure that moves the uplinks towards what is wanted,
    /// unless one runs, they are there, or a failure's retry is not due.
    fn steer(&mut self, now: Instant) {
        if self.running.is_some() {
            return;
        }
        let up = self.wanted_up();
        let there = match self.state {
            UplinkState::Up => up,
            UplinkState::Down => !up,
            _ => false,
        };
        if there {
            return;
        }
        let same_direction_failed = self.state == UplinkState::Failed
            && self.last_failure.is_some_and(|f| f.raises() == up);
        if same_direction_failed && self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.retry_at = None;
        self.start(if up {
            UplinkOp::Activate
        } else {
            UplinkOp::Deactivate
        });
    }

    fn start(&mut self, op: UplinkOp) {
        self.next_token += 1;
        let token = self.next_token;
        self.running = Some((token, op));
        match op {
            UplinkOp::Activate => self.counters.activations += 1,
            UplinkOp::Check => self.counters.checks += 1,
            UplinkOp::Deactivate => self.counters.deactivations += 1,
        }
        self.state = if op.raises() {
            UplinkState::GoingUp
        } else {
            UplinkState::GoingDown
        };
        self.out.push_back(GateOutput::Run { token, op });
    }
}

#[cfg(test)]
#[path = "tests_uplinks.rs"]
mod tests;
