//! The pipeline compiler: golden flows for a small configuration, and the diff/apply of
//! flows and groups onto a real (port-less) bridge.

use std::sync::Arc;
use vswitch::agent::apply::{Batch, Installed, apply_with};
use vswitch::agent::compile::{AGENT_COOKIE, Numbering, Runtime, compile, unmasqueraded_backends};
use vswitch::agent::validate::parse;
use vswitch::datapath;

use vswitch::control::Control;
use vswitch::switch::Switch;

const SMALL: &str = r#"
[node]
name = "node1"
underlay_ip = "192.168.0.11"
pod_cidr = "172.16.1.0/24"
gateway_ip = "172.16.1.1"
gateway_mac = "0a:58:0c:00:00:fe"
mode = "tunnel"
[tunnel]
vni = 100
[[peers]]
name = "node2"
underlay_ip = "192.168.0.12"
pod_cidr = "172.16.2.0/24"
[[pods]]
port = "p-a"
ip = "172.16.1.11"
mac = "0a:58:0c:01:00:0b"
[[pods]]
port = "p-b"
type = "tap"
ip = "172.16.1.12"
mac = "0a:58:0c:01:00:0c"
allow_from = ["172.16.2.0/24"]
[[services]]
name = "web"
cluster_ip = "10.247.0.10"
port = 80
target_port = 8080
backends = [{ ip = "172.16.1.11" }, { ip = "172.16.2.21", weight = 2 }]
"#;

const GOLDEN: &str = "\
table=0,priority=100,cookie=0xa9e0000000000000,in_port=1,actions=goto_table:10
table=0,priority=100,cookie=0xa9e0000000000000,in_port=1000,actions=goto_table:20
table=0,priority=100,cookie=0xa9e0000000000000,in_port=1002,actions=goto_table:10
table=0,priority=100,cookie=0xa9e0000000000000,in_port=2,actions=goto_table:10
table=0,priority=0,cookie=0xa9e0000000000000,actions=drop
table=10,priority=110,cookie=0xa9e0000000000000,arp,in_port=1,dl_src=0a:58:0c:01:00:0b,arp_op=1,arp_spa=172.16.1.11,arp_tpa=172.16.1.1,actions=set_field:0a:58:0c:01:00:0b->eth_dst,set_field:0a:58:0c:00:00:fe->eth_src,set_field:2->arp_op,set_field:0a:58:0c:01:00:0b->arp_tha,set_field:0a:58:0c:00:00:fe->arp_sha,set_field:172.16.1.11->arp_tpa,set_field:172.16.1.1->arp_spa,output:in_port
table=10,priority=110,cookie=0xa9e0000000000000,arp,in_port=1002,dl_src=0e:76:73:10:01:fe,arp_op=1,arp_spa=172.16.1.254,arp_tpa=172.16.1.1,actions=set_field:0e:76:73:10:01:fe->eth_dst,set_field:0a:58:0c:00:00:fe->eth_src,set_field:2->arp_op,set_field:0e:76:73:10:01:fe->arp_tha,set_field:0a:58:0c:00:00:fe->arp_sha,set_field:172.16.1.254->arp_tpa,set_field:172.16.1.1->arp_spa,output:in_port
table=10,priority=110,cookie=0xa9e0000000000000,arp,in_port=2,dl_src=0a:58:0c:01:00:0c,arp_op=1,arp_spa=172.16.1.12,arp_tpa=172.16.1.1,actions=set_field:0a:58:0c:01:00:0c->eth_dst,set_field:0a:58:0c:00:00:fe->eth_src,set_field:2->arp_op,set_field:0a:58:0c:01:00:0c->arp_tha,set_field:0a:58:0c:00:00:fe->arp_sha,set_field:172.16.1.12->arp_tpa,set_field:172.16.1.1->arp_spa,output:in_port
table=10,priority=110,cookie=0xa9e0000000000000,icmp,in_port=1,dl_src=0a:58:0c:01:00:0b,nw_src=172.16.1.11,nw_dst=172.16.1.1,icmp_type=8,icmp_code=0,actions=set_field:0a:58:0c:01:00:0b->eth_dst,set_field:0a:58:0c:00:00:fe->eth_src,set_field:172.16.1.11->ip_dst,set_field:172.16.1.1->ip_src,set_field:0->icmp_type,output:in_port
table=10,priority=110,cookie=0xa9e0000000000000,icmp,in_port=1002,dl_src=0e:76:73:10:01:fe,nw_src=172.16.1.254,nw_dst=172.16.1.1,icmp_type=8,icmp_code=0,actions=set_field:0e:76:73:10:01:fe->eth_dst,set_field:0a:58:0c:00:00:fe->eth_src,set_field:172.16.1.254->ip_dst,set_field:172.16.1.1->ip_src,set_field:0->icmp_type,output:in_port
table=10,priority=110,cookie=0xa9e0000000000000,icmp,in_port=2,dl_src=0a:58:0c:01:00:0c,nw_src=172.16.1.12,nw_dst=172.16.1.1,icmp_type=8,icmp_code=0,actions=set_field:0a:58:0c:01:00:0c->eth_dst,set_field:0a:58:0c:00:00:fe->eth_src,set_field:172.16.1.12->ip_dst,set_field:172.16.1.1->ip_src,set_field:0->icmp_type,output:in_port
table=10,priority=100,cookie=0xa9e0000000000000,ip,in_port=1,dl_src=0a:58:0c:01:00:0b,nw_src=172.16.1.11,actions=goto_table:20
table=10,priority=100,cookie=0xa9e0000000000000,ip,in_port=1002,dl_src=0e:76:73:10:01:fe,nw_src=172.16.1.254,actions=goto_table:20
table=10,priority=100,cookie=0xa9e0000000000000,ip,in_port=1002,dl_src=0e:76:73:10:01:fe,nw_src=192.168.0.11,actions=goto_table:20
table=10,priority=100,cookie=0xa9e0000000000000,ip,in_port=2,dl_src=0a:58:0c:01:00:0c,nw_src=172.16.1.12,actions=goto_table:20
table=10,priority=10,cookie=0xa9e0000000000000,ip,in_port=1,actions=drop
table=10,priority=10,cookie=0xa9e0000000000000,ip,in_port=1002,actions=drop
table=10,priority=10,cookie=0xa9e0000000000000,ip,in_port=2,actions=drop
table=10,priority=0,cookie=0xa9e0000000000000,actions=drop
table=20,priority=110,cookie=0xa9e0000000000000,ip,nw_dst=172.16.1.1,actions=ct(table=21,zone=2,nat)
table=20,priority=100,cookie=0xa9e0000000000000,ip,actions=ct(table=30,zone=1,nat)
table=20,priority=0,cookie=0xa9e0000000000000,actions=drop
table=21,priority=0,cookie=0xa9e0000000000000,ip,actions=ct(table=30,zone=1,nat)
table=30,priority=250,cookie=0xa9e0000000000000,ct_state=+trk+rpl,ct_mark=0x4/0x4,ip,actions=ct(commit,force,zone=1,table=30)
table=30,priority=250,cookie=0xa9e0000000000000,ct_state=+trk-rpl,ct_mark=0x4/0x4,ip,actions=drop
table=30,priority=200,cookie=0xa9e0000000000000,ct_state=+new+trk,tcp,nw_dst=10.247.0.10,tp_dst=80,actions=group:1000000
table=30,priority=100,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,actions=ct(commit,table=40,zone=1)
table=30,priority=90,cookie=0xa9e0000000000000,ct_state=+est+trk,ip,actions=goto_table:40
table=30,priority=90,cookie=0xa9e0000000000000,ct_state=+rel+trk,ip,actions=goto_table:40
table=30,priority=80,cookie=0xa9e0000000000000,ct_state=+inv+trk,ip,actions=drop
table=30,priority=0,cookie=0xa9e0000000000000,actions=drop
table=40,priority=105,cookie=0xa9e0000000000000,ip,nw_dst=192.168.0.11,actions=goto_table:70
table=40,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=172.16.1.0/24,actions=goto_table:70
table=40,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=172.16.2.0/24,actions=goto_table:50
table=40,priority=0,cookie=0xa9e0000000000000,actions=goto_table:60
table=50,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=172.16.2.0/24,actions=set_field:192.168.0.12->tun_dst,output:1000
table=50,priority=0,cookie=0xa9e0000000000000,actions=drop
table=60,priority=0,cookie=0xa9e0000000000000,actions=drop
table=70,priority=130,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,in_port=1,nw_src=172.16.1.11,nw_dst=172.16.1.11,actions=ct(commit,table=71,zone=2,nat(src=172.16.1.1))
table=70,priority=130,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,in_port=1002,nw_src=172.16.1.254,nw_dst=172.16.1.254,actions=ct(commit,table=71,zone=2,nat(src=172.16.1.1))
table=70,priority=130,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,in_port=2,nw_src=172.16.1.12,nw_dst=172.16.1.12,actions=ct(commit,table=71,zone=2,nat(src=172.16.1.1))
table=70,priority=129,cookie=0xa9e0000000000000,ip,in_port=1,nw_src=172.16.1.11,nw_dst=172.16.1.11,actions=ct(table=71,zone=2,nat)
table=70,priority=129,cookie=0xa9e0000000000000,ip,in_port=1002,nw_src=172.16.1.254,nw_dst=172.16.1.254,actions=ct(table=71,zone=2,nat)
table=70,priority=129,cookie=0xa9e0000000000000,ip,in_port=2,nw_src=172.16.1.12,nw_dst=172.16.1.12,actions=ct(table=71,zone=2,nat)
table=70,priority=120,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,nw_src=172.16.1.254,nw_dst=172.16.1.12,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0a:58:0c:01:00:0c->eth_dst,output:2
table=70,priority=120,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,nw_src=172.16.2.0/24,nw_dst=172.16.1.12,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0a:58:0c:01:00:0c->eth_dst,output:2
table=70,priority=110,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,nw_dst=172.16.1.12,actions=ct(commit,zone=1,exec(set_field:0x4->ct_mark))
table=70,priority=105,cookie=0xa9e0000000000000,ip,in_port=1,nw_dst=172.16.1.11,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0a:58:0c:01:00:0b->eth_dst,output:in_port
table=70,priority=105,cookie=0xa9e0000000000000,ip,in_port=1002,nw_dst=172.16.1.254,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0e:76:73:10:01:fe->eth_dst,output:in_port
table=70,priority=105,cookie=0xa9e0000000000000,ip,in_port=2,nw_dst=172.16.1.12,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0a:58:0c:01:00:0c->eth_dst,output:in_port
table=70,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=172.16.1.11,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0a:58:0c:01:00:0b->eth_dst,output:1
table=70,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=172.16.1.12,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0a:58:0c:01:00:0c->eth_dst,output:2
table=70,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=172.16.1.254,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0e:76:73:10:01:fe->eth_dst,output:1002
table=70,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=192.168.0.11,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0e:76:73:10:01:fe->eth_dst,output:1002
table=70,priority=0,cookie=0xa9e0000000000000,actions=drop
table=71,priority=100,cookie=0xa9e0000000000000,ip,in_port=1,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0a:58:0c:01:00:0b->eth_dst,output:in_port
table=71,priority=100,cookie=0xa9e0000000000000,ip,in_port=1002,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0e:76:73:10:01:fe->eth_dst,output:in_port
table=71,priority=100,cookie=0xa9e0000000000000,ip,in_port=2,actions=set_field:0a:58:0c:00:00:fe->eth_src,set_field:0a:58:0c:01:00:0c->eth_dst,output:in_port
table=71,priority=0,cookie=0xa9e0000000000000,actions=drop
";

const GOLDEN_GROUP: &str = "group_id=1000000,type=select,bucket=weight:1,actions=ct(commit,table=40,zone=1,nat(dst=172.16.1.11:8080)),bucket=weight:2,actions=ct(commit,table=40,zone=1,nat(dst=172.16.2.21:8080))";

#[test]
fn small_config_compiles_to_golden_flows() {
    let cfg = parse(SMALL).unwrap();
    let d = compile(&cfg, &mut Numbering::default(), Runtime::default()).unwrap();
    let got: String = d.flow_lines().iter().map(|l| format!("{l}\n")).collect();
    if got != GOLDEN {
        panic!("compiled flows differ from the golden ones; got:\n{got}");
    }
    assert_eq!(d.groups().len(), 1);
    assert_eq!(d.groups()[&1_000_000], GOLDEN_GROUP);
    let ports: Vec<String> = d
        .ports
        .iter()
        .map(|p| format!("{} {}", p.name, p.args.join(" ")))
        .collect();
    assert_eq!(
        ports,
        [
            "p-a type=afpacket ofport=1",
            "p-b type=tap ofport=2",
            "vswhost0 type=tap ofport=1002",
            "vxlan100 type=vxlan ofport=1000 options:remote_ip=flow options:key=100 options:local_ip=192.168.0.11 options:dst_port=4789",
        ]
    );
}

#[test]
fn session_affinity_hashes_the_client_address_only() {
    let cfg = parse(&SMALL.replace(
        "target_port = 8080",
        "target_port = 8080\nsession_affinity_seconds = 10800",
    ))
    .unwrap();
    let d = compile(&cfg, &mut Numbering::default(), Runtime::default()).unwrap();
    assert_eq!(
        d.groups()[&1_000_000],
        GOLDEN_GROUP.replace(
            "type=select,",
            "type=select,selection_method=hash,fields(ip_src),affinity_timeout=10800,"
        )
    );
    assert!(d.warnings().is_empty(), "{:?}", d.warnings());
    // The flows do not change: only the group's bucket choice does.
    let got: String = d.flow_lines().iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(got, GOLDEN);
    let g = flowtable::text::parse_group(d.groups()[&1_000_000]).unwrap();
    assert_eq!(
        g.selection,
        flowtable::Selection::Hash(vec![flowtable::FieldId::Ipv4Src])
    );
    assert_eq!(g.affinity_timeout, Some(10800));
}

#[test]
fn route_mode_outputs_to_the_peer_mac_and_masquerades() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/node1-route.toml"
    ))
    .unwrap();
    let cfg = parse(&text).unwrap();
    // Our MAC is not in the file: the caller resolves it from the interface.
    assert!(compile(&cfg, &mut Numbering::default(), Runtime::default()).is_err());
    let rt = Runtime {
        uplink_mac: Some(vswitch::agent::model::Mac([2, 0, 0xc0, 0xa8, 0, 0x0b])),
        ..Runtime::default()
    };
    let d = compile(&cfg, &mut Numbering::default(), rt).unwrap();
    let lines = d.flow_lines().join("\n");
    for want in [
        "table=0,priority=100,cookie=0xa9e0000000000000,ip,in_port=1001,nw_dst=172.16.1.0/24,actions=goto_table:20",
        "table=0,priority=100,cookie=0xa9e0000000000000,tcp,in_port=1001,nw_dst=192.168.0.11,tp_dst=30080,actions=goto_table:20",
        "table=30,priority=200,cookie=0xa9e0000000000000,ct_state=+new+trk,tcp,nw_dst=192.168.0.11,tp_dst=30080,actions=group:1000000",
        "table=50,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=172.16.2.0/24,actions=set_field:02:00:c0:a8:00:0b->eth_src,set_field:02:00:c0:a8:00:0c->eth_dst,output:1001",
        "table=60,priority=100,cookie=0xa9e0000000000000,ct_state=+new+trk,tcp,nw_src=172.16.1.0/24,actions=ct(commit,table=65,zone=1,nat(src=192.168.0.11:61000-65535))",
        "table=60,priority=100,cookie=0xa9e0000000000000,ct_state=+new+trk,udp,nw_src=172.16.1.0/24,actions=ct(commit,table=65,zone=1,nat(src=192.168.0.11:61000-65535))",
        "table=60,priority=99,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,nw_src=172.16.1.0/24,actions=ct(commit,table=65,zone=1,nat(src=192.168.0.11))",
        "table=30,priority=100,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,nw_dst=10.247.0.0/16,actions=ct(commit,table=40,zone=1)",
        // Outside clients of the NodePort: their own group (id + 2^30) over every backend,
        // marked for masquerade to the gateway (policy "cluster"), in table 35.
        "table=30,priority=210,cookie=0xa9e0000000000000,ct_state=+new+trk,tcp,in_port=1001,nw_dst=192.168.0.11,tp_dst=30080,actions=group:1074741824",
        "table=30,priority=95,cookie=0xa9e0000000000000,ct_state=+est-rpl+trk,ct_mark=0x2,ip,actions=goto_table:35",
        "table=35,priority=100,cookie=0xa9e0000000000000,ip,actions=ct(commit,table=40,zone=2,nat(src=172.16.1.1))",
        "table=60,priority=90,cookie=0xa9e0000000000000,ct_state=+est+trk,ip,nw_src=192.168.0.11,actions=goto_table:65",
        // From the uplink back out of it (an outside client's packet for a peer's backend,
        // that backend's reply): `output:in_port`, since `output:1001` skips the input port.
        "table=50,priority=110,cookie=0xa9e0000000000000,ip,in_port=1001,nw_dst=172.16.2.0/24,actions=set_field:02:00:c0:a8:00:0b->eth_src,set_field:02:00:c0:a8:00:0c->eth_dst,output:in_port",
        "table=65,priority=110,cookie=0xa9e0000000000000,ip,in_port=1001,actions=set_field:02:00:c0:a8:00:0b->eth_src,set_field:02:00:c0:a8:00:01->eth_dst,output:in_port",
    ] {
        assert!(lines.contains(want), "missing {want} in:\n{lines}");
    }
    let uplink = d.ports.last().unwrap();
    assert_eq!(uplink.name, "eth1");
    assert!(
        !uplink.args.iter().any(|a| a.contains("n_rxq")),
        "{:?}",
        uplink.args
    );
    // With several forwarding threads every one receives from the uplink.
    let spread = Runtime {
        uplink_rx_queues: 2,
        ..rt
    };
    let d2 = compile(&cfg, &mut Numbering::default(), spread).unwrap();
    let uplink = d2.ports.last().unwrap();
    assert!(
        uplink.args.contains(&"options:n_rxq=2".to_string()),
        "{:?}",
        uplink.args
    );
    let groups = d.groups();
    assert_eq!(
        groups[&1_074_741_824],
        "group_id=1074741824,type=select,\
         bucket=weight:1,actions=ct(commit,table=35,zone=1,nat(dst=172.16.1.11:8080),exec(set_field:0x2->ct_mark)),\
         bucket=weight:1,actions=ct(commit,table=35,zone=1,nat(dst=172.16.2.21:8080),exec(set_field:0x2->ct_mark))"
    );
    assert!(groups[&1_000_000].contains("172.16.2.21:8080"));
    // Every compiled line is accepted by the switch's parser.
    Batch::plan(&Installed::default(), &d).unwrap();

    // Policy "local": this node's backends only, the client's address kept (no mark).
    let local = text.replace(
        "target_port = 8080",
        "target_port = 8080\nexternal_traffic_policy = \"local\"",
    );
    let d = compile(&parse(&local).unwrap(), &mut Numbering::default(), rt).unwrap();
    assert_eq!(
        d.groups()[&1_074_741_824],
        "group_id=1074741824,type=select,bucket=weight:1,actions=ct(commit,table=40,zone=1,nat(dst=172.16.1.11:8080))"
    );
    // ...and with no backend on this node, outside clients are refused (pods still served).
    let remote_only = local.replace("{ ip = \"172.16.1.11\" }, ", "");
    let d = compile(&parse(&remote_only).unwrap(), &mut Numbering::default(), rt).unwrap();
    assert!(!d.groups().contains_key(&1_074_741_824));
    let lines = d.flow_lines().join("\n");
    assert!(
        lines.contains("priority=210,cookie=0xa9e0000000000000,ct_state=+new+trk,tcp,in_port=1001,nw_dst=192.168.0.11,tp_dst=30080,actions=drop"),
        "{lines}"
    );
    assert!(
        lines.contains("tp_dst=30080,actions=group:1000000"),
        "{lines}"
    );
}

/// Tunnel mode with `underlay_interface`: peers over VXLAN, outside clients and egress
/// through the uplink, the uplink's copies of VXLAN datagrams dropped first thing.
#[test]
fn tunnel_mode_with_an_uplink_serves_outside_clients() {
    let text = SMALL
        .replace(
            "mode = \"tunnel\"",
            "mode = \"tunnel\"\nunderlay_interface = \"eth1\"\nunderlay_mac = \"02:00:c0:a8:00:0b\"",
        )
        .replace(
            "[[services]]\nname = \"web\"\n",
            "[[services]]\nname = \"web\"\ntype = \"LoadBalancer\"\nexternal_ip = \"198.18.0.5\"\nnode_port = 30080\n",
        )
        + "[egress]\nsnat = true\nnext_hop_mac = \"02:00:c0:a8:00:01\"\n";
    let cfg = parse(&text).unwrap();
    let d = compile(&cfg, &mut Numbering::default(), Runtime::default()).unwrap();
    let ports: Vec<&str> = d.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(ports, ["p-a", "p-b", "vswhost0", "vxlan100", "eth1"]);
    let lines = d.flow_lines().join("\n");
    for want in [
        "table=0,priority=110,cookie=0xa9e0000000000000,udp,in_port=1001,nw_dst=192.168.0.11,tp_dst=4789,actions=drop",
        "table=0,priority=100,cookie=0xa9e0000000000000,in_port=1000,actions=goto_table:20",
        "table=0,priority=100,cookie=0xa9e0000000000000,tcp,in_port=1001,nw_dst=192.168.0.11,tp_dst=30080,actions=goto_table:20",
        "table=0,priority=100,cookie=0xa9e0000000000000,tcp,in_port=1001,nw_dst=198.18.0.5,tp_dst=80,actions=goto_table:20",
        "table=0,priority=90,cookie=0xa9e0000000000000,ip,in_port=1001,nw_dst=192.168.0.11,actions=goto_table:20",
        "table=30,priority=210,cookie=0xa9e0000000000000,ct_state=+new+trk,tcp,in_port=1001,nw_dst=198.18.0.5,tp_dst=80,actions=group:1074741824",
        "table=50,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=172.16.2.0/24,actions=set_field:192.168.0.12->tun_dst,output:1000",
        "table=60,priority=90,cookie=0xa9e0000000000000,ct_state=+est+trk,tcp,nw_src=198.18.0.5,tp_src=80,actions=goto_table:65",
        "table=65,priority=100,cookie=0xa9e0000000000000,ip,actions=set_field:02:00:c0:a8:00:0b->eth_src,set_field:02:00:c0:a8:00:01->eth_dst,output:1001",
    ] {
        assert!(lines.contains(want), "missing {want} in:\n{lines}");
    }
    // Peers never use the uplink in tunnel mode, and there is no classifier entry for
    // the peers' pod CIDRs on it.
    assert!(
        !lines.contains("nw_dst=172.16.1.0/24,actions=goto_table:20"),
        "{lines}"
    );
    Batch::plan(&Installed::default(), &d).unwrap();
    // Without the uplink, nothing of this exists.
    let d = compile(
        &parse(SMALL).unwrap(),
        &mut Numbering::default(),
        Runtime::default(),
    )
    .unwrap();
    let lines = d.flow_lines().join("\n");
    assert!(!lines.contains("1001"), "{lines}");
    assert!(!lines.contains("table=35"), "{lines}");
}

#[test]
fn numbering_is_stable_across_edits() {
    let cfg = parse(SMALL).unwrap();
    let mut n = Numbering::default();
    compile(&cfg, &mut n, Runtime::default()).unwrap();
    // Drop the first pod and add a Service in front: p-b keeps ofport 2, web keeps its group.
    let edited = SMALL
        .replacen(
            "[[pods]]\nport = \"p-a\"\nip = \"172.16.1.11\"\nmac = \"0a:58:0c:01:00:0b\"\n",
            "",
            1,
        )
        .replacen(
            "[[services]]\nname = \"web\"",
            "[[services]]\nname = \"db\"\ncluster_ip = \"10.247.0.20\"\nport = 5432\n[[services]]\nname = \"web\"",
            1,
        );
    let cfg2 = parse(&edited).unwrap();
    let d = compile(&cfg2, &mut n, Runtime::default()).unwrap();
    assert_eq!(n.ofports["p-b"], 2);
    assert_eq!(n.groups["web"], 1_000_000);
    assert_eq!(n.groups["db"], 1_000_001);
    // A Service without backends refuses new connections and needs no group.
    assert!(!d.groups().contains_key(&1_000_001));
}

/// One edit replaces a pod by another: the new one does not get the old one's ofport, which
/// the old port still holds until the apply has put the new pipeline in.
#[test]
fn a_pod_replaced_in_one_edit_gets_a_new_ofport() {
    let cfg = parse(SMALL).unwrap();
    let mut n = Numbering::default();
    compile(&cfg, &mut n, Runtime::default()).unwrap();
    let old = n.ofports["p-a"];
    let edited = SMALL.replacen("port = \"p-a\"", "port = \"p-c\"", 1);
    assert_ne!(edited, SMALL);
    compile(&parse(&edited).unwrap(), &mut n, Runtime::default()).unwrap();
    assert!(!n.ofports.contains_key("p-a"));
    assert_ne!(n.ofports["p-c"], old, "{:?}", n.ofports);
    assert_ne!(n.ofports["p-c"], n.ofports["p-b"]);
}

/// Renaming the node's bridge at run time is refused before anything is touched, and the
/// agent still knows what it installed (a renamed bridge used to wipe that and fail later).
#[test]
fn renaming_the_bridge_at_run_time_is_refused() {
    let (dp, _thread) = datapath::spawn(datapath::Options::default()).unwrap();
    let sw = Arc::new(Switch::new(dp, std::env::temp_dir()));
    let cfg = parse(&SMALL.replacen("name = \"node1\"", "name = \"node1\"\nbridge = \"br-x\"", 1))
        .unwrap();
    assert_eq!(cfg.bridge, "br-x");
    let mut n = Numbering::default();
    let desired = compile(&parse(SMALL).unwrap(), &mut n, Runtime::default()).unwrap();
    let mut installed = Installed {
        bridge: "br-int".into(),
        numbering: n,
        desired,
        ..Installed::default()
    };
    let err = apply_with(&sw, &cfg, &mut installed, false).unwrap_err();
    assert!(
        err.contains("node.bridge changed from br-int to br-x"),
        "{err}"
    );
    assert_eq!(installed.bridge, "br-int");
    assert!(installed.desired.flow_count() > 0);
    assert!(sw.lock().is_empty(), "the refused apply made a bridge");
    sw.shutdown();
}

/// Outside clients of a NodePort on an uplink without the underlay's next hop would get no
/// replies: the apply says so (a warning per Service), and says nothing once a next hop is set.
#[test]
fn outside_clients_without_a_next_hop_are_warned_about() {
    let uplink = SMALL.replacen(
        "mode = \"tunnel\"",
        "mode = \"tunnel\"\nunderlay_interface = \"eth1\"\nunderlay_mac = \"02:00:00:00:00:0b\"",
        1,
    );
    let np = "[[services]]\nname = \"np\"\ntype = \"NodePort\"\nport = 80\nnode_port = 30080\n\
              backends = [{ ip = \"172.16.1.11\" }]\n";
    let without = format!("{uplink}\n{np}");
    let d = compile(
        &parse(&without).unwrap(),
        &mut Numbering::default(),
        Runtime::default(),
    )
    .unwrap();
    let w = d.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("Service np: outside clients"), "{w:?}");
    let with = format!("{uplink}\n[egress]\nnext_hop_mac = \"02:00:00:00:00:01\"\n{np}");
    let d = compile(
        &parse(&with).unwrap(),
        &mut Numbering::default(),
        Runtime::default(),
    )
    .unwrap();
    assert!(d.warnings().is_empty(), "{:?}", d.warnings());
}

/// A Service backend outside the cluster on a masquerading node is named in a warning: its
/// connections are not masqueraded (DNAT and SNAT would share one conntrack zone).
#[test]
fn backends_outside_the_cluster_are_warned_about_when_pods_masquerade() {
    let uplink = SMALL.replacen(
        "mode = \"tunnel\"",
        "mode = \"tunnel\"\nunderlay_interface = \"eth1\"\nunderlay_mac = \"02:00:00:00:00:0b\"",
        1,
    );
    let api = "[[services]]\nname = \"kubernetes\"\ncluster_ip = \"10.247.0.1\"\nport = 443\n\
               backends = [{ ip = \"192.168.0.5\", port = 5443 }]\n";
    let snat =
        format!("{uplink}\n[egress]\nsnat = true\nnext_hop_mac = \"02:00:00:00:00:01\"\n{api}");
    let w = unmasqueraded_backends(&parse(&snat).unwrap());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("Service kubernetes: backend 192.168.0.5 is outside"),
        "{w:?}"
    );
    // Without masquerading, with backends in the cluster, or in a network that routes the
    // pod CIDR back (route mode's no_snat_cidrs), nothing to say.
    let routed = format!(
        "{}\n{api}",
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/node1-route.toml"
        ))
        .unwrap()
        .replace("[egress]", "[egress]\nno_snat_cidrs = [\"192.168.0.0/16\"]")
    );
    let cfg = parse(&routed).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.egress.snat);
    assert!(unmasqueraded_backends(&cfg).is_empty());
    assert!(unmasqueraded_backends(&parse(&format!("{uplink}\n{api}")).unwrap()).is_empty());
    assert!(unmasqueraded_backends(&parse(SMALL).unwrap()).is_empty());
}

/// With an uplink, a host port and masquerading, the uplink's copies of new connections to
/// the node's own address (the kernel serves them) take no conntrack entry: dropped before
/// table 30's commit, below the Services' NodePort flows.
#[test]
fn the_nodes_own_connections_from_the_uplink_are_not_committed() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/node1-tunnel-uplink.toml"
    ))
    .unwrap();
    let cfg = parse(&text).unwrap();
    assert!(cfg.egress.snat && cfg.host.is_some() && cfg.uplink.is_some());
    let rt = Runtime {
        uplink_mac: Some(vswitch::agent::model::Mac([2, 0, 0xc0, 0xa8, 0, 0x0b])),
        ..Runtime::default()
    };
    let d = compile(&cfg, &mut Numbering::default(), rt).unwrap();
    let lines = d.flow_lines().join("\n");
    let guard = format!(
        "ct_state=+new+trk,ip,in_port=1001,nw_dst={},actions=drop",
        cfg.underlay_ip
    );
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("table=30,priority=101,") && l.ends_with(&guard)),
        "{lines}"
    );
}

/// Mode eni without a host port or masquerading: outside clients of a NodePort are
/// source-NATed to the node's address for a backend on another node, so that backend's
/// replies (untagged, to the node's address) must get past table 0.
#[test]
fn eni_outside_clients_replies_come_in_without_host_port_or_snat() {
    let text = "[node]\nname = \"n1\"\nunderlay_ip = \"192.168.0.11\"\nunderlay_interface = \"eth1\"\n\
                underlay_mac = \"02:00:00:00:00:0b\"\nunderlay_gateway = \"192.168.0.1\"\n\
                pod_cidr = \"192.168.64.0/24\"\ngateway_ip = \"192.168.64.1\"\n\
                gateway_mac = \"02:00:00:00:00:01\"\nmode = \"eni\"\nhost_port = false\n\
                [[pods]]\nport = \"p1\"\nip = \"192.168.64.11\"\nmac = \"0a:58:00:00:00:0b\"\nvlan = 11\n\
                [[services]]\nname = \"np\"\ntype = \"NodePort\"\nport = 80\nnode_port = 30080\n\
                backends = [{ ip = \"192.168.65.12\" }]\n";
    let rt = Runtime {
        next_hop_mac: Some(vswitch::agent::model::Mac([2, 0, 0, 0, 0, 1])),
        ..Runtime::default()
    };
    let reply_in =
        "ip,in_port=1001,vlan_tci=0x0000/0x1fff,nw_dst=192.168.0.11,actions=goto_table:20";
    let has = |cfg_text: &str| {
        let d = compile(&parse(cfg_text).unwrap(), &mut Numbering::default(), rt).unwrap();
        d.flow_lines()
            .iter()
            .any(|l| l.starts_with("table=0,priority=90,") && l.ends_with(reply_in))
    };
    assert!(has(text));
    // Without the NodePort nothing comes back to the node's address.
    let ip_only = text.replace(
        "type = \"NodePort\"\nport = 80\nnode_port = 30080\n",
        "cluster_ip = \"10.247.0.10\"\nport = 80\n",
    );
    assert!(!has(&ip_only));
}

fn bridge_flows(ctl: &Control) -> String {
    ctl.command(&["dump-flows", "br-int", "--no-stats"])
        .unwrap()
}

#[test]
fn apply_installs_then_changes_only_the_difference() {
    let (dp, _thread) = datapath::spawn(datapath::Options::default()).unwrap();
    let sw = Arc::new(Switch::new(dp, std::env::temp_dir()));
    let ctl = Control::new(sw.clone());
    sw.add_br("br-int").unwrap();
    // A user's own flow, with another cookie, must survive every agent change.
    ctl.command(&[
        "add-flow",
        "br-int",
        "table=5,priority=7,cookie=0x1,ip,actions=drop",
    ])
    .unwrap();

    let cfg = parse(SMALL).unwrap();
    let mut n = Numbering::default();
    let d1 = compile(&cfg, &mut n, Runtime::default()).unwrap();
    let b1 = Batch::plan(&Installed::default(), &d1).unwrap();
    assert_eq!(b1.changes.flows_added, d1.flow_count());
    assert_eq!(b1.changes.groups_added, 1);
    {
        let mut st = sw.lock();
        b1.run(st.get_mut("br-int").unwrap()).unwrap();
    }
    let dump = bridge_flows(&ctl);
    assert_eq!(dump.lines().count(), d1.flow_count() + 1, "{dump}");
    assert!(dump.contains("cookie=0x1"), "{dump}");
    // The bridge's default NORMAL flow was replaced by the classifier's drop.
    assert!(!dump.contains("NORMAL"), "{dump}");
    let installed = Installed {
        bridge: "br-int".into(),
        numbering: n.clone(),
        desired: d1.clone(),
        ..Installed::default()
    };

    // Same file again: nothing to do.
    let again = compile(&cfg, &mut n, Runtime::default()).unwrap();
    assert!(Batch::plan(&installed, &again).unwrap().is_empty());

    // One more backend and one Service less... then one more Service.
    let edited = SMALL.replace(
        "backends = [{ ip = \"172.16.1.11\" }, { ip = \"172.16.2.21\", weight = 2 }]",
        "backends = [{ ip = \"172.16.1.11\" }, { ip = \"172.16.2.21\", weight = 2 }, { ip = \"172.16.1.12\" }]\n[[services]]\nname = \"dns\"\ntype = \"ClusterIP\"\ncluster_ip = \"10.247.0.53\"\nprotocol = \"udp\"\nport = 53\nbackends = [{ ip = \"172.16.1.12\" }]",
    );
    let cfg2 = parse(&edited).unwrap();
    let d2 = compile(&cfg2, &mut n, Runtime::default()).unwrap();
    let b2 = Batch::plan(&installed, &d2).unwrap();
    assert_eq!(b2.changes.flows_added, 1, "{:?}", b2.changes);
    assert_eq!(b2.changes.flows_modified, 0);
    assert_eq!(b2.changes.flows_removed, 0);
    assert_eq!(b2.changes.groups_added, 1);
    assert_eq!(b2.changes.groups_modified, 1);
    {
        let mut st = sw.lock();
        b2.run(st.get_mut("br-int").unwrap()).unwrap();
    }
    let dump = bridge_flows(&ctl);
    assert!(
        dump.contains("udp,nw_dst=10.247.0.53,tp_dst=53 actions=group:1000001"),
        "{dump}"
    );
    let groups = ctl.command(&["dump-groups", "br-int"]).unwrap();
    assert!(groups.contains("172.16.1.12:8080"), "{groups}");

    // Back to the first file: the dns Service's flow and group go, the user's flow stays.
    let installed2 = Installed {
        desired: d2.clone(),
        ..installed.clone()
    };
    let d3 = compile(&cfg, &mut n, Runtime::default()).unwrap();
    let b3 = Batch::plan(&installed2, &d3).unwrap();
    assert_eq!(b3.changes.flows_removed, 1);
    assert_eq!(b3.changes.groups_removed, 1);
    {
        let mut st = sw.lock();
        b3.run(st.get_mut("br-int").unwrap()).unwrap();
    }
    let dump = bridge_flows(&ctl);
    assert!(!dump.contains("10.247.0.53"), "{dump}");
    assert!(dump.contains("cookie=0x1"), "{dump}");
    assert_eq!(dump.lines().count(), d1.flow_count() + 1);
    let agent = dump
        .lines()
        .filter(|l| l.contains(&format!("cookie={AGENT_COOKIE:#x}")))
        .count();
    assert_eq!(agent, d1.flow_count());
    sw.shutdown();
}

#[test]
fn a_failed_apply_leaves_no_bridge_behind() {
    let (dp, _thread) = datapath::spawn(datapath::Options::default()).unwrap();
    let sw = Arc::new(Switch::new(dp, std::env::temp_dir()));
    let ctl = Control::new(sw.clone());
    // 192.0.2.99 is nobody's address here: the VXLAN port cannot bind to it.
    let text = SMALL
        .replace("192.168.0.11", "192.0.2.99")
        .replace(
            "[[pods]]\nport = \"p-a\"\nip = \"172.16.1.11\"\nmac = \"0a:58:0c:01:00:0b\"\n",
            "",
        )
        .replace(
            "[[pods]]\nport = \"p-b\"\ntype = \"tap\"\nip = \"172.16.1.12\"\nmac = \"0a:58:0c:01:00:0c\"\nallow_from = [\"172.16.2.0/24\"]\n",
            "",
        );
    assert!(!text.contains("[[pods]]"), "{text}");
    let err = ctl.agent.apply_text(&sw, &text).unwrap_err();
    assert!(err.contains("vxlan100"), "{err}");
    assert_eq!(ctl.command(&["list-br"]).unwrap(), "");
    // A bad file is refused before anything happens, with the key named.
    let err = ctl
        .agent
        .apply_text(&sw, &SMALL.replace("vni = 100", "vni = 0"))
        .unwrap_err();
    assert!(err.starts_with("tunnel.vni:"), "{err}");
    assert_eq!(ctl.command(&["list-br"]).unwrap(), "");
    sw.shutdown();
}

#[test]
fn route_mode_peers_through_the_router_and_pods_reachable_from_the_vpc() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/node1-route.toml"
    ))
    .unwrap()
    // Node 2 in another subnet: no MAC, reached through the router (resolved by ARP).
    .replace("underlay_mac = \"02:00:c0:a8:00:0c\"\n", "")
    .replace(
        "next_hop_mac = \"02:00:c0:a8:00:01\"",
        "no_snat_cidrs = [\"192.168.0.0/16\"]",
    )
    .replace(
        "mode = \"route\"",
        "mode = \"route\"\nunderlay_gateway = \"192.168.0.1\"",
    );
    let cfg = parse(&text).unwrap();
    let own = vswitch::agent::model::Mac([2, 0, 0xc0, 0xa8, 0, 0x0b]);
    // The router's MAC comes from ARP: without it there is nothing to compile.
    let rt = Runtime {
        uplink_mac: Some(own),
        ..Runtime::default()
    };
    let e = compile(&cfg, &mut Numbering::default(), rt).unwrap_err();
    assert!(e.contains("node.underlay_gateway"), "{e}");
    let rt = Runtime {
        uplink_mac: Some(own),
        next_hop_mac: Some(vswitch::agent::model::Mac([2, 0, 0xc0, 0xa8, 0, 0x01])),
        ..Runtime::default()
    };
    let d = compile(&cfg, &mut Numbering::default(), rt).unwrap();
    let lines = d.flow_lines().join("\n");
    for want in [
        // Node 2's pods through the router.
        "table=50,priority=100,cookie=0xa9e0000000000000,ip,nw_dst=172.16.2.0/24,actions=set_field:02:00:c0:a8:00:0b->eth_src,set_field:02:00:c0:a8:00:01->eth_dst,output:1001",
        // Replies of connections opened from the VPC / outside, with the pod's address.
        "table=60,priority=90,cookie=0xa9e0000000000000,ct_state=+est+trk,ip,nw_src=172.16.1.0/24,actions=goto_table:65",
        "table=60,priority=90,cookie=0xa9e0000000000000,ct_state=+rel+trk,ip,nw_src=172.16.1.0/24,actions=goto_table:65",
        // The VPC keeps the pod's address; the rest is masqueraded.
        "table=60,priority=105,cookie=0xa9e0000000000000,ct_state=+new+trk,ip,nw_src=172.16.1.0/24,nw_dst=192.168.0.0/16,actions=ct(commit,table=65,zone=1)",
        "table=60,priority=100,cookie=0xa9e0000000000000,ct_state=+new+trk,tcp,nw_src=172.16.1.0/24,actions=ct(commit,table=65,zone=1,nat(src=192.168.0.11:61000-65535))",
        "table=65,priority=100,cookie=0xa9e0000000000000,ip,actions=set_field:02:00:c0:a8:00:0b->eth_src,set_field:02:00:c0:a8:00:01->eth_dst,output:1001",
    ] {
        assert!(lines.contains(want), "missing {want} in:\n{lines}");
    }
    Batch::plan(&Installed::default(), &d).unwrap();
}
