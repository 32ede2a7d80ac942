//! Root test: routed mode with real kernel hosts. client namespace
//! (192.0.2.1/24, a route to the server's subnet via the firewall's
//! virtual address 192.0.2.254) <-> ftfwd routed on AF_PACKET (veths, offloads off) <->
//! server namespace (198.51.100.2/24 via 198.51.100.254). The namespaces
//! are created and deleted by the test; processes are stopped by PID.
//!
//! Checks: the hosts resolve the gateways through ftfwd's ARP answers and
//! ftfwd resolves the hosts; TCP transfers work end to end through
//! conntrack and the ACL; `ftfwctl neighbors` and `ftfwctl routes` list
//! them; a ping of the firewall is answered; a TTL-1 ping gets ICMP time
//! exceeded; after `ftfwctl notify backup` nothing is routed and after
//! `notify master` (gratuitous ARPs) traffic flows again.
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
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

fn sh(args: &[&str]) {
    let out = run(Command::new(args[0]).args(&args[1..]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces, veths and processes, removed on drop even when the test fails.
struct Lab {
    tag: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("ftfwr{}-{}", role, self.tag)
    }

    fn new(variant: &str) -> Lab {
        let tag = format!("{}{variant}", std::process::id());
        let dir = std::env::temp_dir().join(format!("ftfw-netns-routed-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            tag,
            dir,
            children: Vec::new(),
        };
        let (c, f, s) = (lab.ns("c"), lab.ns("f"), lab.ns("s"));
        for n in [&c, &f, &s] {
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "link", "add", "c0", "netns", &c, "type", "veth", "peer", "name", "c1", "netns",
            &f,
        ]);
        sh(&[
            "ip", "link", "add", "s0", "netns", &s, "type", "veth", "peer", "name", "s1", "netns",
            &f,
        ]);
        for (n, i) in [(&c, "c0"), (&f, "c1"), (&f, "s1"), (&s, "s0")] {
            // Complete frames on the wire: no checksum offload, no GSO/GRO.
            sh(&[
                "ip", "netns", "exec", n, "ethtool", "-K", i, "tx", "off", "tso", "off", "gso",
                "off", "gro", "off",
            ]);
            sh(&["ip", "-n", n, "link", "set", i, "up"]);
        }
        // Hosts: the firewall's virtual addresses are their gateways.
        sh(&["ip", "-n", &c, "addr", "add", "192.0.2.1/24", "dev", "c0"]);
        sh(&[
            "ip",
            "-n",
            &c,
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            "192.0.2.254",
        ]);
        sh(&[
            "ip",
            "-n",
            &s,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            "s0",
        ]);
        sh(&[
            "ip",
            "-n",
            &s,
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            "198.51.100.254",
        ]);
        lab
    }

    fn spawn(&mut self, ns: &str, program: &Path, args: &[&str]) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push(child);
        pid
    }

    fn exec(&self, ns: &str, program: &Path, args: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SIGTERM first so ftfwd removes its socket, then make sure.
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
        for r in ["c", "f", "s"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(r)])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ctl(sock: &Path, args: &[&str]) -> Output {
    let mut a = vec!["--socket", sock.to_str().unwrap(), "--json"];
    a.extend_from_slice(args);
    run(Command::new(bin("ftfwctl")).args(&a))
}

fn ctl_json(sock: &Path, args: &[&str]) -> serde_json::Value {
    let out = ctl(sock, args);
    assert!(
        out.status.success(),
        "ftfwctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ftfwctl {args:?} output not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn fetch(lab: &Lab, bytes: u64, stall_ms: u64) -> serde_json::Value {
    let (b, s) = (bytes.to_string(), stall_ms.to_string());
    let args = [
        "fetch",
        "--connect",
        "198.51.100.2:8080",
        "--bytes",
        &b,
        "--stall-ms",
        &s,
        "--json",
    ];
    let out = lab.exec(&lab.ns("c"), &bin("ftfw-lab"), &args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fetch output not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn counter(stats: &serde_json::Value, name: &str) -> u64 {
    stats["total"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

/// Retries an allowed fetch until it works (neighbors are resolved on the
/// first packets, which are dropped meanwhile), bounded.
fn fetch_until_ok(lab: &Lab, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = fetch(lab, 1000, 3000);
        if r["ok"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: fetch never worked: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn routed_firewall_between_namespaces() {
    let mut lab = Lab::new("r");
    let sock = lab.dir.join("ftfwd.sock");
    let config = lab.dir.join("ftfwd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\n\n[dataplane]\nworkers = 1\nmode = \"routed\"\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"c1\"\naddresses = [\"192.0.2.253/24\"]\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"s1\"\naddresses = [\"198.51.100.253/24\"]\n\n\
             [[virtual_address]]\nport = \"outside\"\naddress = \"192.0.2.254/24\"\n\n\
             [[virtual_address]]\nport = \"inside\"\naddress = \"198.51.100.254/24\"\n\n\
             [conntrack]\ncapacity = 4096\n\n[rules]\npolicy = \"drop\"\nrules = [\n  \"accept ct established,related\",\n  \"accept in outside proto tcp dport 8080 ct new\",\n  \"accept proto icmp\",\n]\n",
            sock.display(),
        ),
    )
    .unwrap();
    let (c, fw, srv) = (lab.ns("c"), lab.ns("f"), lab.ns("s"));
    lab.spawn(&fw, &bin("ftfwd"), &["--config", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctl(&sock, &["status"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "ftfwd did not answer on {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.spawn(
        &srv,
        &bin("ftfw-lab"),
        &["serve", "--listen", "198.51.100.2:8080"],
    );
    fetch_until_ok(&lab, "first transfer");

    // A real transfer through the router.
    let r = fetch(&lab, 2_000_000, 5000);
    assert_eq!(r["ok"], true, "{r}");

    // Both hosts are neighbors, learned on their ports.
    let n = ctl_json(&sock, &["neighbors"]);
    let list = n["neighbors"].as_array().cloned().unwrap_or_default();
    let find = |ip: &str| list.iter().find(|e| e["ip"] == ip).cloned();
    assert_eq!(
        find("192.0.2.1").expect("client learned")["port"],
        "outside",
        "{n}"
    );
    assert_eq!(
        find("198.51.100.2").expect("server learned")["port"],
        "inside",
        "{n}"
    );
    let routes = ctl_json(&sock, &["routes"]);
    assert!(routes.to_string().contains("198.51.100.0/24"), "{routes}");
    let st = ctl_json(&sock, &["stats"]);
    assert!(counter(&st, "routed") > 1000, "{st}");

    // Pings: the firewall answers for itself; TTL 1 gets time exceeded.
    let ping = |args: &[&str]| {
        let mut a = vec!["netns", "exec", &c, "ping", "-n", "-c", "1", "-W", "2"];
        a.extend_from_slice(args);
        run(Command::new("ip").args(&a))
    };
    let out = ping(&["192.0.2.253"]);
    assert!(
        out.status.success(),
        "ping of the firewall: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ping(&["198.51.100.2"]);
    assert!(
        out.status.success(),
        "ping through the firewall: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let before = counter(&ctl_json(&sock, &["stats"]), "ttl_exceeded");
    let out = ping(&["-t", "1", "198.51.100.2"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("192.0.2.253") && text.to_lowercase().contains("exceeded"),
        "{text}"
    );
    let after = counter(&ctl_json(&sock, &["stats"]), "ttl_exceeded");
    assert!(after > before, "ttl_exceeded {before} -> {after}");

    // Backup: nothing is routed; master again: announced, traffic flows.
    let b = ctl_json(&sock, &["notify", "backup"]);
    assert_eq!(b["role"], "backup", "{b}");
    let r = fetch(&lab, 1000, 1500);
    assert_eq!(r["ok"], false, "a backup routed: {r}");
    let m = ctl_json(&sock, &["notify", "master"]);
    let steps = m["steps"].as_array().cloned().unwrap_or_default();
    let announce = steps.iter().find(|s| s["step"] == "announce").cloned();
    assert_eq!(
        announce.map(|a| a["note"].clone()),
        Some(serde_json::json!("2 gratuitous ARP / unsolicited NA sent")),
        "{m}"
    );
    fetch_until_ok(&lab, "after takeover");
}
