//! The FT-FW dissector behind `ftfwctl wire decode FILE`.
//!
//! Reads one datagram as hex text (the golden-vector format, or an
//! offset-prefixed hexdump) or every UDP payload of a classic libpcap file
//! (both byte orders, micro- and nanosecond magic; Ethernet with VLAN tags,
//! raw IP, Linux cooked SLL and SLL2; the IP headers are walked by
//! [`ftfw_dataplane::packet::walk`]), decodes each payload with
//! [`ftfw_sync::wire::decode_datagram`] and renders every message as a
//! `conntrack -L`-like text block or as one JSON object per line. Never
//! panics: a file that is neither yields a [`DumpError`].

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ftfw_dataplane::flow::proto;
use ftfw_dataplane::meta::Fragment;
use ftfw_dataplane::packet::ethernet::ethertype;
use ftfw_dataplane::packet::walk;
use ftfw_sync::wire::{
    ct, decode_datagram, exp, flags, hex, Body, ControlMsg, DecodeStats, Message, MessageError,
};
use serde_json::{json, Value};
use thiserror::Error;

use crate::console::proto::{status_names, FlowJson};
use crate::console::render;

/// Why a file could not be read as a datagram or a capture.
#[derive(Debug, Error)]
pub enum DumpError {
    /// Neither pcap nor hex.
    #[error("not a pcap file and not hex text: {0}")]
    NotHex(#[from] hex::HexError),
    /// Not UTF-8 and no pcap magic.
    #[error("not a pcap file (magic {0:02x?}) and not text")]
    NotText([u8; 4]),
    /// A pcap file with a short global header.
    #[error("pcap: global header truncated ({0} bytes)")]
    PcapHeader(usize),
    /// A link type this dissector does not walk.
    #[error("pcap: unsupported link type {0} (want 1 Ethernet, 101 raw IP, 113 SLL, 276 SLL2)")]
    LinkType(u32),
    /// An empty hex file.
    #[error("no bytes in the hex text")]
    Empty,
}

/// One UDP payload to decode, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// 1-based packet number in the pcap (None for hex input).
    pub packet: Option<usize>,
    /// UDP source, when read from a pcap.
    pub src: Option<SocketAddr>,
    /// UDP destination, when read from a pcap.
    pub dst: Option<SocketAddr>,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What reading a file gives: the payloads and the problems met on the way
/// (a truncated pcap record, say) as human-readable notes.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    /// The UDP payloads in file order.
    pub payloads: Vec<Payload>,
    /// Packets skipped and why (`packet N: ...`).
    pub notes: Vec<String>,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x4d, 0x3c, 0xb2, 0xa1],
];

/// Reads `bytes` as a pcap (by its magic) or else as hex text. `port`
/// keeps only UDP datagrams with that source or destination port (pcap
/// only).
pub fn read_capture(bytes: &[u8], port: Option<u16>) -> Result<Capture, DumpError> {
    let magic: [u8; 4] = bytes
        .get(..4)
        .and_then(|m| m.try_into().ok())
        .unwrap_or_default();
    if PCAP_MAGICS.contains(&magic) {
        return read_pcap(bytes, port);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| DumpError::NotText(magic))?;
    let data = hex::parse_hex(text)?;
    if data.is_empty() {
        return Err(DumpError::Empty);
    }
    Ok(Capture {
        payloads: vec![Payload {
            packet: None,
            src: None,
            dst: None,
            data,
        }],
        notes: Vec::new(),
    })
}

fn rd_u32(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let a: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(a))
}

fn read_pcap(bytes: &[u8], port: Option<u16>) -> Result<Capture, DumpError> {
    if bytes.len() < 24 {
        return Err(DumpError::PcapHeader(bytes.len()));
    }
    let le = bytes.first() != Some(&0xa1);
    let link = rd_u32(bytes, 20, le).ok_or(DumpError::PcapHeader(bytes.len()))?;
    if !matches!(link, 1 | 101 | 113 | 276) {
        return Err(DumpError::LinkType(link));
    }
    let mut cap = Capture::default();
    let mut off = 24usize;
    let mut n = 0usize;
    while off < bytes.len() {
        n = n.saturating_add(1);
        let Some(incl) = rd_u32(bytes, off.saturating_add(8), le) else {
            cap.notes.push(format!(
                "packet {n}: record header truncated at file offset {off}"
            ));
            break;
        };
        let start = off.saturating_add(16);
        let end = start.saturating_add(usize::try_from(incl).unwrap_or(usize::MAX));
        let Some(frame) = bytes.get(start..end) else {
            cap.notes.push(format!(
                "packet {n}: record of {incl} bytes truncated at file offset {off}"
            ));
            break;
        };
        off = end;
        match udp_payload(link, frame) {
            Ok((src, dst, data)) => {
                if port.is_some_and(|p| src.port() != p && dst.port() != p) {
                    continue;
                }
                cap.payloads.push(Payload {
                    packet: Some(n),
                    src: Some(src),
                    dst: Some(dst),
                    data: data.to_vec(),
                });
            }
            Err(why) => cap.notes.push(format!("packet {n}: skipped: {why}")),
        }
    }
    Ok(cap)
}

type Udp<'a> = (SocketAddr, SocketAddr, &'a [u8]);

/// Walks link, IP and UDP headers to the UDP payload: the link header by
/// link type, then IP with [`walk::ip`]. A packet cut by the capture's snap
/// length keeps what was captured.
fn udp_payload(link: u32, frame: &[u8]) -> Result<Udp<'_>, String> {
    let short = |what: &str| format!("{what} truncated");
    let (ethertype, l3) = match link {
        1 => {
            let l2 = walk::l2(frame).map_err(|e| format!("Ethernet/VLAN: {e}"))?;
            (Some(l2.ethertype), l2.l3_offset)
        }
        113 => (be16(frame, 14), 16),
        276 => (be16(frame, 0), 20),
        _ => (None, 0),
    };
    let version = frame
        .get(l3..)
        .ok_or_else(|| short("link header"))?
        .first()
        .map(|b| b >> 4);
    let ethertype = match (ethertype, version) {
        (Some(ethertype::IPV4) | None, Some(4)) => ethertype::IPV4,
        (Some(ethertype::IPV6) | None, Some(6)) => ethertype::IPV6,
        (Some(et), _) => return Err(format!("ethertype {et:#06x} is not IP")),
        (None, v) => return Err(format!("IP version {v:?}")),
    };
    let family = if ethertype == ethertype::IPV4 {
        "IPv4"
    } else {
        "IPv6"
    };
    let ip = walk::ip(frame, l3, ethertype).map_err(|e| format!("{family}: {e}"))?;
    if ip.proto != proto::UDP {
        return Err(format!("{family} protocol {} is not UDP", ip.proto));
    }
    if ip.fragment == Fragment::Later {
        return Err(format!("{family} non-first fragment"));
    }
    let (src, dst) = if ip.v6 {
        (
            IpAddr::V6(Ipv6Addr::from(ip.src)),
            IpAddr::V6(Ipv6Addr::from(ip.dst)),
        )
    } else {
        let v4 = |a: [u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
        (v4(ip.src), v4(ip.dst))
    };
    let l4 = frame
        .get(ip.l4_offset..ip.end.min(frame.len()))
        .ok_or_else(|| format!("{family} headers beyond packet"))?;
    udp(src, dst, l4)
}

fn udp(src: IpAddr, dst: IpAddr, l4: &[u8]) -> Result<Udp<'_>, String> {
    let sp = be16(l4, 0).ok_or("UDP header truncated")?;
    let dp = be16(l4, 2).ok_or("UDP header truncated")?;
    let ulen = usize::from(be16(l4, 4).ok_or("UDP header truncated")?);
    let end = if ulen >= 8 {
        ulen.min(l4.len())
    } else {
        l4.len()
    };
    let data = l4.get(8..end).ok_or("UDP header truncated")?;
    Ok((SocketAddr::new(src, sp), SocketAddr::new(dst, dp), data))
}

/// One decoded message (or error) with the payload it came from.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// Where the bytes came from.
    pub payload: &'a Payload,
    /// The message or the error met.
    pub result: Result<Message, MessageError>,
}

/// Decodes every payload; counters are summed in `stats`.
pub fn decode_all<'a>(cap: &'a Capture, stats: &mut DecodeStats) -> Vec<Record<'a>> {
    let mut v = Vec::new();
    for p in &cap.payloads {
        for result in decode_datagram(&p.data, stats) {
            v.push(Record { payload: p, result });
        }
    }
    v
}

fn control_json(c: &ControlMsg) -> Value {
    match *c {
        ControlMsg::Ack { from, to } => json!({"control": "ACK", "from": from, "to": to}),
        ControlMsg::Nack { from, to } => json!({"control": "NACK", "from": from, "to": to}),
        ControlMsg::Resync { from, to } => json!({"control": "RESYNC", "from": from, "to": to}),
        ControlMsg::Alive => json!({"control": "ALIVE"}),
    }
}

fn control_text(c: &ControlMsg) -> String {
    match *c {
        ControlMsg::Ack { from, to } => format!("ACK {from:#x}..{to:#x} ({from}..{to})"),
        ControlMsg::Nack { from, to } => format!("NACK {from:#x}..{to:#x} ({from}..{to})"),
        ControlMsg::Resync { .. } => "RESYNC (send me your whole table)".into(),
        ControlMsg::Alive => "ALIVE".into(),
    }
}

/// The NAT attributes of a CT message, `conntrack`-style words.
fn nat_words(a: &ct::CtAttrs) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(x) = a.snat_ipv4 {
        v.push(format!("snat={}", Ipv4Addr::from(x)));
    }
    if let Some(x) = a.snat_ipv6 {
        v.push(format!("snat={}", Ipv6Addr::from(x)));
    }
    if let Some(x) = a.dnat_ipv4 {
        v.push(format!("dnat={}", Ipv4Addr::from(x)));
    }
    if let Some(x) = a.dnat_ipv6 {
        v.push(format!("dnat={}", Ipv6Addr::from(x)));
    }
    if let Some(p) = a.spat_port {
        v.push(format!("spat={p}"));
    }
    if let Some(p) = a.dpat_port {
        v.push(format!("dpat={p}"));
    }
    v
}

fn source_json(p: &Payload) -> Value {
    let mut o = json!({});
    if let Some(n) = p.packet {
        o["packet"] = json!(n);
    }
    if let Some(s) = p.src {
        o["src_addr"] = json!(s.to_string());
    }
    if let Some(d) = p.dst {
        o["dst_addr"] = json!(d.to_string());
    }
    o
}

/// The JSON object of one record: `type`, `flags`, `seq`, `len`, `offset`,
/// and for flow messages `proto`, `orig`, `reply`, `state`, `status`,
/// `status_names`, `timeout`, `mark`, `zone`, `nat`, `attrs`; for control
/// messages `control`, `from`, `to`; errors carry `error`.
pub fn record_json(r: &Record<'_>) -> Value {
    let mut o = source_json(r.payload);
    let header = match &r.result {
        Ok(m) => Some(m.header),
        Err(e) => e.header,
    };
    let offset = match &r.result {
        Ok(m) => m.offset,
        Err(e) => e.offset,
    };
    o["offset"] = json!(offset);
    if let Some(h) = header {
        o["type"] = json!(h.type_name());
        o["version"] = json!(h.version);
        o["flags"] = json!(flags::names(h.flags));
        o["seq"] = json!(h.seq);
        o["len"] = json!(h.len);
    }
    match &r.result {
        Err(e) => {
            o["error"] = json!(e.to_string());
        }
        Ok(m) => match &m.body {
            Body::Control(c) => {
                if let (Some(dst), Value::Object(src)) = (o.as_object_mut(), control_json(c)) {
                    dst.extend(src);
                }
            }
            Body::Ct(a) => {
                o["attrs"] = json!(a.order.iter().map(|&i| ct::name(i)).collect::<Vec<_>>());
                if a.unknown > 0 {
                    o["unknown_attrs"] = json!(a.unknown);
                }
                match a.to_flow() {
                    Ok(f) => {
                        let fj = FlowJson::from(&f);
                        o["proto"] = json!(fj.proto);
                        o["orig"] = serde_json::to_value(&fj.original).unwrap_or(Value::Null);
                        o["reply"] = serde_json::to_value(&fj.reply).unwrap_or(Value::Null);
                        o["state"] = json!(fj.state);
                        o["status"] = json!(f.status);
                        o["status_names"] = json!(status_names(f.status));
                        o["timeout"] = json!(a.timeout);
                        o["mark"] = json!(a.mark);
                        o["zone"] = json!(f.key.zone);
                        o["nat"] = json!(nat_words(a));
                    }
                    Err(e) => o["error"] = json!(format!("flow: {e}")),
                }
            }
            Body::Exp(e) => {
                o["attrs"] = json!(e
                    .attrs
                    .iter()
                    .map(|(i, p)| json!({"name": exp::name(*i), "hex": hex::encode(p)}))
                    .collect::<Vec<_>>());
                o["timeout"] = json!(e.u32_attr(exp::id::TIMEOUT));
                o["helper"] = json!(e.str_attr(exp::id::HELPER_NAME));
            }
        },
    }
    o
}

/// The text block of one record: a header line, then the flow
/// (`conntrack -L` style with status names, NAT and attribute list) or the
/// control body or the error.
pub fn record_text(r: &Record<'_>) -> String {
    let mut s = String::new();
    let p = r.payload;
    if let (Some(n), Some(src), Some(dst)) = (p.packet, p.src, p.dst) {
        let _ = write!(s, "#{n} {src} > {dst} ");
    }
    let (offset, header) = match &r.result {
        Ok(m) => (m.offset, Some(m.header)),
        Err(e) => (e.offset, e.header),
    };
    let _ = write!(s, "@{offset}");
    if let Some(h) = header {
        let fl = flags::names(h.flags);
        let _ = write!(
            s,
            " {} v{} flags={} seq={} ({:#x}) len={}",
            h.type_name(),
            h.version,
            if fl.is_empty() {
                "-".into()
            } else {
                fl.join(",")
            },
            h.seq,
            h.seq,
            h.len
        );
    }
    s.push('\n');
    match &r.result {
        Err(e) => {
            let _ = writeln!(s, "    error: {e}");
        }
        Ok(m) => match &m.body {
            Body::Control(c) => {
                let _ = writeln!(s, "    {}", control_text(c));
            }
            Body::Ct(a) => match a.to_flow() {
                Ok(f) => {
                    let mut fj = FlowJson::from(&f);
                    if f.extras.reply.is_none() {
                        // Show the reply tuple anyway, as conntrack does.
                        fj.reply = Some(crate::console::proto::TupleJson::from_tuple(
                            &f.reply_tuple(),
                        ));
                    }
                    let _ = writeln!(s, "    {}", render::flow_line(&fj));
                    let names = status_names(f.status);
                    let _ = write!(s, "    status={:#x} ({})", f.status, names.join(","));
                    if a.timeout.is_none() {
                        s.push_str(" timeout=absent");
                    }
                    if a.mark.is_none() {
                        s.push_str(" mark=absent");
                    }
                    let nat = nat_words(a);
                    if !nat.is_empty() {
                        let _ = write!(s, " {}", nat.join(" "));
                    }
                    s.push('\n');
                    let names: Vec<String> = a.order.iter().map(|&i| ct::name(i)).collect();
                    let _ = write!(s, "    attrs: {}", names.join(" "));
                    if a.unknown > 0 {
                        let _ = write!(s, " (+{} unknown skipped)", a.unknown);
                    }
                    s.push('\n');
                }
                Err(e) => {
                    let _ = writeln!(s, "    error: flow: {e}");
                }
            },
            Body::Exp(e) => {
                for (i, p) in &e.attrs {
                    let _ = writeln!(s, "    {} {}", exp::name(*i), hex::encode(p));
                }
            }
        },
    }
    s
}

/// One-line summary of the counters.
pub fn stats_line(st: &DecodeStats) -> String {
    format!(
        "{} datagrams, {} messages, {} ok, {} bad version, {} malformed header, {} bad attribute, {} truncated, {} bad size, {} unknown attributes skipped",
        st.datagrams,
        st.messages,
        st.ok,
        st.bad_version,
        st.malformed_header,
        st.bad_attr,
        st.truncated,
        st.bad_size,
        st.unknown_attr
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const E7: &str = "# E7\n0000  11 00 00 4c 00 00 03 ea 00 0c 00 00 0a 00 05 03\n\
        0010  c6 33 64 35 00 08 00 05 00 00 01 9a 00 05 00 02\n\
        0020  11 00 00 00 00 08 00 03 14 e9 00 35 00 08 00 06\n\
        0030  00 00 00 78 00 08 00 07 00 00 00 00 00 08 00 0c\n\
        0040  cb 00 71 05 00 06 00 0e 48 ee 00 00\n";

    #[test]
    fn hexdump_input() {
        let cap = read_capture(E7.as_bytes(), None).unwrap();
        let mut st = DecodeStats::default();
        let recs = decode_all(&cap, &mut st);
        assert_eq!(recs.len(), 1);
        let j = record_json(&recs[0]);
        assert_eq!(j["type"], "CT_UPD");
        assert_eq!(j["orig"]["sport"], 5353);
        assert_eq!(j["reply"]["dport"], 61000);
        assert_eq!(j["reply"]["dst"], "203.0.113.5");
        let t = record_text(&recs[0]);
        assert!(t.contains("snat=203.0.113.5 spat=61000"), "{t}");
    }

    /// Ethernet, two VLAN tags, IPv6 with a hop-by-hop header, UDP
    /// 33493 -> 3780 carrying `data`.
    fn tagged_v6_udp(data: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x86, 0xdd]);
        let ulen = u16::try_from(8 + data.len()).unwrap();
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(ulen + 8).to_be_bytes());
        f.extend_from_slice(&[0, 64]); // next header: hop-by-hop
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[15] = 1;
        f.extend_from_slice(&a);
        a[15] = 2;
        f.extend_from_slice(&a);
        f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // HBH, PadN, then UDP
        f.extend_from_slice(&33493u16.to_be_bytes());
        f.extend_from_slice(&3780u16.to_be_bytes());
        f.extend_from_slice(&ulen.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn walks_vlan_tags_and_ipv6_extension_headers() {
        let f = tagged_v6_udp(b"abcdef");
        let (src, dst, data) = udp_payload(1, &f).unwrap();
        assert_eq!(src.to_string(), "[2001:db8::1]:33493");
        assert_eq!(dst.port(), 3780);
        assert_eq!(data, b"abcdef");
        // Cut by the snap length: what was captured is kept.
        let (_, _, data) = udp_payload(1, &f[..f.len() - 2]).unwrap();
        assert_eq!(data, b"abcd");
        // Not UDP, a later fragment, not IP: notes, not panics.
        let mut tcp = f.clone();
        tcp[22 + 40] = 6;
        assert!(udp_payload(1, &tcp).unwrap_err().contains("not UDP"));
        let mut frag = f.clone();
        frag[22 + 6] = 44; // fragment header, offset 1
        frag[22 + 40..22 + 44].copy_from_slice(&[17, 0, 0, 8]);
        assert!(udp_payload(1, &frag).unwrap_err().contains("fragment"));
        let mut arp = f[..22].to_vec();
        arp[20..22].copy_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert!(udp_payload(1, &arp).unwrap_err().contains("not IP"));
        for n in 0..f.len() {
            let _ = udp_payload(1, &f[..n]);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(read_capture(&[0xff, 0xfe, 0, 1, 2], None).is_err());
        assert!(read_capture(b"hello", None).is_err());
        assert!(read_capture(&[0xd4, 0xc3, 0xb2, 0xa1, 0], None).is_err());
        assert!(read_capture(b"", None).is_err());
    }
}
