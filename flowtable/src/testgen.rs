//! A small deterministic generator (xorshift64*) for the workspace's property tests: no
//! random-number dependency, and a failure replays from its seed.

/// xorshift64*; the state must not be 0.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (not 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// An index below `n` (not 0).
    pub fn index(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.index(from.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// Bits within `full`, biased to the values conversions special-case: none, all, one bit,
    /// a prefix, a run of low bits, anything.
    pub fn bits(&mut self, full: u128) -> u128 {
        let any = ((u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())) & full;
        let width = 128 - full.leading_zeros();
        match self.index(7) {
            0 => 0,
            1 => full,
            2 => (1u128 << self.index(width.max(1) as usize)) & full,
            3 => full & !(full >> (self.index(width as usize + 1) as u32).min(127)),
            4 => full >> (self.index(width as usize + 1) as u32).min(127),
            _ => any,
        }
    }
}
