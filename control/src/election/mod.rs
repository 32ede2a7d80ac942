//! Election: the generic hot-failover state machine of Roelle (DSOM 2002),
//! sans-IO, with the SNE scenarios (Neira et al., section 4.3).
//!
//! # Layer
//! Control plane, run by the control thread. Pure logic: no sockets, no
//! clock, no processes. The driver passes `now` into every `handle_*` call,
//! sends what [`Election::poll_transmit`] gives, sleeps until
//! [`Election::poll_timeout`], and runs the procedures that
//! [`Election::poll_event`] requests ([`Event::Run`]), feeding results back
//! with [`Election::handle_procedure_result`]. [`procedure`] has the runner
//! trait, a blocking adapter and the operator-script runner.
//!
//! # Driving it
//! Inputs: [`Election::handle_datagram`] (UDP on the dedicated link,
//! downstream as fallback), [`Election::handle_procedure_result`],
//! [`Election::handle_timeout`] at [`Election::poll_timeout`], and from the
//! sync layer [`Election::handle_sync_progress`],
//! [`Election::handle_resync_complete`], [`Election::handle_resync_needed`];
//! from the operator [`Election::handle_shutdown`]. Outputs:
//! [`Election::poll_event`] ([`Event::Run`] procedure requests,
//! [`Event::ResyncNeeded`], role, master and peer changes to log),
//! [`Election::poll_transmit`] (one datagram per call, to a [`NodeId`] the
//! driver maps to an address), [`Election::status`] for the console.
//! After any input, drain events and datagrams before sleeping.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::net::{SocketAddr, UdpSocket};
//! use std::time::{Duration, Instant};
//!
//! use ftfw_control::election::{
//!     Election, ElectionConfig, Event, Inline, NodeId, Procedure, ProcedureRunner, Procedures,
//! };
//!
//! struct Builtins; // link probes, commit + forward, gratuitous ARP, ...
//! impl Procedures for Builtins {
//!     fn run(&mut self, _p: Procedure, _tmax: Duration) -> bool {
//!         true
//!     }
//! }
//!
//! fn drive(
//!     cfg: ElectionConfig,
//!     peers: HashMap<NodeId, SocketAddr>,
//!     sock: UdpSocket,
//! ) -> std::io::Result<()> {
//!     let mut e = Election::new(cfg, Instant::now()).expect("valid config");
//!     let mut procs = Inline::new(Builtins); // or ScriptRunner::new(..)
//!     let (mut out, mut rx) = (Vec::new(), [0u8; 2048]);
//!     loop {
//!         let now = Instant::now();
//!         e.handle_timeout(now);
//!         loop {
//!             let mut busy = false;
//!             while let Some(ev) = e.poll_event() {
//!                 busy = true;
//!                 match ev {
//!                     Event::Run(req) => procs.start(now, req),
//!                     other => eprintln!("election: {other:?}"),
//!                 }
//!             }
//!             while let Some(r) = procs.poll_complete(now) {
//!                 busy = true;
//!                 let _ = e.handle_procedure_result(now, r.ticket, r.ok);
//!             }
//!             if !busy {
//!                 break;
//!             }
//!         }
//!         while let Some(t) = e.poll_transmit(now, &mut out) {
//!             if let Some(addr) = peers.get(&t.dest) {
//!                 sock.send_to(&out, addr)?;
//!             }
//!         }
//!         let wake = [e.poll_timeout(), procs.poll_timeout(now)]
//!             .into_iter()
//!             .flatten()
//!             .min()
//!             .map_or(Duration::from_millis(100), |d| d.saturating_duration_since(now));
//!         sock.set_read_timeout(Some(wake.max(Duration::from_millis(1))))?;
//!         if let Ok((n, _from)) = sock.recv_from(&mut rx) {
//!             // Rejected datagrams are counted in codec_stats().
//!             let _ = e.handle_datagram(Instant::now(), &rx[..n]);
//!         }
//!     }
//! }
//! ```
//!
//! # What it owns
//! The state (main state and sub-state, [`State`]), the status table
//! ([`StatusTable`]), timers, the message queue of table 2, the message
//! codec with its pre-shared key and replay counters ([`wire`]), and
//! counters. It does not own the flow state: the sync layer reports
//! freshness ([`Election::handle_sync_progress`],
//! [`Election::handle_resync_complete`]) and the procedures act on the
//! dataplane.
//!
//! # Invariants
//! - Every transition is a cell of the explicit table in [`state`]; inputs
//!   a state can never receive return [`InvalidTransition`] (counted),
//!   nothing panics. The full table is snapshotted (insta) in
//!   `control/tests/snapshots/election_table__transition_table.snap`.
//! - At most one procedure result is awaited; results of procedures the
//!   machine moved on from are stale and dropped. Actions are never
//!   interrupted: inputs that arrive meanwhile wait in the queue.
//! - Only a host whose downlink and uplink checks pass enters service; a
//!   failed link check leads to the fault state, never to service.
//! - A host whose state is not a complete copy (not synced) ranks below
//!   every synced host, is never designated for preemption, and takes over
//!   only after holding (a last resort), or never if so configured.
//! - Of two masters that hear of each other, exactly the one with the lower
//!   [`ClaimKey`] leaves service; masters announce themselves to hosts
//!   their table lists as dead, so a healed partition is found.
//! - Every queue is bounded; drops are counted.
//!
//! # The paper's names and ours
//! | Roelle                                | here |
//! |---------------------------------------|------|
//! | init main state / check service present | [`State::Init`], [`InitSub::CheckService`] |
//! | decide                                | [`State::Decide`] (transient, guard [`Decision`]) |
//! | backup idle / learn                   | [`BackupSub::Idle`], [`BackupSub::Learn`] |
//! | (checks in backup)                    | [`BackupSub::RemoteCheck`], [`BackupSub::AwaitReply`] |
//! | (takeover initialized)                | [`BackupSub::Suspect`], [`BackupSub::Hold`] (ours: SNE resync rule) |
//! | handover start                        | [`HandoverSub::DownlinkCheck`] |
//! | handover downstream takeover          | [`HandoverSub::DownstreamTakeover`] |
//! | handover uplink check                 | [`HandoverSub::ActivateUplink`], [`HandoverSub::UplinkCheck`] |
//! | handover uplink takeover              | [`HandoverSub::UpstreamTakeover`] |
//! | (uplink shut down on veto)            | [`HandoverSub::Abort`] |
//! | service main state entry              | [`ServiceSub::ActivateService`], [`ServiceSub::TakeoverDownstream`], [`ServiceSub::TakeoverUpstream`] |
//! | service active                        | [`ServiceSub::Active`] |
//! | service full check A / B / C          | [`ServiceSub::FullCheck`] with [`CheckKind`] and [`CheckStep`] |
//! | (SVC_CHECK answered)                  | [`ServiceSub::LocalCheck`] |
//! | leaving service                       | [`ServiceSub::Leave`] with [`LeaveStep`], [`LeaveTo`] |
//! | final state (link check failed)       | [`State::Fault`] (ours: rechecks and rejoins) |
//! | final state (shutdown)                | [`State::Final`] |
//! | priority (total order)                | [`RankKey`]; between masters [`ClaimKey`] |
//! | status table                          | [`StatusTable`] |
//! | SVC_CHECK ... SVC_TAKEOVER            | [`Body`] variants |
//! | SVC_CHECK_TIMER                       | [`TimerKind::SvcCheck`], [`ElectionConfig::svc_check_interval`] |
//! | SELF_CHECK_TIMER                      | [`TimerKind::SelfCheck`] |
//! | SVC_REQCHECK_TIMER                    | per host, [`ElectionConfig::reqcheck_timeout`] |
//! | timeout_SVC_CHECK (eq. 1)             | [`ElectionConfig::reply_timeout`] |
//! | timeout_DNSTR/UPSTR_TAKEOVER_DENY (2, 3) | [`ElectionConfig::deny_timeout`] |
//! | downlinkCheck() ... releaseUpstream() | [`Procedure`] |
//!
//! # Deviations from the paper, and why
//! - Failed link checks lead to [`State::Fault`], which rechecks the
//!   downlink and rejoins through init instead of quitting: a host cut off
//!   by a partition must come back after it heals.
//! - A backup that hears a DNSTR_TAKEOVER from a *lower* host starts its
//!   own takeover at once (the lower one yields to it), so the best backup
//!   wins even when a lower one noticed the failure first.
//! - A master's SVC_CHECK_REPLY answers every SVC_CHECK queued while its
//!   local check ran (not one check each), keeping replies within eq. 1.
//!   The reply and deny bounds also allow for a full check already running.
//! - Masters send SVC_TAKEOVER to hosts marked dead after each successful
//!   self check, and a master that hears a better claim leaves service:
//!   the paper has no rule for two masters after a partition.
//! - Hosts marked dead stay in the table (ranked last) so `ftfwctl status`
//!   shows them; the paper removes them.

pub mod config;
pub mod machine;
pub mod msg;
pub mod procedure;
pub mod state;
pub mod status;
pub mod table;
pub mod wire;

#[cfg(test)]
mod tests;

pub use config::{BoundError, ElectionConfig, Peer, ProcedureTimes};
pub use machine::{Election, ElectionError, Event, Transmit};
pub use msg::{Body, Message, SelfReport, Side};
pub use procedure::{
    Inline, Procedure, ProcedureRequest, ProcedureResult, ProcedureRunner, Procedures, Script,
    ScriptRunner, Ticket,
};
pub use state::{
    AbortTo, BackupSub, Candidacy, CheckKind, CheckStep, Decision, FaultSub, HandoverSub, InitSub,
    Input, InvalidTransition, Learned, LeaveStep, LeaveTo, MainState, Rel, ServiceSub, State,
    TimerKind,
};
pub use status::{ElectionStats, ElectionStatus, PeerStatus};
pub use table::{ClaimKey, Entry, Freshness, NodeId, RankKey, Role, StatusTable};
pub use wire::{Codec, CodecStats, DecodeError};
