//! Out-of-order IPv4 fragments through conntrack and a Service's DNAT, on in-memory ports (no
//! root): a later fragment that arrives before its first fragment is held, then forwarded with
//! the connection's NAT once the first fragment has passed; the hold is bounded in count and
//! time, and what it drops or refuses is counted.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use conntrack::Counter;
use encap::build::FrameBuilder;
use encap::{FlowKey, checksum};
use vswitch::datapath;

const CLIENT_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0b];
const GW_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 0, 0, 0xfe];
const CLIENT: [u8; 4] = [172, 16, 1, 11];
const VIP: [u8; 4] = [10, 247, 0, 53];
const BACKEND: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 31);

mod common;

/// Port 1: the client; port 2: the backend of UDP Service 10.247.0.53:53 → .31:5353.
struct Bridge(common::MemBridge);

impl Bridge {
    fn new(ct: conntrack::Config) -> Bridge {
        let opts = datapath::Options {
            conntrack: ct,
            ..datapath::Options::default()
        };
        let b = common::MemBridge::new(2, opts);
        b.flows(
            "table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)\n\
             table=1,priority=100,ct_state=+new+trk,udp,nw_dst=10.247.0.53,tp_dst=53,actions=ct(commit,table=2,zone=1,nat(dst=172.16.1.31:5353))\n\
             table=1,priority=80,ct_state=+new+trk,ip,actions=ct(commit,table=2,zone=1)\n\
             table=1,priority=70,ct_state=+est+trk,ip,actions=resubmit(,2)\n\
             table=1,priority=60,ct_state=+inv+trk,ip,actions=drop\n\
             table=2,priority=10,ip,actions=output:2",
        );
        Bridge(b)
    }

    fn send(&self, frame: &[u8]) {
        self.0.send(1, frame);
    }

    fn received(&mut self) -> Vec<Vec<u8>> {
        self.0.received(2)
    }

    fn ct_counter(&self, c: Counter) -> u64 {
        self.0
            .switch
            .dp
            .call(move |dp| dp.conntrack().counters().get(c))
    }

    fn held(&self) -> usize {
        self.0.switch.dp.call(|dp| dp.conntrack().held_fragments())
    }
}

/// A 2000-byte UDP datagram to the Service as two IPv4 fragments (first, last).
fn datagram(ident: u16, sport: u16) -> (Vec<u8>, Vec<u8>) {
    let whole = FrameBuilder::eth(CLIENT_MAC, GW_MAC)
        .ipv4(CLIENT, VIP)
        .ident(ident)
        .udp(sport, 53)
        .payload(&[7u8; 2000])
        .build();
    let l4 = &whole[14 + 20..];
    let first_len = 1480;
    let frag = |offset: usize, data: &[u8], more: bool| {
        FrameBuilder::eth(CLIENT_MAC, GW_MAC)
            .ipv4(CLIENT, VIP)
            .ident(ident)
            .fragment(more, (offset / 8) as u16)
            .protocol(17)
            .payload(data)
            .build()
    };
    (
        frag(0, &l4[..first_len], true),
        frag(first_len, &l4[first_len..], false),
    )
}

fn key_of(frame: &[u8]) -> FlowKey {
    let mut k = FlowKey::default();
    assert!(encap::extract(frame, &mut k).is_ok());
    k
}

#[test]
fn a_later_fragment_first_waits_then_follows_its_first_fragment_with_the_dnat() {
    let mut b = Bridge::new(conntrack::Config::default());
    let (first, last) = datagram(0x4242, 40000);
    b.send(&last);
    assert!(b.received().is_empty(), "held, not forwarded yet");
    assert_eq!(b.held(), 1);
    b.send(&first);
    let out = b.received();
    assert_eq!(out.len(), 2, "both fragments must leave");
    for f in &out {
        let k = key_of(f);
        assert_eq!(
            k.nw_dst,
            u32::from(BACKEND),
            "a fragment left without the DNAT"
        );
        assert_eq!(checksum::ipv4_header(&f[14..34]), 0);
    }
    // The first fragment leaves first (it released the other), with the port translated.
    assert_eq!(key_of(&out[0]).tp_dst, 5353);
    assert_eq!(
        key_of(&out[1]).nw_frag & encap::flowkey::FRAG_LATER,
        encap::flowkey::FRAG_LATER
    );
    assert_eq!(out[1].len(), last.len());
    assert_eq!(b.held(), 0);
    assert_eq!(b.ct_counter(Counter::FragHeld), 1);
    assert_eq!(b.ct_counter(Counter::FragReleased), 1);
    assert_eq!(b.ct_counter(Counter::InvalidFragment), 0);

    // Two datagrams interleaved, each with its later fragment first.
    let (f1, l1) = datagram(0x1111, 40001);
    let (f2, l2) = datagram(0x2222, 40002);
    b.send(&l1);
    b.send(&l2);
    b.send(&f2);
    b.send(&f1);
    let out = b.received();
    let ports: Vec<(u16, bool)> = out
        .iter()
        .map(|f| {
            let k = key_of(f);
            assert_eq!(k.nw_dst, u32::from(BACKEND));
            (u16::from_be_bytes([f[18], f[19]]), k.nw_frag & 2 != 0)
        })
        .collect();
    assert_eq!(
        ports,
        [
            (0x2222, false),
            (0x2222, true),
            (0x1111, false),
            (0x1111, true)
        ],
        "each later fragment follows its own first fragment"
    );
}

#[test]
fn the_hold_is_bounded_and_what_it_cannot_keep_is_counted() {
    let mut b = Bridge::new(conntrack::Config {
        frag_hold_slots: 2,
        frag_hold_bytes: 1000,
        frag_hold_timeout: Duration::from_millis(200),
        ..conntrack::Config::default()
    });
    // A later fragment larger than a slot: refused, invalid as before (and dropped by the flow).
    let (_, big_last) = {
        let whole = FrameBuilder::eth(CLIENT_MAC, GW_MAC)
            .ipv4(CLIENT, VIP)
            .ident(9)
            .fragment(false, 185)
            .protocol(17)
            .payload(&[1u8; 1200])
            .build();
        ((), whole)
    };
    b.send(&big_last);
    assert_eq!(b.ct_counter(Counter::FragHoldTooBig), 1);
    assert_eq!(b.ct_counter(Counter::InvalidFragment), 1);
    // Three lone later fragments: two held, the third refused (hold full).
    for id in 1..=3u16 {
        b.send(&datagram(id, 41000 + id).1);
    }
    assert_eq!(b.held(), 2);
    assert_eq!(b.ct_counter(Counter::FragHoldFull), 1);
    assert!(b.received().is_empty());
    // Their first fragments never come: the housekeeping drops them after the timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.held() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.held(), 0, "held fragments must time out");
    assert_eq!(b.ct_counter(Counter::FragHoldExpired), 2);
    // A first fragment after the timeout finds nothing held: only it leaves.
    b.send(&datagram(1, 41001).0);
    assert_eq!(b.received().len(), 1);
    assert_eq!(b.ct_counter(Counter::FragReleased), 0);
}

#[test]
fn with_the_hold_disabled_a_later_fragment_first_is_invalid() {
    let mut b = Bridge::new(conntrack::Config {
        frag_hold_slots: 0,
        ..conntrack::Config::default()
    });
    let (first, last) = datagram(7, 40000);
    b.send(&last);
    b.send(&first);
    assert_eq!(b.received().len(), 1, "only the first fragment");
    assert_eq!(b.ct_counter(Counter::InvalidFragment), 1);
    assert_eq!(b.ct_counter(Counter::FragHoldFull), 1);
}

/// The API directly: `process_frame` holds an IPv4 later fragment ahead of its first one, and
/// hands it back with its metadata once the first fragment passed; an IPv6 one is held too,
/// by its own datagram (addresses and Fragment header identification).
#[test]
fn process_frame_holds_later_fragments_and_releases_with_the_metadata() {
    use conntrack::{Conntrack, CtAction, PacketFacts};
    use encap::flowkey::{FRAG_ANY, FRAG_LATER};
    let mut ct = Conntrack::new(conntrack::Config::default()).unwrap();
    let act = CtAction {
        zone: 1,
        commit: true,
        ..CtAction::default()
    };
    let facts = PacketFacts {
        ip_id: 0x77,
        ..PacketFacts::default()
    };
    let later = FlowKey {
        in_port: 4,
        tun_id: 9,
        eth_type: 0x0800,
        nw_src: 1,
        nw_dst: 2,
        nw_proto: 17,
        nw_frag: FRAG_ANY | FRAG_LATER,
        ..FlowKey::default()
    };
    let r = ct.process_frame(&later, &facts, &act, 0, b"later-bytes", &later);
    assert!(r.held && r.invalid.is_none());
    let v6 = FlowKey {
        eth_type: 0x86dd,
        ipv6_src: [1; 16],
        ipv6_dst: [2; 16],
        ..later
    };
    let r6 = ct.process_frame(&v6, &facts, &act, 0, b"v6", &v6);
    assert!(r6.held && r6.invalid.is_none());
    assert_eq!(ct.held_fragments(), 2);
    let mut out = Vec::new();
    assert_eq!(ct.take_released_fragment(&mut out), None);
    let first = FlowKey {
        nw_frag: FRAG_ANY,
        tp_src: 1000,
        tp_dst: 53,
        ..later
    };
    let r = ct.process_frame(&first, &facts, &act, 1, b"first", &first);
    assert!(!r.held && r.invalid.is_none());
    assert!(ct.has_released_fragments());
    let meta = ct.take_released_fragment(&mut out).unwrap();
    assert_eq!((meta.in_port, meta.tun_id), (4, 9));
    assert_eq!(out, b"later-bytes");
    assert!(!ct.has_released_fragments());
    assert_eq!(
        ct.held_fragments(),
        1,
        "the IPv6 one waits for its own first fragment"
    );
    // Run again, it now finds its first fragment's ports and the committed connection.
    let again = ct.process_frame(&later, &facts, &act, 2, &out.clone(), &later);
    assert!(
        !again.held && again.invalid.is_none() && again.conn.is_some(),
        "{again:?}"
    );
}

/// Two IPv6 UDP datagrams from the same client to the same address, each as two fragments
/// (first, later) with its own Fragment header identification.
fn v6_datagram(id: u32, sport: u16, dport: u16) -> (Vec<u8>, Vec<u8>) {
    let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let (client, vip) = (a("fd00:0:16::11"), a("fd00:0:96::53"));
    let mut udp = Vec::new();
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&(8u16 + 64).to_be_bytes());
    udp.extend_from_slice(&[0x12, 0x34]); // checksum: not checked on the way
    udp.extend_from_slice(&[5u8; 64]);
    let frag = |offset: usize, data: &[u8], more: bool| {
        let mut f = Vec::new();
        f.extend_from_slice(&GW_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(8 + data.len() as u16).to_be_bytes());
        f.extend_from_slice(&[44, 64]);
        f.extend_from_slice(&client);
        f.extend_from_slice(&vip);
        f.extend_from_slice(&[17, 0]);
        f.extend_from_slice(&((offset as u16) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(data);
        f
    };
    (frag(0, &udp[..56], true), frag(56, &udp[56..], false))
}

/// Each IPv6 fragment sent: its destination, its Fragment header's identification, and
/// whether it is a later fragment.
fn v6_seen(frames: &[Vec<u8>]) -> Vec<([u8; 16], u32, bool)> {
    frames
        .iter()
        .map(|f| {
            let k = key_of(f);
            let id = u32::from_be_bytes([f[58], f[59], f[60], f[61]]);
            (k.ipv6_dst, id, k.nw_frag & encap::flowkey::FRAG_LATER != 0)
        })
        .collect()
}

/// The Service flows of the IPv6 tests: a DNAT to [fd00:0:16::31]:5353 for UDP to
/// [fd00:0:96::53]:53, any other new connection committed as it is; out of port 2.
const V6_SERVICE_FLOWS: &str = "table=0,priority=100,ipv6,actions=ct(table=1,zone=1,nat)\n\
     table=1,priority=100,ct_state=+new+trk,udp6,ipv6_dst=fd00:0:96::53,tp_dst=53,actions=ct(commit,table=2,zone=1,nat(dst=[fd00:0:16::31]:5353))\n\
     table=1,priority=80,ct_state=+new+trk,ipv6,actions=ct(commit,table=2,zone=1)\n\
     table=1,priority=70,ct_state=+est+trk,ipv6,actions=resubmit(,2)\n\
     table=1,priority=60,ct_state=+inv+trk,ipv6,actions=drop\n\
     table=2,priority=10,ipv6,actions=output:2";

/// IPv6 later fragments ahead of their first ones wait in the hold, each by its own
/// datagram, and follow their first fragment with its connection's DNAT.
#[test]
fn ipv6_later_fragments_first_wait_and_follow_their_own_first_fragment() {
    let mut b = common::MemBridge::new(2, datapath::Options::default());
    b.flows(V6_SERVICE_FLOWS);
    let (f1, l1) = v6_datagram(0x1111_0001, 40001, 53); // to the Service: DNAT
    let (f2, l2) = v6_datagram(0x2222_0002, 40002, 54); // not a Service: as sent
    for f in [&l1, &l2] {
        b.send(1, f);
    }
    assert!(b.received(2).is_empty(), "later fragments went ahead");
    assert_eq!(b.switch.dp.call(|dp| dp.conntrack().held_fragments()), 2);
    b.send(1, &f2);
    b.send(1, &f1);
    let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let seen = v6_seen(&b.received(2));
    assert_eq!(
        seen,
        [
            (a("fd00:0:96::53"), 0x2222_0002, false),
            (a("fd00:0:96::53"), 0x2222_0002, true),
            (a("fd00:0:16::31"), 0x1111_0001, false),
            (a("fd00:0:16::31"), 0x1111_0001, true),
        ],
        "each later fragment after its own first fragment, with its connection's NAT"
    );
    assert_eq!(b.switch.dp.call(|dp| dp.conntrack().held_fragments()), 0);
    assert_eq!(b.drops("ct_invalid"), 0);
}

#[test]
fn interleaved_ipv6_datagrams_keep_their_own_connection_by_fragment_id() {
    // Later fragments carry no ports: conntrack finds them from their first fragment, by
    // addresses and identification. IPv6 datagrams between the same two hosts differ only by
    // the Fragment header's identification; without it, the second first fragment took the
    // first datagram's place and its later fragment left with the other connection's NAT.
    let mut b = common::MemBridge::new(2, datapath::Options::default());
    b.flows(V6_SERVICE_FLOWS);
    let (f1, l1) = v6_datagram(0x1111_0001, 40001, 53); // to the Service: DNAT
    let (f2, l2) = v6_datagram(0x2222_0002, 40002, 54); // not a Service: as sent
    for f in [&f1, &f2, &l1, &l2] {
        b.send(1, f);
    }
    let out = b.received(2);
    let backend: [u8; 16] = "fd00:0:16::31"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let vip: [u8; 16] = "fd00:0:96::53"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let seen = v6_seen(&out);
    assert_eq!(
        seen,
        [
            (backend, 0x1111_0001, false),
            (vip, 0x2222_0002, false),
            (backend, 0x1111_0001, true),
            (vip, 0x2222_0002, true),
        ],
        "each later fragment goes with its own datagram's connection"
    );
    assert_eq!(key_of(&out[0]).tp_dst, 5353);
    assert_eq!(b.drops("ct_invalid"), 0);
}
