//! ftfw-control: the control plane of the ftfw appliance.
//!
//! Layer: above the dataplane and the sync protocol engine. Owns configuration
//! ([`config`]: TOML validated whole, errors name file, line and field),
//! appliance assembly ([`appliance`]: ports, workers, rule loading and
//! atomic swaps), and the operator console ([`console`]: JSON lines over a
//! Unix socket, served from the control thread's mio loop), and the sync
//! thread ([`replication`]: FT-FW on the dedicated link, the external
//! cache, direct injection), and the failover election ([`election`]:
//! Roelle's hot-failover state machine, sans-IO). The binaries
//! `ftfwd` (daemon) and `ftfwctl` (console client) live in `src/bin`.
//!
//! Invariants: the daemon never starts half-configured; a rule reload either
//! swaps in a whole new set or leaves the running one untouched; the control
//! thread never touches packets.
#![forbid(unsafe_code)]

pub mod appliance;
pub mod config;
pub mod console;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod election;
pub mod election_driver;
pub mod import;
pub mod keeper;
pub mod l3;
pub mod replication;
pub mod takeover;
pub mod wire_dump;
