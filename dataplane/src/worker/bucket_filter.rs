//! Cluster: the kernel drops other members' frames before they reach the
//! worker.
//!
//! In a multi-primary cluster behind a hub every member receives every
//! frame and forwards only those of the buckets it owns. Receiving and
//! parsing the others costs a worker a third to a half of forwarding one
//! (`ftfw-lab bench pipeline --multi-primary`), which is what kept two
//! members below twice one's capacity. Where a port can filter in the
//! kernel (AF_PACKET sockets), the worker gives it a [`BucketFilter`] for
//! the buckets its node owns whenever they change, so the kernel drops
//! most of another member's frames before copying them to the ring
//! (`mem` ports apply the same filter on receive, as a model). The filter passes a superset of what the
//! worker forwards (fragments, ICMP errors, extension headers, frames that
//! are not IP all pass), and the worker still checks every frame, so a
//! filter a step behind the ownership never forwards a frame twice; a
//! bucket this node just gained may lose the few frames the old filter
//! already dropped, as a move's hand-over loses frames in flight anyway.

use std::sync::atomic::Ordering;

use super::routed::Routed;
use super::Worker;
use crate::packet::ethernet::MacAddr;
use crate::port::bucket_filter::BucketFilter;

/// What the worker's ports were last given.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// The ownership's generation, the setting's and the routed mode's
    /// shared MAC when the ports were last set; `None`: never.
    key: Option<(u64, u64, Option<MacAddr>)>,
    /// Whether a port may have a filter now.
    installed: bool,
}

impl Worker {
    /// Gives the ports the bucket filter for the buckets this node owns
    /// now, if that changed since the last time (one load of two counters
    /// per iteration otherwise).
    pub(super) fn refresh_bucket_filter(&mut self, routed: Option<&Routed>) {
        let generation = self.shared.buckets.generation();
        let setting = self.shared.filter_setting.load(Ordering::Acquire);
        if generation == 0 && setting == 0 {
            // Never in a cluster, never asked for a filter.
            return;
        }
        let mac = routed.and_then(Routed::shared_mac);
        let key = Some((generation, setting, mac));
        if self.kernel_filter.key == key {
            return;
        }
        self.kernel_filter.key = key;
        let wanted = self.shared.kernel_bucket_filter.load(Ordering::Relaxed)
            // Routed mode judges by bucket only frames to the shared MAC.
            && (routed.is_none() || mac.is_some());
        let filter = self
            .shared
            .buckets
            .snapshot()
            .filter(|_| wanted)
            .map(|s| BucketFilter::new(s, mac));
        if filter.is_none() && !self.kernel_filter.installed {
            return;
        }
        let c = &mut self.pipeline.counters;
        let mut installed = false;
        for p in &mut self.ports {
            match p.port.set_bucket_filter(filter.as_ref()) {
                Ok(filters) => {
                    installed |= filters && filter.is_some();
                    c.bucket_filter_loads += u64::from(filters && filter.is_some());
                }
                Err(_) => {
                    c.bucket_filter_failures += 1;
                    // An old, narrower filter must not stay behind.
                    installed |= p.port.set_bucket_filter(None).is_err();
                }
            }
        }
        self.kernel_filter.installed = installed;
    }
}
