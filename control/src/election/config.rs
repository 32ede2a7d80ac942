//! Election configuration, its timeout bounds (Roelle 4.3) and the
//! failover bound they imply.

use std::time::Duration;

use super::procedure::Procedure;
use super::table::{NodeId, MAX_NODES};
use super::wire::MIN_KEY_LEN;

/// Longest duration any timer or time limit may have.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Another host of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its id.
    pub node: NodeId,
    /// Its configured priority (for the bootstrap table).
    pub priority: u8,
}

/// Upper bounds on procedure run times (`tmax` in Roelle 4.3). The driver
/// must report a result within them; the machine counts a procedure that
/// overruns as failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcedureTimes {
    /// `downlinkCheck()`.
    pub downlink_check: Duration,
    /// `uplinkCheck()`.
    pub uplink_check: Duration,
    /// `remoteSvcCheck()`.
    pub remote_svc_check: Duration,
    /// `localSvcCheck()`.
    pub local_svc_check: Duration,
    /// Every action (activate, deactivate, takeover, release).
    pub action: Duration,
}

impl ProcedureTimes {
    /// `tmax` of one procedure.
    pub fn of(&self, p: Procedure) -> Duration {
        match p {
            Procedure::DownlinkCheck => self.downlink_check,
            Procedure::UplinkCheck => self.uplink_check,
            Procedure::RemoteSvcCheck => self.remote_svc_check,
            Procedure::LocalSvcCheck => self.local_svc_check,
            _ => self.action,
        }
    }
}

impl Default for ProcedureTimes {
    fn default() -> Self {
        ProcedureTimes {
            downlink_check: Duration::from_millis(10),
            uplink_check: Duration::from_millis(10),
            remote_svc_check: Duration::from_millis(10),
            local_svc_check: Duration::from_millis(10),
            action: Duration::from_millis(20),
        }
    }
}

/// Everything the state machine needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// This host.
    pub node: NodeId,
    /// This host's configured priority (higher is preferred).
    pub priority: u8,
    /// The other hosts (the static initial table; more may join).
    pub peers: Vec<Peer>,
    /// Pre-shared key (at least 16 bytes).
    pub key: Vec<u8>,
    /// First message counter minus one; use wall-clock microseconds so a
    /// restarted node's counter is above its previous life's.
    pub initial_counter: u64,
    /// SVC_CHECK_TIMER of the master's direct successor.
    pub check_interval: Duration,
    /// Added to SVC_CHECK_TIMER per rank below the successor (lower ranked
    /// hosts check less often, Roelle 4.3).
    pub check_interval_step: Duration,
    /// SELF_CHECK_TIMER.
    pub self_check_interval: Duration,
    /// Wait for SVC_CHECK_REPLY (eq. 1).
    pub reply_timeout: Duration,
    /// SVC_CHECKs re-sent after a missing reply before the master is
    /// declared failed.
    pub reply_retries: u8,
    /// Wait for DNSTR_/UPSTR_TAKEOVER_DENY (eq. 2, 3).
    pub deny_timeout: Duration,
    /// SVC_REQCHECK_TIMER: the master marks a host dead after this long
    /// without its SVC_CHECK.
    pub reqcheck_timeout: Duration,
    /// Init pause before the cycle restarts.
    pub init_pause: Duration,
    /// Fault main state: how often the downlink is rechecked.
    pub fault_recheck: Duration,
    /// An unsynced host (rebooted, resync not complete) takes over only
    /// after holding this long (a last resort when no synced host does);
    /// `None`: never.
    pub unsynced_takeover: Option<Duration>,
    /// Preemption: the master hands over to a synced host of higher
    /// configured priority (off by default).
    pub preempt: bool,
    /// Procedure time limits.
    pub tmax: ProcedureTimes,
}

/// A configuration that violates a bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("election: {field}: {message}")]
pub struct BoundError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn err(field: &'static str, message: String) -> Result<(), BoundError> {
    Err(BoundError { field, message })
}

impl ElectionConfig {
    /// Defaults that replace a crashed master in about 430 ms (see
    /// [`ElectionConfig::failover_bound`]): check every 100 ms, replies
    /// within 50 ms (one retry), denies within 60 ms, 10 ms checks and 20 ms
    /// actions; SVC_REQCHECK_TIMER sized for the number of peers.
    pub fn new(node: NodeId, priority: u8, peers: Vec<Peer>, key: Vec<u8>) -> Self {
        let mut c = ElectionConfig {
            node,
            priority,
            peers,
            key,
            initial_counter: 0,
            check_interval: Duration::from_millis(100),
            check_interval_step: Duration::from_millis(50),
            self_check_interval: Duration::from_millis(100),
            reply_timeout: Duration::from_millis(50),
            reply_retries: 1,
            deny_timeout: Duration::from_millis(60),
            reqcheck_timeout: Duration::ZERO,
            init_pause: Duration::from_millis(100),
            fault_recheck: Duration::from_millis(500),
            unsynced_takeover: Some(Duration::from_secs(1)),
            preempt: false,
            tmax: ProcedureTimes::default(),
        };
        c.reqcheck_timeout = c.min_reqcheck_timeout() * 3 / 2;
        c
    }

    /// SVC_CHECK_TIMER of the host at `rank` (1 = the master's successor).
    pub fn svc_check_interval(&self, rank: usize) -> Duration {
        let steps = u32::try_from(rank.clamp(1, MAX_NODES) - 1).unwrap_or(0);
        self.check_interval + self.check_interval_step * steps
    }

    /// Longest a backup at `rank` goes between two SVC_CHECKs, including
    /// retries.
    pub fn backup_period(&self, rank: usize) -> Duration {
        self.svc_check_interval(rank)
            + self.tmax.remote_svc_check
            + self.reply_timeout * (u32::from(self.reply_retries) + 1)
    }

    /// The smallest SVC_REQCHECK_TIMER that cannot mark a live, connected
    /// backup dead: the period of the lowest rank the configured cluster
    /// has.
    pub fn min_reqcheck_timeout(&self) -> Duration {
        self.backup_period(self.peers.len().max(1))
    }

    /// The longest time from a master's crash until its direct successor is
    /// in service active state, with every procedure at its `tmax` and no
    /// message lost, not counting network delay (add four one-way
    /// delays): detection (one SVC_CHECK_TIMER, `remoteSvcCheck()`, every
    /// reply timeout), the handover (downlink check, deny timeout, uplink
    /// activation and check, deny timeout), and the entry actions.
    pub fn failover_bound(&self) -> Duration {
        self.backup_period(1)
            + self.tmax.downlink_check
            + self.deny_timeout
            + self.tmax.action
            + self.tmax.uplink_check
            + self.deny_timeout
            + self.tmax.action * 3
    }

    /// Check every bound; the first violation is returned.
    pub fn validate(&self) -> Result<(), BoundError> {
        if self.key.len() < MIN_KEY_LEN {
            return err(
                "key",
                format!("pre-shared key must be at least {MIN_KEY_LEN} bytes"),
            );
        }
        if self.peers.len() + 1 > MAX_NODES {
            return err("peers", format!("at most {} peers", MAX_NODES - 1));
        }
        for (i, p) in self.peers.iter().enumerate() {
            if p.node == self.node {
                return err("peers", format!("{} is this node", p.node));
            }
            if self.peers[..i].iter().any(|q| q.node == p.node) {
                return err("peers", format!("{} listed twice", p.node));
            }
        }
        let t = &self.tmax;
        for (field, d) in [
            ("check_interval", self.check_interval),
            ("self_check_interval", self.self_check_interval),
            ("reply_timeout", self.reply_timeout),
            ("deny_timeout", self.deny_timeout),
            ("init_pause", self.init_pause),
            ("fault_recheck", self.fault_recheck),
            ("tmax", t.action.min(t.downlink_check).min(t.uplink_check)),
            ("tmax", t.remote_svc_check.min(t.local_svc_check)),
        ] {
            if d.is_zero() {
                return err(field, "must be positive".into());
            }
        }
        // Deadline arithmetic (`now + d`) must not overflow.
        for (field, d) in [
            ("check_interval", self.check_interval),
            ("check_interval_step", self.check_interval_step),
            ("self_check_interval", self.self_check_interval),
            ("reply_timeout", self.reply_timeout),
            ("deny_timeout", self.deny_timeout),
            ("reqcheck_timeout", self.reqcheck_timeout),
            ("init_pause", self.init_pause),
            ("fault_recheck", self.fault_recheck),
            (
                "unsynced_takeover",
                self.unsynced_takeover.unwrap_or_default(),
            ),
            ("tmax", t.action.max(t.downlink_check).max(t.uplink_check)),
            ("tmax", t.remote_svc_check.max(t.local_svc_check)),
        ] {
            if d > MAX_DURATION {
                return err(field, format!("must not exceed {MAX_DURATION:?}"));
            }
        }
        // Eq. 1, with room for a full check A that may be running when the
        // SVC_CHECK arrives (the master queues it, table 2).
        let busy = t.downlink_check + t.uplink_check + t.local_svc_check;
        if self.reply_timeout <= busy + t.local_svc_check {
            return err(
                "reply_timeout",
                format!(
                    "must exceed tmax(downlink + uplink + 2 x local service check) = {:?}",
                    busy + t.local_svc_check
                ),
            );
        }
        // Eq. 2 and 3, same allowance for a check already running.
        if self.deny_timeout <= busy + t.local_svc_check {
            return err(
                "deny_timeout",
                format!(
                    "must exceed tmax(downlink + uplink + 2 x local service check) = {:?}",
                    busy + t.local_svc_check
                ),
            );
        }
        // The outranked candidate must hear the better one before its own
        // deny timeout runs out.
        if self.deny_timeout <= t.downlink_check {
            return err("deny_timeout", "must exceed tmax(downlink check)".into());
        }
        if self.check_interval < self.self_check_interval {
            return err(
                "check_interval",
                "SVC_CHECK_TIMER must not be smaller than SELF_CHECK_TIMER".into(),
            );
        }
        let min = self.min_reqcheck_timeout();
        if self.reqcheck_timeout <= min {
            return err(
                "reqcheck_timeout",
                format!("must exceed the slowest backup's check period {min:?}"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ElectionConfig {
        ElectionConfig::new(
            NodeId(1),
            100,
            vec![
                Peer {
                    node: NodeId(2),
                    priority: 100,
                },
                Peer {
                    node: NodeId(3),
                    priority: 50,
                },
            ],
            vec![7; 32],
        )
    }

    #[test]
    fn defaults_are_valid_and_replace_a_master_well_under_a_second() {
        let c = cfg();
        c.validate().unwrap();
        assert_eq!(c.failover_bound(), Duration::from_millis(430));
        assert_eq!(c.svc_check_interval(1), Duration::from_millis(100));
        assert_eq!(c.svc_check_interval(3), Duration::from_millis(200));
        assert!(c.reqcheck_timeout > c.backup_period(2));
    }

    #[test]
    fn bounds_are_enforced() {
        let mut c = cfg();
        c.reply_timeout = Duration::from_millis(40);
        assert_eq!(c.validate().unwrap_err().field, "reply_timeout");
        let mut c = cfg();
        c.deny_timeout = Duration::from_millis(30);
        assert_eq!(c.validate().unwrap_err().field, "deny_timeout");
        let mut c = cfg();
        c.check_interval = Duration::from_millis(50);
        assert_eq!(c.validate().unwrap_err().field, "check_interval");
        let mut c = cfg();
        c.reqcheck_timeout = c.min_reqcheck_timeout();
        assert_eq!(c.validate().unwrap_err().field, "reqcheck_timeout");
        let mut c = cfg();
        c.fault_recheck = Duration::MAX;
        assert_eq!(c.validate().unwrap_err().field, "fault_recheck");
        let mut c = cfg();
        c.key = vec![1; 8];
        assert_eq!(c.validate().unwrap_err().field, "key");
        let mut c = cfg();
        c.peers.push(Peer {
            node: NodeId(1),
            priority: 1,
        });
        assert_eq!(c.validate().unwrap_err().field, "peers");
    }
}
