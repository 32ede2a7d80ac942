//! Connection-tracking helpers and expectations.
//!
//! A helper reads the payload of a control connection (FTP) or of a request
//! (TFTP) and announces a connection the two ends are about to open: an
//! *expectation*. A new flow that matches an expectation is RELATED (it
//! records its master), so `accept ct established,related` lets an FTP data
//! connection in while a policy drop blocks a data connection nobody
//! announced.
//!
//! - A flow gets a helper from the accept rule that let it in
//!   (`accept proto tcp dport 21 helper ftp`), or, when that rule names
//!   none, from the default ports of `[dataplane] helpers` (FTP on TCP 21,
//!   TFTP on UDP 69).
//! - [`ftp`]: the PORT, EPRT, 227 (PASV) and 229 (EPSV) parser.
//! - [`expect`]: the bounded expectation table the workers share.
//!
//! Flows without a helper pay one branch on a status bit per packet; new
//! flows pay one atomic load and a branch while the expectation table is
//! empty.

pub mod expect;
pub mod ftp;
#[cfg(test)]
mod tests;

use crate::flow::{proto, Tuple};

pub use expect::{ExpectNat, ExpectStats, ExpectTable, Expectation, SharedExpect};

/// A protocol helper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Helper {
    /// FTP: PORT, EPRT, PASV (227) and EPSV (229) on the control connection.
    Ftp,
    /// TFTP: a read or write request expects the server's answer from any
    /// port to the client's port.
    Tftp,
}

impl Helper {
    /// Every helper.
    pub const ALL: [Helper; 2] = [Helper::Ftp, Helper::Tftp];

    /// The name used in rules, configuration and on the wire (conntrack's).
    pub fn name(self) -> &'static str {
        match self {
            Helper::Ftp => "ftp",
            Helper::Tftp => "tftp",
        }
    }

    /// The helper called `s`.
    pub fn parse(s: &str) -> Option<Helper> {
        Helper::ALL.into_iter().find(|h| h.name() == s)
    }

    /// The protocol the helper's flows use.
    pub fn proto(self) -> u8 {
        match self {
            Helper::Ftp => proto::TCP,
            Helper::Tftp => proto::UDP,
        }
    }

    /// The well-known server port.
    pub fn default_port(self) -> u16 {
        match self {
            Helper::Ftp => 21,
            Helper::Tftp => 69,
        }
    }

    /// Seconds an expectation of this helper lives (Linux: 5 minutes for
    /// both).
    pub fn expect_timeout(self) -> u32 {
        300
    }
}

impl std::fmt::Display for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which helper a newly accepted flow gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelperPolicy {
    /// Per rule index, the helper the rule names.
    pub rules: Vec<Option<Helper>>,
    /// Helpers attached by their well-known port (`[dataplane] helpers`).
    pub ports: Vec<Helper>,
}

impl HelperPolicy {
    /// The policy of `set` with the default-port helpers `ports`.
    pub fn new(set: &crate::acl::RuleSet, ports: Vec<Helper>) -> HelperPolicy {
        let rules: Vec<Option<Helper>> = set.rules().map(|r| r.rule.helper).collect();
        HelperPolicy {
            rules: if rules.iter().all(Option::is_none) {
                Vec::new()
            } else {
                rules
            },
            ports,
        }
    }

    /// Whether no flow can get a helper (the pipeline then pays one branch).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.ports.is_empty()
    }

    /// The helper of a flow with original tuple `t` let in by rule `rule`
    /// (`None`: the policy).
    pub fn for_flow(&self, rule: Option<u32>, t: &Tuple) -> Option<Helper> {
        if self.is_empty() {
            return None;
        }
        rule.and_then(|r| self.rules.get(usize::try_from(r).ok()?).copied().flatten())
            .or_else(|| {
                self.ports
                    .iter()
                    .copied()
                    .find(|h| h.proto() == t.proto && h.default_port() == t.dst_port)
            })
    }
}

/// What a helper found in one packet: a connection to expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announce {
    /// The expected flow's original tuple; `src_port` 0 means any.
    pub tuple: Tuple,
}
