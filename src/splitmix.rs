//! SplitMix64, the one small deterministic generator of the crate: the
//! routing core's random strategy (its whole state is one number the router
//! persists, so a restart continues the same sequence) and the simulator's
//! seeded tenant and script both draw from it. Pure: no clock, no I/O.

/// Advances `state` and returns the next number of its sequence.
pub fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix(*state)
}

/// The SplitMix64 finaliser; also a decent 64-bit hash for counters.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_reference_sequence() {
        // The first outputs for seed 0 of the published SplitMix64.
        let mut state = 0;
        assert_eq!(super::next(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(super::next(&mut state), 0x6E78_9E6A_A1B9_65F4);
    }
}
