//! Routed mode on the control side: builds the dataplane's L3 state from
//! the configuration ([`build`]), publishes what the workers learn about
//! neighbors ([`Appliance::publish_neighbors`], from the control loop), and
//! announces the virtual addresses at takeover
//! ([`Appliance::announce_virtual_addresses`]).
//!
//! Virtual addresses need no activation call: workers answer for them
//! exactly while they forward, so `WorkerShared::set_forwarding(true)`
//! activates them and `set_forwarding(false)` (backup, fault) releases them.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ftfw_dataplane::l3::{
    self, L3Config, L3Port, L3Shared, VirtualAddress, DEFAULT_NEIGHBOR_CAPACITY,
};
use ftfw_dataplane::worker::Command;

use crate::appliance::Appliance;
use crate::config::{Config, ForwardMode, PortBackend, PortConfig};
use crate::console::proto::{NeighborEntry, NeighborsInfo, RouteEntry, RoutesInfo};

/// How long an announcement waits for worker 0 to send it.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(2);

/// Neighbor updates applied per control-loop tick.
const PUBLISH_BUDGET: usize = 4096;

/// The MAC routed mode uses on `port`: the configured one, else the
/// interface's (AF_PACKET), else one derived from the port name (`mem`);
/// a DPDK port needs it configured.
pub fn port_mac(port: &PortConfig) -> anyhow::Result<[u8; 6]> {
    if let Some(m) = port.mac {
        return Ok(m);
    }
    match &port.backend {
        PortBackend::AfPacket { interface } => {
            ftfw_dataplane::port::af_packet::mac_address(interface).with_context(|| {
                format!(
                    "port {}: cannot read the MAC of {interface}; set `mac` in its [[port]]",
                    port.name
                )
            })
        }
        PortBackend::Mem => Ok(l3::derived_mac(&port.name)),
        // The device's MAC is known only once EAL has probed it.
        PortBackend::Dpdk(d) => anyhow::bail!(
            "port {}: set `mac` in its [[port]] for routed mode on DPDK device {}",
            port.name,
            d.device
        ),
    }
}

/// The L3 configuration of a routed-mode `config`.
pub fn l3_config(config: &Config) -> anyhow::Result<L3Config> {
    let mut ports = Vec::with_capacity(config.ports.len());
    for p in &config.ports {
        ports.push(L3Port {
            name: p.name.clone(),
            mac: port_mac(p)?,
            addresses: p.addresses.clone(),
        });
    }
    let mut vips = Vec::with_capacity(config.virtual_addresses.len());
    for v in &config.virtual_addresses {
        let Some(i) = config.port_index(&v.port) else {
            bail!("virtual address {}: no port {}", v.address, v.port);
        };
        vips.push(VirtualAddress {
            port: u16::try_from(i).context("too many ports")?,
            address: v.address,
        });
    }
    let statics: Vec<_> = config.routes.iter().map(|r| (r.to, r.via)).collect();
    Ok(L3Config::new(ports, vips, &statics)?)
}

/// The shared L3 state for the workers, in routed mode; `None` in
/// transparent mode.
pub fn build(config: &Config) -> anyhow::Result<Option<Arc<L3Shared>>> {
    match config.dataplane.mode {
        ForwardMode::Transparent => Ok(None),
        ForwardMode::Routed => Ok(Some(L3Shared::new(
            l3_config(config)?,
            DEFAULT_NEIGHBOR_CAPACITY,
        ))),
    }
}

impl Appliance {
    /// Sends one gratuitous ARP per IPv4 virtual address and one
    /// unsolicited neighbor advertisement (override flag) per IPv6 virtual
    /// address out of its port, through worker 0. Returns the frames sent;
    /// 0 in transparent mode or without virtual addresses.
    pub fn announce_virtual_addresses(&self) -> Result<usize, String> {
        let Some(l3) = self.l3() else {
            return Ok(0);
        };
        let frames = l3::announce_frames(&l3.config());
        if frames.is_empty() {
            return Ok(0);
        }
        let workers = self.worker_shared();
        let w0 = workers.first().ok_or("no worker")?;
        let mut by_port: Vec<(u16, Vec<Vec<u8>>)> = Vec::new();
        for (port, f) in frames {
            match by_port.iter_mut().find(|(p, _)| *p == port) {
                Some((_, v)) => v.push(f),
                None => by_port.push((port, vec![f])),
            }
        }
        let mut waits = Vec::new();
        for (port, frames) in by_port {
            let (tx, rx) = mpsc::channel();
            w0.send(Command::Transmit {
                port,
                frames,
                reply: Some(tx),
            })
            .map_err(|_| "worker 0 command queue is full".to_string())?;
            waits.push(rx);
        }
        let mut sent = 0;
        for rx in waits {
            sent += rx
                .recv_timeout(ANNOUNCE_TIMEOUT)
                .map_err(|_| "worker 0 did not answer".to_string())?;
        }
        Ok(sent)
    }

    /// The note the takeover's "announce" step shows.
    pub fn announce_note(&self) -> String {
        if self.l3().is_none() {
            return "no virtual addresses in transparent mode".into();
        }
        match self.announce_virtual_addresses() {
            Ok(0) => "no virtual addresses".into(),
            Ok(n) => format!("{n} gratuitous ARP / unsolicited NA sent"),
            Err(e) => format!("announce failed: {e}"),
        }
    }

    fn l3_or_err(&self) -> Result<&Arc<L3Shared>, String> {
        self.l3()
            .ok_or_else(|| "not in routed mode (dataplane.mode = \"routed\")".to_string())
    }

    /// The neighbor table for the console.
    pub fn neighbors_info(&self) -> Result<NeighborsInfo, String> {
        let l3 = self.l3_or_err()?;
        let cfg = l3.config();
        let now = Instant::now();
        let st = l3.neighbor_stats();
        let neighbors = l3
            .neighbors()
            .entries()
            .into_iter()
            .map(|(ip, n)| NeighborEntry {
                ip: ip.to_string(),
                mac: format_mac(&n.mac),
                port: port_name(&cfg, n.port),
                age_secs: now.saturating_duration_since(n.updated).as_secs(),
            })
            .collect();
        Ok(NeighborsInfo {
            neighbors,
            capacity: st.capacity,
            learned: st.learned,
            expired: st.expired,
            table_full: st.table_full,
        })
    }

    /// The route table for the console.
    pub fn routes_info(&self) -> Result<RoutesInfo, String> {
        let cfg = self.l3_or_err()?.config();
        Ok(RoutesInfo {
            routes: cfg
                .routes
                .routes()
                .iter()
                .map(|r| RouteEntry {
                    to: r.to.to_string(),
                    via: r.via.map(|v| v.to_string()),
                    port: port_name(&cfg, r.port),
                    kind: r.kind.as_str().to_string(),
                })
                .collect(),
        })
    }

    /// Publishes what the workers learned about neighbors as a new table
    /// snapshot (and expires stale entries); the control loop calls it
    /// every tick. Returns the updates applied.
    pub fn publish_neighbors(&self) -> usize {
        self.l3()
            .map_or(0, |l3| l3.publish_neighbors(Instant::now(), PUBLISH_BUDGET))
    }
}

/// `52:54:00:00:00:01`.
pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn port_name(cfg: &L3Config, port: u16) -> String {
    cfg.ports
        .get(usize::from(port))
        .map_or_else(|| port.to_string(), |p| p.name.clone())
}
