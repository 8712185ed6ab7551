#![no_main]
//! Flow, group and meter text: anything that parses must print and parse back to the same
//! value, and nothing may panic.

use flowtable::MeterModCommand;
use flowtable::flow::{FlowEntry, FlowFlags, FlowModCommand};
use flowtable::text::{
    PrintOpts, parse_flow, parse_flow_mod, parse_flow_mod_exact, parse_group, parse_meter_filter,
    parse_meter_mod, print_flow, print_flow_mod, print_group, print_group_full, print_meter,
    print_meter_line,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
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
    // Saved state is read back exactly: what the printer writes, the exact parser returns.
    if let Ok(fm) = parse_flow_mod_exact(s, FlowModCommand::Add) {
        let text = print_flow_mod(&fm);
        let back = parse_flow_mod_exact(&text, FlowModCommand::Add)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(back, fm, "{text}");
    }
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
    for command in [MeterModCommand::Add, MeterModCommand::Delete] {
        if let Ok(mm) = parse_meter_mod(s, command) {
            let _ = print_meter(&mm.meter);
            if command == MeterModCommand::Add {
                let text = print_meter_line(&mm.meter);
                let back =
                    parse_meter_mod(&text, command).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert_eq!(back, mm, "{text}");
            }
        }
    }
    let _ = parse_meter_filter(s);
});
