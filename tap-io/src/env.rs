//! The environment overrides this crate reads, checked once at a program's start: a misspelt
//! value would otherwise silently mean the default.

use crate::{afpacket, afxdp};

/// Each override with the values it accepts.
const OVERRIDES: [(&str, &[&str]); 2] = [
    (afpacket::RING_ENV, &["v2", "V2", "v3", "V3"]),
    (afxdp::TX_ENV, &["xsk", "afpacket"]),
];

/// `Err` names the first override set to a value it does not accept, and what it accepts.
pub fn check() -> Result<(), String> {
    check_with(|name| std::env::var(name).ok())
}

fn check_with(get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    for (name, accepted) in OVERRIDES {
        if let Some(v) = get(name)
            && !accepted.contains(&v.as_str())
        {
            return Err(format!(
                "{name}={v}: expected one of {}",
                accepted.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_accepted_values_pass_and_a_misspelt_one_is_named() {
        assert_eq!(check_with(|_| None), Ok(()));
        // "v3" is a ring kind, not a transmit path.
        assert!(check_with(|_| Some("v3".into())).is_err());
        let only = |name: &'static str, value: &'static str| {
            move |n: &str| (n == name).then(|| value.to_string())
        };
        assert_eq!(check_with(only(afpacket::RING_ENV, "v3")), Ok(()));
        assert_eq!(check_with(only(afxdp::TX_ENV, "afpacket")), Ok(()));
        let e = check_with(only(afxdp::TX_ENV, "af_packet")).unwrap_err();
        assert!(
            e.contains("TAP_IO_AFXDP_TX=af_packet") && e.contains("xsk, afpacket"),
            "{e}"
        );
        let e = check_with(only(afpacket::RING_ENV, "3")).unwrap_err();
        assert!(e.starts_with("TAP_IO_AFPACKET_RING=3"), "{e}");
    }
}
