//! The ACL: ordered rules with accept, drop, reject and log actions, matched
//! on input port or zone, address prefixes, protocol, port ranges, ICMP type
//! and conntrack state, plus a default policy.
//!
//! Rules come from a rule file ([`parse_rules`]) or one per string
//! ([`parse_rule_lines`]); an invalid input is rejected whole with an
//! [`AclError`] naming the file and line, so the caller keeps its old set.
//! A [`RuleSet`] compiles into a [`Classifier`] (bit-vector interval tables,
//! used on the packet path) or a [`LinearClassifier`] (first-match scan, the
//! reference). Both give identical [`Verdict`]s, never allocate while
//! classifying and are `Send + Sync` for sharing behind an `Arc`.
//!
//! Semantics: rules are tried in order; a `log` rule that matches only sets
//! [`Verdict::log`] (the first one wins) and classification continues; the
//! first matching terminal rule decides; if none does, the policy decides.

mod classifier;
mod linear;
mod parse;
mod rule;
mod synth;
#[cfg(test)]
mod tests;

pub use classifier::Classifier;
pub use linear::LinearClassifier;
pub use parse::{parse_rule_lines, parse_rules, AclError, Reason};
pub use rule::{proto_name, Action, IcmpMatch, PortRange, Prefix, Rule, RuleSet, RuleView, Verb};
pub use synth::{
    synthetic_inputs, synthetic_port_names, synthetic_rule_text, synthetic_rules, SyntheticInput,
};

use crate::flow::{CtState, Tuple};

/// What the classifier looks at for one packet.
#[derive(Clone, Copy, Debug)]
pub struct AclInput<'a> {
    /// Index of the port the packet arrived on.
    pub in_port: u16,
    /// Conntrack zone of the packet.
    pub zone: u16,
    /// The packet's tuple; for ICMP, `dst_port` is `type << 8 | code`.
    pub tuple: &'a Tuple,
    /// The packet's conntrack state.
    pub ct: CtState,
}

/// The outcome of classifying one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What to do with the packet.
    pub action: Action,
    /// Index of the deciding rule; `None` when the policy decided.
    pub rule: Option<u32>,
    /// Index of the first matching `log` rule before the deciding one.
    pub log: Option<u32>,
}

impl RuleSet {
    /// Compiles the rules into the fast [`Classifier`].
    pub fn compile(&self) -> Classifier {
        Classifier::new(self)
    }

    /// Builds the reference [`LinearClassifier`].
    pub fn linear(&self) -> LinearClassifier {
        LinearClassifier::new(self)
    }
}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Classifier>();
    shareable::<LinearClassifier>();
    shareable::<RuleSet>();
};
