//! Root test: established connections through a standalone ftfwd survive
//! `kill -9` followed by a restart, and a planned restart (`ftfwctl
//! restart`), because the table is kept in the state file. The negative
//! control runs the same crash without a state file: strict pickup then
//! drops the connections, so the test can tell the difference.
//!
//! client (`c0`) <-> ftfwd (af_packet, transparent, `c1`/`s1`) <-> server
//! (`s0`), each in a namespace the test creates and deletes. Downloads of
//! 4 MB pause after their first 64 KiB; the firewall is restarted during
//! the pause; every download must then complete.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ftfw_control::keeper::file;
use ftfw_dataplane::flow::TcpState;
use ftfw_testkit::netns::{self, sibling_bin, NetnsLab};
use ftfw_testkit::wait_until;

const TRANSFERS: usize = 3;
const PORT: u16 = 8080;

fn bin(name: &str) -> PathBuf {
    sibling_bin(Path::new(env!("CARGO_BIN_EXE_ftfw-lab")), name).unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Restart {
    /// SIGKILL, then a new ftfwd.
    Crash,
    /// `ftfwctl restart`: the same process replaces itself.
    Planned,
    /// SIGKILL and a new ftfwd, with `state_file = ""`.
    CrashWithoutStateFile,
}

#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn established_downloads_survive_kill_9_and_a_restart() {
    let done = scenario(Restart::Crash, 1);
    assert_eq!(done, TRANSFERS, "downloads completed after the crash");
}

/// Two workers: each flow must go back to the worker the kernel's fanout
/// steers it to, which only the state file knows.
#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn established_downloads_survive_kill_9_with_two_workers() {
    let done = scenario(Restart::Crash, 2);
    assert_eq!(done, TRANSFERS, "downloads completed after the crash");
}

#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn established_downloads_survive_a_planned_restart_with_two_workers() {
    let done = scenario(Restart::Planned, 2);
    assert_eq!(done, TRANSFERS, "downloads completed after the restart");
}

#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn without_a_state_file_the_crash_breaks_the_downloads() {
    let done = scenario(Restart::CrashWithoutStateFile, 1);
    assert_eq!(done, 0, "downloads completed without their state");
}

/// Runs the downloads across one restart; returns how many completed.
fn scenario(how: Restart, workers: usize) -> usize {
    let variant = match how {
        Restart::Crash => format!("k{workers}"),
        Restart::Planned => format!("p{workers}"),
        Restart::CrashWithoutStateFile => format!("n{workers}"),
    };
    let mut lab = NetnsLab::new("ftrs", &variant).unwrap();
    let (c, f, s) = (
        lab.add_ns("c").unwrap(),
        lab.add_ns("f").unwrap(),
        lab.add_ns("s").unwrap(),
    );
    lab.veth((&c, "c0"), (&f, "c1")).unwrap();
    lab.veth((&s, "s0"), (&f, "s1")).unwrap();
    for (n, i) in [(&c, "c0"), (&f, "c1"), (&f, "s1"), (&s, "s0")] {
        lab.offloads_off(n, i).unwrap();
    }
    lab.ip(&c, &["addr", "add", "192.0.2.1/24", "dev", "c0"])
        .unwrap();
    lab.ip(&s, &["addr", "add", "192.0.2.2/24", "dev", "s0"])
        .unwrap();
    let dir = lab.dir().to_path_buf();
    let sock = dir.join("ftfwd.sock");
    let state = dir.join("ftfwd.state");
    std::fs::write(
        dir.join("rules.conf"),
        format!("policy drop\naccept ct established,related\naccept in outside proto tcp dport {PORT} ct new\n"),
    )
    .unwrap();
    let state_line = match how {
        Restart::CrashWithoutStateFile => "state_file = \"\"".to_string(),
        _ => format!("state_file = \"{}\"", state.display()),
    };
    let config = dir.join("ftfwd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\n{state_line}\n\n[dataplane]\nworkers = {workers}\npoll_mode = \"adaptive\"\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"c1\"\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"s1\"\n\n\
             [[bridge]]\nports = [\"outside\", \"inside\"]\n\n[rules]\nfile = \"rules.conf\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_string();
    let fwd = lab
        .spawn(&f, bin("ftfwd"), &["--config", &cfg], Some("ftfwd-1.log"))
        .unwrap();
    lab.wait_console(&bin("ftfwctl"), &sock, Duration::from_secs(20))
        .unwrap();
    let listen = format!("192.0.2.2:{PORT}");
    lab.spawn(&s, bin("ftfw-lab"), &["serve", "--listen", &listen], None)
        .unwrap();
    // The server is up once a short fetch works (bounded retries).
    wait_until(
        "a first fetch through ftfwd",
        Duration::from_secs(10),
        || {
            let out = lab
                .exec(
                    &c,
                    bin("ftfw-lab"),
                    &[
                        "fetch",
                        "--connect",
                        &listen,
                        "--bytes",
                        "1000",
                        "--stall-ms",
                        "1000",
                        "--json",
                    ],
                )
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|r| r["ok"] == true)
        },
    );

    // Downloads that pause mid-way for 4 s; a stall of 3 s fails them.
    let downloads: Vec<Child> = (0..TRANSFERS)
        .map(|_| {
            Command::new("ip")
                .args(["netns", "exec", &c])
                .arg(bin("ftfw-lab"))
                .args([
                    "fetch",
                    "--connect",
                    &listen,
                    "--bytes",
                    "4000000",
                    "--pause-ms",
                    "4000",
                    "--stall-ms",
                    "3000",
                    "--json",
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_until(
        "every download ESTABLISHED",
        Duration::from_secs(10),
        || netns::established_flows(&bin("ftfwctl"), &sock, PORT).len() >= TRANSFERS,
    );
    if how != Restart::CrashWithoutStateFile {
        // What a crash now leaves behind holds every download.
        wait_until(
            "the state file holds the downloads",
            Duration::from_secs(5),
            || {
                file::read(&state).ok().flatten().is_some_and(|r| {
                    r.flows
                        .values()
                        .filter(|(_, f)| {
                            f.key.orig.dst_port == PORT && f.tcp_state == TcpState::Established
                        })
                        .count()
                        >= TRANSFERS
                })
            },
        );
    }

    match how {
        Restart::Crash | Restart::CrashWithoutStateFile => {
            netns::signal(fwd, "KILL").unwrap();
            lab.wait_exit(fwd, Duration::from_secs(5)).unwrap();
            lab.spawn(&f, bin("ftfwd"), &["--config", &cfg], Some("ftfwd-2.log"))
                .unwrap();
        }
        Restart::Planned => {
            let out = netns::ctl(&bin("ftfwctl"), &sock, &["restart"]).unwrap();
            assert!(
                out.status.success(),
                "ftfwctl restart: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // The new image answers once it has restored the table.
            wait_until(
                "the restarted ftfwd with the table",
                Duration::from_secs(20),
                || {
                    netns::ctl_json(&bin("ftfwctl"), &sock, &["status"]).is_ok_and(|st| {
                        st["state_keeper"]["restored"]["restored"].as_u64()
                            >= Some(TRANSFERS as u64)
                    })
                },
            );
        }
    }
    lab.wait_console(&bin("ftfwctl"), &sock, Duration::from_secs(20))
        .unwrap();
    let st = netns::ctl_json(&bin("ftfwctl"), &sock, &["status"]).unwrap();
    match how {
        Restart::Planned => {
            assert_eq!(st["pid"], fwd, "a planned restart keeps the PID: {st}");
            assert!(
                st["state_keeper"]["restored"]["restored"].as_u64() >= Some(TRANSFERS as u64),
                "{st}"
            );
        }
        Restart::Crash => {
            assert!(
                st["state_keeper"]["restored"]["restored"].as_u64() >= Some(TRANSFERS as u64),
                "{st}"
            );
        }
        Restart::CrashWithoutStateFile => {
            assert!(st.get("state_keeper").is_none_or(|k| k.is_null()), "{st}");
        }
    }

    let mut done = 0;
    for d in downloads {
        let out = d.wait_with_output().unwrap();
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "fetch output not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        eprintln!("{how:?}: {r}");
        if r["ok"] == true {
            done += 1;
        }
    }
    eprintln!(
        "{how:?}: ftfwd log:\n{}{}",
        lab.log("ftfwd-1.log"),
        lab.log("ftfwd-2.log")
    );
    done
}
