//! Connection tracking.

pub mod tcp;
