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
pub(crate) const MIX: u32 = 0x9e37_79b1;

fn word(a: &Addr, i: usize) -> u32 {
    u32::from_be_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]])
}

/// The hash of a flow's tuple, the same for both directions (see the
/// module documentation).
#[inline]
pub fn steering_hash(t: &Tuple) -> u32 {
    mix(premix(t))
}

/// The steering hash before its final mix: the XOR of the address words
/// and, where they count, the ports' XOR or the echo identifier.
#[inline]
pub(crate) fn premix(t: &Tuple) -> u32 {
    let words = if t.v6 { 4 } else { 1 };
    let mut h = (0..words).fold(0u32, |h, i| h ^ word(&t.src, i) ^ word(&t.dst, i));
    if PORTED.contains(&t.proto) {
        h ^= u32::from(t.src_port ^ t.dst_port);
    } else if is_echo4(t) {
        h ^= u32::from(t.icmp_id());
    }
    h
}

/// The steering hash's final mix: one multiply and a fold (invertible, so
/// the NAT allocator can solve for ports instead of trying them).
#[inline]
pub(crate) fn mix(x: u32) -> u32 {
    let h = x.wrapping_mul(MIX);
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
const LD_IMM: u16 = 0x00;
const MISC_TAX: u16 = 0x07;
const ALU_RSH_X: u16 = 0x7c;
const JMP_JGE_K: u16 = 0x35;
/// Bytes before the network header in a packet socket's data.
const ETH_HEADER: u32 = 14;
/// `SKF_AD_OFF + SKF_AD_PROTOCOL`: the frame's ethertype, host order.
const AD_PROTOCOL: u32 = 0xffff_f000;

/// A jump target while the program is assembled.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Label {
    V4,
    V6,
    Ports4,
    V6Ports,
    Ports,
    Icmp4,
    Echo4,
    Mix,
    /// Filters: the frame passes.
    Accept,
    /// Filters: the frame passes (the hash's early exits).
    Keep,
    /// Filters: the bucket's computation.
    Bucket,
    /// Filters: the frame is dropped.
    Drop,
    /// Filters: test the bucket's bit in the word in A.
    Tail,
    /// Filters: a node of the bucket search or a check.
    Node(u32),
}

enum Op {
    I(u16, u32),
    /// Conditional jump to a label if true, fall through if false.
    If(u16, u32, Label),
    Goto(Label),
    /// `A >= k`: on to the label (however far), else fall through (two
    /// instructions: a short conditional jump over a long jump).
    IfAtLeast(u32, Label),
    At(Label),
}

/// The fanout program: returns [`steering_hash`] of the frame (the kernel
/// takes it modulo the group's members). It runs with the packet data at
/// the network header, after VLAN tags were moved out of the frame.
pub fn fanout_program() -> Vec<Insn> {
    let mut ops = hash_ops(Purpose::Fanout);
    ops.push(Op::I(RET_A, 0));
    assemble(&ops)
}

/// What a program built on [`hash_ops`] is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The fanout group's program: data at the network header; every frame
    /// gets a hash (addresses alone where ports are not read).
    Fanout,
    /// A packet socket's filter: data at the Ethernet header; frames whose
    /// bucket a worker would compute otherwise jump to [`Label::Accept`].
    Filter,
}

/// Instructions that leave [`steering_hash`] of the frame in A, jumping to
/// `Accept` (filters only) for frames the worker buckets otherwise.
fn hash_ops(purpose: Purpose) -> Vec<Op> {
    use Label::*;
    use Op::*;
    let filter = purpose == Purpose::Filter;
    // Where the network header starts in the data the program sees.
    let n = if filter { ETH_HEADER } else { 0 };
    // Frames the fanout hashes by addresses alone: a filter passes them
    // (`Keep` is placed right after these instructions: conditional jumps
    // are short).
    let by_addr = if filter { Keep } else { Mix };
    let mut ops = vec![
        I(LD_W_ABS, AD_PROTOCOL),
        If(JMP_JEQ_K, 0x0800, V4),
        If(JMP_JEQ_K, 0x86dd, V6),
        if filter { Goto(Keep) } else { I(RET_K, 0) },
        At(V4),
    ];
    if filter {
        // A fragment: the first one is bucketed by ports the later ones
        // lack; the worker judges them all.
        ops.extend([I(LD_H_ABS, n + 6), If(JMP_JSET_K, 0x3fff, Keep)]);
    }
    ops.extend([
        I(LD_W_ABS, n + 12),
        I(ST, 0),
        I(LD_W_ABS, n + 16),
        I(LDX_MEM, 0),
        I(ALU_XOR_X, 0),
        I(ST, 0),
        I(LD_B_ABS, n + 9),
    ]);
    ops.extend(PORTED.iter().map(|p| If(JMP_JEQ_K, u32::from(*p), Ports4)));
    ops.extend([
        If(JMP_JEQ_K, u32::from(ICMP), Icmp4),
        Goto(Mix),
        At(Ports4),
        // Any fragment (more fragments, or an offset): no ports.
        I(LD_H_ABS, n + 6),
        If(JMP_JSET_K, 0x3fff, Mix),
        I(LDX_B_MSH, n),
        I(LD_W_IND, n),
        Goto(Ports),
        // ICMP echo request or reply, not a fragment: the identifier.
        At(Icmp4),
        I(LD_H_ABS, n + 6),
        If(JMP_JSET_K, 0x3fff, Mix),
        I(LDX_B_MSH, n),
        I(LD_B_IND, n),
        If(JMP_JEQ_K, u32::from(ECHO_REQUEST), Echo4),
        If(JMP_JEQ_K, u32::from(ECHO_REPLY), Echo4),
        // Other ICMP (errors go by the flow they quote).
        Goto(by_addr),
        At(Echo4),
        I(LD_H_IND, n + 4),
        I(LDX_MEM, 0),
        I(ALU_XOR_X, 0),
        I(ST, 0),
        Goto(Mix),
        At(V6),
        I(LD_W_ABS, n + 8),
    ]);
    for k in [12, 16, 20, 24, 28, 32, 36] {
        ops.extend([I(ST, 0), I(LD_W_ABS, n + k), I(LDX_MEM, 0), I(ALU_XOR_X, 0)]);
    }
    ops.extend([I(ST, 0), I(LD_B_ABS, n + 6)]);
    ops.extend(PORTED.iter().map(|p| If(JMP_JEQ_K, u32::from(*p), V6Ports)));
    ops.extend([
        // Extension headers, ICMPv6 (errors, neighbor discovery) and
        // the rest.
        Goto(by_addr),
        At(V6Ports),
        I(LD_W_ABS, n + 40),
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
    ]);
    ops
}

/// Longest program the kernel loads (`BPF_MAXINSNS`).
pub const MAX_PROGRAM: usize = 4096;

/// What a socket filter returns to keep a whole frame.
const KEEP: u32 = u32::MAX;

/// A packet socket's filter that drops the frames of buckets a cluster
/// member does not own, in the kernel, before they are copied to the
/// ring: plain TCP, UDP, DCCP, SCTP and UDP-Lite (IPv4 not fragmented,
/// IPv6 without extension headers) and IPv4 ICMP echo, whose bucket it
/// computes as [`crate::buckets::bucket_of_tuple`] does. Every other
/// frame (fragments, ICMP errors and other ICMP, IPv6 extension headers,
/// ICMPv6, frames that are not IP; in routed mode, frames not sent to
/// `shared_mac`) passes, and the worker judges it as before. So the filter
/// passes a superset of what the worker forwards. It runs on the whole
/// frame (a `SOCK_RAW` socket's data starts at the Ethernet header, VLAN
/// tags already moved out).
///
/// The bucket's bit is found by a search tree over the owned set's 32-bit
/// words, runs of equal words merged (a few hundred instructions for 4096
/// buckets however they are spread). `None` when the program would be
/// longer than the kernel takes ([`MAX_PROGRAM`]).
pub fn bucket_filter_program(
    owned: &crate::buckets::BucketSet,
    shared_mac: Option<[u8; 6]>,
) -> Option<Vec<Insn>> {
    use Label::*;
    use Op::*;
    let buckets = owned.universe().min(crate::buckets::MAX_BUCKETS);
    if buckets == 0 {
        return None;
    }
    let mut ops = Vec::new();
    if let Some(m) = shared_mac {
        // Routed mode: only frames to the cluster's MAC go by bucket.
        let word = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
        let half = u32::from(u16::from_be_bytes([m[4], m[5]]));
        ops.extend([
            I(LD_W_ABS, 0),
            If(JMP_JEQ_K, word, Node(0)),
            Goto(Accept),
            At(Node(0)),
            I(LD_H_ABS, 4),
            If(JMP_JEQ_K, half, Node(1)),
            Goto(Accept),
            At(Node(1)),
        ]);
    }
    ops.extend(hash_ops(Purpose::Filter));
    // A = the bucket, as `bucket_of_steering`; M[3] keeps it.
    ops.extend([
        Goto(Bucket),
        At(Keep),
        I(RET_K, KEEP),
        At(Bucket),
        I(ALU_RSH_K, 14),
        I(ALU_MUL_K, buckets),
        I(ALU_RSH_K, 18),
        I(ST, 3),
        I(ALU_RSH_K, 5),
    ]);
    // The owned set's 32-bit words, runs of equal ones merged: (first
    // word, value).
    let words = buckets.div_ceil(32);
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for w in 0..words {
        let v = (0..32).fold(0u32, |v, j| v | u32::from(owned.contains(w * 32 + j)) << j);
        if runs.last().is_none_or(|r| r.1 != v) {
            runs.push((w, v));
        }
    }
    let mut next = 2;
    tree(&runs, &mut ops, &mut next);
    ops.extend([
        // A = the word, X = the bucket's bit in it.
        At(Tail),
        I(ST, 4),
        I(LD_MEM, 3),
        I(ALU_AND_K, 31),
        I(MISC_TAX, 0),
        I(LD_MEM, 4),
        I(ALU_RSH_X, 0),
        I(ALU_AND_K, 1),
        If(JMP_JEQ_K, 0, Drop),
        At(Accept),
        I(RET_K, KEEP),
        At(Drop),
        I(RET_K, 0),
    ]);
    let prog = assemble(&ops);
    (prog.len() <= MAX_PROGRAM).then_some(prog)
}

/// The search over `runs` (A holds the word index): a single run's value
/// decides (none owned: drop; all: keep; else test the bit at `Tail`);
/// more runs split at the middle one's first word.
fn tree(runs: &[(u32, u32)], ops: &mut Vec<Op>, next: &mut u32) {
    use Label::*;
    use Op::*;
    match runs {
        [] => ops.push(Goto(Drop)),
        [(_, 0)] => ops.push(Goto(Drop)),
        [(_, u32::MAX)] => ops.push(Goto(Accept)),
        [(_, v)] => ops.extend([I(LD_IMM, *v), Goto(Tail)]),
        _ => {
            let mid = runs.len() / 2;
            let right = Node(*next);
            *next += 1;
            ops.push(IfAtLeast(runs[mid].0, right));
            tree(&runs[..mid], ops, next);
            ops.push(At(right));
            tree(&runs[mid..], ops, next);
        }
    }
}

fn assemble(ops: &[Op]) -> Vec<Insn> {
    // Positions of labels (instructions before them).
    let mut at = std::collections::HashMap::new();
    let mut n = 0usize;
    for op in ops {
        match op {
            Op::At(l) => {
                at.insert(*l, n);
            }
            Op::IfAtLeast(..) => n += 2,
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n);
    let insn = |code, jt, jf, k| Insn { code, jt, jf, k };
    for op in ops {
        let here = out.len();
        // Instructions to skip from the one after `from` to the label.
        let far = |l: Label, from: usize| at.get(&l).expect("every label is placed") - from - 1;
        let short = |l: Label| u8::try_from(far(l, here)).expect("classic BPF jumps are short");
        let long = |l: Label, from: usize| u32::try_from(far(l, from)).unwrap_or(u32::MAX);
        match *op {
            Op::I(code, k) => out.push(insn(code, 0, 0, k)),
            Op::If(code, k, l) => out.push(insn(code, short(l), 0, k)),
            Op::Goto(l) => out.push(insn(JMP_JA, 0, 0, long(l, here))),
            Op::IfAtLeast(k, l) => {
                out.push(insn(JMP_JGE_K, 0, 1, k));
                out.push(insn(JMP_JA, 0, 0, long(l, here + 1)));
            }
            Op::At(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod filter_tests;
#[cfg(test)]
mod tests;
