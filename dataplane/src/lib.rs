//! ftfw-dataplane: the packet-moving layer of the ftfw firewall appliance.
//!
//! Owns packet parsing ([`packet`]), the flow-state model ([`flow`]),
//! connection tracking ([`conntrack`]), the rule classifier ([`acl`]), ports
//! ([`port`]), the poll-mode workers ([`worker`]) and routed mode ([`l3`]).
//!
//! Invariants:
//! - No input frame can make any function here panic; malformed frames are
//!   counted and dropped.
//! - A worker owns its conntrack shard outright; nothing on the per-packet
//!   path allocates, locks or makes a syscall beyond the port's own.
//! - Every bounded structure (flow table, delta ring, command ring) reports
//!   overflow through a counter instead of growing or panicking.
//!
//! `unsafe` is confined to the AF_PACKET ring backend ([`port::af_packet`]),
//! the DPDK backend (`port::dpdk`, cargo feature `dpdk`), the sync link's
//! datagram batches ([`port::datagram`], one `recvmmsg` call) and the prefetch
//! and hugepage helper of the flow table ([`huge`]).

#![deny(unsafe_code)]

pub mod acl;
pub mod buckets;
pub mod conntrack;
pub mod flow;
pub mod helper;
pub mod huge;
pub mod l3;
pub mod meta;
pub mod nat;
pub mod packet;
pub mod port;
pub mod rng;
pub mod worker;
