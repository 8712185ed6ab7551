//! The node's host firewall, owned by the switch: an nftables table `inet vswitchd` that keeps
//! the node's kernel from answering traffic that belongs to the switch, and that lets the
//! node's own processes reach NodePorts on the node's own address.
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
//! A connection the node itself opens to `underlay_ip:node_port` never leaves the kernel (the
//! address is its own). With a host port, the table DNATs it in the output hook to the Service's
//! ClusterIP (the switch then balances it like any ClusterIP connection), or, for a NodePort
//! without one, straight to a backend picked at random; the host port's routes carry it into
//! the switch, and the postrouting hook gives it the host port's address as source so that
//! backends on any node can answer it.
//!
//! The table is replaced atomically by every apply (one `nft -f` transaction) and removed when
//! there is nothing to guard; it stays when vswitchd stops for a restart (the next process
//! finds it in place).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::compile::MASQUERADE_PORTS;
use super::model::{Mode, NodeConfig, Service};
use super::validate::NODE_PORT_RANGE;

/// The table's name in the `inet` family.
pub const TABLE: &str = "vswitchd";

/// The ruleset for `cfg`, or `None` when the node needs none (no uplink to guard and no
/// NodePort to reach from the node).
pub fn ruleset(cfg: &NodeConfig) -> Option<String> {
    let mut chains = String::new();
    if let Some(uplink) = &cfg.uplink {
        let ports = format!(
            "{{ {}-{}, {}-{} }}",
            NODE_PORT_RANGE.start(),
            NODE_PORT_RANGE.end(),
            MASQUERADE_PORTS.0,
            MASQUERADE_PORTS.1
        );
        // Services' health checks are served by vswitchd's own listeners on the node's
        // address, often on a port of the NodePort range (Kubernetes allocates them there).
        let health: Vec<String> = cfg
            .services
            .iter()
            .filter_map(|s| s.health_check_node_port)
            .collect::<std::collections::BTreeSet<u16>>()
            .iter()
            .map(|p| p.to_string())
            .collect();
        let health_accept = if health.is_empty() {
            String::new()
        } else {
            format!(
                "\t\tiifname \"{}\" ip daddr {} tcp dport {{ {} }} accept comment \"Services' health checks are served by vswitchd's listeners\"\n",
                uplink.interface,
                cfg.underlay_ip,
                health.join(", ")
            )
        };
        chains.push_str(&format!(
            "\tchain input {{\n\
             \t\ttype filter hook input priority filter - 10; policy accept;\n\
             {health_accept}\
             \t\tiifname \"{ifname}\" ip daddr {ip} tcp dport {ports} counter drop comment \"NodePorts and masquerade ports belong to vswitchd\"\n\
             \t\tiifname \"{ifname}\" ip daddr {ip} udp dport {ports} counter drop comment \"NodePorts and masquerade ports belong to vswitchd\"\n\
             \t}}\n",
            ifname = uplink.interface,
            ip = cfg.underlay_ip,
        ));
    }
    // Mode eni's host port carries only the Service CIDR (from the node's own address).
    if let Some(host) = cfg.host.as_ref().filter(|_| cfg.mode != Mode::Eni) {
        let dnat: String = cfg
            .services
            .iter()
            .filter_map(|s| node_port_from_node(cfg.underlay_ip, s))
            .collect();
        if !dnat.is_empty() {
            chains.push_str(&format!(
                "\tchain node_ports_from_node {{\n\
                 \t\ttype nat hook output priority -100; policy accept;\n\
                 {dnat}\
                 \t}}\n\
                 \tchain host_port_source {{\n\
                 \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
                 \t\toifname \"{ifname}\" ip saddr != {ip} masquerade comment \"the node's own connections into the pod network come from the host port's address\"\n\
                 \t}}\n",
                ifname = host.interface,
                ip = host.ip,
            ));
        }
    }
    (!chains.is_empty()).then(|| format!("table inet {TABLE} {{\n{chains}}}\n"))
}

/// The output-hook rule that carries the node's own connections to `svc`'s NodePort into the
/// switch: to the ClusterIP when there is one (weights, affinity and all, as for any ClusterIP
/// client), else to one of the backends at random, in proportion to their weights.
fn node_port_from_node(node_ip: Ipv4Addr, svc: &Service) -> Option<String> {
    let node_port = svc.node_port?;
    // No backend: no rule, so the kernel resets the connection at once (through the
    // ClusterIP the switch would drop the SYN and the client would hang).
    if svc.backends.is_empty() {
        return None;
    }
    let proto = svc.protocol.as_str();
    let to = match svc.cluster_ip {
        Some(vip) => format!("{vip}:{}", svc.port),
        None => match svc.backends.as_slice() {
            [] => return None,
            [one] => format!("{}:{}", one.ip, one.port),
            many => {
                // Each backend gets a range of the random number as wide as its weight.
                let mut first = 0u32;
                let mut map = Vec::with_capacity(many.len());
                for b in many {
                    let last = first + u32::from(b.weight) - 1;
                    map.push(format!("{first}-{last} : {} . {}", b.ip, b.port));
                    first = last + 1;
                }
                format!("numgen random mod {first} map {{ {} }}", map.join(", "))
            }
        },
    };
    Some(format!(
        "\t\tip daddr {node_ip} {proto} dport {node_port} dnat ip to {to} comment \"{name}\"\n",
        name = comment_safe(&svc.name)
    ))
}

/// `name` as an nft comment: names are free text, nft comments are quoted and at most 128
/// bytes, so anything but a plain name character becomes `_`.
fn comment_safe(name: &str) -> String {
    name.chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-/:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
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
        assert!(!rules.contains("} accept"), "{rules}");
        // A Service's health check port (here in the NodePort range) is let through first.
        let with_health = format!(
            "{text}underlay_gateway = \"192.168.0.1\"\n[[services]]\nname = \"web\"\ntype = \"NodePort\"\nport = 80\nnode_port = 30080\n\
             external_traffic_policy = \"local\"\nhealth_check_node_port = 31080\n\
             backends = [{{ ip = \"172.16.1.5\" }}]\n"
        );
        let cfg_h = super::super::validate::parse(&with_health).unwrap();
        let rules = ruleset(&cfg_h).unwrap();
        let accept = rules
            .find("iifname \"eth1\" ip daddr 192.168.0.11 tcp dport { 31080 } accept")
            .unwrap_or_else(|| panic!("{rules}"));
        assert!(accept < rules.find("counter drop").unwrap(), "{rules}");
        let without_uplink = text
            .replace("underlay_interface = \"eth1\"\n", "")
            .replace("underlay_mac = \"02:00:00:00:00:01\"\n", "")
            .replace("mode = \"route\"", "mode = \"tunnel\"\n[tunnel]\nvni = 1");
        let cfg = super::super::validate::parse(&without_uplink).unwrap();
        assert_eq!(ruleset(&cfg), None);
    }

    #[test]
    fn node_ports_are_reachable_from_the_node_through_the_host_port() {
        let text = "[node]\nname = \"n1\"\nunderlay_ip = \"192.168.0.11\"\npod_cidr = \"172.16.1.0/24\"\n\
                    gateway_ip = \"172.16.1.1\"\ngateway_mac = \"0a:58:0c:00:00:fe\"\n\
                    service_cidr = \"10.247.0.0/16\"\nmode = \"tunnel\"\n[tunnel]\nvni = 1\n\
                    [[services]]\nname = \"with \\\"vip\\\"\"\ntype = \"NodePort\"\ncluster_ip = \"10.247.0.10\"\n\
                    node_port = 30080\nport = 80\ntarget_port = 8080\nbackends = [{ ip = \"172.16.1.12\" }]\n\
                    [[services]]\nname = \"no-vip\"\ntype = \"NodePort\"\nprotocol = \"udp\"\nnode_port = 30081\n\
                    port = 53\nbackends = [{ ip = \"172.16.1.12\" }, { ip = \"172.16.2.12\", port = 5353, weight = 3 }]\n\
                    [[services]]\nname = \"empty\"\ntype = \"NodePort\"\nnode_port = 30082\nport = 80\nbackends = []\n\
                    [[services]]\nname = \"empty-vip\"\ntype = \"NodePort\"\ncluster_ip = \"10.247.0.12\"\nnode_port = 30083\nport = 80\nbackends = []\n\
                    [[services]]\nname = \"plain\"\ncluster_ip = \"10.247.0.11\"\nport = 80\nbackends = []\n";
        let cfg = super::super::validate::parse(text).unwrap();
        let rules = ruleset(&cfg).unwrap();
        assert!(
            !rules.contains("chain input"),
            "no uplink to guard:\n{rules}"
        );
        assert!(
            rules.contains("ip daddr 192.168.0.11 tcp dport 30080 dnat ip to 10.247.0.10:80 comment \"with__vip_\""),
            "{rules}"
        );
        assert!(
            rules.contains("ip daddr 192.168.0.11 udp dport 30081 dnat ip to numgen random mod 4 map { 0-0 : 172.16.1.12 . 53, 1-3 : 172.16.2.12 . 5353 }"),
            "{rules}"
        );
        assert!(!rules.contains("30082"), "no backend, no rule:\n{rules}");
        assert!(!rules.contains("30083"), "no backend, no rule:\n{rules}");
        assert!(
            rules.contains("oifname \"vswhost0\" ip saddr != 172.16.1.254 masquerade"),
            "{rules}"
        );
        let no_host = text.replace("mode = \"tunnel\"", "host_port = false\nmode = \"tunnel\"");
        let cfg = super::super::validate::parse(&no_host).unwrap();
        assert_eq!(
            ruleset(&cfg),
            None,
            "without a host port nothing reaches the switch"
        );
    }
}
