#![no_main]
//! Software coalescing (`encap::gro`), the check the datapath makes on every TCP frame it queues
//! for a port that takes super-frames.
//!
//! Input: `[split, mss, bytes...]`: the bytes are cut at `split` into the frame already queued
//! and the frame to add; `mss` 0 means the queued frame's own payload size. Checks: no panic;
//! a parsed segment's offsets lie inside its frame with a non-empty payload; when the second
//! frame continues the first and its checksum is right, the merged super-frame parses again
//! with both payloads, and completing its partial checksum gives a valid TCP checksum.
use encap::gro::{TcpSegment, continues, finish_super_frame};
use encap::gso::complete_checksum;
use libfuzzer_sys::fuzz_target;

fn parsed(frame: &[u8]) -> Option<TcpSegment> {
    let seg = TcpSegment::parse(frame)?;
    assert!(seg.l4_offset() < seg.hdr_len());
    assert!(seg.hdr_len() < seg.end() && seg.end() <= frame.len());
    assert_eq!(seg.payload(frame).len(), seg.payload_len());
    let _ = seg.psh(frame);
    let _ = seg.checksum_ok(frame);
    Some(seg)
}

fuzz_target!(|data: &[u8]| {
    let [split, mss, bytes @ ..] = data else {
        return;
    };
    let cut = (usize::from(*split) * 8).min(bytes.len());
    let (queued, next) = bytes.split_at(cut);
    let (Some(head), Some(seg)) = (parsed(queued), parsed(next)) else {
        return;
    };
    let mss = if *mss == 0 {
        head.payload_len()
    } else {
        usize::from(*mss) * 8
    };
    if !continues(queued, &head, next, &seg, mss) || !seg.checksum_ok(next) {
        return;
    }
    let mut merged = queued[..head.end()].to_vec();
    merged.extend_from_slice(seg.payload(next));
    let grown = head.grown_by(seg.payload_len());
    finish_super_frame(&mut merged, &grown, seg.psh(next));
    let again = TcpSegment::parse(&merged).expect("a merged super-frame parses again");
    assert_eq!(again.payload_len(), head.payload_len() + seg.payload_len());
    assert_eq!(again.end(), merged.len());
    complete_checksum(&mut merged, again.l4_offset(), 16).expect("the partial sum completes");
    assert!(again.checksum_ok(&merged), "completed checksum is valid");
});
