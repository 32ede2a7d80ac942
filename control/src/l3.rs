//! Routed mode on the control side: builds the dataplane's L3 state from
//! the configuration ([`build`]), publishes what the workers learn about
//! neighbors ([`publish_neighbors`], from the control loop), announces the
//! virtual addresses at takeover ([`announce_virtual_addresses`]) and
//! answers the console's `neighbors` and `routes`. It sits below the
//! appliance and the takeover, which call it; it knows neither.
//!
//! Virtual addresses need no activation call: workers answer for them
//! exactly while they forward, so `WorkerShared::set_forwarding(true)`
//! activates them and `set_forwarding(false)` (backup, fault) releases them.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftfw_dataplane::l3::{
    self, L3Config, L3Port, L3Shared, RouteError, VirtualAddress, DEFAULT_NEIGHBOR_CAPACITY,
};
use ftfw_dataplane::worker::{Command, WorkerShared};

use crate::config::{Config, ForwardMode, PortBackend, PortConfig};
use crate::console::proto::{NeighborEntry, NeighborsInfo, RouteEntry, RoutesInfo};

/// How long an announcement waits for worker 0 to send it.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(2);

/// Neighbor updates applied per control-loop tick.
const PUBLISH_BUDGET: usize = 4096;

/// Why routed mode could not be set up from the configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L3ConfigError {
    /// An AF_PACKET interface's MAC could not be read.
    #[error("port {port}: cannot read the MAC of {interface}; set `mac` in its [[port]]")]
    NoMac {
        /// The port.
        port: String,
        /// Its interface.
        interface: String,
    },
    /// A DPDK port has no configured MAC (the device's is known only once
    /// EAL has probed it).
    #[error("port {port}: set `mac` in its [[port]] for routed mode on DPDK device {device}")]
    DpdkMac {
        /// The port.
        port: String,
        /// Its device.
        device: String,
    },
    /// A virtual address names no configured port.
    #[error("virtual address {address}: no port {port}")]
    NoPort {
        /// The address.
        address: String,
        /// The port it names.
        port: String,
    },
    /// More ports than a port index holds.
    #[error("too many ports")]
    TooManyPorts,
    /// The routes do not make a table.
    #[error(transparent)]
    Routes(#[from] RouteError),
}

/// The MAC routed mode uses on `port`: the configured one, else the
/// interface's (AF_PACKET), else one derived from the port name (`mem`);
/// a DPDK port needs it configured.
pub fn port_mac(port: &PortConfig) -> Result<[u8; 6], L3ConfigError> {
    if let Some(m) = port.mac {
        return Ok(m);
    }
    match &port.backend {
        PortBackend::AfPacket { interface } | PortBackend::AfXdp { interface, .. } => {
            ftfw_dataplane::port::af_packet::mac_address(interface).ok_or_else(|| {
                L3ConfigError::NoMac {
                    port: port.name.clone(),
                    interface: interface.clone(),
                }
            })
        }
        PortBackend::Mem => Ok(l3::derived_mac(&port.name)),
        PortBackend::Dpdk(d) => Err(L3ConfigError::DpdkMac {
            port: port.name.clone(),
            device: d.device.clone(),
        }),
    }
}

/// The L3 configuration of a routed-mode `config`.
pub fn l3_config(config: &Config) -> Result<L3Config, L3ConfigError> {
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
            return Err(L3ConfigError::NoPort {
                address: v.address.to_string(),
                port: v.port.clone(),
            });
        };
        vips.push(VirtualAddress {
            port: u16::try_from(i).map_err(|_| L3ConfigError::TooManyPorts)?,
            address: v.address,
        });
    }
    let statics: Vec<_> = config.routes.iter().map(|r| (r.to, r.via)).collect();
    let l3 = L3Config::new(ports, vips, &statics)?;
    // A routed cluster answers for the virtual addresses at its shared MAC.
    Ok(match config.cluster.as_ref().and_then(|c| c.shared_mac) {
        Some(m) => l3.with_shared_mac(m),
        None => l3,
    })
}

/// The shared L3 state for the workers, in routed mode; `None` in
/// transparent mode.
pub fn build(config: &Config) -> Result<Option<Arc<L3Shared>>, L3ConfigError> {
    match config.dataplane.mode {
        ForwardMode::Transparent => Ok(None),
        ForwardMode::Routed => Ok(Some(L3Shared::new(
            l3_config(config)?,
            DEFAULT_NEIGHBOR_CAPACITY,
        ))),
    }
}

/// Why a routed-mode request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L3Error {
    /// The appliance runs in transparent mode.
    #[error("not in routed mode (dataplane.mode = \"routed\")")]
    NotRouted,
    /// There is no worker to send through.
    #[error("no worker")]
    NoWorker,
    /// Worker 0's command queue is full.
    #[error("worker 0 command queue is full")]
    QueueFull,
    /// Worker 0 did not answer in time.
    #[error("worker 0 did not answer")]
    NoAnswer,
}

/// Sends one gratuitous ARP per IPv4 virtual address and one unsolicited
/// neighbor advertisement (override flag) per IPv6 virtual address out of
/// its port, through worker 0 (`w0`). Returns the frames sent; 0 without
/// virtual addresses.
pub fn announce_virtual_addresses(
    l3: &L3Shared,
    w0: Option<&WorkerShared>,
) -> Result<usize, L3Error> {
    let frames = l3::announce_frames(&l3.config());
    if frames.is_empty() {
        return Ok(0);
    }
    let w0 = w0.ok_or(L3Error::NoWorker)?;
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
        .map_err(|_| L3Error::QueueFull)?;
        waits.push(rx);
    }
    let mut sent = 0;
    for rx in waits {
        sent += rx
            .recv_timeout(ANNOUNCE_TIMEOUT)
            .map_err(|_| L3Error::NoAnswer)?;
    }
    Ok(sent)
}

/// The note a takeover's "announce" step shows, after announcing the
/// virtual addresses (`l3` is `None` in transparent mode).
pub fn announce_note(l3: Option<&L3Shared>, w0: Option<&WorkerShared>) -> String {
    let Some(l3) = l3 else {
        return "no virtual addresses in transparent mode".into();
    };
    match announce_virtual_addresses(l3, w0) {
        Ok(0) => "no virtual addresses".into(),
        Ok(n) => format!("{n} gratuitous ARP / unsolicited NA sent"),
        Err(e) => format!("announce failed: {e}"),
    }
}

/// The neighbor table for the console.
pub fn neighbors_info(l3: Option<&L3Shared>) -> Result<NeighborsInfo, L3Error> {
    let l3 = l3.ok_or(L3Error::NotRouted)?;
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
pub fn routes_info(l3: Option<&L3Shared>) -> Result<RoutesInfo, L3Error> {
    let cfg = l3.ok_or(L3Error::NotRouted)?.config();
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
/// snapshot (and expires stale entries); the control loop calls it every
/// tick, at most `PUBLISH_BUDGET` (4096) updates. Returns the updates applied.
pub fn publish_neighbors(l3: Option<&L3Shared>) -> usize {
    l3.map_or(0, |l3| l3.publish_neighbors(Instant::now(), PUBLISH_BUDGET))
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
