//! Conversion between [`CtAttrs`] and [`FlowState`]: what conntrackd's
//! sender emits for a flow (ftfw-wire.md 5.4) and the flow a receiver
//! builds from a message, with the errors of a message no flow can be built
//! from.

use ftfw_dataplane::flow::{
    has_ports, proto, status, FlowExtras, FlowKey, FlowState, SeqAdj, TcpState, Tuple,
};
use thiserror::Error;

use super::{a4, id, CtAttrs, MISSING_TIMEOUT};

/// What a [`FlowState`] cannot be built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum FlowError {
    /// Neither IPV4 nor IPV6.
    #[error("no IPV4 or IPV6 attribute")]
    NoAddress,
    /// Both IPV4 and IPV6.
    #[error("both IPV4 and IPV6 attributes")]
    BothFamilies,
    /// No L4PROTO.
    #[error("no L4PROTO attribute")]
    NoProto,
    /// A port protocol without PORT.
    #[error("protocol {proto} without PORT attribute")]
    NoPorts {
        /// The protocol.
        proto: u8,
    },
    /// ICMP without all of ICMP_TYPE, ICMP_CODE, ICMP_ID.
    #[error("ICMP without ICMP_TYPE/ICMP_CODE/ICMP_ID")]
    NoIcmp,
    /// A NAT or master address of the other family.
    #[error("attribute {id} has the other address family")]
    FamilyMismatch {
        /// The attribute id.
        id: u16,
    },
    /// TCP_STATE beyond SYN_SENT2.
    #[error("unknown TCP state {0}")]
    BadTcpState(u8),
}

/// When to send MARK (ftfw-wire.md 5.4 item 6). The kernel puts the mark in
/// an event when it is non-zero or changed, so conntrackd sends MARK for
/// real-traffic flows only when non-zero, and always (even 0) for flows made
/// or changed through ctnetlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MarkPolicy {
    /// Send MARK when the mark is non-zero (real-traffic events).
    #[default]
    NonZero,
    /// Always send MARK (ctnetlink-made flows, `conntrack -I`).
    Always,
    /// Never send MARK.
    Never,
}

/// Sender options that change the attribute set, as conntrackd's config
/// does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    /// `TCPWindowTracking on`: send TCP_WSCALE_ORIG/REPL.
    pub tcp_window_tracking: bool,
    /// `CommitTimeout` set: never send TIMEOUT.
    pub commit_timeout: bool,
    /// When to send MARK.
    pub mark: MarkPolicy,
}

fn addr4(a: &[u8; 16]) -> [u8; 4] {
    a4(a)
}
fn addr16(a: [u8; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&a);
    b
}

impl CtAttrs {
    /// What conntrackd's sender emits for `f`, in its order (5.4):
    /// IPV4/IPV6, STATUS, L4PROTO, the protocol part, TIMEOUT, MARK,
    /// MASTER_*, SNAT/DNAT, SPAT, DPAT, NAT_SEQ_ADJ, HELPER_NAME, LABELS,
    /// SYNPROXY, ZONE.
    ///
    /// Choices where the flow model and conntrackd differ: TCP_STATE is
    /// always sent for TCP (a `FlowState` always has one); SPAT/DPAT are
    /// sent only for port protocols; a helper name is cut to 11 bytes;
    /// LABELS goes as 4 words when any bit is set; UDP-Lite, GRE and other
    /// protocols carry no ports, as in conntrackd.
    pub fn from_flow(f: &FlowState, opt: &EncodeOptions) -> CtAttrs {
        let mut a = CtAttrs::default();
        let o = &f.key.orig;
        if o.v6 {
            a.ipv6 = Some((o.src, o.dst));
            a.push(id::IPV6);
        } else {
            a.ipv4 = Some((addr4(&o.src), addr4(&o.dst)));
            a.push(id::IPV4);
        }
        a.status = Some(f.status);
        a.push(id::STATUS);
        a.l4proto = Some(o.proto);
        a.push(id::L4PROTO);
        let port_proto =
            !o.is_icmp() && matches!(o.proto, proto::TCP | proto::UDP | proto::SCTP | proto::DCCP);
        if port_proto {
            a.port = Some((o.src_port, o.dst_port));
            a.push(id::PORT);
        }
        match o.proto {
            _ if o.is_icmp() => {
                a.icmp_type = Some(o.icmp_type());
                a.icmp_code = Some(o.icmp_code());
                a.icmp_id = Some(o.icmp_id());
                a.push(id::ICMP_TYPE);
                a.push(id::ICMP_CODE);
                a.push(id::ICMP_ID);
            }
            proto::TCP => {
                a.tcp_state = Some(f.tcp_state as u8);
                a.push(id::TCP_STATE);
                if opt.tcp_window_tracking {
                    a.wscale_orig = Some(f.wscale[0]);
                    a.wscale_repl = Some(f.wscale[1]);
                    a.push(id::TCP_WSCALE_ORIG);
                    a.push(id::TCP_WSCALE_REPL);
                }
            }
            proto::SCTP => {
                if let Some((st, vo, vr)) = f.extras.sctp {
                    a.sctp_state = Some(st);
                    a.sctp_vtag_orig = Some(vo);
                    a.sctp_vtag_repl = Some(vr);
                    a.push(id::SCTP_STATE);
                    a.push(id::SCTP_VTAG_ORIG);
                    a.push(id::SCTP_VTAG_REPL);
                }
            }
            proto::DCCP => {
                if let Some((st, role)) = f.extras.dccp {
                    a.dccp_state = Some(st);
                    a.dccp_role = Some(role);
                    a.push(id::DCCP_STATE);
                    a.push(id::DCCP_ROLE);
                }
            }
            _ => {}
        }
        if !opt.commit_timeout {
            a.timeout = Some(f.timeout_secs);
            a.push(id::TIMEOUT);
        }
        let send_mark = match opt.mark {
            MarkPolicy::NonZero => f.mark != 0,
            MarkPolicy::Always => true,
            MarkPolicy::Never => false,
        };
        if send_mark {
            a.mark = Some(f.mark);
            a.push(id::MARK);
        }
        if let Some(m) = &f.extras.master {
            if m.v6 {
                a.master_ipv6 = Some((m.src, m.dst));
                a.push(id::MASTER_IPV6);
            } else {
                a.master_ipv4 = Some((addr4(&m.src), addr4(&m.dst)));
                a.push(id::MASTER_IPV4);
            }
            a.master_l4proto = Some(m.proto);
            a.push(id::MASTER_L4PROTO);
            if has_ports(m.proto) {
                a.master_port = Some((m.src_port, m.dst_port));
                a.push(id::MASTER_PORT);
            }
        }
        let r = f.reply_tuple();
        let snat = f.status & status::SRC_NAT_DONE != 0;
        let dnat = f.status & status::DST_NAT_DONE != 0;
        if snat && r.dst != o.src {
            if o.v6 {
                a.snat_ipv6 = Some(r.dst);
                a.push(id::SNAT_IPV6);
            } else {
                a.snat_ipv4 = Some(addr4(&r.dst));
                a.push(id::SNAT_IPV4);
            }
        }
        if dnat && r.src != o.dst {
            if o.v6 {
                a.dnat_ipv6 = Some(r.src);
                a.push(id::DNAT_IPV6);
            } else {
                a.dnat_ipv4 = Some(addr4(&r.src));
                a.push(id::DNAT_IPV4);
            }
        }
        if has_ports(o.proto) && !o.is_icmp() {
            if snat && r.dst_port != o.src_port {
                a.spat_port = Some(r.dst_port);
                a.push(id::SPAT_PORT);
            }
            if dnat && r.src_port != o.dst_port {
                a.dpat_port = Some(r.src_port);
                a.push(id::DPAT_PORT);
            }
        }
        if let Some(s) = &f.extras.seq_adj {
            let w = [
                s.orig[0], s.orig[1], s.orig[2], s.reply[0], s.reply[1], s.reply[2],
            ];
            a.nat_seq_adj = Some(w);
            a.push(id::NAT_SEQ_ADJ);
        }
        if let Some(h) = &f.extras.helper {
            let mut b: Vec<u8> = h.bytes().take_while(|&c| c != 0).take(11).collect();
            b.push(0);
            a.helper_name = Some(b);
            a.push(id::HELPER_NAME);
        }
        if let Some(l) = f.extras.labels.filter(|l| l.iter().any(|&w| w != 0)) {
            a.labels = Some(l.to_vec());
            a.push(id::LABELS);
        }
        if let Some(s) = f.extras.synproxy {
            a.synproxy = Some(s);
            a.push(id::SYNPROXY);
        }
        if f.key.zone != 0 {
            a.zone = Some(f.key.zone);
            a.push(id::ZONE);
        }
        a
    }

    /// The original tuple (without the zone), from IPV4/IPV6, L4PROTO and
    /// PORT or the ICMP attributes.
    pub fn orig_tuple(&self) -> Result<Tuple, FlowError> {
        let (src, dst, v6) = match (self.ipv4, self.ipv6) {
            (Some((s, d)), None) => (addr16(s), addr16(d), false),
            (None, Some((s, d))) => (s, d, true),
            (None, None) => return Err(FlowError::NoAddress),
            (Some(_), Some(_)) => return Err(FlowError::BothFamilies),
        };
        let p = self.l4proto.ok_or(FlowError::NoProto)?;
        let mut t = Tuple {
            src,
            dst,
            src_port: 0,
            dst_port: 0,
            proto: p,
            v6,
        };
        if t.is_icmp() {
            match (self.icmp_type, self.icmp_code, self.icmp_id) {
                (Some(ty), Some(code), Some(i)) => {
                    t.src_port = i;
                    t.dst_port = u16::from(ty) << 8 | u16::from(code);
                }
                _ => return Err(FlowError::NoIcmp),
            }
        } else if let Some((s, d)) = self.port {
            (t.src_port, t.dst_port) = (s, d);
        } else if matches!(p, proto::TCP | proto::UDP | proto::SCTP | proto::DCCP) {
            return Err(FlowError::NoPorts { proto: p });
        }
        Ok(t)
    }

    /// The reply tuple of `orig` with SNAT, DNAT, SPAT and DPAT applied,
    /// when it differs from the plain inverse (`None`: no NAT). Most flows
    /// carry none of these attributes: then no tuple is built.
    fn nat_reply(&self, orig: &Tuple) -> Result<Option<Tuple>, FlowError> {
        if self.snat_ipv4.is_none()
            && self.snat_ipv6.is_none()
            && self.dnat_ipv4.is_none()
            && self.dnat_ipv6.is_none()
            && self.spat_port.is_none()
            && self.dpat_port.is_none()
        {
            return Ok(None);
        }
        let v6 = orig.v6;
        let inverse = orig.reply();
        let mut r = inverse;
        let fam = |aid: u16, is_v6: bool| {
            if is_v6 == v6 {
                Ok(())
            } else {
                Err(FlowError::FamilyMismatch { id: aid })
            }
        };
        if let Some(a) = self.snat_ipv4 {
            fam(id::SNAT_IPV4, false)?;
            r.dst = addr16(a);
        }
        if let Some(a) = self.snat_ipv6 {
            fam(id::SNAT_IPV6, true)?;
            r.dst = a;
        }
        if let Some(a) = self.dnat_ipv4 {
            fam(id::DNAT_IPV4, false)?;
            r.src = addr16(a);
        }
        if let Some(a) = self.dnat_ipv6 {
            fam(id::DNAT_IPV6, true)?;
            r.src = a;
        }
        if has_ports(orig.proto) && !orig.is_icmp() {
            if let Some(p) = self.spat_port {
                r.dst_port = p;
            }
            if let Some(p) = self.dpat_port {
                r.src_port = p;
            }
        }
        Ok((r != inverse).then_some(r))
    }

    /// The flow a receiver stores. The reply tuple is `orig.reply()` with
    /// SNAT (reply dst), DNAT (reply src), SPAT (reply dport) and DPAT
    /// (reply sport) applied, kept in `extras.reply` only when it differs.
    /// Missing STATUS, MARK, ZONE, window scales read as 0, a missing
    /// TIMEOUT as [`MISSING_TIMEOUT`] (conntrackd's commit does the same).
    /// Labels beyond the first 128 bits are dropped.
    pub fn to_flow(&self) -> Result<FlowState, FlowError> {
        let orig = self.orig_tuple()?;
        let reply = self.nat_reply(&orig)?;
        let tcp_state = match (orig.proto, self.tcp_state) {
            (proto::TCP, Some(s)) => TcpState::from_u8(s).ok_or(FlowError::BadTcpState(s))?,
            _ => TcpState::None,
        };
        let master = match (self.master_ipv4, self.master_ipv6) {
            (Some((s, d)), _) => Some((addr16(s), addr16(d), false)),
            (None, Some((s, d))) => Some((s, d, true)),
            (None, None) => None,
        }
        .map(|(src, dst, mv6)| {
            let (sp, dp) = self.master_port.unwrap_or((0, 0));
            Tuple {
                src,
                dst,
                src_port: sp,
                dst_port: dp,
                proto: self.master_l4proto.unwrap_or(0),
                v6: mv6,
            }
        });
        let helper = self.helper_name.as_ref().map(|b| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(b.get(..end).unwrap_or(&[])).into_owned()
        });
        let labels = self.labels.as_ref().map(|w| {
            let mut l = [0u32; 4];
            for (d, s) in l.iter_mut().zip(w) {
                *d = *s;
            }
            l
        });
        let extras = FlowExtras {
            reply,
            master,
            seq_adj: self.nat_seq_adj.map(|w| SeqAdj {
                orig: [w[0], w[1], w[2]],
                reply: [w[3], w[4], w[5]],
            }),
            helper,
            labels,
            synproxy: self.synproxy,
            sctp: self.sctp_state.map(|s| {
                (
                    s,
                    self.sctp_vtag_orig.unwrap_or(0),
                    self.sctp_vtag_repl.unwrap_or(0),
                )
            }),
            dccp: self.dccp_state.map(|s| (s, self.dccp_role.unwrap_or(0))),
        };
        Ok(FlowState {
            key: FlowKey {
                orig,
                zone: self.zone.unwrap_or(0),
            },
            tcp_state,
            status: self.status.unwrap_or(0),
            timeout_secs: self.timeout.unwrap_or(MISSING_TIMEOUT),
            mark: self.mark.unwrap_or(0),
            wscale: [self.wscale_orig.unwrap_or(0), self.wscale_repl.unwrap_or(0)],
            counters: Default::default(),
            extras: extras.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::exact_len;
    use super::*;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn sender_order_with_everything() {
        let orig = Tuple::new(ip("10.0.0.1"), ip("10.0.1.1"), proto::TCP, 1000, 21);
        let mut reply = orig.reply();
        reply.dst = Tuple::new(ip("203.0.113.5"), ip("0.0.0.0"), 6, 0, 0).src;
        reply.dst_port = 61000;
        reply.src = Tuple::new(ip("10.0.9.9"), ip("0.0.0.0"), 6, 0, 0).src;
        reply.src_port = 2121;
        let f = FlowState {
            key: FlowKey { orig, zone: 3 },
            tcp_state: TcpState::Established,
            status: status::SRC_NAT_DONE | status::DST_NAT_DONE | 0x0e,
            timeout_secs: 10,
            mark: 0,
            wscale: [7, 8],
            counters: Default::default(),
            extras: FlowExtras {
                reply: Some(reply),
                master: Some(orig),
                seq_adj: Some(SeqAdj {
                    orig: [1, 2, 3],
                    reply: [4, 5, 6],
                }),
                helper: Some("a-very-long-helper".into()),
                labels: Some([0, 0, 0, 1]),
                synproxy: Some([0; 3]),
                sctp: None,
                dccp: None,
            }
            .into(),
        };
        let opt = EncodeOptions {
            tcp_window_tracking: true,
            commit_timeout: false,
            mark: MarkPolicy::Always,
        };
        let a = CtAttrs::from_flow(&f, &opt);
        use id::*;
        assert_eq!(
            a.order,
            [
                IPV4,
                STATUS,
                L4PROTO,
                PORT,
                TCP_STATE,
                TCP_WSCALE_ORIG,
                TCP_WSCALE_REPL,
                TIMEOUT,
                MARK,
                MASTER_IPV4,
                MASTER_L4PROTO,
                MASTER_PORT,
                SNAT_IPV4,
                DNAT_IPV4,
                SPAT_PORT,
                DPAT_PORT,
                NAT_SEQ_ADJ,
                HELPER_NAME,
                LABELS,
                SYNPROXY,
                ZONE
            ]
        );
        assert_eq!(a.helper_name.as_deref(), Some(&b"a-very-long\0"[..]));
        let mut out = Vec::new();
        a.emit(&mut out);
        let mut msg = vec![0x10, 0, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&out);
        let back = CtAttrs::parse(&msg).unwrap();
        assert_eq!(back, a);
        let g = back.to_flow().unwrap();
        assert_eq!(g.extras.reply, Some(reply));
        assert_eq!(g.extras.helper.as_deref(), Some("a-very-long"));
        // CommitTimeout: no TIMEOUT; default mark policy: no zero MARK.
        let b = CtAttrs::from_flow(
            &f,
            &EncodeOptions {
                commit_timeout: true,
                ..EncodeOptions::default()
            },
        );
        assert!(!b.order.contains(&TIMEOUT) && !b.order.contains(&MARK));
        assert!(!b.order.contains(&TCP_WSCALE_ORIG));
        for i in 0..MAX {
            assert!(exact_len(i).is_some() || i == HELPER_NAME || i == LABELS);
        }
    }

    #[test]
    fn the_reply_tuple_is_kept_only_when_nat_changes_it() {
        let mut a = CtAttrs {
            ipv4: Some(([192, 0, 2, 1], [198, 51, 100, 7])),
            l4proto: Some(proto::TCP),
            port: Some((40000, 443)),
            tcp_state: Some(3),
            ..CtAttrs::default()
        };
        // No NAT attribute: no reply tuple.
        assert_eq!(a.to_flow().map(|f| f.extras.reply), Ok(None));
        // A NAT attribute that names the inverse's own value: still none.
        a.spat_port = Some(40000);
        a.snat_ipv4 = Some([192, 0, 2, 1]);
        assert_eq!(a.to_flow().map(|f| f.extras.reply), Ok(None));
        // DNAT and DPAT: the reply comes from the translated server.
        a.dnat_ipv4 = Some([203, 0, 113, 9]);
        a.dpat_port = Some(8443);
        let mut want = a.orig_tuple().unwrap().reply();
        want.src = [203, 0, 113, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        want.src_port = 8443;
        assert_eq!(a.to_flow().map(|f| f.extras.reply), Ok(Some(want)));
        // ICMP has no ports to translate: the port attributes alone are
        // ignored.
        let icmp = CtAttrs {
            ipv4: a.ipv4,
            l4proto: Some(proto::ICMP),
            icmp_type: Some(8),
            icmp_code: Some(0),
            icmp_id: Some(7),
            spat_port: Some(1),
            dpat_port: Some(2),
            ..CtAttrs::default()
        };
        assert_eq!(icmp.to_flow().map(|f| f.extras.reply), Ok(None));
    }

    #[test]
    fn to_flow_errors() {
        let mut a = CtAttrs::default();
        assert_eq!(a.to_flow(), Err(FlowError::NoAddress));
        a.ipv4 = Some(([1, 1, 1, 1], [2, 2, 2, 2]));
        assert_eq!(a.to_flow(), Err(FlowError::NoProto));
        a.l4proto = Some(proto::TCP);
        assert_eq!(a.to_flow(), Err(FlowError::NoPorts { proto: 6 }));
        a.port = Some((1, 2));
        a.tcp_state = Some(42);
        assert_eq!(a.to_flow(), Err(FlowError::BadTcpState(42)));
        a.tcp_state = Some(3);
        a.snat_ipv6 = Some([0; 16]);
        assert_eq!(
            a.to_flow(),
            Err(FlowError::FamilyMismatch { id: id::SNAT_IPV6 })
        );
        a.snat_ipv6 = None;
        a.l4proto = Some(proto::ICMP);
        assert_eq!(a.to_flow(), Err(FlowError::NoIcmp));
        // GRE: no ports needed.
        a.l4proto = Some(proto::GRE);
        a.port = None;
        assert_eq!(a.to_flow().map(|f| f.key.orig.src_port), Ok(0));
    }
}
