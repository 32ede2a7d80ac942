//! Addresses and prefixes of either family in the form the hot path
//! compares: [`IpKey`] (16 bytes plus a family flag, as [`Tuple`] stores
//! them) and [`Prefix`] (an address and a length, matched with masks).
//!
//! [`Tuple`]: crate::flow::Tuple

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::flow::{addr_bytes, addr_ip, Addr};

/// An address of either family as the hot path holds it: IPv4 uses the
/// first four bytes (the rest zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct IpKey {
    /// Whether this is IPv6.
    pub v6: bool,
    /// The address bytes.
    pub addr: Addr,
}

impl IpKey {
    /// The key of an IPv4 address.
    #[inline]
    pub fn v4(a: [u8; 4]) -> IpKey {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&a);
        IpKey { v6: false, addr }
    }

    /// The key of an IPv6 address.
    #[inline]
    pub fn v6(a: [u8; 16]) -> IpKey {
        IpKey { v6: true, addr: a }
    }

    /// The IPv4 octets (meaningful only when `!v6`).
    #[inline]
    pub fn octets4(&self) -> [u8; 4] {
        [self.addr[0], self.addr[1], self.addr[2], self.addr[3]]
    }

    /// As a std address.
    pub fn ip(&self) -> IpAddr {
        addr_ip(&self.addr, self.v6)
    }

    /// The address as a number (IPv4 in the low 32 bits).
    #[inline]
    fn bits(&self) -> u128 {
        if self.v6 {
            u128::from_be_bytes(self.addr)
        } else {
            u128::from(u32::from_be_bytes(self.octets4()))
        }
    }

    /// Multicast or (IPv4) limited broadcast: never routed or answered.
    #[inline]
    pub fn is_multicast_or_broadcast(&self) -> bool {
        if self.v6 {
            self.addr[0] == 0xff
        } else {
            self.addr[0] >= 224
        }
    }

    /// The unspecified address (0.0.0.0 or ::).
    #[inline]
    pub fn is_unspecified(&self) -> bool {
        self.addr == [0u8; 16]
    }
}

impl From<IpAddr> for IpKey {
    fn from(a: IpAddr) -> IpKey {
        IpKey {
            v6: a.is_ipv6(),
            addr: addr_bytes(a),
        }
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip().fmt(f)
    }
}

/// An address with a prefix length: an interface address
/// (`192.0.2.1/24`) or a network (`198.51.100.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length, at most 32 (IPv4) or 128 (IPv6).
    pub len: u8,
}

/// Why a prefix did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// No `/LEN`.
    #[error("{0:?} has no prefix length (write ADDRESS/LENGTH, e.g. 192.0.2.1/24)")]
    NoLength(String),
    /// The address part is not an address.
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    BadAddress(String),
    /// The length is not a number or too long for the family.
    #[error("prefix length {0:?} is not 0..=32 (IPv4) or 0..=128 (IPv6)")]
    BadLength(String),
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| PrefixError::NoLength(s.to_string()))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| PrefixError::BadAddress(a.to_string()))?;
        let len: u8 = l
            .parse()
            .map_err(|_| PrefixError::BadLength(l.to_string()))?;
        let max = if addr.is_ipv6() { 128 } else { 32 };
        if len > max {
            return Err(PrefixError::BadLength(l.to_string()));
        }
        Ok(Prefix { addr, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Prefix {
    /// Builds a prefix; `len` is clamped to the family's width.
    pub fn new(addr: IpAddr, len: u8) -> Prefix {
        let max = if addr.is_ipv6() { 128 } else { 32 };
        Prefix {
            addr,
            len: len.min(max),
        }
    }

    /// The address as a key.
    pub fn key(&self) -> IpKey {
        IpKey::from(self.addr)
    }

    fn mask(&self) -> u128 {
        let width: u32 = if self.addr.is_ipv6() { 128 } else { 32 };
        let len = u32::from(self.len).min(width);
        if len == 0 {
            0
        } else {
            let all = if width == 128 {
                u128::MAX
            } else {
                u128::from(u32::MAX)
            };
            all & !(all >> len)
        }
    }

    /// Whether `k` (of the same family) lies inside this prefix.
    #[inline]
    pub fn contains(&self, k: &IpKey) -> bool {
        if k.v6 != self.addr.is_ipv6() {
            return false;
        }
        let m = self.mask();
        (k.bits() & m) == (self.key().bits() & m)
    }

    /// The network: the address with the host bits cleared.
    pub fn network(&self) -> Prefix {
        let bits = self.key().bits() & self.mask();
        let addr = if self.addr.is_ipv6() {
            IpAddr::V6(bits.into())
        } else {
            IpAddr::V4(u32::try_from(bits).unwrap_or(0).into())
        };
        Prefix {
            addr,
            len: self.len,
        }
    }

    /// Whether the address has host bits set (`192.0.2.1/24`).
    pub fn has_host_bits(&self) -> bool {
        self.network().addr != self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let p: Prefix = "192.0.2.1/24".parse().unwrap();
        assert_eq!(p.len, 24);
        assert!(p.has_host_bits());
        assert_eq!(p.network().to_string(), "192.0.2.0/24");
        assert!(p.contains(&IpKey::v4([192, 0, 2, 200])));
        assert!(!p.contains(&IpKey::v4([192, 0, 3, 1])));
        assert!(!p.contains(&"2001:db8::1".parse::<IpAddr>().unwrap().into()));
        let d: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(d.contains(&IpKey::v4([203, 0, 113, 9])));
        let h: Prefix = "198.51.100.7/32".parse().unwrap();
        assert!(h.contains(&IpKey::v4([198, 51, 100, 7])));
        assert!(!h.contains(&IpKey::v4([198, 51, 100, 6])));
        let v6: Prefix = "2001:db8:1::1/64".parse().unwrap();
        assert!(v6.contains(&"2001:db8:1::ffff".parse::<IpAddr>().unwrap().into()));
        assert!(!v6.contains(&"2001:db8:2::1".parse::<IpAddr>().unwrap().into()));
        assert_eq!(v6.network().to_string(), "2001:db8:1::/64");
        let all6: Prefix = "::/0".parse().unwrap();
        assert!(all6.contains(&"2001:db8::1".parse::<IpAddr>().unwrap().into()));
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            "192.0.2.1".parse::<Prefix>(),
            Err(PrefixError::NoLength(_))
        ));
        assert!(matches!(
            "192.0.2.1/33".parse::<Prefix>(),
            Err(PrefixError::BadLength(_))
        ));
        assert!(matches!(
            "2001:db8::/129".parse::<Prefix>(),
            Err(PrefixError::BadLength(_))
        ));
        assert!(matches!(
            "host/24".parse::<Prefix>(),
            Err(PrefixError::BadAddress(_))
        ));
    }

    #[test]
    fn keys() {
        let k = IpKey::v4([224, 0, 0, 1]);
        assert!(k.is_multicast_or_broadcast());
        assert!(IpKey::v4([255, 255, 255, 255]).is_multicast_or_broadcast());
        assert!(!IpKey::v4([192, 0, 2, 1]).is_multicast_or_broadcast());
        assert!(IpKey::v6([0; 16]).is_unspecified());
        assert_eq!(IpKey::v4([192, 0, 2, 1]).to_string(), "192.0.2.1");
    }
}
