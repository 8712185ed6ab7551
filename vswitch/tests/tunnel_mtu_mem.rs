//! The VXLAN port's MTU check and the ICMP answers to what it refuses, on an in-memory bridge
//! with a real VXLAN port over loopback (no root: the port's socket binds 0.0.0.0 on a free UDP
//! port and sends to itself). With no local address the underlay MTU is taken as 1500, so the
//! inner MTU is 1450: an untagged frame's IP packet may have 1450 bytes, a VLAN-tagged frame
//! 4 bytes more after the Ethernet header (the tag). What is refused is counted as
//! `tunnel_too_big` and answered on the input port: ICMP "fragmentation needed" for IPv4 with
//! DF, ICMPv6 "Packet Too Big" for IPv6, both advertising 1450; a flood of them gets at most
//! the forwarding thread's burst of answers (50) plus its rate (1000/s), the rest counted as
//! `icmp_rate_limited` (these tests send nothing through the tunnel: every frame is refused).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use encap::build::FrameBuilder;
use encap::wire::{icmpv4, icmpv6};

mod common;

const A_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const A4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const INNER_MTU: usize = 1450;

/// Port 1: the sender; port 2: what came back through the tunnel; port 10: VXLAN to itself.
fn bridge() -> common::MemBridge {
    let b = common::MemBridge::new(2, vswitch::datapath::Options::default());
    let port = std::net::UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    b.command(&[
        "add-port",
        "br0",
        &format!("vxm{port}"),
        "type=vxlan",
        "ofport=10",
        "options:remote_ip=127.0.0.1",
        "options:key=5",
        &format!("options:dst_port={port}"),
    ]);
    b.flows("in_port=1,actions=output:10\nin_port=10,actions=output:2");
    b
}

/// `tags` VLAN tags (802.1ad outside, 802.1Q inside), then an IPv4 UDP packet with DF of
/// `ip_len` bytes.
fn udp4(tags: &[u16], ip_len: usize) -> Vec<u8> {
    let mut f = FrameBuilder::eth(A_MAC, B_MAC);
    for (i, tci) in tags.iter().enumerate() {
        f = f.tag(if i + 1 < tags.len() { 0x88a8 } else { 0x8100 }, *tci);
    }
    let f = f
        .ipv4(A4, B4)
        .udp(40000, 5201)
        .payload(&vec![0x5a; ip_len - 28])
        .build();
    assert_eq!(f.len(), 14 + 4 * tags.len() + ip_len);
    f
}

/// An untagged IPv6 UDP packet of `ip_len` bytes.
fn udp6(ip_len: usize) -> Vec<u8> {
    let f = FrameBuilder::eth(A_MAC, B_MAC)
        .ipv6(A6, B6)
        .udp(40000, 5201)
        .payload(&vec![0xa5; ip_len - 48])
        .build();
    assert_eq!(f.len(), 14 + ip_len);
    f
}

/// Frames out of `ofport` until `n` have come or 2 s passed (the tunnel's loopback is
/// received by the datapath's poll loop).
fn wait_received(b: &mut common::MemBridge, ofport: u32, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(b.received(ofport));
        std::thread::sleep(Duration::from_millis(5));
    }
    got
}

/// Sends `frame` from port 1: whether the tunnel took it (it came back out of port 2) or
/// refused it (`tunnel_too_big` counted), and what port 1 got back.
fn send(b: &mut common::MemBridge, frame: &[u8]) -> (bool, Vec<Vec<u8>>) {
    let refused = b.drops("tunnel_too_big");
    b.send(1, frame);
    let answers = b.received(1);
    if b.drops("tunnel_too_big") > refused {
        return (false, answers);
    }
    let crossed = wait_received(b, 2, 1);
    assert_eq!(crossed, vec![frame.to_vec()], "taken but not carried");
    (true, answers)
}

/// The ICMP "fragmentation needed" answering `sent` (its Ethernet header `l3` bytes long):
/// addressed back, from the packet's destination, advertising `mtu`, quoting the IP header and
/// 8 bytes.
fn assert_frag_needed(sent: &[u8], l3: usize, mtu: usize, got: &[u8]) {
    assert_eq!(&got[..6], &sent[6..12]);
    assert_eq!(&got[6..12], &sent[..6]);
    assert_eq!(&got[12..l3], &sent[12..l3], "VLAN tags and EtherType kept");
    let ip = &got[l3..];
    assert_eq!((ip[0], ip[9]), (0x45, 1), "IPv4 carrying ICMP");
    assert_eq!(&ip[12..16], &B4.octets());
    assert_eq!(&ip[16..20], &A4.octets());
    let icmp = icmpv4::Packet::new_checked(&ip[20..]).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((ip[20], ip[21]), (3, icmpv4::CODE_FRAG_NEEDED));
    assert_eq!(u16::from_be_bytes([ip[26], ip[27]]) as usize, mtu);
    assert_eq!(icmp.payload(), &sent[l3..l3 + 28]);
}

#[test]
fn the_inner_mtu_counts_a_vlan_tag_only_when_the_frame_has_one() {
    let mut b = bridge();
    for (tags, ip_len, fits) in [
        (&[][..], INNER_MTU, true),
        (&[][..], INNER_MTU + 1, false),
        (&[][..], INNER_MTU + 4, false), // once let through: a 1504-byte outer packet
        (&[5][..], INNER_MTU, true),     // 1454 bytes after the Ethernet header
        (&[5][..], INNER_MTU + 1, false),
        (&[5, 6][..], INNER_MTU - 4, true), // one tag's allowance, not two
        (&[5, 6][..], INNER_MTU - 3, false),
    ] {
        let frame = udp4(tags, ip_len);
        let (taken, answers) = send(&mut b, &frame);
        let case = format!("tags {tags:?}, IP packet of {ip_len} bytes");
        assert_eq!(taken, fits, "{case}");
        if fits {
            assert!(answers.is_empty(), "{case}: {answers:02x?}");
        } else {
            assert_eq!(answers.len(), 1, "{case}: one frag-needed");
            // What a packet behind these tags may carry: a second tag takes 4 bytes of it, so
            // a sender that follows the advice fits.
            let mtu = if tags.len() == 2 {
                INNER_MTU - 4
            } else {
                INNER_MTU
            };
            assert_frag_needed(&frame, 14 + 4 * tags.len(), mtu, &answers[0]);
        }
    }
}

#[test]
fn an_ipv6_packet_too_big_for_the_tunnel_is_answered_with_packet_too_big() {
    let mut b = bridge();
    let (taken, answers) = send(&mut b, &udp6(INNER_MTU));
    assert!(taken && answers.is_empty(), "{answers:02x?}");

    for ip_len in [INNER_MTU + 1, 4000] {
        let sent = udp6(ip_len);
        let (taken, answers) = send(&mut b, &sent);
        assert!(!taken, "{ip_len}");
        assert_eq!(answers.len(), 1, "{ip_len}: one Packet Too Big");
        let got = &answers[0];
        assert_eq!(&got[..6], &A_MAC, "to the sender");
        assert_eq!(&got[6..12], &B_MAC);
        assert_eq!(&got[12..14], &[0x86, 0xdd]);
        let ip = &got[14..];
        // The reply is as long as fits 1280 bytes: the quote is cut there.
        let quoted = ip_len.min(1280 - 48);
        assert_eq!(ip.len(), 48 + quoted, "{ip_len}");
        assert_eq!(ip[0] >> 4, 6);
        assert_eq!(usize::from(u16::from_be_bytes([ip[4], ip[5]])), 8 + quoted);
        assert_eq!(ip[6], 58, "next header ICMPv6");
        assert_eq!(&ip[8..24], &B6.octets(), "from the packet's destination");
        assert_eq!(&ip[24..40], &A6.octets(), "to its source");
        let icmp = icmpv6::Packet::new_checked(&ip[40..]).unwrap();
        assert_eq!(icmp.msg_type(), icmpv6::Icmpv6Type::PacketTooBig);
        assert_eq!(icmp.msg_code(), 0);
        assert!(icmp.verify_checksum(&B6, &A6), "ICMPv6 checksum");
        assert_eq!(u32::from_be_bytes(ip[44..48].try_into().unwrap()), 1450);
        assert_eq!(icmp.payload(), &sent[14..14 + quoted]);
        assert_eq!(
            b.drops("tunnel_too_big"),
            if ip_len == 4000 { 2 } else { 1 }
        );
    }

    // An ICMPv6 error is never answered with another.
    let error = FrameBuilder::eth(A_MAC, B_MAC)
        .ipv6(A6, B6)
        .icmp(1, 4)
        .payload(&[0; 1500])
        .build();
    let (taken, answers) = send(&mut b, &error);
    assert!(!taken && answers.is_empty(), "{answers:02x?}");
}

/// Runs `n` copies of `frame` through the bridge from port 1 in one call on the forwarding
/// thread, as one burst arriving; returns how long the thread took over them (what the reply
/// budget may have refilled meanwhile).
fn burst(b: &common::MemBridge, frame: &[u8], n: usize) -> Duration {
    let idx = b
        .switch
        .with_bridge("br0", |br| Ok(br.dp_index))
        .expect("br0");
    let frame = frame.to_vec();
    b.switch.dp.call(move |dp| {
        let t = Instant::now();
        for _ in 0..n {
            dp.inject(idx, 1, &frame);
        }
        t.elapsed()
    })
}

/// Tokens the reply budget (1000/s) gains in `d`, rounded up.
fn refilled(d: Duration) -> usize {
    d.as_millis() as usize + 1
}

#[test]
fn a_flood_of_oversized_frames_gets_a_bounded_number_of_icmp_replies() {
    let mut b = bridge();
    let frame = udp4(&[], INNER_MTU + 1);
    let took = burst(&b, &frame, 200);
    let answers = b.received(1);
    assert!(
        answers.len() >= 50,
        "the burst is answered: {} replies",
        answers.len()
    );
    assert!(
        answers.len() <= 50 + refilled(took),
        "{} replies to 200 frames in {took:?}: no more than the burst and the rate",
        answers.len()
    );
    for a in &answers {
        assert_frag_needed(&frame, 14, INNER_MTU, a);
    }
    // Every frame is dropped and counted as before; the replies not sent are counted apart,
    // outside the total of packets dropped.
    assert_eq!(b.drops("tunnel_too_big"), 200);
    assert_eq!(b.drops("icmp_rate_limited"), 200 - answers.len() as u64);
    let text = b.command(&["dump-drops", "br0"]);
    assert!(text.starts_with("total dropped: 200\n"), "{text}");
}

#[test]
fn icmp_replies_resume_once_the_budget_has_refilled() {
    let mut b = bridge();
    let v4 = udp4(&[], INNER_MTU + 1);
    let v6 = udp6(INNER_MTU + 1);
    // Spend the budget: the last frames of a long burst are not answered.
    let took = burst(&b, &v4, 200);
    let first = b.received(1).len();
    let limited = b.drops("icmp_rate_limited");
    assert!(
        limited > 0 && first <= 50 + refilled(took),
        "{first} replies to 200 frames in {took:?}"
    );
    // 60 ms later (at 1000/s) the budget is full again: IPv6 and IPv4 both answered.
    std::thread::sleep(Duration::from_millis(60));
    burst(&b, &v6, 10);
    burst(&b, &v4, 10);
    let answers = b.received(1);
    assert_eq!(answers.len(), 20, "every frame answered after the refill");
    assert_eq!(&answers[0][12..14], &[0x86, 0xdd], "Packet Too Big");
    assert_frag_needed(&v4, 14, INNER_MTU, &answers[19]);
    assert_eq!(b.drops("icmp_rate_limited"), limited);
}

/// `output(port=P,max_len=N)` to a VXLAN port encapsulates the cut frame: it comes back out of
/// the tunnel with its first N bytes; the tunnel's MTU check sees the cut frame, so an
/// oversized one cut short crosses.
#[test]
fn output_trunc_through_the_tunnel_carries_the_cut_frame() {
    let mut b = bridge();
    b.flows("in_port=1,actions=output(port=10,max_len=60)\nin_port=10,actions=output:2");
    for ip_len in [200, INNER_MTU + 100] {
        let frame = udp4(&[], ip_len);
        b.send(1, &frame);
        let crossed = wait_received(&mut b, 2, 1);
        assert_eq!(crossed, vec![frame[..60].to_vec()], "ip_len {ip_len}");
    }
    assert_eq!(b.drops("tunnel_too_big"), 0);
}

/// NORMAL tags a frame for each port it leaves by: an answer about a frame too big for the
/// tunnel goes back tagged as the frame came, not as the tunnel port wanted it.
#[test]
fn an_answer_through_normal_carries_the_tag_the_frame_came_with() {
    let mut b = bridge();
    b.flows("actions=NORMAL");
    let listed = b.command(&["list-ports", "br0"]);
    let tunnel = listed
        .lines()
        .find(|l| l.starts_with("vxm"))
        .expect("the tunnel port")
        .to_string();
    // Port 1 an access port of VLAN 10: the tunnel (a trunk) gets the frame tagged 10.
    b.command(&["set-port", "br0", "m1", "tag=10"]);
    let frame = udp4(&[], INNER_MTU + 1);
    b.send(1, &frame);
    assert_eq!(b.drops("tunnel_too_big"), 1);
    let answers = b.received(1);
    assert_eq!(answers.len(), 1, "{answers:02x?}");
    assert_frag_needed(&frame, 14, INNER_MTU, &answers[0]);
    let flooded = b.received(2);
    assert_eq!(flooded.len(), 1, "flooded to the other port");
    assert_eq!(&flooded[0][12..16], &[0x81, 0, 0, 10], "tagged for a trunk");

    // Port 1 a trunk, the tunnel an access port of VLAN 5: the tag comes off for the tunnel
    // and goes back on the answer.
    b.command(&["set-port", "br0", "m1", "tag="]);
    b.command(&["set-port", "br0", &tunnel, "tag=5"]);
    let frame = udp4(&[5], INNER_MTU + 1);
    b.send(1, &frame);
    assert_eq!(b.drops("tunnel_too_big"), 2);
    let answers = b.received(1);
    assert_eq!(answers.len(), 1, "{answers:02x?}");
    assert_frag_needed(&frame, 18, INNER_MTU, &answers[0]);
    assert_eq!(b.received(2).len(), 1, "flooded to the other port");
}
