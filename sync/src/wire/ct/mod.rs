//! Conntrack attributes (ftfw-wire.md 5.2-5.4): the attribute table
//! ([`id`], [`NAMES`], [`exact_len`]) and [`CtAttrs`], the decoded form of a
//! CT message with its TLV parse and emit. The conversion to and from
//! [`FlowState`] is in the `flow` submodule.
//!
//! [`CtAttrs`] keeps one `Option` per attribute plus the order the ids came
//! in, so a message re-encodes with the same attribute set in the same
//! order. [`CtAttrs::from_flow`] builds what conntrackd's sender would emit
//! for a flow; [`CtAttrs::to_flow`] builds the flow a receiver stores.
//!
//! [`FlowState`]: ftfw_dataplane::flow::FlowState

use super::attr::{self, AttrIter};
use super::WireError;

mod flow;

pub use flow::{EncodeOptions, FlowError, MarkPolicy};

/// CT attribute ids (ftfw-wire.md 5.2).
pub mod id {
    /// Original src, dst (IPv4).
    pub const IPV4: u16 = 0;
    /// Original src, dst (IPv6).
    pub const IPV6: u16 = 1;
    /// IP protocol.
    pub const L4PROTO: u16 = 2;
    /// Original sport, dport (big-endian).
    pub const PORT: u16 = 3;
    /// TCP conntrack state.
    pub const TCP_STATE: u16 = 4;
    /// Status bits.
    pub const STATUS: u16 = 5;
    /// Seconds left.
    pub const TIMEOUT: u16 = 6;
    /// Connection mark.
    pub const MARK: u16 = 7;
    /// Master original src, dst (IPv4).
    pub const MASTER_IPV4: u16 = 8;
    /// Master original src, dst (IPv6).
    pub const MASTER_IPV6: u16 = 9;
    /// Master IP protocol.
    pub const MASTER_L4PROTO: u16 = 10;
    /// Master sport, dport.
    pub const MASTER_PORT: u16 = 11;
    /// Reply-tuple dst (IPv4).
    pub const SNAT_IPV4: u16 = 12;
    /// Reply-tuple src (IPv4).
    pub const DNAT_IPV4: u16 = 13;
    /// Reply-tuple dport, little-endian.
    pub const SPAT_PORT: u16 = 14;
    /// Reply-tuple sport, little-endian.
    pub const DPAT_PORT: u16 = 15;
    /// NAT sequence adjustment, 6 x u32.
    pub const NAT_SEQ_ADJ: u16 = 16;
    /// SCTP state.
    pub const SCTP_STATE: u16 = 17;
    /// SCTP original vtag.
    pub const SCTP_VTAG_ORIG: u16 = 18;
    /// SCTP reply vtag.
    pub const SCTP_VTAG_REPL: u16 = 19;
    /// DCCP state.
    pub const DCCP_STATE: u16 = 20;
    /// DCCP role.
    pub const DCCP_ROLE: u16 = 21;
    /// ICMP type.
    pub const ICMP_TYPE: u16 = 22;
    /// ICMP code.
    pub const ICMP_CODE: u16 = 23;
    /// ICMP identifier, little-endian.
    pub const ICMP_ID: u16 = 24;
    /// TCP window scale, original.
    pub const TCP_WSCALE_ORIG: u16 = 25;
    /// TCP window scale, reply.
    pub const TCP_WSCALE_REPL: u16 = 26;
    /// Helper name, NUL-terminated, nta_len <= 16.
    pub const HELPER_NAME: u16 = 27;
    /// Connlabels, BE u32 words, nta_len <= 1028.
    pub const LABELS: u16 = 28;
    /// Reply-tuple dst (IPv6).
    pub const SNAT_IPV6: u16 = 29;
    /// Reply-tuple src (IPv6).
    pub const DNAT_IPV6: u16 = 30;
    /// SYN proxy its, isn, tsoff.
    pub const SYNPROXY: u16 = 31;
    /// Conntrack zone.
    pub const ZONE: u16 = 32;
    /// First id conntrackd 1.4.7 does not know.
    pub const MAX: u16 = 33;
}

/// Attribute names by id (for the dissector).
pub const NAMES: [&str; 33] = [
    "IPV4",
    "IPV6",
    "L4PROTO",
    "PORT",
    "TCP_STATE",
    "STATUS",
    "TIMEOUT",
    "MARK",
    "MASTER_IPV4",
    "MASTER_IPV6",
    "MASTER_L4PROTO",
    "MASTER_PORT",
    "SNAT_IPV4",
    "DNAT_IPV4",
    "SPAT_PORT",
    "DPAT_PORT",
    "NAT_SEQ_ADJ",
    "SCTP_STATE",
    "SCTP_VTAG_ORIG",
    "SCTP_VTAG_REPL",
    "DCCP_STATE",
    "DCCP_ROLE",
    "ICMP_TYPE",
    "ICMP_CODE",
    "ICMP_ID",
    "TCP_WSCALE_ORIG",
    "TCP_WSCALE_REPL",
    "HELPER_NAME",
    "LABELS",
    "SNAT_IPV6",
    "DNAT_IPV6",
    "SYNPROXY",
    "ZONE",
];

/// Largest HELPER_NAME `nta_len`.
pub const HELPER_MAX_LEN: u16 = 16;
/// Largest LABELS `nta_len`.
pub const LABELS_MAX_LEN: u16 = 1028;
/// Timeout a receiver uses when TIMEOUT is missing (conntrackd, 6.3).
pub const MISSING_TIMEOUT: u32 = 60;

/// The `nta_len` an attribute id requires: `Some(n)` exactly n, `None` for
/// the variable ones (HELPER_NAME, LABELS) and unknown ids.
pub fn exact_len(aid: u16) -> Option<u16> {
    const SIZES: [u16; 33] = [
        12, 36, 5, 8, 5, 8, 8, 8, 12, 36, 5, 8, 8, 8, 6, 6, 28, 5, 8, 8, 5, 5, 5, 5, 6, 5, 5, 0, 0,
        20, 20, 16, 6,
    ];
    SIZES.get(usize::from(aid)).copied().filter(|&n| n != 0)
}

/// A decoded CT message body: each attribute that was present, and the
/// order the ids came in (a repeated id keeps its first position; its last
/// value wins, as in conntrackd).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CtAttrs {
    /// IPV4 (0): original src, dst.
    pub ipv4: Option<([u8; 4], [u8; 4])>,
    /// IPV6 (1): original src, dst.
    pub ipv6: Option<([u8; 16], [u8; 16])>,
    /// L4PROTO (2).
    pub l4proto: Option<u8>,
    /// PORT (3): original sport, dport.
    pub port: Option<(u16, u16)>,
    /// TCP_STATE (4).
    pub tcp_state: Option<u8>,
    /// STATUS (5).
    pub status: Option<u32>,
    /// TIMEOUT (6), seconds.
    pub timeout: Option<u32>,
    /// MARK (7).
    pub mark: Option<u32>,
    /// MASTER_IPV4 (8).
    pub master_ipv4: Option<([u8; 4], [u8; 4])>,
    /// MASTER_IPV6 (9).
    pub master_ipv6: Option<([u8; 16], [u8; 16])>,
    /// MASTER_L4PROTO (10).
    pub master_l4proto: Option<u8>,
    /// MASTER_PORT (11).
    pub master_port: Option<(u16, u16)>,
    /// SNAT_IPV4 (12): reply-tuple dst.
    pub snat_ipv4: Option<[u8; 4]>,
    /// DNAT_IPV4 (13): reply-tuple src.
    pub dnat_ipv4: Option<[u8; 4]>,
    /// SPAT_PORT (14): reply-tuple dport.
    /// Host value (the wire has it little-endian).
    pub spat_port: Option<u16>,
    /// DPAT_PORT (15): reply-tuple sport.
    /// Host value (the wire has it little-endian).
    pub dpat_port: Option<u16>,
    /// NAT_SEQ_ADJ (16): orig pos, before, after; reply pos, before, after.
    pub nat_seq_adj: Option<[u32; 6]>,
    /// SCTP_STATE (17).
    pub sctp_state: Option<u8>,
    /// SCTP_VTAG_ORIG (18).
    pub sctp_vtag_orig: Option<u32>,
    /// SCTP_VTAG_REPL (19).
    pub sctp_vtag_repl: Option<u32>,
    /// DCCP_STATE (20).
    pub dccp_state: Option<u8>,
    /// DCCP_ROLE (21).
    pub dccp_role: Option<u8>,
    /// ICMP_TYPE (22).
    pub icmp_type: Option<u8>,
    /// ICMP_CODE (23).
    pub icmp_code: Option<u8>,
    /// ICMP_ID (24).
    /// Host value (the wire has it little-endian).
    pub icmp_id: Option<u16>,
    /// TCP_WSCALE_ORIG (25).
    pub wscale_orig: Option<u8>,
    /// TCP_WSCALE_REPL (26).
    pub wscale_repl: Option<u8>,
    /// HELPER_NAME (27).
    /// Raw payload, NUL included.
    pub helper_name: Option<Vec<u8>>,
    /// LABELS (28).
    /// All words as sent.
    pub labels: Option<Vec<u32>>,
    /// SNAT_IPV6 (29): reply-tuple dst.
    pub snat_ipv6: Option<[u8; 16]>,
    /// DNAT_IPV6 (30): reply-tuple src.
    pub dnat_ipv6: Option<[u8; 16]>,
    /// SYNPROXY (31): its, isn, tsoff.
    pub synproxy: Option<[u32; 3]>,
    /// ZONE (32).
    pub zone: Option<u16>,
    /// Ids present, in wire order.
    pub order: Vec<u16>,
    /// Attributes with an unknown id that were skipped (not re-encoded).
    pub unknown: usize,
}

fn a4(p: &[u8]) -> [u8; 4] {
    p.get(..4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default()
}
fn a16(p: &[u8]) -> [u8; 16] {
    p.get(..16)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default()
}
fn pair4(p: &[u8]) -> ([u8; 4], [u8; 4]) {
    (a4(p), a4(p.get(4..).unwrap_or(&[])))
}
fn pair16(p: &[u8]) -> ([u8; 16], [u8; 16]) {
    (a16(p), a16(p.get(16..).unwrap_or(&[])))
}
fn be16(p: &[u8]) -> u16 {
    u16::from_be_bytes([
        p.first().copied().unwrap_or(0),
        p.get(1).copied().unwrap_or(0),
    ])
}
fn le16(p: &[u8]) -> u16 {
    be16(p).swap_bytes()
}
fn be32(p: &[u8]) -> u32 {
    u32::from_be_bytes(a4(p))
}
fn ports(p: &[u8]) -> (u16, u16) {
    (be16(p), be16(p.get(2..).unwrap_or(&[])))
}
fn words<const N: usize>(p: &[u8]) -> [u32; N] {
    let mut w = [0u32; N];
    for (i, c) in p.chunks_exact(4).take(N).enumerate() {
        w[i] = be32(c);
    }
    w
}
fn u8_(p: &[u8]) -> u8 {
    p.first().copied().unwrap_or(0)
}

impl CtAttrs {
    /// Decodes the attributes of a CT message. `msg` is the whole message
    /// (header included, attributes from offset 8), so error offsets are
    /// offsets in the message. Unknown ids (>= 33) are skipped and counted
    /// in [`CtAttrs::unknown`] (conntrackd would reject the message).
    pub fn parse(msg: &[u8]) -> Result<CtAttrs, WireError> {
        Self::parse_impl(msg, true)
    }

    /// [`CtAttrs::parse`] without recording [`CtAttrs::order`] (left
    /// empty), so the common message allocates nothing: for a receiver that
    /// goes straight on to [`CtAttrs::to_flow`], which does not read the
    /// order. Accepts and rejects exactly what `parse` does.
    pub fn parse_unordered(msg: &[u8]) -> Result<CtAttrs, WireError> {
        Self::parse_impl(msg, false)
    }

    fn parse_impl(msg: &[u8], record_order: bool) -> Result<CtAttrs, WireError> {
        let mut a = CtAttrs::default();
        for r in AttrIter::new(msg, super::HEADER_LEN) {
            let r = r?;
            let bad = WireError::AttrSize {
                at: r.at,
                id: r.id,
                len: r.len,
            };
            if r.id >= id::MAX {
                a.unknown = a.unknown.saturating_add(1);
                continue;
            }
            match exact_len(r.id) {
                Some(n) if n != r.len => return Err(bad),
                Some(_) => {}
                None if r.id == id::HELPER_NAME && r.len > HELPER_MAX_LEN => return Err(bad),
                None if r.id == id::LABELS && r.len > LABELS_MAX_LEN => return Err(bad),
                None => {}
            }
            let p = r.payload;
            match r.id {
                id::IPV4 => a.ipv4 = Some(pair4(p)),
                id::IPV6 => a.ipv6 = Some(pair16(p)),
                id::L4PROTO => a.l4proto = Some(u8_(p)),
                id::PORT => a.port = Some(ports(p)),
                id::TCP_STATE => a.tcp_state = Some(u8_(p)),
                id::STATUS => a.status = Some(be32(p)),
                id::TIMEOUT => a.timeout = Some(be32(p)),
                id::MARK => a.mark = Some(be32(p)),
                id::MASTER_IPV4 => a.master_ipv4 = Some(pair4(p)),
                id::MASTER_IPV6 => a.master_ipv6 = Some(pair16(p)),
                id::MASTER_L4PROTO => a.master_l4proto = Some(u8_(p)),
                id::MASTER_PORT => a.master_port = Some(ports(p)),
                id::SNAT_IPV4 => a.snat_ipv4 = Some(a4(p)),
                id::DNAT_IPV4 => a.dnat_ipv4 = Some(a4(p)),
                id::SPAT_PORT => a.spat_port = Some(le16(p)),
                id::DPAT_PORT => a.dpat_port = Some(le16(p)),
                id::NAT_SEQ_ADJ => a.nat_seq_adj = Some(words::<6>(p)),
                id::SCTP_STATE => a.sctp_state = Some(u8_(p)),
                id::SCTP_VTAG_ORIG => a.sctp_vtag_orig = Some(be32(p)),
                id::SCTP_VTAG_REPL => a.sctp_vtag_repl = Some(be32(p)),
                id::DCCP_STATE => a.dccp_state = Some(u8_(p)),
                id::DCCP_ROLE => a.dccp_role = Some(u8_(p)),
                id::ICMP_TYPE => a.icmp_type = Some(u8_(p)),
                id::ICMP_CODE => a.icmp_code = Some(u8_(p)),
                id::ICMP_ID => a.icmp_id = Some(le16(p)),
                id::TCP_WSCALE_ORIG => a.wscale_orig = Some(u8_(p)),
                id::TCP_WSCALE_REPL => a.wscale_repl = Some(u8_(p)),
                id::HELPER_NAME => a.helper_name = Some(p.to_vec()),
                id::LABELS => {
                    // conntrackd ignores (does not reject) a payload that is
                    // not a non-zero multiple of 4.
                    if p.is_empty() || p.len() % 4 != 0 {
                        continue;
                    }
                    a.labels = Some(p.chunks_exact(4).map(be32).collect());
                }
                id::SNAT_IPV6 => a.snat_ipv6 = Some(a16(p)),
                id::DNAT_IPV6 => a.dnat_ipv6 = Some(a16(p)),
                id::SYNPROXY => a.synproxy = Some(words::<3>(p)),
                id::ZONE => a.zone = Some(be16(p)),
                _ => continue,
            }
            if record_order {
                a.push(r.id);
            }
        }
        Ok(a)
    }

    fn push(&mut self, aid: u16) {
        if !self.order.contains(&aid) {
            self.order.push(aid);
        }
    }

    /// Appends attribute `aid` if it is set; returns whether it was.
    fn emit_one(&self, aid: u16, out: &mut Vec<u8>) -> bool {
        let mut p: Vec<u8> = Vec::with_capacity(36);
        let pair = |p: &mut Vec<u8>, a: &[u8], b: &[u8]| {
            p.extend_from_slice(a);
            p.extend_from_slice(b);
        };
        let some = match aid {
            id::IPV4 => self.ipv4.map(|(s, d)| pair(&mut p, &s, &d)),
            id::IPV6 => self.ipv6.map(|(s, d)| pair(&mut p, &s, &d)),
            id::L4PROTO => self.l4proto.map(|v| p.push(v)),
            id::PORT => self
                .port
                .map(|(s, d)| pair(&mut p, &s.to_be_bytes(), &d.to_be_bytes())),
            id::TCP_STATE => self.tcp_state.map(|v| p.push(v)),
            id::STATUS => self.status.map(|v| p.extend(v.to_be_bytes())),
            id::TIMEOUT => self.timeout.map(|v| p.extend(v.to_be_bytes())),
            id::MARK => self.mark.map(|v| p.extend(v.to_be_bytes())),
            id::MASTER_IPV4 => self.master_ipv4.map(|(s, d)| pair(&mut p, &s, &d)),
            id::MASTER_IPV6 => self.master_ipv6.map(|(s, d)| pair(&mut p, &s, &d)),
            id::MASTER_L4PROTO => self.master_l4proto.map(|v| p.push(v)),
            id::MASTER_PORT => self
                .master_port
                .map(|(s, d)| pair(&mut p, &s.to_be_bytes(), &d.to_be_bytes())),
            id::SNAT_IPV4 => self.snat_ipv4.map(|v| p.extend(v)),
            id::DNAT_IPV4 => self.dnat_ipv4.map(|v| p.extend(v)),
            id::SPAT_PORT => self.spat_port.map(|v| p.extend(v.to_le_bytes())),
            id::DPAT_PORT => self.dpat_port.map(|v| p.extend(v.to_le_bytes())),
            id::NAT_SEQ_ADJ => self
                .nat_seq_adj
                .map(|w| w.iter().for_each(|x| p.extend(x.to_be_bytes()))),
            id::SCTP_STATE => self.sctp_state.map(|v| p.push(v)),
            id::SCTP_VTAG_ORIG => self.sctp_vtag_orig.map(|v| p.extend(v.to_be_bytes())),
            id::SCTP_VTAG_REPL => self.sctp_vtag_repl.map(|v| p.extend(v.to_be_bytes())),
            id::DCCP_STATE => self.dccp_state.map(|v| p.push(v)),
            id::DCCP_ROLE => self.dccp_role.map(|v| p.push(v)),
            id::ICMP_TYPE => self.icmp_type.map(|v| p.push(v)),
            id::ICMP_CODE => self.icmp_code.map(|v| p.push(v)),
            id::ICMP_ID => self.icmp_id.map(|v| p.extend(v.to_le_bytes())),
            id::TCP_WSCALE_ORIG => self.wscale_orig.map(|v| p.push(v)),
            id::TCP_WSCALE_REPL => self.wscale_repl.map(|v| p.push(v)),
            id::HELPER_NAME => self.helper_name.as_ref().map(|v| p.extend(v)),
            id::LABELS => self
                .labels
                .as_ref()
                .map(|w| w.iter().for_each(|x| p.extend(x.to_be_bytes()))),
            id::SNAT_IPV6 => self.snat_ipv6.map(|v| p.extend(v)),
            id::DNAT_IPV6 => self.dnat_ipv6.map(|v| p.extend(v)),
            id::SYNPROXY => self
                .synproxy
                .map(|w| w.iter().for_each(|x| p.extend(x.to_be_bytes()))),
            id::ZONE => self.zone.map(|v| p.extend(v.to_be_bytes())),
            _ => None,
        };
        if some.is_some() {
            attr::emit(out, aid, &p);
        }
        some.is_some()
    }

    /// Appends the attributes listed in [`CtAttrs::order`], in that order.
    pub fn emit(&self, out: &mut Vec<u8>) {
        for &aid in &self.order {
            self.emit_one(aid, out);
        }
    }

    /// Length of the attributes [`CtAttrs::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let mut v = Vec::new();
        self.emit(&mut v);
        v.len()
    }

    /// Removes an attribute: its value and its place in the order (so it
    /// is no longer emitted). Unknown ids are ignored.
    pub fn remove(&mut self, aid: u16) {
        self.order.retain(|&x| x != aid);
        match aid {
            id::IPV4 => self.ipv4 = None,
            id::IPV6 => self.ipv6 = None,
            id::L4PROTO => self.l4proto = None,
            id::PORT => self.port = None,
            id::TCP_STATE => self.tcp_state = None,
            id::STATUS => self.status = None,
            id::TIMEOUT => self.timeout = None,
            id::MARK => self.mark = None,
            id::MASTER_IPV4 => self.master_ipv4 = None,
            id::MASTER_IPV6 => self.master_ipv6 = None,
            id::MASTER_L4PROTO => self.master_l4proto = None,
            id::MASTER_PORT => self.master_port = None,
            id::SNAT_IPV4 => self.snat_ipv4 = None,
            id::DNAT_IPV4 => self.dnat_ipv4 = None,
            id::SPAT_PORT => self.spat_port = None,
            id::DPAT_PORT => self.dpat_port = None,
            id::NAT_SEQ_ADJ => self.nat_seq_adj = None,
            id::SCTP_STATE => self.sctp_state = None,
            id::SCTP_VTAG_ORIG => self.sctp_vtag_orig = None,
            id::SCTP_VTAG_REPL => self.sctp_vtag_repl = None,
            id::DCCP_STATE => self.dccp_state = None,
            id::DCCP_ROLE => self.dccp_role = None,
            id::ICMP_TYPE => self.icmp_type = None,
            id::ICMP_CODE => self.icmp_code = None,
            id::ICMP_ID => self.icmp_id = None,
            id::TCP_WSCALE_ORIG => self.wscale_orig = None,
            id::TCP_WSCALE_REPL => self.wscale_repl = None,
            id::HELPER_NAME => self.helper_name = None,
            id::LABELS => self.labels = None,
            id::SNAT_IPV6 => self.snat_ipv6 = None,
            id::DNAT_IPV6 => self.dnat_ipv6 = None,
            id::SYNPROXY => self.synproxy = None,
            id::ZONE => self.zone = None,
            _ => {}
        }
    }
}

/// Name of a CT attribute id (`ID<n>` when unknown).
pub fn name(aid: u16) -> String {
    NAMES
        .get(usize::from(aid))
        .map_or_else(|| format!("ID{aid}"), |n| (*n).to_string())
}
