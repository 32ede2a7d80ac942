//! The sync thread's side of [`SyncHandle`](super::SyncHandle): serving
//! the control thread's requests between iterations.

use std::sync::mpsc::TryRecvError;
use std::time::Instant;

use super::handle::{ExternalPage, SyncError, SyncRequest};
use super::{SyncCore, REQUESTS_PER_ITERATION};
use crate::console::proto::{FlowFilter, FlowJson, FlowsListing};
use crate::import::Importer;

impl SyncCore {
    pub(super) fn serve_requests(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while n < REQUESTS_PER_ITERATION {
            let req = match self.requests.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            };
            n += 1;
            self.serve(now, req);
        }
        n
    }

    fn serve(&mut self, now: Instant, req: SyncRequest) {
        match req {
            SyncRequest::Status(reply) => {
                let _ = reply.send(self.status(now));
            }
            SyncRequest::PeersStatus(reply) => {
                let _ = reply.send(self.peers_status(now));
            }
            SyncRequest::ExternalList {
                from,
                filter,
                limit,
                reply,
            } => {
                let _ = reply.send(self.external_list(now, from, &filter, limit));
            }
            SyncRequest::ExternalPage {
                at,
                slots,
                want,
                filter,
                reply,
            } => {
                let _ = reply.send(self.external_page(now, at, slots, want, &filter));
            }
            SyncRequest::Snapshot(reply) => {
                let mut all = Vec::new();
                for ch in &self.channels {
                    all.extend(ch.cache.snapshot(now));
                }
                let _ = reply.send(all);
            }
            SyncRequest::Commit { take, reply } => {
                let mut imp = Importer::new(&self.workers, false);
                let r = self
                    .channels
                    .iter_mut()
                    .try_for_each(|ch| {
                        ch.cache
                            .commit_matching(now, &mut imp, |_| true, take)
                            .map(|_| ())
                    })
                    .and_then(|()| imp.finish());
                let (exps, refused) = self.expects.commit(now, take);
                if exps + refused > 0 {
                    tracing::info!(
                        committed = exps,
                        refused,
                        "external expectations committed to the expectation table"
                    );
                }
                let _ = reply.send(r);
            }
            SyncRequest::ExpectExternal(reply) => {
                let _ = reply.send(self.expects.external_list(now));
            }
            SyncRequest::Resync(reply) => {
                for ch in &mut self.channels {
                    ch.request_resync(now);
                }
                let _ = reply.send(true);
            }
            SyncRequest::FlushExternal(reply) => {
                let n: usize = self.channels.iter_mut().map(|c| c.cache.flush()).sum();
                // Flows are counted; the peer's expectations go with them.
                self.expects.flush();
                let _ = reply.send(n as u64);
            }
            SyncRequest::ExportAll(reply) => {
                for i in 0..self.channels.len() {
                    self.export_all_to(i);
                }
                let _ = reply.send(());
            }
            SyncRequest::ExportForHandover(reply) => {
                let mut tokens = Vec::with_capacity(self.channels.len());
                for i in 0..self.channels.len() {
                    self.export_all_to(i);
                    tokens.push(self.flushes.start(i));
                }
                self.handover = Some(tokens);
                let _ = reply.send(());
            }
            SyncRequest::HandoverAcked(reply) => {
                let r = self.handover.as_ref().map(|tokens| {
                    tokens
                        .iter()
                        .all(|&t| self.flushes.acked(t, &self.channels) == Some(true))
                });
                let _ = reply.send(r);
            }
            SyncRequest::SetReplicaMap { map, reply } => {
                let _ = reply.send(self.set_replica_map(map));
            }
            SyncRequest::CommitBuckets {
                from,
                buckets,
                take,
                reply,
            } => {
                let _ = reply.send(self.commit_buckets(now, from, buckets, take));
            }
            SyncRequest::FlushBuckets { to, buckets, reply } => {
                let _ = reply.send(self.flush_buckets(to, buckets));
            }
            SyncRequest::FlushAcked { token, reply } => {
                let _ = reply.send(self.flushes.acked(token, &self.channels));
            }
            SyncRequest::PruneExternal { owned, reply } => {
                let _ = reply.send(self.prune_external(&owned));
            }
        }
    }

    /// A piece of the external listing (every peer's cache in turn): the
    /// flows in `slots` slots of channel `at.0` from slot `at.1`, as
    /// [`SyncCore::external_list`] lists them.
    fn external_page(
        &self,
        now: Instant,
        (chan, slot): (usize, usize),
        slots: usize,
        want: usize,
        filter: &FlowFilter,
    ) -> ExternalPage {
        let mut page = ExternalPage::default();
        let Some(c) = self.channels.get(chan) else {
            return page;
        };
        let (entries, next) = c.cache.page(slot, slots);
        for e in entries.filter(|e| filter.matches(&e.state)) {
            page.matched += 1;
            if page.flows.len() < want {
                let mut j = FlowJson::from(&e.state);
                j.active_secs = Some(now.saturating_duration_since(e.since).as_secs());
                page.flows.push(j);
            }
        }
        page.next = match next {
            Some(s) => Some((chan, s)),
            None => (chan + 1 < self.channels.len()).then_some((chan + 1, 0)),
        };
        page
    }

    /// The external flows of peer `from` (all peers when `None`) matching
    /// `filter`, at most `limit`.
    fn external_list(
        &self,
        now: Instant,
        from: Option<u32>,
        filter: &FlowFilter,
        limit: usize,
    ) -> Result<FlowsListing, SyncError> {
        let chans: Vec<usize> = match from {
            Some(node) => vec![self.channel_of_node(node)?],
            None => (0..self.channels.len()).collect(),
        };
        let mut flows = Vec::new();
        let mut total = 0u64;
        for e in chans
            .iter()
            .filter_map(|&i| self.channels.get(i))
            .flat_map(|c| c.cache.iter())
        {
            if filter.matches(&e.state) {
                total += 1;
                if flows.len() < limit {
                    let mut j = FlowJson::from(&e.state);
                    j.active_secs = Some(now.saturating_duration_since(e.since).as_secs());
                    flows.push(j);
                }
            }
        }
        Ok(FlowsListing { flows, total })
    }
}
