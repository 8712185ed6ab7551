#![no_main]
//! Recognising a partial TCP/UDP checksum from a frame's bytes (`encap::partial_csum::find`),
//! what AF_XDP ports and tunnels over a veth underlay run on every received frame.
//!
//! Input: a frame. Checks: no panic; a position found lies inside the frame, the field holds
//! the bare pseudo-header sum, and completing it gives a checksum that verifies and is not
//! found partial again (a complete frame is never taken for partial twice).
use encap::gso::complete_checksum;
use encap::partial_csum::find;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(at) = find(data) else {
        return;
    };
    let (start, offset) = (usize::from(at.start), usize::from(at.offset));
    assert!(offset == 16 || offset == 6, "{at:?}");
    assert!(
        start + offset + 2 <= data.len(),
        "{at:?} outside {}",
        data.len()
    );
    let mut frame = data.to_vec();
    complete_checksum(&mut frame, start, offset).expect("a found position completes");
    assert_eq!(
        find(&frame),
        None,
        "a completed checksum is taken for partial again"
    );
});
