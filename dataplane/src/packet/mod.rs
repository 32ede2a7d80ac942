//! Packet views: see the packet helper.
