//! The `openflow_decode` fuzz target's assertions over its stored corpus, so that `cargo test`
//! catches a regression on an input the fuzzer once found (CI's fuzz runs start from this
//! corpus but run each target for only a short while).

use openflow::convert::{flow_mod_in, flow_mod_out};
use openflow::{Message, decode, encode};

#[test]
fn corpus_inputs_re_encode_and_flow_mods_convert_back_to_the_same_flow() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/openflow_decode"
    );
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    let (mut decoded, mut converted) = (0, Vec::new());
    for path in &entries {
        let data = std::fs::read(path).expect("read corpus file");
        let Ok((h, msg)) = decode(&data) else {
            continue;
        };
        decoded += 1;
        let bytes = encode(&msg, h.xid).expect("a decoded message encodes");
        let (_, again) = decode(&bytes).expect("re-encoded message decodes");
        assert_eq!(again, msg, "{}", path.display());
        if let Message::FlowMod(fm) = &msg
            && let Ok(model) = flow_mod_in(fm)
            && let Ok(wire) = flow_mod_out(&model)
        {
            let back = flow_mod_in(&wire)
                .unwrap_or_else(|e| panic!("{}: converted flow-mod refused: {e}", path.display()));
            assert_eq!(back, model, "{}", path.display());
            converted.push(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .to_string(),
            );
        }
    }
    assert!(decoded > 50, "only {decoded} corpus inputs decode");
    // The inputs named for the lossy conversions fixed so far are among those checked.
    for name in [
        "vlan-tci-pcp-without-present-bit",
        "ct-tp-src-without-ct-nw-proto",
        "ct-nw-proto-zero-exact",
    ] {
        assert!(
            converted.iter().any(|c| c == name),
            "{name} did not decode and convert"
        );
    }
}
