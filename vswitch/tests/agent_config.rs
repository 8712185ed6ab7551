//! Node configuration: parsing and validation errors name the key and the problem.

use vswitch::agent::model::{Mode, ServiceKind, TrafficPolicy};
use vswitch::agent::validate::{ConfigError, parse};

const BASE: &str = r#"
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

[[services]]
name = "web"
cluster_ip = "10.247.0.10"
port = 80
target_port = 8080
backends = [{ ip = "172.16.1.11" }]
"#;

fn err(text: &str) -> (String, String) {
    match parse(text) {
        Err(ConfigError::Invalid { key, problem }) => (key, problem),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from} not in BASE");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_config_is_valid_with_defaults() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.bridge, "br-int");
    assert_eq!(c.ct_zone, 1);
    assert_eq!(c.service_cidr.to_string(), "10.247.0.0/16");
    assert_eq!(
        c.mode,
        Mode::Tunnel {
            vni: 100,
            dst_port: 4789
        }
    );
    assert_eq!(c.pods[0].name, "p-a");
    assert_eq!(c.services[0].kind, ServiceKind::ClusterIp);
    assert_eq!(c.services[0].backends[0].port, 8080);
    assert_eq!(c.services[0].backends[0].weight, 1);
}

#[test]
fn examples_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).unwrap();
            parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "expected example configurations in {dir}");
}

#[test]
fn syntax_errors_and_unknown_keys_are_refused() {
    assert!(matches!(parse("[node"), Err(ConfigError::Syntax(_))));
    let e = parse(&with(
        "mode = \"tunnel\"",
        "mode = \"tunnel\"\npod_cdir = \"x\"",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("pod_cdir"), "{e}");
}

#[test]
fn bad_addresses_name_their_key() {
    let cases = [
        (
            with("192.168.0.11", "192.168.0"),
            "node.underlay_ip",
            "not an IPv4 address",
        ),
        (
            with("172.16.1.0/24", "172.16.1.5/24"),
            "node.pod_cidr",
            "host bits",
        ),
        (
            with("gateway_ip = \"172.16.1.1\"", "gateway_ip = \"172.16.9.1\""),
            "node.gateway_ip",
            "outside node.pod_cidr",
        ),
        (
            with("0a:58:0c:00:00:fe", "01:58:0c:00:00:fe"),
            "node.gateway_mac",
            "not a unicast",
        ),
        (
            with("0a:58:0c:01:00:0b", "0a:58:0c:01:00"),
            "pods[0].mac",
            "not a MAC",
        ),
        (
            with("ip = \"172.16.1.11\"\nmac", "ip = \"172.16.2.11\"\nmac"),
            "pods[0].ip",
            "outside node.pod_cidr",
        ),
        (
            with("ip = \"172.16.1.11\"\nmac", "ip = \"172.16.1.1\"\nmac"),
            "pods[0].ip",
            "gateway",
        ),
        (
            with("\"172.16.2.0/24\"", "\"172.16.1.128/25\""),
            "peers[0].pod_cidr",
            "overlaps node.pod_cidr",
        ),
        (
            with("10.247.0.10", "10.1.0.10"),
            "services[0].cluster_ip",
            "outside node.service_cidr",
        ),
        (
            with(
                "backends = [{ ip = \"172.16.1.11\" }]",
                "backends = [{ ip = \"x\" }]",
            ),
            "services[0].backends[0].ip",
            "not an IPv4",
        ),
        (
            with(
                "backends = [{ ip = \"172.16.1.11\" }]",
                "backends = [{ ip = \"172.16.1.11\", weight = 0 }]",
            ),
            "services[0].backends[0].weight",
            "at least 1",
        ),
    ];
    for (text, key, problem) in cases {
        let (k, p) = err(&text);
        assert_eq!(k, key, "{p}");
        assert!(p.contains(problem), "{key}: '{p}' lacks '{problem}'");
    }
}

#[test]
fn mode_rules() {
    let (k, p) = err(&with("mode = \"tunnel\"", "mode = \"vxlan\""));
    assert_eq!(k, "node.mode");
    assert!(p.contains("expected"), "{p}");
    let (k, _) = err(&with("vni = 100", "vni = 16777216"));
    assert_eq!(k, "tunnel.vni");
    let no_tunnel = with("[tunnel]\nvni = 100", "");
    assert_eq!(err(&no_tunnel).0, "tunnel");
    let route = with("[tunnel]\nvni = 100", "").replace("mode = \"tunnel\"", "mode = \"route\"");
    assert_eq!(err(&route).0, "node.underlay_interface");
    let route = route.replace(
        "mode = \"route\"",
        "mode = \"route\"\nunderlay_interface = \"eth1\"",
    );
    let (k, p) = err(&route);
    assert_eq!(k, "peers[0].underlay_mac");
    assert!(p.contains("route"), "{p}");
    let route = route.replace(
        "pod_cidr = \"172.16.2.0/24\"",
        "pod_cidr = \"172.16.2.0/24\"\nunderlay_mac = \"02:00:00:00:00:02\"",
    );
    parse(&route).unwrap();
    let inner = route.replace(
        "underlay_mac = \"02:00:00:00:00:02\"",
        "underlay_mac = \"02:00:00:00:00:02\"\ninner_mac = \"02:00:00:00:00:03\"",
    );
    assert_eq!(err(&inner).0, "peers[0].inner_mac");
    // And the other way round: a peer's underlay MAC has no use in tunnel mode.
    let (k, p) = err(&with(
        "pod_cidr = \"172.16.2.0/24\"",
        "pod_cidr = \"172.16.2.0/24\"\nunderlay_mac = \"02:00:00:00:00:02\"",
    ));
    assert_eq!(k, "peers[0].underlay_mac");
    assert!(p.contains("route"), "{p}");
    // Tunnel mode without an uplink has no way out: egress and our underlay MAC need one.
    let snat_tunnel = format!("{BASE}\n[egress]\nsnat = true\n");
    let (k, p) = err(&snat_tunnel);
    assert_eq!(k, "egress.snat");
    assert!(p.contains("node.underlay_interface"), "{p}");
    let next_hop_tunnel = format!("{BASE}\n[egress]\nnext_hop_mac = \"02:00:00:00:00:01\"\n");
    assert_eq!(err(&next_hop_tunnel).0, "egress.next_hop_mac");
    let mac_tunnel = with(
        "mode = \"tunnel\"",
        "mode = \"tunnel\"\nunderlay_mac = \"02:00:00:00:00:0b\"",
    );
    assert_eq!(err(&mac_tunnel).0, "node.underlay_mac");
}

#[test]
fn tunnel_mode_takes_an_uplink_for_outside_traffic() {
    let text = with(
        "mode = \"tunnel\"",
        "mode = \"tunnel\"\nunderlay_interface = \"eth1\"\nunderlay_mac = \"02:00:00:00:00:0b\"",
    );
    let c = parse(&format!(
        "{text}\n[egress]\nsnat = true\nnext_hop_mac = \"02:00:00:00:00:01\"\n"
    ))
    .unwrap();
    let up = c.uplink.expect("uplink");
    assert_eq!(up.interface, "eth1");
    assert_eq!(up.mac.unwrap().to_string(), "02:00:00:00:00:0b");
    assert!(c.egress.snat);
    // The uplink is not a pod port, and a frontend cannot take the VXLAN port.
    let clash = text.replace("port = \"p-a\"", "port = \"eth1\"");
    assert_eq!(err(&clash).0, "pods[0].port");
    let vxlan = format!(
        "{text}\n[[services]]\nname = \"v\"\ntype = \"LoadBalancer\"\nexternal_ip = \"192.168.0.11\"\nprotocol = \"udp\"\nport = 4789\n"
    );
    let (k, p) = err(&vxlan);
    assert_eq!(k, "services[1]");
    assert!(p.contains("VXLAN"), "{p}");
}

/// A run-time `set-service` whose NodePort is another Service's health check port is refused,
/// as the whole-file check refuses it.
#[test]
fn a_live_service_cannot_take_a_health_check_port() {
    use vswitch::agent::config::{RawConfig, RawService};
    use vswitch::agent::validate::{ServiceMemo, validate_one, validate_with};
    let text = format!(
        "{BASE}\n[[services]]\nname = \"a\"\ntype = \"NodePort\"\nport = 80\nnode_port = 30080\n\
         external_traffic_policy = \"local\"\nhealth_check_node_port = 32000\n\
         backends = [{{ ip = \"172.16.1.11\" }}]\n"
    );
    let raw: RawConfig = toml::from_str(&text).unwrap();
    let mut memo = ServiceMemo::default();
    let cfg = validate_with(&raw, &mut memo).unwrap();
    let b = |node_port: u16| -> RawService {
        toml::from_str(&format!(
            "name = \"b\"\ntype = \"NodePort\"\nport = 80\nnode_port = {node_port}\n\
             backends = [{{ ip = \"172.16.1.11\" }}]\n"
        ))
        .unwrap()
    };
    let Err(e) = validate_one(&cfg, &b(32000), &memo) else {
        panic!("a NodePort on another Service's health check port was accepted");
    };
    let e = e.to_string();
    assert!(e.contains("health check port of another Service"), "{e}");
    assert!(validate_one(&cfg, &b(32001), &memo).is_ok());
    // The whole file says the same.
    let whole = format!(
        "{text}[[services]]\nname = \"b\"\ntype = \"NodePort\"\nport = 80\nnode_port = 32000\n\
         backends = [{{ ip = \"172.16.1.11\" }}]\n"
    );
    assert!(err(&whole).1.contains("Service frontend"));
}

#[test]
fn external_traffic_policy_is_checked() {
    let np = with(
        "name = \"web\"",
        "name = \"web\"\ntype = \"NodePort\"\nnode_port = 30080",
    );
    assert_eq!(
        parse(&np).unwrap().services[0].external_traffic_policy,
        TrafficPolicy::Cluster
    );
    let local = np.replace(
        "port = 80\n",
        "port = 80\nexternal_traffic_policy = \"local\"\n",
    );
    assert_eq!(
        parse(&local).unwrap().services[0].external_traffic_policy,
        TrafficPolicy::Local
    );
    let (k, p) = err(&local.replace("\"local\"", "\"Local\""));
    assert_eq!(k, "services[0].external_traffic_policy");
    assert!(p.contains("'Local'"), "{p}");
    // A ClusterIP Service has no outside clients.
    let cip = with(
        "port = 80\n",
        "port = 80\nexternal_traffic_policy = \"cluster\"\n",
    );
    assert_eq!(err(&cip).0, "services[0].external_traffic_policy");
}

#[test]
fn duplicates_are_refused() {
    let two_pods = format!(
        "{BASE}\n[[pods]]\nport = \"p-a\"\nip = \"172.16.1.12\"\nmac = \"0a:58:0c:01:00:0c\"\n"
    );
    assert_eq!(err(&two_pods).0, "pods[1].port");
    let same_ip = format!(
        "{BASE}\n[[pods]]\nport = \"p-b\"\nip = \"172.16.1.11\"\nmac = \"0a:58:0c:01:00:0c\"\n"
    );
    assert_eq!(err(&same_ip).0, "pods[1].ip");
    let same_vip =
        format!("{BASE}\n[[services]]\nname = \"web2\"\ncluster_ip = \"10.247.0.10\"\nport = 80\n");
    let (k, p) = err(&same_vip);
    assert_eq!(k, "services[1]");
    assert!(p.contains("10.247.0.10:80/tcp"), "{p}");
}

#[test]
fn service_types_need_their_addresses() {
    let np = with("name = \"web\"", "name = \"web\"\ntype = \"NodePort\"");
    assert_eq!(err(&np).0, "services[0].node_port");
    let np = np.replace("port = 80\n", "port = 80\nnode_port = 80\n");
    let (k, p) = err(&np);
    assert_eq!(k, "services[0].node_port");
    assert!(p.contains("30000..32767"), "{p}");
    let lb = with("name = \"web\"", "name = \"web\"\ntype = \"LoadBalancer\"");
    assert_eq!(err(&lb).0, "services[0].external_ip");
    let bad = with("name = \"web\"", "name = \"web\"\ntype = \"ExternalName\"");
    assert_eq!(err(&bad).0, "services[0].type");
    let proto = with("name = \"web\"", "name = \"web\"\nprotocol = \"sctp\"");
    assert_eq!(err(&proto).0, "services[0].protocol");
}

#[test]
fn an_external_ip_on_the_nodes_own_address_is_refused() {
    let lb = with(
        "name = \"web\"",
        "name = \"web\"\ntype = \"LoadBalancer\"\nexternal_ip = \"192.168.0.11\"",
    );
    let (k, p) = err(&lb);
    assert_eq!(k, "services[0].external_ip");
    assert!(p.contains("node.underlay_ip"), "{p}");
    let other = lb.replace(
        "external_ip = \"192.168.0.11\"",
        "external_ip = \"192.168.0.99\"",
    );
    parse(&other).expect("another address is a frontend");
}

/// A security group's rule keeps 12 bits of its conjunction id for its place in the group:
/// the 4,096th distinct rule would share an id with another rule and merge their clauses.
#[test]
fn a_security_group_has_at_most_4095_rules() {
    let eni = |rules: usize| {
        let mut s = String::from(
            "[node]\nname = \"n1\"\nunderlay_ip = \"192.168.0.11\"\nunderlay_interface = \"eth1\"\n\
             pod_cidr = \"10.8.0.0/16\"\ngateway_ip = \"10.8.0.1\"\n\
             gateway_mac = \"02:00:00:00:00:01\"\nmode = \"eni\"\n\
             [[security_groups]]\nname = \"g\"\nrules = [\n",
        );
        for r in 0..rules {
            s.push_str(&format!(
                "{{ direction = \"ingress\", protocol = \"tcp\", ports = \"{}\" }},\n",
                r + 1
            ));
        }
        s.push_str("]\n");
        s
    };
    parse(&eni(4095)).expect("4095 rules");
    let (k, p) = err(&eni(4096));
    assert_eq!(k, "security_groups[0].rules");
    assert!(p.contains("at most 4095"), "{p}");
}

mod no_panics {
    use super::BASE;
    use proptest::prelude::*;
    use vswitch::agent::compile::{Numbering, Runtime, compile};
    use vswitch::agent::validate::parse;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any edit of a valid file parses to a config or an error, and a config compiles
        /// (or says why not) without panicking.
        #[test]
        fn edited_files_never_panic(at in 0usize..1000, cut in 0usize..12, insert in "[ -~\n]{0,12}") {
            let at = at % BASE.len();
            let end = (at + cut).min(BASE.len());
            if BASE.is_char_boundary(at) && BASE.is_char_boundary(end) {
                let text = format!("{}{insert}{}", &BASE[..at], &BASE[end..]);
                if let Ok(cfg) = parse(&text) {
                    let _ = compile(&cfg, &mut Numbering::default(), Runtime::default());
                }
            }
        }
    }
}

#[test]
fn route_mode_through_the_vpc_router() {
    let route = with("[tunnel]\nvni = 100", "").replace(
        "mode = \"tunnel\"",
        "mode = \"route\"\nunderlay_interface = \"eth1\"",
    );
    // A peer without a MAC is reached through the router: the gateway (resolved by ARP) or
    // the next hop's MAC must be known.
    assert_eq!(err(&route).0, "peers[0].underlay_mac");
    let via_gw = route.replace(
        "underlay_interface = \"eth1\"",
        "underlay_interface = \"eth1\"\nunderlay_gateway = \"192.168.0.1\"",
    );
    let c = parse(&via_gw).unwrap();
    assert_eq!(c.underlay_gateway.unwrap().to_string(), "192.168.0.1");
    assert!(c.peers[0].underlay_mac.is_none());
    let via_mac = format!("{route}\n[egress]\nnext_hop_mac = \"02:00:00:00:00:01\"\n");
    parse(&via_mac).unwrap();
    // The gateway needs the uplink and is not our own address.
    let no_uplink = with(
        "mode = \"tunnel\"",
        "mode = \"tunnel\"\nunderlay_gateway = \"192.168.0.1\"",
    );
    assert_eq!(err(&no_uplink).0, "node.underlay_gateway");
    let own = via_gw.replace(
        "underlay_gateway = \"192.168.0.1\"",
        "underlay_gateway = \"192.168.0.11\"",
    );
    assert_eq!(err(&own).0, "node.underlay_gateway");
    // SNAT with only a gateway to resolve is fine; no_snat_cidrs are prefixes, route mode only.
    let snat = format!(
        "{via_gw}\n[egress]\nsnat = true\nno_snat_cidrs = [\"192.168.0.0/16\", \"10.0.0.0/8\"]\n"
    );
    let c = parse(&snat).unwrap();
    assert!(c.egress.snat);
    assert_eq!(c.egress.no_snat_cidrs.len(), 2);
    let bad = snat.replace("10.0.0.0/8", "10.0.0.1/8");
    assert_eq!(err(&bad).0, "egress.no_snat_cidrs[1]");
    let tunnel = with(
        "mode = \"tunnel\"",
        "mode = \"tunnel\"\nunderlay_interface = \"eth1\"",
    ) + "\n[egress]\nnext_hop_mac = \"02:00:00:00:00:01\"\nno_snat_cidrs = [\"192.168.0.0/16\"]\n";
    assert_eq!(err(&tunnel).0, "egress.no_snat_cidrs");
}
