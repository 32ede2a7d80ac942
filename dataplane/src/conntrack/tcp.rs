//! TCP connection tracking, sans-IO: segments in, verdicts out, no clock.
//!
//! Behaviour follows Linux netfilter's TCP tracker (`nf_conntrack_proto_tcp.c`):
//!
//! - a segment's flags are checked against the combinations netfilter
//!   accepts, then mapped to a [`TcpEvent`];
//! - the [`TABLE`] (direction x event x state) gives the next state, or says
//!   the segment is invalid or to be ignored; [`track`] refines a few cells
//!   with context (reopen from TIME_WAIT/CLOSE, simultaneous open, RFC 5961
//!   challenge ACKs, resync after an ignored SYN);
//! - the sequence and acknowledgement numbers are checked against the windows
//!   both sides advertised (window scaling from the SYN options), as
//!   netfilter's `tcp_in_window` does;
//! - RSTs must fall inside the receiver's window.
//!
//! How a caller drives it, per TCP packet:
//!
//! 1. No flow yet: [`new_conn`]. `Err` means the packet is INVALID and no
//!    flow is created (by default only a plain SYN opens a flow). `Ok` gives
//!    the flow's [`TcpConn`]; [`TcpConn::opening`] is the verdict to hand to
//!    [`TcpConn::timeout`].
//! 2. Flow found: [`track`] with the packet's direction. `Accept` and
//!    `Ignore` pass (ct state ESTABLISHED for the ACL), `Invalid` is INVALID,
//!    `Reopen` means: destroy the flow and go to step 1 with the same packet.
//!    Set ASSURED when [`TcpVerdict::becomes_assured`].
//! 3. Time lives with the caller: [`TcpConn::timeout`] turns the verdict into
//!    the new expiry (seconds from now) using a [`TcpTimeouts`] table.
//!
//! Deliberate differences from netfilter, all to keep [`TcpConn`] at 40
//! bytes or because the parser does not provide the data:
//!
//! - No `td_maxack`: a RST is checked against the receiver's window
//!   (`[end - receiver's max window, maxend]`) instead of against the highest
//!   ACK the other side sent, and an in-window RST always closes (netfilter
//!   keeps ESTABLISHED for an inexact RST to allow a challenge ACK). The
//!   check is skipped while windows are unknown or tracking is liberal per
//!   connection; the global `be_liberal` does not disable it.
//! - Retransmitted ACK segments are recognised by direction, exact sequence
//!   end and a 32-bit fingerprint of seq/ack/window rather than the four
//!   fields themselves.
//! - No SACK blocks (the parser reports only SACK-permitted), so the highest
//!   SACKed sequence is the ACK number.
//! - An out-of-window FIN or RST on an assured flow does not shorten its
//!   timeout (netfilter's `nf_tcp_handle_invalid`): that needs the flow's
//!   current expiry, which the caller owns.
//! - Mid-stream pickup (`loose`) is off by default.
//!
//! Invariants: no input makes anything here panic; sequence arithmetic wraps
//! ([`seq_after`], [`seq_before`]); a [`TcpConn`] is `Copy` and 40 bytes.

mod table;
mod window;

#[cfg(test)]
mod tests;

pub use table::{transition, valid_flags, TcpEvent, Transition, TABLE};
pub use window::{seq_after, seq_before};

use crate::flow::{Dir, TcpState};
use crate::meta::{tcp_flags, TcpFacts};

/// Largest window scale shift TCP allows (RFC 7323); larger values in a SYN
/// are clamped to it, as Linux does.
pub const MAX_WSCALE: u8 = 14;

/// Tracker settings, the counterparts of Linux's `nf_conntrack_tcp_*` sysctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Accept out-of-window segments (`nf_conntrack_tcp_be_liberal`). RSTs
    /// are still checked against the window.
    pub be_liberal: bool,
    /// Pick up connections from a mid-stream ACK (`nf_conntrack_tcp_loose`).
    /// Off by default here, unlike Linux: a flow must start with a SYN.
    pub loose: bool,
    /// Retransmissions of the same segment without an acceptable answer after
    /// which the timeout is capped to [`TcpTimeouts::retrans`]
    /// (`nf_conntrack_tcp_max_retrans`).
    pub max_retrans: u8,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            be_liberal: false,
            loose: false,
            max_retrans: 3,
        }
    }
}

/// Per-state timeouts in seconds, with Linux's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTimeouts {
    /// SYN_SENT (and NONE).
    pub syn_sent: u32,
    /// SYN_RECV.
    pub syn_recv: u32,
    /// ESTABLISHED.
    pub established: u32,
    /// FIN_WAIT.
    pub fin_wait: u32,
    /// CLOSE_WAIT.
    pub close_wait: u32,
    /// LAST_ACK.
    pub last_ack: u32,
    /// TIME_WAIT.
    pub time_wait: u32,
    /// CLOSE.
    pub close: u32,
    /// SYN_SENT2.
    pub syn_sent2: u32,
    /// Cap once a segment has been retransmitted `max_retrans` times, or the
    /// last window seen was zero.
    pub retrans: u32,
    /// Cap while either side has sent data not yet acknowledged.
    pub unacknowledged: u32,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        TcpTimeouts {
            syn_sent: 120,
            syn_recv: 60,
            established: 432_000,
            fin_wait: 120,
            close_wait: 60,
            last_ack: 30,
            time_wait: 120,
            close: 10,
            syn_sent2: 120,
            retrans: 300,
            unacknowledged: 300,
        }
    }
}

impl TcpTimeouts {
    /// The timeout of a state. NONE uses the SYN_SENT value, as Linux does.
    pub fn for_state(&self, s: TcpState) -> u32 {
        match s {
            TcpState::None | TcpState::SynSent => self.syn_sent,
            TcpState::SynRecv => self.syn_recv,
            TcpState::Established => self.established,
            TcpState::FinWait => self.fin_wait,
            TcpState::CloseWait => self.close_wait,
            TcpState::LastAck => self.last_ack,
            TcpState::TimeWait => self.time_wait,
            TcpState::Close => self.close,
            TcpState::SynSent2 => self.syn_sent2,
        }
    }
}

/// Why a segment was classified INVALID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpInvalid {
    /// A flag combination netfilter rejects (no flags, SYN|FIN, SYN|RST,
    /// FIN without ACK, ...).
    BadFlags,
    /// The first segment of a flow is not a SYN and mid-stream pickup
    /// ([`TcpConfig::loose`]) is off.
    NotSyn,
    /// The transition table has no move for this event in this state.
    InvalidTransition,
    /// Sequence number beyond the receiver's window.
    OutOfWindow,
    /// Acknowledges data the other side has not sent.
    AckOutOfWindow,
    /// RST whose sequence number is outside the receiver's window.
    BadRst,
}

impl TcpInvalid {
    /// A short lower-case name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            TcpInvalid::BadFlags => "bad_flags",
            TcpInvalid::NotSyn => "not_syn",
            TcpInvalid::InvalidTransition => "invalid_transition",
            TcpInvalid::OutOfWindow => "out_of_window",
            TcpInvalid::AckOutOfWindow => "ack_out_of_window",
            TcpInvalid::BadRst => "bad_rst",
        }
    }
}

impl std::fmt::Display for TcpInvalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`track`] decided about one segment of a tracked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpVerdict {
    /// The segment is valid; the connection moved from `old` to `new`
    /// (possibly the same state).
    Accept {
        /// State before the segment.
        old: TcpState,
        /// State after the segment.
        new: TcpState,
        /// The caller should set ASSURED now: the connection reached (or
        /// stayed in) ESTABLISHED from SYN_RECV or ESTABLISHED after traffic
        /// was seen in both directions, and was not assured yet. For a normal
        /// open this is the final ACK of the three-way handshake.
        assured: bool,
    },
    /// The segment passes (ESTABLISHED for the ACL) but the tracker's state
    /// is unchanged and the timeout is not refreshed: our view may be out of
    /// sync and the endpoints' answer will tell (netfilter's "ignore").
    Ignore,
    /// The segment is INVALID; the connection is unchanged.
    Invalid(TcpInvalid),
    /// A SYN on a connection in TIME_WAIT or CLOSE that reopens it (after a
    /// FIN exchange, or after this side's own RST): the caller destroys this
    /// flow and handles the segment again as the first one of a new flow. A
    /// SYN from the reply side thus starts a flow in the other orientation.
    Reopen,
}

impl TcpVerdict {
    /// Whether the caller should set the ASSURED status bit now.
    pub fn becomes_assured(&self) -> bool {
        matches!(self, TcpVerdict::Accept { assured: true, .. })
    }

    /// Whether the segment is let through as part of this connection
    /// (`Accept` or `Ignore`).
    pub fn passes(&self) -> bool {
        matches!(self, TcpVerdict::Accept { .. } | TcpVerdict::Ignore)
    }
}

/// How the caller should update a flow's expiry after a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutUpdate {
    /// Expire in this many seconds from now.
    Set(u32),
    /// Leave the current expiry alone.
    Keep,
    /// Destroy the flow now (the only answer to the opening was a RST).
    Expire,
}

/// Per-direction flag bits (`TcpConn::flags`), Linux's `IP_CT_TCP_FLAG_*`
/// subset we need.
mod dflag {
    /// This side sent the window scale option.
    pub(super) const WSCALE: u8 = 0x01;
    /// This side sent the first FIN.
    pub(super) const CLOSE_INIT: u8 = 0x02;
    /// Window checks never fail for this side's segments.
    pub(super) const LIBERAL: u8 = 0x04;
    /// This side has data in flight not yet acknowledged.
    pub(super) const DATA_UNACK: u8 = 0x08;
}

/// Connection-wide flag bits (`TcpConn::cflags`).
mod cflag {
    /// A SYN was seen in each direction (simultaneous open).
    pub(super) const SIMOPEN: u8 = 0x01;
    /// The ignored SYN was seen in LAST_ACK: the next ACK from the other side
    /// may be a challenge ACK, not the last ACK.
    pub(super) const CHALLENGE: u8 = 0x02;
    /// A reply-direction segment passed before the current one.
    pub(super) const SEEN_REPLY: u8 = 0x04;
    /// The current (last tracked) segment was a reply that passed.
    pub(super) const REPLY_PENDING: u8 = 0x08;
    /// ASSURED was reported through [`super::TcpVerdict::becomes_assured`].
    pub(super) const ASSURED: u8 = 0x10;
    /// The window of the last recorded segment was zero.
    pub(super) const LAST_WIN_ZERO: u8 = 0x20;
    /// The last ignored SYN carried the window scale option.
    pub(super) const LAST_SYN_WSCALE: u8 = 0x40;
    /// Imported from a replication peer in SYN_SENT and no segment tracked
    /// here yet (see [`super::track`]).
    pub(super) const REPLICATED_SYN_SENT: u8 = 0x80;
}

/// Bit of `TcpConn::last` that holds the direction; the low bits hold the
/// event index.
const LAST_DIR_REPLY: u8 = 0x80;

/// The tracking state of one TCP connection: 40 bytes, `Copy`, no pointers.
///
/// Per direction it keeps netfilter's `td_end` (highest sequence sent + 1),
/// `td_maxend` (highest right window edge the other side advertised),
/// `td_maxwin` (largest window this side advertised), the window scale and a
/// few flags; per connection the state, the direction and event of the last
/// segment, a retransmission counter and what the ignore/retransmit logic
/// needs to remember about the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConn {
    end: [u32; 2],
    maxend: [u32; 2],
    maxwin: [u32; 2],
    /// Sequence end of the last recorded segment (ignored, or an in-window
    /// ACK).
    last_end: u32,
    /// For an in-window ACK: a fingerprint of its seq, ack and window (for
    /// retransmit detection). For an ignored SYN: its raw window in the low
    /// 16 bits and its window scale in bits 16..20. For an ignored reply ACK
    /// in SYN_SENT: its ack number.
    last_aux: u32,
    scale: [u8; 2],
    flags: [u8; 2],
    state: TcpState,
    last: u8,
    retrans: u8,
    cflags: u8,
}

impl Default for TcpConn {
    fn default() -> Self {
        TcpConn {
            end: [0; 2],
            maxend: [0; 2],
            maxwin: [0; 2],
            last_end: 0,
            last_aux: 0,
            scale: [0; 2],
            flags: [0; 2],
            state: TcpState::None,
            last: TcpEvent::None as u8,
            retrans: 0,
            // Linux starts with last_win == 0.
            cflags: cflag::LAST_WIN_ZERO,
        }
    }
}

impl TcpConn {
    /// A connection imported from a replication peer: the given state and
    /// window scales, with liberal window tracking in both directions (as
    /// conntrackd's commit sets BE_LIBERAL) so mid-stream segments are
    /// accepted until the windows are learnt again. Scales above
    /// [`MAX_WSCALE`] are clamped.
    pub fn from_replicated(state: TcpState, wscale_orig: u8, wscale_reply: u8) -> TcpConn {
        let mut c = TcpConn {
            state,
            ..TcpConn::default()
        };
        for (d, ws) in [wscale_orig, wscale_reply].into_iter().enumerate() {
            c.scale[d] = ws.min(MAX_WSCALE);
            c.flags[d] = dflag::LIBERAL | if ws > 0 { dflag::WSCALE } else { 0 };
        }
        if !matches!(state, TcpState::None | TcpState::SynSent) {
            c.cflags |= cflag::SEEN_REPLY;
        }
        if state == TcpState::SynSent {
            c.cflags |= cflag::REPLICATED_SYN_SENT;
        }
        if matches!(
            state,
            TcpState::Established
                | TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
        ) {
            c.cflags |= cflag::ASSURED;
        }
        c
    }

    /// The verdict that describes the segment [`new_conn`] accepted, for
    /// [`TcpConn::timeout`]: `Accept { old: NONE, new: self.state() }`.
    pub fn opening(&self) -> TcpVerdict {
        TcpVerdict::Accept {
            old: TcpState::None,
            new: self.state,
            assured: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// The window scale shift in use for segments sent in `dir` (0 unless
    /// both sides offered scaling).
    pub fn wscale(&self, dir: Dir) -> u8 {
        self.scale[dir.index()]
    }

    /// Whether window checks are relaxed for segments sent in `dir`
    /// (mid-stream pickup or replicated flow).
    pub fn is_liberal(&self, dir: Dir) -> bool {
        self.flags[dir.index()] & dflag::LIBERAL != 0
    }

    /// How many times in a row the last ACK segment was retransmitted.
    pub fn retransmits(&self) -> u8 {
        self.retrans
    }

    /// The expiry update after `verdict`, which [`track`] (or [`new_conn`],
    /// as `Accept { old: NONE, .. }`) just returned for this connection.
    /// Follows Linux: the state's timeout, capped after repeated
    /// retransmissions, unacknowledged data or a zero window; the CLOSE
    /// timeout after a RST; no refresh for a retransmitted SYN that got no
    /// answer yet; immediate expiry when the only answer was a RST.
    pub fn timeout(&self, verdict: &TcpVerdict, t: &TcpTimeouts, cfg: &TcpConfig) -> TimeoutUpdate {
        let TcpVerdict::Accept { old, new, .. } = *verdict else {
            return TimeoutUpdate::Keep;
        };
        let base = t.for_state(new);
        let event = self.last_event();
        let unacked = (self.flags[0] | self.flags[1]) & dflag::DATA_UNACK != 0;
        let mut secs = if self.retrans >= cfg.max_retrans && base > t.retrans {
            t.retrans
        } else if event == TcpEvent::Rst {
            t.close
        } else if unacked && base > t.unacknowledged {
            t.unacknowledged
        } else if self.cflags & cflag::LAST_WIN_ZERO != 0 && base > t.retrans {
            t.retrans
        } else {
            base
        };
        if self.cflags & cflag::SEEN_REPLY == 0 {
            if event == TcpEvent::Rst {
                return TimeoutUpdate::Expire;
            }
            if event == TcpEvent::Syn && old == TcpState::SynSent {
                return TimeoutUpdate::Keep;
            }
            if new == TcpState::Established {
                secs = secs.min(t.unacknowledged);
            }
        }
        TimeoutUpdate::Set(secs)
    }

    fn last_dir(&self) -> Dir {
        if self.last & LAST_DIR_REPLY != 0 {
            Dir::Reply
        } else {
            Dir::Original
        }
    }

    fn last_event(&self) -> TcpEvent {
        TcpEvent::ALL
            .get(usize::from(self.last & 0x07))
            .copied()
            .unwrap_or(TcpEvent::None)
    }

    fn set_last(&mut self, dir: Dir, event: TcpEvent) {
        let d = if dir == Dir::Reply { LAST_DIR_REPLY } else { 0 };
        self.last = d | event as u8;
    }

    fn set_last_dir(&mut self, dir: Dir) {
        let event = self.last_event();
        self.set_last(dir, event);
    }

    fn set_cflag(&mut self, bit: u8, on: bool) {
        if on {
            self.cflags |= bit;
        } else {
            self.cflags &= !bit;
        }
    }

    /// Takes the window scale option of a SYN sent in direction index `d`.
    fn take_options(&mut self, d: usize, seg: &TcpFacts) {
        self.flags[d] &= dflag::LIBERAL;
        match seg.wscale {
            Some(ws) => {
                self.scale[d] = ws.min(MAX_WSCALE);
                self.flags[d] |= dflag::WSCALE;
            }
            None => self.scale[d] = 0,
        }
    }

    /// Forgets what was learnt about direction index `d`, keeping only its
    /// liberal flag.
    fn reset_dir(&mut self, d: usize) {
        self.end[d] = 0;
        self.maxend[d] = 0;
        self.maxwin[d] = 0;
        self.scale[d] = 0;
        self.flags[d] &= dflag::LIBERAL;
    }

    /// Handles a segment the table says to ignore. Returns the state to move
    /// to when the segment is a SYN/ACK answering a SYN we ignored earlier
    /// (the endpoints are in sync and we were not: adopt the remembered SYN),
    /// else records the segment and returns `None`.
    fn on_ignored(
        &mut self,
        old: TcpState,
        dir: Dir,
        event: TcpEvent,
        seg: &TcpFacts,
    ) -> Option<TcpState> {
        let last_dir = self.last_dir();
        if event == TcpEvent::SynAck
            && self.last_event() == TcpEvent::Syn
            && last_dir != dir
            && seg.ack == self.last_end
        {
            let l = last_dir.index();
            self.end[l] = self.last_end;
            self.maxend[l] = self.last_end;
            self.maxwin[l] = (self.last_aux & 0xffff).max(1);
            self.scale[l] = u8::try_from((self.last_aux >> 16) & 0x0f)
                .unwrap_or(0)
                .min(MAX_WSCALE);
            self.flags[l] = if self.cflags & cflag::LAST_SYN_WSCALE != 0 {
                dflag::WSCALE
            } else {
                0
            };
            self.cflags &= !cflag::CHALLENGE;
            self.reset_dir(dir.index());
            return Some(TcpState::SynRecv);
        }
        self.set_last(dir, event);
        self.last_end = window::seg_end(seg);
        self.last_aux = u32::from(seg.window);
        self.set_cflag(cflag::LAST_WIN_ZERO, seg.window == 0);
        if event == TcpEvent::Syn && dir == Dir::Original {
            self.cflags &= !(cflag::LAST_SYN_WSCALE | cflag::CHALLENGE | cflag::SIMOPEN);
            if let Some(ws) = seg.wscale {
                self.cflags |= cflag::LAST_SYN_WSCALE;
                self.last_aux |= u32::from(ws.min(MAX_WSCALE)) << 16;
            }
            if old == TcpState::LastAck {
                self.cflags |= cflag::CHALLENGE;
            }
        }
        if old == TcpState::SynSent && event == TcpEvent::Ack && dir == Dir::Reply {
            // Possibly a challenge ACK answering the SYN; a RST from the
            // client with this sequence number then closes the connection.
            self.last_aux = seg.ack;
        }
        None
    }

    /// Whether a SYN in TIME_WAIT/CLOSE reopens the connection: a FIN was
    /// exchanged, or this side itself aborted with a RST.
    fn may_reopen(&self, dir: Dir) -> bool {
        (self.flags[0] | self.flags[1]) & dflag::CLOSE_INIT != 0
            || (self.last_dir() == dir && self.last_event() == TcpEvent::Rst)
    }

    /// Decides how a RST that the table moves to CLOSE is checked.
    fn check_rst(&self, old: TcpState, dir: Dir, seg: &TcpFacts) -> RstCheck {
        // Closing already: the tuple may be reused, our data is stale.
        if matches!(
            old,
            TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
        ) {
            return RstCheck::SkipWindow;
        }
        let last = self.last_event();
        let seen_reply = self.cflags & cflag::SEEN_REPLY != 0;
        let assured = self.cflags & cflag::ASSURED != 0;
        // RST answering a SYN or ACK we let through while ignoring it.
        if ((seen_reply && last == TcpEvent::Syn) || (!assured && last == TcpEvent::Ack))
            && seg.ack == self.last_end
        {
            return RstCheck::SkipWindow;
        }
        // RST answering a challenge ACK we let through in SYN_SENT.
        if old == TcpState::SynSent
            && last == TcpEvent::Ack
            && self.last_dir() == Dir::Reply
            && seg.seq == self.last_aux
        {
            return RstCheck::SkipWindow;
        }
        let (s, r) = (dir.index(), dir.flip().index());
        let liberal = (self.flags[s] | self.flags[r]) & dflag::LIBERAL != 0;
        // Nothing reliable to check against: windows unknown, or a SYN we let
        // through may have moved the goalposts, or the answer to such a SYN.
        if liberal
            || self.maxwin[s] == 0
            || self.maxwin[r] == 0
            || last == TcpEvent::Syn
            || (seg.seq == 0 && old != TcpState::Established)
        {
            return RstCheck::Window;
        }
        let lower = self.end[s].wrapping_sub(self.maxwin[r]);
        if seq_before(seg.seq, lower) || seq_after(seg.seq, self.maxend[s]) {
            RstCheck::Bad
        } else {
            RstCheck::Window
        }
    }

    /// Applies one classified segment.
    fn step(&mut self, dir: Dir, event: TcpEvent, seg: &TcpFacts, cfg: &TcpConfig) -> TcpVerdict {
        let old = self.state;
        let mut check_window = true;
        let new = match transition(old, dir, event) {
            Transition::Invalid => return TcpVerdict::Invalid(TcpInvalid::InvalidTransition),
            Transition::Ignore => match self.on_ignored(old, dir, event, seg) {
                Some(s) => s,
                None => return TcpVerdict::Ignore,
            },
            Transition::Next(TcpState::SynSent)
                if matches!(old, TcpState::TimeWait | TcpState::Close) =>
            {
                if self.may_reopen(dir) {
                    return TcpVerdict::Reopen;
                }
                match self.on_ignored(old, dir, event, seg) {
                    Some(s) => s,
                    None => return TcpVerdict::Ignore,
                }
            }
            Transition::Next(TcpState::TimeWait)
                if old == TcpState::LastAck
                    && event == TcpEvent::Ack
                    && self.last_dir() != dir
                    && self.last_event() == TcpEvent::Syn
                    && self.cflags & cflag::CHALLENGE != 0 =>
            {
                // An RFC 5961 challenge ACK answering the ignored SYN, not
                // the ACK of the last FIN.
                self.cflags &= !cflag::CHALLENGE;
                return TcpVerdict::Ignore;
            }
            Transition::Next(TcpState::SynSent2) => {
                self.cflags |= cflag::SIMOPEN;
                TcpState::SynSent2
            }
            Transition::Next(TcpState::SynRecv)
                if dir == Dir::Reply
                    && event == TcpEvent::Ack
                    && self.cflags & cflag::SIMOPEN != 0 =>
            {
                TcpState::Established
            }
            Transition::Next(TcpState::Close) if event == TcpEvent::Rst => {
                match self.check_rst(old, dir, seg) {
                    RstCheck::SkipWindow => check_window = false,
                    RstCheck::Window => {}
                    RstCheck::Bad => return TcpVerdict::Invalid(TcpInvalid::BadRst),
                }
                TcpState::Close
            }
            Transition::Next(s) => s,
        };
        if check_window {
            match self.in_window(dir, event, seg, cfg) {
                window::Window::Accept => {}
                window::Window::Ignore => return TcpVerdict::Ignore,
                window::Window::Invalid(why) => return TcpVerdict::Invalid(why),
            }
        }
        self.set_last(dir, event);
        self.state = new;
        if old != new && new == TcpState::FinWait {
            self.flags[dir.index()] |= dflag::CLOSE_INIT;
        }
        let assured = self.cflags & cflag::SEEN_REPLY != 0
            && self.cflags & cflag::ASSURED == 0
            && matches!(old, TcpState::SynRecv | TcpState::Established)
            && new == TcpState::Established;
        if assured {
            self.cflags |= cflag::ASSURED;
        }
        TcpVerdict::Accept { old, new, assured }
    }
}

/// How [`TcpConn::check_rst`] wants a RST handled.
enum RstCheck {
    /// Accept without the window check.
    SkipWindow,
    /// Run the normal window check.
    Window,
    /// Out of the receiver's window: invalid.
    Bad,
}

/// Starts tracking a flow from its first segment (original direction).
///
/// A SYN opens a connection in SYN_SENT. With [`TcpConfig::loose`] a
/// mid-stream ACK opens one in ESTABLISHED with liberal window tracking in
/// both directions; without it that is [`TcpInvalid::NotSyn`]. Anything else
/// is invalid and creates nothing.
pub fn new_conn(seg: &TcpFacts, cfg: &TcpConfig) -> Result<TcpConn, TcpInvalid> {
    let event = TcpEvent::classify(seg.flags).ok_or(TcpInvalid::BadFlags)?;
    let mut conn = TcpConn::default();
    let end = window::seg_end(seg);
    let win = u32::from(seg.window).max(1);
    match transition(TcpState::None, Dir::Original, event) {
        Transition::Next(TcpState::SynSent) => {
            conn.end[0] = end;
            conn.maxend[0] = end;
            conn.maxwin[0] = win;
            conn.take_options(0, seg);
        }
        Transition::Next(_) if event == TcpEvent::Ack => {
            if !cfg.loose {
                return Err(TcpInvalid::NotSyn);
            }
            conn.end[0] = end;
            conn.maxwin[0] = win;
            conn.maxend[0] = end.wrapping_add(win);
            conn.flags = [dflag::LIBERAL; 2];
        }
        _ => return Err(TcpInvalid::InvalidTransition),
    }
    match track(&mut conn, Dir::Original, seg, cfg) {
        TcpVerdict::Accept { .. } => Ok(conn),
        TcpVerdict::Invalid(why) => Err(why),
        TcpVerdict::Ignore | TcpVerdict::Reopen => Err(TcpInvalid::InvalidTransition),
    }
}

/// A mid-stream pickup ([`TcpConfig::loose`]) of a connection whose first
/// segment seen travelled in the *reply* direction: the connection
/// [`new_conn`] would open from `seg`, with its two directions swapped, so
/// that the other side is the original one. Same errors as [`new_conn`];
/// a SYN is never picked up this way.
pub fn new_conn_from_reply(seg: &TcpFacts, cfg: &TcpConfig) -> Result<TcpConn, TcpInvalid> {
    if seg.flags & crate::meta::tcp_flags::SYN != 0 {
        return Err(TcpInvalid::InvalidTransition);
    }
    let mut c = new_conn(seg, cfg)?;
    c.end.swap(0, 1);
    c.maxend.swap(0, 1);
    c.maxwin.swap(0, 1);
    c.scale.swap(0, 1);
    c.flags.swap(0, 1);
    let last = c.last_dir();
    c.set_last_dir(if last == Dir::Original {
        Dir::Reply
    } else {
        Dir::Original
    });
    c.cflags |= cflag::SEEN_REPLY;
    Ok(c)
}

/// Tracks one segment of an existing connection travelling in `dir`.
///
/// Pure apart from updating `conn`; O(1). On `Invalid`, `Ignore` and
/// `Reopen` the connection's state is unchanged (bookkeeping about the
/// ignored segment may be recorded, as netfilter does).
pub fn track(conn: &mut TcpConn, dir: Dir, seg: &TcpFacts, cfg: &TcpConfig) -> TcpVerdict {
    if conn.cflags & cflag::REPLY_PENDING != 0 {
        conn.cflags = (conn.cflags & !cflag::REPLY_PENDING) | cflag::SEEN_REPLY;
    }
    let event = TcpEvent::classify(seg.flags);
    if conn.cflags & cflag::REPLICATED_SYN_SENT != 0 {
        conn.cflags &= !cflag::REPLICATED_SYN_SENT;
        // Replication is asynchronous: the old primary sent us the flow
        // when it saw the SYN and failed before the rest of the handshake
        // reached us. A plain ACK, in either direction, as the first
        // segment we see means the endpoints completed it there: continue
        // from SYN_RECV (the client's ACK then establishes the flow, as it
        // would have at the old primary). Windows stay liberal.
        if conn.state == TcpState::SynSent && event == Some(TcpEvent::Ack) {
            conn.state = TcpState::SynRecv;
            conn.cflags |= cflag::SEEN_REPLY;
        }
    }
    let verdict = match event {
        Some(event) => conn.step(dir, event, seg, cfg),
        None => TcpVerdict::Invalid(TcpInvalid::BadFlags),
    };
    if dir == Dir::Reply && verdict.passes() {
        conn.cflags |= cflag::REPLY_PENDING;
    }
    verdict
}

/// Whether `flags` make a plain SYN: SYN without ACK, RST or FIN (the only
/// first segment that opens a flow unless [`TcpConfig::loose`] is on).
pub fn is_syn(flags: u8) -> bool {
    flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST | tcp_flags::FIN) == tcp_flags::SYN
}
