//! `uplinks_down_when_idle` in the cluster lab: the scripts (they run in
//! the member's namespace, as children of its ftfwd, and set the outside
//! link of that namespace down or up), their `[cluster]` keys, and the
//! links' state as the kernel reports it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::*;

/// A script that sets every uplink interface it is given (in
/// `FTFW_UPLINK_INTERFACES`) `state`, then logs the call.
fn script(state: &str, log: &Path) -> String {
    format!(
        "#!/bin/sh\nset -e\nfor i in $FTFW_UPLINK_INTERFACES; do ip link set dev \"$i\" {state}; done\n\
         echo \"$FTFW_PROCEDURE $FTFW_NODE $*\" >> '{}'\n",
        log.display()
    )
}

impl ClusterLab {
    /// The `[cluster]` uplink keys (empty when off); writes the scripts.
    pub(super) fn uplink_config(&self) -> anyhow::Result<String> {
        if !self.o.uplinks_down_when_idle {
            return Ok(String::new());
        }
        let dir = self.dir();
        let log = dir.join("uplink-scripts.log");
        let mut paths = Vec::new();
        for (name, state) in [("uplink-up.sh", "up"), ("uplink-down.sh", "down")] {
            let p = dir.join(name);
            std::fs::write(&p, script(state, &log))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
            paths.push(p);
        }
        Ok(format!(
            "uplinks_down_when_idle = true\nuplinks = [\"outside\"]\nuplink_timeout_ms = 2000\n\
             [cluster.scripts]\nactivate_uplink = \"{}\"\ndeactivate_uplink = \"{}\"\n",
            paths[0].display(),
            paths[1].display()
        ))
    }

    /// Each member's outside link (`o`) as `KERNEL/REPORTED`: `up` or
    /// `down` (its administrative state in the member's namespace), then
    /// what `ftfwctl cluster status` reports (`uplinks.state`: `up`,
    /// `down`, `going_up`, `failed`, ...); `-` if the member is not
    /// running. Empty when the option is off.
    pub(super) fn uplink_states(&self) -> Vec<String> {
        if !self.o.uplinks_down_when_idle {
            return Vec::new();
        }
        (1..=self.o.nodes)
            .map(|k| {
                if self.pids[k as usize - 1].is_none() {
                    return "-".to_string();
                }
                let ns = self.lab.ns(&k.to_string());
                let out = Command::new("ip")
                    .args(["-n", &ns, "-j", "link", "show", "dev", "o"])
                    .output();
                let flags: Option<Vec<String>> = out
                    .ok()
                    .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
                    .and_then(|v| {
                        v[0]["flags"].as_array().map(|a| {
                            a.iter()
                                .filter_map(|f| f.as_str().map(String::from))
                                .collect()
                        })
                    });
                let kernel = match flags {
                    Some(f) if f.iter().any(|x| x == "UP") => "up",
                    Some(_) => "down",
                    None => "unknown",
                };
                let reported = self
                    .cluster_status(k)
                    .and_then(|v| coord(&v)["uplinks"]["state"].as_str().map(String::from))
                    .unwrap_or_else(|| "?".into());
                format!("{kernel}/{reported}")
            })
            .collect()
    }
}
