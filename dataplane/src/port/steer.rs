//! Which worker a flow belongs to, computed the same way everywhere a
//! flow is placed:
//!
//! - the kernel, for AF_PACKET ports with several workers: the fanout group
//!   runs [`fanout_program`] (`PACKET_FANOUT_CBPF`), a classic BPF program
//!   that returns [`steering_hash`] of the frame; the kernel delivers the
//!   frame to group member `hash % workers`;
//! - the `mem` ports' software fanout ([`super::mem`]);
//! - the control side, for flows that arrive without a packet (a takeover's
//!   commit, a cluster bucket's commit, `ftfwctl flows add`, the state
//!   keeper): [`worker_of`] on the flow's original tuple.
//!
//! So a committed flow lands in the shard where its packets will arrive.
//! (The kernel's own `PACKET_FANOUT_HASH` uses a per-boot random seed that
//! userspace cannot know.)
//!
//! The hash is symmetric (both directions of a flow give the same value)
//! and simple enough for classic BPF: the XOR of the address words, XOR
//! `sport ^ dport` for protocols with ports (TCP, UDP, DCCP, SCTP,
//! UDP-Lite) unless the packet is an IPv4 fragment, XOR the identifier for
//! IPv4 ICMP echo requests and replies (so NAT can keep a translated
//! ping's reply on its worker), then one multiply and a fold. What the program cannot see the same way as the parser (IPv6
//! extension headers before the transport header, ICMP errors, frames that
//! are not IP) goes by addresses alone, or to worker 0 for non-IP frames.

use crate::flow::{Addr, Tuple};
use crate::meta::{Fragment, PacketMeta};

/// Protocols whose ports enter the hash.
pub const PORTED: [u8; 5] = [6, 17, 33, 132, 136];

/// Multiplier of the final mix (the 32-bit golden ratio).
const MIX: u32 = 0x9e37_79b1;

fn word(a: &Addr, i: usize) -> u32 {
    u32::from_be_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]])
}

/// The hash of a flow's tuple, the same for both directions (see the
/// module documentation).
#[inline]
pub fn steering_hash(t: &Tuple) -> u32 {
    let words = if t.v6 { 4 } else { 1 };
    let mut h = (0..words).fold(0u32, |h, i| h ^ word(&t.src, i) ^ word(&t.dst, i));
    if PORTED.contains(&t.proto) {
        h ^= u32::from(t.src_port ^ t.dst_port);
    } else if is_echo4(t) {
        h ^= u32::from(t.icmp_id());
    }
    let h = h.wrapping_mul(MIX);
    h ^ (h >> 16)
}

/// An IPv4 ICMP echo request or reply: its identifier enters the hash
/// (so NAT can steer a translated ping's reply by choosing it).
#[inline]
fn is_echo4(t: &Tuple) -> bool {
    !t.v6 && t.proto == ICMP && matches!(t.icmp_type(), ECHO_REQUEST | ECHO_REPLY)
}

const ICMP: u8 = 1;
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;

/// The worker (0 to `workers - 1`) that owns the flow of `t`.
#[inline]
pub fn worker_of(t: &Tuple, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let n = u32::try_from(workers).unwrap_or(u32::MAX);
    usize::try_from(steering_hash(t) % n).unwrap_or(0)
}

/// The tuple the kernel's program hashes for a parsed frame: the frame's
/// own tuple (an ICMP error's outer addresses, not the flow it quotes),
/// without ports for fragments and for IPv6 packets whose transport header
/// follows extension headers. `worker_of(&kernel_tuple(m), n)` is the
/// worker an AF_PACKET fanout group delivers the frame to.
pub fn kernel_tuple(m: &PacketMeta) -> Tuple {
    let mut t = m.tuple;
    if m.fragment != Fragment::None || has_ext_headers(m) {
        (t.src_port, t.dst_port) = (0, 0);
    }
    t
}

/// An IPv6 packet with extension headers before its transport header.
fn has_ext_headers(m: &PacketMeta) -> bool {
    m.tuple.v6 && usize::from(m.l4_offset) != usize::from(m.l3_offset) + 40
}

/// Whether the kernel may steer the frame elsewhere than its flow's
/// worker: an ICMP error (steered by its outer addresses), a fragment, or
/// an IPv6 packet with extension headers (steered by addresses alone).
pub fn steered_apart(m: &PacketMeta) -> bool {
    m.icmp_error.is_some() || m.fragment != Fragment::None || has_ext_headers(m)
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_W_IND: u16 = 0x40;
const LD_H_IND: u16 = 0x48;
const LD_B_IND: u16 = 0x50;
const LD_MEM: u16 = 0x60;
const LDX_MEM: u16 = 0x61;
const LDX_B_MSH: u16 = 0xb1;
const ST: u16 = 0x02;
const ALU_MUL_K: u16 = 0x24;
const ALU_AND_K: u16 = 0x54;
const ALU_RSH_K: u16 = 0x74;
const ALU_XOR_X: u16 = 0xac;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_A: u16 = 0x16;
/// `SKF_AD_OFF + SKF_AD_PROTOCOL`: the frame's ethertype, host order.
const AD_PROTOCOL: u32 = 0xffff_f000;

/// A jump target while the program is assembled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    V4,
    V6,
    Ports4,
    V6Ports,
    Ports,
    Icmp4,
    Echo4,
    Mix,
}

enum Op {
    I(u16, u32),
    /// Conditional jump to a label if true, fall through if false.
    If(u16, u32, Label),
    Goto(Label),
    At(Label),
}

/// The fanout program: returns [`steering_hash`] of the frame (the kernel
/// takes it modulo the group's members). It runs with the packet data at
/// the network header, after VLAN tags were moved out of the frame.
pub fn fanout_program() -> Vec<Insn> {
    use Label::*;
    use Op::*;
    let mut ops = vec![
        I(LD_W_ABS, AD_PROTOCOL),
        If(JMP_JEQ_K, 0x0800, V4),
        If(JMP_JEQ_K, 0x86dd, V6),
        I(RET_K, 0),
        At(V4),
        I(LD_W_ABS, 12),
        I(ST, 0),
        I(LD_W_ABS, 16),
        I(LDX_MEM, 0),
        I(ALU_XOR_X, 0),
        I(ST, 0),
        I(LD_B_ABS, 9),
    ];
    ops.extend(PORTED.iter().map(|p| If(JMP_JEQ_K, u32::from(*p), Ports4)));
    ops.extend([
        If(JMP_JEQ_K, u32::from(ICMP), Icmp4),
        Goto(Mix),
        At(Ports4),
        // Any fragment (more fragments, or an offset): no ports.
        I(LD_H_ABS, 6),
        If(JMP_JSET_K, 0x3fff, Mix),
        I(LDX_B_MSH, 0),
        I(LD_W_IND, 0),
        Goto(Ports),
        // ICMP echo request or reply, not a fragment: the identifier.
        At(Icmp4),
        I(LD_H_ABS, 6),
        If(JMP_JSET_K, 0x3fff, Mix),
        I(LDX_B_MSH, 0),
        I(LD_B_IND, 0),
        If(JMP_JEQ_K, u32::from(ECHO_REQUEST), Echo4),
        If(JMP_JEQ_K, u32::from(ECHO_REPLY), Echo4),
        Goto(Mix),
        At(Echo4),
        I(LD_H_IND, 4),
        I(LDX_MEM, 0),
        I(ALU_XOR_X, 0),
        I(ST, 0),
        Goto(Mix),
        At(V6),
        I(LD_W_ABS, 8),
    ]);
    for k in [12, 16, 20, 24, 28, 32, 36] {
        ops.extend([I(ST, 0), I(LD_W_ABS, k), I(LDX_MEM, 0), I(ALU_XOR_X, 0)]);
    }
    ops.extend([I(ST, 0), I(LD_B_ABS, 6)]);
    ops.extend(PORTED.iter().map(|p| If(JMP_JEQ_K, u32::from(*p), V6Ports)));
    ops.extend([
        Goto(Mix),
        At(V6Ports),
        I(LD_W_ABS, 40),
        // A = sport << 16 | dport; fold in sport ^ dport.
        At(Ports),
        I(ST, 1),
        I(ALU_RSH_K, 16),
        I(ST, 2),
        I(LD_MEM, 1),
        I(ALU_AND_K, 0xffff),
        I(LDX_MEM, 2),
        I(ALU_XOR_X, 0),
        I(LDX_MEM, 0),
        I(ALU_XOR_X, 0),
        I(ST, 0),
        At(Mix),
        I(LD_MEM, 0),
        I(ALU_MUL_K, MIX),
        I(ST, 1),
        I(ALU_RSH_K, 16),
        I(LDX_MEM, 1),
        I(ALU_XOR_X, 0),
        I(RET_A, 0),
    ]);
    assemble(&ops)
}

fn assemble(ops: &[Op]) -> Vec<Insn> {
    // Positions of labels (instructions before them).
    let mut at = Vec::new();
    let mut n = 0usize;
    for op in ops {
        match op {
            Op::At(l) => at.push((*l, n)),
            _ => n += 1,
        }
    }
    let pos = |l: Label| at.iter().find(|(x, _)| *x == l).map(|(_, p)| *p);
    let mut out = Vec::with_capacity(n);
    for op in ops {
        let here = out.len();
        let off = |l: Label| {
            let to = pos(l).expect("every label is placed");
            u8::try_from(to - here - 1).expect("classic BPF jumps are short")
        };
        match *op {
            Op::I(code, k) => out.push(Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Op::If(code, k, l) => out.push(Insn {
                code,
                jt: off(l),
                jf: 0,
                k,
            }),
            Op::Goto(l) => out.push(Insn {
                code: JMP_JA,
                jt: 0,
                jf: 0,
                k: u32::from(off(l)),
            }),
            Op::At(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
