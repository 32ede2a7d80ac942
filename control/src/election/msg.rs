//! The messages of Roelle table 1, as values.

use super::table::{Freshness, NodeId, Role, StatusTable};

/// Which side a message travels on (Roelle table 1). The driver sends
/// everything over the dedicated link when it has one and uses this as the
/// fallback side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Downstream (inside) network.
    Downstream,
    /// Upstream (outside) network.
    Upstream,
    /// Both sides.
    Both,
}

/// What a host says about itself when it asks for a check or a takeover
/// ("own prio." in table 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfReport {
    /// Configured priority.
    pub priority: u8,
    /// State freshness.
    pub freshness: Freshness,
    /// Current role.
    pub role: Role,
}

/// A message body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A backup (or a host in init) asks the master for a local service
    /// check; also its heartbeat.
    SvcCheck {
        /// Echoed by the reply.
        nonce: u32,
        /// The sender.
        report: SelfReport,
    },
    /// The master's answer.
    SvcCheckReply {
        /// Echo of the check's nonce.
        nonce: u32,
        /// Result of the master's `localSvcCheck()`.
        ok: bool,
        /// The master's status table.
        table: StatusTable,
    },
    /// The master leaves service main state.
    SvcShutdown {
        /// The table after the master's update.
        table: StatusTable,
    },
    /// A backup starts a takeover on the downstream side.
    DnstrTakeover {
        /// Identifies this takeover attempt; echoed by a deny.
        attempt: u32,
        /// The sender.
        report: SelfReport,
    },
    /// The master vetoes a downstream takeover.
    DnstrTakeoverDeny {
        /// The attempt denied.
        attempt: u32,
    },
    /// A backup takes over the upstream side.
    UpstrTakeover {
        /// Same attempt as its DNSTR_TAKEOVER.
        attempt: u32,
        /// The sender.
        report: SelfReport,
    },
    /// The master vetoes an upstream takeover.
    UpstrTakeoverDeny {
        /// The attempt denied.
        attempt: u32,
    },
    /// The sender entered service main state (is master).
    SvcTakeover {
        /// The new master's table (it is listed as master).
        table: StatusTable,
    },
}

impl Body {
    /// The message's name in the paper.
    pub fn name(&self) -> &'static str {
        match self {
            Body::SvcCheck { .. } => "SVC_CHECK",
            Body::SvcCheckReply { .. } => "SVC_CHECK_REPLY",
            Body::SvcShutdown { .. } => "SVC_SHUTDOWN",
            Body::DnstrTakeover { .. } => "DNSTR_TAKEOVER",
            Body::DnstrTakeoverDeny { .. } => "DNSTR_TAKEOVER_DENY",
            Body::UpstrTakeover { .. } => "UPSTR_TAKEOVER",
            Body::UpstrTakeoverDeny { .. } => "UPSTR_TAKEOVER_DENY",
            Body::SvcTakeover { .. } => "SVC_TAKEOVER",
        }
    }

    /// The side table 1 gives it.
    pub fn side(&self) -> Side {
        match self {
            Body::UpstrTakeover { .. } | Body::UpstrTakeoverDeny { .. } => Side::Upstream,
            Body::SvcTakeover { .. } => Side::Both,
            _ => Side::Downstream,
        }
    }
}

/// A message with its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Who sent it (authenticated by the codec's tag).
    pub sender: NodeId,
    /// What it says.
    pub body: Body,
}
