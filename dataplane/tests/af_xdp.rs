//! AF_XDP port on veth pairs inside a private network namespace.
//!
//! Needs root (network namespaces, BPF, AF_XDP) and iproute2; run with
//! `cargo test -p ftfw-dataplane --test af_xdp -- --include-ignored`.
//! Every test creates its own namespace `ftfwt-<pid>-<tag>` and deletes it
//! when done, also on failure. Nothing is routed out of the namespace.

use std::time::{Duration, Instant};

use ftfw_dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
use ftfw_dataplane::port::af_xdp::{AfXdpConfig, AfXdpError, AfXdpPort, XdpMode};
use ftfw_dataplane::port::{PacketBuf, Port, BURST};

#[path = "common/netns.rs"]
mod netns;
use netns::*;

/// The sequence number of one of [`numbered`]'s frames.
fn number_of(frame: &[u8]) -> Option<u32> {
    let at = frame.windows(MAGIC.len()).position(|w| w == MAGIC)? + MAGIC.len();
    Some(u32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?))
}

/// Sends `frames` on `from` a burst at a time, receiving on `to` between
/// bursts; returns the frames `to` received that carry a number, in
/// order. Bounded: gives up after 5 s.
fn pass(from: &mut dyn Port, to: &mut dyn Port, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    let mut inb: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    let (mut sent, mut got) = (0, Vec::new());
    while (sent < frames.len() || got.len() < frames.len()) && Instant::now() < deadline {
        if sent < frames.len() {
            let chunk = &frames[sent..frames.len().min(sent + BURST)];
            for (b, f) in out.iter_mut().zip(chunk) {
                assert!(b.set(f));
            }
            sent += from.tx_burst(&mut out[..chunk.len()]);
        }
        let n = to.rx_burst(&mut inb);
        got.extend(
            inb[..n]
                .iter()
                .filter(|b| number_of(&b.data).is_some())
                .map(|b| b.data.to_vec()),
        );
        if n == 0 {
            from.wait_rx(Duration::ZERO);
            to.wait_rx(Duration::from_millis(1));
        }
    }
    got
}

#[test]
#[ignore = "needs root: network namespaces, BPF and AF_XDP"]
fn frames_cross_an_af_xdp_port_both_ways_in_order_and_intact() {
    // veth runs XDP in its driver.
    crossing(XdpMode::Auto, XdpMode::Native);
}

#[test]
#[ignore = "needs root: network namespaces, BPF and AF_XDP"]
fn generic_xdp_carries_the_same_frames() {
    crossing(XdpMode::Generic, XdpMode::Generic);
}

/// 5000 frames each way through a port opened in `asked` mode, which
/// must run in `runs`.
fn crossing(asked: XdpMode, runs: XdpMode) {
    let ns = Netns::new(if asked == XdpMode::Generic {
        "xdpg"
    } else {
        "xdp"
    });
    ns.veth_queues("x0", "x1", Some("1"));
    ns.enter(|| {
        let mut xdp = AfXdpPort::open(&AfXdpConfig {
            mode: asked,
            ..AfXdpConfig::new("x1")
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(xdp.mode(), runs);
        let mut pkt =
            AfPacketPort::open(&AfPacketConfig::new("x0")).unwrap_or_else(|e| panic!("{e}"));
        // More frames than the UMEM has: frames are recycled on both sides.
        let frames = numbered(5000);

        let got = pass(&mut pkt, &mut xdp, &frames);
        assert_eq!(
            got.len(),
            frames.len(),
            "received over XDP: {:?} {:?}",
            xdp.stats(),
            pkt.stats()
        );
        assert!(
            got.iter().zip(&frames).all(|(g, f)| g == f),
            "in order, intact"
        );
        let st = xdp.stats();
        assert!(st.rx_packets >= 5000 && st.rx_dropped == 0, "{st:?}");

        let got = pass(&mut xdp, &mut pkt, &frames);
        assert_eq!(got.len(), frames.len(), "sent over XDP");
        assert!(
            got.iter().zip(&frames).all(|(g, f)| g == f),
            "in order, intact"
        );
        let st = xdp.stats();
        assert_eq!((st.tx_packets, st.tx_dropped), (5000, 0), "{st:?}");
    });
}

#[test]
#[ignore = "needs root: network namespaces, BPF and AF_XDP"]
fn queues_share_the_interface_program_which_goes_with_the_last_port() {
    let ns = Netns::new("xdpq");
    ns.veth_queues("q0", "q1", Some("2"));
    let has_xdp = || {
        let out = std::process::Command::new("ip")
            .args(["-n", &ns.name, "-d", "link", "show", "q1"])
            .output()
            .expect("ip link show");
        String::from_utf8_lossy(&out.stdout).contains(" xdp ")
    };
    ns.enter(|| {
        // One worker cannot serve two queues: frames of the second would
        // skip the firewall.
        let e = AfXdpPort::open(&AfXdpConfig::new("q1")).unwrap_err();
        assert!(
            matches!(
                e,
                AfXdpError::QueuesUnserved {
                    queues: 2,
                    served: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!has_xdp(), "nothing attached by a refused open");
        let two = |queue| AfXdpConfig {
            queue,
            served: 2,
            ..AfXdpConfig::new("q1")
        };
        let a = AfXdpPort::open(&two(0)).unwrap_or_else(|e| panic!("{e}"));
        let b = AfXdpPort::open(&two(1)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.queue(), b.queue()), (0, 1));
        assert_eq!(a.ifindex(), b.ifindex());
        // A queue the interface does not have is refused, naming it.
        let e = AfXdpPort::open(&two(2)).unwrap_err();
        assert!(
            matches!(&e, AfXdpError::Os { step, .. } if step == "bind (queue 2)"),
            "{e}"
        );
        assert!(has_xdp(), "the program is attached");
        drop(a);
        assert!(has_xdp(), "still attached for queue 1");
        drop(b);
        assert!(!has_xdp(), "detached with the last port");
        // And attached again by the next one.
        let _c = AfXdpPort::open(&two(0)).unwrap_or_else(|e| panic!("{e}"));
        assert!(has_xdp());
    });
}
