//! Reading the hex text form of a datagram (the golden-vector files and
//! operator hexdumps).

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
            if !is_hex(t) || t.len() % 2 != 0 {
                return Err(HexError {
                    line: i.saturating_add(1),
                    what: format!("{t:?} is not a hex byte"),
                });
            }
            for k in (0..t.len()).step_by(2) {
                let b = t
                    .get(k..k.saturating_add(2))
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| HexError {
                        line: i.saturating_add(1),
                        what: format!("{t:?} is not hex"),
                    })?;
                out.push(b);
            }
        }
    }
    Ok(out)
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
}
