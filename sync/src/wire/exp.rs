//! Expectation attributes (types 3-5, ftfw-wire.md 5.5).
//!
//! Kept as an ordered list of validated attributes (id and payload), with
//! typed getters; re-encoding reproduces the same set in the same order.

use super::attr::{self, AttrIter};
use super::WireError;

/// Expectation attribute ids.
pub mod id {
    /// Master original src, dst (IPv4).
    pub const MASTER_IPV4: u16 = 0;
    /// Master original src, dst (IPv6).
    pub const MASTER_IPV6: u16 = 1;
    /// Master protocol.
    pub const MASTER_L4PROTO: u16 = 2;
    /// Master sport, dport.
    pub const MASTER_PORT: u16 = 3;
    /// Expected tuple src, dst (IPv4).
    pub const EXPECT_IPV4: u16 = 4;
    /// Expected tuple src, dst (IPv6).
    pub const EXPECT_IPV6: u16 = 5;
    /// Expected protocol.
    pub const EXPECT_L4PROTO: u16 = 6;
    /// Expected sport, dport.
    pub const EXPECT_PORT: u16 = 7;
    /// Mask src, dst (IPv4).
    pub const MASK_IPV4: u16 = 8;
    /// Mask src, dst (IPv6).
    pub const MASK_IPV6: u16 = 9;
    /// Mask protocol.
    pub const MASK_L4PROTO: u16 = 10;
    /// Mask sport, dport.
    pub const MASK_PORT: u16 = 11;
    /// Timeout (BE u32).
    pub const TIMEOUT: u16 = 12;
    /// Flags (BE u32).
    pub const FLAGS: u16 = 13;
    /// Class (BE u32).
    pub const CLASS: u16 = 14;
    /// NAT tuple src, dst (IPv4).
    pub const NAT_IPV4: u16 = 15;
    /// NAT sport, dport.
    pub const NAT_PORT: u16 = 16;
    /// NAT protocol.
    pub const NAT_L4PROTO: u16 = 17;
    /// NAT direction (BE u32).
    pub const NAT_DIR: u16 = 18;
    /// Helper name, nta_len <= 16.
    pub const HELPER_NAME: u16 = 19;
    /// Expectation function name, nta_len <= 32.
    pub const FN: u16 = 20;
    /// First id conntrackd 1.4.7 does not know.
    pub const MAX: u16 = 21;
}

/// Attribute names by id.
pub const NAMES: [&str; 21] = [
    "MASTER_IPV4",
    "MASTER_IPV6",
    "MASTER_L4PROTO",
    "MASTER_PORT",
    "EXPECT_IPV4",
    "EXPECT_IPV6",
    "EXPECT_L4PROTO",
    "EXPECT_PORT",
    "MASK_IPV4",
    "MASK_IPV6",
    "MASK_L4PROTO",
    "MASK_PORT",
    "TIMEOUT",
    "FLAGS",
    "CLASS",
    "NAT_IPV4",
    "NAT_PORT",
    "NAT_L4PROTO",
    "NAT_DIR",
    "HELPER_NAME",
    "FN",
];

/// Size rule of an expectation attribute: `Ok(n)` exact `nta_len`,
/// `Err(max)` variable up to `max`; `None` for unknown ids.
pub fn size_rule(aid: u16) -> Option<Result<u16, u16>> {
    const SIZES: [u16; 19] = [
        12, 36, 5, 8, 12, 36, 5, 8, 12, 36, 5, 8, 8, 8, 8, 12, 8, 5, 8,
    ];
    match aid {
        id::HELPER_NAME => Some(Err(16)),
        id::FN => Some(Err(32)),
        _ => SIZES.get(usize::from(aid)).map(|&n| Ok(n)),
    }
}

/// A decoded expectation message body: the attributes in wire order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExpAttrs {
    /// (id, payload) in wire order; a repeated id keeps its first place
    /// and its last value.
    pub attrs: Vec<(u16, Vec<u8>)>,
    /// Attributes with an unknown id (>= 21) that were skipped.
    pub unknown: usize,
}

impl ExpAttrs {
    /// Decodes the attributes of a whole expectation message (header
    /// included). Unknown ids are skipped and counted.
    pub fn parse(msg: &[u8]) -> Result<ExpAttrs, WireError> {
        let mut e = ExpAttrs::default();
        for r in AttrIter::new(msg, super::HEADER_LEN) {
            let r = r?;
            let ok = match size_rule(r.id) {
                None => {
                    e.unknown = e.unknown.saturating_add(1);
                    continue;
                }
                Some(Ok(n)) => r.len == n,
                Some(Err(max)) => r.len <= max,
            };
            if !ok {
                return Err(WireError::AttrSize {
                    at: r.at,
                    id: r.id,
                    len: r.len,
                });
            }
            e.set(r.id, r.payload.to_vec());
        }
        Ok(e)
    }

    /// Sets attribute `aid` (appended if new). The caller keeps the sizes
    /// of [`size_rule`].
    pub fn set(&mut self, aid: u16, payload: Vec<u8>) {
        if let Some(slot) = self.attrs.iter_mut().find(|(i, _)| *i == aid) {
            slot.1 = payload;
        } else {
            self.attrs.push((aid, payload));
        }
    }

    /// Payload of attribute `aid`.
    pub fn get(&self, aid: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(i, _)| *i == aid)
            .map(|(_, p)| p.as_slice())
    }

    /// A big-endian u32 attribute (TIMEOUT, FLAGS, CLASS, NAT_DIR).
    pub fn u32_attr(&self, aid: u16) -> Option<u32> {
        self.get(aid)
            .and_then(|p| p.get(..4))
            .and_then(|s| s.try_into().ok())
            .map(u32::from_be_bytes)
    }

    /// A NUL-terminated string attribute (HELPER_NAME, FN).
    pub fn str_attr(&self, aid: u16) -> Option<String> {
        self.get(aid).map(|b| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(b.get(..end).unwrap_or(&[])).into_owned()
        })
    }

    /// Appends the attributes in order.
    pub fn emit(&self, out: &mut Vec<u8>) {
        for (aid, p) in &self.attrs {
            attr::emit(out, *aid, p);
        }
    }
}

/// Name of an expectation attribute id (`ID<n>` when unknown).
pub fn name(aid: u16) -> String {
    NAMES
        .get(usize::from(aid))
        .map_or_else(|| format!("ID{aid}"), |n| (*n).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_emit() {
        let mut e = ExpAttrs::default();
        e.set(id::MASTER_IPV4, vec![10, 0, 0, 1, 10, 0, 0, 2]);
        e.set(id::MASTER_L4PROTO, vec![6]);
        e.set(id::TIMEOUT, 300u32.to_be_bytes().to_vec());
        e.set(id::HELPER_NAME, b"ftp\0".to_vec());
        let mut m = vec![0x13, 0, 0, 0, 0, 0, 0, 1];
        e.emit(&mut m);
        let back = ExpAttrs::parse(&m).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.u32_attr(id::TIMEOUT), Some(300));
        assert_eq!(back.str_attr(id::HELPER_NAME).as_deref(), Some("ftp"));
        // FLAGS with a wrong size rejects the message.
        let mut bad = vec![0x13, 0, 0, 0, 0, 0, 0, 1];
        attr::emit(&mut bad, id::FLAGS, &[0, 0, 1]);
        assert!(ExpAttrs::parse(&bad).is_err());
    }
}
