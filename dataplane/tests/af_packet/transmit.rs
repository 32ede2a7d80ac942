//! The `sendmmsg` transmit path ([`Transmit::Copy`]) on veth.

use super::*;

#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn veth_transmits_by_copy_and_refused_frames_are_counted() {
    let ns = Netns::new("txcopy");
    ns.veth("c0", "c1");
    ns.enter(|| {
        // Auto picks sendmmsg on veth; an explicit ring stays a ring.
        let mut tx = open("c0", None);
        assert_eq!(tx.transmit(), Transmit::Copy);
        assert_eq!(tx.tx_slots(), 0);
        let ring = AfPacketPort::open(&AfPacketConfig {
            transmit: Transmit::Ring,
            ..AfPacketConfig::new("c0")
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ring.transmit(), Transmit::Ring);
        assert!(ring.tx_slots() > 0);
        let mut rx = open("c1", None);

        // While the link is down the kernel refuses every frame: all are
        // taken from the caller and counted dropped, none sent.
        ns.ip(&["link", "set", "c0", "down"]);
        let frames = numbered(5);
        let mut bufs = bufs_of(&frames);
        assert_eq!(tx.tx_burst(&mut bufs), 5);
        let st = tx.stats();
        assert_eq!((st.tx_packets, st.tx_dropped), (0, 5));
        // A frame shorter than an Ethernet header is refused too.
        let mut short = vec![PacketBuf::new()];
        assert!(short[0].set(&[0u8; 10]));
        ns.ip(&["link", "set", "c0", "up"]);
        assert_eq!(tx.tx_burst(&mut short), 1);
        assert_eq!(tx.stats().tx_dropped, 6);

        // Once the link is up the same frames go out, in order.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut rbufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
        let mut bufs = bufs_of(&frames);
        assert_eq!(tx.tx_burst(&mut bufs), 5);
        while got.len() < frames.len() && Instant::now() < deadline {
            rx.wait_rx(Duration::from_millis(1));
            let n = rx.rx_burst(&mut rbufs);
            got.extend(
                rbufs[..n]
                    .iter()
                    .filter(|b| tagged_payload(&b.data).is_some())
                    .map(|b| b.data.clone()),
            );
        }
        assert_eq!(got, frames);
        let st = tx.stats();
        assert_eq!((st.tx_packets, st.tx_dropped), (5, 6));
    });
}
