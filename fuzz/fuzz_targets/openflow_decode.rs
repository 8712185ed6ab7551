#![no_main]
//! OpenFlow 1.3 decoder: arbitrary bytes must never panic; whatever decodes must re-encode
//! and decode to the same message. The stream framer is exercised on the same bytes.
use libfuzzer_sys::fuzz_target;
use openflow::{Framer, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok((h, msg)) = decode(data) {
        let bytes = encode(&msg, h.xid).expect("a decoded message fits in 65535 bytes");
        let (h2, again) = decode(&bytes).expect("re-encoded message decodes");
        assert_eq!(h2.xid, h.xid);
        assert_eq!(again, msg);
    }
    let mut f = Framer::new();
    f.push(data);
    while let Ok(Some(m)) = f.next_message() {
        let _ = decode(m);
    }
});
