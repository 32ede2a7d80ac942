//! Sequence-space arithmetic and the window check (netfilter's
//! `tcp_in_window`).
//!
//! Per direction the connection keeps `end` (highest sequence number sent
//! plus one), `maxend` (highest right edge of the window the other side
//! advertised) and `maxwin` (largest window this side advertised, scaled).
//! A segment from sender S to receiver R is in window when:
//!
//! 1. `seq <= S.maxend` (it starts inside what R allowed);
//! 2. `ack <= R.end` (it does not acknowledge data R never sent);
//! 3. `end >= S.end - R.maxwin` (it is not older than a window);
//! 4. `ack >= R.end - max(S.maxwin, 66000)` (the ACK is not ancient).
//!
//! 1 and 2 failing make the segment INVALID; 3 and 4 failing make it ignored
//! (a retransmission or a delayed ACK). Liberal tracking accepts all four.

use super::{cflag, dflag, TcpConfig, TcpConn, TcpEvent, TcpInvalid};
use crate::flow::{Dir, TcpState};
use crate::meta::{tcp_flags, TcpFacts};

/// Lower bound of the acknowledgement window when the sender's window is
/// smaller (netfilter's `MAXACKWINCONST`).
const MAX_ACK_WIN_CONST: u32 = 66_000;

/// Whether sequence number `a` comes before `b`, modulo 2^32.
pub fn seq_before(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) & 0x8000_0000 != 0
}

/// Whether sequence number `a` comes after `b`, modulo 2^32.
pub fn seq_after(a: u32, b: u32) -> bool {
    seq_before(b, a)
}

/// The sequence number just past a segment: SYN and FIN count as one each.
pub(super) fn seg_end(seg: &TcpFacts) -> u32 {
    let syn = u32::from(seg.flags & tcp_flags::SYN != 0);
    let fin = u32::from(seg.flags & tcp_flags::FIN != 0);
    seg.seq
        .wrapping_add(seg.payload_len)
        .wrapping_add(syn)
        .wrapping_add(fin)
}

/// A cheap mix of the fields netfilter compares to spot a retransmitted ACK
/// segment (together with its direction and sequence end, kept exactly).
fn fingerprint(seq: u32, ack: u32, win: u16) -> u32 {
    seq.wrapping_mul(0x9e37_79b1) ^ ack.rotate_left(16).wrapping_mul(0x85eb_ca77) ^ u32::from(win)
}

/// Outcome of the window check.
pub(super) enum Window {
    /// In window (or liberal): go on with the transition.
    Accept,
    /// Let it pass, change nothing.
    Ignore,
    /// Invalid.
    Invalid(TcpInvalid),
}

impl TcpConn {
    /// Initialises the sender side from a SYN or SYN/ACK. Window scaling
    /// only counts if both sides offered it, which is known once the reply
    /// direction's SYN arrives.
    fn init_sender(&mut self, dir: Dir, seg: &TcpFacts, end: u32, win: u32) {
        let (s, r) = (dir.index(), dir.flip().index());
        self.end[s] = end;
        self.maxend[s] = end;
        self.maxwin[s] = win.max(1);
        self.take_options(s, seg);
        if dir == Dir::Reply && (self.flags[s] & self.flags[r] & dflag::WSCALE) == 0 {
            self.scale[s] = 0;
            self.scale[r] = 0;
        }
    }

    /// The window check, updating the per-direction data of an accepted
    /// segment and the retransmission bookkeeping of ACK segments.
    pub(super) fn in_window(
        &mut self,
        dir: Dir,
        event: TcpEvent,
        seg: &TcpFacts,
        cfg: &TcpConfig,
    ) -> Window {
        let (s, r) = (dir.index(), dir.flip().index());
        let syn = seg.flags & tcp_flags::SYN != 0;
        let has_ack = seg.flags & tcp_flags::ACK != 0;
        let rst = seg.flags & tcp_flags::RST != 0;
        let mut seq = seg.seq;
        let mut ack = seg.ack;
        let mut win = u32::from(seg.window);
        let mut end = seg_end(seg);

        if self.maxwin[s] == 0 {
            if syn {
                // First SYN/ACK, or the reply side's SYN in a simultaneous open.
                self.init_sender(dir, seg, end, win);
                if !has_ack {
                    return Window::Accept;
                }
            } else {
                // First segment seen from this side mid-stream: learn from it.
                self.end[s] = end;
                let swin = win << u32::from(self.scale[s].min(super::MAX_WSCALE));
                self.maxwin[s] = swin.max(1);
                self.maxend[s] = end.wrapping_add(self.maxwin[s]);
                if self.maxwin[r] == 0 {
                    // Nothing seen the other way either: make checks 2 and 4 pass.
                    self.end[r] = ack;
                    self.maxend[r] = ack;
                } else if ack == self.end[r].wrapping_add(1) {
                    // Probably the answer to a keepalive.
                    self.end[r] = self.end[r].wrapping_add(1);
                }
            }
        } else if syn
            && seq_after(end, self.end[s])
            && matches!(self.state, TcpState::SynSent | TcpState::SynRecv)
        {
            // A new SYN with a higher sequence number during the handshake:
            // the endpoint restarted; start over for this side.
            self.init_sender(dir, seg, end, win);
            if dir == Dir::Reply && !has_ack {
                return Window::Accept;
            }
        }

        if !has_ack || (rst && ack == 0) {
            // No ACK (or a broken stack's RST|ACK with ack 0): pretend it
            // acknowledges everything.
            ack = self.end[r];
        }
        if rst && seq == 0 && self.state == TcpState::SynSent {
            // RST answering a SYN.
            seq = self.end[s];
            end = self.end[s];
        }

        let liberal = cfg.be_liberal || self.flags[s] & dflag::LIBERAL != 0;
        let soft = |w: Window| if liberal { Window::Accept } else { w };
        let max_ack_win = self.maxwin[s].max(MAX_ACK_WIN_CONST);
        let ack_not_ancient = seq_after(ack, self.end[r].wrapping_sub(max_ack_win).wrapping_sub(1));

        if seq_after(seq, self.maxend[s]) {
            let overshot = end.wrapping_sub(self.maxend[s]).wrapping_add(1);
            let in_recv_win = self.maxwin[r] != 0
                && seq_after(
                    end,
                    self.end[s].wrapping_sub(self.maxwin[r]).wrapping_sub(1),
                );
            if in_recv_win
                && ack_not_ancient
                && overshot <= self.maxwin[r]
                && !seq_after(ack, self.end[r])
            {
                // A sender that overshoots the receiver's window a little:
                // ignore the segment but remember its end, so the ACK for it
                // is not later judged to acknowledge unseen data.
                self.end[s] = end;
                self.flags[s] |= dflag::DATA_UNACK;
                return soft(Window::Ignore);
            }
            return soft(Window::Invalid(TcpInvalid::OutOfWindow));
        }
        if seq_after(ack, self.end[r]) {
            return soft(Window::Invalid(TcpInvalid::AckOutOfWindow));
        }
        let in_recv_win = self.maxwin[r] == 0
            || seq_after(
                end,
                self.end[s].wrapping_sub(self.maxwin[r]).wrapping_sub(1),
            );
        if !in_recv_win || !ack_not_ancient {
            return soft(Window::Ignore);
        }

        if !syn {
            win <<= u32::from(self.scale[s].min(super::MAX_WSCALE));
        }
        // Sender side.
        self.maxwin[s] = self.maxwin[s].max(win);
        if seq_after(end, self.end[s]) {
            self.end[s] = end;
            self.flags[s] |= dflag::DATA_UNACK;
        }
        // Receiver side.
        if self.maxwin[r] != 0 && seq_after(end, self.maxend[s]) {
            self.maxwin[r] = self.maxwin[r].wrapping_add(end.wrapping_sub(self.maxend[s]));
        }
        let right = ack.wrapping_add(win);
        if seq_after(right, self.maxend[r].wrapping_sub(1)) {
            self.maxend[r] = if win == 0 {
                right.wrapping_add(1)
            } else {
                right
            };
        }
        if ack == self.end[r] {
            self.flags[r] &= !dflag::DATA_UNACK;
        }

        if event == TcpEvent::Ack {
            let fp = fingerprint(seq, ack, seg.window);
            if self.last_dir() == dir && self.last_end == end && self.last_aux == fp {
                self.retrans = self.retrans.saturating_add(1);
            } else {
                self.set_last_dir(dir);
                self.last_end = end;
                self.last_aux = fp;
                self.retrans = 0;
                self.set_cflag(cflag::LAST_WIN_ZERO, seg.window == 0);
            }
        }
        Window::Accept
    }
}
