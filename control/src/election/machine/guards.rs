//! Guards: how the machine turns an authenticated message into a table
//! input (or drops it), and the relations and decisions the table's guarded
//! transitions read. See the module docs of `machine` for the rules.

use std::time::Instant;

use super::Election;
use crate::election::msg::{Body, Message, SelfReport};
use crate::election::state::{Candidacy, Decision, Input, Learned, MainState, Rel};
use crate::election::table::{ClaimKey, NodeId, RankKey};

impl Election {
    pub(super) fn classify(&mut self, now: Instant, msg: &Message) -> Option<Input> {
        let sender = msg.sender;
        Some(match &msg.body {
            Body::SvcCheck { .. } => Input::SvcCheck,
            Body::SvcCheckReply { nonce, ok, .. } => {
                let from = self.expecting?;
                let in_round = nonce.wrapping_sub(self.round_first_nonce)
                    <= self.nonce.wrapping_sub(self.round_first_nonce);
                if !in_round || from.is_some_and(|m| m != sender) {
                    return None;
                }
                if *ok {
                    Input::SvcCheckReplyOk
                } else {
                    Input::SvcCheckReplyFault
                }
            }
            Body::SvcShutdown { .. } => {
                if self.table.master() != Some(sender) {
                    return None;
                }
                Input::SvcShutdown
            }
            Body::DnstrTakeover { report, .. } => {
                Input::DnstrTakeover(self.rel_takeover(sender, report))
            }
            Body::UpstrTakeover { report, .. } => {
                Input::UpstrTakeover(self.rel_takeover(sender, report))
            }
            Body::DnstrTakeoverDeny { attempt } => {
                if !self.attempt_active || *attempt != self.attempt {
                    return None;
                }
                Input::DnstrTakeoverDeny
            }
            Body::UpstrTakeoverDeny { attempt } => {
                if !self.attempt_active || *attempt != self.attempt {
                    return None;
                }
                Input::UpstrTakeoverDeny
            }
            Body::SvcTakeover { table } => {
                let claim = table
                    .get(sender)
                    .filter(|_| table.master() == Some(sender))?;
                Input::SvcTakeover(self.rel_claim(now, sender, claim.claim_key()))
            }
        })
    }

    pub(super) fn rel_takeover(&self, sender: NodeId, r: &SelfReport) -> Rel {
        if self.state.main() == MainState::Service {
            return if self.table.designated() == Some(sender) {
                Rel::Higher
            } else {
                Rel::Lower
            };
        }
        let theirs = RankKey {
            synced: r.freshness.synced,
            priority: r.priority,
            seq: r.freshness.seq,
            node: sender,
        };
        if theirs > self.own_rank() {
            Rel::Higher
        } else {
            Rel::Lower
        }
    }

    pub(super) fn rel_claim(&self, now: Instant, sender: NodeId, theirs: ClaimKey) -> Rel {
        let higher = |b: bool| if b { Rel::Higher } else { Rel::Lower };
        match self.state.main() {
            MainState::Service | MainState::Handover => higher(theirs > self.own_claim()),
            MainState::Backup => {
                let Some(m) = self.table.master().filter(|m| *m != self.node) else {
                    return Rel::Higher;
                };
                if m == sender {
                    return Rel::Higher;
                }
                let window = self.cfg.backup_period(self.table.backup_rank(self.node))
                    + self.cfg.reply_timeout;
                let silent = self
                    .master_proof
                    .get(&m)
                    .is_none_or(|t| now.saturating_duration_since(*t) > window);
                let beats = self.table.get(m).is_none_or(|e| theirs > e.claim_key());
                higher(silent || beats)
            }
            _ => Rel::Higher,
        }
    }

    pub(super) fn decide(&self) -> Decision {
        if self.table.master() == Some(self.node) {
            Decision::Service
        } else if self.table.successor() == Some(self.node) {
            Decision::Handover
        } else {
            Decision::Backup
        }
    }

    pub(super) fn learned(&self) -> Learned {
        if self.table.successor() == Some(self.node) {
            Learned::Highest
        } else if self.table.master().is_some() && self.table.get(self.node).is_none_or(|e| e.dead)
        {
            Learned::Unlisted
        } else {
            Learned::NotHighest
        }
    }

    pub(super) fn candidacy(&self) -> Candidacy {
        if self.own.synced {
            Candidacy::Eligible
        } else if self.cfg.unsynced_takeover.is_some() {
            Candidacy::Hold
        } else {
            Candidacy::Never
        }
    }
}
