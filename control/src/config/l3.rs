//! Routed-mode parts of the configuration: port addresses and MACs,
//! `[[route]]` and `[[virtual_address]]`, validated like the rest (every
//! error `FILE:LINE: field: message`). Annotated example:
//! `configs/routed.toml`.

use std::collections::HashMap;
use std::net::IpAddr;

use ftfw_dataplane::l3::{IpKey, Prefix};
use serde::Deserialize;

use super::ports::PortConfig;
use super::Checker;

/// `[[route]]`: a static route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// Destination network (`0.0.0.0/0`, `::/0` for a default route).
    pub to: Prefix,
    /// Gateway, inside the subnet of a port address.
    pub via: IpAddr,
}

/// `[[virtual_address]]`: an address answered and announced only while
/// this node is active (forwarding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualAddressConfig {
    /// The port it lives on.
    pub port: String,
    /// The address with its prefix.
    pub address: Prefix,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    to: String,
    via: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVirtualAddress {
    port: String,
    address: String,
}

/// Parses `02:00:5e:10:00:01`.
pub(super) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

impl Checker<'_> {
    fn prefix(&mut self, field: &str, v: &str) -> Option<Prefix> {
        match v.parse::<Prefix>() {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(field, e.to_string());
                None
            }
        }
    }

    /// Validates the routed-mode fields; in transparent mode they must be
    /// absent. Fills the ports' addresses and MACs.
    pub(super) fn validate_l3(
        &mut self,
        routed: bool,
        ports: &mut [PortConfig],
        port_l3: Vec<(Option<Vec<String>>, Option<String>)>,
        raw_routes: Vec<RawRoute>,
        raw_vips: Vec<RawVirtualAddress>,
    ) -> (Vec<RouteConfig>, Vec<VirtualAddressConfig>) {
        if !routed {
            for (i, (addrs, mac)) in port_l3.iter().enumerate() {
                if addrs.is_some() {
                    self.error(
                        &format!("port[{i}].addresses"),
                        "only used in routed mode (dataplane.mode = \"routed\")",
                    );
                }
                if mac.is_some() {
                    self.error(
                        &format!("port[{i}].mac"),
                        "only used in routed mode (dataplane.mode = \"routed\")",
                    );
                }
            }
            for i in 0..raw_routes.len() {
                self.error(&format!("route[{i}]"), "only used in routed mode");
            }
            for i in 0..raw_vips.len() {
                self.error(&format!("virtual_address[{i}]"), "only used in routed mode");
            }
            return (Vec::new(), Vec::new());
        }
        let mut owners: HashMap<IpAddr, String> = HashMap::new();
        for (i, (addrs, mac)) in port_l3.into_iter().enumerate() {
            let Some(port) = ports.get_mut(i) else {
                continue;
            };
            match addrs {
                None => self.error(
                    &format!("port[{i}]"),
                    "needs `addresses` in routed mode, e.g. addresses = [\"192.0.2.1/24\"]",
                ),
                Some(v) if v.is_empty() => self.error(
                    &format!("port[{i}].addresses"),
                    "needs at least one address in routed mode",
                ),
                Some(v) => {
                    for (j, a) in v.iter().enumerate() {
                        let field = format!("port[{i}].addresses[{j}]");
                        let Some(p) = self.prefix(&field, a) else {
                            continue;
                        };
                        if !usable(&p) {
                            self.error(&field, format!("{} is not a unicast address", p.addr));
                            continue;
                        }
                        if let Some(prev) = owners.insert(p.addr, field.clone()) {
                            self.error(&field, format!("{} is already {prev}", p.addr));
                            continue;
                        }
                        port.addresses.push(p);
                    }
                }
            }
            if let Some(m) = mac {
                let field = format!("port[{i}].mac");
                match parse_mac(&m) {
                    Some(b) if b[0] & 1 == 0 && b != [0; 6] => port.mac = Some(b),
                    Some(_) => self.error(&field, format!("{m} is not a unicast MAC")),
                    None => self.error(
                        &field,
                        format!("{m:?} is not a MAC address (write 02:00:5e:10:00:01)"),
                    ),
                }
            }
        }
        let mut vips = Vec::with_capacity(raw_vips.len());
        for (i, v) in raw_vips.into_iter().enumerate() {
            let field = |k: &str| format!("virtual_address[{i}].{k}");
            if !ports.iter().any(|p| p.name == v.port) {
                self.error(&field("port"), format!("no [[port]] is named {:?}", v.port));
                continue;
            }
            let Some(p) = self.prefix(&field("address"), &v.address) else {
                continue;
            };
            if !usable(&p) {
                self.error(
                    &field("address"),
                    format!("{} is not a unicast address", p.addr),
                );
                continue;
            }
            if let Some(prev) = owners.insert(p.addr, field("address")) {
                self.error(&field("address"), format!("{} is already {prev}", p.addr));
                continue;
            }
            vips.push(VirtualAddressConfig {
                port: v.port,
                address: p,
            });
        }
        let connected: Vec<Prefix> = ports
            .iter()
            .flat_map(|p| p.addresses.iter().copied())
            .chain(vips.iter().map(|v| v.address))
            .collect();
        let mut routes = Vec::with_capacity(raw_routes.len());
        for (i, r) in raw_routes.into_iter().enumerate() {
            let field = |k: &str| format!("route[{i}].{k}");
            let to = self.prefix(&field("to"), &r.to);
            let via = self.ip(&field("via"), &r.via);
            let (Some(to), Some(via)) = (to, via) else {
                continue;
            };
            if to.has_host_bits() {
                self.error(
                    &field("to"),
                    format!("{to} has host bits set; the network is {}", to.network()),
                );
                continue;
            }
            if to.addr.is_ipv6() != via.is_ipv6() {
                self.error(
                    &field("via"),
                    format!("{to} and {via} are not the same address family"),
                );
                continue;
            }
            let k = IpKey::from(via);
            if !connected.iter().any(|c| c.contains(&k)) {
                self.error(
                    &field("via"),
                    format!(
                        "gateway {via} is not inside the subnet of any port or virtual address"
                    ),
                );
                continue;
            }
            routes.push(RouteConfig { to, via });
        }
        (routes, vips)
    }
}

fn usable(p: &Prefix) -> bool {
    let k = p.key();
    !k.is_unspecified() && !k.is_multicast_or_broadcast()
}

#[cfg(test)]
mod tests {
    use super::super::{parse, ForwardMode, PortBackend};
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse(text, "ftfw.toml") {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
        }
    }

    const BASE: &str = "\
[dataplane]
mode = \"routed\"
[[port]]
name = \"outside\"
backend = \"mem\"
addresses = [\"192.0.2.253/24\", \"2001:db8:1::fd/64\"]
[[port]]
name = \"inside\"
backend = \"mem\"
addresses = [\"198.51.100.253/24\"]
mac = \"02:00:5e:10:00:02\"
";

    #[test]
    fn routed_example_is_valid() {
        let text = include_str!("../../../configs/routed.toml");
        let c = parse(text, "/etc/ftfw/routed.toml").unwrap();
        assert_eq!(c.dataplane.mode, ForwardMode::Routed);
        assert!(c.bridges.is_empty());
        assert_eq!(c.ports.len(), 2);
        assert_eq!(
            c.ports[0].backend,
            PortBackend::AfPacket {
                interface: "eth1".into()
            }
        );
        assert_eq!(c.ports[0].addresses[0].to_string(), "192.0.2.253/24");
        assert_eq!(c.ports[0].mac, None);
        assert_eq!(c.ports[1].addresses.len(), 2);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].to.to_string(), "0.0.0.0/0");
        assert_eq!(c.routes[0].via.to_string(), "192.0.2.1");
        assert_eq!(c.virtual_addresses.len(), 3);
        assert_eq!(c.virtual_addresses[1].port, "inside");
        assert_eq!(
            c.virtual_addresses[1].address.to_string(),
            "198.51.100.254/24"
        );
    }

    #[test]
    fn base_parses() {
        let c = parse(
            &format!("{BASE}[[route]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n[[virtual_address]]\nport = \"inside\"\naddress = \"198.51.100.254/24\"\n"),
            "x.toml",
        )
        .unwrap();
        assert_eq!(c.ports[1].mac, Some([2, 0, 0x5e, 0x10, 0, 2]));
        assert_eq!(c.routes[0].via.to_string(), "192.0.2.1");
        assert_eq!(c.virtual_addresses[0].port, "inside");
    }

    #[test]
    fn routed_errors_name_their_fields() {
        let text = BASE
            .replace("addresses = [\"198.51.100.253/24\"]\n", "")
            .replace("2001:db8:1::fd/64", "2001:db8:1::fd")
            .replace("02:00:5e:10:00:02", "03:00:5e:10:00:02");
        assert_eq!(
            errors(&text),
            [
                "ftfw.toml:6: port[0].addresses[1]: \"2001:db8:1::fd\" has no prefix length (write ADDRESS/LENGTH, e.g. 192.0.2.1/24)",
                "ftfw.toml:7: port[1]: needs `addresses` in routed mode, e.g. addresses = [\"192.0.2.1/24\"]",
                "ftfw.toml:10: port[1].mac: 03:00:5e:10:00:02 is not a unicast MAC",
            ]
        );
        let e = errors(&format!(
            "{BASE}[[bridge]]\nports = [\"outside\", \"inside\"]\n[[route]]\nto = \"198.51.100.0/24\"\nvia = \"203.0.113.1\"\n[[route]]\nto = \"203.0.113.1/24\"\nvia = \"192.0.2.9\"\n[[virtual_address]]\nport = \"dmz\"\naddress = \"192.0.2.254/24\"\n[[virtual_address]]\nport = \"inside\"\naddress = \"192.0.2.253/24\"\n"
        ));
        assert_eq!(
            e,
            [
                "ftfw.toml:12: bridge[0]: not used in routed mode",
                "ftfw.toml:16: route[0].via: gateway 203.0.113.1 is not inside the subnet of any port or virtual address",
                "ftfw.toml:18: route[1].to: 203.0.113.1/24 has host bits set; the network is 203.0.113.0/24",
                "ftfw.toml:21: virtual_address[0].port: no [[port]] is named \"dmz\"",
                "ftfw.toml:25: virtual_address[1].address: 192.0.2.253 is already port[0].addresses[0]",
            ]
        );
    }

    #[test]
    fn routed_fields_rejected_in_transparent_mode() {
        let text = "[[port]]\nname = \"a\"\nbackend = \"mem\"\naddresses = [\"192.0.2.1/24\"]\n[[port]]\nname = \"b\"\nbackend = \"mem\"\n[[bridge]]\nports = [\"a\", \"b\"]\n[[route]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.9\"\n";
        assert_eq!(
            errors(text),
            [
                "ftfw.toml:4: port[0].addresses: only used in routed mode (dataplane.mode = \"routed\")",
                "ftfw.toml:10: route[0]: only used in routed mode",
            ]
        );
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:5e:10:00:01"),
            Some([2, 0, 0x5e, 0x10, 0, 1])
        );
        assert_eq!(parse_mac("02:00:5e:10:00"), None);
        assert_eq!(parse_mac("02:00:5e:10:00:01:02"), None);
        assert_eq!(parse_mac("2:0:5e:10:0:1"), None);
        assert_eq!(parse_mac("zz:00:5e:10:00:01"), None);
    }
}
