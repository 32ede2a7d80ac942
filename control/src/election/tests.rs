//! Unit tests of the machine driven by hand (the cluster simulator is in
//! `control/tests/election_sim.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;

const KEY: &[u8] = b"unit-test-pre-shared-key";

fn cfg(node: u32, priority: u8, peers: &[(u32, u8)]) -> ElectionConfig {
    ElectionConfig::new(
        NodeId(node),
        priority,
        peers
            .iter()
            .map(|&(n, p)| Peer {
                node: NodeId(n),
                priority: p,
            })
            .collect(),
        KEY.to_vec(),
    )
}

/// A hand driver: procedures wait until `complete` answers them with the
/// configured results (default success).
struct Driver {
    e: Election,
    now: Instant,
    results: HashMap<Procedure, bool>,
    pending: Vec<ProcedureRequest>,
    sent: Vec<(NodeId, Body)>,
    events: Vec<Event>,
    peer_codec: Codec,
}

impl Driver {
    fn new(c: ElectionConfig) -> Driver {
        let now = Instant::now();
        let peer = c.peers.first().map_or(NodeId(99), |p| p.node);
        let mut d = Driver {
            e: Election::new(c, now).unwrap(),
            now,
            results: HashMap::new(),
            pending: Vec::new(),
            sent: Vec::new(),
            events: Vec::new(),
            peer_codec: Codec::new(peer, KEY, 0).unwrap(),
        };
        d.collect();
        d
    }

    fn collect(&mut self) {
        while let Some(ev) = self.e.poll_event() {
            if let Event::Run(r) = &ev {
                self.pending.push(*r);
            }
            self.events.push(ev);
        }
        let mut buf = Vec::new();
        let mut rx = Codec::new(NodeId(u32::MAX), KEY, 0).unwrap();
        while let Some(t) = self.e.poll_transmit(self.now, &mut buf) {
            let m = rx.decode(&buf).unwrap();
            assert_eq!(m.body.name(), t.name);
            self.sent.push((t.dest, m.body));
        }
    }

    /// Answer every pending procedure (repeatedly, as new ones come).
    fn complete(&mut self) {
        while !self.pending.is_empty() {
            for r in std::mem::take(&mut self.pending) {
                let ok = self.results.get(&r.procedure).copied().unwrap_or(true);
                self.e
                    .handle_procedure_result(self.now, r.ticket, ok)
                    .unwrap();
                self.collect();
            }
        }
    }

    /// Advance to the next deadline (answering procedures on the way).
    fn advance(&mut self) {
        self.complete();
        let t = self.e.poll_timeout().expect("a deadline");
        self.now = self.now.max(t);
        self.e.handle_timeout(self.now);
        self.collect();
    }

    fn until(&mut self, mut pred: impl FnMut(&Election) -> bool) {
        for _ in 0..1000 {
            self.complete();
            if pred(&self.e) {
                return;
            }
            self.advance();
        }
        panic!("never reached; state {}", self.e.state());
    }

    fn deliver(&mut self, body: Body) {
        let mut buf = Vec::new();
        self.peer_codec.encode(&body, &mut buf);
        self.e.handle_datagram(self.now, &buf).unwrap();
        self.collect();
    }

    fn report(priority: u8) -> SelfReport {
        SelfReport {
            priority,
            freshness: Freshness {
                synced: true,
                seq: 1,
            },
            role: Role::Backup,
        }
    }

    /// Bring a node with one (silent) peer to service active.
    fn master() -> Driver {
        let mut d = Driver::new(cfg(1, 200, &[(2, 100)]));
        d.results.insert(Procedure::RemoteSvcCheck, false);
        d.until(|e| e.state() == State::Service(ServiceSub::Active));
        d.results.clear();
        d
    }
}

#[test]
fn lone_node_bootstraps_through_handover_in_paper_order() {
    let d = Driver::master();
    let procs: Vec<Procedure> = d
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Run(r) => Some(r.procedure),
            _ => None,
        })
        .collect();
    use Procedure as P;
    assert_eq!(
        procs,
        vec![
            P::RemoteSvcCheck,
            P::DownlinkCheck,
            P::ActivateUplink,
            P::UplinkCheck,
            P::ActivateService,
            P::TakeoverDownstream,
            P::TakeoverUpstream,
        ]
    );
    let names: Vec<&str> = d.sent.iter().map(|(_, b)| b.name()).collect();
    assert_eq!(
        names,
        vec!["DNSTR_TAKEOVER", "UPSTR_TAKEOVER", "SVC_TAKEOVER"]
    );
    assert!(d.e.is_primary());
    assert_eq!(d.e.master(), Some(NodeId(1)));
    assert!(d.events.contains(&Event::RoleChanged {
        from: Role::Candidate,
        to: Role::Primary
    }));
    // The silent configured peer is listed, and marked dead once its
    // SVC_REQCHECK_TIMER runs out.
    assert!(d.e.table().get(NodeId(2)).is_some_and(|e| !e.dead));
    let mut d = d;
    let deadline = d.now + d.e.config().reqcheck_timeout;
    while d.now < deadline {
        d.advance();
    }
    assert!(d.e.table().get(NodeId(2)).is_some_and(|e| e.dead));
    assert!(d.events.contains(&Event::PeerDead { node: NodeId(2) }));
    let json = serde_json::to_value(d.e.status(d.now)).unwrap();
    assert_eq!(json["role"], "primary");
    assert_eq!(json["main_state"], "service");
    assert_eq!(json["sub_state"], "active");
    assert_eq!(json["peers"][0]["dead"], true);
    assert_eq!(d.e.stats().invalid_transitions, 0);
}

#[test]
fn tickets_stale_results_and_overruns() {
    let mut d = Driver::new(cfg(1, 100, &[(2, 100)]));
    let first = d.pending[0];
    assert_eq!(first.procedure, Procedure::RemoteSvcCheck);
    assert_eq!(
        d.e.handle_procedure_result(d.now, Ticket(99), true),
        Err(ElectionError::UnknownTicket(Ticket(99)))
    );
    // No answer within tmax: counted failed, the machine moves on (no
    // master present: static table, bootstrap handover).
    d.pending.clear();
    d.now += first.timeout;
    d.e.handle_timeout(d.now);
    d.collect();
    assert_eq!(d.e.stats().procedure_timeouts, 1);
    assert_eq!(d.e.state(), State::Handover(HandoverSub::DownlinkCheck));
    // The late answer is stale, not an error.
    d.e.handle_procedure_result(d.now, first.ticket, true)
        .unwrap();
    assert_eq!(d.e.stats().stale_results, 1);
    assert_eq!(d.e.state(), State::Handover(HandoverSub::DownlinkCheck));
}

#[test]
fn garbage_and_forged_datagrams_are_counted_and_ignored() {
    let mut d = Driver::master();
    let before = d.e.state();
    assert!(d.e.handle_datagram(d.now, b"hello").is_err());
    let mut forged = Codec::new(NodeId(2), b"not-the-cluster-key!", 0).unwrap();
    let mut buf = Vec::new();
    forged.encode(
        &Body::SvcTakeover {
            table: StatusTable::default(),
        },
        &mut buf,
    );
    assert_eq!(d.e.handle_datagram(d.now, &buf), Err(DecodeError::BadTag));
    assert_eq!(d.e.state(), before);
    let c = d.e.codec_stats();
    assert_eq!((c.malformed_header, c.unauthenticated), (1, 1));
}

/// Key rotation (issue 16): the machine whose key file gained id 2 tags
/// with key 2; a machine with only key 1 refuses that until its file has
/// key 2 too, and key-1 messages are taken by both meanwhile.
#[test]
fn election_keys_rotate_by_key_ring() {
    use crate::keyring::Keyring;
    let hex = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let both = Keyring::parse(&format!(
        "1 {}\n2 {}\n",
        hex(KEY),
        hex(b"the-next-election-key")
    ))
    .unwrap();
    let mut d = Driver::master();
    let mut rotated = Codec::new(NodeId(2), KEY, 0).unwrap();
    rotated.set_keys(&both).unwrap();
    let mut buf = Vec::new();
    let body = Body::SvcTakeover {
        table: StatusTable::default(),
    };
    rotated.encode(&body, &mut buf);
    assert_eq!(d.e.handle_datagram(d.now, &buf), Err(DecodeError::BadTag));
    // Still on key 1: taken by a machine that has both.
    let mut old = Codec::new(NodeId(3), KEY, 0).unwrap();
    old.encode(&body, &mut buf);
    assert!(rotated.decode(&buf).is_ok());
    d.e.set_keys(&both).unwrap();
    rotated.encode(&body, &mut buf);
    assert!(d.e.handle_datagram(d.now, &buf).is_ok());
}

#[test]
fn master_answers_checks_queued_during_a_full_check() {
    let mut d = Driver::master();
    d.sent.clear();
    // SELF_CHECK_TIMER fires; the downlink check is left running.
    let t = d.e.poll_timeout().unwrap();
    d.now = t;
    d.e.handle_timeout(d.now);
    d.collect();
    assert_eq!(
        d.e.state(),
        State::Service(ServiceSub::FullCheck(CheckKind::A, CheckStep::Downlink))
    );
    d.deliver(Body::SvcCheck {
        nonce: 7,
        report: Driver::report(100),
    });
    // Queued (table 2), but the heartbeat already counts.
    assert_eq!(d.e.stats().queued, 1);
    assert!(d.e.table().get(NodeId(2)).is_some_and(|e| !e.dead));
    assert!(d.events.contains(&Event::PeerAlive { node: NodeId(2) }));
    assert!(d.sent.is_empty());
    d.complete();
    // Full check done, then the queued check: one local check, one reply.
    assert_eq!(d.e.state(), State::Service(ServiceSub::Active));
    let replies: Vec<&(NodeId, Body)> = d
        .sent
        .iter()
        .filter(|(_, b)| matches!(b, Body::SvcCheckReply { .. }))
        .collect();
    assert_eq!(replies.len(), 1);
    match replies[0] {
        (to, Body::SvcCheckReply { nonce, ok, table }) => {
            assert_eq!((*to, *nonce, *ok), (NodeId(2), 7, true));
            assert_eq!(table.master(), Some(NodeId(1)));
            assert_eq!(table.entries()[1].node, NodeId(2));
        }
        _ => unreachable!(),
    }
}

#[test]
fn master_vetoes_a_lower_takeover_after_a_full_check_b() {
    let mut d = Driver::master();
    d.sent.clear();
    d.deliver(Body::DnstrTakeover {
        attempt: 42,
        report: Driver::report(100),
    });
    assert_eq!(
        d.e.state(),
        State::Service(ServiceSub::FullCheck(CheckKind::B, CheckStep::Downlink))
    );
    d.complete();
    assert_eq!(d.e.state(), State::Service(ServiceSub::Active));
    assert!(d
        .sent
        .contains(&(NodeId(2), Body::DnstrTakeoverDeny { attempt: 42 })));
    assert_eq!(d.e.stats().denies_sent, 1);
    // A failing uplink during full check C makes the master leave.
    d.results.insert(Procedure::UplinkCheck, false);
    d.deliver(Body::UpstrTakeover {
        attempt: 42,
        report: Driver::report(100),
    });
    d.complete();
    assert_eq!(d.e.state(), State::Fault(FaultSub::Wait));
    assert!(d
        .sent
        .iter()
        .any(|(_, b)| matches!(b, Body::SvcShutdown { table } if table.master().is_none())));
    assert!(!d.e.freshness().synced);
}

#[test]
fn master_yields_to_a_better_claim_and_answers_a_worse_one() {
    let mut d = Driver::master();
    let rival = |prio: u8| {
        StatusTable::from_parts(
            vec![Entry {
                node: NodeId(2),
                priority: prio,
                freshness: Freshness {
                    synced: true,
                    seq: 0,
                },
                role: Role::Primary,
                dead: false,
            }],
            Some(NodeId(2)),
            None,
        )
        .unwrap()
    };
    d.sent.clear();
    d.deliver(Body::SvcTakeover { table: rival(100) });
    assert!(d.e.is_primary());
    assert!(matches!(
        d.sent.as_slice(),
        [(NodeId(2), Body::SvcTakeover { .. })]
    ));
    d.deliver(Body::SvcTakeover { table: rival(250) });
    d.complete();
    assert_eq!(d.e.state(), State::Backup(BackupSub::Idle));
    assert_eq!(d.e.master(), Some(NodeId(2)));
    assert!(d.events.iter().any(|e| matches!(
        e,
        Event::ResyncNeeded {
            master: NodeId(2),
            ..
        }
    )));
    assert_eq!(d.e.stats().resignations, 1);
}

#[test]
fn operator_shutdown_leaves_service_then_stops() {
    let mut d = Driver::master();
    d.e.handle_shutdown(d.now).unwrap();
    d.collect();
    d.complete();
    assert_eq!(d.e.state(), State::Final);
    let tail: Vec<Procedure> = d
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Run(r) => Some(r.procedure),
            _ => None,
        })
        .rev()
        .take(4)
        .collect();
    use Procedure as P;
    assert_eq!(
        tail,
        vec![
            P::DeactivateService,
            P::DeactivateUplink,
            P::ReleaseUpstream,
            P::ReleaseDownstream
        ]
    );
    assert!(d.e.poll_timeout().is_none());
}

#[test]
fn procedure_times_cover_every_procedure() {
    let t = ProcedureTimes::default();
    for p in Procedure::ALL {
        assert!(t.of(p) > Duration::ZERO, "{p:?}");
        assert!(!p.name().is_empty());
    }
}
