//! Socket helpers shared by the UDP and TCP sync links: interface index,
//! scoped addresses, `SO_BINDTODEVICE`, and IPv4-mapped address folding.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use socket2::Socket;

/// The index of interface `name`, read from sysfs.
pub(super) fn ifindex(name: &str) -> io::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("interface {name}: {e}")))?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("interface {name}: bad ifindex"),
        )
    })
}

/// `ip:port`, with `scope` as the scope of an IPv6 link-local address.
pub(super) fn sockaddr(ip: IpAddr, port: u16, scope: u32) -> SocketAddr {
    match ip {
        IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), port),
        IpAddr::V6(a) => {
            // Link-local addresses need the interface as their scope.
            let scope = if a.segments()[0] & 0xffc0 == 0xfe80 {
                scope
            } else {
                0
            };
            SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope))
        }
    }
}

pub(super) fn bind_device(s: &Socket, interface: Option<&str>) -> io::Result<()> {
    if let Some(i) = interface {
        s.bind_device(Some(i.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("binding to interface {i}: {e}")))?;
    }
    Ok(())
}

/// `ip` with an IPv4-mapped IPv6 address folded to IPv4.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}
