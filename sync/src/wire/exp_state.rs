//! A worker's [`Expectation`] in conntrackd's expectation attributes
//! (ftfw-wire.md 5.5) and back, for replicating confirmed expectations
//! (EXP_NEW / EXP_UPD / EXP_DEL). The send order is the spec's; the mask
//! says "any source port" with a zero sport mask, as Linux's FTP and TFTP
//! helpers do. An FTP expectation encodes byte for byte as conntrackd
//! 1.4.7 sends the kernel's (vector C15-exp-new).
//!
//! The translation an expectation of a translated master follows
//! ([`ExpectNat`], Linux's `nf_nat_follow_master`) travels in the NAT
//! attributes as the kernel's ctnetlink puts it: NAT_DIR is the
//! direction the data connection's reply tuple is taken from (REPLY, 1,
//! when the master's originator announced), NAT_PORT's source port the
//! port announced before translation, FN `nat-follow-master` (so a
//! conntrackd peer's kernel follows the master too). NAT_IPV4 carries the
//! announcer's own address as source, which the kernel keeps as
//! `saved_addr` and its FTP follow-master does not use, and, where the
//! kernel leaves zeros, the other end's address as destination. From the
//! kernel's zeros ftfw rebuilds the translation of an announce of the
//! master's originator (active FTP through SNAT) from the master tuple;
//! one from the other side (passive FTP to a DNATed server) needs the
//! master's reply tuple, which the expectation does not carry: it is then
//! held untranslated (related, translated as the NAT rules say).

use ftfw_dataplane::flow::{proto, FlowKey, Tuple};
use ftfw_dataplane::helper::{ExpectNat, Expectation, Helper};

use super::exp::{id, ExpAttrs};

/// Why expectation attributes do not make an expectation ftfw can hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpError {
    /// A required attribute is missing.
    #[error("expectation without {0}")]
    Missing(&'static str),
    /// The master and expected tuples are of different families.
    #[error("master and expected tuple of different families")]
    Family,
    /// A helper ftfw does not have.
    #[error("unknown helper \"{0}\"")]
    Helper(String),
    /// A source-port mask other than exact or any.
    #[error("unsupported source port mask {0:#06x}")]
    Mask(u16),
}

fn has_ports(p: u8) -> bool {
    matches!(p, proto::TCP | proto::UDP | proto::SCTP | proto::DCCP)
}

fn addrs(t: &Tuple) -> Vec<u8> {
    let n = if t.v6 { 16 } else { 4 };
    let mut v = t.src[..n].to_vec();
    v.extend_from_slice(&t.dst[..n]);
    v
}

fn ports(sport: u16, dport: u16) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v
}

/// The attributes of `e` with `timeout` seconds left, in the spec's order.
pub fn exp_attrs(e: &Expectation, timeout: u32) -> ExpAttrs {
    let mut a = ExpAttrs::default();
    let m = &e.master.orig;
    let t = &e.tuple;
    let (a_m, a_e, a_k) = if m.v6 {
        (id::MASTER_IPV6, id::EXPECT_IPV6, id::MASK_IPV6)
    } else {
        (id::MASTER_IPV4, id::EXPECT_IPV4, id::MASK_IPV4)
    };
    let ported = has_ports(m.proto);
    a.set(a_m, addrs(m));
    a.set(id::MASTER_L4PROTO, vec![m.proto]);
    if ported {
        a.set(id::MASTER_PORT, ports(m.src_port, m.dst_port));
    }
    a.set(a_e, addrs(t));
    a.set(id::EXPECT_L4PROTO, vec![t.proto]);
    if ported {
        a.set(id::EXPECT_PORT, ports(t.src_port, t.dst_port));
    }
    let n = if t.v6 { 32 } else { 8 };
    a.set(a_k, vec![0xff; n]);
    a.set(id::MASK_L4PROTO, vec![t.proto]);
    if ported {
        let smask = if t.src_port == 0 { 0 } else { 0xffff };
        a.set(id::MASK_PORT, ports(smask, 0xffff));
    }
    a.set(id::TIMEOUT, timeout.to_be_bytes().to_vec());
    a.set(id::FLAGS, 0u32.to_be_bytes().to_vec());
    // conntrackd sends the kernel's class (0 for FTP and TFTP) too.
    a.set(id::CLASS, 0u32.to_be_bytes().to_vec());
    if let Some(n) = e.nat.filter(|_| !m.v6) {
        let mut v = n.reply_src[..4].to_vec();
        v.extend_from_slice(&n.reply_dst[..4]);
        a.set(id::NAT_IPV4, v);
        a.set(id::NAT_L4PROTO, vec![m.proto]);
        a.set(id::NAT_PORT, ports(n.reply_src_port, 0));
        let dir = if n.reply_src == m.src {
            DIR_REPLY
        } else {
            DIR_ORIGINAL
        };
        a.set(id::NAT_DIR, dir.to_be_bytes().to_vec());
    }
    let mut name = e.helper.name().as_bytes().to_vec();
    name.push(0);
    a.set(id::HELPER_NAME, name);
    if e.nat.is_some() && !m.v6 {
        a.set(id::FN, FOLLOW_MASTER.to_vec());
    }
    a
}

/// ctnetlink's direction values (NAT_DIR).
const DIR_ORIGINAL: u32 = 0;
const DIR_REPLY: u32 = 1;
/// The kernel's name of the follow-master function (FN), NUL ended.
const FOLLOW_MASTER: &[u8] = b"nat-follow-master\0";

/// The translation the NAT attributes of `a` describe for an expectation
/// of `master` (see the module docs); `None` without them, for IPv6, or
/// when the kernel's zeros cannot be rebuilt.
fn nat_of(a: &ExpAttrs, master: &Tuple) -> Option<ExpectNat> {
    let port = a.get(id::NAT_PORT).filter(|b| b.len() >= 2)?;
    if master.v6 {
        return None;
    }
    let port = u16::from_be_bytes([port[0], port[1]]);
    let dir = a.u32_attr(id::NAT_DIR).unwrap_or(DIR_ORIGINAL);
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if let Some(v) = a.get(id::NAT_IPV4).filter(|v| v.len() >= 8) {
        src[..4].copy_from_slice(&v[..4]);
        dst[..4].copy_from_slice(&v[4..8]);
    }
    let unset = |x: &[u8; 16]| x[..4] == [0; 4];
    if unset(&src) || unset(&dst) {
        if dir != DIR_REPLY {
            return None;
        }
        if unset(&src) {
            src = master.src;
        }
        if unset(&dst) {
            dst = master.dst;
        }
    }
    Some(ExpectNat {
        reply_src: src,
        reply_src_port: port,
        reply_dst: dst,
    })
}

fn tuple_of(a: &ExpAttrs, v4: u16, v6: u16, l4: u16, port: u16) -> Result<Tuple, ExpError> {
    let (raw, is_v6) = match (a.get(v4), a.get(v6)) {
        (Some(r), _) => (r, false),
        (None, Some(r)) => (r, true),
        (None, None) => return Err(ExpError::Missing("addresses")),
    };
    let n = if is_v6 { 16 } else { 4 };
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..n].copy_from_slice(raw.get(..n).ok_or(ExpError::Missing("addresses"))?);
    dst[..n].copy_from_slice(raw.get(n..2 * n).ok_or(ExpError::Missing("addresses"))?);
    let p = *a
        .get(l4)
        .and_then(|b| b.first())
        .ok_or(ExpError::Missing("protocol"))?;
    let (sp, dp) = match a.get(port) {
        Some(b) if b.len() >= 4 => (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        ),
        Some(_) => return Err(ExpError::Missing("ports")),
        None if has_ports(p) => return Err(ExpError::Missing("ports")),
        None => (0, 0),
    };
    Ok(Tuple {
        src,
        dst,
        src_port: sp,
        dst_port: dp,
        proto: p,
        v6: is_v6,
    })
}

/// The expectation `a` describes, expiring `timeout` seconds after `now`
/// (its own TIMEOUT when present), in zone 0 (the format has no zone).
pub fn expectation_of(a: &ExpAttrs, now: u32, timeout: u32) -> Result<Expectation, ExpError> {
    let master = tuple_of(
        a,
        id::MASTER_IPV4,
        id::MASTER_IPV6,
        id::MASTER_L4PROTO,
        id::MASTER_PORT,
    )?;
    let mut tuple = tuple_of(
        a,
        id::EXPECT_IPV4,
        id::EXPECT_IPV6,
        id::EXPECT_L4PROTO,
        id::EXPECT_PORT,
    )?;
    if master.v6 != tuple.v6 {
        return Err(ExpError::Family);
    }
    if let Some(m) = a.get(id::MASK_PORT).filter(|m| m.len() >= 2) {
        match u16::from_be_bytes([m[0], m[1]]) {
            0 => tuple.src_port = 0,
            0xffff => {}
            other => return Err(ExpError::Mask(other)),
        }
    }
    let name = a
        .str_attr(id::HELPER_NAME)
        .ok_or(ExpError::Missing("a helper name"))?;
    let helper = Helper::parse(&name).ok_or(ExpError::Helper(name))?;
    let left = a.u32_attr(id::TIMEOUT).unwrap_or(timeout);
    let nat = nat_of(a, &master);
    Ok(Expectation {
        master: FlowKey {
            orig: master,
            zone: 0,
        },
        tuple,
        helper,
        expires: now.saturating_add(left),
        nat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_exp, MsgType};

    fn ftp(v6: bool) -> Expectation {
        let (c, s) = if v6 {
            ("2001:db8::10", "2001:db8:1::20")
        } else {
            ("192.0.2.10", "198.51.100.20")
        };
        Expectation {
            master: FlowKey {
                orig: Tuple::new(
                    c.parse().unwrap(),
                    s.parse().unwrap(),
                    proto::TCP,
                    40000,
                    21,
                ),
                zone: 0,
            },
            tuple: Tuple::new(c.parse().unwrap(), s.parse().unwrap(), proto::TCP, 0, 50000),
            helper: Helper::Ftp,
            expires: 1300,
            nat: None,
        }
    }

    #[test]
    fn attributes_follow_the_spec_order_and_sizes_and_decode_back() {
        for v6 in [false, true] {
            let e = ftp(v6);
            let a = exp_attrs(&e, 300);
            let ids: Vec<u16> = a.attrs.iter().map(|(i, _)| *i).collect();
            let (m, x, k) = if v6 { (1, 5, 9) } else { (0, 4, 8) };
            assert_eq!(ids, [m, 2, 3, x, 6, 7, k, 10, 11, 12, 13, 14, 19]);
            // Through the wire: header, sizes checked by the parser.
            let mut out = Vec::new();
            encode_exp(&mut out, MsgType::ExpNew, 0, 7, &a).unwrap();
            let back = ExpAttrs::parse(&out).unwrap();
            assert_eq!(back, a);
            assert_eq!(back.get(id::MASK_PORT), Some(&[0, 0, 0xff, 0xff][..]));
            assert_eq!(back.str_attr(id::HELPER_NAME).as_deref(), Some("ftp"));
            // A peer's clock differs: the expiry is rebuilt from TIMEOUT.
            let got = expectation_of(&back, 1000, 0).unwrap();
            assert_eq!(got, e);
        }
    }

    fn addr(s: &str) -> [u8; 16] {
        ftfw_dataplane::flow::addr_bytes(s.parse().unwrap())
    }

    #[test]
    fn a_translated_expectation_carries_its_translation_as_the_kernel_does() {
        // Active FTP through SNAT: the client (the master's originator)
        // announced 192.0.2.10:50000, which left as the public address.
        let mut e = ftp(false);
        e.nat = Some(ExpectNat {
            reply_src: addr("192.0.2.10"),
            reply_src_port: 50000,
            reply_dst: addr("198.51.100.20"),
        });
        let a = exp_attrs(&e, 300);
        let ids: Vec<u16> = a.attrs.iter().map(|(i, _)| *i).collect();
        assert_eq!(
            ids,
            [0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 13, 14, 15, 17, 16, 18, 19, 20]
        );
        assert_eq!(a.u32_attr(id::NAT_DIR), Some(DIR_REPLY));
        assert_eq!(a.get(id::NAT_PORT), Some(&[0xc3, 0x50, 0, 0][..]));
        assert_eq!(a.str_attr(id::FN).as_deref(), Some("nat-follow-master"));
        let mut out = Vec::new();
        encode_exp(&mut out, MsgType::ExpNew, 0, 7, &a).unwrap();
        let back = ExpAttrs::parse(&out).unwrap();
        assert_eq!(expectation_of(&back, 1000, 0).unwrap(), e);
        // The kernel leaves the addresses zero: rebuilt from the master.
        let mut k = back.clone();
        k.set(id::NAT_IPV4, vec![0; 8]);
        assert_eq!(expectation_of(&k, 1000, 0).unwrap().nat, e.nat);
        // An announce from the other side (passive FTP to a DNATed server)
        // round-trips with its addresses ...
        let mut p = ftp(false);
        p.nat = Some(ExpectNat {
            reply_src: addr("198.51.100.99"),
            reply_src_port: 40100,
            reply_dst: addr("192.0.2.10"),
        });
        let a = exp_attrs(&p, 300);
        assert_eq!(a.u32_attr(id::NAT_DIR), Some(DIR_ORIGINAL));
        assert_eq!(expectation_of(&a, 1000, 0).unwrap(), p);
        // ... but from the kernel's zeros it cannot be rebuilt (the
        // master's reply tuple is not in the message): untranslated.
        let mut k = a.clone();
        k.set(id::NAT_IPV4, vec![0; 8]);
        assert_eq!(expectation_of(&k, 1000, 0).unwrap().nat, None);
        // IPv6 has no NAT attributes in the format.
        let mut v6 = ftp(true);
        v6.nat = e.nat;
        let a = exp_attrs(&v6, 300);
        assert!(a.get(id::NAT_PORT).is_none() && a.get(id::FN).is_none());
        assert_eq!(expectation_of(&a, 1000, 0).unwrap().nat, None);
    }

    #[test]
    fn unusable_attributes_are_refused() {
        let mut a = exp_attrs(&ftp(false), 300);
        a.set(id::HELPER_NAME, b"sip\0".to_vec());
        assert_eq!(
            expectation_of(&a, 0, 0),
            Err(ExpError::Helper("sip".into()))
        );
        let mut a = exp_attrs(&ftp(false), 300);
        a.set(id::MASK_PORT, vec![0x00, 0xff, 0xff, 0xff]);
        assert_eq!(expectation_of(&a, 0, 0), Err(ExpError::Mask(0xff)));
        let mut a = exp_attrs(&ftp(false), 300);
        a.attrs.retain(|(i, _)| *i != id::EXPECT_PORT);
        assert_eq!(expectation_of(&a, 0, 0), Err(ExpError::Missing("ports")));
        let mut a = exp_attrs(&ftp(false), 300);
        a.attrs.retain(|(i, _)| *i != id::EXPECT_IPV4);
        a.set(id::EXPECT_IPV6, vec![0; 32]);
        assert_eq!(expectation_of(&a, 0, 0), Err(ExpError::Family));
    }
}
