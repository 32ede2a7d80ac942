//! ftfw-lab: the lab around the ftfw appliance.
//!
//! Layer: top of the workspace; depends on the dataplane and control crates
//! and on ftfw-testkit (namespace labs, mem-port appliances), and is
//! depended on by nothing. Owns the packet generator ([`pktgen`]),
//! the pipeline benchmark ([`bench`]) and the HTTP-like probe client and
//! server that lab hosts in network namespaces run ([`probe`]), and the
//! replication benchmark over loopback UDP ([`sync_bench`]) and the in-process
//! failover run of a two-node cluster ([`failover`]). Benchmarks
//! report ratios measured in one run, never absolute timings in tests.
#![forbid(unsafe_code)]
// Lab arithmetic: generator counters, shares and sizes bounded by the
// command line's validation; narrowing casts there are deliberate.
#![allow(clippy::cast_possible_truncation)]

pub mod bench;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod experiments;
pub mod failover;
#[cfg(feature = "dpdk")]
pub mod forward;
pub mod netns_cluster;
pub mod netns_compare;
pub mod netns_failover;
pub mod netns_loss;
pub mod pktgen;
pub mod plot;
pub mod plot_hybrid;
pub mod probe;
pub mod sync_bench;
pub mod synclink;
