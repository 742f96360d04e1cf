//! A small deterministic PRNG over [`crate::splitmix`] (SplitMix64), so a
//! seed reproduces the same tenant and the same scripted day, with no `rand`
//! dependency.

/// SplitMix64: fast, tiny state, good enough statistics for fake people.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        crate::splitmix::next(&mut self.state)
    }

    /// Uniform in `0..n`; 0 when `n` is 0. The modulo bias is irrelevant at
    /// the sizes used here (lists of names, user counts).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let len = u64::try_from(items.len()).unwrap_or(u64::MAX);
        items.get(usize::try_from(self.below(len)).unwrap_or(0))
    }

    /// A random GUID-shaped string (version 4 layout), lower-case.
    pub fn guid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format_guid(a, b)
    }

    /// An independent stream derived from this one (e.g. the script's rng
    /// from the tenant seed), so adding users does not shift the script.
    pub fn fork(&mut self, label: u64) -> Rng {
        Rng::new(mix(self.next_u64() ^ label))
    }
}

pub use crate::splitmix::mix;

pub fn format_guid(a: u64, b: u64) -> String {
    // Version 4 and variant bits set so the ids look like Entra object ids.
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// True for `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex, any case).
pub fn is_guid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn guids_are_well_formed() {
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let g = rng.guid();
            assert!(is_guid(&g), "{g}");
            assert_eq!(&g[14..15], "4");
        }
        assert!(!is_guid("not-a-guid"));
    }

    #[test]
    fn unit_and_below_stay_in_range() {
        let mut rng = Rng::new(3);
        for _ in 0..1000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.below(10) < 10);
        }
        assert_eq!(rng.below(0), 0);
    }
}
