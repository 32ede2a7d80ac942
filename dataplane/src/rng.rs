//! splitmix64 (Steele, Lea and Flood, 2014): the one pseudo-random
//! generator of the workspace, for reproducible test data, the lab's
//! initial sequence numbers and link losses, and the simulators. Small,
//! fast, the same on every platform; not for anything secret.

/// Advances `state` and returns the next 64 bits.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A splitmix64 generator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub const fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.state)
    }

    /// Uniform enough in `0..n` (modulo bias is fine for test data); 0 when
    /// `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_sequence_from_zero() {
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(g.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn the_function_and_the_generator_agree() {
        let (mut s, mut g) = (42, SplitMix64::new(42));
        for _ in 0..100 {
            assert_eq!(splitmix64(&mut s), g.next_u64());
        }
    }

    #[test]
    fn below_stays_below_and_zero_is_zero() {
        let mut g = SplitMix64::new(7);
        for n in 1..50 {
            assert!(g.below(n) < n);
        }
        assert_eq!(g.below(0), 0);
    }
}
