//! The table's actions: what each [`Action`] does to the machine's data
//! (timers, table, nonces, attempts), and the datagrams and events it
//! queues.

use std::time::Instant;

use super::{Ctx, Election, Event, Queued, Running, EVENT_MAX, TRANSMIT_MAX};
use crate::election::msg::{Body, Message, SelfReport};
use crate::election::procedure::{Procedure, ProcedureRequest, Ticket};
use crate::election::state::{Action, MainState, TimerKind};
use crate::election::table::{Entry, NodeId, Role, StatusTable};

impl Election {
    pub(super) fn apply(&mut self, now: Instant, action: Action, ctx: &Ctx) {
        match action {
            Action::Run(p) => self.run(now, p),
            Action::Arm(k) => {
                let d = match k {
                    TimerKind::SvcCheck => self
                        .cfg
                        .svc_check_interval(self.table.backup_rank(self.node)),
                    TimerKind::SelfCheck => self.cfg.self_check_interval,
                    TimerKind::Reply => self.cfg.reply_timeout,
                    TimerKind::Deny => self.cfg.deny_timeout,
                    TimerKind::Hold => self.cfg.unsynced_takeover.unwrap_or_default(),
                    TimerKind::InitRetry => self.cfg.init_pause,
                    TimerKind::FaultRecheck => self.cfg.fault_recheck,
                };
                self.timers[k.index()] = Some(now + d);
            }
            Action::Disarm(k) => self.timers[k.index()] = None,
            Action::SendSvcCheck => {
                // The first check of a round goes to the master; a retry to
                // every host, so a master our table does not know answers.
                let first = self.nonce.wrapping_add(1) == self.round_first_nonce;
                self.nonce = self.nonce.wrapping_add(1);
                let body = Body::SvcCheck {
                    nonce: self.nonce,
                    report: self.own_report(),
                };
                match self.table.master().filter(|m| *m != self.node && first) {
                    Some(m) => {
                        self.expecting = Some(Some(m));
                        self.send(m, body);
                    }
                    None => {
                        self.expecting = Some(None);
                        self.send_all(&body);
                    }
                }
            }
            Action::SendDnstrTakeover => {
                self.attempt = self.attempt.wrapping_add(1);
                self.attempt_active = true;
                let body = Body::DnstrTakeover {
                    attempt: self.attempt,
                    report: self.own_report(),
                };
                self.send_all(&body);
            }
            Action::SendUpstrTakeover => {
                let body = Body::UpstrTakeover {
                    attempt: self.attempt,
                    report: self.own_report(),
                };
                self.send_all(&body);
            }
            Action::SendSvcTakeover => {
                let body = Body::SvcTakeover {
                    table: self.table.clone(),
                };
                self.send_all(&body);
            }
            Action::AnswerSvcTakeover => {
                if let Some(m) = ctx.msg() {
                    let body = Body::SvcTakeover {
                        table: self.table.clone(),
                    };
                    self.send(m.sender, body);
                }
            }
            Action::AnnounceAbsent => {
                let absent: Vec<NodeId> = self
                    .peers()
                    .into_iter()
                    .filter(|n| self.table.get(*n).is_none_or(|e| e.dead))
                    .collect();
                for n in absent {
                    let body = Body::SvcTakeover {
                        table: self.table.clone(),
                    };
                    self.send(n, body);
                }
            }
            Action::SendSvcShutdown => {
                let body = Body::SvcShutdown {
                    table: self.table.clone(),
                };
                self.send_all(&body);
            }
            Action::TakeCheck => {
                if let Some(Message {
                    sender,
                    body: Body::SvcCheck { nonce, .. },
                }) = ctx.msg()
                {
                    self.pending_checks.push((*sender, *nonce));
                }
            }
            Action::ReplyChecksOk | Action::ReplyChecksFault => {
                let ok = action == Action::ReplyChecksOk;
                let mut to: Vec<(NodeId, u32)> = std::mem::take(&mut self.pending_checks);
                self.queue.retain(|q| match q {
                    Queued::Msg(Message {
                        sender,
                        body: Body::SvcCheck { nonce, .. },
                    }) => {
                        to.push((*sender, *nonce));
                        false
                    }
                    _ => true,
                });
                for (dest, nonce) in to {
                    self.stats.checks_answered += 1;
                    let body = Body::SvcCheckReply {
                        nonce,
                        ok,
                        table: self.table.clone(),
                    };
                    self.send(dest, body);
                }
            }
            Action::NoteChallenger => {
                if let Some(Message {
                    sender,
                    body: Body::DnstrTakeover { attempt, .. } | Body::UpstrTakeover { attempt, .. },
                }) = ctx.msg()
                {
                    self.challenger = Some((*sender, *attempt));
                }
            }
            Action::DenyDnstr | Action::DenyUpstr => {
                if let Some((dest, attempt)) = self.challenger.take() {
                    self.stats.denies_sent += 1;
                    let body = if action == Action::DenyDnstr {
                        Body::DnstrTakeoverDeny { attempt }
                    } else {
                        Body::UpstrTakeoverDeny { attempt }
                    };
                    self.send(dest, body);
                }
            }
            Action::LearnTable => {
                if let Some(Message {
                    body:
                        Body::SvcCheckReply { table, .. }
                        | Body::SvcShutdown { table }
                        | Body::SvcTakeover { table },
                    ..
                }) = ctx.msg()
                {
                    self.learn(table.clone());
                }
            }
            Action::StaticTable => {
                self.table = StatusTable::bootstrap(
                    std::iter::once((self.node, self.cfg.priority))
                        .chain(self.cfg.peers.iter().map(|p| (p.node, p.priority))),
                );
                // Bootstrap: no master holds any state, so ours is complete.
                self.own.synced = true;
            }
            Action::BecomeMaster => self.become_master(now),
            Action::Resign => {
                self.stats.resignations += 1;
                if self.table.master() == Some(self.node) {
                    self.table.set_master(None);
                }
                if let Some(e) = self.table.get_mut(self.node) {
                    e.role = Role::Leaving;
                }
                self.table.rerank(false);
                self.reqcheck.clear();
            }
            Action::ForgetSync => {
                self.own.synced = false;
                self.resync_asked = None;
            }
            Action::MarkDead => {
                if let Ctx::Peer(n) = ctx {
                    if let Some(e) = self.table.get_mut(*n) {
                        if !e.dead {
                            e.dead = true;
                            self.stats.peers_marked_dead += 1;
                            self.push_event(Event::PeerDead { node: *n });
                        }
                    }
                    self.table.rerank(self.cfg.preempt);
                }
            }
        }
    }

    pub(super) fn run(&mut self, now: Instant, procedure: Procedure) {
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        let timeout = self.cfg.tmax.of(procedure);
        self.running = Some(Running {
            ticket,
            deadline: now + timeout,
        });
        self.push_event(Event::Run(ProcedureRequest {
            ticket,
            procedure,
            timeout,
        }));
    }

    pub(super) fn learn(&mut self, mut table: StatusTable) {
        // A table naming us master while we are not in service is stale.
        if table.master() == Some(self.node) && self.state.main() != MainState::Service {
            table.set_master(None);
        }
        for e in table.entries() {
            self.known.insert(e.node);
        }
        self.known.remove(&self.node);
        self.table = table;
        self.maybe_ask_resync();
    }

    pub(super) fn maybe_ask_resync(&mut self) {
        let Some(m) = self.table.master().filter(|m| *m != self.node) else {
            return;
        };
        if self.own.synced || self.resync_asked == Some(m) {
            return;
        }
        self.resync_asked = Some(m);
        let freshest = self
            .table
            .live()
            .filter(|e| {
                e.node != m && e.node != self.node && e.freshness.synced && e.role == Role::Backup
            })
            .max_by_key(|e| e.rank_key())
            .map(|e| e.node);
        self.push_event(Event::ResyncNeeded {
            master: m,
            freshest,
        });
    }

    pub(super) fn become_master(&mut self, now: Instant) {
        self.stats.takeovers += 1;
        let old = self.table.master().filter(|m| *m != self.node);
        self.table.upsert(Entry {
            node: self.node,
            priority: self.cfg.priority,
            freshness: self.own,
            role: Role::Primary,
            dead: false,
        });
        for p in self.cfg.peers.clone() {
            if self.table.get(p.node).is_none() {
                let mut e = Entry::configured(p.node, p.priority);
                e.dead = true;
                self.table.upsert(e);
            }
        }
        if let Some(o) = old {
            if let Some(e) = self.table.get_mut(o) {
                e.dead = true;
                e.role = Role::Unknown;
            }
            self.push_event(Event::PeerDead { node: o });
        }
        self.table.set_master(Some(self.node));
        self.table.rerank(self.cfg.preempt);
        self.reqcheck.clear();
        let deadline = now + self.cfg.reqcheck_timeout;
        let live: Vec<NodeId> = self
            .table
            .live()
            .filter(|e| e.node != self.node)
            .map(|e| e.node)
            .collect();
        for n in live {
            self.reqcheck.insert(n, deadline);
        }
    }

    pub(super) fn heartbeat(&mut self, now: Instant, sender: NodeId, report: SelfReport) {
        // Configured hosts start listed but unheard (role unknown).
        let was_alive = self
            .table
            .get(sender)
            .is_some_and(|e| !e.dead && e.role != Role::Unknown);
        let stored = self.table.upsert(Entry {
            node: sender,
            priority: report.priority,
            freshness: report.freshness,
            role: report.role,
            dead: false,
        });
        if !stored {
            return;
        }
        if !was_alive {
            self.push_event(Event::PeerAlive { node: sender });
        }
        self.table.rerank(self.cfg.preempt);
        self.reqcheck
            .insert(sender, now + self.cfg.reqcheck_timeout);
    }

    pub(super) fn note_master(&mut self) {
        let m = self.table.master();
        if m != self.last_master {
            self.last_master = m;
            self.push_event(Event::MasterChanged { master: m });
        }
    }

    pub(super) fn peers(&self) -> Vec<NodeId> {
        self.known
            .iter()
            .copied()
            .filter(|n| *n != self.node)
            .collect()
    }

    pub(super) fn send(&mut self, dest: NodeId, body: Body) {
        if self.transmits.len() >= TRANSMIT_MAX {
            self.transmits.pop_front();
            self.stats.output_dropped += 1;
        }
        self.stats.msgs_out += 1;
        self.transmits.push_back((dest, body));
    }

    pub(super) fn send_all(&mut self, body: &Body) {
        for n in self.peers() {
            self.send(n, body.clone());
        }
    }

    pub(super) fn push_event(&mut self, e: Event) {
        if self.events.len() >= EVENT_MAX {
            self.events.pop_front();
            self.stats.output_dropped += 1;
        }
        self.events.push_back(e);
    }
}
