//! The 8-byte message header (ftfw-wire.md section 3).
//!
//! ```text
//! byte 0: version << 4 | type   byte 1: flags   2-3: len (BE, incl. header)   4-7: seq (BE)
//! ```

use super::WireError;

/// Header length in bytes.
pub const HEADER_LEN: usize = 8;
/// The only protocol version conntrackd 1.2 and later speak.
pub const VERSION: u8 = 1;

/// Flag bits of byte 1 (ftfw-wire.md 3.2).
pub mod flags {
    /// CTL: send me your whole table.
    pub const RESYNC: u8 = 0x02;
    /// CTL: resend the range [from, to].
    pub const NACK: u8 = 0x04;
    /// CTL: I got the range [from, to].
    pub const ACK: u8 = 0x08;
    /// CTL: keep-alive, no body.
    pub const ALIVE: u8 = 0x10;
    /// Any message: I (re)started.
    pub const HELLO: u8 = 0x20;
    /// Any message: I saw your HELLO.
    pub const HELLO_BACK: u8 = 0x40;
    /// Flags a data message may carry.
    pub const DATA_ALLOWED: u8 = HELLO | HELLO_BACK;

    /// Names of the set bits, in bit order (unknown bits as hex).
    pub fn names(f: u8) -> Vec<String> {
        const NAMES: [(u8, &str); 6] = [
            (RESYNC, "RESYNC"),
            (NACK, "NACK"),
            (ACK, "ACK"),
            (ALIVE, "ALIVE"),
            (HELLO, "HELLO"),
            (HELLO_BACK, "HELLO_BACK"),
        ];
        let mut v: Vec<String> = NAMES
            .iter()
            .filter(|(b, _)| f & b != 0)
            .map(|(_, n)| (*n).to_string())
            .collect();
        let unknown = f & !(RESYNC | NACK | ACK | ALIVE | HELLO | HELLO_BACK);
        if unknown != 0 {
            v.push(format!("{unknown:#04x}"));
        }
        v
    }
}

/// Message types (low nibble of byte 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// Conntrack new.
    CtNew = 0,
    /// Conntrack update.
    CtUpd = 1,
    /// Conntrack destroy.
    CtDel = 2,
    /// Expectation new.
    ExpNew = 3,
    /// Expectation update.
    ExpUpd = 4,
    /// Expectation destroy.
    ExpDel = 5,
    /// Control (ACK, NACK, RESYNC, ALIVE).
    Ctl = 10,
}

impl MsgType {
    /// Decodes the type nibble; 6-9 and 11-15 are unknown.
    pub fn from_u8(v: u8) -> Option<MsgType> {
        Some(match v {
            0 => MsgType::CtNew,
            1 => MsgType::CtUpd,
            2 => MsgType::CtDel,
            3 => MsgType::ExpNew,
            4 => MsgType::ExpUpd,
            5 => MsgType::ExpDel,
            10 => MsgType::Ctl,
            _ => return None,
        })
    }
    /// Upper-case name (`CT_NEW`, ..., `CTL`).
    pub fn name(self) -> &'static str {
        match self {
            MsgType::CtNew => "CT_NEW",
            MsgType::CtUpd => "CT_UPD",
            MsgType::CtDel => "CT_DEL",
            MsgType::ExpNew => "EXP_NEW",
            MsgType::ExpUpd => "EXP_UPD",
            MsgType::ExpDel => "EXP_DEL",
            MsgType::Ctl => "CTL",
        }
    }
    /// Whether the body is CT attributes.
    pub fn is_ct(self) -> bool {
        matches!(self, MsgType::CtNew | MsgType::CtUpd | MsgType::CtDel)
    }
    /// Whether the body is expectation attributes.
    pub fn is_exp(self) -> bool {
        matches!(self, MsgType::ExpNew | MsgType::ExpUpd | MsgType::ExpDel)
    }
}

/// A parsed header. `ty` is kept raw so that a header with an unknown type
/// can still be reported (its HELLO bit counts, ftfw-wire.md 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Version nibble (1 on the wire).
    pub version: u8,
    /// Type nibble, see [`MsgType::from_u8`].
    pub ty: u8,
    /// Flags byte ([`flags`]).
    pub flags: u8,
    /// Total message length including this header.
    pub len: u16,
    /// Sender sequence number.
    pub seq: u32,
}

impl Header {
    /// A version-1 header.
    pub fn new(ty: MsgType, flags: u8, len: u16, seq: u32) -> Header {
        Header {
            version: VERSION,
            ty: ty as u8,
            flags,
            len,
            seq,
        }
    }
    /// Reads the first 8 bytes; no validation beyond length.
    pub fn parse(b: &[u8]) -> Result<Header, WireError> {
        let h: &[u8; HEADER_LEN] =
            b.get(..HEADER_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or(WireError::Truncated {
                    left: b.len(),
                    need: HEADER_LEN,
                })?;
        Ok(Header {
            version: h[0] >> 4,
            ty: h[0] & 0x0f,
            flags: h[1],
            len: u16::from_be_bytes([h[2], h[3]]),
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        })
    }
    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let l = self.len.to_be_bytes();
        let s = self.seq.to_be_bytes();
        [
            (self.version << 4) | (self.ty & 0x0f),
            self.flags,
            l[0],
            l[1],
            s[0],
            s[1],
            s[2],
            s[3],
        ]
    }
    /// The message type, if known.
    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::from_u8(self.ty)
    }
    /// Type name, or `TYPE<n>` for an unknown type.
    pub fn type_name(&self) -> String {
        self.msg_type()
            .map_or_else(|| format!("TYPE{}", self.ty), |t| t.name().to_string())
    }
    /// Whether HELLO is set.
    pub fn hello(&self) -> bool {
        self.flags & flags::HELLO != 0
    }
    /// Whether HELLO_BACK is set.
    pub fn hello_back(&self) -> bool {
        self.flags & flags::HELLO_BACK != 0
    }
    /// Checks version, type and flags as conntrackd does (after framing).
    pub fn validate(&self) -> Result<MsgType, WireError> {
        if self.version != VERSION {
            return Err(WireError::BadVersion {
                version: self.version,
            });
        }
        let ty = self
            .msg_type()
            .ok_or(WireError::UnknownType { ty: self.ty })?;
        if ty != MsgType::Ctl && self.flags & !flags::DATA_ALLOWED != 0 {
            return Err(WireError::DataFlags { flags: self.flags });
        }
        Ok(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // E1's header: CT_NEW, flags 0, len 0x44, seq 1000.
    const BYTES: [u8; 8] = [0x10, 0x00, 0x00, 0x44, 0x00, 0x00, 0x03, 0xe8];

    #[test]
    fn deconstruct() {
        let h = Header::parse(&BYTES).unwrap();
        assert_eq!(
            (h.version, h.ty, h.flags, h.len, h.seq),
            (1, 0, 0, 0x44, 1000)
        );
        assert_eq!(h.validate(), Ok(MsgType::CtNew));
    }

    #[test]
    fn construct() {
        assert_eq!(Header::new(MsgType::CtNew, 0, 0x44, 1000).to_bytes(), BYTES);
        let h = Header::new(MsgType::Ctl, flags::ALIVE | flags::HELLO, 8, 5);
        assert_eq!(h.to_bytes()[..2], [0x1a, 0x30]);
    }

    #[test]
    fn validation() {
        let mut h = Header::new(MsgType::CtUpd, flags::ACK, 8, 0);
        assert_eq!(
            h.validate(),
            Err(WireError::DataFlags { flags: flags::ACK })
        );
        h.flags = flags::HELLO | flags::HELLO_BACK;
        assert!(h.validate().is_ok());
        h.version = 0;
        assert_eq!(h.validate(), Err(WireError::BadVersion { version: 0 }));
        let mut b = BYTES;
        b[0] = 0x17;
        assert_eq!(
            Header::parse(&b).unwrap().validate(),
            Err(WireError::UnknownType { ty: 7 })
        );
        assert!(Header::parse(&BYTES[..7]).is_err());
        assert_eq!(flags::names(0x68), ["ACK", "HELLO", "HELLO_BACK"]);
    }
}
