//! The route table: connected routes (from the ports' own and virtual
//! addresses) and static routes, looked up by longest prefix match.
//!
//! A table is built once per configuration and never changed (a new
//! configuration builds a new table, swapped whole). Routes are kept sorted
//! by prefix length, longest first, so the first match of a scan is the
//! longest; appliances have tens of routes, for which a scan over a
//! contiguous array beats a trie. Lookups do not allocate.

use std::net::IpAddr;

use super::prefix::{IpKey, Prefix};

/// Where a route comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// The subnet of a port's address: destinations are neighbors.
    Connected,
    /// A configured route through a gateway.
    Static,
}

impl RouteKind {
    /// The name `ftfwctl routes` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Connected => "connected",
            RouteKind::Static => "static",
        }
    }
}

/// One route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination network (host bits clear).
    pub to: Prefix,
    /// The gateway (static routes); `None`: the destination is on the link.
    pub via: Option<IpAddr>,
    /// Appliance-wide index of the egress port.
    pub port: u16,
    /// Connected or static.
    pub kind: RouteKind,
}

impl Route {
    /// The neighbor a packet to `dst` is sent to: the gateway, or `dst`
    /// itself on a connected route.
    #[inline]
    pub fn next_hop(&self, dst: &IpKey) -> IpKey {
        match self.via {
            Some(g) => IpKey::from(g),
            None => *dst,
        }
    }
}

/// Why a static route cannot be installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The gateway is not inside any connected subnet.
    #[error("gateway {0} is not inside the subnet of any port address")]
    GatewayNotConnected(IpAddr),
    /// Destination and gateway are of different families.
    #[error("{to} and gateway {via} are not the same address family")]
    FamilyMismatch {
        /// Destination.
        to: Prefix,
        /// Gateway.
        via: IpAddr,
    },
}

/// An immutable route table.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds a table from `connected` (address prefix, port index) pairs
    /// and `statics` (destination, gateway). A static route's egress port
    /// is that of the connected route covering its gateway.
    pub fn build(
        connected: &[(Prefix, u16)],
        statics: &[(Prefix, IpAddr)],
    ) -> Result<RouteTable, RouteError> {
        let mut routes: Vec<Route> = Vec::new();
        for &(p, port) in connected {
            let to = p.network();
            if !routes.iter().any(|r| r.to == to) {
                routes.push(Route {
                    to,
                    via: None,
                    port,
                    kind: RouteKind::Connected,
                });
            }
        }
        let mut t = RouteTable { routes };
        t.sort();
        let mut statics_out = Vec::new();
        for &(to, via) in statics {
            if to.addr.is_ipv6() != via.is_ipv6() {
                return Err(RouteError::FamilyMismatch { to, via });
            }
            let gw = t
                .lookup(&IpKey::from(via))
                .filter(|r| r.kind == RouteKind::Connected)
                .ok_or(RouteError::GatewayNotConnected(via))?;
            statics_out.push(Route {
                to: to.network(),
                via: Some(via),
                port: gw.port,
                kind: RouteKind::Static,
            });
        }
        t.routes.extend(statics_out);
        t.sort();
        Ok(t)
    }

    fn sort(&mut self) {
        // Longest prefix first; at equal length connected before static, so
        // a static route cannot shadow a port's own subnet.
        self.routes.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.to.len),
                r.kind == RouteKind::Static,
                r.to.addr.is_ipv6(),
            )
        });
    }

    /// The longest-prefix match for `dst`, if any.
    #[inline]
    pub fn lookup(&self, dst: &IpKey) -> Option<&Route> {
        self.routes.iter().find(|r| r.to.contains(dst))
    }

    /// Every route, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }
    fn k(s: &str) -> IpKey {
        s.parse::<IpAddr>().unwrap().into()
    }

    fn table() -> RouteTable {
        RouteTable::build(
            &[
                (p("192.0.2.1/24"), 0),
                (p("198.51.100.1/24"), 1),
                (p("2001:db8:1::1/64"), 0),
                (p("2001:db8:2::1/64"), 1),
            ],
            &[
                (p("0.0.0.0/0"), "192.0.2.254".parse().unwrap()),
                (p("203.0.113.0/24"), "198.51.100.9".parse().unwrap()),
                (p("203.0.113.128/25"), "192.0.2.9".parse().unwrap()),
                (p("::/0"), "2001:db8:1::fe".parse().unwrap()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        let r = t.lookup(&k("198.51.100.20")).unwrap();
        assert_eq!((r.kind, r.port, r.via), (RouteKind::Connected, 1, None));
        assert_eq!(r.next_hop(&k("198.51.100.20")), k("198.51.100.20"));
        let r = t.lookup(&k("203.0.113.5")).unwrap();
        assert_eq!(r.to, p("203.0.113.0/24"));
        assert_eq!(r.port, 1);
        assert_eq!(r.next_hop(&k("203.0.113.5")), k("198.51.100.9"));
        let r = t.lookup(&k("203.0.113.200")).unwrap();
        assert_eq!(r.to, p("203.0.113.128/25"));
        assert_eq!(r.port, 0);
        let r = t.lookup(&k("8.8.8.8")).unwrap();
        assert_eq!((r.to, r.port), (p("0.0.0.0/0"), 0));
        let r = t.lookup(&k("2001:db8:2::99")).unwrap();
        assert_eq!((r.kind, r.port), (RouteKind::Connected, 1));
        let r = t.lookup(&k("2001:db8:ff::1")).unwrap();
        assert_eq!(r.next_hop(&k("2001:db8:ff::1")), k("2001:db8:1::fe"));
        // Sorted longest first.
        let lens: Vec<u8> = t.routes().iter().map(|r| r.to.len).collect();
        assert!(lens.windows(2).all(|w| w[0] >= w[1]), "{lens:?}");
    }

    #[test]
    fn no_default_no_route() {
        let t = RouteTable::build(&[(p("192.0.2.1/24"), 0)], &[]).unwrap();
        assert!(t.lookup(&k("198.51.100.1")).is_none());
        assert!(t.lookup(&k("2001:db8::1")).is_none());
    }

    #[test]
    fn static_route_errors() {
        assert_eq!(
            RouteTable::build(
                &[(p("192.0.2.1/24"), 0)],
                &[(p("0.0.0.0/0"), "198.51.100.1".parse().unwrap())]
            )
            .unwrap_err(),
            RouteError::GatewayNotConnected("198.51.100.1".parse().unwrap())
        );
        assert!(matches!(
            RouteTable::build(
                &[(p("192.0.2.1/24"), 0)],
                &[(p("::/0"), "192.0.2.9".parse().unwrap())]
            ),
            Err(RouteError::FamilyMismatch { .. })
        ));
    }
}
