//! ftfw-control.
#![forbid(unsafe_code)]

pub mod config;
pub mod console;
