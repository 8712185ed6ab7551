//! Benchmark support crate: see `benches/` for the criterion benchmarks.

#![forbid(unsafe_code)]

/// Runs the bench as vswitchd runs: executes it again with transparent huge pages for the heap
/// (`vswitch::heap_huge_pages`), so `cargo bench` measures the default configuration. Call it
/// first in `main`; `GLIBC_TUNABLES=glibc.malloc.hugetlb=0` measures without.
pub fn enable_heap_huge_pages() {
    if let Err(e) = vswitch::heap_huge_pages::enable() {
        eprintln!(
            "benches: could not execute again with {}=1 (heap on 4 KiB pages): {e}",
            vswitch::heap_huge_pages::TUNABLE
        );
    }
}

/// `criterion_main!` that first calls [`enable_heap_huge_pages`].
#[macro_export]
macro_rules! criterion_main {
    ( $( $group:path ),+ $(,)? ) => {
        fn main() {
            $crate::enable_heap_huge_pages();
            $( $group(); )+
            ::criterion::Criterion::default()
                .configure_from_args()
                .final_summary();
        }
    };
}
