//! ftfw-lab.
#![forbid(unsafe_code)]
