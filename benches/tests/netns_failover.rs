//! Root test: a pair of transparent ftfwd firewalls with replication and the
//! built-in election, in network namespaces the test creates and deletes.
//!
//! ```text
//!                  +-- fw1 (node 1, priority 200) --+
//! client --[hub]---+                                +---[hub]-- server
//!  192.0.2.1       +-- fw2 (node 2, priority 100) --+            192.0.2.2
//!                  fw1 <== sync + election: 203.0.113.1 <-> .2 ==> fw2
//! ```
//!
//! The hubs are Linux bridges with ageing 0 (every frame flooded), so both
//! firewalls see every frame and only the active one forwards. Long TCP
//! transfers go through fw1; fw1 is killed with SIGKILL mid-transfer; every
//! transfer completes through fw2 with no reset; fw1 returns as a backup and
//! traffic is not disturbed.
#![allow(clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin(name: &str) -> PathBuf {
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_ftfw-lab"));
    let p = lab.parent().expect("target dir").join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo test --workspace` (it builds ftfwd and ftfwctl)",
        p.display()
    );
    p
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn sh(args: &[&str]) {
    let out = run(Command::new(args[0]).args(&args[1..]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const ROLES: [&str; 5] = ["c", "s", "h", "1", "2"];

struct Lab {
    tag: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("ftfwfo{role}-{}", self.tag)
    }

    fn new(routed: bool) -> Lab {
        Lab::new_tagged(routed, if routed { "r" } else { "t" })
    }

    fn new_tagged(routed: bool, suffix: &str) -> Lab {
        let tag = format!("{}{suffix}", std::process::id());
        let dir = std::env::temp_dir().join(format!("ftfw-failover-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            tag,
            dir,
            children: Vec::new(),
        };
        for r in ROLES {
            let n = lab.ns(r);
            sh(&["ip", "netns", "add", &n]);
            sh(&["ip", "-n", &n, "link", "set", "lo", "up"]);
        }
        let h = lab.ns("h");
        for br in ["brc", "brs"] {
            sh(&[
                "ip",
                "-n",
                &h,
                "link",
                "add",
                br,
                "type",
                "bridge",
                "ageing_time",
                "0",
                "stp_state",
                "0",
                "mcast_snooping",
                "0",
            ]);
            sh(&["ip", "-n", &h, "link", "set", br, "up"]);
        }
        // (namespace, interface) <-> hub bridge port
        let links = [
            ("c", "c0", "hc", "brc"),
            ("s", "s0", "hs", "brs"),
            ("1", "o", "h1o", "brc"),
            ("1", "i", "h1i", "brs"),
            ("2", "o", "h2o", "brc"),
            ("2", "i", "h2i", "brs"),
        ];
        for (role, ifname, hub_if, br) in links {
            let n = lab.ns(role);
            sh(&[
                "ip", "link", "add", ifname, "netns", &n, "type", "veth", "peer", "name", hub_if,
                "netns", &h,
            ]);
            for (ns, i) in [(&n, ifname), (&h, hub_if)] {
                sh(&[
                    "ip", "netns", "exec", ns, "ethtool", "-K", i, "tx", "off", "tso", "off",
                    "gso", "off", "gro", "off",
                ]);
                sh(&["ip", "-n", ns, "link", "set", i, "up"]);
            }
            sh(&["ip", "-n", &h, "link", "set", hub_if, "master", br]);
        }
        let (c, s) = (lab.ns("c"), lab.ns("s"));
        if routed {
            // Two subnets; each host reaches the other through the
            // firewalls' virtual address on its side (only the lab's own
            // prefixes are routed: nothing leaves the namespaces).
            for args in [
                ["-n", &c, "addr", "add", "192.0.2.1/24", "dev", "c0"],
                [
                    "-n",
                    &c,
                    "route",
                    "add",
                    "198.51.100.0/24",
                    "via",
                    "192.0.2.254",
                ],
                ["-n", &s, "addr", "add", "198.51.100.2/24", "dev", "s0"],
                [
                    "-n",
                    &s,
                    "route",
                    "add",
                    "192.0.2.0/24",
                    "via",
                    "198.51.100.254",
                ],
            ] {
                let mut v = vec!["ip"];
                v.extend_from_slice(&args);
                sh(&v);
            }
        } else {
            sh(&["ip", "-n", &c, "addr", "add", "192.0.2.1/24", "dev", "c0"]);
            sh(&["ip", "-n", &s, "addr", "add", "192.0.2.2/24", "dev", "s0"]);
        }
        // The dedicated sync link.
        let (n1, n2) = (lab.ns("1"), lab.ns("2"));
        sh(&[
            "ip", "link", "add", "y", "netns", &n1, "type", "veth", "peer", "name", "y", "netns",
            &n2,
        ]);
        sh(&["ip", "-n", &n1, "addr", "add", "203.0.113.1/30", "dev", "y"]);
        sh(&["ip", "-n", &n2, "addr", "add", "203.0.113.2/30", "dev", "y"]);
        sh(&["ip", "-n", &n1, "link", "set", "y", "up"]);
        sh(&["ip", "-n", &n2, "link", "set", "y", "up"]);
        lab
    }

    /// Starts `program` in `ns`; returns its index in `children` (and the
    /// PID is the program's own: `ip netns exec` execs it).
    fn spawn(&mut self, ns: &str, program: &Path, args: &[&str], log: &str) -> usize {
        let out = std::fs::File::create(self.dir.join(log)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
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
        for r in ROLES {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(r)])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const KEY: &str = "8d1f3a6c2b7e4f9001a2b3c4d5e6f708";

fn fw_config(dir: &Path, n: u32, routed: bool) -> PathBuf {
    fw_config_with(dir, n, routed, false)
}

fn fw_config_with(dir: &Path, n: u32, routed: bool, keepalived: bool) -> PathBuf {
    let (local, peer, prio, peer_id) = if n == 1 {
        ("203.0.113.1", "203.0.113.2", 200, 2)
    } else {
        ("203.0.113.2", "203.0.113.1", 100, 1)
    };
    // Routed: own addresses .11 / .12 on each side, the shared virtual
    // addresses .254 announced by whichever node is primary.
    let forwarding = if routed {
        format!(
            "[dataplane]\npoll_mode = \"adaptive\"\nmode = \"routed\"\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"o\"\naddresses = [\"192.0.2.1{n}/24\"]\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"i\"\naddresses = [\"198.51.100.1{n}/24\"]\n\n\
             [[virtual_address]]\nport = \"outside\"\naddress = \"192.0.2.254/24\"\n\n\
             [[virtual_address]]\nport = \"inside\"\naddress = \"198.51.100.254/24\"\n\n"
        )
    } else {
        "[dataplane]\npoll_mode = \"adaptive\"\n\n\
         [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"o\"\n\n\
         [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"i\"\n\n\
         [[bridge]]\nports = [\"outside\", \"inside\"]\n\n"
            .to_string()
    };
    let failover = if keepalived {
        "[failover]\nmode = \"keepalived\"\n".to_string()
    } else {
        format!(
            "[failover]\nmode = \"election\"\nnode = {n}\npriority = {prio}\nkey = \"{KEY}\"\ncheck_interval_ms = 50\n\n\
             [[failover.peer]]\nnode = {peer_id}\naddress = \"{peer}\"\npriority = {pp}\n",
            pp = if n == 1 { 100 } else { 200 },
        )
    };
    let text = format!(
        "[daemon]\nconsole_socket = \"{d}/fw{n}.sock\"\n\n{forwarding}\
         [conntrack]\ncapacity = 4096\n\n\
         [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\", \"accept in outside proto tcp dport 8080 ct new\", \"accept proto icmp\"]\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\ninterface = \"y\"\nalive_interval_ms = 100\n\n{failover}",
        d = dir.display(),
    );
    let p = dir.join(format!("fw{n}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn status(lab: &Lab, n: u32) -> Option<serde_json::Value> {
    let sock = lab.dir.join(format!("fw{n}.sock"));
    let out = run(Command::new(bin("ftfwctl")).args([
        "--socket",
        sock.to_str().unwrap(),
        "--json",
        "status",
    ]));
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn ctl_text(lab: &Lab, n: u32, args: &[&str]) -> String {
    let sock = lab.dir.join(format!("fw{n}.sock"));
    let out = run(Command::new(bin("ftfwctl"))
        .args(["--socket", sock.to_str().unwrap()])
        .args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(lab: &Lab, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n--- fw1 stats:\n{}\n{}\n--- fw2 stats:\n{}\n--- fw1:\n{}\n--- fw2:\n{}",
            ctl_text(lab, 1, &["stats"]),
            ctl_text(lab, 1, &["neighbors"]),
            ctl_text(lab, 2, &["stats"]),
            lab.log("fw1.out"),
            lab.log("fw2.out")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn role(lab: &Lab, n: u32) -> Option<String> {
    status(lab, n).and_then(|s| s["role"].as_str().map(str::to_string))
}

fn fetch_process(lab: &Lab, bytes: u64, pause_ms: u64) -> Child {
    let server = if lab.tag.ends_with('r') {
        "198.51.100.2:8080"
    } else {
        "192.0.2.2:8080"
    };
    Command::new("ip")
        .args(["netns", "exec", &lab.ns("c")])
        .arg(bin("ftfw-lab"))
        .args([
            "fetch",
            "--connect",
            server,
            "--bytes",
            &bytes.to_string(),
            "--stall-ms",
            "15000",
            "--pause-ms",
            &pause_ms.to_string(),
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn fetch_result(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fetch output not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn sigkill_of_the_primary_breaks_no_transfer() {
    sigkill_scenario(false);
}

/// The same in routed mode: the hosts' gateways are the virtual addresses,
/// which the new primary announces (gratuitous ARP) after its commit.
#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn sigkill_of_the_routed_primary_breaks_no_transfer() {
    sigkill_scenario(true);
}

fn sigkill_scenario(routed: bool) {
    let mut lab = Lab::new(routed);
    let (c1, c2) = (
        fw_config(&lab.dir, 1, routed),
        fw_config(&lab.dir, 2, routed),
    );
    let ftfwd = bin("ftfwd");
    let fw1 = lab.spawn(
        &lab.ns("1"),
        &ftfwd,
        &["--config", c1.to_str().unwrap()],
        "fw1.out",
    );
    wait_for(&lab, "fw1 to become active", 20, || {
        role(&lab, 1).as_deref() == Some("active")
    });
    lab.spawn(
        &lab.ns("2"),
        &ftfwd,
        &["--config", c2.to_str().unwrap()],
        "fw2.out",
    );
    wait_for(&lab, "fw2 to be a synced backup", 20, || {
        status(&lab, 2)
            .is_some_and(|s| s["role"] == "backup" && s["election"]["freshness"]["synced"] == true)
    });
    let listen = if routed {
        "198.51.100.2:8080"
    } else {
        "192.0.2.2:8080"
    };
    lab.spawn(
        &lab.ns("s"),
        &bin("ftfw-lab"),
        &["serve", "--listen", listen],
        "server.out",
    );
    // Server up and the path through fw1 working (bounded retries).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last = fetch_result(fetch_process(&lab, 100_000, 0));
        if last["ok"] == true {
            break;
        }
        if Instant::now() >= deadline {
            let neigh = run(Command::new("ip").args(["-n", &lab.ns("c"), "neigh"]));
            wait_for(
                &lab,
                &format!(
                    "a first fetch through fw1 (last: {last}; client neighbors: {})",
                    String::from_utf8_lossy(&neigh.stdout)
                ),
                0,
                || false,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Long transfers, each holding its connection open mid-way.
    let transfers: Vec<Child> = (0..4)
        .map(|_| fetch_process(&lab, 3_000_000, 2500))
        .collect();
    // Let them connect and pass their first 64 KiB; their flows replicate.
    std::thread::sleep(Duration::from_millis(800));
    let pid = lab.children[fw1].id();
    sh(&["kill", "-KILL", &pid.to_string()]);
    let killed = Instant::now();
    wait_for(&lab, "fw2 to take over", 20, || {
        role(&lab, 2).as_deref() == Some("active")
    });
    let took = killed.elapsed();
    for t in transfers {
        let r = fetch_result(t);
        assert_eq!(r["ok"], true, "a transfer broke: {r}");
        assert_eq!(r["bytes"], 3_000_000, "{r}");
    }
    let s2 = status(&lab, 2).unwrap();
    let t = &s2["last_takeover"];
    assert!(t["flows_committed"].as_u64() >= Some(4), "{s2}");
    if routed {
        let announced = t["steps"].as_array().into_iter().flatten().any(|s| {
            s["step"] == "announce" && s["note"].as_str().is_some_and(|n| n.starts_with('2'))
        });
        assert!(
            announced,
            "the takeover announced both virtual addresses: {t}"
        );
    }
    eprintln!(
        "fw2 active {took:?} after SIGKILL of fw1; takeover steps: {}",
        t["steps"]
    );

    // fw1 returns: it stays a backup, and traffic through fw2 is undisturbed.
    let _ = lab.children[fw1].wait();
    lab.spawn(
        &lab.ns("1"),
        &ftfwd,
        &["--config", c1.to_str().unwrap()],
        "fw1b.out",
    );
    let during = fetch_process(&lab, 2_000_000, 1500);
    wait_for(&lab, "fw1 to rejoin as a backup", 20, || {
        status(&lab, 1).is_some_and(|s| s["role"] == "backup" && s["election"]["master"] == 2)
    });
    let r = fetch_result(during);
    assert_eq!(r["ok"], true, "a transfer broke while fw1 rejoined: {r}");
    assert_eq!(role(&lab, 2).as_deref(), Some("active"));
}

/// keepalived as the detector (`[failover] mode = "keepalived"`): VRRP on
/// the sync link, notify scripts calling `ftfwctl notify`. The whole fw1
/// node dies (keepalived and ftfwd killed); fw2's keepalived becomes master
/// and its `notify master` commits before forwarding: no transfer breaks.
#[test]
#[ignore = "needs root: network namespaces, veth, bridges, AF_PACKET and keepalived"]
fn keepalived_takeover_breaks_no_transfer() {
    let mut lab = Lab::new_tagged(false, "k");
    let ftfwd = bin("ftfwd");
    let ctl = bin("ftfwctl");
    let mut ka_pids = Vec::new();
    for n in [1u32, 2] {
        let cfg = fw_config_with(&lab.dir, n, false, true);
        lab.spawn(
            &lab.ns(&n.to_string()),
            &ftfwd,
            &["--config", cfg.to_str().unwrap()],
            &format!("fw{n}.out"),
        );
        wait_for(&lab, "ftfwd to start as a backup", 20, || {
            role(&lab, n).as_deref() == Some("backup")
        });
        let (me, other, prio) = if n == 1 {
            ("203.0.113.1", "203.0.113.2", 200)
        } else {
            ("203.0.113.2", "203.0.113.1", 100)
        };
        let sock = lab.dir.join(format!("fw{n}.sock"));
        let notify = |what: &str| {
            format!(
                "\"{} --socket {} notify {what}\"",
                ctl.display(),
                sock.display()
            )
        };
        let conf = format!(
            "global_defs {{\n  router_id fw{n}\n  script_user root\n  vrrp_version 3\n}}\n\
             vrrp_instance FTFW {{\n  state BACKUP\n  nopreempt\n  interface y\n  virtual_router_id 51\n  priority {prio}\n  advert_int 0.1\n\
             \x20 unicast_src_ip {me}\n  unicast_peer {{\n    {other}\n  }}\n\
             \x20 virtual_ipaddress {{\n    192.0.2.200/32 dev lo\n  }}\n\
             \x20 notify_master {}\n  notify_backup {}\n  notify_fault {}\n}}\n",
            notify("master"),
            notify("backup"),
            notify("fault"),
        );
        let path = lab.dir.join(format!("ka{n}.conf"));
        std::fs::write(&path, conf).unwrap();
        let d = lab.dir.display().to_string();
        let (p, r, c) = (
            format!("{d}/ka{n}.pid"),
            format!("{d}/ka{n}_vrrp.pid"),
            format!("{d}/ka{n}_chk.pid"),
        );
        lab.spawn(
            &lab.ns(&n.to_string()),
            Path::new("keepalived"),
            &[
                "-n",
                "-l",
                "-D",
                "-G",
                "-P",
                "-f",
                path.to_str().unwrap(),
                "-p",
                &p,
                "-r",
                &r,
                "-c",
                &c,
            ],
            &format!("ka{n}.out"),
        );
        ka_pids.push((PathBuf::from(p), PathBuf::from(r)));
        if n == 1 {
            wait_for(&lab, "keepalived to make fw1 master", 20, || {
                role(&lab, 1).as_deref() == Some("active")
            });
        }
    }
    lab.spawn(
        &lab.ns("s"),
        &bin("ftfw-lab"),
        &["serve", "--listen", "192.0.2.2:8080"],
        "server.out",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while fetch_result(fetch_process(&lab, 100_000, 0))["ok"] != true {
        assert!(Instant::now() < deadline, "no fetch through fw1");
        std::thread::sleep(Duration::from_millis(100));
    }
    let transfers: Vec<Child> = (0..4)
        .map(|_| fetch_process(&lab, 3_000_000, 2500))
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    // fw1 dies whole: keepalived frozen and its VRRP child killed (no
    // priority-0 advert), then the parent and ftfwd.
    let read_pid = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    let (parent, vrrp) = (read_pid(&ka_pids[0].0), read_pid(&ka_pids[0].1));
    sh(&["kill", "-STOP", &parent]);
    sh(&["kill", "-KILL", &vrrp]);
    sh(&["kill", "-KILL", &parent]);
    let fw1_pid = lab.children[0].id().to_string();
    sh(&["kill", "-KILL", &fw1_pid]);
    let killed = Instant::now();
    wait_for(&lab, "keepalived to make fw2 master", 20, || {
        role(&lab, 2).as_deref() == Some("active")
    });
    let took = killed.elapsed();
    for t in transfers {
        let r = fetch_result(t);
        assert_eq!(r["ok"], true, "a transfer broke: {r}");
    }
    let s2 = status(&lab, 2).unwrap();
    assert!(
        s2["last_takeover"]["flows_committed"].as_u64() >= Some(4),
        "{s2}"
    );
    let names: Vec<&str> = s2["last_takeover"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(&names[..2], ["commit", "forward"], "{s2}");
    eprintln!("keepalived: fw2 active {took:?} after fw1 died");
}
