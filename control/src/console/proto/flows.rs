//! Flow payloads: listings and filters, the JSON form of a flow and its
//! tuples, and the protocol and status names they use.

use std::net::IpAddr;

use ftfw_dataplane::flow::{self, proto, status, Counters, FlowState, TcpState, Tuple};
use serde::{Deserialize, Serialize};

/// A flow in JSON that does not make a valid flow: the field at fault and
/// what is wrong with it (`original: tcp needs sport and dport`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FlowError {
    /// The field (`proto`, `original`, `reply`, `state`, ...).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FlowError {
    fn new(field: &str, reason: impl Into<String>) -> FlowError {
        FlowError {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// Answer to [`Request::FlowsList`](super::Request::FlowsList).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowsListing {
    /// The flows, at most the request's limit.
    pub flows: Vec<FlowJson>,
    /// How many flows matched in all.
    pub total: u64,
}

/// A `conntrack -L` style filter; absent fields match everything. Address,
/// port and protocol fields match the original tuple, as in conntrack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFilter {
    /// IP protocol (`-p`): a name (`tcp`) or a number in JSON.
    #[serde(default, with = "opt_proto", skip_serializing_if = "Option::is_none")]
    pub proto: Option<u8>,
    /// Original source address (`-s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    /// Original destination address (`-d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpAddr>,
    /// Original source port (`--sport`); never matches portless protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Original destination port (`--dport`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// TCP state (`--state`), as `conntrack` names it; implies TCP.
    #[serde(
        default,
        with = "opt_tcp_state",
        skip_serializing_if = "Option::is_none"
    )]
    pub state: Option<TcpState>,
    /// Conntrack zone (`-w`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<u16>,
    /// Connection mark (`-m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
}

impl FlowFilter {
    /// Whether `f` passes the filter.
    pub fn matches(&self, f: &FlowState) -> bool {
        let t = &f.key.orig;
        let ports = flow::has_ports(t.proto);
        self.proto.is_none_or(|p| t.proto == p)
            && self.src.is_none_or(|a| t.src_ip() == a)
            && self.dst.is_none_or(|a| t.dst_ip() == a)
            && self.sport.is_none_or(|p| ports && t.src_port == p)
            && self.dport.is_none_or(|p| ports && t.dst_port == p)
            && self
                .state
                .is_none_or(|s| t.proto == proto::TCP && f.tcp_state == s)
            && self.zone.is_none_or(|z| f.key.zone == z)
            && self.mark.is_none_or(|m| f.mark == m)
    }

    /// Whether the filter matches everything.
    pub fn is_empty(&self) -> bool {
        *self == FlowFilter::default()
    }
}

/// A tuple in JSON: ports for port protocols, type/code/id for ICMP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TupleJson {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (port protocols only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Destination port (port protocols only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// ICMP type (ICMP only).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code (ICMP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
    /// ICMP identifier (ICMP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
}

impl TupleJson {
    /// The JSON form of `t`.
    pub fn from_tuple(t: &Tuple) -> TupleJson {
        let mut j = TupleJson {
            src: t.src_ip(),
            dst: t.dst_ip(),
            sport: None,
            dport: None,
            icmp_type: None,
            code: None,
            id: None,
        };
        if t.is_icmp() {
            j.icmp_type = Some(t.icmp_type());
            j.code = Some(t.icmp_code());
            j.id = Some(t.icmp_id());
        } else if flow::has_ports(t.proto) {
            j.sport = Some(t.src_port);
            j.dport = Some(t.dst_port);
        }
        j
    }

    /// Validates against `proto` and builds the tuple. `what` names the
    /// tuple in messages (`original`, `reply`).
    pub fn to_tuple(&self, proto: u8, what: &str) -> Result<Tuple, FlowError> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err(FlowError::new(
                what,
                format!(
                    "src {} and dst {} are of different families",
                    self.src, self.dst
                ),
            ));
        }
        let v6 = self.src.is_ipv6();
        let icmp = (proto == proto::ICMP && !v6) || (proto == proto::ICMPV6 && v6);
        if proto == proto::ICMP && v6 {
            return Err(FlowError::new(what, "icmp with IPv6 addresses; use icmpv6"));
        }
        if proto == proto::ICMPV6 && !v6 {
            return Err(FlowError::new(what, "icmpv6 with IPv4 addresses; use icmp"));
        }
        let has_icmp = self.icmp_type.is_some() || self.code.is_some() || self.id.is_some();
        let has_ports = self.sport.is_some() || self.dport.is_some();
        let (sp, dp) = if icmp {
            if has_ports {
                return Err(FlowError::new(
                    what,
                    format!(
                        "sport/dport do not apply to {}; use type, code and id",
                        proto_name(proto)
                    ),
                ));
            }
            let ty = self.icmp_type.ok_or_else(|| {
                FlowError::new(what, format!("{} needs a type", proto_name(proto)))
            })?;
            (
                self.id.unwrap_or(0),
                u16::from(ty) << 8 | u16::from(self.code.unwrap_or(0)),
            )
        } else if flow::has_ports(proto) {
            if has_icmp {
                return Err(FlowError::new(what, "type/code/id apply to icmp only"));
            }
            match (self.sport, self.dport) {
                (Some(s), Some(d)) => (s, d),
                _ => {
                    return Err(FlowError::new(
                        what,
                        format!("{} needs sport and dport", proto_name(proto)),
                    ))
                }
            }
        } else {
            if has_ports || has_icmp {
                return Err(FlowError::new(
                    what,
                    format!("protocol {} has no ports or ICMP fields", proto_name(proto)),
                ));
            }
            (0, 0)
        };
        Ok(Tuple::new(self.src, self.dst, proto, sp, dp))
    }
}

/// Counters of both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersJson {
    /// Original direction.
    pub original: Counters,
    /// Reply direction.
    pub reply: Counters,
}

/// A flow in JSON: what `flows list` returns and `flows add` takes.
///
/// On input (`flows add`) `proto`, `original` and `timeout` are required;
/// `family` and `proto_num` are checked when present; `reply` defaults to
/// the inverse of `original` (a different reply means NAT); `state` is
/// required for TCP and refused otherwise; the status is `status` OR'd with
/// the bits named in `status_names`, and CONFIRMED is always set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowJson {
    /// Protocol name (`tcp`, `udp`, `icmp`, ...) or decimal number.
    pub proto: String,
    /// Protocol number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto_num: Option<u8>,
    /// `ipv4` or `ipv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Original-direction tuple.
    pub original: TupleJson,
    /// Reply-direction tuple.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<TupleJson>,
    /// Conntrack zone.
    #[serde(default)]
    pub zone: u16,
    /// TCP state name (`ESTABLISHED`), TCP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Status bits as a number.
    #[serde(default)]
    pub status: u32,
    /// Status bits by name (`SEEN_REPLY`, `ASSURED`, ...).
    #[serde(default)]
    pub status_names: Vec<String>,
    /// Seconds until expiry.
    #[serde(default)]
    pub timeout: u32,
    /// Connection mark.
    #[serde(default)]
    pub mark: u32,
    /// Packet and byte counters.
    #[serde(default)]
    pub counters: CountersJson,
    /// Seconds since the flow was first received (external cache only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_secs: Option<u64>,
    /// TCP window scale factors (original, reply) as negotiated by the
    /// handshake (replicated as attributes 25 and 26); TCP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_scale: Option<[u8; 2]>,
    /// SCTP verification tags (original, reply); SCTP only, with `state`
    /// naming the SCTP state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtags: Option<[u32; 2]>,
    /// Connection labels by bit number (0 to 127), as `conntrack -l`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<u8>,
    /// Conntrack helper (`ftp`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper: Option<String>,
    /// The master flow's original tuple, for a related (expected) flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<MasterJson>,
}

/// A related flow's master: its protocol and original tuple.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterJson {
    /// Protocol name or number.
    pub proto: String,
    /// Original-direction tuple.
    pub original: TupleJson,
}

/// SCTP conntrack states by their kernel numbers (`enum sctp_conntrack`).
const SCTP_STATES: [&str; 10] = [
    "NONE",
    "CLOSED",
    "COOKIE_WAIT",
    "COOKIE_ECHOED",
    "ESTABLISHED",
    "SHUTDOWN_SENT",
    "SHUTDOWN_RECD",
    "SHUTDOWN_ACK_SENT",
    "HEARTBEAT_SENT",
    "HEARTBEAT_ACKED",
];

/// The name of SCTP state `n` (its number if unknown).
fn sctp_state_name(n: u8) -> String {
    SCTP_STATES
        .get(usize::from(n))
        .map_or_else(|| n.to_string(), |s| (*s).to_string())
}

fn sctp_state_from_name(s: &str) -> Option<u8> {
    SCTP_STATES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .and_then(|i| u8::try_from(i).ok())
}

fn labels_of(words: Option<[u32; 4]>) -> Vec<u8> {
    let Some(w) = words else { return Vec::new() };
    (0u8..128)
        .filter(|b| w[usize::from(b / 32)] & (1 << (b % 32)) != 0)
        .collect()
}

impl From<&FlowState> for FlowJson {
    fn from(f: &FlowState) -> FlowJson {
        let t = &f.key.orig;
        FlowJson {
            proto: proto_name(t.proto),
            proto_num: Some(t.proto),
            family: Some(if t.v6 { "ipv6" } else { "ipv4" }.into()),
            original: TupleJson::from_tuple(t),
            reply: Some(TupleJson::from_tuple(&f.reply_tuple())),
            zone: f.key.zone,
            state: match (t.proto, f.extras.sctp) {
                (proto::TCP, _) => Some(f.tcp_state.name().to_string()),
                (proto::SCTP, Some((st, _, _))) => Some(sctp_state_name(st)),
                _ => None,
            },
            status: f.status,
            status_names: status_names(f.status),
            timeout: f.timeout_secs,
            mark: f.mark,
            counters: CountersJson {
                original: f.counters[0],
                reply: f.counters[1],
            },
            active_secs: None,
            window_scale: (t.proto == proto::TCP).then_some(f.wscale),
            vtags: f.extras.sctp.map(|(_, o, r)| [o, r]),
            labels: labels_of(f.extras.labels),
            helper: f.extras.helper.clone(),
            master: f.extras.master.as_ref().map(|m| MasterJson {
                proto: proto_name(m.proto),
                original: TupleJson::from_tuple(m),
            }),
        }
    }
}

impl TryFrom<FlowJson> for FlowState {
    type Error = FlowError;

    fn try_from(j: FlowJson) -> Result<FlowState, FlowError> {
        let p = proto_from_name(&j.proto)
            .ok_or_else(|| FlowError::new("proto", format!("unknown protocol {:?}", j.proto)))?;
        if let Some(n) = j.proto_num {
            if n != p {
                return Err(FlowError::new(
                    "proto_num",
                    format!("{n} does not match proto {:?}", j.proto),
                ));
            }
        }
        let orig = j.original.to_tuple(p, "original")?;
        if let Some(fam) = &j.family {
            let want = if orig.v6 { "ipv6" } else { "ipv4" };
            if fam != want {
                return Err(FlowError::new(
                    "family",
                    format!("{fam:?} does not match the {want} addresses"),
                ));
            }
        }
        let mut extras = flow::FlowExtras::default();
        if let Some(r) = &j.reply {
            let reply = r.to_tuple(p, "reply")?;
            if reply.v6 != orig.v6 {
                return Err(FlowError::new(
                    "reply",
                    "address family differs from the original",
                ));
            }
            if reply != orig.reply() {
                extras.reply = Some(reply);
            }
        }
        let sctp_state = match (p, &j.state) {
            (proto::SCTP, Some(s)) => Some(sctp_state_from_name(s).ok_or_else(|| {
                FlowError::new(
                    "state",
                    format!("unknown SCTP state {s:?} (e.g. ESTABLISHED)"),
                )
            })?),
            _ => None,
        };
        match (p, sctp_state, j.vtags) {
            (proto::SCTP, Some(st), v) => {
                let [o, r] = v.unwrap_or([0, 0]);
                extras.sctp = Some((st, o, r));
            }
            (proto::SCTP, None, Some(_)) => {
                return Err(FlowError::new("vtags", "need an SCTP `state`"))
            }
            (_, _, Some(_)) => return Err(FlowError::new("vtags", "apply to sctp only")),
            _ => {}
        }
        if !j.labels.is_empty() {
            let mut w = [0u32; 4];
            for &b in &j.labels {
                if b >= 128 {
                    return Err(FlowError::new(
                        "labels",
                        format!("label {b}: labels are bits 0 to 127"),
                    ));
                }
                w[usize::from(b / 32)] |= 1 << (b % 32);
            }
            extras.labels = Some(w);
        }
        if let Some(h) = &j.helper {
            // The wire carries at most 11 bytes of a helper name.
            if h.is_empty() || h.len() > 11 || !h.bytes().all(|c| c.is_ascii_graphic()) {
                return Err(FlowError::new(
                    "helper",
                    format!("{h:?} is not a helper name (1 to 11 printable characters)"),
                ));
            }
            extras.helper = Some(h.clone());
        }
        if let Some(m) = &j.master {
            let mp = proto_from_name(&m.proto).ok_or_else(|| {
                FlowError::new("master", format!("unknown protocol {:?}", m.proto))
            })?;
            extras.master = Some(m.original.to_tuple(mp, "master")?);
        }
        let tcp_state = match (p, &j.state) {
            (proto::TCP, Some(s)) => TcpState::from_name(s).ok_or_else(|| {
                FlowError::new(
                    "state",
                    format!("unknown TCP state {s:?} (e.g. ESTABLISHED)"),
                )
            })?,
            (proto::TCP, None) => {
                return Err(FlowError::new(
                    "state",
                    "required for tcp (e.g. ESTABLISHED)",
                ))
            }
            (proto::SCTP, Some(_)) => TcpState::None,
            (_, Some(s)) => {
                return Err(FlowError::new(
                    "state",
                    format!("{s:?} applies to tcp and sctp only"),
                ))
            }
            (_, None) => TcpState::None,
        };
        let mut bits = j.status;
        for n in &j.status_names {
            bits |= status_bit(n).ok_or_else(|| {
                FlowError::new("status_names", format!("unknown status bit {n:?}"))
            })?;
        }
        if bits & !0xffff != 0 {
            return Err(FlowError::new(
                "status",
                format!("{bits:#x} has undefined bits above 0xffff"),
            ));
        }
        if j.timeout == 0 {
            return Err(FlowError::new("timeout", "must be at least 1 second"));
        }
        let wscale = match j.window_scale {
            Some(_) if p != proto::TCP => {
                return Err(FlowError::new("window_scale", "applies to tcp only"))
            }
            // RFC 7323: at most 14.
            Some(w) if w.iter().any(|&s| s > 14) => {
                return Err(FlowError::new(
                    "window_scale",
                    format!("{w:?}: a window scale is 0 to 14"),
                ))
            }
            Some(w) => w,
            None => [0, 0],
        };
        Ok(FlowState {
            key: flow::FlowKey { orig, zone: j.zone },
            tcp_state,
            status: bits | status::CONFIRMED,
            timeout_secs: j.timeout,
            mark: j.mark,
            wscale,
            counters: [j.counters.original, j.counters.reply],
            extras: extras.into(),
        })
    }
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

const PROTO_NAMES: [(u8, &str); 8] = [
    (proto::ICMP, "icmp"),
    (proto::TCP, "tcp"),
    (proto::UDP, "udp"),
    (proto::DCCP, "dccp"),
    (proto::GRE, "gre"),
    (proto::ICMPV6, "icmpv6"),
    (proto::SCTP, "sctp"),
    (proto::UDPLITE, "udplite"),
];

/// The name of IP protocol `p` as conntrack prints it, or its number.
pub fn proto_name(p: u8) -> String {
    PROTO_NAMES
        .iter()
        .find(|(n, _)| *n == p)
        .map_or_else(|| p.to_string(), |(_, s)| (*s).to_string())
}

/// Parses a protocol name (case-insensitive; `ipv6-icmp` too) or number.
pub fn proto_from_name(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    if s.eq_ignore_ascii_case("ipv6-icmp") {
        return Some(proto::ICMPV6);
    }
    PROTO_NAMES
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(s))
        .map(|(p, _)| *p)
}

const STATUS_NAMES: [(u32, &str); 16] = [
    (status::EXPECTED, "EXPECTED"),
    (status::SEEN_REPLY, "SEEN_REPLY"),
    (status::ASSURED, "ASSURED"),
    (status::CONFIRMED, "CONFIRMED"),
    (status::SRC_NAT, "SRC_NAT"),
    (status::DST_NAT, "DST_NAT"),
    (status::SEQ_ADJUST, "SEQ_ADJUST"),
    (status::SRC_NAT_DONE, "SRC_NAT_DONE"),
    (status::DST_NAT_DONE, "DST_NAT_DONE"),
    (status::DYING, "DYING"),
    (status::FIXED_TIMEOUT, "FIXED_TIMEOUT"),
    (status::TEMPLATE, "TEMPLATE"),
    (status::UNTRACKED, "UNTRACKED"),
    (status::HELPER, "HELPER"),
    (status::OFFLOAD, "OFFLOAD"),
    (status::HW_OFFLOAD, "HW_OFFLOAD"),
];

/// Names of the bits set in `bits`, low bit first.
pub fn status_names(bits: u32) -> Vec<String> {
    STATUS_NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| (*n).to_string())
        .collect()
}

/// The bit named `name` (case-insensitive).
pub fn status_bit(name: &str) -> Option<u32> {
    STATUS_NAMES
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(b, _)| *b)
}

mod opt_proto {
    use super::{proto_from_name, proto_name};
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NameOrNum {
        Num(u8),
        Name(String),
    }

    pub(super) fn serialize<S: Serializer>(v: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(p) => s.serialize_str(&proto_name(*p)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        match Option::<NameOrNum>::deserialize(d)? {
            None => Ok(None),
            Some(NameOrNum::Num(n)) => Ok(Some(n)),
            Some(NameOrNum::Name(s)) => proto_from_name(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown protocol {s:?}"))),
        }
    }
}

mod opt_tcp_state {
    use ftfw_dataplane::flow::TcpState;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<TcpState>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(st) => s.serialize_str(st.name()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<TcpState>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => TcpState::from_name(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown TCP state {s:?}"))),
        }
    }
}
