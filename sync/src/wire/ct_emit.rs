//! The sender's hot path: a [`FlowState`] straight to CT attributes, without
//! building a [`CtAttrs`] first.
//!
//! [`emit_flow`] appends exactly the bytes `CtAttrs::from_flow(f, opt).emit()`
//! appends (same attributes, same order, same padding) and [`flow_attrs_len`]
//! says how many, by arithmetic. Both walk the flow through one function,
//! [`walk`], generic over where the attributes go, so length and bytes
//! cannot disagree; a property test checks both against the `CtAttrs` path.
//!
//! [`CtAttrs`]: super::CtAttrs

use ftfw_dataplane::flow::{has_ports, proto, status, FlowState};

use super::attr::{padded, ATTR_HDR_LEN};
use super::ct::{id, EncodeOptions, MarkPolicy};

/// Largest payload of an attribute [`walk`] emits from fixed-size fields
/// (IPV6: two 16-byte addresses).
const MAX_FIXED: usize = 32;

/// Where the attributes of a flow go.
trait Sink {
    fn attr(&mut self, aid: u16, payload: &[u8]);
}

/// Appends attributes to a buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl Sink for Bytes<'_> {
    #[inline]
    fn attr(&mut self, aid: u16, payload: &[u8]) {
        let len = ATTR_HDR_LEN + payload.len();
        // Every payload here is at most 32 bytes (fixed fields) or 16
        // (LABELS, HELPER_NAME): build the padded attribute on the stack and
        // append it with one copy.
        if payload.len() > MAX_FIXED {
            super::attr::emit(self.0, aid, payload);
            return;
        }
        let mut a = [0u8; ATTR_HDR_LEN + MAX_FIXED];
        // At most 36, fits u16.
        #[allow(clippy::cast_possible_truncation)]
        let l = len as u16;
        a[..2].copy_from_slice(&l.to_be_bytes());
        a[2..4].copy_from_slice(&aid.to_be_bytes());
        a[ATTR_HDR_LEN..len].copy_from_slice(payload);
        self.0.extend_from_slice(&a[..padded(len)]);
    }
}

/// Counts the bytes the attributes take.
struct Len(usize);

impl Sink for Len {
    #[inline]
    fn attr(&mut self, _aid: u16, payload: &[u8]) {
        self.0 += padded(ATTR_HDR_LEN + payload.len());
    }
}

fn pair<const N: usize, const M: usize>(a: &[u8], b: &[u8]) -> [u8; M] {
    let mut p = [0u8; M];
    p[..N].copy_from_slice(&a[..N]);
    p[N..].copy_from_slice(&b[..N]);
    p
}

fn ports(s: u16, d: u16) -> [u8; 4] {
    let (s, d) = (s.to_be_bytes(), d.to_be_bytes());
    [s[0], s[1], d[0], d[1]]
}

fn words<const N: usize, const M: usize>(w: &[u32; N]) -> [u8; M] {
    let mut p = [0u8; M];
    for (c, x) in p.chunks_exact_mut(4).zip(w) {
        c.copy_from_slice(&x.to_be_bytes());
    }
    p
}

/// The attributes of `f`, in conntrackd's order; mirrors
/// [`super::CtAttrs::from_flow`] line for line.
#[inline]
fn walk<S: Sink>(f: &FlowState, opt: &EncodeOptions, s: &mut S) {
    let o = &f.key.orig;
    if o.v6 {
        s.attr(id::IPV6, &pair::<16, 32>(&o.src, &o.dst));
    } else {
        s.attr(id::IPV4, &pair::<4, 8>(&o.src, &o.dst));
    }
    s.attr(id::STATUS, &f.status.to_be_bytes());
    s.attr(id::L4PROTO, &[o.proto]);
    let icmp = o.is_icmp();
    if !icmp && matches!(o.proto, proto::TCP | proto::UDP | proto::SCTP | proto::DCCP) {
        s.attr(id::PORT, &ports(o.src_port, o.dst_port));
    }
    match o.proto {
        _ if icmp => {
            s.attr(id::ICMP_TYPE, &[o.icmp_type()]);
            s.attr(id::ICMP_CODE, &[o.icmp_code()]);
            s.attr(id::ICMP_ID, &o.icmp_id().to_le_bytes());
        }
        proto::TCP => {
            s.attr(id::TCP_STATE, &[f.tcp_state as u8]);
            if opt.tcp_window_tracking {
                s.attr(id::TCP_WSCALE_ORIG, &[f.wscale[0]]);
                s.attr(id::TCP_WSCALE_REPL, &[f.wscale[1]]);
            }
        }
        proto::SCTP => {
            if let Some((st, vo, vr)) = f.extras.sctp {
                s.attr(id::SCTP_STATE, &[st]);
                s.attr(id::SCTP_VTAG_ORIG, &vo.to_be_bytes());
                s.attr(id::SCTP_VTAG_REPL, &vr.to_be_bytes());
            }
        }
        proto::DCCP => {
            if let Some((st, role)) = f.extras.dccp {
                s.attr(id::DCCP_STATE, &[st]);
                s.attr(id::DCCP_ROLE, &[role]);
            }
        }
        _ => {}
    }
    if !opt.commit_timeout {
        s.attr(id::TIMEOUT, &f.timeout_secs.to_be_bytes());
    }
    let send_mark = match opt.mark {
        MarkPolicy::NonZero => f.mark != 0,
        MarkPolicy::Always => true,
        MarkPolicy::Never => false,
    };
    if send_mark {
        s.attr(id::MARK, &f.mark.to_be_bytes());
    }
    if let Some(m) = &f.extras.master {
        if m.v6 {
            s.attr(id::MASTER_IPV6, &pair::<16, 32>(&m.src, &m.dst));
        } else {
            s.attr(id::MASTER_IPV4, &pair::<4, 8>(&m.src, &m.dst));
        }
        s.attr(id::MASTER_L4PROTO, &[m.proto]);
        if has_ports(m.proto) {
            s.attr(id::MASTER_PORT, &ports(m.src_port, m.dst_port));
        }
    }
    // Flows without NAT (the common case) need no reply tuple at all.
    let snat = f.status & status::SRC_NAT_DONE != 0;
    let dnat = f.status & status::DST_NAT_DONE != 0;
    if snat || dnat {
        let r = f.reply_tuple();
        if snat && r.dst != o.src {
            if o.v6 {
                s.attr(id::SNAT_IPV6, &r.dst);
            } else {
                s.attr(id::SNAT_IPV4, &r.dst[..4]);
            }
        }
        if dnat && r.src != o.dst {
            if o.v6 {
                s.attr(id::DNAT_IPV6, &r.src);
            } else {
                s.attr(id::DNAT_IPV4, &r.src[..4]);
            }
        }
        if has_ports(o.proto) && !icmp {
            if snat && r.dst_port != o.src_port {
                s.attr(id::SPAT_PORT, &r.dst_port.to_le_bytes());
            }
            if dnat && r.src_port != o.dst_port {
                s.attr(id::DPAT_PORT, &r.src_port.to_le_bytes());
            }
        }
    }
    if let Some(a) = &f.extras.seq_adj {
        let w = [
            a.orig[0], a.orig[1], a.orig[2], a.reply[0], a.reply[1], a.reply[2],
        ];
        s.attr(id::NAT_SEQ_ADJ, &words::<6, 24>(&w));
    }
    if let Some(h) = &f.extras.helper {
        // At most 11 bytes up to the first NUL, then the NUL.
        let mut b = [0u8; 12];
        let mut n = 0;
        for c in h.bytes().take_while(|&c| c != 0).take(11) {
            b[n] = c;
            n += 1;
        }
        s.attr(id::HELPER_NAME, &b[..=n]);
    }
    if let Some(l) = f.extras.labels.filter(|l| l.iter().any(|&w| w != 0)) {
        s.attr(id::LABELS, &words::<4, 16>(&l));
    }
    if let Some(p) = &f.extras.synproxy {
        s.attr(id::SYNPROXY, &words::<3, 12>(p));
    }
    if f.key.zone != 0 {
        s.attr(id::ZONE, &f.key.zone.to_be_bytes());
    }
}

/// Appends the CT attributes conntrackd would send for `f`: the bytes of
/// `CtAttrs::from_flow(f, opt).emit(out)`, without the intermediate form.
pub fn emit_flow(f: &FlowState, opt: &EncodeOptions, out: &mut Vec<u8>) {
    walk(f, opt, &mut Bytes(out));
}

/// How many bytes [`emit_flow`] appends for `f`.
pub fn flow_attrs_len(f: &FlowState, opt: &EncodeOptions) -> usize {
    let mut n = Len(0);
    walk(f, opt, &mut n);
    n.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::CtAttrs;
    use ftfw_dataplane::flow::{FlowKey, SeqAdj, TcpState, Tuple};

    fn check(f: &FlowState) {
        for opt in [
            EncodeOptions::default(),
            EncodeOptions {
                tcp_window_tracking: true,
                commit_timeout: true,
                mark: MarkPolicy::Always,
            },
            EncodeOptions {
                mark: MarkPolicy::Never,
                ..EncodeOptions::default()
            },
        ] {
            let mut want = Vec::new();
            CtAttrs::from_flow(f, &opt).emit(&mut want);
            let mut got = vec![0xaa];
            emit_flow(f, &opt, &mut got);
            assert_eq!(&got[1..], &want[..], "{f:?} {opt:?}");
            assert_eq!(flow_attrs_len(f, &opt), want.len());
        }
    }

    #[test]
    fn same_bytes_as_the_ctattrs_path_for_every_kind_of_flow() {
        let t = |s: &str, d: &str, p, sp, dp| {
            Tuple::new(s.parse().unwrap(), d.parse().unwrap(), p, sp, dp)
        };
        let base = FlowState {
            key: FlowKey {
                orig: t("10.0.0.1", "10.0.1.1", proto::TCP, 40000, 80),
                zone: 0,
            },
            tcp_state: TcpState::Established,
            status: status::SEEN_REPLY | status::ASSURED,
            timeout_secs: 300,
            mark: 7,
            wscale: [7, 9],
            counters: Default::default(),
            extras: Default::default(),
        };
        check(&base);
        let mut nat = base.clone();
        nat.status |= status::SRC_NAT_DONE | status::DST_NAT_DONE;
        nat.extras.reply = Some(t("10.9.9.9", "192.0.2.7", proto::TCP, 8080, 61000));
        nat.key.zone = 7;
        nat.extras.master = Some(t("10.0.0.1", "10.0.1.1", proto::TCP, 1, 21));
        nat.extras.seq_adj = Some(SeqAdj {
            orig: [1, 2, 3],
            reply: [4, 5, 6],
        });
        nat.extras.helper = Some("a-helper-name-too-long\0x".into());
        nat.extras.labels = Some([0, 1, 0, 0x8000_0000]);
        nat.extras.synproxy = Some([9, 8, 7]);
        check(&nat);
        nat.extras.helper = Some("ftp\0junk".into());
        check(&nat);
        let mut v6 = nat.clone();
        v6.key.orig = t("2001:db8::1", "2001:db8::2", proto::UDP, 5, 6);
        v6.extras.reply = Some(t("2001:db8::9", "2001:db8::8", proto::UDP, 7, 8));
        v6.extras.master = Some(t("2001:db8::1", "2001:db8::2", 47, 0, 0));
        check(&v6);
        for (p, src, dst) in [
            (proto::ICMP, "10.0.0.1", "10.0.0.2"),
            (proto::ICMPV6, "2001:db8::1", "2001:db8::2"),
            (proto::SCTP, "10.0.0.1", "10.0.0.2"),
            (proto::DCCP, "10.0.0.1", "10.0.0.2"),
            (proto::UDPLITE, "10.0.0.1", "10.0.0.2"),
            (47, "10.0.0.1", "10.0.0.2"),
        ] {
            let mut f = base.clone();
            f.key.orig = t(src, dst, p, 0x1234, 0x0800);
            f.tcp_state = TcpState::None;
            f.extras.sctp = Some((3, 0xdead, 0xbeef));
            f.extras.dccp = Some((2, 1));
            f.status |= status::SRC_NAT_DONE;
            check(&f);
        }
    }
}
