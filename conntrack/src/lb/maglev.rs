//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights.
//!
//! Each backend gets a pseudo-random permutation of the table slots from two hashes of its id
//! (`offset`, `skip`; the table size is prime so every `skip` walks all slots). Backends take
//! turns claiming their next preferred free slot until the table is full; a backend's turns
//! are proportional to its weight (credit accumulates by `weight`, one slot per `max_weight`).
//! Because preferences depend only on the backend's own id, adding or removing one backend of
//! N moves about 1/N of the slots — the minimal-disruption property the tests bound.

use encap::hash::fmix64;
use thiserror::Error;

/// 65537 slots: prime, and >100x a few hundred backends as the paper recommends.
pub const DEFAULT_TABLE_SIZE: usize = 65_537;

const SEED_OFFSET: u64 = 0x9e37_79b9_7f4a_7c15;
const SEED_SKIP: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// The step a backend's preference list takes through a table of `size` slots. Two backends
/// with the same step walk the table in lockstep, one a fixed shift behind the other; a pair
/// collides with probability 1/(size-1), and then a change of the backend set moves up to
/// about twice the ideal share of slots (property tests set such inputs apart).
pub fn skip_of(id: u64, size: usize) -> u64 {
    fmix64(id ^ SEED_SKIP) % (size as u64 - 1) + 1
}

/// A backend: a stable id (e.g. derived from its address:port or a group bucket id) and a weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    pub id: u64,
    pub weight: u32,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LbError {
    #[error("Maglev table size {0} is not a prime >= 3")]
    SizeNotPrime(usize),
    #[error("Maglev table size {0} is larger than 2^24 slots")]
    SizeTooLarge(usize),
    #[error("Maglev backend ids must be unique (id {0} repeats)")]
    DuplicateId(u64),
}

/// A built lookup table: slot → index into the backend slice it was built from.
#[derive(Clone, Debug)]
pub struct Maglev {
    table: Vec<u32>,
    n_backends: usize,
}

impl Maglev {
    /// Builds the table. Zero-weight backends get no slots; with no usable backend the table is
    /// empty and `pick` returns `None`.
    pub fn new(backends: &[Backend], size: usize) -> Result<Maglev, LbError> {
        if size > 1 << 24 {
            return Err(LbError::SizeTooLarge(size));
        }
        if !is_prime(size) {
            return Err(LbError::SizeNotPrime(size));
        }
        let mut ids: Vec<u64> = backends.iter().map(|b| b.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(LbError::DuplicateId(w[0]));
        }
        let live: Vec<usize> = (0..backends.len())
            .filter(|&i| backends[i].weight > 0)
            .collect();
        if live.is_empty() {
            return Ok(Maglev {
                table: Vec::new(),
                n_backends: backends.len(),
            });
        }
        let m = size as u64;
        let max_w = live
            .iter()
            .map(|&i| backends[i].weight as u64)
            .max()
            .unwrap_or(1);
        let perm: Vec<(u64, u64)> = live
            .iter()
            .map(|&i| {
                let id = backends[i].id;
                (fmix64(id ^ SEED_OFFSET) % m, skip_of(id, size))
            })
            .collect();
        let mut next = vec![0u64; live.len()];
        let mut credit = vec![0u64; live.len()];
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for (j, &bi) in live.iter().enumerate() {
                credit[j] += backends[bi].weight as u64;
                while credit[j] >= max_w {
                    credit[j] -= max_w;
                    let (offset, skip) = perm[j];
                    let slot = loop {
                        let c = ((offset + next[j] * skip) % m) as usize;
                        next[j] += 1;
                        if table[c] == u32::MAX {
                            break c;
                        }
                    };
                    table[slot] = bi as u32;
                    filled += 1;
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Ok(Maglev {
            table,
            n_backends: backends.len(),
        })
    }

    /// The backend index (into the slice given to `new`) for a flow hash.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize] as usize)
    }

    /// The raw table (slot → backend index), for tests and diagnostics.
    pub fn slots(&self) -> &[u32] {
        &self.table
    }

    pub fn n_backends(&self) -> usize {
        self.n_backends
    }
}

fn is_prime(n: usize) -> bool {
    if n < 3 || n.is_multiple_of(2) {
        return false; // 2 is prime but too small to be a table
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_and_errors() {
        assert!(
            is_prime(65_537) && is_prime(13) && !is_prime(65_536) && !is_prime(1) && !is_prime(9)
        );
        assert_eq!(
            Maglev::new(&[], 100).unwrap_err(),
            LbError::SizeNotPrime(100)
        );
        let dup = [Backend { id: 1, weight: 1 }, Backend { id: 1, weight: 1 }];
        assert_eq!(Maglev::new(&dup, 13).unwrap_err(), LbError::DuplicateId(1));
        assert_eq!(Maglev::new(&[], 13).unwrap().pick(5), None);
        let zero = [Backend { id: 1, weight: 0 }];
        assert_eq!(Maglev::new(&zero, 13).unwrap().pick(5), None);
    }

    #[test]
    fn every_slot_is_filled_and_shares_are_even() {
        let b: Vec<Backend> = (0..7)
            .map(|i| Backend {
                id: i * 1000 + 3,
                weight: 1,
            })
            .collect();
        let m = Maglev::new(&b, DEFAULT_TABLE_SIZE).unwrap();
        let mut count = [0usize; 7];
        for &s in m.slots() {
            count[s as usize] += 1;
        }
        let ideal = DEFAULT_TABLE_SIZE / 7;
        for c in count {
            assert!(c.abs_diff(ideal) <= 1, "{count:?}");
        }
    }
}
