#![no_main]
// Placeholder until the parser it fuzzes lands; replaced by the owning crate's target.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
