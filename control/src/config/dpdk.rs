//! The `[dpdk]` section and `backend = "dpdk"` ports.
//!
//! ```toml
//! [dpdk]
//! eal_args = ["--socket-mem", "512"]   # appended to the EAL arguments ftfwd derives
//! mbufs = 8191                          # per port (raised to what the queues need)
//! rx_descriptors = 1024                 # per queue
//! tx_descriptors = 1024
//!
//! [[port]]
//! name = "outside"
//! backend = "dpdk"
//! device = "0000:03:00.0"               # or "net_af_packet0,iface=eth1", "net_tap0", ...
//! ```
//!
//! Without the cargo feature `dpdk` a `dpdk` port is an error that says how
//! to build ftfwd with DPDK; the section itself is accepted either way.

use std::collections::HashMap;

use serde::Deserialize;

use super::Checker;

/// How ftfwd says it lacks DPDK.
pub(super) const NOT_BUILT: &str = "\"dpdk\" needs ftfwd built with DPDK: install libdpdk-dev, libclang-dev and pkg-config, then cargo build --release -p ftfw-control --features dpdk";

/// `[dpdk]`: settings shared by every DPDK port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkConfig {
    /// Extra EAL arguments, after the ones ftfwd derives (main lcore,
    /// `--in-memory`, PCI allow list, driver directory).
    pub eal_args: Vec<String>,
}

/// A DPDK port's device and sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkPortConfig {
    /// PCI address (`0000:03:00.0`) or vdev arguments (`net_af_packet0,iface=eth1`).
    pub device: String,
    /// Mbufs in the port's pool.
    pub mbufs: u32,
    /// Receive descriptors per queue.
    pub rx_descriptors: u16,
    /// Transmit descriptors per queue.
    pub tx_descriptors: u16,
}

impl DpdkPortConfig {
    /// Whether the device is a PCI address (else a vdev).
    pub fn is_pci(&self) -> bool {
        is_pci_address(&self.device)
    }

    /// The device name: the device string up to its first comma.
    pub fn name(&self) -> &str {
        self.device.split(',').next().unwrap_or("")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDpdk {
    eal_args: Vec<String>,
    mbufs: i64,
    rx_descriptors: i64,
    tx_descriptors: i64,
}

impl Default for RawDpdk {
    fn default() -> Self {
        RawDpdk {
            eal_args: Vec::new(),
            mbufs: 8191,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
        }
    }
}

/// `DDDD:BB:DD.F` with hex digits.
pub(super) fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// The vdev drivers ftfw is tested with; others work if DPDK has them.
const KNOWN_VDEVS: &[&str] = &["net_af_packet", "net_tap", "net_ring", "net_pcap"];

impl Checker<'_> {
    /// Validates `[dpdk]`; returns the shared settings and the per-port
    /// sizes every DPDK port gets.
    pub(super) fn dpdk_section(&mut self, raw: RawDpdk) -> (DpdkConfig, DpdkPortConfig) {
        for (i, a) in raw.eal_args.iter().enumerate() {
            if a.is_empty() || a.contains('\0') {
                self.error(
                    &format!("dpdk.eal_args[{i}]"),
                    "an EAL argument must be non-empty and contain no NUL",
                );
            }
        }
        let mbufs = self
            .range("dpdk.mbufs", raw.mbufs, 1023, 16 * 1024 * 1024)
            .unwrap_or(8191);
        let rx = self
            .range("dpdk.rx_descriptors", raw.rx_descriptors, 64, 32768)
            .unwrap_or(1024);
        let tx = self
            .range("dpdk.tx_descriptors", raw.tx_descriptors, 64, 32768)
            .unwrap_or(1024);
        (
            DpdkConfig {
                eal_args: raw.eal_args,
            },
            DpdkPortConfig {
                device: String::new(),
                mbufs: u32::try_from(mbufs).unwrap_or(8191),
                rx_descriptors: u16::try_from(rx).unwrap_or(1024),
                tx_descriptors: u16::try_from(tx).unwrap_or(1024),
            },
        )
    }

    /// Validates the `device` of DPDK port `i`; `seen` maps device names to
    /// the port that uses them.
    pub(super) fn dpdk_port(
        &mut self,
        i: usize,
        device: Option<String>,
        interface: Option<&str>,
        sizes: &DpdkPortConfig,
        seen: &mut HashMap<String, usize>,
    ) -> DpdkPortConfig {
        if !cfg!(feature = "dpdk") {
            self.error(&format!("port[{i}].backend"), NOT_BUILT);
            return sizes.clone();
        }
        if interface.is_some() {
            self.error(
                &format!("port[{i}].interface"),
                "a \"dpdk\" port names its `device` (for an interface, device = \"net_af_packet0,iface=eth1\")",
            );
        }
        let Some(device) = device else {
            self.error(
                &format!("port[{i}]"),
                "backend \"dpdk\" needs a `device`: a PCI address such as \"0000:03:00.0\" or a vdev such as \"net_af_packet0,iface=eth1\"",
            );
            return sizes.clone();
        };
        let field = format!("port[{i}].device");
        let port = DpdkPortConfig {
            device,
            ..sizes.clone()
        };
        let name = port.name().to_string();
        if port.device.chars().any(|c| c.is_whitespace() || c == '\0') {
            self.error(&field, "must not contain whitespace");
        } else if !port.is_pci() && !name.starts_with("net_") {
            self.error(
                &field,
                format!(
                    "{:?} is neither a PCI address (0000:03:00.0) nor a vdev (one of {}, with a number and arguments: net_af_packet0,iface=eth1)",
                    port.device,
                    KNOWN_VDEVS.join(", ")
                ),
            );
        } else if let Some(prev) = seen.insert(name.clone(), i) {
            self.error(
                &field,
                format!("device {name:?} is already used by port[{prev}]"),
            );
        }
        port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("0000:af:1f.7"));
        assert!(!is_pci_address("03:00.0"));
        assert!(!is_pci_address("net_ring0"));
        assert!(!is_pci_address("0000:03:00:0"));
    }
}
