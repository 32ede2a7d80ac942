//! An Ethernet device (PCI NIC or vdev): configured with one RX/TX queue
//! pair per worker, its own mempool, symmetric RSS, started; stopped,
//! closed and (if we attached it) detached when the last queue handle goes.

use std::ffi::CString;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use dpdk_sys as sys;

use super::ffi::{self, DpdkError};
use super::mbuf::Mempool;
use crate::port::rss::SYMMETRIC_KEY;
use crate::port::BURST;

/// How to open a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// A PCI address (`0000:03:00.0`) or vdev arguments
    /// (`net_af_packet0,iface=eth1`, `net_ring0`, `net_tap0,iface=tap0`,
    /// `net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`).
    pub devargs: String,
    /// RX/TX queue pairs (one per worker).
    pub queues: u16,
    /// Receive descriptors per queue (the driver may round it).
    pub rx_descriptors: u16,
    /// Transmit descriptors per queue (the driver may round it).
    pub tx_descriptors: u16,
    /// Mbufs in the port's pool; raised to what the queues need at least.
    pub mbufs: u32,
    /// Per-lcore mempool cache.
    pub mbuf_cache: u32,
}

impl DeviceConfig {
    /// Defaults for `devargs` with `queues` queue pairs.
    pub fn new(devargs: &str, queues: u16) -> DeviceConfig {
        DeviceConfig {
            devargs: devargs.to_string(),
            queues,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mbufs: 8191,
            mbuf_cache: 256,
        }
    }

    /// The device name: `devargs` up to the first comma.
    pub fn name(&self) -> &str {
        device_name(&self.devargs)
    }

    /// Mbufs the pool gets: the configured count, or what every queue's
    /// descriptors, one burst each way and the lcore caches can hold at
    /// once, if that is more.
    pub fn pool_size(&self) -> u32 {
        let q = u32::from(self.queues.max(1));
        let need = q
            * (u32::from(self.rx_descriptors)
                + u32::from(self.tx_descriptors)
                + 2 * u32::try_from(BURST).unwrap_or(u32::MAX)
                + self.mbuf_cache)
            + 1024;
        self.mbufs.max(need)
    }
}

/// The device name in `devargs` (up to the first comma).
pub fn device_name(devargs: &str) -> &str {
    devargs.split(',').next().unwrap_or("")
}

/// Link state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Carrier up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Device-wide counters (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Frames the device dropped because its receive queues were full.
    pub rx_missed: u64,
    /// Erroneous frames received.
    pub rx_errors: u64,
    /// Receive mbuf allocation failures.
    pub rx_nombuf: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
}

/// An open, started device.
#[derive(Debug)]
pub struct Device {
    port_id: u16,
    name: String,
    devargs: String,
    queues: u16,
    rss: bool,
    /// Redirection table entries the device reports (0: unknown).
    reta_size: u16,
    driver: String,
    /// Set when we attached the device (hot-plug), so closing detaches it.
    attached: Option<DevicePtr>,
    taken: Mutex<Vec<bool>>,
    pool: Mempool,
}

#[derive(Debug)]
struct DevicePtr(*mut sys::rte_device);

// SAFETY: the rte_device pointer is only passed to rte_dev_remove, once,
// from Device's Drop; EAL's hot-plug calls take their own lock.
unsafe impl Send for DevicePtr {}
// SAFETY: as above; no access through &DevicePtr.
unsafe impl Sync for DevicePtr {}

/// Devices open in this process, by name, so every worker's port on the
/// same device shares one [`Device`].
static OPEN: Mutex<Vec<(String, Weak<Device>)>> = Mutex::new(Vec::new());

static POOL_SEQ: AtomicU32 = AtomicU32::new(0);

fn port_by_name(name: &str) -> Result<Option<u16>, DpdkError> {
    let c = CString::new(name)
        .map_err(|_| DpdkError::Usage(format!("device name {name:?} contains NUL")))?;
    let mut id = 0u16;
    // SAFETY: c is NUL-terminated; id is a valid out-pointer.
    let r = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    Ok((r == 0).then_some(id))
}

fn dev_info(port_id: u16) -> Result<sys::rte_eth_dev_info, DpdkError> {
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: port_id is a valid port; info is a valid out-pointer.
    let r = unsafe { sys::rte_eth_dev_info_get(port_id, &mut info) };
    ffi::neg_errno("rte_eth_dev_info_get", r)?;
    Ok(info)
}

impl Device {
    /// Opens the device `config` names, or returns the one already open
    /// under that name (which must have been opened with the same
    /// `devargs` and queue count).
    pub fn open_shared(config: &DeviceConfig) -> Result<Arc<Device>, DpdkError> {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(d) = open
            .iter()
            .find(|(n, _)| n == config.name())
            .and_then(|(_, w)| w.upgrade())
        {
            if d.devargs != config.devargs || d.queues != config.queues {
                return Err(DpdkError::Usage(format!(
                    "device {} is already open as {:?} with {} queues",
                    d.name, d.devargs, d.queues
                )));
            }
            return Ok(d);
        }
        let d = Arc::new(Device::open(config)?);
        open.push((d.name.clone(), Arc::downgrade(&d)));
        Ok(d)
    }

    fn open(config: &DeviceConfig) -> Result<Device, DpdkError> {
        super::eal::require()?;
        let name = config.name().to_string();
        if name.is_empty() {
            return Err(DpdkError::Usage("empty device name".into()));
        }
        if config.queues == 0 {
            return Err(DpdkError::Usage(format!("{name}: zero queues")));
        }
        let (port_id, attached) = match port_by_name(&name)? {
            Some(id) => (id, None),
            None => {
                let args = CString::new(config.devargs.as_str()).map_err(|_| {
                    DpdkError::Usage(format!("devargs {:?} contain NUL", config.devargs))
                })?;
                // SAFETY: EAL is initialised; args is NUL-terminated and
                // copied by EAL.
                let r = unsafe { sys::rte_dev_probe(args.as_ptr()) };
                ffi::neg_errno("rte_dev_probe", r).map_err(|e| match e {
                    DpdkError::Call { errno, message, .. } => DpdkError::Usage(format!(
                        "cannot attach DPDK device {:?}: {message} (errno {errno}); \
                         is the driver available and, for a NIC, is it bound to vfio-pci?",
                        config.devargs
                    )),
                    other => other,
                })?;
                let id = port_by_name(&name)?.ok_or_else(|| {
                    DpdkError::Usage(format!(
                        "device {:?} attached but no Ethernet port is named {name:?}",
                        config.devargs
                    ))
                })?;
                let info = dev_info(id)?;
                (id, Some(DevicePtr(info.device)))
            }
        };
        // From here on, a failure must undo the attach: build the Device
        // early (with an empty pool slot filled below) so Drop cleans up.
        let info = dev_info(port_id)?;
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name is a NUL-terminated static string of the PMD.
            unsafe { std::ffi::CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        let q = config.queues;
        if q > info.max_rx_queues || q > info.max_tx_queues {
            Self::detach(attached);
            return Err(DpdkError::Usage(format!(
                "{name} ({driver}) supports {} RX / {} TX queues, {q} wanted (one per worker)",
                info.max_rx_queues, info.max_tx_queues
            )));
        }
        let mut conf = sys::rte_eth_conf::default();
        let key_len = match info.hash_key_size {
            0 => 40,
            n => usize::from(n).min(SYMMETRIC_KEY.len()),
        };
        let mut key = SYMMETRIC_KEY;
        // SAFETY: returns a constant.
        let wanted_hf = unsafe { sys::ftfw_eth_rss_ip_tcp_udp() };
        let rss = q > 1 && info.flow_type_rss_offloads & wanted_hf != 0;
        if rss {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = u8::try_from(key_len).unwrap_or(40);
            conf.rx_adv_conf.rss_conf.rss_hf = wanted_hf & info.flow_type_rss_offloads;
        } else if q > 1 {
            tracing::warn!(
                device = %name,
                driver = %driver,
                "device has no RSS; the driver alone decides which queue (worker) gets a flow"
            );
        }
        let r = {
            // SAFETY: port_id is valid and stopped (just attached or never
            // started by us); conf and the key it points to live across the
            // call, which copies them.
            unsafe { sys::rte_eth_dev_configure(port_id, q, q, &conf) }
        };
        if let Err(e) = ffi::neg_errno("rte_eth_dev_configure", r) {
            Self::detach(attached);
            return Err(e);
        }
        let (mut rx_desc, mut tx_desc) = (config.rx_descriptors, config.tx_descriptors);
        // SAFETY: port_id is configured; the out-pointers are valid.
        let r =
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut rx_desc, &mut tx_desc) };
        if let Err(e) = ffi::neg_errno("rte_eth_dev_adjust_nb_rx_tx_desc", r) {
            Self::close_port(port_id, attached);
            return Err(e);
        }
        // SAFETY: port_id is valid.
        let socket = unsafe { sys::rte_eth_dev_socket_id(port_id) };
        let socket = (socket >= 0).then_some(socket);
        let sized = DeviceConfig {
            rx_descriptors: rx_desc,
            tx_descriptors: tx_desc,
            ..config.clone()
        };
        let seq = POOL_SEQ.fetch_add(1, Ordering::Relaxed);
        // RTE_MEMPOOL_NAMESIZE is 26 bytes with the NUL.
        let pool_name = format!("ftfw_p{port_id}_{seq}");
        let pool = match Mempool::new(
            &pool_name,
            sized.pool_size(),
            config.mbuf_cache,
            // SAFETY: returns a constant.
            unsafe { sys::ftfw_mbuf_default_buf_size() },
            socket,
        ) {
            Ok(p) => p,
            Err(e) => {
                Self::close_port(port_id, attached);
                return Err(e);
            }
        };
        let dev = Device {
            port_id,
            name,
            devargs: config.devargs.clone(),
            queues: q,
            rss,
            reta_size: info.reta_size,
            driver,
            attached,
            taken: Mutex::new(vec![false; usize::from(q)]),
            pool,
        };
        // Failures from here on are cleaned up by Device's Drop.
        let sock = socket.unwrap_or(sys::SOCKET_ID_ANY);
        let sock = u32::try_from(sock).unwrap_or(u32::MAX);
        for qi in 0..q {
            // SAFETY: port configured with q RX queues, qi < q; a NULL rxconf
            // means the driver's defaults; the pool outlives the device
            // (Device's Drop closes the port before the pool is dropped).
            let r = unsafe {
                sys::rte_eth_rx_queue_setup(
                    port_id,
                    qi,
                    rx_desc,
                    sock,
                    std::ptr::null(),
                    dev.pool.as_ptr(),
                )
            };
            ffi::neg_errno("rte_eth_rx_queue_setup", r)?;
            // SAFETY: as above, for the TX queue (no pool needed).
            let r = unsafe {
                sys::rte_eth_tx_queue_setup(port_id, qi, tx_desc, sock, std::ptr::null())
            };
            ffi::neg_errno("rte_eth_tx_queue_setup", r)?;
        }
        // A bump in the wire forwards every frame, whatever its address.
        // SAFETY: port_id is a configured port.
        let r = unsafe { sys::rte_eth_promiscuous_enable(port_id) };
        if let Err(e) = ffi::neg_errno("rte_eth_promiscuous_enable", r) {
            if e.errno() != Some(libc::ENOTSUP) {
                return Err(e);
            }
        }
        // SAFETY: every queue is set up.
        let r = unsafe { sys::rte_eth_dev_start(port_id) };
        ffi::neg_errno("rte_eth_dev_start", r)?;
        tracing::info!(
            device = %dev.name,
            driver = %dev.driver,
            port_id,
            queues = q,
            rss,
            rx_desc,
            tx_desc,
            mbufs = dev.pool.size(),
            "DPDK device started"
        );
        Ok(dev)
    }

    fn close_port(port_id: u16, attached: Option<DevicePtr>) {
        // SAFETY: port_id is a valid port that no queue handle uses.
        unsafe { sys::rte_eth_dev_close(port_id) };
        Self::detach(attached);
    }

    fn detach(attached: Option<DevicePtr>) {
        if let Some(DevicePtr(dev)) = attached {
            // SAFETY: dev came from this device's info when we attached it;
            // its ethdev port is closed or was never started.
            let r = unsafe { sys::rte_dev_remove(dev) };
            if let Err(e) = ffi::neg_errno("rte_dev_remove", r) {
                tracing::warn!(error = %e, "detaching DPDK device");
            }
        }
    }

    /// Takes queue pair `queue` for one worker; each can be taken once at a
    /// time (a queue is not thread-safe).
    pub(super) fn take_queue(&self, queue: u16) -> Result<(), DpdkError> {
        let mut t = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        match t.get_mut(usize::from(queue)) {
            None => Err(DpdkError::Usage(format!(
                "{}: queue {queue} does not exist ({} queues)",
                self.name, self.queues
            ))),
            Some(true) => Err(DpdkError::Usage(format!(
                "{}: queue {queue} is already in use",
                self.name
            ))),
            Some(slot) => {
                *slot = true;
                Ok(())
            }
        }
    }

    pub(super) fn release_queue(&self, queue: u16) {
        let mut t = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = t.get_mut(usize::from(queue)) {
            *slot = false;
        }
    }

    /// The DPDK port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver (`net_af_packet`, `net_e1000_igb`, ...).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Queue pairs.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// Whether RSS with the symmetric key is programmed.
    pub fn rss(&self) -> bool {
        self.rss
    }

    /// How RSS spreads flows over the queues (the default redirection
    /// table of `reta_size` entries), when RSS is programmed and the
    /// device reports its table.
    pub fn rss_model(&self) -> Option<crate::port::rss::RssModel> {
        (self.rss && self.reta_size > 0).then(|| crate::port::rss::RssModel {
            reta_size: u32::from(self.reta_size),
            queues: self.queues,
        })
    }

    /// The port's mempool.
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Link state, without waiting for autonegotiation.
    pub fn link(&self) -> Result<Link, DpdkError> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: port_id is a started port; l is a valid out-pointer.
        let r = unsafe { sys::rte_eth_link_get_nowait(self.port_id, &mut l) };
        ffi::neg_errno("rte_eth_link_get_nowait", r)?;
        Ok(Link {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() != 0,
        })
    }

    /// Device-wide counters.
    pub fn stats(&self) -> Result<DeviceStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: port_id is a started port; s is a valid out-pointer.
        let r = unsafe { sys::rte_eth_stats_get(self.port_id, &mut s) };
        ffi::neg_errno("rte_eth_stats_get", r)?;
        Ok(DeviceStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            rx_nombuf: s.rx_nombuf,
            tx_errors: s.oerrors,
        })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: the last handle is gone, so no queue is in use; stop and
        // close the port before the pool (a field, dropped after this) is
        // freed. A stop error (not started) changes nothing.
        unsafe { sys::rte_eth_dev_stop(self.port_id) };
        Self::close_port(self.port_id, self.attached.take());
        tracing::info!(device = %self.name, "DPDK device closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pool_sizes() {
        let c = DeviceConfig::new("net_af_packet0,iface=veth0,qpairs=4", 4);
        assert_eq!(c.name(), "net_af_packet0");
        assert_eq!(device_name("0000:03:00.0"), "0000:03:00.0");
        // Four queues need more than the default 8191.
        assert_eq!(c.pool_size(), 4 * (1024 + 1024 + 64 + 256) + 1024);
        let small = DeviceConfig {
            rx_descriptors: 128,
            tx_descriptors: 128,
            ..DeviceConfig::new("net_ring0", 1)
        };
        assert_eq!(small.pool_size(), 8191);
    }

    #[test]
    fn opening_without_eal_is_an_error() {
        let e = Device::open_shared(&DeviceConfig::new("net_ring0", 1)).unwrap_err();
        assert!(e.to_string().contains("EAL is not initialised"), "{e}");
    }
}
