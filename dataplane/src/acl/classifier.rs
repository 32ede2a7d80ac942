//! [`Classifier`]: the compiled rule set (Lakshman-Stiliadis bit vectors).
//!
//! Each field (input port, zone, protocol, IPv4/IPv6 source and destination,
//! source and destination port, ct state) is cut into elementary intervals at
//! every rule boundary. Each interval maps to the bit set of rules whose
//! constraint on that field covers it (a rule that does not constrain the
//! field covers everything). Classifying is one binary search per field, then
//! an AND of the fields' bit sets word by word; the lowest set bit that is a
//! terminal rule decides, and the lowest `log` bit below it is the log rule.
//!
//! Building allocates (once per reload); classifying never allocates and does
//! `O(fields * log(intervals) + fields * rules / 64)` work, stopping at the
//! first word holding a terminal match. Identical bit sets are stored once.

use std::collections::HashMap;

use crate::flow::CtState;

use super::rule::{v4_key, v6_key, Action, PortRange, Rule, RuleSet, Verb};
use super::{AclInput, Verdict};

/// Keys an interval table can be built over.
trait Key: Copy + Ord {
    const MIN: Self;
    const MAX: Self;
    /// The next key, `None` at `MAX`.
    fn succ(self) -> Option<Self>;
}

macro_rules! key_impl {
    ($($t:ty),*) => {$(
        impl Key for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
        }
    )*};
}
key_impl!(u16, u32, u128);

/// Interned bit sets, `words` u64 each; set 0 is the empty set. Each set
/// also has a summary of `swords` words: bit `w` is set when word `w` of the
/// set is non-zero (aggregated bit vectors), so classification skips the
/// words where some field has no rule at all.
struct Pool {
    words: usize,
    swords: usize,
    data: Vec<u64>,
    summary: Vec<u64>,
    index: HashMap<Vec<u64>, u32>,
}

impl Pool {
    fn new(words: usize) -> Pool {
        let swords = words.div_ceil(64);
        let mut p = Pool {
            words,
            swords,
            data: Vec::new(),
            summary: Vec::new(),
            index: HashMap::new(),
        };
        p.intern(&vec![0; words]);
        p
    }

    fn intern(&mut self, set: &[u64]) -> u32 {
        if let Some(&id) = self.index.get(set) {
            return id;
        }
        let id = u32::try_from(self.index.len()).unwrap_or(0);
        self.data.extend_from_slice(set);
        let base = self.summary.len();
        self.summary.resize(base + self.swords, 0);
        for (w, word) in set.iter().enumerate() {
            if *word != 0 {
                if let Some(s) = self.summary.get_mut(base + w / 64) {
                    *s |= 1 << (w % 64);
                }
            }
        }
        self.index.insert(set.to_vec(), id);
        id
    }
}

/// One field's elementary intervals: `starts[i]` is where interval `i`
/// begins (`starts[0] == K::MIN`), `sets[i]` its bit set in the pool.
struct Field<K> {
    starts: Box<[K]>,
    sets: Box<[u32]>,
}

impl<K: Key> Field<K> {
    /// Builds the table from each rule's inclusive ranges on this field (an
    /// empty list: the rule matches no key of this table).
    fn build(per_rule: &[Vec<(K, K)>], pool: &mut Pool) -> Field<K> {
        let mut bounds = vec![K::MIN];
        let mut norm: Vec<Vec<(K, K)>> = Vec::with_capacity(per_rule.len());
        for ranges in per_rule {
            let mut rs: Vec<(K, K)> = ranges.iter().copied().filter(|(lo, hi)| lo <= hi).collect();
            rs.sort_unstable();
            let mut merged: Vec<(K, K)> = Vec::with_capacity(rs.len());
            for (lo, hi) in rs {
                match merged.last_mut() {
                    Some(last) if last.1.succ().is_none_or(|n| lo <= n) => last.1 = last.1.max(hi),
                    _ => merged.push((lo, hi)),
                }
            }
            for &(lo, hi) in &merged {
                bounds.push(lo);
                bounds.extend(hi.succ());
            }
            norm.push(merged);
        }
        bounds.sort_unstable();
        bounds.dedup();
        let at = |k: K| bounds.partition_point(|b| *b < k);
        // (interval, is_start, rule); ends sort before starts.
        let mut events: Vec<(usize, bool, usize)> = Vec::new();
        for (rule, ranges) in norm.iter().enumerate() {
            for &(lo, hi) in ranges {
                events.push((at(lo), true, rule));
                if let Some(n) = hi.succ() {
                    events.push((at(n), false, rule));
                }
            }
        }
        events.sort_unstable();
        let mut cur = vec![0u64; pool.words];
        let mut sets = Vec::with_capacity(bounds.len());
        let mut ev = events.iter().peekable();
        for i in 0..bounds.len() {
            while let Some(&(_, start, rule)) = ev.next_if(|e| e.0 == i) {
                let (w, b) = (rule / 64, rule % 64);
                if let Some(word) = cur.get_mut(w) {
                    if start {
                        *word |= 1 << b;
                    } else {
                        *word &= !(1 << b);
                    }
                }
            }
            sets.push(pool.intern(&cur));
        }
        Field {
            starts: bounds.into_boxed_slice(),
            sets: sets.into_boxed_slice(),
        }
    }

    /// The bit set id of the interval holding `k` (0, the empty set, if the
    /// table is somehow malformed).
    #[inline]
    fn lookup(&self, k: K) -> u32 {
        let i = self.starts.partition_point(|s| *s <= k);
        self.sets.get(i.wrapping_sub(1)).copied().unwrap_or(0)
    }

    fn intervals(&self) -> usize {
        self.starts.len()
    }
}

const FULL16: (u16, u16) = (0, u16::MAX);

fn ct_key(s: CtState) -> u16 {
    match s {
        CtState::New => 0,
        CtState::Established => 1,
        CtState::Related => 2,
        CtState::Invalid => 3,
    }
}

fn ports(rs: &[PortRange]) -> Vec<(u16, u16)> {
    if rs.is_empty() {
        vec![FULL16]
    } else {
        rs.iter().map(|r| (r.lo, r.hi)).collect()
    }
}

fn dport(rule: &Rule) -> Vec<(u16, u16)> {
    let base = ports(&rule.dport);
    match rule.icmp {
        None => base,
        Some(i) => {
            let r = i.dst_port_range();
            base.into_iter()
                .map(|(lo, hi)| (lo.max(r.lo), hi.min(r.hi)))
                .filter(|(lo, hi)| lo <= hi)
                .collect()
        }
    }
}

fn addrs<K: Key>(
    rule_prefixes: &[super::rule::Prefix],
    range: impl Fn(&super::rule::Prefix) -> Option<(K, K)>,
) -> Vec<(K, K)> {
    if rule_prefixes.is_empty() {
        vec![(K::MIN, K::MAX)]
    } else {
        rule_prefixes.iter().filter_map(range).collect()
    }
}

/// The compiled classifier. Same verdicts as [`super::LinearClassifier`],
/// much faster for large rule sets. Read-only after [`Classifier::new`], so
/// workers share it behind an `Arc`.
pub struct Classifier {
    words: usize,
    swords: usize,
    pool: Box<[u64]>,
    summary: Box<[u64]>,
    in_port: Field<u16>,
    zone: Field<u16>,
    proto: Field<u16>,
    ct: Field<u16>,
    sport: Field<u16>,
    dport: Field<u16>,
    src4: Field<u32>,
    dst4: Field<u32>,
    src6: Field<u128>,
    dst6: Field<u128>,
    /// Bit set of `log` rules.
    log_mask: Box<[u64]>,
    /// Action of each rule (`Drop` placeholder for log rules, never read).
    actions: Box<[Action]>,
    policy: Action,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("rules", &self.actions.len())
            .field("policy", &self.policy)
            .field("distinct_sets", &(self.pool.len() / self.words.max(1)))
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl Classifier {
    /// Compiles a rule set. Allocates proportionally to
    /// `intervals * rules / 64` words (identical sets shared).
    pub fn new(set: &RuleSet) -> Classifier {
        let rules: Vec<&Rule> = set.entries.iter().map(|e| &e.rule).collect();
        let words = rules.len().div_ceil(64).max(1);
        let mut pool = Pool::new(words);
        let col16 = |f: &dyn Fn(&Rule) -> Vec<(u16, u16)>| -> Vec<Vec<(u16, u16)>> {
            rules.iter().map(|r| f(r)).collect()
        };
        let one = |v: Option<u16>| v.map_or(FULL16, |v| (v, v));
        let in_port = Field::build(
            &col16(&|r| vec![one(r.in_port.as_ref().map(|p| p.0))]),
            &mut pool,
        );
        let zone = Field::build(&col16(&|r| vec![one(r.zone)]), &mut pool);
        let proto = Field::build(&col16(&|r| vec![one(r.proto.map(u16::from))]), &mut pool);
        let ct = Field::build(
            &col16(&|r| match r.ct {
                None => vec![FULL16],
                Some(s) => [
                    CtState::New,
                    CtState::Established,
                    CtState::Related,
                    CtState::Invalid,
                ]
                .into_iter()
                .filter(|c| s.contains(*c))
                .map(|c| (ct_key(c), ct_key(c)))
                .collect(),
            }),
            &mut pool,
        );
        let sport = Field::build(&col16(&|r| ports(&r.sport)), &mut pool);
        let dport = Field::build(&col16(&dport), &mut pool);
        let v4 = |f: &dyn Fn(&Rule) -> &[super::rule::Prefix]| -> Vec<Vec<(u32, u32)>> {
            rules
                .iter()
                .map(|r| addrs(f(r), |p| p.range_v4()))
                .collect()
        };
        let v6 = |f: &dyn Fn(&Rule) -> &[super::rule::Prefix]| -> Vec<Vec<(u128, u128)>> {
            rules
                .iter()
                .map(|r| addrs(f(r), |p| p.range_v6()))
                .collect()
        };
        let src4 = Field::build(&v4(&|r| &r.src), &mut pool);
        let dst4 = Field::build(&v4(&|r| &r.dst), &mut pool);
        let src6 = Field::build(&v6(&|r| &r.src), &mut pool);
        let dst6 = Field::build(&v6(&|r| &r.dst), &mut pool);
        let mut log_mask = vec![0u64; words];
        for (i, r) in rules.iter().enumerate() {
            if r.verb == Verb::Log {
                if let Some(w) = log_mask.get_mut(i / 64) {
                    *w |= 1 << (i % 64);
                }
            }
        }
        let actions = rules
            .iter()
            .map(|r| match r.verb {
                Verb::Act(a) => a,
                Verb::Log => Action::Drop,
            })
            .collect();
        Classifier {
            words,
            swords: pool.swords,
            pool: pool.data.into_boxed_slice(),
            summary: pool.summary.into_boxed_slice(),
            in_port,
            zone,
            proto,
            ct,
            sport,
            dport,
            src4,
            dst4,
            src6,
            dst6,
            log_mask: log_mask.into_boxed_slice(),
            actions,
            policy: set.policy,
        }
    }

    /// Approximate heap size of the compiled tables in bytes.
    pub fn memory_bytes(&self) -> usize {
        let f16 = |f: &Field<u16>| f.intervals() * 6;
        (self.pool.len() + self.summary.len()) * 8
            + f16(&self.in_port)
            + f16(&self.zone)
            + f16(&self.proto)
            + f16(&self.ct)
            + f16(&self.sport)
            + f16(&self.dport)
            + (self.src4.intervals() + self.dst4.intervals()) * 8
            + (self.src6.intervals() + self.dst6.intervals()) * 20
            + self.log_mask.len() * 8
            + self.actions.len()
    }

    /// Number of rules compiled in.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether no rules are compiled in (everything gets the policy).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    #[inline]
    fn set(&self, id: u32) -> (&[u64], &[u64]) {
        let id = usize::try_from(id).unwrap_or(usize::MAX);
        let at = id.saturating_mul(self.words);
        let sat = id.saturating_mul(self.swords);
        (
            self.pool
                .get(at..at.saturating_add(self.words))
                .unwrap_or(&[]),
            self.summary
                .get(sat..sat.saturating_add(self.swords))
                .unwrap_or(&[]),
        )
    }

    /// The verdict of the first matching terminal rule (or the policy), plus
    /// the first matching `log` rule before it. Never allocates or panics;
    /// work is bounded by 10 binary searches, `8 * rules / 4096` summary-word
    /// ANDs and `8 * rules / 64` word ANDs (only for words every field has
    /// rules in).
    pub fn classify(&self, input: &AclInput<'_>) -> Verdict {
        let t = input.tuple;
        let (src, dst) = if t.v6 {
            (
                self.src6.lookup(v6_key(&t.src)),
                self.dst6.lookup(v6_key(&t.dst)),
            )
        } else {
            (
                self.src4.lookup(v4_key(&t.src)),
                self.dst4.lookup(v4_key(&t.dst)),
            )
        };
        let ids = [
            self.proto.lookup(u16::from(t.proto)),
            dst,
            self.dport.lookup(t.dst_port),
            src,
            self.ct.lookup(ct_key(input.ct)),
            self.sport.lookup(t.src_port),
            self.in_port.lookup(input.in_port),
            self.zone.lookup(input.zone),
        ];
        let mut sets: [&[u64]; 8] = [&[]; 8];
        let mut sums: [&[u64]; 8] = [&[]; 8];
        for ((id, set), sum) in ids.into_iter().zip(&mut sets).zip(&mut sums) {
            (*set, *sum) = self.set(id);
        }
        let mut log: Option<u32> = None;
        for sw in 0..self.swords {
            let mut live = u64::MAX;
            for s in &sums {
                live &= s.get(sw).copied().unwrap_or(0);
            }
            while live != 0 {
                let w = sw * 64 + live.trailing_zeros() as usize;
                live &= live - 1;
                let mut m = u64::MAX;
                for s in &sets {
                    m &= s.get(w).copied().unwrap_or(0);
                }
                if m == 0 {
                    continue;
                }
                let lm = self.log_mask.get(w).copied().unwrap_or(0);
                let term = m & !lm;
                let logs = m & lm;
                let base = w * 64;
                let index = |bits: u64| {
                    u32::try_from(base + bits.trailing_zeros() as usize).unwrap_or(u32::MAX)
                };
                if term != 0 {
                    if log.is_none() && logs != 0 && logs.trailing_zeros() < term.trailing_zeros() {
                        log = Some(index(logs));
                    }
                    let rule = index(term);
                    let action = usize::try_from(rule)
                        .ok()
                        .and_then(|r| self.actions.get(r))
                        .copied()
                        .unwrap_or(self.policy);
                    return Verdict {
                        action,
                        rule: Some(rule),
                        log,
                    };
                }
                if log.is_none() {
                    log = Some(index(logs));
                }
            }
        }
        Verdict {
            action: self.policy,
            rule: None,
            log,
        }
    }
}
