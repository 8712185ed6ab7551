//! Benchmark support crate: see `benches/` for the criterion benchmarks.

#![forbid(unsafe_code)]
