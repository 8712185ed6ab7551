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
        // The bridge to the flow-table model (learn specs, fin_timeout, ...): a flow-mod it
        // takes converts back to a wire flow-mod that it takes again, to the same flow.
        if let openflow::Message::FlowMod(fm) = &msg
            && let Ok(model) = openflow::convert::flow_mod_in(fm)
            && let Ok(wire) = openflow::convert::flow_mod_out(&model)
        {
            let again = openflow::convert::flow_mod_in(&wire).expect("converted flow-mod converts");
            assert_eq!(again, model);
        }
    }
    let mut f = Framer::new();
    f.push(data);
    while let Ok(Some(m)) = f.next_message() {
        let _ = decode(m);
    }
});
