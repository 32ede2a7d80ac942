//! Root test: expectation replication between ftfwd (`[sync] expectations
//! = true`) and the real conntrackd 1.4.7 with `ExpectationSync on`, each
//! in network namespaces the test creates and deletes.
//!
//! ```text
//! ns C: c0 192.0.2.1/24 --veth-- c1 [ftfwd bridge] s1 --veth-- s0 192.0.2.2/24 :ns S
//!                       ns F: ftfwd, sync on vs0 203.0.113.1/30
//!                                        |veth
//! ns K: vs1 203.0.113.2/30, conntrackd; on lo 198.51.100.1 (FTP server)
//!       and 198.51.100.2 (FTP client), the kernel's FTP helper attached
//!       by an nftables `ct helper` rule
//! ```
//!
//! Checks:
//! - conntrackd to us: the Linux FTP helper in K creates an expectation
//!   for a PORT command; conntrackd sends it (EXP_NEW) and `ftfwctl expect
//!   external` shows it; `ftfwctl commit` puts it into ftfwd's table
//!   (`expect list`);
//! - us to conntrackd: a PORT command through ftfwd creates our
//!   expectation; it appears in `conntrackd -e expect` and, after
//!   `conntrackd -c ct` and `-c expect`, in K's kernel (`conntrack -L
//!   expect`); the data connection that uses it on ftfwd removes it from
//!   conntrackd's external cache (EXP_DEL);
//! - neither side counts a malformed message from the other;
//! - one side without the option: conntrackd without `ExpectationSync`
//!   drops our EXP messages without counting an error (its expectation
//!   cache stays empty, flows replicate); ftfwd without `expectations`
//!   counts conntrackd's as `expectations_ignored` and skips them.
//!
//! Needs root, iproute2, ethtool, nftables, python3, conntrackd and
//! conntrack (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ftfw_testkit::conntrackd::ConntrackdPeer;
use ftfw_testkit::netns::NetnsLab;
use ftfw_testkit::try_wait_until;

const WAIT: Duration = Duration::from_secs(20);

/// A bounded FTP control dialogue (server and client roles).
const FTP_PY: &str = r#"
import socket, sys, time
role = sys.argv[1]
if role == "server":
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((sys.argv[2], 21)); srv.listen(4); srv.settimeout(120)
    while True:
        conn, _ = srv.accept(); conn.settimeout(120)
        conn.sendall(b"220 ready\r\n")
        buf = b""
        while True:
            d = conn.recv(512)
            if not d:
                break
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd = line.strip().split(b" ")[0].upper()
                conn.sendall({b"USER": b"331 ok\r\n", b"PORT": b"200 ok\r\n",
                              b"QUIT": b"221 bye\r\n"}.get(cmd, b"500 ?\r\n"))
        conn.close()
elif role == "client":
    # USER first: Linux's helper reads a command only after a line feed
    # it saw in the same direction.
    src, dst, port, hold = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    # The server may still be starting: retry for at most 10 s.
    end = time.time() + 10
    while True:
        try:
            c = socket.create_connection((dst, 21), timeout=10, source_address=(src, 0))
            break
        except ConnectionRefusedError:
            if time.time() > end:
                raise
            time.sleep(0.05)
    f = c.makefile("rb")
    f.readline()
    c.sendall(b"USER anonymous\r\n"); f.readline()
    c.sendall(("PORT %s,%d,%d\r\n" % (src.replace(".", ","), port >> 8, port & 0xff)).encode())
    r = f.readline()
    print("PORT-OK" if r.startswith(b"200") else "PORT-FAILED %r" % r, flush=True)
    # Keep the control connection (the expectation's master) open for the
    # rest of the test; the test stops this process by PID before then.
    time.sleep(hold)
    c.sendall(b"QUIT\r\n"); f.readline(); c.close()
else:
    # data SRC DST PORT: the server's data connection (refused: nobody
    # listens, but its SYN uses the expectation on the way).
    s = socket.socket(); s.bind((sys.argv[2], 20)); s.settimeout(10)
    try:
        s.connect((sys.argv[3], int(sys.argv[4])))
        print("DATA-CONNECTED", flush=True)
    except ConnectionRefusedError:
        print("DATA-REFUSED", flush=True)
"#;

fn lab(variant: &str) -> NetnsLab {
    let mut lab = NetnsLab::client_firewall_server("ftfx", variant).unwrap();
    let k = lab.add_ns("K").unwrap();
    let (c, f, s) = (lab.ns("c"), lab.ns("f"), lab.ns("s"));
    lab.veth((&f, "vs0"), (&k, "vs1")).unwrap();
    lab.ip(&c, &["addr", "add", "192.0.2.1/24", "dev", "c0"])
        .unwrap();
    lab.ip(&s, &["addr", "add", "192.0.2.2/24", "dev", "s0"])
        .unwrap();
    lab.ip(&f, &["addr", "add", "203.0.113.1/30", "dev", "vs0"])
        .unwrap();
    lab.ip(&k, &["addr", "add", "203.0.113.2/30", "dev", "vs1"])
        .unwrap();
    for a in ["198.51.100.1/32", "198.51.100.2/32"] {
        lab.ip(&k, &["addr", "add", a, "dev", "lo"]).unwrap();
    }
    // The kernel's FTP helper on K's control connections (port 21).
    let nft = lab.dir().join("k.nft");
    std::fs::write(
        &nft,
        "table inet ftfx {
  ct helper ftph { type \"ftp\" protocol tcp; }
  chain out { type filter hook output priority 0; policy accept; tcp dport 21 ct helper set \"ftph\"; }
  chain inp { type filter hook input priority 0; policy accept; ct state { new, established, related } accept; }
}
",
    )
    .unwrap();
    let out = lab.exec(&k, "nft", &["-f", nft.to_str().unwrap()]).unwrap();
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(lab.dir().join("ftp.py"), FTP_PY).unwrap();
    lab
}

fn conntrackd_conf(dir: &Path, expectation_sync: bool) -> PathBuf {
    ConntrackdPeer {
        expectation_sync,
        ..ConntrackdPeer::default()
    }
    .write_config(dir)
    .unwrap()
}

fn ftfwd_conf(dir: &Path, expectations: bool) -> PathBuf {
    let d = dir.display();
    std::fs::write(
        dir.join("rules.conf"),
        "policy accept\naccept proto tcp dport 21 helper ftp\n",
    )
    .unwrap();
    let text = format!(
        "[daemon]
console_socket = \"{d}/ftfwd.sock\"
log_level = \"debug\"

[[port]]
name = \"outside\"
backend = \"af_packet\"
interface = \"c1\"

[[port]]
name = \"inside\"
backend = \"af_packet\"
interface = \"s1\"

[[bridge]]
ports = [\"outside\", \"inside\"]

[rules]
file = \"{d}/rules.conf\"

[sync]
local = \"203.0.113.1\"
peer = \"203.0.113.2\"
interface = \"vs0\"
port = 3780
expectations = {expectations}
"
    );
    let p = dir.join("ftfwd.toml");
    std::fs::write(&p, text).unwrap();
    p
}

struct Ctx {
    lab: NetnsLab,
    conf: String,
    sock: String,
}

impl Ctx {
    fn ctl(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--socket", &self.sock, "--json"];
        a.extend_from_slice(args);
        let out = self
            .lab
            .exec(&self.lab.ns("f"), env!("CARGO_BIN_EXE_ftfwctl"), &a)
            .unwrap();
        assert!(
            out.status.success(),
            "ftfwctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn expectations(&self, what: &str) -> Vec<serde_json::Value> {
        self.ctl(&["expect", what])["expectations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Output of a command in K that must succeed.
    fn in_k(&self, program: &str, args: &[&str]) -> String {
        let out = self.lab.exec(&self.lab.ns("K"), program, args).unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn conntrackd(&self, args: &[&str]) -> String {
        let mut a = vec!["-C", self.conf.as_str()];
        a.extend_from_slice(args);
        self.in_k("conntrackd", &a)
    }

    fn python(&self, ns: &str, args: &[&str]) -> String {
        let script = self.lab.dir().join("ftp.py");
        let mut a = vec![script.to_str().unwrap()];
        a.extend_from_slice(args);
        let out = self.lab.exec(ns, "python3", &a).unwrap();
        assert!(
            out.status.success(),
            "ftp.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait(&self, what: &str, f: impl FnMut() -> bool) {
        if let Err(e) = try_wait_until(what, WAIT, f) {
            panic!(
                "{e}\n--- K's FTP client and server:\n{}{}\n--- ftfwd log:\n{}\n--- conntrackd log:\n{}\n--- conntrackd -s network:\n{}",
                self.lab.log("k-client.out"),
                self.lab.log("k-server.out"),
                self.lab.log("ftfwd.out"),
                self.lab.log("conntrackd.log"),
                self.conntrackd(&["-s", "network"])
            );
        }
    }
}

fn has(l: &[serde_json::Value], dport: u16, src: &str, master_sport: Option<u64>) -> bool {
    l.iter().any(|e| {
        e["expected"]["dport"] == dport
            && e["expected"]["src"] == src
            && e["expected"].get("sport").is_none()
            && e["helper"] == "ftp"
            && e["master"]["original"]["dport"] == 21
            && master_sport.is_none_or(|p| e["master"]["original"]["sport"] == p)
    })
}

/// The receive-error counters of `conntrackd -s network`: (lines, sum).
fn network_errors(stats: &str) -> (usize, u64) {
    let labels = ["Malformed", "Wrong protocol", "Bad message", "Truncated"];
    let mut found = 0;
    let mut sum = 0;
    for line in stats.lines().map(str::trim) {
        if labels.iter().any(|l| line.starts_with(l)) {
            let v = line.rsplit(|c: char| c == ':' || c.is_whitespace()).next();
            if let Some(v) = v.and_then(|v| v.parse::<u64>().ok()) {
                found += 1;
                sum += v;
            }
        }
    }
    (found, sum)
}

/// Starts conntrackd (in K) and ftfwd (in F) with the option on or off,
/// the FTP servers in K and S, and K's FTP client announcing port 50001
/// (its control connection held for at most 60 s).
fn start(variant: &str, expectation_sync: bool, expectations: bool) -> Ctx {
    let mut lab = lab(variant);
    let conf = conntrackd_conf(lab.dir(), expectation_sync);
    let ftfwd = ftfwd_conf(lab.dir(), expectations);
    let (f, k, s) = (lab.ns("f"), lab.ns("K"), lab.ns("s"));
    let script = lab.dir().join("ftp.py").display().to_string();
    lab.spawn(
        &k,
        "conntrackd",
        &["-C", conf.to_str().unwrap()],
        Some("conntrackd.out"),
    )
    .unwrap();
    lab.spawn(
        &f,
        env!("CARGO_BIN_EXE_ftfwd"),
        &["--config", ftfwd.to_str().unwrap()],
        Some("ftfwd.out"),
    )
    .unwrap();
    // The FTP servers: in K (for the kernel's helper) and in S (behind
    // ftfwd). Each exits on its own after two idle minutes.
    lab.spawn(
        &k,
        "python3",
        &[&script, "server", "198.51.100.1"],
        Some("k-server.out"),
    )
    .unwrap();
    lab.spawn(
        &s,
        "python3",
        &[&script, "server", "192.0.2.2"],
        Some("s-server.out"),
    )
    .unwrap();
    // K's FTP client keeps its control connection for 60 s at most (the
    // kernel drops an expectation with its master).
    lab.spawn(
        &k,
        "python3",
        &[
            &script,
            "client",
            "198.51.100.2",
            "198.51.100.1",
            "50001",
            "60",
        ],
        Some("k-client.out"),
    )
    .unwrap();
    let ctx = Ctx {
        conf: conf.display().to_string(),
        sock: lab.dir().join("ftfwd.sock").display().to_string(),
        lab,
    };
    ctx.wait("ftfwd's console", || {
        ctx.lab
            .exec(
                &f,
                env!("CARGO_BIN_EXE_ftfwctl"),
                &["--socket", &ctx.sock, "status"],
            )
            .is_ok_and(|o| o.status.success())
    });
    // The sync link up and the startup resync done before any test flow:
    // a flow replicated before conntrackd listens is not sent again unless
    // it changes, and the tests' marker flows do not.
    ctx.wait("the sync link to conntrackd", || {
        let st = ctx.ctl(&["sync", "status"]);
        st["peer_state"] == "up" && st["resync_complete"] == true
    });
    ctx.wait("K's kernel expectation", || {
        ctx.in_k("conntrack", &["-L", "expect"])
            .contains("dport=50001")
    });
    ctx
}

#[test]
#[ignore = "needs root: network namespaces, nftables, conntrackd and conntrack"]
fn expectations_replicate_with_conntrackd_both_ways() {
    let ctx = start("b", true, true);
    let s = ctx.lab.ns("s");

    // 1. conntrackd to us: the kernel's expectation (server 198.51.100.1
    // to the client's port 50001, any source port).
    ctx.wait("conntrackd's expectation in ftfwd's external cache", || {
        has(&ctx.expectations("external"), 50001, "198.51.100.1", None)
    });
    let ext = ctx.expectations("external");
    let e = ext
        .iter()
        .find(|e| e["expected"]["dport"] == 50001)
        .unwrap();
    assert_eq!(e["expected"]["dst"], "198.51.100.2");
    assert_eq!(e["master"]["original"]["src"], "198.51.100.2");
    assert_eq!(e["master"]["original"]["dst"], "198.51.100.1");
    let left = e["timeout"].as_u64().unwrap();
    assert!(left > 0 && left <= 300, "{e}");
    // A commit puts it into ftfwd's table.
    ctx.ctl(&["commit"]);
    assert!(
        has(&ctx.expectations("list"), 50001, "198.51.100.1", None),
        "{:?}",
        ctx.expectations("list")
    );

    // 2. Us to conntrackd: a PORT command through ftfwd.
    let out = ctx.python(
        &ctx.lab.ns("c"),
        &["client", "192.0.2.1", "192.0.2.2", "50002", "0"],
    );
    assert!(out.contains("PORT-OK"), "{out}");
    let ours = ctx.expectations("list");
    assert!(has(&ours, 50002, "192.0.2.2", None), "{ours:?}");
    let msport = ours
        .iter()
        .find(|e| e["expected"]["dport"] == 50002)
        .and_then(|e| e["master"]["original"]["sport"].as_u64())
        .unwrap();
    let line = format!("master-src=192.0.2.1 master-dst=192.0.2.2 sport={msport} dport=21");
    ctx.wait("our expectation in conntrackd's external cache", || {
        ctx.conntrackd(&["-e", "expect"])
            .lines()
            .any(|l| l.contains("dport=50002") && l.contains(&line) && l.contains("helper=ftp"))
    });
    let ext = ctx.conntrackd(&["-e", "expect"]);
    let l = ext.lines().find(|l| l.contains("dport=50002")).unwrap();
    assert!(
        l.contains("src=192.0.2.2 dst=192.0.2.1 sport=0 dport=50002"),
        "{l}"
    );
    assert!(l.contains("sport=0 dport=65535"), "any source port: {l}");
    // conntrackd commits it (and its master) into K's kernel.
    ctx.conntrackd(&["-c", "ct"]);
    ctx.conntrackd(&["-c", "expect"]);
    let kernel = ctx.in_k("conntrack", &["-L", "expect"]);
    assert!(
        kernel
            .lines()
            .any(|l| l.contains("dport=50002") && l.contains(&line)),
        "{kernel}"
    );

    // 3. The data connection uses our expectation: EXP_DEL to conntrackd.
    let out = ctx.python(&s, &["data", "192.0.2.2", "192.0.2.1", "50002"]);
    assert!(out.contains("DATA-"), "{out}");
    assert!(!has(&ctx.expectations("list"), 50002, "192.0.2.2", None));
    ctx.wait("our used expectation gone from conntrackd's cache", || {
        !ctx.conntrackd(&["-e", "expect"]).contains("dport=50002")
    });

    // 4. Nobody counted a malformed message.
    let st = ctx.ctl(&["sync", "status"]);
    for k in ["malformed", "malformed_payload", "expectations_ignored"] {
        assert_eq!(st[k], 0, "{k}: {st}");
    }
    assert!(st["expectations_received"].as_u64() >= Some(1), "{st}");
    assert!(st["expectations_sent"].as_u64() >= Some(2), "{st}");
    assert_eq!(st["expectations_committed"], 1, "{st}");
    let (found, errors) = network_errors(&ctx.conntrackd(&["-s", "network"]));
    assert!(found >= 4, "conntrackd -s network layout changed");
    assert_eq!(errors, 0);
}

/// conntrackd without ExpectationSync, ftfwd with `expectations`: our EXP
/// messages are dropped by conntrackd without an error count; flows
/// replicate as before.
#[test]
#[ignore = "needs root: network namespaces, nftables, conntrackd and conntrack"]
fn conntrackd_without_expectation_sync_ignores_ours() {
    let ctx = start("k", false, true);
    let s = ctx.lab.ns("s");
    let out = ctx.python(
        &ctx.lab.ns("c"),
        &["client", "192.0.2.1", "192.0.2.2", "50002", "0"],
    );
    assert!(out.contains("PORT-OK"), "{out}");
    // The data connection uses it (EXP_DEL), and its own flow, sent after
    // both EXP messages, is the marker.
    let out = ctx.python(&s, &["data", "192.0.2.2", "192.0.2.1", "50002"]);
    assert!(out.contains("DATA-"), "{out}");
    ctx.wait("the data connection in conntrackd's external cache", || {
        ctx.conntrackd(&["-e", "ct"])
            .contains("sport=20 dport=50002")
    });
    let st = ctx.ctl(&["sync", "status"]);
    assert!(st["expectations_sent"].as_u64() >= Some(2), "{st}");
    assert_eq!(ctx.conntrackd(&["-e", "expect"]).trim(), "");
    let (found, errors) = network_errors(&ctx.conntrackd(&["-s", "network"]));
    assert!(found >= 4, "conntrackd -s network layout changed");
    assert_eq!(errors, 0, "conntrackd counted our EXP messages as errors");
}

/// ftfwd without `expectations`, conntrackd with ExpectationSync: the
/// kernel's expectation arrives as EXP_NEW, is counted and skipped.
#[test]
#[ignore = "needs root: network namespaces, nftables, conntrackd and conntrack"]
fn ftfwd_without_the_option_counts_and_skips_conntrackds() {
    let ctx = start("f", true, false);
    ctx.wait("conntrackd's EXP_NEW counted as ignored", || {
        ctx.ctl(&["sync", "status"])["expectations_ignored"].as_u64() >= Some(1)
    });
    let st = ctx.ctl(&["sync", "status"]);
    assert_eq!(st["expectations"], false, "{st}");
    for k in ["malformed", "malformed_payload", "expectations_received"] {
        assert_eq!(st[k], 0, "{k}: {st}");
    }
    assert!(ctx.expectations("external").is_empty());
    // Flows from conntrackd still arrive: K's FTP control connection.
    ctx.wait("K's control connection in ftfwd's external cache", || {
        ctx.ctl(&["external", "list"])["flows"]
            .as_array()
            .is_some_and(|l| l.iter().any(|f| f["original"]["dport"] == 21))
    });
}
