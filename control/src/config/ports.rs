//! `[[port]]` and `[[bridge]]`: the ports the workers open and, in
//! transparent mode, the pairs they bridge. DPDK ports are checked with
//! `dpdk.rs`; the routed-mode port fields (handed on as
//! [`PortsSection::l3`]) and `[[route]]`/`[[virtual_address]]` in `l3.rs`.

use std::collections::HashMap;

use serde::Deserialize;

use super::dpdk::{DpdkConfig, DpdkPortConfig, RawDpdk};
use super::Checker;

/// `[[port]]`: one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Operator-facing name, unique, `[a-z0-9_-]{1,15}`.
    pub name: String,
    /// Backend and its parameters.
    pub backend: PortBackend,
    /// Conntrack zone of flows entering through this port.
    pub zone: u16,
    /// Own addresses with their prefixes (routed mode; connected routes).
    pub addresses: Vec<ftfw_dataplane::l3::Prefix>,
    /// MAC to use instead of the interface's (routed mode).
    pub mac: Option<[u8; 6]>,
}

/// A port backend with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortBackend {
    /// TPACKET_V3 ring on a Linux interface.
    AfPacket {
        /// Interface name.
        interface: String,
    },
    /// XDP sockets on a Linux interface, one per worker and receive
    /// queue, fed by an eBPF program in the driver.
    AfXdp {
        /// Interface name.
        interface: String,
        /// Where the XDP program runs (`xdp_mode`: `auto`, the default,
        /// tries the driver first; `native`; `generic`).
        mode: ftfw_dataplane::port::af_xdp::XdpMode,
    },
    /// In-process rings (lab and tests only).
    Mem,
    /// A DPDK poll-mode driver (ftfwd built with `--features dpdk`).
    Dpdk(DpdkPortConfig),
}

impl PortBackend {
    /// The backend name as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            PortBackend::AfPacket { .. } => "af_packet",
            PortBackend::AfXdp { .. } => "af_xdp",
            PortBackend::Mem => "mem",
            PortBackend::Dpdk(_) => "dpdk",
        }
    }

    /// The interface, for backends that have one.
    pub fn interface(&self) -> Option<&str> {
        match self {
            PortBackend::AfPacket { interface } | PortBackend::AfXdp { interface, .. } => {
                Some(interface)
            }
            PortBackend::Mem | PortBackend::Dpdk(_) => None,
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawBackend {
    AfPacket,
    AfXdp,
    Mem,
    Dpdk,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPort {
    pub(super) name: String,
    pub(super) backend: RawBackend,
    pub(super) interface: Option<String>,
    pub(super) xdp_mode: Option<String>,
    pub(super) device: Option<String>,
    #[serde(default)]
    pub(super) zone: i64,
    pub(super) addresses: Option<Vec<String>>,
    pub(super) mac: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBridge {
    pub(super) ports: Vec<String>,
}

fn valid_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub(super) fn valid_ifname(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// The validated `[[port]]`s and `[dpdk]`.
pub(super) struct PortsSection {
    /// The ports, without their routed-mode fields yet.
    pub(super) ports: Vec<PortConfig>,
    pub(super) dpdk: DpdkConfig,
    /// Port names and their indexes.
    pub(super) names: HashMap<String, usize>,
    /// Each port's `addresses` and `mac` as written, for the routed-mode
    /// checks.
    pub(super) l3: Vec<(Option<Vec<String>>, Option<String>)>,
}

impl Checker<'_> {
    /// Checks `[[port]]` and `[dpdk]`.
    pub(super) fn ports(&mut self, raw_ports: Vec<RawPort>, raw_dpdk: RawDpdk) -> PortsSection {
        let (dpdk, dpdk_sizes) = self.dpdk_section(raw_dpdk);
        let mut dpdk_devices = HashMap::new();

        // [[port]]
        let mut ports = Vec::with_capacity(raw_ports.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut interfaces: HashMap<String, usize> = HashMap::new();
        if raw_ports.is_empty() {
            self.error(
                "port",
                "no [[port]] is configured; a transparent appliance needs at least two",
            );
        }
        let mut port_l3 = Vec::with_capacity(raw_ports.len());
        for (i, p) in raw_ports.into_iter().enumerate() {
            port_l3.push((p.addresses, p.mac));
            let field = |k: &str| format!("port[{i}].{k}");
            if !valid_port_name(&p.name) {
                self.error(
                    &field("name"),
                    format!(
                        "{:?} is not a valid port name ([a-z0-9_-], 1 to 15 characters)",
                        p.name
                    ),
                );
            } else if let Some(prev) = names.insert(p.name.clone(), i) {
                self.error(
                    &field("name"),
                    format!("{:?} is already the name of port[{prev}]", p.name),
                );
            }
            let zone = self
                .range(&field("zone"), p.zone, 0, u64::from(u16::MAX))
                .unwrap_or(0);
            if p.xdp_mode.is_some() && p.backend != RawBackend::AfXdp {
                self.error(
                    &field("xdp_mode"),
                    "only ports with backend \"af_xdp\" have an XDP mode",
                );
            }
            let backend = match p.backend {
                RawBackend::Dpdk => PortBackend::Dpdk(self.dpdk_port(
                    i,
                    p.device,
                    p.interface.as_deref(),
                    &dpdk_sizes,
                    &mut dpdk_devices,
                )),
                RawBackend::Mem => PortBackend::Mem,
                RawBackend::AfPacket | RawBackend::AfXdp => match p.interface {
                    None => {
                        let name = if p.backend == RawBackend::AfXdp {
                            "af_xdp"
                        } else {
                            "af_packet"
                        };
                        self.error(
                            &format!("port[{i}]"),
                            format!("backend \"{name}\" needs an `interface`"),
                        );
                        PortBackend::Mem
                    }
                    Some(ifname) => {
                        if !valid_ifname(&ifname) {
                            self.error(
                                &field("interface"),
                                format!("{ifname:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or whitespace)"),
                            );
                        } else if let Some(prev) = interfaces.insert(ifname.clone(), i) {
                            self.error(
                                &field("interface"),
                                format!("{ifname:?} is already used by port[{prev}]"),
                            );
                        }
                        if p.backend == RawBackend::AfXdp {
                            PortBackend::AfXdp {
                                interface: ifname,
                                mode: self.xdp_mode(i, p.xdp_mode.as_deref()),
                            }
                        } else {
                            PortBackend::AfPacket { interface: ifname }
                        }
                    }
                },
            };
            ports.push(PortConfig {
                name: p.name,
                backend,
                zone: u16::try_from(zone).unwrap_or(0),
                addresses: Vec::new(),
                mac: None,
            });
        }
        PortsSection {
            ports,
            dpdk,
            names,
            l3: port_l3,
        }
    }

    /// `port[i].xdp_mode`: `auto` (the default), `native` or `generic`.
    fn xdp_mode(&mut self, i: usize, raw: Option<&str>) -> ftfw_dataplane::port::af_xdp::XdpMode {
        use ftfw_dataplane::port::af_xdp::XdpMode;
        match raw {
            None | Some("auto") => XdpMode::Auto,
            Some("native") => XdpMode::Native,
            Some("generic") => XdpMode::Generic,
            Some(other) => {
                self.error(
                    &format!("port[{i}].xdp_mode"),
                    format!("{other:?} is not an XDP mode (auto, native or generic)"),
                );
                XdpMode::Auto
            }
        }
    }

    /// Checks `[[bridge]]`: in transparent mode every port is in exactly
    /// one; routed mode uses none. `names` are the ports.
    pub(super) fn bridges(
        &mut self,
        raw: Vec<RawBridge>,
        routed: bool,
        names: &HashMap<String, usize>,
    ) -> Vec<[String; 2]> {
        let raw_bridges = if routed {
            for i in 0..raw.len() {
                self.error(&format!("bridge[{i}]"), "not used in routed mode");
            }
            Vec::new()
        } else {
            raw
        };

        // [[bridge]]
        let mut bridges = Vec::with_capacity(raw_bridges.len());
        let mut bridged: HashMap<String, usize> = HashMap::new();
        for (i, b) in raw_bridges.into_iter().enumerate() {
            let field = format!("bridge[{i}].ports");
            if b.ports.len() != 2 {
                self.error(
                    &field,
                    format!("has {} ports; a bridge joins exactly two", b.ports.len()),
                );
                continue;
            }
            if b.ports[0] == b.ports[1] {
                self.error(&field, format!("bridges port {:?} with itself", b.ports[0]));
                continue;
            }
            let mut ok = true;
            for (j, name) in b.ports.iter().enumerate() {
                let f = format!("{field}[{j}]");
                if !names.contains_key(name) {
                    self.error(&f, format!("no [[port]] is named {name:?}"));
                    ok = false;
                } else if let Some(prev) = bridged.insert(name.clone(), i) {
                    self.error(&f, format!("port {name:?} is already in bridge[{prev}]"));
                    ok = false;
                }
            }
            if ok {
                bridges.push([b.ports[0].clone(), b.ports[1].clone()]);
            }
        }
        for (name, &i) in names {
            if !routed && !bridged.contains_key(name) {
                self.error(
                    &format!("port[{i}]"),
                    format!("port {name:?} is in no [[bridge]]; in transparent mode every port needs a peer"),
                );
            }
        }
        bridges
    }
}
