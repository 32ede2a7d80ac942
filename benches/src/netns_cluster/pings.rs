//! The cluster lab's fragmented pings: echo requests large enough to be
//! fragmented, through every member, each answered only if the member that
//! owned a datagram's first fragment forwarded the rest.

use super::*;

/// Echo requests of 3,000 bytes (three IPv4 fragments each way) from the
/// client to the server, from [`FRAG_PINGERS`] ping processes (each its
/// own identifier, so its own bucket): every member sees every fragment,
/// and only the owner of a datagram's first fragment may forward the
/// later ones, which carry no ports to bucket them by. Measured after an
/// uncounted first round (routed members learn the hosts' link addresses
/// then).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct FragmentedPings {
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
}

/// Ping processes of [`FragmentedPings`], and echoes each.
const FRAG_PINGERS: u32 = 8;
const FRAG_ECHOES: u32 = 3;

impl ClusterLab {
    /// Runs [`FragmentedPings`] (the pings run at once, each in its own
    /// process).
    pub fn fragmented_pings(&self) -> anyhow::Result<FragmentedPings> {
        let server = self.server().split(':').next().unwrap_or_default();
        let c = self.lab.ns("c");
        let count = FRAG_ECHOES.to_string();
        let pings: Vec<_> = (0..FRAG_PINGERS)
            .map(|_| {
                self.lab
                    .net
                    .command(&c, "ping")
                    .args([
                        "-n", "-q", "-c", &count, "-i", "0.2", "-W", "2", "-s", "3000", server,
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting ping")
            })
            .collect::<anyhow::Result<_>>()?;
        let mut r = FragmentedPings::default();
        for p in pings {
            let out = p.wait_with_output().context("waiting for ping")?;
            r.sent += FRAG_ECHOES;
            r.received += ping_received(&String::from_utf8_lossy(&out.stdout));
        }
        Ok(r)
    }
}

/// `N received` of ping's summary (0 if absent).
fn ping_received(out: &str) -> u32 {
    out.split(',')
        .find_map(|part| part.trim().strip_suffix(" received")?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod ping_tests {
    use super::ping_received;

    #[test]
    fn the_received_count_is_read_from_pings_summary() {
        let out = "--- 192.0.2.2 ping statistics ---\n3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\nrtt min/avg/max/mdev = 0.1/0.2/0.3/0.1 ms\n";
        assert_eq!(ping_received(out), 2);
        let lost = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2040ms\n";
        assert_eq!(ping_received(lost), 0);
        assert_eq!(ping_received(""), 0);
    }
}
