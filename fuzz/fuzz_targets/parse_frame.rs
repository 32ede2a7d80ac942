//! Fuzzes `parse_frame`, the L4 checksum check, the reject builders and
//! every checked packet view: none may panic, whatever the input.
//!
//! Run with `cargo +nightly fuzz run parse_frame` from the repository root.

#![no_main]

use ftfw_dataplane::packet::exercise::{poke_parse, poke_views};
use ftfw_dataplane::packet::parse_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    poke_parse(data);
    poke_views(data);
    // The views again at the offsets the parser found.
    if let Ok(meta) = parse_frame(data) {
        if meta.is_ip() {
            if let Some(l3) = data.get(usize::from(meta.l3_offset)..) {
                poke_views(l3);
            }
            if let Some(l4) = data.get(usize::from(meta.l4_offset)..) {
                poke_views(l4);
            }
        }
    }
});
