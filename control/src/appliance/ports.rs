//! Ports and shards for the workers: the system port opener ftfwd uses and
//! the per-worker conntrack configuration.

use ftfw_dataplane::conntrack::tcp::{TcpConfig, TcpTimeouts};
use ftfw_dataplane::conntrack::{ConntrackConfig as ShardConfig, Timeouts as ShardTimeouts};
use ftfw_dataplane::port::Port;

use crate::config::{Config, PortBackend, PortConfig};

/// Opens the port a worker uses on a configured interface.
/// Arguments: port index in the configuration, the port, worker number, worker count.
pub type PortOpener<'a> =
    dyn FnMut(usize, &PortConfig, usize, usize) -> Result<Box<dyn Port>, PortError> + 'a;

/// Why a worker's port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The AF_PACKET socket could not be set up.
    #[error("port {port} (worker {worker})")]
    AfPacket {
        /// The port.
        port: String,
        /// The worker.
        worker: usize,
        /// Why.
        #[source]
        source: ftfw_dataplane::port::af_packet::AfPacketError,
    },
    /// The AF_XDP socket could not be set up.
    #[error("port {port} (worker {worker})")]
    AfXdp {
        /// The port.
        port: String,
        /// The worker.
        worker: usize,
        /// Why.
        #[source]
        source: ftfw_dataplane::port::af_xdp::AfXdpError,
    },
    /// A port opener of the lab or of a test could not open the port.
    #[error("port {port}: {reason}")]
    Opener {
        /// The port.
        port: String,
        /// Why.
        reason: String,
    },
    /// `backend = "mem"` outside the lab.
    #[error("port {0}: mem ports exist only inside ftfw-lab")]
    MemOutsideLab(String),
    /// `backend = "dpdk"` in a build without DPDK.
    #[error(
        "port {0}: this build has no DPDK support (cargo build -p ftfw-control --features dpdk)"
    )]
    NoDpdk(String),
    /// The DPDK device or queue could not be opened.
    #[cfg(feature = "dpdk")]
    #[error(transparent)]
    Dpdk(#[from] crate::dpdk::DpdkPortError),
}

/// Opens the system port for `port` as worker `worker` of `workers`
/// (AF_PACKET; several workers share an interface through a fanout group).
pub fn open_system_port(
    index: usize,
    port: &PortConfig,
    worker: usize,
    workers: usize,
) -> Result<Box<dyn Port>, PortError> {
    match &port.backend {
        PortBackend::AfPacket { interface } => {
            use ftfw_dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
            // One fanout group per interface and daemon: pid-derived so two
            // daemons on one machine do not collide.
            let pid = std::process::id().to_le_bytes();
            let group = u16::from_le_bytes([index.to_le_bytes()[0], pid[0]]);
            let cfg = AfPacketConfig {
                fanout_group: (workers > 1).then_some(group),
                // A bump in the wire forwards fragments as they came; kernel
                // reassembly would hand us datagrams larger than the MTU.
                fanout_defrag: false,
                ..AfPacketConfig::new(interface)
            };
            let p = AfPacketPort::open(&cfg).map_err(|source| PortError::AfPacket {
                port: port.name.clone(),
                worker,
                source,
            })?;
            Ok(Box::new(p))
        }
        PortBackend::AfXdp { interface, mode } => {
            use ftfw_dataplane::port::af_xdp::{AfXdpConfig, AfXdpPort};
            // Worker w serves receive queue w; frames of a flow that
            // arrive at another worker's queue are handed to its worker.
            let cfg = AfXdpConfig {
                queue: u32::try_from(worker).unwrap_or(u32::MAX),
                served: u32::try_from(workers).unwrap_or(u32::MAX),
                mode: *mode,
                ..AfXdpConfig::new(interface)
            };
            let p = AfXdpPort::open(&cfg).map_err(|source| PortError::AfXdp {
                port: port.name.clone(),
                worker,
                source,
            })?;
            tracing::info!(
                port = %port.name,
                interface = %interface,
                queue = p.queue(),
                mode = p.mode().name(),
                "AF_XDP socket open"
            );
            Ok(Box::new(p))
        }
        PortBackend::Mem => Err(PortError::MemOutsideLab(port.name.clone())),
        #[cfg(feature = "dpdk")]
        PortBackend::Dpdk(d) => Ok(crate::dpdk::open_port(&port.name, d, worker, workers)?),
        #[cfg(not(feature = "dpdk"))]
        PortBackend::Dpdk(_) => Err(PortError::NoDpdk(port.name.clone())),
    }
}

/// One worker's share of the conntrack configuration.
pub(super) fn shard_config(config: &Config) -> ShardConfig {
    let c = &config.conntrack;
    let t = &c.timeouts;
    let workers = config.dataplane.workers.max(1);
    ShardConfig {
        capacity: c.capacity / workers,
        timeouts: ShardTimeouts {
            tcp: TcpTimeouts {
                syn_sent: t.tcp_syn_sent,
                syn_recv: t.tcp_syn_recv,
                established: t.tcp_established,
                fin_wait: t.tcp_fin_wait,
                close_wait: t.tcp_close_wait,
                last_ack: t.tcp_last_ack,
                time_wait: t.tcp_time_wait,
                close: t.tcp_close,
                syn_sent2: t.tcp_syn_sent2,
                ..TcpTimeouts::default()
            },
            udp: t.udp,
            udp_stream: t.udp_stream,
            icmp: t.icmp,
            generic: t.generic,
        },
        tcp: TcpConfig {
            be_liberal: c.tcp_be_liberal,
            loose: c.tcp_loose,
            ..TcpConfig::default()
        },
    }
}
