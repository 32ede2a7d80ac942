//! [`LinearClassifier`]: the reference first-match scan. Slow for large rule
//! sets but obviously correct; the compiled [`super::Classifier`] is tested
//! against it.

use super::rule::{Action, Rule, RuleSet, Verb};
use super::{AclInput, Verdict};

/// Classifies by testing every rule in order.
#[derive(Clone, Debug)]
pub struct LinearClassifier {
    rules: Vec<Rule>,
    policy: Action,
}

impl LinearClassifier {
    /// Builds the scanner from a rule set (copies the rules).
    pub fn new(set: &RuleSet) -> LinearClassifier {
        LinearClassifier {
            rules: set.entries.iter().map(|e| e.rule.clone()).collect(),
            policy: set.policy,
        }
    }

    /// The verdict of the first matching terminal rule (or the policy), plus
    /// the first matching `log` rule before it. Does not allocate; the work
    /// is linear in the number of rules.
    pub fn classify(&self, input: &AclInput<'_>) -> Verdict {
        let mut log = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches(input) {
                continue;
            }
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            match rule.verb {
                Verb::Log => {
                    log = log.or(Some(idx));
                }
                Verb::Act(action) => {
                    return Verdict {
                        action,
                        rule: Some(idx),
                        log,
                    }
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
