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

fn go(next: State, actions: &'static [Action]) -> Result<Outcome, InvalidTransition> {
    Ok(Outcome::Go { next, actions })
}

use Action as A;
use Procedure as P;

const TO_IDLE: &[Action] = &[A::Arm(TimerKind::SvcCheck)];
const START_HANDOVER: &[Action] = &[A::Run(P::DownlinkCheck)];
const ENTER_SERVICE: &[Action] = &[
    A::BecomeMaster,
    A::SendSvcTakeover,
    A::Run(P::ActivateService),
];
const LEAVE: &[Action] = &[
    A::Disarm(TimerKind::SelfCheck),
    A::Resign,
    A::ForgetSync,
    A::SendSvcShutdown,
    A::Run(P::ReleaseDownstream),
];
const YIELD: &[Action] = &[
    A::Disarm(TimerKind::SelfCheck),
    A::ForgetSync,
    A::LearnTable,
    A::Resign,
    A::SendSvcShutdown,
    A::Run(P::ReleaseDownstream),
];
const ABORT: &[Action] = &[A::Run(P::DeactivateUplink)];
const TO_FAULT: &[Action] = &[A::Arm(TimerKind::FaultRecheck)];

/// The transition table. Pure; see the module documentation.
pub fn transition(state: State, input: Input) -> Result<Outcome, InvalidTransition> {
    use Input as I;
    use State as S;
    let invalid = Err(InvalidTransition { state, input });
    // Operator shutdown first: it applies everywhere.
    if input == I::Shutdown {
        return match state {
            S::Final => Ok(Outcome::Ignore),
            S::Handover(HandoverSub::ActivateUplink) => Ok(Outcome::Queue),
            S::Handover(HandoverSub::UplinkCheck | HandoverSub::UpstreamTakeover) => {
                go(S::Handover(HandoverSub::Abort(AbortTo::Final)), ABORT)
            }
            S::Handover(HandoverSub::Abort(_)) => {
                go(S::Handover(HandoverSub::Abort(AbortTo::Final)), &[])
            }
            S::Service(ServiceSub::Active) => go(leave_state(LeaveTo::Final), LEAVE),
            S::Service(ServiceSub::Leave(step, _)) => {
                go(S::Service(ServiceSub::Leave(step, LeaveTo::Final)), &[])
            }
            S::Service(_) | S::Decide | S::Backup(BackupSub::Learn | BackupSub::Suspect) => {
                Ok(Outcome::Queue)
            }
            _ => go(S::Final, &[]),
        };
    }
    // SELF_CHECK_TIMER can come out of the queue (kept during a local
    // check) after another queued input moved us on: a full check under
    // way or leaving service makes it moot.
    if input == I::SelfCheckTimer && state.main() != MainState::Service {
        return Ok(Outcome::Ignore);
    }
    match state {
        S::Init(sub) => init(sub, input).unwrap_or(invalid),
        S::Decide => match input {
            I::Decided(Decision::Backup) => go(S::Backup(BackupSub::Idle), TO_IDLE),
            I::Decided(Decision::Handover) => {
                go(S::Handover(HandoverSub::DownlinkCheck), START_HANDOVER)
            }
            I::Decided(Decision::Service) => {
                go(S::Service(ServiceSub::ActivateService), ENTER_SERVICE)
            }
            i if i.is_message() => Ok(Outcome::Queue),
            _ => invalid,
        },
        S::Backup(sub) => backup(sub, input).unwrap_or(invalid),
        S::Handover(sub) => handover(sub, input).unwrap_or(invalid),
        S::Service(sub) => service(sub, input).unwrap_or(invalid),
        S::Fault(sub) => match (sub, input) {
            (FaultSub::Wait, I::FaultRecheckTimer) => {
                go(S::Fault(FaultSub::Recheck), &[A::Run(P::DownlinkCheck)])
            }
            (FaultSub::Recheck, I::ProcedureOk) => go(
                S::Init(InitSub::CheckService),
                &[A::ForgetSync, A::Run(P::RemoteSvcCheck)],
            ),
            (FaultSub::Recheck, I::ProcedureFailed) => go(S::Fault(FaultSub::Wait), TO_FAULT),
            (_, i) if i.is_message() => Ok(Outcome::Ignore),
            _ => invalid,
        },
        S::Final => {
            if input.is_message() {
                Ok(Outcome::Ignore)
            } else {
                invalid
            }
        }
    }
}

type Cell = Option<Result<Outcome, InvalidTransition>>;

fn init(sub: InitSub, input: Input) -> Cell {
    use Input as I;
    use State as S;
    Some(match (sub, input) {
        (InitSub::CheckService, I::ProcedureOk) => go(
            S::Init(InitSub::AwaitReply),
            &[A::SendSvcCheck, A::Arm(TimerKind::Reply)],
        ),
        (InitSub::CheckService, I::ProcedureFailed) => go(S::Decide, &[A::StaticTable]),
        (InitSub::AwaitReply, I::SvcCheckReplyOk | I::SvcCheckReplyFault) => {
            go(S::Decide, &[A::LearnTable])
        }
        (InitSub::AwaitReply, I::ReplyRetry) => go(
            S::Init(InitSub::AwaitReply),
            &[A::SendSvcCheck, A::Arm(TimerKind::Reply)],
        ),
        (InitSub::AwaitReply, I::ReplyTimeout) => {
            go(S::Init(InitSub::Pause), &[A::Arm(TimerKind::InitRetry)])
        }
        (InitSub::Pause, I::InitRetryTimer) => {
            go(S::Init(InitSub::CheckService), &[A::Run(P::RemoteSvcCheck)])
        }
        // A master announcing itself answers the question init asks.
        (_, I::SvcTakeover(_)) => go(S::Decide, &[A::LearnTable]),
        (_, i) if i.is_message() => Ok(Outcome::Ignore),
        _ => return None,
    })
}

fn backup(sub: BackupSub, input: Input) -> Cell {
    use BackupSub as B;
    use Input as I;
    use State as S;
    let waiting = matches!(sub, B::Idle | B::RemoteCheck | B::AwaitReply | B::Hold);
    Some(match (sub, input) {
        (B::Idle, I::SvcCheckTimer) => go(S::Backup(B::RemoteCheck), &[A::Run(P::RemoteSvcCheck)]),
        (B::RemoteCheck, I::ProcedureOk) => go(
            S::Backup(B::AwaitReply),
            &[A::SendSvcCheck, A::Arm(TimerKind::Reply)],
        ),
        (B::RemoteCheck, I::ProcedureFailed) => go(S::Backup(B::Suspect), &[]),
        (B::AwaitReply, I::SvcCheckReplyOk) => go(S::Backup(B::Learn), &[A::LearnTable]),
        (B::AwaitReply, I::SvcCheckReplyFault) => go(S::Backup(B::Suspect), &[A::LearnTable]),
        (B::AwaitReply, I::ReplyRetry) => go(
            S::Backup(B::AwaitReply),
            &[A::SendSvcCheck, A::Arm(TimerKind::Reply)],
        ),
        (B::AwaitReply, I::ReplyTimeout) => go(S::Backup(B::Suspect), &[]),
        (B::Learn, I::Learned(Learned::Highest)) => go(S::Backup(B::Suspect), &[]),
        (B::Learn, I::Learned(Learned::NotHighest)) => go(S::Backup(B::Idle), TO_IDLE),
        (B::Learn, I::Learned(Learned::Unlisted)) => {
            go(S::Backup(B::RemoteCheck), &[A::Run(P::RemoteSvcCheck)])
        }
        (B::Suspect, I::Candidacy(Candidacy::Eligible)) => {
            go(S::Handover(HandoverSub::DownlinkCheck), START_HANDOVER)
        }
        (B::Suspect, I::Candidacy(Candidacy::Hold)) => {
            go(S::Backup(B::Hold), &[A::Arm(TimerKind::Hold)])
        }
        (B::Suspect, I::Candidacy(Candidacy::Never)) => go(S::Backup(B::Idle), TO_IDLE),
        (B::Hold, I::HoldTimer) => go(S::Handover(HandoverSub::DownlinkCheck), START_HANDOVER),
        // Table 2: these interrupt the checks (Roelle 4.2.2).
        (_, I::DnstrTakeover(Rel::Higher)) if waiting => go(S::Backup(B::Idle), TO_IDLE),
        // A lower host suspects the master: check at once by starting our
        // own takeover, which outranks it (ours: keeps "best backup wins").
        (B::Hold, I::DnstrTakeover(Rel::Lower)) => Ok(Outcome::Ignore),
        (_, I::DnstrTakeover(Rel::Lower)) if waiting => go(S::Backup(B::Suspect), &[]),
        (_, I::SvcShutdown | I::SvcTakeover(Rel::Higher)) if waiting => {
            go(S::Backup(B::Learn), &[A::LearnTable])
        }
        (B::Learn | B::Suspect, i) if i.is_message() => Ok(Outcome::Queue),
        (_, i) if i.is_message() => Ok(Outcome::Ignore),
        _ => return None,
    })
}

fn handover(sub: HandoverSub, input: Input) -> Cell {
    use HandoverSub as H;
    use Input as I;
    use State as S;
    let outranked = matches!(
        input,
        I::DnstrTakeover(Rel::Higher) | I::UpstrTakeover(Rel::Higher) | I::SvcTakeover(Rel::Higher)
    );
    let takeover_msg = matches!(
        input,
        I::DnstrTakeover(_) | I::UpstrTakeover(_) | I::SvcTakeover(_)
    );
    Some(match (sub, input) {
        (H::DownlinkCheck, I::ProcedureOk) => go(
            S::Handover(H::DownstreamTakeover),
            &[A::SendDnstrTakeover, A::Arm(TimerKind::Deny)],
        ),
        (H::DownlinkCheck, I::ProcedureFailed) => go(S::Fault(FaultSub::Wait), TO_FAULT),
        (H::DownstreamTakeover, I::DenyTimeout) => {
            go(S::Handover(H::ActivateUplink), &[A::Run(P::ActivateUplink)])
        }
        (H::DownstreamTakeover, I::DnstrTakeoverDeny) => go(S::Backup(BackupSub::Idle), TO_IDLE),
        (H::ActivateUplink, I::ProcedureOk) => {
            go(S::Handover(H::UplinkCheck), &[A::Run(P::UplinkCheck)])
        }
        (H::ActivateUplink | H::UplinkCheck, I::ProcedureFailed) => {
            go(S::Handover(H::Abort(AbortTo::Fault)), ABORT)
        }
        (H::UplinkCheck, I::ProcedureOk) => go(
            S::Handover(H::UpstreamTakeover),
            &[A::SendUpstrTakeover, A::Arm(TimerKind::Deny)],
        ),
        (H::UpstreamTakeover, I::DenyTimeout) => {
            go(S::Service(ServiceSub::ActivateService), ENTER_SERVICE)
        }
        (H::UpstreamTakeover, I::UpstrTakeoverDeny) => {
            go(S::Handover(H::Abort(AbortTo::Backup)), ABORT)
        }
        (H::Abort(to), I::ProcedureOk | I::ProcedureFailed) => match to {
            AbortTo::Backup => go(S::Backup(BackupSub::Idle), TO_IDLE),
            AbortTo::Fault => go(S::Fault(FaultSub::Wait), TO_FAULT),
            AbortTo::Final => go(S::Final, &[]),
        },
        // Interrupted by a higher host (Roelle 4.2.3).
        (H::DownlinkCheck | H::DownstreamTakeover, I::SvcTakeover(Rel::Higher)) => {
            go(S::Backup(BackupSub::Learn), &[A::LearnTable])
        }
        (H::DownlinkCheck | H::DownstreamTakeover, _) if outranked => {
            go(S::Backup(BackupSub::Idle), TO_IDLE)
        }
        (H::UplinkCheck | H::UpstreamTakeover, I::SvcTakeover(Rel::Higher)) => go(
            S::Handover(H::Abort(AbortTo::Backup)),
            &[A::LearnTable, A::Run(P::DeactivateUplink)],
        ),
        (H::UplinkCheck | H::UpstreamTakeover, _) if outranked => {
            go(S::Handover(H::Abort(AbortTo::Backup)), ABORT)
        }
        // Table 2: kept while an action runs.
        (H::ActivateUplink | H::Abort(_), _) if takeover_msg => Ok(Outcome::Queue),
        (_, i) if i.is_message() => Ok(Outcome::Ignore),
        _ => return None,
    })
}

fn leave_state(to: LeaveTo) -> State {
    State::Service(ServiceSub::Leave(LeaveStep::ReleaseDownstream, to))
}

fn service(sub: ServiceSub, input: Input) -> Cell {
    use Input as I;
    use ServiceSub as V;
    use State as S;
    let fail = || go(leave_state(LeaveTo::Fault), LEAVE);
    Some(match (sub, input) {
        // Entry: activate, then announce (issue 4 item 3: commit and
        // forward before the addresses move).
        (V::ActivateService, I::ProcedureOk) => go(
            S::Service(V::TakeoverDownstream),
            &[A::Run(P::TakeoverDownstream)],
        ),
        (V::TakeoverDownstream, I::ProcedureOk) => go(
            S::Service(V::TakeoverUpstream),
            &[A::Run(P::TakeoverUpstream)],
        ),
        (V::TakeoverUpstream, I::ProcedureOk) => {
            go(S::Service(V::Active), &[A::Arm(TimerKind::SelfCheck)])
        }
        (V::ActivateService | V::TakeoverDownstream | V::TakeoverUpstream, I::ProcedureFailed) => {
            fail()
        }
        // Active.
        (V::Active, I::SelfCheckTimer) => go(
            S::Service(V::FullCheck(CheckKind::A, CheckStep::Downlink)),
            &[A::Disarm(TimerKind::SelfCheck), A::Run(P::DownlinkCheck)],
        ),
        (V::Active, I::SvcCheck) => go(
            S::Service(V::LocalCheck),
            &[A::TakeCheck, A::Run(P::LocalSvcCheck)],
        ),
        (V::Active, I::DnstrTakeover(Rel::Lower)) => go(
            S::Service(V::FullCheck(CheckKind::B, CheckStep::Downlink)),
            &[
                A::NoteChallenger,
                A::Disarm(TimerKind::SelfCheck),
                A::Run(P::DownlinkCheck),
            ],
        ),
        (V::Active, I::UpstrTakeover(Rel::Lower)) => go(
            S::Service(V::FullCheck(CheckKind::C, CheckStep::Downlink)),
            &[
                A::NoteChallenger,
                A::Disarm(TimerKind::SelfCheck),
                A::Run(P::DownlinkCheck),
            ],
        ),
        // The designated successor takes over directly: no veto.
        (V::Active, I::DnstrTakeover(Rel::Higher) | I::UpstrTakeover(Rel::Higher)) => {
            Ok(Outcome::Ignore)
        }
        (V::Active, I::SvcTakeover(Rel::Higher)) => go(leave_state(LeaveTo::Decide), YIELD),
        (V::Active, I::SvcTakeover(Rel::Lower)) => {
            go(S::Service(V::Active), &[A::AnswerSvcTakeover])
        }
        // Full checks (fig. 8).
        (V::FullCheck(k, CheckStep::Downlink), I::ProcedureOk) => go(
            S::Service(V::FullCheck(k, CheckStep::Uplink)),
            &[A::Run(P::UplinkCheck)],
        ),
        (V::FullCheck(k, CheckStep::Uplink), I::ProcedureOk) => go(
            S::Service(V::FullCheck(k, CheckStep::LocalService)),
            &[A::Run(P::LocalSvcCheck)],
        ),
        (V::FullCheck(k, CheckStep::LocalService), I::ProcedureOk) => match k {
            CheckKind::A => go(
                S::Service(V::Active),
                &[A::AnnounceAbsent, A::Arm(TimerKind::SelfCheck)],
            ),
            CheckKind::B => go(
                S::Service(V::Active),
                &[A::DenyDnstr, A::Arm(TimerKind::SelfCheck)],
            ),
            CheckKind::C => go(
                S::Service(V::Active),
                &[A::DenyUpstr, A::Arm(TimerKind::SelfCheck)],
            ),
        },
        (V::FullCheck(..), I::ProcedureFailed) => fail(),
        (V::LocalCheck, I::ProcedureOk) => go(S::Service(V::Active), &[A::ReplyChecksOk]),
        (V::LocalCheck, I::ProcedureFailed) => go(S::Service(V::Active), &[A::ReplyChecksFault]),
        // Leaving.
        (V::Leave(step, to), I::ProcedureOk | I::ProcedureFailed) => match step {
            LeaveStep::ReleaseDownstream => go(
                S::Service(V::Leave(LeaveStep::ReleaseUpstream, to)),
                &[A::Run(P::ReleaseUpstream)],
            ),
            LeaveStep::ReleaseUpstream => go(
                S::Service(V::Leave(LeaveStep::DeactivateUplink, to)),
                &[A::Run(P::DeactivateUplink)],
            ),
            LeaveStep::DeactivateUplink => go(
                S::Service(V::Leave(LeaveStep::DeactivateService, to)),
                &[A::Run(P::DeactivateService)],
            ),
            LeaveStep::DeactivateService => match to {
                LeaveTo::Decide => go(S::Decide, &[]),
                LeaveTo::Fault => go(S::Fault(FaultSub::Wait), TO_FAULT),
                LeaveTo::Final => go(S::Final, &[]),
            },
        },
        // SVC_REQCHECK_TIMER: the master maintains the table.
        (V::Leave(..), I::ReqCheckTimer) => Ok(Outcome::Ignore),
        (_, I::ReqCheckTimer) => go(S::Service(sub), &[A::MarkDead]),
        // Table 2 (and our SELF_CHECK_TIMER) while a procedure runs.
        (
            V::Leave(..),
            I::SvcCheck | I::DnstrTakeover(_) | I::UpstrTakeover(_) | I::SvcTakeover(_),
        ) => Ok(Outcome::Queue),
        (
            V::ActivateService
            | V::TakeoverDownstream
            | V::TakeoverUpstream
            | V::FullCheck(..)
            | V::LocalCheck,
            I::SvcCheck | I::DnstrTakeover(_) | I::UpstrTakeover(_) | I::SvcTakeover(_),
        ) => Ok(Outcome::Queue),
        (V::LocalCheck, I::SelfCheckTimer) => Ok(Outcome::Queue),
        (V::FullCheck(..) | V::Leave(..), I::SelfCheckTimer) => Ok(Outcome::Ignore),
        (_, i) if i.is_message() => Ok(Outcome::Ignore),
        _ => return None,
    })
}

/// The whole table as text, one line per (state, input): the snapshot.
pub fn render_table() -> String {
    let mut out = String::new();
    out.push_str("# Election transition table: state | input => outcome\n");
    out.push_str(
        "# Snapshot (insta): cargo insta test -p ftfw-control --test election_table --review\n",
    );
    for s in State::all() {
        out.push('\n');
        for i in Input::all() {
            let cell = match transition(s, i) {
                Ok(Outcome::Go { next, actions }) => {
                    let acts: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
                    if acts.is_empty() {
                        format!("-> {next}")
                    } else {
                        format!("-> {next} [{}]", acts.join(", "))
                    }
                }
                Ok(Outcome::Queue) => "queue".into(),
                Ok(Outcome::Ignore) => "ignore".into(),
                Err(_) => "INVALID".into(),
            };
            out.push_str(&format!("{s} | {i:?} => {cell}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_awaiting_a_procedure_accepts_both_results() {
        for s in State::all() {
            let ok = transition(s, Input::ProcedureOk);
            let failed = transition(s, Input::ProcedureFailed);
            if s.awaits().is_some() {
                assert!(matches!(ok, Ok(Outcome::Go { .. })), "{s}: {ok:?}");
                assert!(matches!(failed, Ok(Outcome::Go { .. })), "{s}: {failed:?}");
            } else {
                assert!(ok.is_err(), "{s} takes a result but awaits none");
                assert!(failed.is_err(), "{s} takes a result but awaits none");
            }
        }
    }

    #[test]
    fn every_go_into_a_procedure_state_requests_that_procedure() {
        for s in State::all() {
            for i in Input::all() {
                if let Ok(Outcome::Go { next, actions }) = transition(s, i) {
                    if next == s {
                        continue;
                    }
                    if let Some(p) = next.awaits() {
                        // Changing only the target of a running step keeps it.
                        let same_step = s.awaits() == Some(p) && actions.is_empty();
                        assert!(
                            same_step || actions.last() == Some(&Action::Run(p)),
                            "{s} --{i:?}--> {next} does not run {p:?}"
                        );
                    } else {
                        assert!(
                            !actions.iter().any(|a| matches!(a, Action::Run(_))),
                            "{s} --{i:?}--> {next} runs a procedure nobody awaits"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_message_is_handled_somewhere_and_never_invalid() {
        for s in State::all() {
            for i in Input::all().into_iter().filter(|i| i.is_message()) {
                assert!(transition(s, i).is_ok(), "{s} {i:?}");
            }
        }
    }

    #[test]
    fn transient_states_take_their_guard() {
        assert!(matches!(
            transition(State::Decide, Input::Decided(Decision::Handover)),
            Ok(Outcome::Go { .. })
        ));
        assert!(transition(State::Decide, Input::SvcCheckTimer).is_err());
        assert!(transition(
            State::Backup(BackupSub::Idle),
            Input::Learned(Learned::Highest)
        )
        .is_err());
    }
}
