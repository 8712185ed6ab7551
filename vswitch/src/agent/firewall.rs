//! The node's host firewall, owned by the switch: an nftables table `inet vswitchd` that keeps
//! the node's kernel from answering traffic that belongs to the switch.
//!
//! The uplink is an AF_PACKET port on the node's own interface, so the kernel gets a copy of
//! every frame the switch takes from it. For NodePort connections and replies to masqueraded
//! connections the kernel has no socket and would answer with TCP resets or ICMP port
//! unreachables, killing the switch's connections. The table drops, on the uplink only and for
//! the node's underlay address only, TCP and UDP to the NodePort range (30000-32767) and to the
//! masquerade ports (61000-65535, above Linux's default ephemeral range, so the node's own
//! connections never use them). VXLAN datagrams are not touched: in tunnel mode the kernel
//! delivers them to the tunnel port's own socket.
//!
//! The table is replaced atomically by every apply (one `nft -f` transaction), removed when the
//! uplink goes from the configuration and when the switch stops.

use std::io::Write;
use std::process::{Command, Stdio};

use super::compile::MASQUERADE_PORTS;
use super::model::NodeConfig;
use super::validate::NODE_PORT_RANGE;

/// The table's name in the `inet` family.
pub const TABLE: &str = "vswitchd";

/// The ruleset for `cfg`, or `None` when the node has no uplink (nothing to guard).
pub fn ruleset(cfg: &NodeConfig) -> Option<String> {
    let uplink = cfg.uplink.as_ref()?;
    let ports = format!(
        "{{ {}-{}, {}-{} }}",
        NODE_PORT_RANGE.start(),
        NODE_PORT_RANGE.end(),
        MASQUERADE_PORTS.0,
        MASQUERADE_PORTS.1
    );
    Some(format!(
        "table inet {TABLE} {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter - 10; policy accept;\n\
         \t\tiifname \"{ifname}\" ip daddr {ip} tcp dport {ports} counter drop comment \"NodePorts and masquerade ports belong to vswitchd\"\n\
         \t\tiifname \"{ifname}\" ip daddr {ip} udp dport {ports} counter drop comment \"NodePorts and masquerade ports belong to vswitchd\"\n\
         \t}}\n\
         }}\n",
        ifname = uplink.interface,
        ip = cfg.underlay_ip,
    ))
}

/// Installs `cfg`'s table (replacing the previous one), or removes it when there is none.
pub fn install(cfg: &NodeConfig) -> Result<(), String> {
    match ruleset(cfg) {
        // Declaring the table first makes the delete valid when it does not exist yet; the
        // three statements are one transaction, so the rules are never missing in between.
        Some(rules) => nft(&format!(
            "table inet {TABLE}\ndelete table inet {TABLE}\n{rules}"
        )),
        None => remove(),
    }
}

/// Removes the table (nothing to do when it is not there).
pub fn remove() -> Result<(), String> {
    nft(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n"))
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("host firewall: cannot run nft: {e} (the nftables package is needed)")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("host firewall: nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("host firewall: nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "host firewall: nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_guards_the_uplink_for_the_node_address_only() {
        let text = "[node]\nname = \"n1\"\nunderlay_ip = \"192.168.0.11\"\nunderlay_interface = \"eth1\"\n\
                    underlay_mac = \"02:00:00:00:00:01\"\npod_cidr = \"172.16.1.0/24\"\n\
                    gateway_ip = \"172.16.1.1\"\ngateway_mac = \"0a:58:0c:00:00:fe\"\nmode = \"route\"\n";
        let cfg = super::super::validate::parse(text).unwrap();
        let rules = ruleset(&cfg).unwrap();
        assert!(rules.contains("table inet vswitchd"), "{rules}");
        assert!(
            rules.contains("iifname \"eth1\" ip daddr 192.168.0.11 tcp dport { 30000-32767, 61000-65535 } counter drop"),
            "{rules}"
        );
        assert!(
            rules.contains("udp dport { 30000-32767, 61000-65535 }"),
            "{rules}"
        );
        let without_uplink = text
            .replace("underlay_interface = \"eth1\"\n", "")
            .replace("underlay_mac = \"02:00:00:00:00:01\"\n", "")
            .replace("mode = \"route\"", "mode = \"tunnel\"\n[tunnel]\nvni = 1");
        let cfg = super::super::validate::parse(&without_uplink).unwrap();
        assert_eq!(ruleset(&cfg), None);
    }
}
