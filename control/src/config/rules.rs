//! `[rules]`: the default policy and where the rule set comes from.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{resolve, Checker};

/// `[rules]`: default policy and where the rules come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    /// Verdict for packets no rule matches.
    pub policy: Policy,
    /// Where the rules are.
    pub source: RulesSource,
}

/// A default policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Forward.
    Accept,
    /// Drop silently.
    Drop,
    /// Drop and answer with a TCP RST or ICMP unreachable.
    Reject,
}

impl Policy {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
            Policy::Reject => "reject",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the rule set comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RulesSource {
    /// A rules file (one rule per line); reloadable.
    File(PathBuf),
    /// Inline rules from the configuration, each with its line in the
    /// configuration file (1-based) so the rule parser can point at it.
    Inline(Vec<(usize, String)>),
    /// No rules: the default policy applies to everything.
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRules {
    pub(super) policy: Policy,
    pub(super) file: Option<String>,
    pub(super) rules: Option<Vec<String>>,
}

impl Default for RawRules {
    fn default() -> Self {
        RawRules {
            policy: Policy::Drop,
            file: None,
            rules: None,
        }
    }
}

impl Checker<'_> {
    /// Checks `[rules]`.
    pub(super) fn rules(&mut self, raw: RawRules, base: &Path) -> RulesConfig {
        let source = match (raw.file, raw.rules) {
            (Some(_), Some(_)) => {
                self.error(
                    "rules.rules",
                    "give either rules.file or inline rules.rules, not both",
                );
                RulesSource::None
            }
            (Some(f), None) => {
                if f.is_empty() {
                    self.error("rules.file", "must not be empty");
                }
                RulesSource::File(resolve(base, &f))
            }
            (None, Some(rules)) => RulesSource::Inline(
                rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (self.spans.line_of(&format!("rules.rules[{i}]")), r))
                    .collect(),
            ),
            (None, None) => RulesSource::None,
        };
        RulesConfig {
            policy: raw.policy,
            source,
        }
    }
}
