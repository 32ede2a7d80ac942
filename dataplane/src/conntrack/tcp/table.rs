//! The TCP state transition table and the classification of a segment's
//! flags into a table event.
//!
//! The table has the shape and the cell values of netfilter's
//! (`nf_conntrack_proto_tcp.c`): direction x event x current state. A few
//! cells need context the table cannot hold (reopening from TIME_WAIT/CLOSE,
//! simultaneous open, RFC 5961 challenge ACKs); [`super::track`] applies
//! those refinements after the lookup.

use crate::flow::{Dir, TcpState};
use crate::meta::tcp_flags;

/// The table event a segment maps to, derived from its RST, SYN, FIN and ACK
/// flags in netfilter's priority order: RST, then SYN (with or without ACK),
/// then FIN, then ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpEvent {
    /// SYN without ACK.
    Syn = 0,
    /// SYN with ACK.
    SynAck = 1,
    /// FIN (a valid FIN always carries ACK).
    Fin = 2,
    /// ACK without SYN, FIN or RST.
    Ack = 3,
    /// RST, with or without ACK.
    Rst = 4,
    /// None of the above. Never produced by [`TcpEvent::classify`], which
    /// rejects such segments first; kept so the table covers every index.
    None = 5,
}

impl TcpEvent {
    /// All events, in table order.
    pub const ALL: [TcpEvent; 6] = [
        TcpEvent::Syn,
        TcpEvent::SynAck,
        TcpEvent::Fin,
        TcpEvent::Ack,
        TcpEvent::Rst,
        TcpEvent::None,
    ];

    /// Row of this event in the table.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The event's upper-case name, as the snapshot prints it.
    pub fn name(self) -> &'static str {
        match self {
            TcpEvent::Syn => "SYN",
            TcpEvent::SynAck => "SYN_ACK",
            TcpEvent::Fin => "FIN",
            TcpEvent::Ack => "ACK",
            TcpEvent::Rst => "RST",
            TcpEvent::None => "NONE",
        }
    }

    /// The event for a flags byte, ignoring validity.
    pub fn from_flags(flags: u8) -> TcpEvent {
        if flags & tcp_flags::RST != 0 {
            TcpEvent::Rst
        } else if flags & tcp_flags::SYN != 0 {
            if flags & tcp_flags::ACK != 0 {
                TcpEvent::SynAck
            } else {
                TcpEvent::Syn
            }
        } else if flags & tcp_flags::FIN != 0 {
            TcpEvent::Fin
        } else if flags & tcp_flags::ACK != 0 {
            TcpEvent::Ack
        } else {
            TcpEvent::None
        }
    }

    /// The event for a flags byte, or `None` when the combination is one
    /// netfilter rejects before the table (`tcp_valid_flags`): PSH, ECE and
    /// CWR are always allowed; of FIN, SYN, RST, ACK and URG only SYN,
    /// SYN|URG, SYN|ACK, RST, RST|ACK, FIN|ACK, FIN|ACK|URG, ACK and ACK|URG
    /// are. That rules out, among others, no flags at all, SYN|FIN, SYN|RST
    /// and FIN without ACK.
    pub fn classify(flags: u8) -> Option<TcpEvent> {
        if valid_flags(flags) {
            Some(TcpEvent::from_flags(flags))
        } else {
            None
        }
    }
}

/// Whether a flags byte is a combination netfilter accepts (see
/// [`TcpEvent::classify`]).
pub fn valid_flags(flags: u8) -> bool {
    use tcp_flags::{ACK, CWR, ECE, FIN, PSH, RST, SYN, URG};
    const VALID: [u8; 9] = [
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    ];
    VALID.contains(&(flags & !(PSH | ECE | CWR)))
}

/// One cell of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Move to this state (subject to the window check).
    Next(TcpState),
    /// Let the packet pass without touching the state: our view may be out
    /// of sync with the endpoints, whose answer will tell (netfilter `sIG`).
    Ignore,
    /// The packet breaks the state machine (netfilter `sIV`).
    Invalid,
}

impl Transition {
    /// Short text for the snapshot: the state name, `IGNORE` or `INVALID`.
    pub fn name(self) -> &'static str {
        match self {
            Transition::Next(s) => s.name(),
            Transition::Ignore => "IGNORE",
            Transition::Invalid => "INVALID",
        }
    }
}

// Short names so the table reads as a grid.
const NO: Transition = Transition::Next(TcpState::None);
const SS: Transition = Transition::Next(TcpState::SynSent);
const SR: Transition = Transition::Next(TcpState::SynRecv);
const ES: Transition = Transition::Next(TcpState::Established);
const FW: Transition = Transition::Next(TcpState::FinWait);
const CW: Transition = Transition::Next(TcpState::CloseWait);
const LA: Transition = Transition::Next(TcpState::LastAck);
const TW: Transition = Transition::Next(TcpState::TimeWait);
const CL: Transition = Transition::Next(TcpState::Close);
const S2: Transition = Transition::Next(TcpState::SynSent2);
const IV: Transition = Transition::Invalid;
const IG: Transition = Transition::Ignore;

// `NO` is never a destination; naming it keeps the column legend complete.
const _: Transition = NO;

/// `TABLE[dir][event][state]`. Columns follow [`TcpState`]'s numbering:
/// NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
/// TIME_WAIT, CLOSE, SYN_SENT2.
pub const TABLE: [[[Transition; 10]; 6]; 2] = [
    // Original direction.
    [
        //        NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
        /* SYN */
        [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* S|A */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* FIN */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ACK */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* RST */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* --- */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // Reply direction.
    [
        //        NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
        /* SYN */
        [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* S|A */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* FIN */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ACK */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* RST */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* --- */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

/// Looks up the table: what a packet of `event` travelling in `dir` does to
/// a connection in `state`. Pure; the context-dependent refinements are in
/// [`super::track`].
pub fn transition(state: TcpState, dir: Dir, event: TcpEvent) -> Transition {
    TABLE[dir.index()][event.index()][usize::from(state as u8)]
}
