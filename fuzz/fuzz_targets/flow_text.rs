#![no_main]
//! Flow and group text: anything that parses must print and parse back to the same value,
//! and nothing may panic.

use flowtable::flow::{FlowEntry, FlowFlags, FlowModCommand};
use flowtable::text::{
    PrintOpts, parse_flow, parse_flow_mod, parse_group, print_flow, print_flow_mod, print_group,
    print_group_full,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(fm) = parse_flow(s) {
        let text = print_flow_mod(&fm);
        let back = parse_flow(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(back, fm, "{text}");
        // The dump-flows line drops check_overlap (a request-only flag).
        let entry = FlowEntry::from_mod(&fm, std::time::Instant::now());
        let line = print_flow(&entry, &PrintOpts::default());
        let back = parse_flow(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let mut want = fm.clone();
        want.flags = FlowFlags(fm.flags.0 & !FlowFlags::CHECK_OVERLAP);
        assert_eq!(back, want, "{line}");
    }
    let _ = parse_flow_mod(s, FlowModCommand::Delete);
    if let Ok(g) = parse_group(s) {
        let text = print_group_full(&g);
        let back = parse_group(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(back, g, "{text}");
        // The OpenFlow 1.3 line leaves out what 1.3 cannot carry (selection, affinity).
        let text = print_group(&g);
        let back = parse_group(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let want = flowtable::group::Group::new(g.id, g.group_type, g.buckets.clone());
        assert_eq!(back, want, "{text}");
    }
});
