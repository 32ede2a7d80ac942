//! States, inputs and the explicit transition table.
//!
//! [`transition`] is a pure function of (state, input). It returns what to
//! do ([`Outcome::Go`] with the next state and the actions to run, in
//! order), that the input waits in the queue ([`Outcome::Queue`], Roelle
//! table 2 and the uninterruptible action steps), that it is ignored
//! ([`Outcome::Ignore`]), or an [`InvalidTransition`] for inputs the
//! machine can never produce in that state (a procedure result when none
//! runs, a timer that state never arms). The whole table is rendered by
//! [`render_table`] and snapshotted (insta) in
//! `control/tests/snapshots/election_table__transition_table.snap`.
//!
//! Guards are evaluated by the machine before the table and arrive as
//! parts of the input ([`Rel`], [`Decision`], [`Learned`], [`Candidacy`]),
//! so the table itself has no hidden conditions.

use std::fmt;

use serde::Serialize;

use super::procedure::Procedure;
use super::table::Role;

mod transition;

pub use transition::{render_table, transition};

/// Sub-states of init main state (Roelle fig. 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InitSub {
    /// "check service present": `remoteSvcCheck()` runs.
    CheckService,
    /// SVC_CHECK sent to every known host; waiting for a reply.
    AwaitReply,
    /// No reply: pause before the cycle restarts.
    Pause,
}

/// Sub-states of backup main state (Roelle fig. 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackupSub {
    /// "backup idle": SVC_CHECK_TIMER runs.
    Idle,
    /// `remoteSvcCheck()` runs.
    RemoteCheck,
    /// SVC_CHECK sent to the master; waiting for SVC_CHECK_REPLY.
    AwaitReply,
    /// "learn": table adopted; deciding whether we are the successor.
    Learn,
    /// A service failure was detected: may we take over? (ours: SNE 4.3,
    /// an unsynced host only as a last resort.)
    Suspect,
    /// Unsynced and failure detected: wait, giving synced hosts the lead.
    Hold,
}

/// Where an aborted handover goes after `deactivateUplink()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbortTo {
    /// Vetoed or outranked.
    Backup,
    /// A link check failed.
    Fault,
    /// Operator shutdown.
    Final,
}

/// Sub-states of handover main state (Roelle fig. 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandoverSub {
    /// "handover start": `downlinkCheck()` runs.
    DownlinkCheck,
    /// "downstream takeover": DNSTR_TAKEOVER sent, waiting out the deny
    /// timeout.
    DownstreamTakeover,
    /// "uplink check", first half: `activateUplink()` runs.
    ActivateUplink,
    /// "uplink check", second half: `uplinkCheck()` runs.
    UplinkCheck,
    /// "uplink takeover": UPSTR_TAKEOVER sent, waiting out the deny timeout.
    UpstreamTakeover,
    /// `deactivateUplink()` runs before leaving.
    Abort(AbortTo),
}

/// Which full service check (Roelle fig. 8) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// A: SELF_CHECK_TIMER alarm.
    A,
    /// B: DNSTR_TAKEOVER from a lower host; success answers DNSTR_TAKEOVER_DENY.
    B,
    /// C: UPSTR_TAKEOVER from a lower host; success answers UPSTR_TAKEOVER_DENY.
    C,
}

/// Steps of a full service check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckStep {
    /// `downlinkCheck()`.
    Downlink,
    /// `uplinkCheck()`.
    Uplink,
    /// `localSvcCheck()`.
    LocalService,
}

/// Steps of leaving service main state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaveStep {
    /// `releaseDownstream()`.
    ReleaseDownstream,
    /// `releaseUpstream()`.
    ReleaseUpstream,
    /// `deactivateUplink()`.
    DeactivateUplink,
    /// `deactivateService()`.
    DeactivateService,
}

/// Where leaving service main state ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaveTo {
    /// Explicit takeover by another host: back to decide.
    Decide,
    /// A check or an activation failed.
    Fault,
    /// Operator shutdown.
    Final,
}

/// Sub-states of service main state (Roelle fig. 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceSub {
    /// Entry: SVC_TAKEOVER sent, `activateService()` runs.
    ActivateService,
    /// Entry: `takeoverDownstream()` runs.
    TakeoverDownstream,
    /// Entry: `takeoverUpstream()` runs.
    TakeoverUpstream,
    /// "service active": SELF_CHECK_TIMER runs.
    Active,
    /// "service full check A|B|C".
    FullCheck(CheckKind, CheckStep),
    /// Answering SVC_CHECK: `localSvcCheck()` runs.
    LocalCheck,
    /// Leaving: SVC_SHUTDOWN sent, release and deactivation run.
    Leave(LeaveStep, LeaveTo),
}

/// Sub-states of our fault main state (the paper's final state after a
/// failed link check, made recoverable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultSub {
    /// Waiting for the recheck timer.
    Wait,
    /// `downlinkCheck()` runs; success rejoins through init.
    Recheck,
}

/// A state of the machine: main state and sub-state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Init main state.
    Init(InitSub),
    /// Decide (transient).
    Decide,
    /// Backup main state.
    Backup(BackupSub),
    /// Handover main state.
    Handover(HandoverSub),
    /// Service main state.
    Service(ServiceSub),
    /// Link checks failed; rechecking.
    Fault(FaultSub),
    /// Final state.
    Final,
}

/// The main state alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MainState {
    /// Init.
    Init,
    /// Decide.
    Decide,
    /// Backup.
    Backup,
    /// Handover.
    Handover,
    /// Service.
    Service,
    /// Fault (ours).
    Fault,
    /// Final.
    Final,
}

impl State {
    /// Every state, in the order of the snapshot.
    pub fn all() -> Vec<State> {
        use State::*;
        let mut v = vec![
            Init(InitSub::CheckService),
            Init(InitSub::AwaitReply),
            Init(InitSub::Pause),
            Decide,
        ];
        for b in [
            BackupSub::Idle,
            BackupSub::RemoteCheck,
            BackupSub::AwaitReply,
            BackupSub::Learn,
            BackupSub::Suspect,
            BackupSub::Hold,
        ] {
            v.push(Backup(b));
        }
        for h in [
            HandoverSub::DownlinkCheck,
            HandoverSub::DownstreamTakeover,
            HandoverSub::ActivateUplink,
            HandoverSub::UplinkCheck,
            HandoverSub::UpstreamTakeover,
            HandoverSub::Abort(AbortTo::Backup),
            HandoverSub::Abort(AbortTo::Fault),
            HandoverSub::Abort(AbortTo::Final),
        ] {
            v.push(Handover(h));
        }
        for s in [
            ServiceSub::ActivateService,
            ServiceSub::TakeoverDownstream,
            ServiceSub::TakeoverUpstream,
            ServiceSub::Active,
        ] {
            v.push(Service(s));
        }
        for k in [CheckKind::A, CheckKind::B, CheckKind::C] {
            for s in [
                CheckStep::Downlink,
                CheckStep::Uplink,
                CheckStep::LocalService,
            ] {
                v.push(Service(ServiceSub::FullCheck(k, s)));
            }
        }
        v.push(Service(ServiceSub::LocalCheck));
        for to in [LeaveTo::Decide, LeaveTo::Fault, LeaveTo::Final] {
            for s in [
                LeaveStep::ReleaseDownstream,
                LeaveStep::ReleaseUpstream,
                LeaveStep::DeactivateUplink,
                LeaveStep::DeactivateService,
            ] {
                v.push(Service(ServiceSub::Leave(s, to)));
            }
        }
        v.push(Fault(FaultSub::Wait));
        v.push(Fault(FaultSub::Recheck));
        v.push(Final);
        v
    }

    /// The main state.
    pub fn main(self) -> MainState {
        match self {
            State::Init(_) => MainState::Init,
            State::Decide => MainState::Decide,
            State::Backup(_) => MainState::Backup,
            State::Handover(_) => MainState::Handover,
            State::Service(_) => MainState::Service,
            State::Fault(_) => MainState::Fault,
            State::Final => MainState::Final,
        }
    }

    /// The coarse role.
    pub fn role(self) -> Role {
        match self {
            State::Init(_) | State::Decide => Role::Init,
            State::Backup(_) => Role::Backup,
            State::Handover(_) => Role::Candidate,
            State::Service(ServiceSub::Leave(..)) => Role::Leaving,
            State::Service(_) => Role::Primary,
            State::Fault(_) => Role::Fault,
            State::Final => Role::Stopped,
        }
    }

    /// The procedure whose result this state waits for.
    pub fn awaits(self) -> Option<Procedure> {
        use Procedure as P;
        Some(match self {
            State::Init(InitSub::CheckService) => P::RemoteSvcCheck,
            State::Backup(BackupSub::RemoteCheck) => P::RemoteSvcCheck,
            State::Handover(HandoverSub::DownlinkCheck) => P::DownlinkCheck,
            State::Handover(HandoverSub::ActivateUplink) => P::ActivateUplink,
            State::Handover(HandoverSub::UplinkCheck) => P::UplinkCheck,
            State::Handover(HandoverSub::Abort(_)) => P::DeactivateUplink,
            State::Service(ServiceSub::ActivateService) => P::ActivateService,
            State::Service(ServiceSub::TakeoverDownstream) => P::TakeoverDownstream,
            State::Service(ServiceSub::TakeoverUpstream) => P::TakeoverUpstream,
            State::Service(ServiceSub::FullCheck(_, CheckStep::Downlink)) => P::DownlinkCheck,
            State::Service(ServiceSub::FullCheck(_, CheckStep::Uplink)) => P::UplinkCheck,
            State::Service(ServiceSub::FullCheck(_, CheckStep::LocalService)) => P::LocalSvcCheck,
            State::Service(ServiceSub::LocalCheck) => P::LocalSvcCheck,
            State::Service(ServiceSub::Leave(s, _)) => match s {
                LeaveStep::ReleaseDownstream => P::ReleaseDownstream,
                LeaveStep::ReleaseUpstream => P::ReleaseUpstream,
                LeaveStep::DeactivateUplink => P::DeactivateUplink,
                LeaveStep::DeactivateService => P::DeactivateService,
            },
            State::Fault(FaultSub::Recheck) => P::DownlinkCheck,
            _ => return None,
        })
    }

    /// Sub-state name, e.g. `full-check-a/downlink` (empty for decide and
    /// final).
    pub fn sub_name(self) -> String {
        match self {
            State::Init(s) => match s {
                InitSub::CheckService => "check-service-present",
                InitSub::AwaitReply => "await-reply",
                InitSub::Pause => "pause",
            }
            .into(),
            State::Decide | State::Final => String::new(),
            State::Backup(s) => match s {
                BackupSub::Idle => "idle",
                BackupSub::RemoteCheck => "remote-check",
                BackupSub::AwaitReply => "await-reply",
                BackupSub::Learn => "learn",
                BackupSub::Suspect => "suspect",
                BackupSub::Hold => "hold",
            }
            .into(),
            State::Handover(s) => match s {
                HandoverSub::DownlinkCheck => "start".into(),
                HandoverSub::DownstreamTakeover => "downstream-takeover".into(),
                HandoverSub::ActivateUplink => "activate-uplink".into(),
                HandoverSub::UplinkCheck => "uplink-check".into(),
                HandoverSub::UpstreamTakeover => "uplink-takeover".into(),
                HandoverSub::Abort(to) => format!("abort-to-{}", abort_name(to)),
            },
            State::Service(s) => match s {
                ServiceSub::ActivateService => "activate-service".into(),
                ServiceSub::TakeoverDownstream => "takeover-downstream".into(),
                ServiceSub::TakeoverUpstream => "takeover-upstream".into(),
                ServiceSub::Active => "active".into(),
                ServiceSub::FullCheck(k, st) => format!(
                    "full-check-{}/{}",
                    match k {
                        CheckKind::A => "a",
                        CheckKind::B => "b",
                        CheckKind::C => "c",
                    },
                    match st {
                        CheckStep::Downlink => "downlink",
                        CheckStep::Uplink => "uplink",
                        CheckStep::LocalService => "local-service",
                    }
                ),
                ServiceSub::LocalCheck => "local-check".into(),
                ServiceSub::Leave(st, to) => format!(
                    "leave-to-{}/{}",
                    match to {
                        LeaveTo::Decide => "decide",
                        LeaveTo::Fault => "fault",
                        LeaveTo::Final => "final",
                    },
                    match st {
                        LeaveStep::ReleaseDownstream => "release-downstream",
                        LeaveStep::ReleaseUpstream => "release-upstream",
                        LeaveStep::DeactivateUplink => "deactivate-uplink",
                        LeaveStep::DeactivateService => "deactivate-service",
                    }
                ),
            },
            State::Fault(s) => match s {
                FaultSub::Wait => "wait",
                FaultSub::Recheck => "recheck",
            }
            .into(),
        }
    }
}

fn abort_name(to: AbortTo) -> &'static str {
    match to {
        AbortTo::Backup => "backup",
        AbortTo::Fault => "fault",
        AbortTo::Final => "final",
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let main = match self.main() {
            MainState::Init => "init",
            MainState::Decide => "decide",
            MainState::Backup => "backup",
            MainState::Handover => "handover",
            MainState::Service => "service",
            MainState::Fault => "fault",
            MainState::Final => "final",
        };
        let sub = self.sub_name();
        if sub.is_empty() {
            f.write_str(main)
        } else {
            write!(f, "{main}/{sub}")
        }
    }
}

/// How a takeover message's sender relates to us (the guard the machine
/// evaluates; see the machine's module doc for each main state's rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rel {
    /// Outranks us: yield / accept.
    Higher,
    /// Does not: veto / ignore.
    Lower,
}

/// Outcome of decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Another host is (or should become) master.
    Backup,
    /// We are the successor: take over.
    Handover,
    /// The table names us master.
    Service,
}

/// Outcome of learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Learned {
    /// We are the successor.
    Highest,
    /// We are not.
    NotHighest,
    /// We are not, and the master's table lists us as dead or not at all:
    /// check in at once (our SVC_CHECK is the heartbeat it misses).
    Unlisted,
}

/// Outcome of suspect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Candidacy {
    /// Synced: take over now.
    Eligible,
    /// Unsynced, last-resort takeover enabled: hold first.
    Hold,
    /// Unsynced, last-resort takeover disabled.
    Never,
}

/// Timers (deadlines kept by the machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// SVC_CHECK_TIMER (backup idle), scaled by rank.
    SvcCheck,
    /// SELF_CHECK_TIMER (service main state).
    SelfCheck,
    /// Waiting for SVC_CHECK_REPLY.
    Reply,
    /// Waiting for a takeover deny.
    Deny,
    /// Unsynced hold before a last-resort takeover.
    Hold,
    /// Init pause before the cycle restarts.
    InitRetry,
    /// Fault recheck.
    FaultRecheck,
}

impl TimerKind {
    /// Every kind, in firing order for equal deadlines.
    pub const ALL: [TimerKind; 7] = [
        TimerKind::SvcCheck,
        TimerKind::SelfCheck,
        TimerKind::Reply,
        TimerKind::Deny,
        TimerKind::Hold,
        TimerKind::InitRetry,
        TimerKind::FaultRecheck,
    ];

    /// Index into a timer array.
    pub fn index(self) -> usize {
        match self {
            TimerKind::SvcCheck => 0,
            TimerKind::SelfCheck => 1,
            TimerKind::Reply => 2,
            TimerKind::Deny => 3,
            TimerKind::Hold => 4,
            TimerKind::InitRetry => 5,
            TimerKind::FaultRecheck => 6,
        }
    }
}

/// An input to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// The running procedure succeeded.
    ProcedureOk,
    /// The running procedure failed (or overran its time limit).
    ProcedureFailed,
    /// SVC_CHECK_TIMER alarm.
    SvcCheckTimer,
    /// SELF_CHECK_TIMER alarm.
    SelfCheckTimer,
    /// No reply yet; a retry is left.
    ReplyRetry,
    /// No reply and no retry left.
    ReplyTimeout,
    /// Deny timeout: nobody vetoed.
    DenyTimeout,
    /// Hold timer.
    HoldTimer,
    /// Init pause over.
    InitRetryTimer,
    /// Fault recheck timer.
    FaultRecheckTimer,
    /// A host's SVC_REQCHECK_TIMER expired.
    ReqCheckTimer,
    /// SVC_CHECK received.
    SvcCheck,
    /// SVC_CHECK_REPLY (ok) to our pending check.
    SvcCheckReplyOk,
    /// SVC_CHECK_REPLY (fault) to our pending check.
    SvcCheckReplyFault,
    /// SVC_SHUTDOWN from our master.
    SvcShutdown,
    /// DNSTR_TAKEOVER.
    DnstrTakeover(Rel),
    /// DNSTR_TAKEOVER_DENY for our current attempt.
    DnstrTakeoverDeny,
    /// UPSTR_TAKEOVER.
    UpstrTakeover(Rel),
    /// UPSTR_TAKEOVER_DENY for our current attempt.
    UpstrTakeoverDeny,
    /// SVC_TAKEOVER.
    SvcTakeover(Rel),
    /// Decide's outcome.
    Decided(Decision),
    /// Learn's outcome.
    Learned(Learned),
    /// Suspect's outcome.
    Candidacy(Candidacy),
    /// Operator shutdown.
    Shutdown,
}

impl Input {
    /// Every input, in the order of the snapshot.
    pub fn all() -> Vec<Input> {
        use Input::*;
        vec![
            ProcedureOk,
            ProcedureFailed,
            SvcCheckTimer,
            SelfCheckTimer,
            ReplyRetry,
            ReplyTimeout,
            DenyTimeout,
            HoldTimer,
            InitRetryTimer,
            FaultRecheckTimer,
            ReqCheckTimer,
            SvcCheck,
            SvcCheckReplyOk,
            SvcCheckReplyFault,
            SvcShutdown,
            DnstrTakeover(Rel::Higher),
            DnstrTakeover(Rel::Lower),
            DnstrTakeoverDeny,
            UpstrTakeover(Rel::Higher),
            UpstrTakeover(Rel::Lower),
            UpstrTakeoverDeny,
            SvcTakeover(Rel::Higher),
            SvcTakeover(Rel::Lower),
            Decided(Decision::Backup),
            Decided(Decision::Handover),
            Decided(Decision::Service),
            Learned(self::Learned::Highest),
            Learned(self::Learned::NotHighest),
            Learned(self::Learned::Unlisted),
            Candidacy(self::Candidacy::Eligible),
            Candidacy(self::Candidacy::Hold),
            Candidacy(self::Candidacy::Never),
            Shutdown,
        ]
    }

    /// A message input (queued per Roelle table 2 where the state is busy).
    pub fn is_message(self) -> bool {
        matches!(
            self,
            Input::SvcCheck
                | Input::SvcCheckReplyOk
                | Input::SvcCheckReplyFault
                | Input::SvcShutdown
                | Input::DnstrTakeover(_)
                | Input::DnstrTakeoverDeny
                | Input::UpstrTakeover(_)
                | Input::UpstrTakeoverDeny
                | Input::SvcTakeover(_)
        )
    }
}

/// An effect the machine carries out on a transition, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Request a procedure from the driver.
    Run(Procedure),
    /// Start a timer.
    Arm(TimerKind),
    /// Stop a timer.
    Disarm(TimerKind),
    /// SVC_CHECK to the master (to every known host if none is known).
    SendSvcCheck,
    /// DNSTR_TAKEOVER to every known host (new attempt).
    SendDnstrTakeover,
    /// UPSTR_TAKEOVER to every known host (same attempt).
    SendUpstrTakeover,
    /// SVC_TAKEOVER with our table to every known host.
    SendSvcTakeover,
    /// SVC_TAKEOVER to the sender of the message in hand (a rival master).
    AnswerSvcTakeover,
    /// SVC_TAKEOVER to every configured host not live in our table.
    AnnounceAbsent,
    /// SVC_SHUTDOWN with our table to every known host.
    SendSvcShutdown,
    /// Remember the SVC_CHECK in hand as waiting for a reply.
    TakeCheck,
    /// SVC_CHECK_REPLY (ok) to every waiting and queued SVC_CHECK.
    ReplyChecksOk,
    /// SVC_CHECK_REPLY (fault) to every waiting and queued SVC_CHECK.
    ReplyChecksFault,
    /// Remember the takeover in hand as the one a full check B/C answers.
    NoteChallenger,
    /// DNSTR_TAKEOVER_DENY to the challenger.
    DenyDnstr,
    /// UPSTR_TAKEOVER_DENY to the challenger.
    DenyUpstr,
    /// Adopt the table of the message in hand.
    LearnTable,
    /// Initialize the table from the configuration (bootstrap).
    StaticTable,
    /// Update the table for our takeover; start SVC_REQCHECK_TIMERs.
    BecomeMaster,
    /// Update the table for our leaving; stop SVC_REQCHECK_TIMERs.
    Resign,
    /// Our flow state is no longer a complete copy (needs a resync).
    ForgetSync,
    /// Mark the host whose SVC_REQCHECK_TIMER expired as dead.
    MarkDead,
}

/// What the table says about one (state, input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Move to `next` (possibly the same state) and run `actions` in order.
    Go {
        /// Next state.
        next: State,
        /// Actions, in order.
        actions: &'static [Action],
    },
    /// Keep the input until the state can take it.
    Queue,
    /// Drop the input (counted).
    Ignore,
}

/// An input the state can never receive (a driver or machine bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid transition: {input:?} in {state}")]
pub struct InvalidTransition {
    /// The state.
    pub state: State,
    /// The input.
    pub input: Input,
}
