//! `CLUSTER_TRACE=B`: what happens to bucket B, printed as it happens.

use ftfw_control::cluster::Action;
use ftfw_dataplane::buckets::BucketSet;

use super::Sim;

impl Sim {
    /// Prints `what` when tracing a bucket in `set`.
    pub(super) fn tr(&self, set: Option<&BucketSet>, what: impl FnOnce() -> String) {
        if let Some(b) = self.trace {
            if set.is_none_or(|s| s.contains(b)) {
                println!("t={} {}", self.t, what());
            }
        }
    }

    /// The traced bucket's flows in `set`.
    pub(super) fn traced_flows<'a>(&self, set: impl IntoIterator<Item = &'a u64>) -> Vec<u64> {
        set.into_iter()
            .copied()
            .filter(|f| Some(self.flow_bucket[f]) == self.trace)
            .collect()
    }

    /// When tracing: a map newly held by `id` (version, master, the traced
    /// bucket's owner and backups, members listed dead).
    pub(super) fn trace_map(&mut self, id: u32) {
        let Some(b) = self.trace else { return };
        let n = self.nodes.get_mut(&id).unwrap();
        let Some(m) = n.coord.map() else { return };
        if m.version() == n.traced_version {
            return;
        }
        n.traced_version = m.version();
        let dead: Vec<u32> = m
            .nodes()
            .iter()
            .filter(|e| e.dead)
            .map(|e| e.node)
            .collect();
        let line = format!(
            "{id} holds map v{} of {}: owner {:?} backups {:?}, dead {dead:?}",
            m.version(),
            m.master(),
            m.owner_of(b),
            m.backups_of(b)
        );
        self.tr(None, || line);
    }
}

/// An action, as the trace shows it (whether it has `bucket`).
pub(super) fn describe(a: &Action, bucket: Option<u32>) -> String {
    let has = |s: &BucketSet| bucket.is_some_and(|b| s.contains(b));
    match a {
        Action::Forward(s) => format!("forward (traced bucket: {})", has(s)),
        Action::Flush { token, to, buckets } => {
            format!("flush #{token} to {to} ({})", has(buckets))
        }
        Action::Commit {
            token,
            from,
            buckets,
        } => format!("commit #{token} from {from:?} ({})", has(buckets)),
        Action::Evict { buckets } => format!("evict ({})", has(buckets)),
        Action::Settled { version } => format!("settled v{version}"),
    }
}
