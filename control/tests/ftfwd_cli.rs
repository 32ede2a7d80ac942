//! `ftfwd` and `ftfwctl` as programs: a bad configuration or rules file
//! stops ftfwd before it starts anything, naming file, line and field; a
//! console with no daemon behind it says so.

use std::process::Command;

/// `ftfwd --config CFG --check`.
fn check(cfg: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ftfwd"))
        .arg("--config")
        .arg(cfg)
        .arg("--check")
        .output()
        .unwrap()
}

/// A config bridging two AF_PACKET ports, followed by `rules_section`.
fn bridge_config(rules_section: &str) -> String {
    format!(
        "[daemon]\nconsole_socket = \"s.sock\"\n[[port]]\nname = \"a\"\nbackend = \"af_packet\"\ninterface = \"x0\"\n\
         [[port]]\nname = \"b\"\nbackend = \"af_packet\"\ninterface = \"x1\"\n[[bridge]]\nports = [\"a\", \"b\"]\n\
         {rules_section}"
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ftfwd-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bad_config_is_rejected_with_file_line_and_field() {
    let d = tmp("badcfg");
    let cfg = d.join("bad.toml");
    std::fs::write(
        &cfg,
        "[dataplane]\nworkers = 1\n\n[conntrack]\ncapacity = 10\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ftfwd"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:5: conntrack.capacity"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_rules_file_is_rejected_before_start() {
    let d = tmp("badrules");
    std::fs::write(
        d.join("rules.conf"),
        "policy drop\naccept proto tcp dport 80\naccept proto tcp from 10.0.0.0/40\n",
    )
    .unwrap();
    let cfg = d.join("ftfwd.toml");
    std::fs::write(&cfg, bridge_config("[rules]\nfile = \"rules.conf\"\n")).unwrap();
    let out = check(&cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules.conf:3"), "{err}");
    // The same config with good rules passes the check.
    std::fs::write(
        d.join("rules.conf"),
        "policy drop\naccept proto tcp dport 80\n",
    )
    .unwrap();
    let out = check(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn ftfwctl_without_daemon_says_so() {
    let d = tmp("nodaemon");
    let out = Command::new(env!("CARGO_BIN_EXE_ftfwctl"))
        .arg("--socket")
        .arg(d.join("none.sock"))
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ftfwd is not running"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn example_config_and_rules_are_valid() {
    let cfg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/standalone.toml");
    let out = check(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn inline_rule_errors_name_the_config_file_and_line() {
    let d = tmp("inline");
    let cfg = d.join("inline.toml");
    std::fs::write(
        &cfg,
        bridge_config(
            "[rules]\npolicy = \"drop\"\nrules = [\n  \"accept ct established,related\",\n  \"accept in c proto tcp dport 22\",\n]\n",
        ),
    )
    .unwrap();
    let out = check(&cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // Line 17 of the TOML holds the rule naming the unknown port "c".
    assert!(
        err.contains("inline.toml:17") && err.contains("\"c\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
