//! Helpers shared by the in-process appliance tests: an appliance on `mem`
//! ports between a virtual client and server host, frames, the console.
// Each test binary uses a different subset.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ftfw_control::appliance::Appliance;
use ftfw_control::config;
use ftfw_control::console::proto::{FlowJson, Payload, Response, TupleJson};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::packet::{FrameSpec, L4Spec, TcpOptions};
use ftfw_dataplane::port::mem::{self, FanoutHost, MemPort};
use ftfw_dataplane::port::{PacketBuf, Port};

/// An appliance whose first port (`outside`) faces a client host and whose
/// second (`inside`) faces a server host; stopped and its directory
/// removed on drop.
pub(crate) struct MemNode {
    pub(crate) app: Appliance,
    pub(crate) client: FanoutHost,
    pub(crate) server: FanoutHost,
    pub(crate) dir: PathBuf,
}

impl Drop for MemNode {
    fn drop(&mut self) {
        self.app.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts an appliance from `toml` (written to `dir/ftfwd.toml`, so
/// relative paths in it resolve there) on mem ports: one fanout host per
/// port, each worker with its own end.
pub(crate) fn start_mem(tag: &str, dir: PathBuf, toml: &str) -> MemNode {
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ftfwd.toml"), toml).unwrap();
    let cfg = config::load(&dir.join("ftfwd.toml")).unwrap();
    let mut hosts = Vec::new();
    let mut ends: Vec<Vec<MemPort>> = Vec::new();
    let app = Appliance::start(cfg, &mut |i, p, w, n| {
        if w == 0 {
            let (host, mut e) = mem::fanout(&format!("{tag}-{}", p.name), &p.name, n, 1024);
            e.reverse();
            hosts.push((i, host));
            ends.push(e);
        }
        Ok(Box::new(ends[i].pop().expect("one end per worker")))
    })
    .unwrap();
    hosts.sort_by_key(|(i, _)| *i);
    let mut it = hosts.into_iter().map(|(_, h)| h);
    let client = it.next().unwrap();
    let server = it.next().unwrap();
    MemNode {
        app,
        client,
        server,
        dir,
    }
}

/// A UDP port free on both 127.0.0.1 and 127.0.0.2 (probed, released).
pub(crate) fn free_port() -> u16 {
    loop {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.2", port)).is_ok() {
            return port;
        }
    }
}

/// The payload of a successful console answer.
pub(crate) fn ok(r: Response) -> Payload {
    match r {
        Response::Ok(p) => p,
        Response::Error(e) => panic!("console error: {e}"),
    }
}

/// An Ethernet/IPv4 TCP segment without payload.
pub(crate) fn tcp(
    src: &str,
    dst: &str,
    sp: u16,
    dp: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    FrameSpec {
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        l4: L4Spec::Tcp {
            src_port: sp,
            dst_port: dp,
            seq,
            ack,
            flags,
            window: 65535,
            options: TcpOptions::default(),
        },
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

/// Sends one frame from a host.
pub(crate) fn send(port: &mut FanoutHost, frame: &[u8]) {
    let mut b = [PacketBuf::new()];
    b[0].set(frame);
    assert_eq!(port.tx_burst(&mut b), 1);
}

/// The next frame a host receives within `wait`.
pub(crate) fn recv(port: &mut FanoutHost, wait: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut b = [PacketBuf::new()];
    loop {
        if port.rx_burst(&mut b) == 1 {
            return Some(b[0].data.clone());
        }
        if Instant::now() >= deadline {
            return None;
        }
        port.wait_rx(Duration::from_millis(2));
    }
}

/// A total worker counter from `stats`.
pub(crate) fn stat(app: &mut Appliance, name: &str) -> u64 {
    let Payload::Stats(s) = ok(app.handle(ftfw_control::console::proto::Request::Stats)) else {
        panic!("not stats")
    };
    s.total
        .fields()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// Waits until `f` returns true, or panics with `what` after `within`.
pub(crate) fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A console tuple.
pub(crate) fn tuple(src: &str, dst: &str, sport: Option<u16>, dport: Option<u16>) -> TupleJson {
    TupleJson {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        sport,
        dport,
        icmp_type: None,
        code: None,
        id: None,
    }
}

/// A console flow of protocol `p`, seen both ways and assured.
pub(crate) fn flow(p: &str, orig: TupleJson, state: Option<&str>) -> FlowJson {
    FlowJson {
        proto: p.into(),
        proto_num: None,
        family: None,
        original: orig,
        reply: None,
        zone: 0,
        state: state.map(str::to_string),
        status: 0,
        status_names: vec!["SEEN_REPLY".into(), "ASSURED".into()],
        timeout: 300,
        mark: 0,
        counters: Default::default(),
        active_secs: None,
    }
}
