//! The cluster driver's side of `[cluster] uplinks_down_when_idle`: runs
//! the sans-IO [`UplinkGate`] between the coordinator's actions and their
//! execution, and the operator's uplink scripts it asks for.
//!
//! Layer: control thread, under `cluster_driver` (which owns one of these
//! when the option is on); uses `cluster` (the gate), `election::procedure`
//! (the non-blocking script runner of the pair's election) and `config`.
//!
//! Scripts get the uplink port names as arguments and, in the environment,
//! `FTFW_PROCEDURE` (`activate_uplink`, `uplink_check`,
//! `deactivate_uplink`), `FTFW_NODE` (this member's id) and
//! `FTFW_UPLINK_INTERFACES` (the AF_PACKET uplinks' interface names,
//! space-separated). Exit 0 is success; a script still running at
//! `uplink_timeout_ms` is killed and failed. A failure is counted, logged
//! (a warning when a procedure starts failing, info when it works again)
//! and shown by `ftfwctl cluster status`; it never stops ftfwd.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use crate::cluster::{Action, GateOutput, UplinkGate, UplinkOp};
use crate::config::{ClusterUplinks, Config, PortBackend};
use crate::election::procedure::{
    Fixed, Inline, Procedure, ProcedureRequest, ProcedureRunner, Script, ScriptRunner, Ticket,
};

fn procedure(op: UplinkOp) -> Procedure {
    match op {
        UplinkOp::Activate => Procedure::ActivateUplink,
        UplinkOp::Check => Procedure::UplinkCheck,
        UplinkOp::Deactivate => Procedure::DeactivateUplink,
    }
}

/// The gate, its scripts and what they did.
pub struct DriverUplinks {
    gate: UplinkGate,
    runner: ScriptRunner<Inline<Fixed>>,
    ports: Vec<String>,
    timeout: Duration,
    /// The map version `assigned` was last computed from.
    assigned_version: u64,
    /// Per procedure: its last run failed (to log a change only).
    failing: HashMap<&'static str, bool>,
}

impl std::fmt::Debug for DriverUplinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverUplinks")
            .field("gate", &self.gate)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl DriverUplinks {
    /// For member `node` with `u` from `config`'s `[cluster]`; the gate
    /// asks for the uplinks down at once (the member owns nothing yet).
    pub fn new(node: u32, u: &ClusterUplinks, config: &Config, now: Instant) -> DriverUplinks {
        let interfaces: Vec<&str> = u
            .ports
            .iter()
            .filter_map(|name| config.ports.iter().find(|p| &p.name == name))
            .filter_map(|p| match &p.backend {
                PortBackend::AfPacket { interface } | PortBackend::AfXdp { interface, .. } => {
                    Some(interface.as_str())
                }
                _ => None,
            })
            .collect();
        let make = |path: &std::path::PathBuf| {
            let mut s = Script::new(path.clone());
            s.args = u.ports.iter().map(OsString::from).collect();
            s.env
                .push(("FTFW_UPLINK_INTERFACES".into(), interfaces.join(" ").into()));
            s
        };
        let mut scripts = HashMap::new();
        scripts.insert(Procedure::ActivateUplink, make(&u.activate));
        scripts.insert(Procedure::DeactivateUplink, make(&u.deactivate));
        if let Some(c) = &u.check {
            scripts.insert(Procedure::UplinkCheck, make(c));
        }
        DriverUplinks {
            gate: UplinkGate::new(u.check.is_some(), now),
            runner: ScriptRunner::new(node, scripts, Inline::new(Fixed::default())),
            ports: u.ports.clone(),
            timeout: u.timeout,
            assigned_version: 0,
            failing: HashMap::new(),
        }
    }

    /// A coordinator action, into the gate.
    pub fn push(&mut self, now: Instant, action: Action) {
        self.gate.push(now, action);
    }

    /// Tells the gate whether the map held (`version`) gives this member
    /// buckets (`owned`), when the version changed.
    pub fn follow_map(&mut self, now: Instant, version: u64, owned: impl FnOnce() -> bool) {
        if version != self.assigned_version {
            self.assigned_version = version;
            self.gate.set_assigned(now, owned());
        }
    }

    /// Finished scripts into the gate, and its retries.
    pub fn poll(&mut self, now: Instant) {
        while let Some(r) = self.runner.poll_complete(now) {
            let name = r.procedure.name();
            let was_failing = self.failing.insert(name, !r.ok).unwrap_or(false);
            match (r.ok, was_failing) {
                (false, false) => tracing::warn!(
                    procedure = name,
                    ports = ?self.ports,
                    "cluster: uplink script failed (counted; retried while still wanted)"
                ),
                (false, true) => {
                    tracing::debug!(procedure = name, "cluster: uplink script failed again")
                }
                (true, true) => {
                    tracing::info!(procedure = name, "cluster: uplink script works again")
                }
                (true, false) => tracing::info!(procedure = name, "cluster: uplink script done"),
            }
            self.gate.handle_done(now, r.ticket.0, r.ok);
        }
        self.gate.handle_timeout(now);
    }

    /// The actions to carry out now, in order; procedures the gate asks
    /// for are started here.
    pub fn take_actions(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(o) = self.gate.poll() {
            match o {
                GateOutput::Act(a) => out.push(a),
                GateOutput::Run { token, op } => {
                    tracing::info!(procedure = op.name(), "cluster: running uplink script");
                    self.runner.start(
                        now,
                        ProcedureRequest {
                            ticket: Ticket(token),
                            procedure: procedure(op),
                            timeout: self.timeout,
                        },
                    );
                }
            }
        }
        out
    }

    /// When to poll again: a running script, a retry.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        [self.runner.poll_timeout(now), self.gate.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// `ftfwctl cluster status`: `uplinks`.
    pub fn status_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.gate.status()).unwrap_or_default();
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("ports".into(), self.ports.clone().into());
            if let Some(serde_json::Value::Object(c)) = m.get_mut("counters") {
                c.insert("script_timeouts".into(), self.runner.timed_out.into());
                c.insert(
                    "scripts_not_started".into(),
                    self.runner.spawn_failed.into(),
                );
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::UplinkState;
    use ftfw_dataplane::buckets::BucketSet;

    /// `configs/cluster.toml` with the uplink keys on and `scripts`.
    fn config(scripts: &str) -> Config {
        let text = include_str!("../../configs/cluster.toml")
            .replacen(
                "auto_rebalance = true\n",
                "auto_rebalance = true\nuplinks_down_when_idle = true\nuplinks = [\"outside\"]\n",
                1,
            )
            .replacen(
                "[[cluster.member]]",
                &format!("[cluster.scripts]\n{scripts}\n[[cluster.member]]"),
                1,
            );
        crate::config::parse(&text, "/etc/ftfw/cluster.toml").unwrap()
    }

    /// Polls `u` until `done` holds (at most 10 s); the actions let out.
    fn until(u: &mut DriverUplinks, done: impl Fn(&DriverUplinks) -> bool) -> Vec<Action> {
        let end = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        while !done(u) {
            assert!(Instant::now() < end, "timed out: {:?}", u.gate.status());
            let now = Instant::now();
            u.poll(now);
            out.extend(u.take_actions(now));
            std::thread::yield_now();
        }
        out
    }

    fn state(u: &DriverUplinks) -> UplinkState {
        u.gate.status().state
    }

    #[test]
    fn scripts_get_the_uplinks_and_a_failing_activation_still_forwards() {
        let dir = std::env::temp_dir().join(format!("ftfw-uplinks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("calls");
        let ok = dir.join("ok.sh");
        let fail = dir.join("fail.sh");
        std::fs::write(
            &ok,
            format!(
                "#!/bin/sh\necho \"$FTFW_PROCEDURE $FTFW_NODE $FTFW_UPLINK_INTERFACES $*\" >> '{}'\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::write(&fail, "#!/bin/sh\nexit 3\n").unwrap();
        for p in [&ok, &fail] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let cfg = config(&format!(
            "activate_uplink = \"{}\"\ndeactivate_uplink = \"{}\"\nuplink_check = \"{}\"\n",
            ok.display(),
            ok.display(),
            fail.display()
        ));
        let c = cfg.cluster.as_ref().unwrap();
        let now = Instant::now();
        let mut u = DriverUplinks::new(7, c.uplinks.as_ref().unwrap(), &cfg, now);
        // At start: down.
        assert!(until(&mut u, |u| state(u) == UplinkState::Down).is_empty());
        // Gaining buckets: activated (the script ran), the check fails,
        // the held forward goes out anyway.
        let set = BucketSet::from_iter_in(4096, [1, 2]);
        u.push(Instant::now(), Action::Forward(set.clone()));
        assert!(u.take_actions(Instant::now()).is_empty());
        let out = until(&mut u, |u| state(u) == UplinkState::Failed);
        assert_eq!(out, [Action::Forward(set)]);
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            calls,
            "deactivate_uplink 7 eth0 outside\nactivate_uplink 7 eth0 outside\n"
        );
        let v = u.status_json();
        assert_eq!(v["state"], "failed");
        assert_eq!(v["last_failure"], "uplink_check");
        assert_eq!(v["ports"], serde_json::json!(["outside"]));
        let k = &v["counters"];
        assert_eq!(
            (
                &k["activations"],
                &k["checks"],
                &k["check_failures"],
                &k["forwarded_despite_failure"],
                &k["scripts_not_started"]
            ),
            (&1.into(), &1.into(), &1.into(), &1.into(), &0.into())
        );
        assert!(u.next_wake(Instant::now()).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_script_that_cannot_start_is_counted() {
        let cfg = config(
            "activate_uplink = \"/nonexistent/ftfw-up\"\ndeactivate_uplink = \"/nonexistent/ftfw-down\"\n",
        );
        let c = cfg.cluster.as_ref().unwrap();
        let mut u = DriverUplinks::new(1, c.uplinks.as_ref().unwrap(), &cfg, Instant::now());
        until(&mut u, |u| state(u) == UplinkState::Failed);
        let v = u.status_json();
        assert_eq!(v["last_failure"], "deactivate_uplink");
        assert_eq!(v["counters"]["deactivate_failures"], 1);
        assert_eq!(v["counters"]["scripts_not_started"], 1);
    }
}
