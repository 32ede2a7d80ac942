//! The checks at the end of a run: one map, every bucket forwarded once,
//! nothing pending, no flow lost.

use std::collections::BTreeSet;

use super::{Kind, Sim, BUCKETS};

impl Sim {
    pub(super) fn check_end(&self) {
        let c: Vec<String> = self
            .nodes
            .values()
            .map(|n| {
                let c = n.coord.counters();
                format!(
                    "{}:v{} maps {} made {} takeovers {} planned {} fwd {} flows {}",
                    n.coord.node(),
                    n.coord.map().map_or(0, |m| m.version()),
                    c.maps_applied,
                    c.maps_made,
                    c.takeovers,
                    c.planned_moves,
                    n.forwarding.count(),
                    n.table.len()
                )
            })
            .collect();
        println!(
            "seed {} {:?}{} loss {}‰: {}; flows {} lost_ok {}; false deaths {}, dual check {} ticks",
            self.seed,
            self.kind,
            if self.pb { " primary-backup" } else { "" },
            self.loss_permille,
            c.join(" | "),
            self.flow_origin.len(),
            self.lost_ok.len(),
            self.false_deaths,
            self.dual_checked
        );
        let versions: BTreeSet<u64> = self
            .nodes
            .values()
            .map(|n| n.coord.map().map_or(0, |m| m.version()))
            .collect();
        if std::env::var("CLUSTER_DEBUG").is_ok() {
            for n in self.nodes.values() {
                let st = n.coord.status(self.now());
                println!("{}", serde_json::to_string(&st).unwrap());
                println!("map {:?}", n.coord.map());
            }
        }
        assert_eq!(versions.len(), 1, "live nodes hold maps {versions:?}");
        for b in 0..BUCKETS {
            let o = self.owners_of(b);
            assert_eq!(o.len(), 1, "bucket {b} forwarded by {o:?} at the end");
        }
        if self.pb {
            let primaries: Vec<u32> = self
                .nodes
                .iter()
                .filter(|(_, n)| !n.forwarding.is_empty())
                .map(|(&id, _)| id)
                .collect();
            assert_eq!(primaries.len(), 1, "primary-backup: {primaries:?} forward");
        }
        for n in self.nodes.values() {
            let st = n.coord.status(self.now());
            assert!(
                st.pending.is_empty(),
                "node {} still pending: {:?}",
                st.node,
                st.pending
            );
        }
        if self.kind == Kind::Partitions {
            return;
        }
        let mut missing = Vec::new();
        for (&f, &(creator, inc)) in &self.flow_origin {
            if self.lost_ok.contains(&f) {
                continue;
            }
            let _ = (creator, inc);
            let b = self.flow_bucket[&f];
            let owner = self.owners_of(b)[0];
            if !self.nodes[&owner].table.contains(&f) {
                missing.push((f, b, creator, owner));
            }
        }
        assert!(
            missing.is_empty(),
            "{} flows lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
}
