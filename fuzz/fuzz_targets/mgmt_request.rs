#![no_main]
//! Management-socket command arguments: port specs and flow text as `add-port`/`add-flows`
//! receive them, and the words of any command through the shared clap grammar (its value
//! parsers: `ct-set-limits` settings, zone lists). Never a panic; errors are values.
use libfuzzer_sys::fuzz_target;
use vswitch::command::MgmtCommand;
use vswitch::portspec::PortSpec;
use vswitch::switch::parse_flow_mods;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let all: Vec<&str> = text.split_whitespace().collect();
    let _ = MgmtCommand::parse_words(&all);
    let mut words = text.split_whitespace();
    if let Some(name) = words.next() {
        let args: Vec<String> = words.map(str::to_string).collect();
        let _ = PortSpec::parse(name, &args);
    }
    let _ = parse_flow_mods(text, flowtable::FlowModCommand::Add, true);
});
