//! ftfw-control.
#![forbid(unsafe_code)]
