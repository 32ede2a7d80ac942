//! The election's UDP format: a small versioned header, a body, and a
//! truncated HMAC-SHA256 tag under a pre-shared key; a per-sender counter
//! rejects replays.
//!
//! ```text
//! 0      2    3     4          8              16         len-16    len
//! +------+----+-----+----------+--------------+-- body --+-- tag --+
//! | "FE" | v1 | typ | sender   | counter      |          | 16 B    |
//! +------+----+-----+----------+--------------+----------+---------+
//! ```
//! All integers are big-endian. The tag is the first 16 bytes of
//! HMAC-SHA256(key, everything before the tag).
//!
//! Bodies (`report` = priority u8, flags u8 (bit 0 synced), seq u64,
//! role u8; `table` = flags u8 (bit 0 master present, bit 1 designated
//! present), master u32, designated u32, count u8, then `count` entries of
//! node u32, priority u8, flags u8 (bit 0 synced, bit 1 dead), seq u64,
//! role u8):
//!
//! | type | message              | body                            |
//! |------|----------------------|---------------------------------|
//! | 1    | SVC_CHECK            | nonce u32, report               |
//! | 2    | SVC_CHECK_REPLY      | nonce u32, ok u8 (0/1), table   |
//! | 3    | SVC_SHUTDOWN         | table                           |
//! | 4    | DNSTR_TAKEOVER       | attempt u32, report             |
//! | 5    | DNSTR_TAKEOVER_DENY  | attempt u32                     |
//! | 6    | UPSTR_TAKEOVER       | attempt u32, report             |
//! | 7    | UPSTR_TAKEOVER_DENY  | attempt u32                     |
//! | 8    | SVC_TAKEOVER         | table                           |
//!
//! Decoding checks, in order: length and magic, version, the tag (constant
//! time), the body (every field, reserved flag bits zero, no trailing
//! bytes), then the counter. Only a message that passes every check moves
//! the sender's counter, so a forged or broken datagram cannot block a
//! genuine one. Counters are strictly increasing per sender; a reordered
//! datagram is dropped like a lost one (the state machine tolerates loss).
//! A sender starts its counter from the driver-provided base (wall-clock
//! microseconds), so a restarted node is accepted again.

use serde::Serialize;

use super::msg::{Body, Message, SelfReport};
use super::table::{Entry, Freshness, NodeId, Role, StatusTable, MAX_NODES};
pub use crate::sealed::{KeyTooShort, MIN_KEY_LEN, TAG_LEN};
use crate::sealed::{Reader, Sealer, Short};

/// Magic bytes: "FE" (failover election).
pub const MAGIC: [u8; 2] = *b"FE";
/// Format version.
pub const VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 16;
/// Largest datagram the codec produces (a full table in a reply).
pub const MAX_DATAGRAM: usize = HEADER_LEN + 5 + TABLE_MAX + TAG_LEN;

const ENTRY_LEN: usize = 15;
const TABLE_HEAD: usize = 10;
const TABLE_MAX: usize = TABLE_HEAD + MAX_NODES * ENTRY_LEN;

/// Why a datagram was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than header plus tag, or wrong magic.
    #[error("not an election datagram")]
    NotOurs,
    /// A version this build does not speak.
    #[error("unsupported version {0}")]
    Version(u8),
    /// The tag does not match: wrong key, or altered.
    #[error("authentication failed")]
    BadTag,
    /// Authentic but not well formed (unknown type, bad field, wrong length).
    #[error("malformed message")]
    Malformed,
    /// The counter is not above the last one accepted from this sender, or
    /// the sender is ourselves.
    #[error("replayed message")]
    Replayed,
}

/// What the codec counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CodecStats {
    /// Datagrams accepted.
    pub accepted: u64,
    /// Datagrams encoded.
    pub encoded: u64,
    /// Rejected: too short, wrong magic or version.
    pub malformed_header: u64,
    /// Rejected: authentication tag mismatch.
    pub unauthenticated: u64,
    /// Rejected: authentic, but the body did not parse.
    pub malformed: u64,
    /// Rejected: counter not increasing (replay, reordering) or our own id.
    pub replayed: u64,
}

impl CodecStats {
    /// Every rejected datagram.
    pub fn rejected(&self) -> u64 {
        self.malformed_header + self.unauthenticated + self.malformed + self.replayed
    }
}

/// Authenticating codec of one node (the envelope is `crate::sealed`).
#[derive(Clone, Debug)]
pub struct Codec {
    sealer: Sealer,
    stats: CodecStats,
}

impl From<Short> for DecodeError {
    fn from(_: Short) -> DecodeError {
        DecodeError::Malformed
    }
}

impl Codec {
    /// A codec for `node` with the cluster's pre-shared key; the first
    /// message sent carries `initial_counter + 1`.
    pub fn new(node: NodeId, key: &[u8], initial_counter: u64) -> Result<Codec, KeyTooShort> {
        Ok(Codec {
            sealer: Sealer::new(node.0, key, initial_counter)?,
            stats: CodecStats::default(),
        })
    }

    /// Takes the keys of a key ring (rotation; see `crate::sealed`).
    pub fn set_keys(&mut self, ring: &crate::keyring::Keyring) -> Result<(), KeyTooShort> {
        self.sealer.set_keys(ring)
    }

    /// Counters so far.
    pub fn stats(&self) -> CodecStats {
        self.stats
    }

    /// Encode `body` from this node into `out` (cleared first).
    pub fn encode(&mut self, body: &Body, out: &mut Vec<u8>) {
        let counter = self.sealer.take_counter();
        encode_unsigned(NodeId(self.sealer.node()), counter, body, out);
        self.sealer.seal(out);
        self.stats.encoded += 1;
    }

    /// Decode and authenticate one datagram. Never panics; every rejection
    /// is counted.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Message, DecodeError> {
        let r = self.decode_inner(bytes);
        match r {
            Ok(_) => self.stats.accepted += 1,
            Err(DecodeError::NotOurs | DecodeError::Version(_)) => self.stats.malformed_header += 1,
            Err(DecodeError::BadTag) => self.stats.unauthenticated += 1,
            Err(DecodeError::Malformed) => self.stats.malformed += 1,
            Err(DecodeError::Replayed) => self.stats.replayed += 1,
        }
        r
    }

    fn decode_inner(&mut self, bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() < HEADER_LEN + TAG_LEN || bytes[0..2] != MAGIC {
            return Err(DecodeError::NotOurs);
        }
        if bytes[2] != VERSION {
            return Err(DecodeError::Version(bytes[2]));
        }
        let signed = self.sealer.open(bytes).ok_or(DecodeError::BadTag)?;
        let (sender, counter, body) = parse_unsigned(signed)?;
        if !self.sealer.accept(sender.0, counter) {
            return Err(DecodeError::Replayed);
        }
        Ok(Message { sender, body })
    }
}

fn type_code(body: &Body) -> u8 {
    match body {
        Body::SvcCheck { .. } => 1,
        Body::SvcCheckReply { .. } => 2,
        Body::SvcShutdown { .. } => 3,
        Body::DnstrTakeover { .. } => 4,
        Body::DnstrTakeoverDeny { .. } => 5,
        Body::UpstrTakeover { .. } => 6,
        Body::UpstrTakeoverDeny { .. } => 7,
        Body::SvcTakeover { .. } => 8,
    }
}

/// Header and body without the tag (exposed for tests and tools).
pub fn encode_unsigned(sender: NodeId, counter: u64, body: &Body, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(type_code(body));
    out.extend_from_slice(&sender.0.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    match body {
        Body::SvcCheck { nonce, report } => {
            out.extend_from_slice(&nonce.to_be_bytes());
            put_report(out, report);
        }
        Body::SvcCheckReply { nonce, ok, table } => {
            out.extend_from_slice(&nonce.to_be_bytes());
            out.push(u8::from(*ok));
            put_table(out, table);
        }
        Body::SvcShutdown { table } | Body::SvcTakeover { table } => put_table(out, table),
        Body::DnstrTakeover { attempt, report } | Body::UpstrTakeover { attempt, report } => {
            out.extend_from_slice(&attempt.to_be_bytes());
            put_report(out, report);
        }
        Body::DnstrTakeoverDeny { attempt } | Body::UpstrTakeoverDeny { attempt } => {
            out.extend_from_slice(&attempt.to_be_bytes())
        }
    }
}

fn put_report(out: &mut Vec<u8>, r: &SelfReport) {
    out.push(r.priority);
    out.push(u8::from(r.freshness.synced));
    out.extend_from_slice(&r.freshness.seq.to_be_bytes());
    out.push(r.role.code());
}

fn put_table(out: &mut Vec<u8>, t: &StatusTable) {
    let flags = u8::from(t.master().is_some()) | (u8::from(t.designated().is_some()) << 1);
    out.push(flags);
    out.extend_from_slice(&t.master().map_or(0, |n| n.0).to_be_bytes());
    out.extend_from_slice(&t.designated().map_or(0, |n| n.0).to_be_bytes());
    // A StatusTable never holds more than MAX_NODES (32) entries.
    let entries = &t.entries()[..t.entries().len().min(MAX_NODES)];
    out.push(u8::try_from(entries.len()).unwrap_or(u8::MAX));
    for e in entries {
        out.extend_from_slice(&e.node.0.to_be_bytes());
        out.push(e.priority);
        out.push(u8::from(e.freshness.synced) | (u8::from(e.dead) << 1));
        out.extend_from_slice(&e.freshness.seq.to_be_bytes());
        out.push(e.role.code());
    }
}

impl Reader<'_> {
    fn flags(&mut self, allowed: u8) -> Result<u8, DecodeError> {
        let f = self.u8()?;
        if f & !allowed != 0 {
            return Err(DecodeError::Malformed);
        }
        Ok(f)
    }

    fn role(&mut self) -> Result<Role, DecodeError> {
        Role::from_code(self.u8()?).ok_or(DecodeError::Malformed)
    }

    fn report(&mut self) -> Result<SelfReport, DecodeError> {
        let priority = self.u8()?;
        let synced = self.flags(1)? & 1 != 0;
        let seq = self.u64()?;
        let role = self.role()?;
        Ok(SelfReport {
            priority,
            freshness: Freshness { synced, seq },
            role,
        })
    }

    fn table(&mut self) -> Result<StatusTable, DecodeError> {
        let flags = self.flags(0b11)?;
        let master = self.u32()?;
        let designated = self.u32()?;
        let count = usize::from(self.u8()?);
        if count > MAX_NODES {
            return Err(DecodeError::Malformed);
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let node = NodeId(self.u32()?);
            let priority = self.u8()?;
            let f = self.flags(0b11)?;
            let seq = self.u64()?;
            let role = self.role()?;
            entries.push(Entry {
                node,
                priority,
                freshness: Freshness {
                    synced: f & 1 != 0,
                    seq,
                },
                role,
                dead: f & 2 != 0,
            });
        }
        let master = (flags & 1 != 0).then_some(NodeId(master));
        let designated = (flags & 2 != 0).then_some(NodeId(designated));
        StatusTable::from_parts(entries, master, designated).map_err(|_| DecodeError::Malformed)
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed),
        }
    }
}

/// Parse header and body of an (already authenticated) datagram without
/// its tag. Returns sender, counter and body.
pub fn parse_unsigned(bytes: &[u8]) -> Result<(NodeId, u64, Body), DecodeError> {
    let mut r = Reader::new(bytes);
    let head = r.take(HEADER_LEN).map_err(|_| DecodeError::NotOurs)?;
    if head[0..2] != MAGIC {
        return Err(DecodeError::NotOurs);
    }
    if head[2] != VERSION {
        return Err(DecodeError::Version(head[2]));
    }
    let typ = head[3];
    let sender = NodeId(u32::from_be_bytes([head[4], head[5], head[6], head[7]]));
    let mut c = [0u8; 8];
    c.copy_from_slice(&head[8..16]);
    let counter = u64::from_be_bytes(c);
    let body = match typ {
        1 => Body::SvcCheck {
            nonce: r.u32()?,
            report: r.report()?,
        },
        2 => Body::SvcCheckReply {
            nonce: r.u32()?,
            ok: r.bool()?,
            table: r.table()?,
        },
        3 => Body::SvcShutdown { table: r.table()? },
        4 => Body::DnstrTakeover {
            attempt: r.u32()?,
            report: r.report()?,
        },
        5 => Body::DnstrTakeoverDeny { attempt: r.u32()? },
        6 => Body::UpstrTakeover {
            attempt: r.u32()?,
            report: r.report()?,
        },
        7 => Body::UpstrTakeoverDeny { attempt: r.u32()? },
        8 => Body::SvcTakeover { table: r.table()? },
        _ => return Err(DecodeError::Malformed),
    };
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed);
    }
    Ok((sender, counter, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-test-key";

    fn table() -> StatusTable {
        StatusTable::from_parts(
            vec![
                Entry {
                    node: NodeId(1),
                    priority: 200,
                    freshness: Freshness {
                        synced: true,
                        seq: 7,
                    },
                    role: Role::Primary,
                    dead: false,
                },
                Entry {
                    node: NodeId(2),
                    priority: 100,
                    freshness: Freshness {
                        synced: false,
                        seq: 0x0102,
                    },
                    role: Role::Backup,
                    dead: true,
                },
            ],
            Some(NodeId(1)),
            None,
        )
        .unwrap()
    }

    /// Golden bytes: construct and emit must give exactly these; parse must
    /// give the value back.
    #[test]
    fn golden_svc_check_reply() {
        let body = Body::SvcCheckReply {
            nonce: 0x0a0b0c0d,
            ok: true,
            table: table(),
        };
        let mut c = Codec::new(NodeId(1), KEY, 41).unwrap();
        let mut out = Vec::new();
        c.encode(&body, &mut out);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "464501020000000100000000000000",
                "2a", // counter 42
                "0a0b0c0d01",
                "01",
                "00000001",
                "00000000",
                "02",
                "00000001",
                "c8",
                "01",
                "0000000000000007",
                "04",
                "00000002",
                "64",
                "02",
                "0000000000000102",
                "02",
                // Tag checked independently with Python's hmac/hashlib.
                "0149f943ef4caf5566b97606e043a9ee",
            )
        );
        let mut rx = Codec::new(NodeId(2), KEY, 0).unwrap();
        let m = rx.decode(&out).unwrap();
        assert_eq!(m.sender, NodeId(1));
        assert_eq!(m.body, body);
    }

    #[test]
    fn golden_deny() {
        let mut c = Codec::new(NodeId(9), KEY, 0).unwrap();
        let mut out = Vec::new();
        c.encode(&Body::UpstrTakeoverDeny { attempt: 5 }, &mut out);
        assert_eq!(out.len(), HEADER_LEN + 4 + TAG_LEN);
        assert_eq!(
            &out[..HEADER_LEN + 4],
            &[0x46, 0x45, 1, 7, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5]
        );
    }

    #[test]
    fn rejects_wrong_key_replay_own_and_tampering() {
        let mut tx = Codec::new(NodeId(1), KEY, 100).unwrap();
        let mut rx = Codec::new(NodeId(2), KEY, 0).unwrap();
        let mut other = Codec::new(NodeId(2), b"another-key-of-16+", 0).unwrap();
        let mut out = Vec::new();
        tx.encode(&Body::DnstrTakeoverDeny { attempt: 1 }, &mut out);
        assert_eq!(other.decode(&out), Err(DecodeError::BadTag));
        let mut bad = out.clone();
        bad[HEADER_LEN] ^= 1;
        assert_eq!(rx.decode(&bad), Err(DecodeError::BadTag));
        assert!(rx.decode(&out).is_ok());
        assert_eq!(rx.decode(&out), Err(DecodeError::Replayed));
        let mut own = Codec::new(NodeId(1), KEY, 0).unwrap();
        assert_eq!(own.decode(&out), Err(DecodeError::Replayed));
        let mut v = out.clone();
        v[2] = 2;
        assert_eq!(rx.decode(&v), Err(DecodeError::Version(2)));
        assert_eq!(rx.decode(&out[..10]), Err(DecodeError::NotOurs));
        let s = rx.stats();
        assert_eq!(
            (
                s.accepted,
                s.unauthenticated,
                s.replayed,
                s.malformed_header
            ),
            (1, 1, 1, 2)
        );
        assert!(Codec::new(NodeId(1), b"short", 0).is_err());
    }

    #[test]
    fn authentic_but_malformed_is_counted() {
        let mut tx = Codec::new(NodeId(1), KEY, 0).unwrap();
        let mut rx = Codec::new(NodeId(2), KEY, 0).unwrap();
        // Unknown type 99, correctly signed.
        let mut out = Vec::new();
        encode_unsigned(
            NodeId(1),
            5,
            &Body::DnstrTakeoverDeny { attempt: 1 },
            &mut out,
        );
        out[3] = 99;
        tx.sealer.seal(&mut out);
        assert_eq!(rx.decode(&out), Err(DecodeError::Malformed));
        // A malformed message does not move the counter: a genuine one with
        // a lower counter is still accepted.
        let mut good = Vec::new();
        tx.encode(&Body::DnstrTakeoverDeny { attempt: 1 }, &mut good);
        assert!(rx.decode(&good).is_ok());
        assert_eq!(rx.stats().malformed, 1);
    }
}
