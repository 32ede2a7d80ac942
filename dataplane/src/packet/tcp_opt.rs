//! TCP options: a bounded, panic-free iterator and a summary of the options
//! the connection tracker uses (MSS, window scale, SACK-permitted,
//! timestamps), plus emission in Linux's SYN layout.

use super::{rd16, rd32, Error};

/// Option kinds.
pub mod kind {
    /// End of option list.
    pub const END: u8 = 0;
    /// No operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum segment size.
    pub const MSS: u8 = 2;
    /// Window scale.
    pub const WSCALE: u8 = 3;
    /// SACK permitted.
    pub const SACK_PERM: u8 = 4;
    /// SACK blocks.
    pub const SACK: u8 = 5;
    /// Timestamps.
    pub const TIMESTAMPS: u8 = 8;
}

/// One decoded option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list; the iterator stops after it.
    EndOfList,
    /// No operation.
    NoOperation,
    /// Maximum segment size.
    MaxSegmentSize(u16),
    /// Window scale shift count (as sent, not clamped to 14).
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// SACK blocks: pairs of (left, right) edges, 8 bytes each.
    SackRange(&'a [u8]),
    /// Timestamps.
    Timestamps {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// Any other option.
    Unknown {
        /// Kind byte.
        kind: u8,
        /// Data after kind and length.
        data: &'a [u8],
    },
}

/// Iterator over TCP options. Each step consumes at least one byte, so it
/// ends after at most `options.len()` (<= 40) steps. A malformed option
/// (length < 2, running past the end, or wrong length for a known kind)
/// yields one `Err(Error::Malformed)` and ends the iteration.
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionIter<'a> {
    /// Iterates over the raw options bytes (the header after byte 20).
    #[inline]
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptionIter { rest: options }
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (&k, after_kind) = self.rest.split_first()?;
        match k {
            kind::END => {
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            kind::NOP => {
                self.rest = after_kind;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let rest = self.rest;
        self.rest = &[];
        let Some(&len) = after_kind.first() else {
            return Some(Err(Error::Malformed));
        };
        let len = usize::from(len);
        if len < 2 || len > rest.len() {
            return Some(Err(Error::Malformed));
        }
        let (opt, tail) = rest.split_at(len);
        let data = &opt[2..];
        let item = match (k, len) {
            (kind::MSS, 4) => TcpOption::MaxSegmentSize(rd16(data, 0)),
            (kind::WSCALE, 3) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERM, 2) => TcpOption::SackPermitted,
            (kind::SACK, _) if (len - 2) % 8 == 0 && len > 2 => TcpOption::SackRange(data),
            (kind::TIMESTAMPS, 10) => TcpOption::Timestamps {
                tsval: rd32(data, 0),
                tsecr: rd32(data, 4),
            },
            (kind::MSS | kind::WSCALE | kind::SACK_PERM | kind::SACK | kind::TIMESTAMPS, _) => {
                return Some(Err(Error::Malformed));
            }
            _ => TcpOption::Unknown { kind: k, data },
        };
        self.rest = tail;
        Some(Ok(item))
    }
}

/// The options the tracker uses. Also the input of [`TcpOptions::emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift count.
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_perm: bool,
    /// Timestamps (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

impl TcpOptions {
    /// Collects the known options, stopping silently at the end-of-list or
    /// at the first malformed option (what was found before it is kept, as
    /// Linux's conntrack does).
    #[inline]
    pub fn parse(options: &[u8]) -> TcpOptions {
        let mut o = TcpOptions::default();
        for opt in TcpOptionIter::new(options) {
            match opt {
                Ok(TcpOption::MaxSegmentSize(m)) => o.mss = Some(m),
                Ok(TcpOption::WindowScale(w)) => o.wscale = Some(w),
                Ok(TcpOption::SackPermitted) => o.sack_perm = true,
                Ok(TcpOption::Timestamps { tsval, tsecr }) => o.timestamps = Some((tsval, tsecr)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        o
    }

    /// Bytes [`TcpOptions::emit`] writes (a multiple of 4, at most 20).
    #[inline]
    pub fn len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.timestamps.is_some() || self.sack_perm {
            // SACK_PERM + TS = 12; NOP NOP TS = 12; NOP NOP SACK_PERM = 4.
            n += if self.timestamps.is_some() { 12 } else { 4 };
        }
        if self.wscale.is_some() {
            n += 4;
        }
        n
    }

    /// Whether no option is set.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the options in the order and padding Linux uses on a SYN:
    /// MSS; SACK-permitted + timestamps (NOP-padded when only one is
    /// present); NOP + window scale. Returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.len();
        let out = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(m) = self.mss {
            let [a, b] = m.to_be_bytes();
            put(&[kind::MSS, 4, a, b]);
        }
        match (self.sack_perm, self.timestamps) {
            (true, Some(_)) => put(&[kind::SACK_PERM, 2]),
            (false, Some(_)) => put(&[kind::NOP, kind::NOP]),
            (true, None) => put(&[kind::NOP, kind::NOP, kind::SACK_PERM, 2]),
            (false, None) => {}
        }
        if let Some((v, e)) = self.timestamps {
            put(&[kind::TIMESTAMPS, 10]);
            put(&v.to_be_bytes());
            put(&e.to_be_bytes());
        }
        if let Some(w) = self.wscale {
            put(&[kind::NOP, kind::WSCALE, 3, w]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterate() {
        let raw = [2, 4, 5, 0xb4, 1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 9, 9];
        let v: Vec<_> = TcpOptionIter::new(&raw).collect();
        assert_eq!(
            v,
            vec![
                Ok(TcpOption::MaxSegmentSize(1460)),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::SackRange(&raw[8..16])),
                Ok(TcpOption::EndOfList),
            ]
        );
    }

    #[test]
    fn malformed() {
        for raw in [
            &[2u8, 4, 5][..],
            &[3, 1],
            &[3],
            &[2, 3, 5],
            &[8, 9, 0, 0, 0, 0, 0, 0, 0],
            &[5, 2],
        ] {
            let v: Vec<_> = TcpOptionIter::new(raw).collect();
            assert_eq!(v.last(), Some(&Err(Error::Malformed)), "{raw:?}");
        }
        // Known options before a malformed one are kept.
        let o = TcpOptions::parse(&[1, 3, 3, 7, 4, 2, 2, 9]);
        assert_eq!(
            o,
            TcpOptions {
                wscale: Some(7),
                sack_perm: true,
                ..TcpOptions::default()
            }
        );
        // Unknown options are skipped.
        let o = TcpOptions::parse(&[30, 4, 0, 0, 1, 3, 3, 14]);
        assert_eq!(o.wscale, Some(14));
    }

    #[test]
    fn emit_roundtrip() {
        for mss in [None, Some(536)] {
            for wscale in [None, Some(0), Some(14)] {
                for sack_perm in [false, true] {
                    for timestamps in [None, Some((1, 2))] {
                        let o = TcpOptions {
                            mss,
                            wscale,
                            sack_perm,
                            timestamps,
                        };
                        let mut b = [0u8; 40];
                        let n = o.emit(&mut b).unwrap();
                        assert_eq!(n % 4, 0);
                        assert_eq!(TcpOptions::parse(&b[..n]), o);
                    }
                }
            }
        }
        let o = TcpOptions {
            mss: Some(1),
            ..TcpOptions::default()
        };
        assert_eq!(o.emit(&mut [0u8; 3]), Err(Error::BufferTooSmall));
    }
}
