//! Coordinator unit tests: bad input is counted and ignored; a pair forms
//! a map and a drained node hands its buckets over in order.

use std::time::{Duration, Instant};

use super::coordinator::{Action, Coordinator, CoordinatorConfig};
use super::map::{plan, Balance};
use super::msg::Body;
use super::wire::Codec;

const KEY: &[u8] = b"0123456789abcdef-cluster-key";

fn cfg(node: u32) -> CoordinatorConfig {
    CoordinatorConfig {
        node,
        nodes: vec![1, 2, 3],
        buckets: 16,
        backups: 1,
        heartbeat: Duration::from_millis(100),
        dead_after: Duration::from_millis(350),
        auto_rebalance_on_join: true,
        key: KEY.to_vec(),
        primary_backup: false,
        incarnation: 1000 + u64::from(node),
    }
}

fn map_from(master: u32, version: u64) -> Body {
    let m = plan(None, &[1, 2, 3], 1, Balance::Full, 16).unwrap();
    let nodes = m.nodes().to_vec();
    Body::Map(m.stamped(version, master, nodes).unwrap())
}

#[test]
fn bad_bucket_maps_are_counted_and_ignored() {
    let now = Instant::now();
    let mut c = Coordinator::new(cfg(2), now).unwrap();
    let mut out = Vec::new();
    // Unauthenticated: another key.
    let mut forger = Codec::new(1, &[1, 2, 3], b"not-the-cluster-key!", 0).unwrap();
    forger.encode(&map_from(1, 5), &mut out);
    c.handle_datagram(now, &out);
    // From a node outside the configuration (right key).
    let mut stranger = Codec::new(7, &[7], KEY, 0).unwrap();
    stranger.encode(&map_from(7, 5), &mut out);
    c.handle_datagram(now, &out);
    // Garbage.
    c.handle_datagram(now, b"FC\x01\x02garbage-garbage-garbage-garbage");
    assert!(c.map().is_none());
    // A good map, then a stale one and a replay of the good one.
    let mut master = Codec::new(1, &[1, 2, 3], KEY, 0).unwrap();
    master.encode(&map_from(1, 5), &mut out);
    let good = out.clone();
    c.handle_datagram(now, &good);
    assert_eq!(c.map().map(|m| m.version()), Some(5));
    master.encode(&map_from(1, 4), &mut out);
    c.handle_datagram(now, &out);
    c.handle_datagram(now, &good);
    // A map whose node table names a stranger.
    let m = plan(None, &[1, 2, 7], 1, Balance::Full, 16).unwrap();
    let nodes = m.nodes().to_vec();
    master.encode(&Body::Map(m.stamped(9, 1, nodes).unwrap()), &mut out);
    c.handle_datagram(now, &out);
    assert_eq!(c.map().map(|m| m.version()), Some(5));
    let k = c.counters();
    // The forged map and the garbage (long enough to carry a tag).
    assert_eq!(k.codec.unauthenticated, 2);
    assert_eq!(k.codec.unknown_node, 1);
    assert_eq!(k.codec.replayed, 1);
    assert_eq!((k.stale_maps, k.foreign_maps, k.maps_applied), (1, 1, 1));
    // Joining: it holds the map but forwards nothing.
    assert!(c.forwarding().is_empty());
}

/// Runs two coordinators over a perfect network, the test acting as the
/// driver (actions done at once), until `until` or `steps` run out.
fn run(cs: &mut [Coordinator], t: &mut Instant, steps: usize) {
    let mut buf = Vec::new();
    for _ in 0..steps {
        *t += Duration::from_millis(10);
        let mut wire = Vec::new();
        for c in cs.iter_mut() {
            c.handle_timeout(*t);
            while let Some(tx) = c.poll_transmit(*t, &mut buf) {
                wire.push((tx.to, buf.clone()));
            }
            while let Some(a) = c.poll_action() {
                match a {
                    Action::Flush { token, .. } => c.handle_flushed(*t, token),
                    Action::Commit { token, .. } => c.handle_committed(*t, token),
                    _ => {}
                }
            }
        }
        for (to, bytes) in wire {
            if let Some(c) = cs.iter_mut().find(|c| c.node() == to) {
                c.handle_datagram(*t, &bytes);
            }
        }
    }
}

#[test]
fn three_nodes_share_buckets_and_a_drain_moves_them() {
    let mut t = Instant::now();
    let mut cs: Vec<Coordinator> = (1..=3)
        .map(|n| Coordinator::new(cfg(n), t).unwrap())
        .collect();
    for c in &mut cs {
        c.handle_ready(t);
    }
    run(&mut cs, &mut t, 100);
    let counts: Vec<u32> = cs.iter().map(|c| c.forwarding().count()).collect();
    assert_eq!(counts.iter().sum::<u32>(), 16);
    assert!(counts.iter().all(|&n| n == 5 || n == 6), "{counts:?}");
    cs[1].drain(t, 3).unwrap();
    run(&mut cs, &mut t, 100);
    let counts: Vec<u32> = cs.iter().map(|c| c.forwarding().count()).collect();
    // A drain moves only the drained node's buckets, to their backups.
    assert_eq!(counts[2], 0);
    assert_eq!(counts[0] + counts[1], 16);
    let st = cs[0].status(t);
    assert!(st.nodes[2].drained && st.pending.is_empty());
    assert_eq!(st.master, 1);
    assert!(cs[0].counters().planned_moves + cs[1].counters().planned_moves >= 5);
    assert!(serde_json::to_string(&st)
        .unwrap()
        .contains("\"drained\":true"));
    cs[2].undrain(t, 3).unwrap();
    run(&mut cs, &mut t, 100);
    assert!(cs[2].forwarding().count() >= 5);
    assert_eq!(cs[0].drain(t, 9), Err(super::RequestError::UnknownNode(9)));
}
