//! The transition table itself: [`transition`] and one function per main
//! state, pure functions of (state, input), and [`render_table`], the
//! whole table as text for the snapshot test.

use super::{
    AbortTo, Action, BackupSub, Candidacy, CheckKind, CheckStep, Decision, FaultSub, HandoverSub,
    InitSub, Input, InvalidTransition, Learned, LeaveStep, LeaveTo, MainState, Outcome, Rel,
    ServiceSub, State, TimerKind,
};
use crate::election::procedure::Procedure;

use Action as A;
use Procedure as P;

fn go(next: State, actions: &'static [Action]) -> Result<Outcome, InvalidTransition> {
    Ok(Outcome::Go { next, actions })
}

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
    use crate::election::state::*;

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
