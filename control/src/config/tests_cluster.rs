//! `[cluster]`: the examples, and refused settings naming file, line and
//! field.

use super::*;

#[test]
fn cluster_errors_name_file_line_and_field() {
    let text = include_str!("../../../configs/cluster.toml");
    let line_of = |needle: &str, nth: usize| {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with(needle))
            .nth(nth)
            .map(|(i, _)| i + 1)
            .unwrap()
    };
    // Duplicate id.
    let dup = text.replacen("id = 3", "id = 2", 1);
    let e = errors(&dup);
    assert!(
        e.contains(&format!(
            "ftfw.toml:{}: cluster.member[2].id: node 2 is listed twice",
            line_of("id = 3", 0)
        )),
        "{e:?}"
    );
    // Overlapping addresses.
    let same = text.replacen(
        "address = \"198.51.100.3\"",
        "address = \"198.51.100.2\"",
        1,
    );
    let e = errors(&same);
    assert!(
        e.contains(&format!(
            "ftfw.toml:{}: cluster.member[2].address: 198.51.100.2 is also node 2's address",
            line_of("address = \"198.51.100.3\"", 0)
        )),
        "{e:?}"
    );
    // This node is no member.
    let e = errors(&text.replacen("node = 1", "node = 9", 1));
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.node: node 9 is not among")),
        "{e:?}"
    );
    // A map that cannot cover the members, too many backups.
    let e = errors(&text.replacen("buckets = 4096", "buckets = 2", 1));
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.buckets: 2 buckets cannot give each of 3 nodes")),
        "{e:?}"
    );
    let e = errors(&text.replacen("backups = 1", "backups = 3", 1));
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.backups: 3 backups per bucket need at least 4 nodes")),
        "{e:?}"
    );
    // Timers, keys, transports, the election.
    let e = errors(&text.replacen("dead_after_ms = 200", "dead_after_ms = 100", 1));
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.dead_after_ms: 100 is below 3 heartbeats")),
        "{e:?}"
    );
    let e = errors(&text.replacen("dead_after_max_ms = 2000", "dead_after_max_ms = 150", 1));
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.dead_after_max_ms: 150 is below dead_after_ms (200 ms)")),
        "{e:?}"
    );
    let e = errors(&text.replacen("dead_after_relax_ms = 30000", "dead_after_relax_ms = 5", 1));
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.dead_after_relax_ms: 5 is below the minimum 100")),
        "{e:?}"
    );
    // Unset, the ceiling is 2 s, or dead_after_ms when that is longer.
    let longer = text.replacen("dead_after_max_ms = 2000\n", "", 1).replacen(
        "dead_after_ms = 200",
        "dead_after_ms = 3000",
        1,
    );
    let k = parse(&longer, "/etc/ftfw/cluster.toml")
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(k.dead_after_max, std::time::Duration::from_millis(3000));
    let e = errors(&text.replacen(
        "key = \"00112233445566778899aabbccddeeff\"",
        "key = \"0011\"",
        1,
    ));
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.key: 2 bytes; at least 16")),
        "{e:?}"
    );
    let e = errors(&text.replacen("transport = \"ftfw\"", "transport = \"tcp\"", 1));
    assert!(
        e.iter()
            .any(|d| d.contains("sync.transport: a cluster replicates with \"ftfw\"")),
        "{e:?}"
    );
    let e = errors(&text.replacen("local = \"198.51.100.1\"", "local = \"198.51.100.9\"", 1));
    assert!(
        e.iter()
            .any(|d| d.contains("sync.local: 198.51.100.9 is not this node's cluster address")),
        "{e:?}"
    );
    let el = format!("{text}\n[failover]\nmode = \"election\"\n");
    let e = errors(&el);
    assert!(
        e.iter()
            .any(|d| d.contains("\"election\" and [cluster] both decide")),
        "{e:?}"
    );
    // A shared MAC is for routed mode.
    let e = errors(&text.replacen(
        "auto_rebalance = true",
        "auto_rebalance = true\nshared_mac = \"03:00:5e:00:00:01\"",
        1,
    ));
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.shared_mac: only used in routed mode")),
        "{e:?}"
    );
    // Without [sync].
    let start = text.find("[sync]").unwrap();
    let end = text.find("[cluster]").unwrap();
    let nosync = format!("{}{}", &text[..start], &text[end..]);
    let e = errors(&nosync);
    assert!(
        e.iter()
            .any(|d| d.contains("cluster: needs a [sync] section")),
        "{e:?}"
    );
}

#[test]
fn routed_cluster_example_and_shared_mac_errors() {
    let text = include_str!("../../../configs/cluster-routed.toml");
    let c = parse(text, "/etc/ftfw/cluster-routed.toml").unwrap();
    let cl = c.cluster.as_ref().unwrap();
    assert_eq!(cl.shared_mac, Some([0x03, 0x00, 0x5e, 0, 0, 1]));
    assert_eq!(c.virtual_addresses.len(), 2);
    let line = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let unicast = text.replacen("03:00:5e:00:00:01", "02:00:5e:00:00:01", 1);
    let e = errors(&unicast);
    assert!(
        e.contains(&format!(
            "ftfw.toml:{}: cluster.shared_mac: 02:00:5e:00:00:01 is not a multicast MAC (the lowest bit of its first byte must be set, e.g. 03:00:5e:00:00:01)",
            line("shared_mac")
        )),
        "{e:?}"
    );
    let e = errors(&text.replacen("03:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", 1));
    assert!(
        e.iter().any(|d| d.contains("is not a multicast MAC")),
        "{e:?}"
    );
    let e = errors(&text.replacen("03:00:5e:00:00:01", "03:00:5e", 1));
    assert!(
        e.iter().any(|d| d.contains("is not a MAC address")),
        "{e:?}"
    );
    let missing: String = text
        .lines()
        .filter(|l| !l.starts_with("shared_mac"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = errors(&missing);
    assert!(
        e.iter()
            .any(|d| d.contains("cluster: a routed cluster needs `shared_mac`")),
        "{e:?}"
    );
    let start = text.find("[[virtual_address]]").unwrap();
    let end = text.find("[conntrack]").unwrap();
    let novips = format!("{}{}", &text[..start], &text[end..]);
    let e = errors(&novips);
    assert!(
        e.iter().any(|d| d
            .contains("cluster.shared_mac: a routed cluster needs [[virtual_address]] entries")),
        "{e:?}"
    );
}

/// `configs/cluster.toml` with its uplink keys on, `extra` added to
/// `[cluster]` and `scripts` as `[cluster.scripts]`.
fn with_uplinks(extra: &str, scripts: &str) -> String {
    let text = include_str!("../../../configs/cluster.toml");
    text.replacen(
        "auto_rebalance = true\n",
        &format!("auto_rebalance = true\n{extra}"),
        1,
    )
    .replacen(
        "[[cluster.member]]",
        &format!("[cluster.scripts]\n{scripts}\n[[cluster.member]]"),
        1,
    )
}

#[test]
fn uplinks_down_when_idle_needs_uplinks_and_both_scripts() {
    let scripts = "activate_uplink = \"up.sh\"\ndeactivate_uplink = \"/usr/libexec/down.sh\"\n";
    let on = "uplinks_down_when_idle = true\nuplinks = [\"outside\"]\n";
    let text = with_uplinks(on, scripts);
    let c = parse(&text, "/etc/ftfw/cluster.toml").unwrap();
    let u = c.cluster.unwrap().uplinks.unwrap();
    assert_eq!(u.ports, ["outside"]);
    assert_eq!(u.activate, std::path::PathBuf::from("/etc/ftfw/up.sh"));
    assert_eq!(
        u.deactivate,
        std::path::PathBuf::from("/usr/libexec/down.sh")
    );
    assert_eq!(u.check, None);
    assert_eq!(u.timeout, std::time::Duration::from_millis(2000));
    // Off by default.
    let plain = parse(include_str!("../../../configs/cluster.toml"), "/c.toml").unwrap();
    assert_eq!(plain.cluster.unwrap().uplinks, None);
    let line = |t: &str, needle: &str| t.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    // Enabled without uplinks.
    let t = with_uplinks("uplinks_down_when_idle = true\n", scripts);
    let e = errors(&t);
    assert!(
        e.contains(&format!(
            "ftfw.toml:{}: cluster.uplinks_down_when_idle: needs `uplinks`, the [[port]] names of the uplinks, e.g. uplinks = [\"outside\"]",
            line(&t, "uplinks_down_when_idle")
        )),
        "{e:?}"
    );
    // An uplink that is no port, one listed twice.
    let t = with_uplinks(
        "uplinks_down_when_idle = true\nuplinks = [\"outside\", \"wan\", \"outside\"]\n",
        scripts,
    );
    let e = errors(&t);
    assert!(
        e.contains(&format!(
            "ftfw.toml:{}: cluster.uplinks[1]: no [[port]] is named \"wan\"",
            line(&t, "uplinks = ")
        )),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.uplinks[2]: \"outside\" is listed twice")),
        "{e:?}"
    );
    // A missing script, an unknown one, a time limit out of range.
    let t = with_uplinks(
        &format!("{on}uplink_timeout_ms = 5\n"),
        "activate_uplink = \"up.sh\"\ntakeover_upstream = \"x.sh\"\n",
    );
    let e = errors(&t);
    assert!(
        e.iter().any(|d| d
            .contains("cluster.uplinks_down_when_idle: needs [cluster.scripts] deactivate_uplink")),
        "{e:?}"
    );
    assert!(
        e.contains(&format!(
            "ftfw.toml:{}: cluster.scripts.takeover_upstream: unknown procedure; one of activate_uplink, deactivate_uplink, uplink_check",
            line(&t, "takeover_upstream")
        )),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.uplink_timeout_ms: 5 is below the minimum 10")),
        "{e:?}"
    );
    // Uplinks or scripts without the switch.
    let t = with_uplinks("uplinks = [\"outside\"]\n", "");
    let e = errors(&t);
    assert!(
        e.contains(&format!(
            "ftfw.toml:{}: cluster.uplinks: only used with uplinks_down_when_idle = true (members owning no buckets keep their uplinks down)",
            line(&t, "uplinks = ")
        )),
        "{e:?}"
    );
    let e = errors(&with_uplinks("", scripts));
    assert!(
        e.iter()
            .any(|d| d.contains("cluster.scripts: only used with uplinks_down_when_idle")),
        "{e:?}"
    );
    // The optional check.
    let t = with_uplinks(on, &format!("{scripts}uplink_check = \"check.sh\"\n"));
    let u = parse(&t, "/etc/ftfw/c.toml")
        .unwrap()
        .cluster
        .unwrap()
        .uplinks
        .unwrap();
    assert_eq!(
        u.check,
        Some(std::path::PathBuf::from("/etc/ftfw/check.sh"))
    );
}

#[test]
fn the_kernel_bucket_filter_is_on_unless_set_off() {
    let routed = include_str!("../../../configs/cluster-routed.toml");
    assert!(!routed.contains("kernel_filter"));
    let c = parse(routed, "/etc/ftfw/cluster-routed.toml").unwrap();
    assert!(c.cluster.unwrap().kernel_filter, "on by default");
    let text = include_str!("../../../configs/cluster.toml");
    let off = text.replacen("kernel_filter = true", "kernel_filter = false", 1);
    assert_ne!(off, text);
    let c = parse(&off, "/etc/ftfw/cluster.toml").unwrap();
    assert!(!c.cluster.unwrap().kernel_filter);
    let e = errors(&text.replacen("kernel_filter = true", "kernel_filter = \"yes\"", 1));
    let line = text
        .lines()
        .position(|l| l.starts_with("kernel_filter"))
        .unwrap()
        + 1;
    assert!(
        e.iter()
            .any(|d| d.starts_with(&format!("ftfw.toml:{line}:")) && d.contains("kernel_filter")),
        "{e:?}"
    );
}
