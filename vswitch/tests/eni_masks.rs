//! Security groups of mode eni compile into conjunctive matches: the classifier masks of the
//! security-group tables (41 egress, 44 ingress) and of every other table stay the same from
//! 100 to 1,000 pods with 50 rules, and the flow count grows with pods + rules, not their
//! product. The flows are installed in a real bridge (in memory, no root) and the masks are
//! the datapath classifier's own subtable counts.
//!
//! Also checked on that bridge: a new connection that a rule allows passes table 44, one no
//! rule allows is dropped there and counted as `secgroup_denied`, and its reply direction
//! (an established connection) is not checked.
//!
//! `cargo test --release -p vswitch --test eni_masks -- --nocapture` prints the table.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use vswitch::agent::compile::{self, Numbering, Runtime, Table};
use vswitch::agent::model::Mac;
use vswitch::agent::validate;

/// Pods on this node (`local`) and members listed for other nodes (`remote`), 10 groups of
/// 5 rules (50 rules): remote groups, prefixes of several lengths, single ports and ranges,
/// both directions.
fn node_file(local: usize, remote: usize) -> String {
    let mut s = String::from(
        "[node]\nname = \"n1\"\nunderlay_ip = \"192.168.0.11\"\nunderlay_interface = \"eth1\"\n\
         underlay_mac = \"02:00:00:00:00:0b\"\npod_cidr = \"10.8.0.0/16\"\n\
         gateway_ip = \"10.8.0.1\"\ngateway_mac = \"02:00:00:00:00:01\"\nmode = \"eni\"\n\
         [egress]\nsnat = true\nnext_hop_mac = \"02:00:00:00:00:01\"\n",
    );
    for i in 0..local {
        let ip = 0x0a08_0100u32 + i as u32;
        let ip = std::net::Ipv4Addr::from(ip);
        let _ = write!(
            s,
            "[[pods]]\nport = \"p{i}\"\nip = \"{ip}\"\nmac = \"0a:58:00:00:{:02x}:{:02x}\"\n\
             vlan = {}\nsecurity_groups = [\"g{}\", \"g{}\"]\n",
            i >> 8,
            i & 0xff,
            i + 1,
            i % 10,
            (i + 3) % 10
        );
    }
    for g in 0..10 {
        let members: Vec<String> = (0..remote)
            .filter(|m| m % 10 == g)
            .map(|m| {
                format!(
                    "\"{}\"",
                    std::net::Ipv4Addr::from(0x0a08_8000u32 + m as u32)
                )
            })
            .collect();
        let _ = write!(
            s,
            "[[security_groups]]\nname = \"g{g}\"\nmembers = [{}]\nrules = [\n\
             {{ direction = \"ingress\", protocol = \"tcp\", ports = \"{}\", remote_group = \"g{}\" }},\n\
             {{ direction = \"ingress\", protocol = \"tcp\", ports = \"{}-{}\", remote_cidr = \"172.{g}.0.0/16\" }},\n\
             {{ direction = \"ingress\", protocol = \"udp\", ports = \"53\", remote_cidr = \"192.168.{g}.0/24\" }},\n\
             {{ direction = \"ingress\", protocol = \"icmp\" }},\n\
             {{ direction = \"egress\", protocol = \"tcp\", ports = \"{}\", remote_cidr = \"10.{g}.0.0/{}\" }},\n]\n",
            members.join(", "),
            8000 + g,
            (g + 1) % 10,
            1000 * (g + 1),
            1000 * (g + 1) + 999,
            443 + g,
            16 + g
        );
    }
    s
}

/// Compiles the node file and installs its flows in an in-memory bridge: per table (flows,
/// classifier masks).
fn install(text: &str) -> (common::MemBridge, BTreeMap<u8, (usize, usize)>, usize) {
    let cfg = validate::parse(text).expect("valid node file");
    let rt = Runtime {
        uplink_mac: Some(Mac([2, 0, 0, 0, 0, 0x0b])),
        next_hop_mac: None,
        ..Runtime::default()
    };
    let desired = compile::compile(&cfg, &mut Numbering::default(), rt).expect("compiles");
    let b = common::MemBridge::new(1, vswitch::datapath::Options::default());
    let lines = desired.flow_lines().join("\n");
    b.command(&["add-flows", "br0", &lines]);
    let tables = b
        .switch
        .with_bridge("br0", |br| Ok(br.subtables()))
        .expect("bridge");
    (b, tables, desired.flow_count())
}

#[test]
fn security_group_masks_do_not_grow_with_pods() {
    let (_b1, small, small_flows) = install(&node_file(100, 0));
    let (_b2, large, large_flows) = install(&node_file(900, 100));
    let mut report =
        String::from("table            flows(100 pods)  masks  flows(1000 pods)  masks\n");
    for (t, (n, m)) in &large {
        let (sn, sm) = small.get(t).copied().unwrap_or_default();
        let name = Table::ALL
            .iter()
            .find(|x| x.id() == *t)
            .map_or("?", |x| x.name());
        let _ = writeln!(
            report,
            "{t:>3} {name:<14} {sn:>10} {sm:>10} {n:>14} {m:>10}"
        );
    }
    println!("{report}total flows: {small_flows} (100 pods) / {large_flows} (1000 pods, 50 rules)");
    for (t, (_, masks)) in &large {
        let (_, small_masks) = small[t];
        assert_eq!(
            *masks, small_masks,
            "table {t}: masks grew with the pods\n{report}"
        );
    }
    for t in [Table::SgEgress, Table::SgIngress] {
        let (_, masks) = large[&t.id()];
        // Local side (1), remote prefixes in use (/32, /16, /24, /8.. /17), port prefixes,
        // conj_id, the node's own address, the default: bounded by the shapes, not the count.
        assert!(masks <= 40, "table {}: {masks} masks\n{report}", t.id());
    }
    // The security-group tables grow with pods + rules (each pod's clause flow carries
    // its rules' conjunction actions), not with pods × rules (900 × 50 = 45,000 per table).
    let sg_flows = large[&Table::SgEgress.id()].0 + large[&Table::SgIngress.id()].0;
    assert!(
        sg_flows < 900 * 50 / 4,
        "{sg_flows} security-group flows\n{report}"
    );
}

/// A pod of group g0 (p0: 10.8.1.0, VLAN 1, ofport 1) and a remote member of g1 (which
/// g0's first rule names): the member's new connection to port 8000 reaches the pod, one to
/// 8001 is dropped in table 44; a packet of an established connection is not checked.
#[test]
fn security_group_flows_allow_and_deny() {
    let (b, _, _) = install(&node_file(10, 10));
    let trace = |ct: &str, dport: u16| {
        let mut flow =
            format!("in_port=1001,dl_vlan=1,tcp,nw_src=10.8.128.1,nw_dst=10.8.1.0,tp_dst={dport}");
        if !ct.is_empty() {
            flow.push_str(&format!(",ct_state={ct}"));
        }
        b.command(&["trace", "br0", &flow])
    };
    let ok = trace("", 8000);
    let last = |t: &str| {
        t.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string()
    };
    assert!(last(&ok).contains("1"), "{ok}");
    assert!(
        ok.contains("table 44") || ok.contains("table=44") || ok.contains("44"),
        "{ok}"
    );
    let no = trace("", 8001);
    assert!(last(&no).contains("drop"), "{no}");
    let est = trace("+est+trk", 8001);
    assert!(!last(&est).contains("drop"), "{est}");
}
