//! The cluster's UDP format: the election's framing (see
//! [`crate::election::wire`]) with its own magic, so both can share a port
//! without confusion.
//!
//! ```text
//! 0      2    3     4          8              16         len-16    len
//! +------+----+-----+----------+--------------+-- body --+-- tag --+
//! | "FC" | v2 | typ | sender   | counter      |          | 16 B    |
//! +------+----+-----+----------+--------------+----------+---------+
//! ```
//! Big-endian; the tag is the first 16 bytes of HMAC-SHA256(key,
//! everything before it).
//!
//! | type | message   | body |
//! |------|-----------|------|
//! | 1    | heartbeat | incarnation u64, state u8 (1 joining, 2 ready, 3 draining), map_version u64, applied_version u64, flows u64, owned u32, release_ack u64 |
//! | 2    | map       | version u64, master u32, buckets u32, slots u8, count u8, `count` x (node u32, incarnation u64, flags u8: bit 0 eligible, 1 dead, 2 drained), `buckets` owner indices u8, `buckets` x `slots` backup indices u8 (0xff = none, trailing) |
//! | 3    | released  | version u64, buckets u32, bitmap of ceil(buckets/8) bytes (bucket b = byte b/8, bit b%8; bits past `buckets` zero) |
//! | 4    | request   | kind u8 (1 drain, 2 undrain, 3 rebalance), node u32 (0 for rebalance) |
//!
//! Indices point into the map's node table. Decoding checks length and
//! magic, version, the tag (constant time), that the sender is a
//! configured node other than us, the body (every field, sizes bounded by
//! [`MAX_NODES`](super::MAX_NODES), [`MAX_BUCKETS`] and [`MAX_DATAGRAM`],
//! no trailing bytes), then the counter (strictly increasing per sender).
//! Only a message that passes every check moves the sender's counter.

use std::collections::BTreeMap;

use ftfw_dataplane::buckets::{BucketSet, MAX_BUCKETS};
use serde::Serialize;

use super::map::{BucketMap, MapNode};
use super::msg::{Body, Heartbeat, Message, NodeState, Request};
use super::{NodeId, MAX_NODES};
pub use crate::sealed::TAG_LEN;
use crate::sealed::{KeyTooShort, Reader, Sealer, Short};

/// Magic bytes: "FC" (flow cluster).
pub const MAGIC: [u8; 2] = *b"FC";
/// Format version. 2: buckets come from the steering hash (version 1
/// members bucketed flows by the 64-bit flow hash; the two would split
/// flows differently, so they refuse each other's messages, counted as
/// `malformed_header`).
pub const VERSION: u8 = 2;
/// Header length.
pub const HEADER_LEN: usize = 16;
/// Largest datagram accepted or produced (the largest UDP payload).
pub const MAX_DATAGRAM: usize = 65_507;
/// Backup index meaning "no backup in this slot".
const NO_BACKUP: u8 = 0xff;
const MAP_FIXED: usize = 8 + 4 + 4 + 1 + 1;
const MAP_NODE_LEN: usize = 13;

/// The encoded length of a map with `buckets` buckets and up to `backups`
/// backups each, `MAX_NODES` nodes: the coordinator refuses a
/// configuration whose maps would not fit in [`MAX_DATAGRAM`].
pub fn map_datagram_len(buckets: u32, backups: u8) -> usize {
    HEADER_LEN
        + MAP_FIXED
        + MAX_NODES * MAP_NODE_LEN
        + (buckets as usize) * (1 + usize::from(backups))
        + TAG_LEN
}

/// Why a datagram was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than header plus tag, longer than [`MAX_DATAGRAM`], or wrong
    /// magic.
    #[error("not a cluster datagram")]
    NotOurs,
    /// A version this build does not speak.
    #[error("unsupported version {0}")]
    Version(u8),
    /// The tag does not match: wrong key, or altered.
    #[error("authentication failed")]
    BadTag,
    /// Authentic, but the sender is not a configured node.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// Authentic but not well formed.
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
    /// Rejected: too short or long, wrong magic or version.
    pub malformed_header: u64,
    /// Rejected: authentication tag mismatch.
    pub unauthenticated: u64,
    /// Rejected: authentic, from a node not in the configuration.
    pub unknown_node: u64,
    /// Rejected: authentic, but the body did not parse.
    pub malformed: u64,
    /// Rejected: counter not increasing (replay, reordering) or our own id.
    pub replayed: u64,
}

impl CodecStats {
    /// Every rejected datagram.
    pub fn rejected(&self) -> u64 {
        self.malformed_header
            + self.unauthenticated
            + self.unknown_node
            + self.malformed
            + self.replayed
    }
}

/// The authenticating codec of one cluster node.
/// (The envelope, key and counters are `crate::sealed`.)
#[derive(Clone, Debug)]
pub struct Codec {
    nodes: Vec<NodeId>,
    sealer: Sealer,
    stats: CodecStats,
}

impl From<Short> for DecodeError {
    fn from(_: Short) -> DecodeError {
        DecodeError::Malformed
    }
}

impl Codec {
    /// A codec for `node` among the configured `nodes`, with the cluster's
    /// pre-shared key; the first message sent carries `initial_counter + 1`
    /// (a restarted node passes a larger base, e.g. its start time in
    /// microseconds, so its peers accept it again).
    pub fn new(
        node: NodeId,
        nodes: &[NodeId],
        key: &[u8],
        initial_counter: u64,
    ) -> Result<Codec, KeyTooShort> {
        let sealer = Sealer::new(node, key, initial_counter)?;
        let mut nodes = nodes.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        Ok(Codec {
            nodes,
            sealer,
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

    /// Encodes `body` from this node into `out` (cleared first).
    pub fn encode(&mut self, body: &Body, out: &mut Vec<u8>) {
        let counter = self.sealer.take_counter();
        encode_unsigned(self.sealer.node(), counter, body, out);
        self.sealer.seal(out);
        self.stats.encoded += 1;
    }

    /// Decodes and authenticates one datagram. Never panics; every
    /// rejection is counted.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Message, DecodeError> {
        let r = self.decode_inner(bytes);
        let s = &mut self.stats;
        match r {
            Ok(_) => s.accepted += 1,
            Err(DecodeError::NotOurs | DecodeError::Version(_)) => s.malformed_header += 1,
            Err(DecodeError::BadTag) => s.unauthenticated += 1,
            Err(DecodeError::UnknownNode(_)) => s.unknown_node += 1,
            Err(DecodeError::Malformed) => s.malformed += 1,
            Err(DecodeError::Replayed) => s.replayed += 1,
        }
        r
    }

    fn decode_inner(&mut self, bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() < HEADER_LEN + TAG_LEN || bytes.len() > MAX_DATAGRAM || bytes[0..2] != MAGIC
        {
            return Err(DecodeError::NotOurs);
        }
        if bytes[2] != VERSION {
            return Err(DecodeError::Version(bytes[2]));
        }
        let signed = self.sealer.open(bytes).ok_or(DecodeError::BadTag)?;
        let sender = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if self.nodes.binary_search(&sender).is_err() {
            return Err(DecodeError::UnknownNode(sender));
        }
        let (sender, counter, body) = parse_unsigned(signed)?;
        if !self.sealer.accept(sender, counter) {
            return Err(DecodeError::Replayed);
        }
        Ok(Message { sender, body })
    }
}

fn type_code(body: &Body) -> u8 {
    match body {
        Body::Heartbeat(_) => 1,
        Body::Map(_) => 2,
        Body::Released { .. } => 3,
        Body::Request(_) => 4,
    }
}

/// Header and body without the tag (exposed for tests and tools).
pub fn encode_unsigned(sender: NodeId, counter: u64, body: &Body, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(type_code(body));
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    match body {
        Body::Heartbeat(h) => {
            out.extend_from_slice(&h.incarnation.to_be_bytes());
            out.push(h.state.code());
            out.extend_from_slice(&h.map_version.to_be_bytes());
            out.extend_from_slice(&h.applied_version.to_be_bytes());
            out.extend_from_slice(&h.flows.to_be_bytes());
            out.extend_from_slice(&h.owned.to_be_bytes());
            out.extend_from_slice(&h.release_ack.to_be_bytes());
        }
        Body::Map(m) => put_map(out, m),
        Body::Released { version, buckets } => {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&buckets.universe().to_be_bytes());
            let start = out.len();
            out.resize(start + buckets.universe().div_ceil(8) as usize, 0);
            for b in buckets.iter() {
                out[start + (b / 8) as usize] |= 1 << (b % 8);
            }
        }
        Body::Request(r) => {
            let (kind, node) = match r {
                Request::Drain(n) => (1u8, *n),
                Request::Undrain(n) => (2, *n),
                Request::Rebalance => (3, 0),
            };
            out.push(kind);
            out.extend_from_slice(&node.to_be_bytes());
        }
    }
}

/// A map's node table holds at most `MAX_NODES` (16) entries, so an index
/// fits a byte.
fn index_of(m: &BucketMap, node: NodeId) -> u8 {
    let i = m.nodes().iter().position(|e| e.node == node).unwrap_or(0);
    u8::try_from(i).unwrap_or(NO_BACKUP)
}

fn put_map(out: &mut Vec<u8>, m: &BucketMap) {
    let slots = m.backups().iter().map(Vec::len).max().unwrap_or(0);
    out.extend_from_slice(&m.version().to_be_bytes());
    out.extend_from_slice(&m.master().to_be_bytes());
    out.extend_from_slice(&m.buckets().to_be_bytes());
    out.push(u8::try_from(slots).unwrap_or(0));
    out.push(u8::try_from(m.nodes().len()).unwrap_or(0));
    for e in m.nodes() {
        out.extend_from_slice(&e.node.to_be_bytes());
        out.extend_from_slice(&e.incarnation.to_be_bytes());
        out.push(u8::from(e.eligible) | u8::from(e.dead) << 1 | u8::from(e.drained) << 2);
    }
    // Indices by a lookup table: the map's nodes are few and sorted.
    let idx: BTreeMap<NodeId, u8> = m
        .nodes()
        .iter()
        .map(|e| (e.node, index_of(m, e.node)))
        .collect();
    let at = |n: &NodeId| idx.get(n).copied().unwrap_or(NO_BACKUP);
    out.extend(m.owners().iter().map(at));
    for bk in m.backups() {
        out.extend(bk.iter().map(at));
        out.extend(std::iter::repeat_n(NO_BACKUP, slots - bk.len()));
    }
}

impl Reader<'_> {
    fn heartbeat(&mut self) -> Result<Heartbeat, DecodeError> {
        Ok(Heartbeat {
            incarnation: self.u64()?,
            state: NodeState::from_code(self.u8()?).ok_or(DecodeError::Malformed)?,
            map_version: self.u64()?,
            applied_version: self.u64()?,
            flows: self.u64()?,
            owned: self.u32()?,
            release_ack: self.u64()?,
        })
    }

    fn map(&mut self) -> Result<BucketMap, DecodeError> {
        let version = self.u64()?;
        let master = self.u32()?;
        let buckets = self.u32()?;
        let slots = usize::from(self.u8()?);
        let count = usize::from(self.u8()?);
        if buckets == 0
            || buckets > MAX_BUCKETS
            || count == 0
            || count > MAX_NODES
            || slots >= count
        {
            return Err(DecodeError::Malformed);
        }
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            let node = self.u32()?;
            let incarnation = self.u64()?;
            let f = self.u8()?;
            if f & !0b111 != 0 {
                return Err(DecodeError::Malformed);
            }
            nodes.push(MapNode {
                node,
                incarnation,
                eligible: f & 1 != 0,
                dead: f & 2 != 0,
                drained: f & 4 != 0,
            });
        }
        let n = buckets as usize;
        let node_at = |i: u8| nodes.get(usize::from(i)).map(|e| e.node);
        let owners = self
            .take(n)?
            .iter()
            .map(|&i| node_at(i).ok_or(DecodeError::Malformed))
            .collect::<Result<Vec<_>, _>>()?;
        let raw = self.take(n.checked_mul(slots).ok_or(DecodeError::Malformed)?)?;
        let mut backups = Vec::with_capacity(n);
        for chunk in raw
            .chunks(slots.max(1))
            .take(if slots == 0 { 0 } else { n })
        {
            let used = chunk.iter().take_while(|&&i| i != NO_BACKUP).count();
            if chunk[used..].iter().any(|&i| i != NO_BACKUP) {
                return Err(DecodeError::Malformed);
            }
            let bk = chunk[..used]
                .iter()
                .map(|&i| node_at(i).ok_or(DecodeError::Malformed))
                .collect::<Result<Vec<_>, _>>()?;
            backups.push(bk);
        }
        if slots == 0 {
            backups.resize(n, Vec::new());
        }
        BucketMap::from_parts(version, master, owners, backups, nodes)
            .map_err(|_| DecodeError::Malformed)
    }

    fn released(&mut self) -> Result<Body, DecodeError> {
        let version = self.u64()?;
        let universe = self.u32()?;
        if universe == 0 || universe > MAX_BUCKETS {
            return Err(DecodeError::Malformed);
        }
        let bytes = self.take(universe.div_ceil(8) as usize)?;
        let mut set = BucketSet::empty(universe);
        for (i, &byte) in (0u32..).zip(bytes) {
            for bit in 0..8 {
                if byte >> bit & 1 == 1 && !set.insert(i * 8 + bit) {
                    return Err(DecodeError::Malformed);
                }
            }
        }
        Ok(Body::Released {
            version,
            buckets: set,
        })
    }

    fn request(&mut self) -> Result<Request, DecodeError> {
        let kind = self.u8()?;
        let node = self.u32()?;
        match (kind, node) {
            (1, n) => Ok(Request::Drain(n)),
            (2, n) => Ok(Request::Undrain(n)),
            (3, 0) => Ok(Request::Rebalance),
            _ => Err(DecodeError::Malformed),
        }
    }
}

/// Parses header and body of an (already authenticated) datagram without
/// its tag: sender, counter and body.
pub fn parse_unsigned(bytes: &[u8]) -> Result<(NodeId, u64, Body), DecodeError> {
    let mut r = Reader::new(bytes);
    let head = r.take(HEADER_LEN).map_err(|_| DecodeError::NotOurs)?;
    if head[0..2] != MAGIC {
        return Err(DecodeError::NotOurs);
    }
    if head[2] != VERSION {
        return Err(DecodeError::Version(head[2]));
    }
    let sender = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let mut c = [0u8; 8];
    c.copy_from_slice(&head[8..16]);
    let counter = u64::from_be_bytes(c);
    let body = match head[3] {
        1 => Body::Heartbeat(r.heartbeat()?),
        2 => Body::Map(r.map()?),
        3 => r.released()?,
        4 => Body::Request(r.request()?),
        _ => return Err(DecodeError::Malformed),
    };
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed);
    }
    Ok((sender, counter, body))
}

#[cfg(test)]
mod tests;
