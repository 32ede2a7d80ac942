//! IPv6 neighbor solicitations and advertisements (RFC 4861 sections 4.3,
//! 4.4): [`NdiscRepr`], the ICMPv6 message with its link-layer address
//! option, checked as RFC 4861 7.1.1 / 7.1.2 ask (code 0, checksum, length,
//! target not multicast, no zero-length option).

use super::ethernet::MacAddr;
use super::icmpv6::{msg_type, Icmpv6Packet};
use super::Error;

/// NS/NA body before options: type, code, checksum, flags/reserved,
/// target address.
pub const BODY_LEN: usize = 24;
/// A link-layer address option for Ethernet.
pub const LLA_OPT_LEN: usize = 8;
/// Option type: source link-layer address.
pub const OPT_SOURCE_LLA: u8 = 1;
/// Option type: target link-layer address.
pub const OPT_TARGET_LLA: u8 = 2;
/// NA flag: the sender is a router.
pub const FLAG_ROUTER: u8 = 0x80;
/// NA flag: answer to a solicitation.
pub const FLAG_SOLICITED: u8 = 0x40;
/// NA flag: override an existing cache entry.
pub const FLAG_OVERRIDE: u8 = 0x20;

/// Offset of the flags byte (NA) in the message.
const FLAGS: usize = 4;
/// Offset of the target address in the message.
const TARGET: usize = 8;

/// A neighbor solicitation or advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdiscRepr {
    /// [`msg_type::NEIGHBOR_SOLICIT`] or [`msg_type::NEIGHBOR_ADVERT`].
    pub kind: u8,
    /// NA flags byte ([`FLAG_ROUTER`], [`FLAG_SOLICITED`],
    /// [`FLAG_OVERRIDE`]); zero for NS.
    pub flags: u8,
    /// The target address.
    pub target: [u8; 16],
    /// The source (NS) or target (NA) link-layer address option.
    pub lla: Option<MacAddr>,
}

/// The link-layer option type a message of `kind` carries.
fn lla_option(kind: u8) -> u8 {
    if kind == msg_type::NEIGHBOR_SOLICIT {
        OPT_SOURCE_LLA
    } else {
        OPT_TARGET_LLA
    }
}

impl NdiscRepr {
    /// Reads the ICMPv6 message `msg` sent from `src` to `dst` (for the
    /// checksum). Other message types are [`Error::Unsupported`]; a
    /// non-zero code, a multicast target or a bad option is
    /// [`Error::Malformed`]; a wrong checksum is [`Error::BadChecksum`].
    /// Options other than the expected link-layer address are skipped.
    pub fn parse(msg: &[u8], src: &[u8; 16], dst: &[u8; 16]) -> Result<NdiscRepr, Error> {
        let p = Icmpv6Packet::new_checked(msg)?;
        let kind = p.msg_type();
        if kind != msg_type::NEIGHBOR_SOLICIT && kind != msg_type::NEIGHBOR_ADVERT {
            return Err(Error::Unsupported);
        }
        if p.msg_code() != 0 {
            return Err(Error::Malformed);
        }
        if msg.len() < BODY_LEN {
            return Err(Error::Truncated);
        }
        if !p.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let mut target = [0u8; 16];
        target.copy_from_slice(&msg[TARGET..BODY_LEN]);
        if target[0] == 0xff {
            return Err(Error::Malformed);
        }
        let want = lla_option(kind);
        let mut lla = None;
        let mut opts = &msg[BODY_LEN..];
        while !opts.is_empty() {
            let (ty, len) = match opts {
                [ty, len, ..] => (*ty, usize::from(*len) * 8),
                _ => return Err(Error::Malformed),
            };
            if len == 0 || len > opts.len() {
                return Err(Error::Malformed);
            }
            if ty == want && len >= LLA_OPT_LEN {
                let mut m = [0u8; 6];
                m.copy_from_slice(&opts[2..8]);
                lla = Some(m);
            }
            opts = &opts[len..];
        }
        Ok(NdiscRepr {
            kind,
            flags: if kind == msg_type::NEIGHBOR_ADVERT {
                msg[FLAGS]
            } else {
                0
            },
            target,
            lla,
        })
    }

    /// Length of the message: the body and, with `lla`, one option.
    pub fn buffer_len(&self) -> usize {
        BODY_LEN + if self.lla.is_some() { LLA_OPT_LEN } else { 0 }
    }

    /// Writes the message into the start of `buf` with its checksum over
    /// the pseudo-header of `src` and `dst`; returns
    /// [`NdiscRepr::buffer_len`].
    pub fn emit(&self, buf: &mut [u8], src: &[u8; 16], dst: &[u8; 16]) -> Result<usize, Error> {
        let n = self.buffer_len();
        let msg = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        msg.fill(0);
        msg[0] = self.kind;
        msg[FLAGS] = self.flags;
        msg[TARGET..BODY_LEN].copy_from_slice(&self.target);
        if let Some(lla) = self.lla {
            msg[BODY_LEN] = lla_option(self.kind);
            msg[BODY_LEN + 1] = 1; // in units of 8 bytes
            msg[BODY_LEN + 2..BODY_LEN + LLA_OPT_LEN].copy_from_slice(&lla);
        }
        Icmpv6Packet::new_unchecked(&mut msg[..]).fill_checksum(src, dst);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::golden::{self, ND_NS};

    /// Where the ICMPv6 message of [`ND_NS`] starts.
    const MSG: usize = 14 + 40;

    fn addrs() -> ([u8; 16], [u8; 16]) {
        (
            ND_NS[22..38].try_into().unwrap(),
            ND_NS[38..54].try_into().unwrap(),
        )
    }

    /// The repr of [`ND_NS`]: who has 2001:db8:1::1, from the host's MAC.
    fn ns() -> NdiscRepr {
        NdiscRepr {
            kind: msg_type::NEIGHBOR_SOLICIT,
            flags: 0,
            target: golden::ND_OUR_IP,
            lla: Some(golden::MAC_A),
        }
    }

    #[test]
    fn deconstruct() {
        let p = Icmpv6Packet::new_checked(&ND_NS[MSG..]).unwrap();
        let (s, d) = addrs();
        assert_eq!((p.msg_type(), p.msg_code()), (135, 0));
        assert_eq!(p.checksum(), 0x975c);
        assert!(p.verify_checksum(&s, &d));
        assert_eq!(&p.data()[..16], &golden::ND_OUR_IP);
    }

    #[test]
    fn construct() {
        let mut b = ND_NS[MSG..].to_vec();
        b[2..4].fill(0);
        let (s, d) = addrs();
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(&s, &d);
        assert_eq!(&b[..], &ND_NS[MSG..]);
    }

    #[test]
    fn parse() {
        let (s, d) = addrs();
        assert_eq!(NdiscRepr::parse(&ND_NS[MSG..], &s, &d), Ok(ns()));
        let mut bad = ND_NS;
        bad[MSG + 3] ^= 1;
        assert_eq!(
            NdiscRepr::parse(&bad[MSG..], &s, &d),
            Err(Error::BadChecksum)
        );
        let mut bad = ND_NS;
        bad[MSG + 1] = 1;
        assert_eq!(NdiscRepr::parse(&bad[MSG..], &s, &d), Err(Error::Malformed));
        // A zero-length option (checksum fixed so the option check is reached).
        let mut bad = ND_NS;
        bad[MSG + 25] = 0;
        Icmpv6Packet::new_unchecked(&mut bad[MSG..]).fill_checksum(&s, &d);
        assert_eq!(NdiscRepr::parse(&bad[MSG..], &s, &d), Err(Error::Malformed));
        assert_eq!(
            NdiscRepr::parse(&ND_NS[MSG..MSG + 20], &s, &d),
            Err(Error::Truncated)
        );
        assert_eq!(
            NdiscRepr::parse(&golden::ICMPV6_ECHO[54..], &s, &d),
            Err(Error::Unsupported)
        );
    }

    #[test]
    fn emit() {
        let (s, d) = addrs();
        let r = ns();
        assert_eq!(r.buffer_len(), 32);
        let mut b = [0xaau8; 40];
        assert_eq!(r.emit(&mut b, &s, &d), Ok(32));
        assert_eq!(&b[..32], &ND_NS[MSG..]);
        assert_eq!(r.emit(&mut b[..31], &s, &d), Err(Error::BufferTooSmall));
        // An NA without option round-trips.
        let na = NdiscRepr {
            kind: msg_type::NEIGHBOR_ADVERT,
            flags: FLAG_ROUTER | FLAG_OVERRIDE,
            lla: None,
            ..r
        };
        let n = na.emit(&mut b, &d, &s).unwrap();
        assert_eq!(n, BODY_LEN);
        assert_eq!(NdiscRepr::parse(&b[..n], &d, &s), Ok(na));
    }
}
