#![no_main]
//! State file and handover text → decode → the checks a restore runs: never a panic; a file
//! that decodes encodes back to one that decodes to the same state.
use libfuzzer_sys::fuzz_target;
use vswitch::persist::StateFile;
use vswitch::persist::handover::Handover;
use vswitch::persist::state::check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Handover::decode("fuzz", text);
    let Ok(state) = StateFile::decode("fuzz", text) else {
        return;
    };
    let _ = check(&state);
    let again = StateFile::decode("fuzz", &state.encode()).expect("an encoded state decodes");
    assert_eq!(again, state);
});
