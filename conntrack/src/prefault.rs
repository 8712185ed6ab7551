//! Faulting in a new table's memory when it is built instead of when the first connections
//! arrive.
//!
//! vswitchd keeps its heap on transparent huge pages (`vswitch::heap_huge_pages`), so the first
//! write into each 2 MiB of a table zeroes the whole page: about 0.25 ms, and several ms in a
//! VM whose host has not backed that memory yet. The hash table is written at random places,
//! so its first few connections each paid that on a forwarding thread (a fresh daemon's first
//! Service connection took 15 ms to answer instead of 0.5). Done at start, off the packet
//! path, the cost is paid once and nobody waits for it. Blocks smaller than a huge page never
//! get one (the kernel aligns only mappings of at least 2 MiB), and their 4 KiB faults cost
//! about a microsecond, so they are left alone rather than made resident for nothing.

use std::mem::{MaybeUninit, size_of};

use hashbrown::HashTable;

/// One write per 4 KiB faults in every page, huge or not.
const PAGE: usize = 4096;
/// A transparent huge page on x86-64 and arm64 with 4 KiB base pages.
const HUGE_PAGE: usize = 2 << 20;

/// Faults in every page of an empty `table`'s buckets when they take at least a huge page:
/// one entry at a hash whose probe starts on each page (hashbrown probes from
/// `hash & bucket_mask`), all removed again.
pub(crate) fn hash_table<T: Copy>(table: &mut HashTable<T>, filler: T) {
    let size = size_of::<T>().max(1);
    let buckets = (table.capacity() * 8 / 7).next_power_of_two();
    if !table.is_empty() || buckets * size < HUGE_PAGE {
        return;
    }
    for page in (0..buckets)
        .step_by((PAGE / size).max(1))
        .take(table.capacity())
    {
        // Never grows (at most `capacity` entries), so the rehash closure is never called.
        table.insert_unique(page as u64, filler, |_| 0);
    }
    table.clear();
}

/// Faults in the first huge page of `v`'s spare capacity, where a sequentially filled slab
/// writes its first entries, when that capacity spans one; its length and contents stay.
pub(crate) fn vec_first_huge_page<T>(v: &mut Vec<T>) {
    let size = size_of::<T>().max(1);
    let spare = v.spare_capacity_mut();
    if spare.len() * size < HUGE_PAGE {
        return;
    }
    for i in (0..HUGE_PAGE / size).step_by((PAGE / size).max(1)) {
        spare[i] = MaybeUninit::zeroed();
        std::hint::black_box(&mut spare[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_stays_empty_and_keeps_its_capacity() {
        let mut t: HashTable<u64> = HashTable::with_capacity(1 << 20);
        let cap = t.capacity();
        hash_table(&mut t, 7);
        assert!(t.is_empty());
        assert_eq!(t.capacity(), cap);
        // Still a working table.
        t.insert_unique(42, 42, |v| *v);
        assert_eq!(t.find(42, |v| *v == 42), Some(&42));
    }

    /// This process's resident memory in bytes (`/proc/self/statm`).
    #[cfg(target_os = "linux")]
    fn resident() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * PAGE
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_table_becomes_resident() {
        // 8M buckets of 8 bytes: 64 MiB, of which only the control bytes (8 MiB) are written
        // when the table is made.
        let mut t: HashTable<u64> = HashTable::with_capacity(7 << 20);
        let made = resident();
        hash_table(&mut t, 7);
        let grew = resident().saturating_sub(made);
        assert!(grew >= 48 << 20, "only {grew} bytes became resident");
    }

    #[test]
    fn a_vec_keeps_its_length_and_contents() {
        let mut v: Vec<u64> = Vec::with_capacity(1 << 20);
        v.extend([1, 2, 3]);
        vec_first_huge_page(&mut v);
        assert_eq!(v, [1, 2, 3]);
        assert!(v.capacity() >= 1 << 20);
        // Small or full vectors are fine too.
        let mut full = vec![9u8; 16];
        full.shrink_to_fit();
        vec_first_huge_page(&mut full);
        assert_eq!(full, [9; 16]);
    }
}
