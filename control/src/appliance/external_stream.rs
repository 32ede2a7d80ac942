//! `external list` written as the client reads it (see
//! `crate::console::stream`), as `flows list` is (`flows_stream.rs`): the
//! sync thread's external caches are walked a range of slots at a time
//! (`SyncRequest::ExternalPage`), each piece becoming JSON only when the
//! client has read the previous one. The line is byte for byte the one
//! [`Response::Ok`](crate::console::proto::Response::Ok) of the whole
//! listing would be (a test compares them); `total` comes last, so it can
//! count every match. Unlike the whole answer, the listing is not one
//! snapshot: a flow that arrives or leaves during the walk may or may not
//! be in it (a flow held throughout is in it once: cache slots do not
//! move).

use crate::console::proto::FlowFilter;
use crate::console::stream::ResponseStream;
use crate::replication::ExternalPager;

/// Cache slots asked of the sync thread per piece.
const SLOTS_PER_PIECE: usize = 512;

/// A streamed `external list` answer.
pub(super) struct ExternalStream {
    pager: ExternalPager,
    filter: FlowFilter,
    limit: usize,
    /// Where the next piece starts; `None` once the walk is done.
    at: Option<(usize, usize)>,
    written: usize,
    total: u64,
    started: bool,
}

impl std::fmt::Debug for ExternalStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalStream")
            .field("at", &self.at)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl ExternalStream {
    pub(super) fn new(pager: ExternalPager, filter: FlowFilter, limit: usize) -> Self {
        ExternalStream {
            pager,
            filter,
            limit,
            at: Some((0, 0)),
            written: 0,
            total: 0,
            started: false,
        }
    }
}

impl ResponseStream for ExternalStream {
    fn fill(&mut self, out: &mut Vec<u8>) -> Result<bool, String> {
        if !self.started {
            self.started = true;
            out.extend_from_slice(br#"{"ok":true,"kind":"external_flows","flows":["#);
            return Ok(true);
        }
        let Some(at) = self.at else {
            out.extend_from_slice(format!(r#"],"total":{}}}"#, self.total).as_bytes());
            return Ok(false);
        };
        let want = self.limit.saturating_sub(self.written);
        let page = self
            .pager
            .page(at, SLOTS_PER_PIECE, want, &self.filter)
            .map_err(|e| format!("external list: {e}"))?;
        self.total += page.matched;
        for j in &page.flows {
            if self.written > 0 {
                out.push(b',');
            }
            // Through a JSON value, as the whole answer is (its keys
            // sorted the same way).
            let v = serde_json::to_value(j).map_err(|e| e.to_string())?;
            serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
            self.written += 1;
        }
        self.at = page.next;
        Ok(true)
    }

    fn buffered(&self) -> usize {
        0
    }
}
