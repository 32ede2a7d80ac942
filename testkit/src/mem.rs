//! An appliance on `mem` ports: `Appliance::start` (the code ftfwd runs)
//! with every port opened as an in-process fanout whose host end the test
//! drives, frames to send through it and the console to ask it.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ftfw_control::appliance::Appliance;
use ftfw_control::config::{self, Config, PortConfig};
use ftfw_control::console::proto::{FlowFilter, FlowsListing, Payload, Request, Response};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::packet::{FrameSpec, L4Spec};
use ftfw_dataplane::port::mem::{self, FanoutHost, MemPort};
use ftfw_dataplane::port::{PacketBuf, Port};

use crate::flows::{flow, tuple};
use crate::wait::wait_until;

/// The port opener for `Appliance::start` that opens every configured
/// port as a `mem` fanout: one host end per port (for the test), one
/// appliance end per worker.
#[derive(Debug)]
pub struct MemPorts {
    tag: String,
    ring: usize,
    hosts: Vec<(usize, FanoutHost)>,
    ends: Vec<(usize, Vec<MemPort>)>,
}

impl MemPorts {
    /// Host ends named `{tag}-{port name}`, rings of `ring` slots.
    pub fn new(tag: &str, ring: usize) -> MemPorts {
        MemPorts {
            tag: tag.to_string(),
            ring,
            hosts: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Opens port `index` for worker `worker` of `workers` (the signature
    /// of `Appliance::start`'s opener).
    pub fn open(
        &mut self,
        index: usize,
        port: &PortConfig,
        worker: usize,
        workers: usize,
    ) -> Result<Box<dyn Port>, ftfw_control::appliance::PortError> {
        if worker == 0 {
            let (host, mut e) = mem::fanout(
                &format!("{}-{}", self.tag, port.name),
                &port.name,
                workers,
                self.ring,
            );
            e.reverse();
            self.hosts.push((index, host));
            self.ends.push((index, e));
        }
        let end = self
            .ends
            .iter_mut()
            .find(|(i, _)| *i == index)
            .and_then(|(_, e)| e.pop())
            .ok_or_else(|| ftfw_control::appliance::PortError::Opener {
                port: port.name.clone(),
                reason: format!("port {index} opened for more workers than it has"),
            })?;
        Ok(Box::new(end))
    }

    /// The host ends, in port order.
    pub fn into_hosts(mut self) -> Vec<FanoutHost> {
        self.hosts.sort_by_key(|(i, _)| *i);
        self.hosts.into_iter().map(|(_, h)| h).collect()
    }
}

/// Starts `cfg` on mem ports (see [`MemPorts`]); the host ends in port
/// order.
pub fn start_on_mem(
    cfg: Config,
    tag: &str,
    ring: usize,
) -> anyhow::Result<(Appliance, Vec<FanoutHost>)> {
    let mut ports = MemPorts::new(tag, ring);
    let app = Appliance::start(cfg, &mut |i, p, w, n| ports.open(i, p, w, n))?;
    Ok((app, ports.into_hosts()))
}

/// An appliance whose first port (`outside`) faces a client host and whose
/// second (`inside`) faces a server host; stopped and its directory
/// removed on drop.
pub struct MemNode {
    /// The appliance.
    pub app: Appliance,
    /// The host on the first port.
    pub client: FanoutHost,
    /// The host on the second port.
    pub server: FanoutHost,
    /// Its directory (configuration, rules).
    pub dir: PathBuf,
}

impl std::fmt::Debug for MemNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemNode")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for MemNode {
    fn drop(&mut self) {
        self.app.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The configuration lines of the two-port appliance the tests run: mem
/// ports `outside` (the client's) and `inside` (the server's) bridged,
/// each line ending in a blank line; the sections that follow are the
/// test's.
pub const MEM_BRIDGE: &str = "[[port]]\nname = \"outside\"\nbackend = \"mem\"\n\n\
     [[port]]\nname = \"inside\"\nbackend = \"mem\"\n\n\
     [[bridge]]\nports = [\"outside\", \"inside\"]\n\n";

/// Starts an appliance from `toml` (written to `dir/ftfwd.toml`, so
/// relative paths in it resolve there) on mem ports: one fanout host per
/// port, each worker with its own end.
pub fn start_mem(tag: &str, dir: PathBuf, toml: &str) -> MemNode {
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ftfwd.toml"), toml).unwrap();
    let cfg = config::load(&dir.join("ftfwd.toml")).unwrap();
    let (app, hosts) = start_on_mem(cfg, tag, 1024).unwrap();
    let mut it = hosts.into_iter();
    let client = it.next().expect("a first port");
    let server = it.next().expect("a second port");
    MemNode {
        app,
        client,
        server,
        dir,
    }
}

/// A UDP port free on both 127.0.0.1 and 127.0.0.2 (probed, released).
pub fn free_port() -> u16 {
    loop {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.2", port)).is_ok() {
            return port;
        }
    }
}

/// The payload of a successful console answer.
pub fn ok(r: Response) -> Payload {
    match r {
        Response::Ok(p) => p,
        Response::Error(e) => panic!("console error: {e}"),
    }
}

/// An Ethernet/IPv4 TCP segment without payload.
pub fn tcp(src: &str, dst: &str, sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    FrameSpec {
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        l4: L4Spec::tcp(sp, dp, flags, seq, ack),
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

/// An Ethernet ARP frame (padded to 60 bytes) from `sha` to `dst`.
pub fn arp_frame(
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    dst: [u8; 6],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    use ftfw_dataplane::l3::arp::{write_arp, ArpRepr};
    let mut out = vec![0u8; 60];
    let repr = ArpRepr {
        op,
        sha,
        spa,
        tha,
        tpa,
    };
    write_arp(&mut out, dst, sha, &repr).unwrap();
    out
}

/// Sends one frame from a host.
pub fn send(port: &mut FanoutHost, frame: &[u8]) {
    let mut b = [PacketBuf::new()];
    b[0].set(frame);
    assert_eq!(port.tx_burst(&mut b), 1);
}

/// The next frame a host receives within `wait`.
pub fn recv(port: &mut FanoutHost, wait: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut b = [PacketBuf::new()];
    loop {
        if port.rx_burst(&mut b) == 1 {
            return Some(b[0].data.to_vec());
        }
        if Instant::now() >= deadline {
            return None;
        }
        port.wait_rx(Duration::from_millis(2));
    }
}

/// Sends `frame` from the client (`from_client`) or the server through
/// the node and checks that it comes out at the other host.
pub fn through(n: &mut MemNode, from_client: bool, frame: &[u8]) {
    let (tx, rx) = if from_client {
        (&mut n.client, &mut n.server)
    } else {
        (&mut n.server, &mut n.client)
    };
    send(tx, frame);
    if recv(rx, Duration::from_secs(10)).is_none() {
        // What the workers did with it (and everything else so far).
        let counters = match n.app.handle(Request::Stats) {
            Response::Ok(Payload::Stats(s)) => s
                .total
                .fields()
                .into_iter()
                .filter(|(_, v)| *v != 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            r => format!("{r:?}"),
        };
        panic!(
            "frame from the {} not forwarded; worker counters: {counters}",
            if from_client { "client" } else { "server" }
        );
    }
}

/// A TCP handshake from `c`:`sport` to `s`:`dport` through the node (the
/// client's ISN 100, the server's 500), each segment checked.
pub fn handshake(n: &mut MemNode, c: &str, s: &str, sport: u16, dport: u16) {
    through(n, true, &tcp(c, s, sport, dport, TCP_SYN, 100, 0));
    through(
        n,
        false,
        &tcp(s, c, dport, sport, TCP_SYN | TCP_ACK, 500, 101),
    );
    through(n, true, &tcp(c, s, sport, dport, TCP_ACK, 101, 501));
}

const TCP_SYN: u8 = ftfw_dataplane::meta::tcp_flags::SYN;
const TCP_ACK: u8 = ftfw_dataplane::meta::tcp_flags::ACK;

/// A total worker counter from `stats`.
pub fn stat(app: &mut Appliance, name: &str) -> u64 {
    let Payload::Stats(s) = ok(app.handle(Request::Stats)) else {
        panic!("not stats")
    };
    s.total
        .fields()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// The node's external cache (what its peer replicated to it).
pub fn external(n: &mut MemNode) -> FlowsListing {
    let Payload::ExternalFlows(l) = ok(n.app.handle(Request::ExternalList {
        filter: FlowFilter::default(),
        limit: None,
    })) else {
        panic!("not an external listing")
    };
    l
}

/// The TCP state name of the peer's flow with source port `sport` in the
/// node's external cache (`None`: no such flow, or not TCP).
pub fn external_state(n: &mut MemNode, sport: u16) -> Option<String> {
    external(n)
        .flows
        .into_iter()
        .find(|fl| fl.original.sport == Some(sport))
        .and_then(|fl| fl.state)
}

/// The node's own flows (its conntrack shards).
pub fn internal(n: &mut MemNode) -> FlowsListing {
    let Payload::Flows(l) = ok(n.app.handle(Request::FlowsList {
        filter: FlowFilter::default(),
        limit: None,
    })) else {
        panic!("not a listing")
    };
    l
}

/// Asserts that `b` sent nothing into `a`'s external cache (`what` says
/// why it should not have), without trusting a fixed sleep: `b` adds a
/// marker flow, and once the marker has reached `a` (a peer's messages
/// arrive in order) everything `b` sent before it has had its chance, so
/// the marker must be alone there. The marker is deleted again and awaited
/// gone from `a`, leaving both nodes as they were.
pub fn assert_no_echo(a: &mut MemNode, b: &mut MemNode, within: Duration, what: &str) {
    let src: std::net::IpAddr = "192.0.2.254".parse().expect("an address");
    let marker = flow(
        "udp",
        tuple("192.0.2.254", "198.51.100.254", Some(9), Some(9)),
        None,
    );
    let is_marker = |l: &FlowsListing| l.flows.iter().any(|f| f.original.src == src);
    ok(b.app.handle(Request::FlowsAdd { flow: marker }));
    wait_until("the marker flow at the peer", within, || {
        is_marker(&external(a))
    });
    let l = external(a);
    assert_eq!(l.total, 1, "{what}: {l:?}");
    ok(b.app.handle(Request::FlowsDelete {
        filter: FlowFilter {
            src: Some(src),
            ..FlowFilter::default()
        },
    }));
    wait_until("the marker flow gone from the peer", within, || {
        !is_marker(&external(a))
    });
}

/// Polls counter `name` until it reaches `at_least` or 5 s pass; returns
/// its last value (the caller asserts on it, and its message says what was
/// expected).
pub fn wait_stat(app: &mut Appliance, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = stat(app, name);
        if v >= at_least || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
