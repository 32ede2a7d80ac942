//! ftfw-control: the control plane of the ftfw appliance.
//!
//! Layer: above the dataplane and the sync protocol engine. Owns
//! configuration ([`config`]: TOML parsed once and validated whole, one
//! module per section, errors name file, line and field), appliance
//! assembly ([`appliance`]: ports, workers, rule loading and atomic swaps,
//! console dispatch), role changes ([`takeover`]: commit, forward,
//! announce, export, stand-by, the built-in election procedures), bulk
//! import into the shards ([`import`]), routed mode's control side
//! ([`l3`]), the operator console ([`console`]: JSON lines over a Unix
//! socket, served from the control thread's mio loop), the sync thread
//! ([`replication`]: FT-FW on the dedicated link, the external cache,
//! direct injection), and the failover election ([`election`]: Roelle's
//! hot-failover state machine, sans-IO, run for ftfwd by
//! [`election_driver`]), and the Prometheus endpoint ([`metrics`]: the
//! console's answers in the text exposition format, over HTTP). The binaries `ftfwd` (daemon) and `ftfwctl`
//! (console client) live in `src/bin`.
//!
//! Module layering, no import circles: `config`, `election`, `console`
//! and `import` at the bottom; `l3` and `replication` above them;
//! `takeover` above those; `appliance` above `takeover`; `election_driver`
//! on top; `metrics` above `console`, `top` above `metrics`
//! (`tests/module_layering.rs` checks it).
//!
//! Invariants: the daemon never starts half-configured; a rule reload either
//! swaps in a whole new set or leaves the running one untouched; the control
//! thread never touches packets.
#![forbid(unsafe_code)]

pub mod appliance;
pub mod cluster;
pub mod cluster_driver;
pub mod cluster_uplinks;
pub mod config;
pub mod console;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod election;
pub mod election_driver;
pub mod health;
pub mod import;
pub mod keeper;
pub mod keyring;
pub mod l3;
pub mod metrics;
pub mod replication;
pub mod sealed;
pub mod takeover;
pub mod top;
pub mod wire_dump;
