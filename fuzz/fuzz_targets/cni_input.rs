#![no_main]
//! What the CNI plugin reads from others: the runtime's network configuration (stdin),
//! `CNI_ARGS`, the IPAM plugin's result and vswitchd's `list-pods` output. The first byte
//! picks the input. Never a panic; errors are values.
use libfuzzer_sys::fuzz_target;
use vswitch_cni::args::{self, Command, Config, Env};
use vswitch_cni::ipam::Allocation;
use vswitch_cni::switch::parse_pods;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 4 {
        0 => {
            if let Ok(config) = Config::parse(rest) {
                let _ = config.refuse_unsupported_fields();
                let _ = config.ipam_type();
                for cmd in [Command::Check, Command::Status, Command::Gc] {
                    let _ = config.allows(cmd);
                }
            }
        }
        1 => {
            if let Ok(v) = serde_json::from_slice(rest) {
                let _ = Allocation::from_result(&v);
            }
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            let env = Env {
                args: Some(text.to_string()),
                ..Env::default()
            };
            if let Ok(Some(mac)) = env.mac_arg() {
                assert_eq!(args::parse_mac(&mac).as_deref(), Some(mac.as_str()));
            }
            let _ = args::version_tuple(&text);
            let _ = args::valid_container_id(&text);
            let _ = args::valid_ifname(&text);
        }
        _ => {
            let _ = parse_pods(&String::from_utf8_lossy(rest));
        }
    }
});
