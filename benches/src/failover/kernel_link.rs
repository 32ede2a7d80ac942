//! The sync link as the kernel carries it, for `ftfw-lab netns loss`: no
//! relay, the two nodes' sync sockets talk directly over loopback
//! (127.0.0.1 and 127.0.0.2) and loss is applied by nftables
//! (`numgen random mod 100 < P drop` on the input hook, so the sender sees
//! no error and kernel TCP retransmits as it would after a loss on a
//! wire). The crash drops everything between the two addresses from then
//! on, which also discards what the kernel still had to (re)send.
//!
//! The nodes run with `[sync] udp_offload = false`: the input hook would
//! see a segmented send (or a coalesced run) as one packet and drop its
//! datagrams together, not one by one as a lossy wire does.
//!
//! Only inside a named network namespace (`ip netns`): the rules would
//! otherwise apply to the host's loopback.

use std::process::Command;

use anyhow::{bail, Context};

/// The nftables table the link uses (inside the lab's namespace).
const TABLE: &str = "ftfwlab_sync";

/// Loss and cut of a kernel sync link on `port`.
#[derive(Debug)]
pub(super) struct KernelLink {
    port: u16,
}

fn nft(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("nft")
        .args(args)
        .output()
        .context("running nft (apt-get install nftables)")?;
    if !out.status.success() {
        bail!(
            "nft {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether this process runs in a named network namespace (one that `ip
/// netns add` made, listed in `/run/netns`), not the host's.
pub fn in_own_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(me) = std::fs::metadata("/proc/self/ns/net") else {
        return false;
    };
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return false;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .any(|m| m.dev() == me.dev() && m.ino() == me.ino())
}

impl KernelLink {
    /// Drops `loss` (0..1, in whole percent) of the sync packets on `port`
    /// from now on, both directions, TCP and UDP.
    pub(super) fn start(port: u16, loss: f64) -> anyhow::Result<KernelLink> {
        anyhow::ensure!(
            in_own_netns(),
            "the kernel sync link applies nftables rules to loopback: only inside a lab \
             namespace (ftfw-lab netns loss)"
        );
        anyhow::ensure!((0.0..1.0).contains(&loss), "loss must be in [0, 1)");
        let _ = nft(&["delete", "table", "inet", TABLE]);
        nft(&["add", "table", "inet", TABLE])?;
        nft(&[
            "add",
            "chain",
            "inet",
            TABLE,
            "in",
            "{ type filter hook input priority 0; policy accept; }",
        ])?;
        let pct = ((loss * 100.0).round() as u32).to_string();
        let port_s = port.to_string();
        if loss > 0.0 {
            for dir in ["dport", "sport"] {
                nft(&[
                    "add", "rule", "inet", TABLE, "in", "meta", "l4proto", "{", "tcp", ",", "udp",
                    "}", "th", dir, &port_s, "numgen", "random", "mod", "100", "<", &pct,
                    "counter", "drop",
                ])?;
            }
        }
        Ok(KernelLink { port })
    }

    /// fw1 crashed: nothing more passes between the two nodes.
    pub(super) fn cut(&self) -> anyhow::Result<()> {
        for (s, d) in [("127.0.0.1", "127.0.0.2"), ("127.0.0.2", "127.0.0.1")] {
            nft(&[
                "insert", "rule", "inet", TABLE, "in", "ip", "saddr", s, "ip", "daddr", d,
                "counter", "drop",
            ])?;
        }
        Ok(())
    }

    /// Sync packets dropped by the loss rules so far.
    pub(super) fn dropped(&self) -> u64 {
        let Ok(t) = nft(&["list", "chain", "inet", TABLE, "in"]) else {
            return 0;
        };
        let port = format!(" {} numgen", self.port);
        t.lines()
            .filter(|l| l.contains(&port))
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let i = w.iter().position(|x| *x == "packets")?;
                w.get(i + 1)?.parse::<u64>().ok()
            })
            .sum()
    }
}

impl Drop for KernelLink {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", TABLE]);
    }
}
