//! Customizable procedures (Roelle 4.4) and how a driver runs them.
//!
//! The state machine never runs a procedure: it emits
//! [`super::Event::Run`] with a [`Ticket`] and the driver feeds the result
//! back through [`super::Election::handle_procedure_result`]. A driver runs
//! procedures with a [`ProcedureRunner`]: non-blocking, polled from the
//! control thread's loop. [`Inline`] adapts blocking [`Procedures`] (for
//! the built-in appliance checks and actions, or tests); [`ScriptRunner`]
//! runs an operator script per procedure (exit status 0 is success, killed
//! and failed at its time limit) and delegates the others.
//!
//! Contract (Roelle 4.1): checks are *positive-definite*: a success must be
//! true, a false failure is acceptable. Actions do not check anything.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A customizable procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Procedure {
    /// `downlinkCheck()`: connectivity on the downstream side.
    DownlinkCheck,
    /// `uplinkCheck()`: connectivity on the upstream side.
    UplinkCheck,
    /// `remoteSvcCheck()`: the service as a client sees it.
    RemoteSvcCheck,
    /// `localSvcCheck()`: the service on the master, from inside.
    LocalSvcCheck,
    /// `activateUplink()`.
    ActivateUplink,
    /// `deactivateUplink()`.
    DeactivateUplink,
    /// `activateService()`: for ftfw, commit the external cache into the
    /// shards and start forwarding.
    ActivateService,
    /// `deactivateService()`: stop forwarding.
    DeactivateService,
    /// `takeoverDownstream()`: announce the downstream virtual addresses.
    TakeoverDownstream,
    /// `takeoverUpstream()`: announce the upstream virtual addresses.
    TakeoverUpstream,
    /// `releaseDownstream()`: stop answering for downstream addresses.
    ReleaseDownstream,
    /// `releaseUpstream()`: stop answering for upstream addresses.
    ReleaseUpstream,
}

impl Procedure {
    /// Every procedure.
    pub const ALL: [Procedure; 12] = [
        Procedure::DownlinkCheck,
        Procedure::UplinkCheck,
        Procedure::RemoteSvcCheck,
        Procedure::LocalSvcCheck,
        Procedure::ActivateUplink,
        Procedure::DeactivateUplink,
        Procedure::ActivateService,
        Procedure::DeactivateService,
        Procedure::TakeoverDownstream,
        Procedure::TakeoverUpstream,
        Procedure::ReleaseDownstream,
        Procedure::ReleaseUpstream,
    ];

    /// Name as used in configuration and script environments
    /// (`downlink_check`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Procedure::DownlinkCheck => "downlink_check",
            Procedure::UplinkCheck => "uplink_check",
            Procedure::RemoteSvcCheck => "remote_svc_check",
            Procedure::LocalSvcCheck => "local_svc_check",
            Procedure::ActivateUplink => "activate_uplink",
            Procedure::DeactivateUplink => "deactivate_uplink",
            Procedure::ActivateService => "activate_service",
            Procedure::DeactivateService => "deactivate_service",
            Procedure::TakeoverDownstream => "takeover_downstream",
            Procedure::TakeoverUpstream => "takeover_upstream",
            Procedure::ReleaseDownstream => "release_downstream",
            Procedure::ReleaseUpstream => "release_upstream",
        }
    }

    /// A monitoring procedure (as opposed to an action).
    pub fn is_check(self) -> bool {
        matches!(
            self,
            Procedure::DownlinkCheck
                | Procedure::UplinkCheck
                | Procedure::RemoteSvcCheck
                | Procedure::LocalSvcCheck
        )
    }
}

/// Identifies one procedure request; results carry it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Ticket(pub u64);

/// A request the machine made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcedureRequest {
    /// Echo this in the result.
    pub ticket: Ticket,
    /// What to run.
    pub procedure: Procedure,
    /// Its time limit (`tmax`); the machine counts it failed after this.
    pub timeout: Duration,
}

/// A finished procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcedureResult {
    /// From the request.
    pub ticket: Ticket,
    /// From the request.
    pub procedure: Procedure,
    /// Success.
    pub ok: bool,
}

/// Blocking procedures: each call returns within `timeout`. The built-in
/// appliance implementation (link probes, commit, forwarding switch,
/// gratuitous ARP) implements this; wrap it in [`Inline`].
pub trait Procedures {
    /// Run one procedure; true is success.
    fn run(&mut self, procedure: Procedure, timeout: Duration) -> bool;
}

/// Non-blocking procedure execution, driven by the control loop:
/// [`ProcedureRunner::start`] each [`ProcedureRequest`], then call
/// [`ProcedureRunner::poll_complete`] until it returns `None`, and again no
/// later than [`ProcedureRunner::poll_timeout`].
pub trait ProcedureRunner {
    /// Begin a procedure.
    fn start(&mut self, now: Instant, request: ProcedureRequest);
    /// A finished procedure, if any.
    fn poll_complete(&mut self, now: Instant) -> Option<ProcedureResult>;
    /// When to poll again while procedures run.
    fn poll_timeout(&self, now: Instant) -> Option<Instant>;
}

/// Runs blocking [`Procedures`] inside `start` (fine for fast built-ins).
#[derive(Debug)]
pub struct Inline<T> {
    inner: T,
    done: VecDeque<ProcedureResult>,
}

impl<T: Procedures> Inline<T> {
    /// Wrap blocking procedures.
    pub fn new(inner: T) -> Self {
        Inline {
            inner,
            done: VecDeque::new(),
        }
    }

    /// The wrapped procedures.
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: Procedures> ProcedureRunner for Inline<T> {
    fn start(&mut self, _now: Instant, r: ProcedureRequest) {
        let ok = self.inner.run(r.procedure, r.timeout);
        self.done.push_back(ProcedureResult {
            ticket: r.ticket,
            procedure: r.procedure,
            ok,
        });
    }

    fn poll_complete(&mut self, _now: Instant) -> Option<ProcedureResult> {
        self.done.pop_front()
    }

    fn poll_timeout(&self, _now: Instant) -> Option<Instant> {
        None
    }
}

/// One operator script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Executable (run directly, no shell).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Time limit; `None` uses the request's.
    pub timeout: Option<Duration>,
    /// Environment variables added to `FTFW_PROCEDURE` and `FTFW_NODE`.
    pub env: Vec<(OsString, OsString)>,
}

impl Script {
    /// A script without arguments, using the request's time limit.
    pub fn new(program: impl Into<PathBuf>) -> Script {
        Script {
            program: program.into(),
            args: Vec::new(),
            timeout: None,
            env: Vec::new(),
        }
    }
}

struct Running {
    req: ProcedureRequest,
    child: Child,
    deadline: Instant,
}

/// How often a running script's exit status is polled.
pub const SCRIPT_POLL: Duration = Duration::from_millis(2);

/// Runs an operator script for each configured procedure and delegates the
/// rest to `fallback`. The script gets the environment variables
/// `FTFW_PROCEDURE` (e.g. `takeover_upstream`) and `FTFW_NODE`, stdin, stdout
/// and stderr are null; exit status 0 is success; a script that cannot be
/// started, or is still running at its time limit (then killed), failed.
pub struct ScriptRunner<F> {
    scripts: HashMap<Procedure, Script>,
    node: u32,
    fallback: F,
    running: Vec<Running>,
    done: VecDeque<ProcedureResult>,
    /// Scripts killed at their time limit.
    pub timed_out: u64,
    /// Scripts that could not be started.
    pub spawn_failed: u64,
}

impl<F: ProcedureRunner> ScriptRunner<F> {
    /// Scripts for some procedures; `fallback` runs the others.
    pub fn new(node: u32, scripts: HashMap<Procedure, Script>, fallback: F) -> Self {
        ScriptRunner {
            scripts,
            node,
            fallback,
            running: Vec::new(),
            done: VecDeque::new(),
            timed_out: 0,
            spawn_failed: 0,
        }
    }

    /// Scripts still running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// The runner of procedures without a script.
    pub fn fallback_mut(&mut self) -> &mut F {
        &mut self.fallback
    }
}

impl<F: ProcedureRunner> ProcedureRunner for ScriptRunner<F> {
    fn start(&mut self, now: Instant, req: ProcedureRequest) {
        let Some(script) = self.scripts.get(&req.procedure) else {
            self.fallback.start(now, req);
            return;
        };
        let spawned = Command::new(&script.program)
            .args(&script.args)
            .env("FTFW_PROCEDURE", req.procedure.name())
            .env("FTFW_NODE", self.node.to_string())
            .envs(script.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => self.running.push(Running {
                req,
                child,
                deadline: now + script.timeout.unwrap_or(req.timeout),
            }),
            Err(_) => {
                self.spawn_failed += 1;
                self.done.push_back(ProcedureResult {
                    ticket: req.ticket,
                    procedure: req.procedure,
                    ok: false,
                });
            }
        }
    }

    fn poll_complete(&mut self, now: Instant) -> Option<ProcedureResult> {
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            let finished = match r.child.try_wait() {
                Ok(Some(status)) => Some(status.success()),
                Ok(None) if now >= r.deadline => {
                    // Kill and reap; a kill error means it just exited.
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    self.timed_out += 1;
                    Some(false)
                }
                Ok(None) => None,
                Err(_) => Some(false),
            };
            if let Some(ok) = finished {
                let r = self.running.swap_remove(i);
                self.done.push_back(ProcedureResult {
                    ticket: r.req.ticket,
                    procedure: r.req.procedure,
                    ok,
                });
            } else {
                i += 1;
            }
        }
        self.done
            .pop_front()
            .or_else(|| self.fallback.poll_complete(now))
    }

    fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let mine = self
            .running
            .iter()
            .map(|r| r.deadline)
            .min()
            .map(|d| d.min(now + SCRIPT_POLL));
        match (mine, self.fallback.poll_timeout(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl<F> Drop for ScriptRunner<F> {
    fn drop(&mut self) {
        for r in &mut self.running {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

/// Procedures with fixed results (tests, or a node with nothing to check).
#[derive(Clone, Debug, Default)]
pub struct Fixed {
    /// Results by procedure; missing ones succeed.
    pub results: HashMap<Procedure, bool>,
    /// Every procedure run, in order.
    pub log: Vec<Procedure>,
}

impl Procedures for Fixed {
    fn run(&mut self, procedure: Procedure, _timeout: Duration) -> bool {
        self.log.push(procedure);
        self.results.get(&procedure).copied().unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ticket: u64, procedure: Procedure, ms: u64) -> ProcedureRequest {
        ProcedureRequest {
            ticket: Ticket(ticket),
            procedure,
            timeout: Duration::from_millis(ms),
        }
    }

    fn wait_all(r: &mut ScriptRunner<Inline<Fixed>>, n: usize) -> Vec<ProcedureResult> {
        let mut out = Vec::new();
        let end = Instant::now() + Duration::from_secs(10);
        while out.len() < n && Instant::now() < end {
            while let Some(x) = r.poll_complete(Instant::now()) {
                out.push(x);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        out.sort_by_key(|x| x.ticket);
        out
    }

    #[test]
    fn scripts_succeed_fail_time_out_and_delegate() {
        let mut scripts = HashMap::new();
        scripts.insert(Procedure::UplinkCheck, Script::new("/bin/true"));
        scripts.insert(Procedure::DownlinkCheck, Script::new("/bin/false"));
        let mut slow = Script::new("/bin/sleep");
        slow.args.push("5".into());
        scripts.insert(Procedure::LocalSvcCheck, slow);
        scripts.insert(
            Procedure::ActivateUplink,
            Script::new("/nonexistent/ftfw-script"),
        );
        let mut fixed = Fixed::default();
        fixed.results.insert(Procedure::RemoteSvcCheck, false);
        let mut r = ScriptRunner::new(7, scripts, Inline::new(fixed));
        let now = Instant::now();
        r.start(now, req(1, Procedure::UplinkCheck, 5000));
        r.start(now, req(2, Procedure::DownlinkCheck, 5000));
        r.start(now, req(3, Procedure::LocalSvcCheck, 100));
        r.start(now, req(4, Procedure::ActivateUplink, 100));
        r.start(now, req(5, Procedure::RemoteSvcCheck, 100));
        r.start(now, req(6, Procedure::TakeoverUpstream, 100));
        assert!(r.poll_timeout(now).is_some());
        let results = wait_all(&mut r, 6);
        let oks: Vec<(u64, bool)> = results.iter().map(|x| (x.ticket.0, x.ok)).collect();
        assert_eq!(
            oks,
            vec![
                (1, true),
                (2, false),
                (3, false),
                (4, false),
                (5, false),
                (6, true)
            ]
        );
        assert_eq!(r.timed_out, 1);
        assert_eq!(r.spawn_failed, 1);
        assert_eq!(r.running(), 0);
    }

    #[test]
    fn script_sees_its_procedure_and_node() {
        let mut s = Script::new("/bin/sh");
        s.args = vec![
            "-c".into(),
            "test \"$FTFW_PROCEDURE\" = takeover_upstream && test \"$FTFW_NODE\" = 7".into(),
        ];
        let mut scripts = HashMap::new();
        scripts.insert(Procedure::TakeoverUpstream, s);
        let mut r = ScriptRunner::new(7, scripts, Inline::new(Fixed::default()));
        r.start(Instant::now(), req(1, Procedure::TakeoverUpstream, 5000));
        let res = wait_all(&mut r, 1);
        assert_eq!(res.len(), 1);
        assert!(res[0].ok);
    }
}
