//! ftfw-testkit: the scaffolding the tests and the lab share, written once.
//!
//! Layer: beside the lab, above `control`; a dev-dependency of `control`'s
//! integration tests and of `ftfw-lab`'s tests, and a dependency of the lab
//! library itself (its `netns failover` command builds a namespace lab).
//! Nothing here is part of the appliance.
//!
//! - [`netns`]: network namespaces named after the pid, veths, commands and
//!   processes in a namespace, ftfwd started and awaited; everything removed
//!   on drop, processes stopped by PID.
//! - [`mem`]: an appliance on `mem` ports between a virtual client and
//!   server host (the port opener `Appliance::start` takes), frames, the
//!   console.
//! - [`wait`]: waits on a condition with a deadline that name what they
//!   waited for when it passes.
//! - [`flows`]: console tuples and flows for the replication tests.
//! - [`conntrackd`]: the configuration of conntrackd as a live peer.
//!
//! Dataplane-level helpers (the two-port bridged `WorkerSpec`) live in the
//! dataplane itself ([`ftfw_dataplane::worker::WorkerSpec::bridged_pair`]):
//! its unit tests cannot use a crate that depends on it.
#![forbid(unsafe_code)]

pub mod conntrackd;
pub mod flows;
pub mod mem;
pub mod netns;
pub mod wait;

pub use wait::{try_wait_until, wait_until};
