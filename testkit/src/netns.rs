//! Namespace labs: network namespaces, veths and the processes run in
//! them, for the root tests and `ftfw-lab netns failover`.
//!
//! Namespace names carry the pid (`{prefix}{role}-{pid}{variant}`), so
//! parallel runs do not collide. Everything a [`NetnsLab`] made is removed
//! when it is dropped, even when a test fails: the processes it started
//! get SIGTERM (ftfwd removes its socket), then SIGKILL after 5 s, each by
//! its PID; then the namespaces go, then the lab's directory.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::wait::try_wait_until;

/// Runs `cmd` to completion (its exit status is the caller's to check).
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    cmd.output().with_context(|| format!("running {cmd:?}"))
}

/// Runs `args[0]` with the rest as arguments; an error unless it succeeds.
pub fn sh(args: &[&str]) -> anyhow::Result<()> {
    let Some((program, rest)) = args.split_first() else {
        bail!("no command")
    };
    let out = run(Command::new(program).args(rest))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Sends signal `sig` (`"TERM"`, `"HUP"`, `"KILL"`) to process `pid`.
pub fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    sh(&["kill", &format!("-{sig}"), &pid.to_string()])
}

/// Namespaces, veths and processes, removed on drop.
#[derive(Debug)]
pub struct NetnsLab {
    prefix: String,
    tag: String,
    dir: PathBuf,
    children: Vec<Child>,
    made: Vec<String>,
    /// Keep `dir` when the lab is dropped (see [`NetnsLab::keep_logs`]).
    keep_logs: AtomicBool,
}

impl NetnsLab {
    /// An empty lab whose namespaces are named `{prefix}{role}-{pid}{variant}`
    /// and whose files go to a fresh `{prefix}-{pid}{variant}` in the
    /// temporary directory.
    pub fn new(prefix: &str, variant: &str) -> anyhow::Result<NetnsLab> {
        let tag = format!("{}{variant}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{prefix}-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(NetnsLab {
            prefix: prefix.to_string(),
            tag,
            dir,
            children: Vec::new(),
            made: Vec::new(),
            keep_logs: AtomicBool::new(false),
        })
    }

    /// The three-namespace lab of the firewall tests: a client (`c`, its
    /// interface `c0`), the firewall (`f`, `c1` towards the client and
    /// `s1` towards the server) and a server (`s`, `s0`), joined by two
    /// veths with offloads off. Addresses and routes are the caller's.
    pub fn client_firewall_server(prefix: &str, variant: &str) -> anyhow::Result<NetnsLab> {
        NetnsLab::client_firewall_server_queues(prefix, variant, None)
    }

    /// [`NetnsLab::client_firewall_server`] with `queues` queues on every
    /// veth end (`None`: one per CPU). An AF_XDP port needs one worker
    /// per receive queue.
    pub fn client_firewall_server_queues(
        prefix: &str,
        variant: &str,
        queues: Option<usize>,
    ) -> anyhow::Result<NetnsLab> {
        let mut lab = NetnsLab::new(prefix, variant)?;
        let (c, f, s) = (lab.add_ns("c")?, lab.add_ns("f")?, lab.add_ns("s")?);
        lab.veth_queues((&c, "c0"), (&f, "c1"), queues)?;
        lab.veth_queues((&s, "s0"), (&f, "s1"), queues)?;
        for (n, i) in [(&c, "c0"), (&f, "c1"), (&f, "s1"), (&s, "s0")] {
            lab.offloads_off(n, i)?;
        }
        Ok(lab)
    }

    /// The pid and variant every name of this lab carries.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The lab's directory (configurations, sockets, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps the lab's directory when the lab is dropped, for a
    /// post-mortem of a run that failed: an error that names the logs
    /// must not name a directory already gone. The namespaces and
    /// processes still go.
    pub fn keep_logs(&self) {
        self.keep_logs.store(true, Ordering::Relaxed);
    }

    /// The name of namespace `role`.
    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}-{}", self.prefix, self.tag)
    }

    /// Creates namespace `role` with its loopback up; returns its name.
    pub fn add_ns(&mut self, role: &str) -> anyhow::Result<String> {
        let n = self.ns(role);
        sh(&["ip", "netns", "add", &n])?;
        self.made.push(n.clone());
        sh(&["ip", "-n", &n, "link", "set", "lo", "up"])?;
        Ok(n)
    }

    /// A veth pair, `a_if` in namespace `a_ns` and `b_if` in `b_ns` (names,
    /// as [`NetnsLab::ns`] gives them; the same one for a pair inside one
    /// namespace), both ends up.
    pub fn veth(
        &self,
        (a_ns, a_if): (&str, &str),
        (b_ns, b_if): (&str, &str),
    ) -> anyhow::Result<()> {
        self.veth_queues((a_ns, a_if), (b_ns, b_if), None)
    }

    /// [`NetnsLab::veth`] with `queues` transmit and receive queues on
    /// each end (`None`: the kernel's default, one per CPU).
    pub fn veth_queues(
        &self,
        (a_ns, a_if): (&str, &str),
        (b_ns, b_if): (&str, &str),
        queues: Option<usize>,
    ) -> anyhow::Result<()> {
        let q = queues.map(|q| q.to_string());
        let mut args = vec!["ip", "link", "add", a_if, "netns", a_ns];
        let per_end: Vec<&str> = match &q {
            Some(q) => vec!["numtxqueues", q, "numrxqueues", q],
            None => Vec::new(),
        };
        args.extend(&per_end);
        args.extend(["type", "veth", "peer", "name", b_if, "netns", b_ns]);
        args.extend(&per_end);
        sh(&args)?;
        for (ns, i) in [(a_ns, a_if), (b_ns, b_if)] {
            sh(&["ip", "-n", ns, "link", "set", i, "up"])?;
        }
        Ok(())
    }

    /// Complete frames on interface `ifname` of namespace `ns`: no checksum
    /// offload, no GSO/GRO (what AF_PACKET ports need to see).
    pub fn offloads_off(&self, ns: &str, ifname: &str) -> anyhow::Result<()> {
        sh(&[
            "ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso",
            "off", "gro", "off",
        ])
    }

    /// `ip -n NS ARGS...`.
    pub fn ip(&self, ns: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut a = vec!["ip", "-n", ns];
        a.extend_from_slice(args);
        sh(&a)
    }

    /// A command that runs `program` in namespace `ns` (for stdio of the
    /// caller's choosing; [`NetnsLab::spawn`] keeps track of what it starts,
    /// this does not).
    pub fn command(&self, ns: &str, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Starts `program` in namespace `ns`, stopped when the lab is dropped;
    /// its output goes to `log` in the lab's directory, or with `None`
    /// stdout is discarded and stderr inherited. Returns its PID.
    pub fn spawn(
        &mut self,
        ns: &str,
        program: impl AsRef<OsStr>,
        args: &[&str],
        log: Option<&str>,
    ) -> anyhow::Result<u32> {
        let mut cmd = self.command(ns, &program);
        cmd.args(args);
        match log {
            Some(name) => {
                let out = std::fs::File::create(self.dir.join(name))?;
                cmd.stdout(Stdio::from(out.try_clone()?))
                    .stderr(Stdio::from(out));
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", Path::new(program.as_ref()).display()))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Runs `program` in namespace `ns` to completion.
    pub fn exec(
        &self,
        ns: &str,
        program: impl AsRef<OsStr>,
        args: &[&str],
    ) -> anyhow::Result<Output> {
        run(self.command(ns, program).args(args))
    }

    /// The process with `pid` among those this lab started.
    pub fn child(&mut self, pid: u32) -> Option<&mut Child> {
        self.children.iter_mut().find(|c| c.id() == pid)
    }

    /// Waits (bounded by `within`) for the process `pid` this lab started
    /// to exit, and reaps it.
    pub fn wait_exit(
        &mut self,
        pid: u32,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .with_context(|| format!("no process {pid} in this lab"))?;
        let mut status = None;
        try_wait_until(&format!("process {pid} to exit"), within, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        })?;
        status.context("exit status")
    }

    /// The text of `name` in the lab's directory (empty if absent).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Waits (bounded by `within`) until `ftfwctl --socket SOCK status`
    /// answers: ftfwd is up and its console listens.
    pub fn wait_console(
        &self,
        ftfwctl: &Path,
        sock: &Path,
        within: Duration,
    ) -> anyhow::Result<()> {
        let mut cmd = Command::new(ftfwctl);
        cmd.arg("--socket").arg(sock).arg("status");
        try_wait_until(
            &format!("ftfwd's console on {}", sock.display()),
            within,
            || run(&mut cmd).is_ok_and(|o| o.status.success()),
        )?;
        Ok(())
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SIGTERM first so ftfwd removes its socket, then make sure;
            // never to a process already reaped (its PID may be reused).
            if let Ok(None) = c.try_wait() {
                let _ = signal(c.id(), "TERM");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.made {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        // FTFW_LAB_KEEP_LOGS=1, or a failed run (keep_logs), keeps the
        // configurations and logs for a post-mortem (the namespaces and
        // processes still go).
        let keep = self.keep_logs.load(Ordering::Relaxed)
            || std::env::var_os("FTFW_LAB_KEEP_LOGS").is_some_and(|v| v == "1");
        if keep {
            eprintln!("lab files kept for a post-mortem: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `dir/name` of a program built next to `exe` (a test's
/// `CARGO_BIN_EXE_...`), or an error telling how to build it.
pub fn sibling_bin(exe: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let p = exe.parent().context("no target directory")?.join(name);
    if !p.exists() {
        bail!(
            "{} not built: run `cargo test --workspace` (it builds ftfwd and ftfwctl)",
            p.display()
        );
    }
    Ok(p)
}

/// `ftfwctl --socket SOCK --json ARGS...`, run to completion.
pub fn ctl(ftfwctl: &Path, sock: &Path, args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new(ftfwctl)
        .arg("--socket")
        .arg(sock)
        .arg("--json")
        .args(args))
}

/// The JSON answer of `ftfwctl ... ARGS`; an error if it fails or does not
/// answer JSON.
pub fn ctl_json(ftfwctl: &Path, sock: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = ctl(ftfwctl, sock, args)?;
    if !out.status.success() {
        bail!(
            "ftfwctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "ftfwctl {args:?} output not JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A total worker counter of `ftfwctl stats` output.
pub fn counter(stats: &serde_json::Value, name: &str) -> anyhow::Result<u64> {
    stats["total"][name]
        .as_u64()
        .with_context(|| format!("no counter {name} in {stats}"))
}

impl NetnsLab {
    /// One transfer of the lab's probe client (`ftfw-lab fetch --json`) in
    /// namespace `ns`: `bytes` from `connect`, broken after `stall_ms`
    /// without progress; `extra` arguments appended. Its JSON report.
    pub fn probe_fetch(
        &self,
        ns: &str,
        ftfw_lab: &Path,
        connect: &str,
        bytes: u64,
        stall_ms: u64,
        extra: &[&str],
    ) -> anyhow::Result<serde_json::Value> {
        let (b, s) = (bytes.to_string(), stall_ms.to_string());
        let mut args = vec![
            "fetch",
            "--connect",
            connect,
            "--bytes",
            &b,
            "--stall-ms",
            &s,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.exec(ns, ftfw_lab, &args)?;
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "fetch output not JSON: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl NetnsLab {
    /// Starts one transfer of the probe client (`ftfw-lab fetch --json`) in
    /// namespace `ns` in the background: `bytes` from `connect`, `extra`
    /// arguments appended (`--stall-ms`, `--pause-ms`). Its stdout is
    /// piped (`wait_with_output` gives the JSON report); the caller waits
    /// for it, the lab does not track it.
    pub fn spawn_probe_fetch(
        &self,
        ns: &str,
        ftfw_lab: &Path,
        connect: &str,
        bytes: u64,
        extra: &[&str],
    ) -> anyhow::Result<Child> {
        let b = bytes.to_string();
        self.command(ns, ftfw_lab)
            .args(["fetch", "--connect", connect, "--bytes", &b, "--json"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", ftfw_lab.display()))
    }

    /// Linux routes between the client and the server of a
    /// [`NetnsLab::client_firewall_server`] lab: the firewall namespace
    /// forwards, with 192.0.2.254/24 on `c1` and 198.51.100.254/24 on
    /// `s1`; the server gets 198.51.100.2/24 on `s0`; client and server
    /// route by default through the firewall. The client's own address
    /// (192.0.2.1/24 on `c0`) is the caller's.
    pub fn kernel_routed(&self) -> anyhow::Result<()> {
        let (c, f, s) = (self.ns("c"), self.ns("f"), self.ns("s"));
        self.ip(&f, &["addr", "add", "192.0.2.254/24", "dev", "c1"])?;
        self.ip(&f, &["addr", "add", "198.51.100.254/24", "dev", "s1"])?;
        self.ip(&s, &["addr", "add", "198.51.100.2/24", "dev", "s0"])?;
        self.ip(&c, &["route", "add", "default", "via", "192.0.2.254"])?;
        self.ip(&s, &["route", "add", "default", "via", "198.51.100.254"])?;
        sh(&[
            "ip",
            "netns",
            "exec",
            &f,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
    }

    /// Starts `ftfwd --config CONFIG` in namespace `ns` (output as
    /// [`NetnsLab::spawn`] with `log`) and waits up to 20 s until its
    /// console answers on `sock`. Returns its PID.
    pub fn start_ftfwd(
        &mut self,
        ns: &str,
        bins: (&Path, &Path),
        config: &Path,
        sock: &Path,
        log: Option<&str>,
    ) -> anyhow::Result<u32> {
        let (ftfwd, ftfwctl) = bins;
        let config = config.to_str().context("configuration path not UTF-8")?;
        let pid = self.spawn(ns, ftfwd, &["--config", config], log)?;
        self.wait_console(ftfwctl, sock, Duration::from_secs(20))?;
        Ok(pid)
    }
}

/// The TCP flows to `dport` that `ftfwctl flows list` shows ESTABLISHED
/// (empty when the console does not answer).
pub fn established_flows(ftfwctl: &Path, sock: &Path, dport: u16) -> Vec<serde_json::Value> {
    let port = dport.to_string();
    ctl_json(
        ftfwctl,
        sock,
        &[
            "flows",
            "list",
            "-p",
            "tcp",
            "--dport",
            &port,
            "--state",
            "ESTABLISHED",
        ],
    )
    .ok()
    .and_then(|v| v["flows"].as_array().cloned())
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_lab_keeps_its_files_and_others_remove_them() {
        // FTFW_LAB_KEEP_LOGS=1 in the environment keeps every lab's files.
        let keep_all = std::env::var_os("FTFW_LAB_KEEP_LOGS").is_some_and(|v| v == "1");
        let good = NetnsLab::new("ftfwtest-keep", "good").unwrap();
        let gdir = good.dir().to_path_buf();
        std::fs::write(gdir.join("ftfwd.log"), "fine").unwrap();
        drop(good);
        assert_eq!(gdir.exists(), keep_all);
        let bad = NetnsLab::new("ftfwtest-keep", "bad").unwrap();
        let bdir = bad.dir().to_path_buf();
        std::fs::write(bdir.join("ftfwd.log"), "what went wrong").unwrap();
        bad.keep_logs();
        drop(bad);
        assert_eq!(
            std::fs::read_to_string(bdir.join("ftfwd.log")).unwrap(),
            "what went wrong"
        );
        std::fs::remove_dir_all(&bdir).unwrap();
        let _ = std::fs::remove_dir_all(&gdir);
    }
}
