//! NORMAL, FLOOD and ALL on in-memory ports (no root): the metadata a flow writes before them
//! (tunnel fields, `in_port`), reserved destinations, packet-outs from no port, tunnels and
//! ports set down. The VXLAN ports are real UDP sockets on loopback; what they send is read
//! by a socket of the test's own on another loopback address.

use std::net::UdpSocket;
use std::time::Duration;

use encap::build::FrameBuilder;
use vswitch::datapath;

mod common;

const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0b];
const POD2_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0c];

type Bench = common::MemBridge;

fn bench(n: u32) -> Bench {
    Bench::new(n, datapath::Options::default())
}

/// A broadcast ARP request from POD_MAC.
fn arp_broadcast() -> Vec<u8> {
    FrameBuilder::eth(POD_MAC, [0xff; 6])
        .arp(1, POD_MAC, [10, 0, 0, 1], [0; 6], [10, 0, 0, 2])
        .build()
}

fn udp(src: [u8; 6], dst: [u8; 6], dport: u16) -> Vec<u8> {
    FrameBuilder::eth(src, dst)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1000, dport)
        .build()
}

/// Adds VXLAN port `name` with `ofport`, bound to 127.0.0.1:`udp_port`, with `remote` and
/// `key` (an address / VNI, or `flow`).
fn add_tunnel(b: &Bench, name: &str, ofport: u32, udp_port: u16, remote: &str, key: &str) {
    b.command(&[
        "add-port",
        "br0",
        name,
        "type=vxlan",
        &format!("ofport={ofport}"),
        &format!("options:remote_ip={remote}"),
        &format!("options:key={key}"),
        "options:local_ip=127.0.0.1",
        &format!("options:dst_port={udp_port}"),
    ]);
}

/// A socket standing for a remote VTEP at `ip:udp_port` (a loopback address).
fn vtep(ip: &str, udp_port: u16) -> UdpSocket {
    let s = UdpSocket::bind((ip, udp_port)).expect("bind the remote VTEP's socket");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// The VNI and inner frame of the next VXLAN datagram the socket receives (None: none came).
fn vxlan_rx(s: &UdpSocket) -> Option<(u32, Vec<u8>)> {
    let mut buf = [0u8; 2048];
    let n = s.recv(&mut buf).ok()?;
    assert!(n >= 8 + 14, "short VXLAN datagram: {n} bytes");
    assert_eq!(buf[0], 0x08, "VXLAN I flag");
    let vni = u32::from_be_bytes([0, buf[4], buf[5], buf[6]]);
    Some((vni, buf[8..n].to_vec()))
}

/// FLOOD through a VXLAN port with `options:key=flow` uses the `tun_id` the flow set, not the
/// packet's (0): the broadcast must not leak into another tenant's VNI. And a VNI taken from a
/// packet field (`move`) keeps the megaflow from serving a packet with another value.
#[test]
fn flood_sends_with_the_tun_id_the_flow_set() {
    let mut b = bench(2);
    add_tunnel(&b, "vxkey", 9, 47911, "127.0.0.2", "flow");
    let remote = vtep("127.0.0.2", 47911);
    b.flows(
        "priority=10,in_port=1,arp,actions=set_field:5->tun_id,FLOOD\n\
         priority=10,in_port=1,udp,actions=move:NXM_OF_UDP_DST[]->NXM_NX_TUN_ID[0..15],ALL",
    );
    b.send(1, &arp_broadcast());
    assert_eq!(b.received(2).len(), 1, "flooded to the other port");
    let (vni, inner) = vxlan_rx(&remote).expect("flooded into the tunnel");
    assert_eq!(vni, 5, "the VNI the flow set");
    assert_eq!(inner, arp_broadcast());
    for dport in [7, 8, 7] {
        b.send(1, &udp(POD_MAC, POD2_MAC, dport));
        assert_eq!(b.received(2).len(), 1);
        let (vni, _) = vxlan_rx(&remote).expect("ALL into the tunnel");
        assert_eq!(
            vni,
            u32::from(dport),
            "the VNI moved from this packet's UDP port"
        );
    }
}

/// NORMAL and FLOOD to a flow-based tunnel (`remote_ip=flow`) send to the `tun_dst` the flow
/// set; NORMAL learns on, and floods around, the `in_port` the flow wrote.
#[test]
fn normal_and_flood_use_the_tun_dst_and_in_port_the_flow_set() {
    let mut b = bench(3);
    add_tunnel(&b, "vxflow", 9, 47912, "flow", "100");
    let remote = vtep("127.0.0.3", 47912);
    b.flows(
        "priority=10,in_port=1,arp,actions=set_field:127.0.0.3->tun_dst,NORMAL\n\
         priority=10,in_port=1,udp,tp_dst=7,actions=set_field:127.0.0.3->tun_dst,FLOOD\n\
         priority=10,in_port=3,actions=set_field:2->in_port,NORMAL\n\
         priority=0,actions=NORMAL",
    );
    b.send(1, &arp_broadcast());
    assert_eq!(b.received(2).len(), 1);
    assert_eq!(b.received(3).len(), 1);
    let (vni, _) = vxlan_rx(&remote).expect("NORMAL flooded into the flow-based tunnel");
    assert_eq!(vni, 100);
    b.send(1, &udp(POD_MAC, [0xff; 6], 7));
    assert_eq!(b.received(2).len(), 1);
    assert_eq!(b.received(3).len(), 1);
    let (vni, _) = vxlan_rx(&remote).expect("FLOOD into the flow-based tunnel");
    assert_eq!(vni, 100);

    // From port 3, but the flow says port 2: learned on 2, flooded to all but 2.
    for p in 1..=3 {
        b.received(p);
    }
    b.send(3, &udp(POD2_MAC, [0xff; 6], 9));
    assert_eq!(b.received(1).len(), 1);
    assert_eq!(
        b.received(3).len(),
        1,
        "port 3 is not the input port the flow set"
    );
    assert!(
        b.received(2).is_empty(),
        "sent back out of the input port the flow set"
    );
    // POD2_MAC is behind port 2 now.
    b.send(1, &udp(POD_MAC, POD2_MAC, 9));
    assert_eq!(b.received(2).len(), 1, "POD2_MAC learned on port 2");
    assert!(b.received(3).is_empty(), "POD2_MAC learned on port 3");
}

/// NORMAL drops frames to reserved addresses (STP, LLDP, Cisco CDP/PVST+...) as Open vSwitch
/// does, counted as `normal_reserved_mac`, without learning their source; FLOOD still sends
/// them.
#[test]
fn normal_drops_reserved_destinations_flood_sends_them() {
    let mut b = bench(3);
    let before = b.drops("normal_reserved_mac");
    let reserved: [[u8; 6]; 5] = [
        [0x01, 0x80, 0xc2, 0, 0, 0x00],       // STP
        [0x01, 0x80, 0xc2, 0, 0, 0x0e],       // LLDP
        [0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc], // CDP
        [0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcd], // PVST+
        [0x01, 0x00, 0x0c, 0xcd, 0xcd, 0xcd],
    ];
    for dst in reserved {
        let f = FrameBuilder::eth(POD_MAC, dst)
            .ethertype(0x88cc)
            .payload(&[0; 46])
            .build();
        b.send(1, &f);
        for p in 1..=3 {
            assert!(b.received(p).is_empty(), "{dst:02x?} sent out of port {p}");
        }
    }
    assert_eq!(
        b.drops("normal_reserved_mac"),
        before + reserved.len() as u64
    );
    // POD_MAC was not learned: a frame to it is flooded.
    b.send(2, &udp(POD2_MAC, POD_MAC, 9));
    assert_eq!(b.received(1).len(), 1);
    assert_eq!(
        b.received(3).len(),
        1,
        "POD_MAC learned from a reserved frame"
    );
    // Other multicast is flooded as before.
    b.send(1, &udp(POD_MAC, [0x01, 0x00, 0x5e, 0, 0, 1], 9));
    assert_eq!(b.received(2).len(), 1);
    assert_eq!(b.received(3).len(), 1);
    // An explicit FLOOD sends reserved frames.
    b.flows("priority=0,actions=FLOOD");
    let lldp = FrameBuilder::eth(POD_MAC, [0x01, 0x80, 0xc2, 0, 0, 0x0e])
        .ethertype(0x88cc)
        .payload(&[0; 46])
        .build();
    b.send(1, &lldp);
    assert_eq!(b.received(2).len(), 1);
    assert_eq!(b.received(3).len(), 1);
    assert_eq!(
        b.drops("normal_reserved_mac"),
        before + reserved.len() as u64
    );
}

/// A negotiated OpenFlow session on the bench's bridge, fed bytes directly.
fn session(b: &Bench) -> vswitch::ofserver::session::Session {
    let mut s = vswitch::ofserver::session::Session::new(
        std::sync::Arc::downgrade(&b.switch),
        "br0".into(),
    );
    let mut out = Vec::new();
    assert!(s.input(&[4, 0, 0, 8, 0, 0, 0, 1], &mut out).open);
    s
}

fn packet_out(
    s: &mut vswitch::ofserver::session::Session,
    in_port: u32,
    actions: &str,
    frame: &[u8],
) {
    let actions = flowtable::text::parse_actions(actions, &flowtable::Match::any()).unwrap();
    let po = openflow::Message::PacketOut(openflow::PacketOut {
        buffer_id: openflow::flow::NO_BUFFER,
        in_port,
        actions: openflow::convert::actions_out(&actions.apply).unwrap(),
        data: frame.to_vec(),
    });
    let mut out = Vec::new();
    let step = s.input(&openflow::encode(&po, 7).unwrap(), &mut out);
    assert!(
        step.open && out.is_empty(),
        "packet-out refused: {out:02x?}"
    );
}

/// A packet-out from CONTROLLER (or NONE) through NORMAL learns nothing (there is no such
/// port): later unicasts to its source are flooded, not dropped towards a port that does not
/// exist. It still goes by what was learned, and floods to every port otherwise.
#[test]
fn a_packet_out_from_no_port_through_normal_learns_nothing() {
    let mut b = bench(3);
    let mut s = session(&b);
    for in_port in [0xffff_fffd, 0xffff_ffff] {
        packet_out(&mut s, in_port, "NORMAL", &arp_broadcast());
        for p in 1..=3 {
            assert_eq!(b.received(p).len(), 1, "flooded to port {p}");
        }
    }
    let before = b.drops("port_down");
    b.send(2, &udp(POD2_MAC, POD_MAC, 9));
    assert_eq!(
        b.received(1).len(),
        1,
        "POD_MAC learned on a port that does not exist"
    );
    assert_eq!(b.received(3).len(), 1);
    assert_eq!(b.drops("port_down"), before);
    // POD2_MAC was learned on port 2 just now: the packet-out goes there only.
    packet_out(&mut s, 0xffff_fffd, "NORMAL", &udp(POD_MAC, POD2_MAC, 9));
    assert_eq!(b.received(2).len(), 1);
    assert!(b.received(1).is_empty() && b.received(3).is_empty());
}

/// FLOOD and ALL send from one tunnel port into another (every port but the input port, as
/// Open vSwitch); NORMAL keeps its split horizon between tunnels.
#[test]
fn flood_and_all_send_from_a_tunnel_into_another_normal_does_not() {
    let mut b = bench(1);
    add_tunnel(&b, "vxa", 9, 47913, "127.0.0.4", "7");
    add_tunnel(&b, "vxb", 10, 47914, "127.0.0.5", "8");
    let remote_b = vtep("127.0.0.5", 47914);
    for action in ["FLOOD", "ALL"] {
        b.flows(&format!("priority=0,actions={action}"));
        b.send(9, &arp_broadcast());
        assert_eq!(b.received(1).len(), 1, "{action}");
        let (vni, _) = vxlan_rx(&remote_b).unwrap_or_else(|| panic!("{action}: not into vxb"));
        assert_eq!(vni, 8);
    }
    b.flows("priority=0,actions=NORMAL");
    b.send(9, &arp_broadcast());
    assert_eq!(b.received(1).len(), 1);
    assert!(
        vxlan_rx(&remote_b).is_none(),
        "NORMAL sent from a tunnel into another"
    );
}

/// A flood passes ports set down or no-forward by without counting drops (as Open vSwitch);
/// an explicit output to such a port is still counted.
#[test]
fn flood_passes_down_and_no_forward_ports_silently() {
    use openflow::switch::port_config::{NO_FWD, PORT_DOWN};
    let mut b = bench(4);
    b.switch.set_port_config("br0", "m2", PORT_DOWN).unwrap();
    b.switch.set_port_config("br0", "m3", NO_FWD).unwrap();
    let tx_dropped = |b: &Bench| {
        let ports = common::parse_ports(&b.command(&["dump-ports", "br0"]));
        (ports[&2].tx_dropped, ports[&3].tx_dropped)
    };
    let (down, no_fwd, tx) = (b.drops("port_down"), b.drops("port_no_fwd"), tx_dropped(&b));
    for action in ["NORMAL", "FLOOD", "ALL"] {
        b.flows(&format!("priority=0,actions={action}"));
        b.send(1, &arp_broadcast());
        assert_eq!(b.received(4).len(), 1, "{action}");
        assert!(
            b.received(2).is_empty() && b.received(3).is_empty(),
            "{action}"
        );
    }
    assert_eq!(b.drops("port_down"), down);
    assert_eq!(b.drops("port_no_fwd"), no_fwd);
    assert_eq!(tx_dropped(&b), tx);
    // output:2 / output:3 by name: counted as before.
    b.flows("priority=0,actions=output:2,output:3");
    b.send(1, &arp_broadcast());
    assert_eq!(b.drops("port_down"), down + 1);
    assert_eq!(b.drops("port_no_fwd"), no_fwd + 1);
}
