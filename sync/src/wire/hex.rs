//! Hex text: [`parse_hex`] reads the form of a datagram (the golden-vector
//! files and operator hexdumps); [`decode`] and [`encode`] are the strict
//! single-value forms (a key, an attribute shown as hex). The workspace's
//! one hex reader: use it rather than writing another.

use thiserror::Error;

/// A hex text that is not a datagram.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line}: {what}")]
pub struct HexError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub what: String,
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses hex text: lines starting with `#` and blank lines are ignored;
/// bytes are whitespace-separated pairs of hex digits (or longer runs of an
/// even number of digits). A line whose first token has 4 or more digits
/// (optionally ending in `:`) and is followed by more tokens is an
/// offset-prefixed hexdump line (`0010  0a 00 ...`); that first column is
/// skipped.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        let mut rest = &toks[..];
        if let [first, tail @ ..] = rest {
            let f = first.trim_end_matches(':');
            if !tail.is_empty()
                && f.len() >= 4
                && is_hex(f)
                && (first.ends_with(':') || tail.iter().all(|t| t.len() == 2))
            {
                rest = tail;
            }
        }
        for t in rest {
            let bytes = decode(t).ok_or_else(|| HexError {
                line: i.saturating_add(1),
                what: format!("{t:?} is not a hex byte"),
            })?;
            out.extend_from_slice(&bytes);
        }
    }
    Ok(out)
}

/// Decodes one run of hex digit pairs (`"0a1B"`), surrounding whitespace
/// trimmed: `None` for an odd number of digits, a non-hex character or
/// whitespace inside. The strict form, for a single value such as a key.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            let pair = s.get(i..i.saturating_add(2))?;
            if !is_hex(pair) {
                return None;
            }
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

/// Lower-case hex digits of `bytes`, no separators.
pub fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The first `#` comment line of a hex text, without the `#`.
pub fn comment(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(
            parse_hex("# c\n1a 10\n00 08\n").unwrap(),
            [0x1a, 0x10, 0, 8]
        );
        assert_eq!(
            parse_hex("0000  1a 10 00 08\n0004  00 00 03 ea\n").unwrap(),
            [0x1a, 0x10, 0, 8, 0, 0, 3, 0xea]
        );
        assert_eq!(parse_hex("1a100008").unwrap(), [0x1a, 0x10, 0, 8]);
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("1a 1").is_err());
        assert_eq!(comment("# hi\n00"), Some("hi"));
    }

    #[test]
    fn strict_decode_and_encode() {
        assert_eq!(decode(" 0a1B \n"), Some(vec![0x0a, 0x1b]));
        assert_eq!(decode(""), Some(vec![]));
        for bad in ["0a1", "0a 1b", "+1", "zz", "é1"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(encode(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(decode(&encode(&[1, 2, 0xff])), Some(vec![1, 2, 0xff]));
    }
}
