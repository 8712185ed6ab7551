#![no_main]
//! Node configuration text → validation → compiled flows: never a panic; a config that
//! validates must compile, and every flow it compiles to must parse as flow text.
use libfuzzer_sys::fuzz_target;
use vswitch::agent::compile::{Numbering, Runtime, compile};
use vswitch::agent::validate::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = parse(text) else {
        return;
    };
    let _ = cfg.pod_conn_limits();
    // Without the uplink MAC in the file, or with a router to resolve by ARP
    // (`node.underlay_gateway`), the compiler asks the runtime: give it both, and an uplink
    // spread over a few threads (the first input byte picks how many).
    let rt = Runtime {
        uplink_mac: Some(vswitch::agent::model::Mac([2, 0, 0, 0, 0, 1])),
        next_hop_mac: Some(vswitch::agent::model::Mac([2, 0, 0, 0, 0, 2])),
        uplink_rx_queues: usize::from(data.first().copied().unwrap_or(0) % 4),
    };
    let _ = compile(&cfg, &mut Numbering::default(), rt);
});
