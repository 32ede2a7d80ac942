//! Wraparound-safe comparison of 32-bit sequence numbers (ftfw-wire.md 7.1),
//! the same arithmetic as TCP sequence numbers.

/// Whether `a` comes before `b`: the 32-bit difference `a - b`, read as a
/// signed number, is negative.
pub fn before(a: u32, b: u32) -> bool {
    // Reinterpreting the wrapped difference as signed is the point here.
    #[allow(clippy::cast_possible_wrap)]
    let d = a.wrapping_sub(b) as i32;
    d < 0
}

/// Whether `a` comes after `b`.
pub fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Whether `x` lies in the inclusive range `[lo, hi]`, computed as unsigned
/// 32-bit differences: `(hi - lo) >= (x - lo)`.
pub fn between(x: u32, lo: u32, hi: u32) -> bool {
    hi.wrapping_sub(lo) >= x.wrapping_sub(lo)
}

/// The signed distance from `b` to `a` (`a - b`), wraparound-safe.
pub(super) fn diff(a: u32, b: u32) -> i32 {
    #[allow(clippy::cast_possible_wrap)]
    let d = a.wrapping_sub(b) as i32;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn around_wrap() {
        assert!(before(0xffff_ffff, 0));
        assert!(after(0, 0xffff_ffff));
        assert!(before(0xffff_fff0, 5));
        assert!(after(5, 0xffff_fff0));
        assert!(!before(7, 7));
        assert!(!after(7, 7));
        assert!(before(1, 2));
        assert!(after(0x8000_0000, 1));
        assert!(between(0, 0xffff_fffe, 2));
        assert!(between(0xffff_ffff, 0xffff_fffe, 2));
        assert!(between(2, 0xffff_fffe, 2));
        assert!(!between(3, 0xffff_fffe, 2));
        assert!(!between(0xffff_fffd, 0xffff_fffe, 2));
        assert!(between(5, 5, 5));
        assert_eq!(diff(0, 0xffff_ffff), 1);
        assert_eq!(diff(0xffff_ffff, 0), -1);
    }
}
