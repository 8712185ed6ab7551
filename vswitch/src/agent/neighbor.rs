//! The underlay router's MAC, resolved by the node kernel's ARP (`node.underlay_gateway`).
//!
//! The kernel owns the underlay address, so it is the one that asks: the agent reads its
//! neighbour table (`/proc/net/arp`), and when the router is not there yet adds a *managed*
//! entry (`ip neigh replace GW dev IFACE managed`, Linux 5.16+), which the kernel resolves
//! and keeps resolved, then waits for it. Every apply looks again, so a router that changed
//! its MAC is picked up by the next apply.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use super::model::Mac;

/// How long an apply waits for the router to answer ARP.
const RESOLVE_WAIT: Duration = Duration::from_secs(3);

/// The MAC of `ip` on `iface`, from the kernel's ARP table (asking for it if needed).
pub fn resolve(iface: &str, ip: Ipv4Addr) -> Result<Mac, String> {
    if let Some(m) = lookup(iface, ip) {
        return Ok(m);
    }
    let asked = Command::new("ip")
        .args(["neigh", "replace", &ip.to_string(), "dev", iface, "managed"])
        .output()
        .map_err(|e| format!("node.underlay_gateway: cannot run ip: {e}"))?;
    if !asked.status.success() {
        return Err(format!(
            "node.underlay_gateway: cannot ask the kernel to resolve {ip} on {iface}: {} (set egress.next_hop_mac)",
            String::from_utf8_lossy(&asked.stderr).trim()
        ));
    }
    let deadline = Instant::now() + RESOLVE_WAIT;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(m) = lookup(iface, ip) {
            return Ok(m);
        }
    }
    Err(format!(
        "node.underlay_gateway: {ip} did not answer ARP on {iface} within {}s (set egress.next_hop_mac)",
        RESOLVE_WAIT.as_secs()
    ))
}

fn lookup(iface: &str, ip: Ipv4Addr) -> Option<Mac> {
    parse_arp_table(&std::fs::read_to_string("/proc/net/arp").ok()?, iface, ip)
}

/// A complete entry (flag 0x2) for `ip` on `iface` in `/proc/net/arp`'s text.
pub fn parse_arp_table(text: &str, iface: &str, ip: Ipv4Addr) -> Option<Mac> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, _hw, flags, mac, _mask, dev] = f[..] else {
            return None;
        };
        let complete = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()? & 0x2 != 0;
        if dev != iface || !complete || addr.parse::<Ipv4Addr>().ok()? != ip {
            return None;
        }
        let mut m = [0u8; 6];
        let mut parts = mac.split(':');
        for b in &mut m {
            *b = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        (m != [0; 6]).then_some(Mac(m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_entries_only() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 192.168.0.1      0x1         0x2         02:00:c0:a8:00:01     *        eth1\n\
                 192.168.0.2      0x1         0x0         00:00:00:00:00:00     *        eth1\n\
                 192.168.0.3      0x1         0x2         02:00:c0:a8:00:03     *        eth2\n";
        let gw: Ipv4Addr = "192.168.0.1".parse().unwrap();
        assert_eq!(
            parse_arp_table(t, "eth1", gw).unwrap().to_string(),
            "02:00:c0:a8:00:01"
        );
        assert!(parse_arp_table(t, "eth1", "192.168.0.2".parse().unwrap()).is_none());
        assert!(parse_arp_table(t, "eth1", "192.168.0.3".parse().unwrap()).is_none());
        assert!(parse_arp_table("garbage\n1 2 3", "eth1", gw).is_none());
    }
}
