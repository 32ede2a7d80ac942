//! TCP sequence adjustment after a helper changed the length of a
//! payload (an FTP announce rewritten under NAT), as Linux's
//! `nf_conntrack_seqadj` keeps it.
//!
//! Per direction the flow keeps a [`Way`]: the sequence number of the
//! last segment whose length changed (`pos`), the offset of bytes up to
//! and including that segment (`before`) and of bytes after it
//! (`after`). A segment of that direction has its sequence number moved
//! by `after` if it starts after `pos`, else by `before` (so a
//! retransmission of the rewritten segment, rewritten the same way, keeps
//! its place). A segment of the other direction acknowledges the moved
//! sequence space: its acknowledgement number and SACK edges are moved
//! back. Only the last change point is kept (a retransmission from before
//! it still gets `before`): that is Linux's model too.
//!
//! Connection tracking stays in each sender's own sequence space: the
//! window check sees sequence numbers as they arrive and acknowledgements
//! moved back ([`ack_unadjusted`]), exactly what leaves the firewall
//! toward the sender.

use crate::conntrack::tcp::{seq_after, seq_before};
use crate::flow::SeqAdj;
use crate::meta::{tcp_flags, PacketMeta};
use crate::packet::checksum::{update_bytes, update_u32};

/// One direction's adjustment: `[pos, before, after]`, offsets as two's
/// complement (the layout of conntrack's `CTA_SEQ_ADJ_*` and of the
/// FT-FW / conntrackd attribute NAT_SEQ_ADJ).
pub type Way = [u32; 3];

/// Records that the segment of one direction starting at `seq` changed
/// length by `off` bytes. A repeat for the same segment (a retransmission
/// rewritten again) changes nothing; returns whether `way` changed.
pub fn set(way: &mut Way, seq: u32, off: i32) -> bool {
    if off == 0 {
        return false;
    }
    let [pos, before, after] = *way;
    if before == after || seq_before(pos, seq) {
        *way = [seq, after, after.wrapping_add(off.cast_unsigned())];
        return true;
    }
    false
}

/// How far a segment of this direction starting at `seq` moves.
pub fn seq_offset(way: &Way, seq: u32) -> u32 {
    if seq_after(seq, way[0]) {
        way[2]
    } else {
        way[1]
    }
}

/// How far an acknowledgement number (or SACK edge) `ack` of the other
/// direction, which acknowledges data of this direction as the receiver
/// saw it (moved), must move back.
pub fn ack_offset(way: &Way, ack: u32) -> u32 {
    if seq_after(ack.wrapping_sub(way[1]), way[0]) {
        way[2]
    } else {
        way[1]
    }
}

/// `ack` (from the side that receives the data of `way`'s direction) as
/// the sender of that data counts: what leaves the firewall.
pub fn ack_unadjusted(way: &Way, ack: u32) -> u32 {
    ack.wrapping_sub(ack_offset(way, ack))
}

/// The adjustment of direction `dir` and of the other one.
pub fn ways(adj: &SeqAdj, dir: crate::flow::Dir) -> (&Way, &Way) {
    match dir {
        crate::flow::Dir::Original => (&adj.orig, &adj.reply),
        crate::flow::Dir::Reply => (&adj.reply, &adj.orig),
    }
}

fn rd32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Writes the 32-bit `new` at `at` and folds the change into the TCP
/// checksum at `csum` (`l4`: where the checksummed segment starts, to
/// know the word alignment of `at`).
fn set32(b: &mut [u8], l4: usize, csum: usize, at: usize, new: u32) -> Option<()> {
    let old = rd32(b, at)?;
    if old == new {
        return Some(());
    }
    let c = u16::from_be_bytes([*b.get(csum)?, *b.get(csum + 1)?]);
    let c = if (at - l4).is_multiple_of(2) {
        b.get_mut(at..at + 4)?.copy_from_slice(&new.to_be_bytes());
        update_u32(c, old, new)
    } else {
        // An odd offset (a SACK option not padded to a word): fold the
        // three words around it.
        let w: [u8; 6] = b.get(at - 1..at + 5)?.try_into().ok()?;
        b.get_mut(at..at + 4)?.copy_from_slice(&new.to_be_bytes());
        let n: [u8; 6] = b.get(at - 1..at + 5)?.try_into().ok()?;
        update_bytes(c, &w, &n)
    };
    b.get_mut(csum..csum + 2)?.copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// Moves the sequence number, acknowledgement number and SACK edges of a
/// TCP segment of direction `dir` by `adj` (see the module doc), with
/// incremental checksum updates. Returns whether anything changed; `None`
/// if the header is not all there (the frame is left as it was up to
/// that point, which the parser's checks make impossible).
pub fn adjust(
    frame: &mut [u8],
    meta: &PacketMeta,
    adj: &SeqAdj,
    dir: crate::flow::Dir,
) -> Option<bool> {
    let (this, other) = ways(adj, dir);
    let l4 = usize::from(meta.l4_offset);
    let csum = l4 + 16;
    let seq = rd32(frame, l4 + 4)?;
    let new_seq = seq.wrapping_add(seq_offset(this, seq));
    set32(frame, l4, csum, l4 + 4, new_seq)?;
    let mut changed = new_seq != seq;
    if meta.tcp.flags & tcp_flags::ACK == 0 {
        return Some(changed);
    }
    let ack = rd32(frame, l4 + 8)?;
    let new_ack = ack_unadjusted(other, ack);
    set32(frame, l4, csum, l4 + 8, new_ack)?;
    changed |= new_ack != ack;
    // SACK blocks (kind 5) acknowledge the other direction's data too.
    let hdr = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
    let mut i = l4 + 20;
    let end = l4 + hdr;
    while i < end {
        match *frame.get(i)? {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*frame.get(i + 1)?);
                if len < 2 || i + len > end {
                    break;
                }
                if kind == 5 {
                    let mut at = i + 2;
                    while at + 4 <= i + len {
                        let v = rd32(frame, at)?;
                        let n = ack_unadjusted(other, v);
                        set32(frame, l4, csum, at, n)?;
                        changed |= n != v;
                        at += 4;
                    }
                }
                i += len;
            }
        }
    }
    Some(changed)
}

/// Replaces the bytes `at..at + old_len` of the TCP payload of a frame
/// with `new`, moving what follows; fixes the IP length (IPv4: total
/// length and header checksum; IPv6: payload length) and recomputes the
/// TCP checksum (a helper's rewrite is rare: a few lines per control
/// connection). `meta` follows (IP length, payload length). Returns the
/// change in length, or `None` (frame unchanged) if the frame is not TCP,
/// the range is not inside the payload, or the result would exceed
/// `max_frame` bytes.
pub fn replace_payload(
    frame: &mut Vec<u8>,
    meta: &mut PacketMeta,
    at: usize,
    old_len: usize,
    new: &[u8],
    max_frame: usize,
) -> Option<i32> {
    if meta.tuple.proto != crate::flow::proto::TCP {
        return None;
    }
    let v6 = meta.tuple.v6;
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let end = l3 + usize::from(meta.ip_len);
    let payload = end.checked_sub(meta.tcp.payload_len as usize)?;
    if at < payload || at + old_len > end || end > frame.len() {
        return None;
    }
    let delta = i32::try_from(new.len()).ok()? - i32::try_from(old_len).ok()?;
    let new_ip_len = u16::try_from(i32::from(meta.ip_len) + delta).ok()?;
    let new_frame = end.checked_add_signed(isize::try_from(delta).ok()?)?;
    if new_frame > max_frame || (v6 && new_ip_len < 40) {
        return None;
    }
    // Ethernet padding after the IP packet is dropped with the old tail.
    frame.truncate(end);
    frame.splice(at..at + old_len, new.iter().copied());
    let seg_end = l3 + usize::from(new_ip_len);
    frame[l4 + 16..l4 + 18].fill(0);
    let c = if v6 {
        // The payload length counts what follows the fixed header
        // (extension headers included).
        let plen = new_ip_len - 40;
        frame[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        let src: [u8; 16] = frame[l3 + 8..l3 + 24].try_into().ok()?;
        let dst: [u8; 16] = frame[l3 + 24..l3 + 40].try_into().ok()?;
        crate::packet::checksum::l4_v6(&src, &dst, crate::flow::proto::TCP, &frame[l4..seg_end])
    } else {
        let old_len_word = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]);
        frame[l3 + 2..l3 + 4].copy_from_slice(&new_ip_len.to_be_bytes());
        let c = u16::from_be_bytes([frame[l3 + 10], frame[l3 + 11]]);
        let c = crate::packet::checksum::update_u16(c, old_len_word, new_ip_len);
        frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        let src: [u8; 4] = frame[l3 + 12..l3 + 16].try_into().ok()?;
        let dst: [u8; 4] = frame[l3 + 16..l3 + 20].try_into().ok()?;
        crate::packet::checksum::l4_v4(&src, &dst, crate::flow::proto::TCP, &frame[l4..seg_end])
    };
    frame[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    meta.ip_len = new_ip_len;
    meta.tcp.payload_len = meta.tcp.payload_len.checked_add_signed(delta)?;
    Some(delta)
}

#[cfg(test)]
#[path = "seqadj_tests.rs"]
mod tests;
