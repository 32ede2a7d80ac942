//! [`PassEthertypes`]: which non-IP ethertypes a transparent worker forwards.
//!
//! A bridge that filters IP must not let other protocols carry IP past it
//! (PPPoE sessions, proprietary tunnels): non-IP frames are dropped unless
//! their ethertype (the innermost one, after VLAN tags) is on this list.
//! IPv6 neighbour discovery is IP and passes as link control regardless.

use std::fmt;

/// ARP.
pub const ARP: u16 = 0x0806;
/// LLDP.
pub const LLDP: u16 = 0x88cc;

/// Names the configuration accepts, with their ethertypes.
const NAMES: &[(&str, u16)] = &[
    ("arp", ARP),
    ("rarp", 0x8035),
    ("lldp", LLDP),
    ("eapol", 0x888e),
    ("pppoe-discovery", 0x8863),
    ("pppoe-session", 0x8864),
    ("ptp", 0x88f7),
    ("lacp", 0x8809),
    ("mpls", 0x8847),
    ("mpls-multicast", 0x8848),
];

/// Most ethertypes a list holds (a linear scan of this many is the cost of
/// judging one non-IP frame).
pub const MAX_PASS_ETHERTYPES: usize = 16;

/// An ethertype name or number the configuration could not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EthertypeError {
    /// Neither a known name nor a hex number such as `0x88f7`.
    #[error(
        "unknown ethertype {0:?} (a name such as \"arp\" or \"lldp\", or hex such as \"0x88f7\")"
    )]
    Unknown(String),
    /// An ethertype below 0x0600 is an 802.3 length, not a type.
    #[error("{0:#06x} is an 802.3 length, not an ethertype (must be 0x0600 or more)")]
    Length(u16),
    /// An IP ethertype: IP is always filtered, never passed blindly.
    #[error("{0:#06x} is IP, which the rules filter; it cannot be passed unfiltered")]
    Ip(u16),
    /// More than [`MAX_PASS_ETHERTYPES`] entries.
    #[error("at most {MAX_PASS_ETHERTYPES} ethertypes can be passed")]
    TooMany,
}

/// Parses one ethertype: a name from the list above or hex (`0x88f7`).
pub fn parse_ethertype(s: &str) -> Result<u16, EthertypeError> {
    let t = s.trim().to_ascii_lowercase();
    let v = if let Some(hex) = t.strip_prefix("0x") {
        u16::from_str_radix(hex, 16).map_err(|_| EthertypeError::Unknown(s.to_string()))?
    } else {
        NAMES
            .iter()
            .find(|(n, _)| *n == t)
            .map(|(_, v)| *v)
            .ok_or_else(|| EthertypeError::Unknown(s.to_string()))?
    };
    if v < 0x0600 {
        return Err(EthertypeError::Length(v));
    }
    if v == 0x0800 || v == 0x86dd {
        return Err(EthertypeError::Ip(v));
    }
    Ok(v)
}

/// The set of non-IP ethertypes passed unfiltered. Fixed size, no
/// allocation; `Copy` so a worker holds its own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PassEthertypes {
    types: [u16; MAX_PASS_ETHERTYPES],
    len: usize,
}

impl PassEthertypes {
    /// The default: ARP and LLDP, what a transparent firewall must pass for
    /// the segment to work and be managed.
    pub const DEFAULT: PassEthertypes = PassEthertypes {
        types: {
            let mut t = [0; MAX_PASS_ETHERTYPES];
            t[0] = ARP;
            t[1] = LLDP;
            t
        },
        len: 2,
    };

    /// Passes nothing that is not IP.
    pub const NONE: PassEthertypes = PassEthertypes {
        types: [0; MAX_PASS_ETHERTYPES],
        len: 0,
    };

    /// The set of the given ethertypes (duplicates kept once).
    pub fn new(types: &[u16]) -> Result<PassEthertypes, EthertypeError> {
        let mut set = PassEthertypes::NONE;
        for &t in types {
            if set.passes(t) {
                continue;
            }
            if set.len == MAX_PASS_ETHERTYPES {
                return Err(EthertypeError::TooMany);
            }
            set.types[set.len] = t;
            set.len += 1;
        }
        Ok(set)
    }

    /// Parses a configuration list of names and hex numbers.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<PassEthertypes, EthertypeError> {
        let types = items
            .iter()
            .map(|s| parse_ethertype(s.as_ref()))
            .collect::<Result<Vec<u16>, _>>()?;
        PassEthertypes::new(&types)
    }

    /// Whether frames of ethertype `t` pass.
    #[inline]
    pub fn passes(&self, t: u16) -> bool {
        self.types[..self.len].contains(&t)
    }
}

impl Default for PassEthertypes {
    fn default() -> Self {
        PassEthertypes::DEFAULT
    }
}

impl fmt::Debug for PassEthertypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.types[..self.len].iter().map(|t| format!("{t:#06x}")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hex_parse_and_bad_ones_are_named() {
        let p = PassEthertypes::parse(&["arp", "LLDP", "0x88F7", "pppoe-session"]).unwrap();
        for t in [ARP, LLDP, 0x88f7, 0x8864] {
            assert!(p.passes(t), "{t:#x}");
        }
        assert!(!p.passes(0x8863));
        assert!(!PassEthertypes::DEFAULT.passes(0x8864));
        assert!(PassEthertypes::DEFAULT.passes(ARP));
        assert_eq!(
            parse_ethertype("ipx"),
            Err(EthertypeError::Unknown("ipx".into()))
        );
        assert_eq!(
            parse_ethertype("0x05dc"),
            Err(EthertypeError::Length(0x5dc))
        );
        assert_eq!(parse_ethertype("0x0800"), Err(EthertypeError::Ip(0x800)));
        assert_eq!(
            parse_ethertype("0xzz"),
            Err(EthertypeError::Unknown("0xzz".into()))
        );
        let many: Vec<String> = (0..17).map(|i| format!("{:#06x}", 0x9000 + i)).collect();
        assert_eq!(PassEthertypes::parse(&many), Err(EthertypeError::TooMany));
        // Duplicates take no room.
        let dup: Vec<&str> = std::iter::repeat_n("arp", 40).collect();
        assert_eq!(
            PassEthertypes::parse(&dup).unwrap(),
            PassEthertypes::new(&[ARP]).unwrap()
        );
    }
}
