//! The FTP helper's parser: PORT and EPRT commands (client to server), 227
//! (PASV) and 229 (EPSV) replies (server to client), one line at a time.
//!
//! Lines come from [`Lines`], which cuts a TCP payload at line feeds and
//! keeps at most [`MAX_LINE`] bytes of an unfinished line for the next
//! segment. Anything that starts like one of the four but does not parse
//! whole (bad numbers, a byte above 255, port 0, a wrong family, a missing
//! delimiter, an overlong line) is malformed: counted, never expected.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest line kept (RFC 959 has no limit; every real PORT, EPRT,
/// 227 or 229 line fits in far less).
pub const MAX_LINE: usize = 512;

/// A data connection an FTP line announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FtpAnnounce {
    /// The address to connect to; `None` for EPSV (229), whose address is
    /// the server's own.
    pub addr: Option<IpAddr>,
    /// The port to connect to (never 0).
    pub port: u16,
}

/// What one line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// Not a line the helper looks at.
    Other,
    /// An announced data connection.
    Announce(FtpAnnounce),
    /// A PORT, EPRT, 227 or 229 line that does not parse.
    Malformed,
}

/// Parses one line (with or without its CR LF). `from_client`: the line
/// travels from the client (commands), else from the server (replies).
pub fn parse_line(line: &[u8], from_client: bool) -> Line {
    parse_line_span(line, from_client).0
}

/// How the text of an announce is written, to write it again translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `h1,h2,h3,h4,p1,p2` (PORT, 227).
    Rfc959,
    /// `<d>1<d>addr<d>port<d>` (EPRT) with its delimiter.
    Eprt(u8),
    /// `<d><d><d>port<d>` (229) with its delimiter.
    Epsv(u8),
}

/// Where an announce's address and port text sits in its line (or, from
/// [`lines_spans`], in its segment's payload): bytes `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First byte of the text.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
    /// How it is written.
    pub form: Form,
}

/// The longest text [`write_announce`] writes.
pub const MAX_ANNOUNCE_TEXT: usize = 64;

/// Writes `addr` and `port` in `form` into `out`; returns the length
/// (`None` if `form` cannot carry `addr`: an IPv6 address in RFC 959 form,
/// or an address in EPSV form).
pub fn write_announce(
    form: Form,
    addr: Option<IpAddr>,
    port: u16,
    out: &mut [u8; MAX_ANNOUNCE_TEXT],
) -> Option<usize> {
    use std::io::Write;
    let mut w: &mut [u8] = &mut out[..];
    let [p1, p2] = port.to_be_bytes();
    let ok = match (form, addr) {
        (Form::Rfc959, Some(IpAddr::V4(a))) => {
            let [a, b, c, d] = a.octets();
            write!(w, "{a},{b},{c},{d},{p1},{p2}")
        }
        (Form::Eprt(d), Some(a)) => {
            let (d, fam) = (char::from(d), if a.is_ipv4() { 1 } else { 2 });
            write!(w, "{d}{fam}{d}{a}{d}{port}{d}")
        }
        (Form::Epsv(d), None) => {
            let d = char::from(d);
            write!(w, "{d}{d}{d}{port}{d}")
        }
        _ => return None,
    };
    ok.ok()?;
    Some(MAX_ANNOUNCE_TEXT - w.len())
}

/// [`parse_line`], with where the announce's address and port text sits
/// in `line`.
pub fn parse_line_span(line: &[u8], from_client: bool) -> (Line, Option<Span>) {
    let line = trim_eol(line);
    let span = |start: usize, n: usize, form: Form| Span {
        start,
        end: start + n,
        form,
    };
    let r = if from_client {
        if starts_with_ci(line, b"PORT ") {
            parse_rfc959(&line[5..]).map(|(a, n)| (a, span(5, n, Form::Rfc959)))
        } else if starts_with_ci(line, b"EPRT ") {
            parse_eprt(&line[5..]).map(|(a, n)| (a, span(5, n, Form::Eprt(line[5]))))
        } else {
            return (Line::Other, None);
        }
    } else if line.starts_with(b"227 ") {
        // "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)": the numbers
        // start after the parenthesis, or at the first digit without one.
        let rest = &line[4..];
        let start = match rest.iter().position(|&b| b == b'(') {
            Some(p) => p + 1,
            None => match rest.iter().position(u8::is_ascii_digit) {
                Some(p) => p,
                None => return (Line::Malformed, None),
            },
        };
        parse_rfc959(&rest[start..]).map(|(a, n)| (a, span(4 + start, n, Form::Rfc959)))
    } else if line.starts_with(b"229 ") {
        // "229 Entering Extended Passive Mode (|||port|)".
        let rest = &line[4..];
        match rest.iter().position(|&b| b == b'(') {
            Some(p) => parse_epsv(&rest[p + 1..])
                .map(|(a, n)| (a, span(4 + p + 1, n, Form::Epsv(rest[p + 1])))),
            None => None,
        }
    } else {
        return (Line::Other, None);
    };
    match r {
        Some((a, s)) if a.port != 0 => (Line::Announce(a), Some(s)),
        _ => (Line::Malformed, None),
    }
}

/// Whether a line starts like one the helper looks at (an overlong one is
/// then malformed; any other long line is just not ours).
fn interesting(l: &[u8], from_client: bool) -> bool {
    if from_client {
        starts_with_ci(l, b"PORT ") || starts_with_ci(l, b"EPRT ")
    } else {
        l.starts_with(b"227 ") || l.starts_with(b"229 ")
    }
}

fn trim_eol(mut l: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = l {
        l = rest;
    }
    l
}

fn starts_with_ci(l: &[u8], p: &[u8]) -> bool {
    l.len() >= p.len() && l[..p.len()].eq_ignore_ascii_case(p)
}

/// A decimal number of at most `max_digits` digits at the start of `s`,
/// and what follows it.
fn number(s: &[u8], max_digits: usize) -> Option<(u32, &[u8])> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > max_digits {
        return None;
    }
    let v = s[..n]
        .iter()
        .fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
    Some((v, &s[n..]))
}

/// `h1,h2,h3,h4,p1,p2` (RFC 959), each 0..=255; what follows is ignored.
/// Returns the announce and the bytes it took.
fn parse_rfc959(s: &[u8]) -> Option<(FtpAnnounce, usize)> {
    let mut v = [0u8; 6];
    let mut rest = s;
    for (i, slot) in v.iter_mut().enumerate() {
        if i > 0 {
            rest = rest.strip_prefix(b",")?;
        }
        let (n, r) = number(rest, 3)?;
        *slot = u8::try_from(n).ok()?;
        rest = r;
    }
    let a = FtpAnnounce {
        addr: Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
        port: u16::from_be_bytes([v[4], v[5]]),
    };
    Some((a, s.len() - rest.len()))
}

/// A port of 1..=5 digits that fits 16 bits.
fn port(s: &[u8]) -> Option<(u16, &[u8])> {
    let (n, r) = number(s, 5)?;
    Some((u16::try_from(n).ok()?, r))
}

/// `<d>1<d>192.0.2.1<d>port<d>` or `<d>2<d>2001:db8::1<d>port<d>`
/// (RFC 2428); the delimiter is any printable character but a digit.
/// Returns the announce and the bytes it took (through the closing
/// delimiter).
fn parse_eprt(s: &[u8]) -> Option<(FtpAnnounce, usize)> {
    let (&d, rest) = s.split_first()?;
    if !(33..=126).contains(&d) || d.is_ascii_digit() {
        return None;
    }
    let mut parts = rest.splitn(4, |&b| b == d);
    let fam = parts.next()?;
    let addr_text = parts.next()?;
    let addr = std::str::from_utf8(addr_text).ok()?;
    let port_text = parts.next()?;
    let (p, tail) = port(port_text)?;
    if !tail.is_empty() {
        return None;
    }
    parts.next()?; // the closing delimiter
    let taken = 4 + fam.len() + addr_text.len() + port_text.len();
    let addr = match fam {
        b"1" => IpAddr::V4(addr.parse::<Ipv4Addr>().ok()?),
        b"2" => IpAddr::V6(addr.parse::<Ipv6Addr>().ok()?),
        _ => return None,
    };
    Some((
        FtpAnnounce {
            addr: Some(addr),
            port: p,
        },
        taken,
    ))
}

/// `<d><d><d>port<d>` (RFC 2428 229 reply, after the parenthesis).
/// Returns the announce and the bytes it took (through the closing
/// delimiter).
fn parse_epsv(s: &[u8]) -> Option<(FtpAnnounce, usize)> {
    let (&d, rest) = s.split_first()?;
    if !(33..=126).contains(&d) || d.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(&[d, d][..])?;
    let (p, tail) = port(rest)?;
    if tail.first() != Some(&d) {
        return None;
    }
    let taken = 3 + (rest.len() - tail.len()) + 1;
    Some((
        FtpAnnounce {
            addr: None,
            port: p,
        },
        taken,
    ))
}

/// One direction of a control connection: where the next segment must
/// start, and the unfinished line carried to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carry {
    /// Whether a segment was seen (`next_seq` is known).
    pub known: bool,
    /// Sequence number the next segment must start at.
    pub next_seq: u32,
    /// Inside a line whose start was not seen (after a gap or an overlong
    /// line): bytes up to the next line feed are not looked at.
    pub skipping: bool,
    /// The bytes of the unfinished line.
    pub bytes: Vec<u8>,
}

/// What [`lines`] found in one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentLines {
    /// Malformed lines (including overlong ones).
    pub malformed: u32,
}

/// Cuts the payload of a segment starting at sequence number `seq` into
/// lines, calls `found` for every announce, and leaves the segment's
/// unfinished line in `carry` (at most [`MAX_LINE`] bytes: a longer one is
/// malformed and skipped to its end). A segment that starts before
/// `carry.next_seq` (a retransmission) is not looked at again; after a gap
/// the line the segment starts inside of is skipped, so text in the middle
/// of a line is never taken for a command.
pub fn lines(
    carry: &mut Carry,
    seq: u32,
    payload: &[u8],
    from_client: bool,
    mut found: impl FnMut(FtpAnnounce),
) -> SegmentLines {
    lines_spans(carry, seq, payload, from_client, |a, _| found(a))
}

/// [`lines`], also giving for each announce where its address and port
/// text sits in `payload` (`None` when its line began in an earlier
/// segment: only the part in this segment could be rewritten).
pub fn lines_spans(
    carry: &mut Carry,
    seq: u32,
    payload: &[u8],
    from_client: bool,
    mut found: impl FnMut(FtpAnnounce, Option<Span>),
) -> SegmentLines {
    let mut out = SegmentLines::default();
    if payload.is_empty() {
        return out;
    }
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    if carry.known && carry.next_seq != seq {
        // Serial-number comparison (RFC 1982): behind means retransmitted.
        let behind = carry.next_seq.wrapping_sub(seq) < 1 << 31;
        if behind {
            return out;
        }
        carry.bytes.clear();
        carry.skipping = true;
    }
    carry.known = true;
    carry.next_seq = seq.wrapping_add(len);
    let mut rest = payload;
    if carry.skipping {
        match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                rest = &rest[nl + 1..];
                carry.skipping = false;
            }
            None => return out,
        }
    }
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let at = payload.len() - rest.len();
        let whole = carry.bytes.is_empty();
        let (head, tail) = rest.split_at(nl + 1);
        rest = tail;
        let line: &[u8] = if carry.bytes.is_empty() {
            head
        } else if carry.bytes.len() + head.len() > MAX_LINE {
            out.malformed += u32::from(interesting(&carry.bytes, from_client));
            carry.bytes.clear();
            continue;
        } else {
            carry.bytes.extend_from_slice(head);
            &carry.bytes
        };
        if line.len() > MAX_LINE {
            out.malformed += u32::from(interesting(line, from_client));
        } else {
            match parse_line_span(line, from_client) {
                (Line::Announce(a), span) => found(
                    a,
                    span.filter(|_| whole).map(|s| Span {
                        start: s.start + at,
                        end: s.end + at,
                        form: s.form,
                    }),
                ),
                (Line::Malformed, _) => out.malformed += 1,
                (Line::Other, _) => {}
            }
        }
        carry.bytes.clear();
    }
    if !rest.is_empty() {
        if carry.bytes.len() + rest.len() > MAX_LINE {
            let start = if carry.bytes.is_empty() {
                rest
            } else {
                &carry.bytes[..]
            };
            out.malformed += u32::from(interesting(start, from_client));
            carry.bytes.clear();
            carry.skipping = true;
        } else {
            carry.bytes.extend_from_slice(rest);
        }
    }
    out
}
