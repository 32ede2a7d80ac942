//! The simplest worker: two ports bridged to each other (a transparent
//! firewall between two segments), one busy-polling thread, no core pin,
//! the default non-IP policy (ARP and LLDP pass).
//! What the benchmarks, the DPDK loopback test and the worker's own tests
//! run.

use std::time::Instant;

use super::{PollMode, WorkerPort, WorkerSpec};
use crate::conntrack::ConntrackConfig;
use crate::port::Port;

impl WorkerSpec {
    /// Worker 0 bridging `outside` (port index 0) and `inside` (index 1)
    /// in zone 0, busy polling on no particular core, its shard clock
    /// starting now. Callers change the fields they need (`core`, `poll`).
    pub fn bridged_pair(
        outside: Box<dyn Port>,
        inside: Box<dyn Port>,
        conntrack: ConntrackConfig,
        delta_ring: usize,
    ) -> WorkerSpec {
        WorkerSpec {
            id: 0,
            core: None,
            poll: PollMode::Busy,
            ports: vec![
                WorkerPort {
                    port: outside,
                    index: 0,
                    zone: 0,
                    peer: 1,
                },
                WorkerPort {
                    port: inside,
                    index: 1,
                    zone: 0,
                    peer: 0,
                },
            ],
            conntrack,
            delta_ring,
            epoch: Instant::now(),
            pass_ethertypes: super::PassEthertypes::DEFAULT,
            workers: 1,
            expect: std::sync::Arc::default(),
            handoff: None,
        }
    }
}
