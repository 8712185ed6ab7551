//! The datapath pipeline end to end on in-memory ports: no root, no namespaces. Frames are
//! injected as if received on a port and read back from the peers of the output ports.

use std::net::Ipv4Addr;

use encap::build::FrameBuilder;
use encap::{FlowKey, checksum};
use vswitch::datapath;

const GW_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 0, 0, 0xfe];
const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0b];
const POD2_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0c];

mod common;

/// Bridge `br0` with in-memory ports 1..=n (see `common::MemBridge`).
type Bench = common::MemBridge;

fn bench(n: u32) -> Bench {
    Bench::new(n, datapath::Options::default())
}

/// A UDP datagram from the first pod (POD_MAC, 10.0.0.1:1) to the second (POD2_MAC,
/// 10.0.0.2:2).
fn pod_udp() -> Vec<u8> {
    FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1, 2)
        .build()
}

fn key_of(frame: &[u8]) -> FlowKey {
    let mut k = FlowKey::default();
    let parsed = encap::extract(frame, &mut k);
    assert!(
        parsed.is_ok(),
        "switch sent a malformed frame: {:?}",
        parsed.error
    );
    k
}

#[test]
fn arp_responder_written_as_flows() {
    let mut b = bench(2);
    b.flows(
        "priority=100,arp,arp_op=1,arp_tpa=172.16.1.1,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],\
         set_field:0a:58:0c:00:00:fe->eth_src,load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],\
         set_field:0a:58:0c:00:00:fe->arp_sha,move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:172.16.1.1->arp_spa,IN_PORT",
    );
    let req = FrameBuilder::eth(POD_MAC, [0xff; 6])
        .arp(1, POD_MAC, [172, 16, 1, 11], [0; 6], [172, 16, 1, 1])
        .build();
    b.send(1, &req);
    let out = b.received(1);
    assert_eq!(out.len(), 1, "one reply back out of the input port");
    let k = key_of(&out[0]);
    assert_eq!(k.eth_dst, POD_MAC);
    assert_eq!(k.eth_src, GW_MAC);
    assert_eq!(k.arp_op, 2);
    assert_eq!(k.arp_sha, GW_MAC);
    assert_eq!(k.arp_spa, u32::from(Ipv4Addr::new(172, 16, 1, 1)));
    assert_eq!(k.arp_tha, POD_MAC);
    assert_eq!(k.arp_tpa, u32::from(Ipv4Addr::new(172, 16, 1, 11)));
    assert!(b.received(2).is_empty(), "nothing leaks to other ports");
}

#[test]
fn icmp_echo_responder_keeps_checksums_valid() {
    let mut b = bench(1);
    b.flows(
        "priority=100,icmp,icmp_type=8,nw_dst=172.16.1.1,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],\
         set_field:0a:58:0c:00:00:fe->eth_src,move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[],set_field:172.16.1.1->ip_src,\
         set_field:0->icmp_type,IN_PORT",
    );
    let echo = FrameBuilder::eth(POD_MAC, GW_MAC)
        .ipv4([172, 16, 1, 11], [172, 16, 1, 1])
        .icmp(8, 0)
        .payload(b"ping payload 0123456789")
        .build();
    b.send(1, &echo);
    let out = b.received(1);
    assert_eq!(out.len(), 1);
    let reply = &out[0];
    let k = key_of(reply);
    assert_eq!((k.icmp_type, k.icmp_code), (0, 0));
    assert_eq!(k.nw_src, u32::from(Ipv4Addr::new(172, 16, 1, 1)));
    assert_eq!(k.nw_dst, u32::from(Ipv4Addr::new(172, 16, 1, 11)));
    assert_eq!(
        checksum::ipv4_header(&reply[14..34]),
        0,
        "IPv4 header checksum"
    );
    assert_eq!(checksum::icmpv4(&reply[34..]), 0, "ICMP checksum");
}

#[test]
fn normal_learns_then_forwards_only_to_the_learned_port() {
    let mut b = bench(3);
    let a_to_b = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1000, 2000)
        .build();
    b.send(1, &a_to_b);
    // Unknown destination: flooded to every port but the input port.
    assert_eq!(b.received(2).len(), 1);
    assert_eq!(b.received(3).len(), 1);
    assert!(b.received(1).is_empty());
    let b_to_a = FrameBuilder::eth(POD2_MAC, POD_MAC)
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1])
        .udp(2000, 1000)
        .build();
    b.send(2, &b_to_a);
    // POD_MAC was learned on port 1.
    assert_eq!(b.received(1).len(), 1);
    assert!(b.received(3).is_empty());
    b.send(1, &a_to_b);
    assert_eq!(b.received(2).len(), 1, "POD2_MAC learned on port 2");
    assert!(b.received(3).is_empty());
}

#[test]
fn deleted_flow_stops_forwarding_despite_warm_caches() {
    let mut b = bench(2);
    b.flows("priority=10,in_port=1,actions=output:2");
    let f = pod_udp();
    for _ in 0..3 {
        b.send(1, &f);
    }
    assert_eq!(b.received(2).len(), 3);
    let before = b.drops("no_match");
    b.control
        .command(&["del-flows", "br0", "in_port=1"])
        .unwrap();
    for _ in 0..3 {
        b.send(1, &f);
    }
    assert!(
        b.received(2).is_empty(),
        "stale cache entry forwarded after delete"
    );
    assert_eq!(b.drops("no_match"), before + 3);
}

/// replace-flows with a set that leaves a table out empties that table: its old rules do
/// not go on matching behind `dump-flows`' back.
#[test]
fn replace_flows_empties_the_tables_it_leaves_out() {
    let mut b = bench(3);
    let three = "table=0,priority=1,actions=goto_table:1\n\
                 table=1,priority=1,actions=output:2\n\
                 table=2,priority=1,actions=output:3\n";
    b.control.command(&["replace-flows", "br0", three]).unwrap();
    let f = pod_udp();
    b.send(1, &f);
    assert_eq!(b.received(2).len(), 1);
    let without_1 = "table=0,priority=1,actions=goto_table:1\n\
                     table=2,priority=1,actions=output:3\n";
    b.control
        .command(&["replace-flows", "br0", without_1])
        .unwrap();
    let before = b.drops("no_match");
    b.send(1, &f);
    assert!(
        b.received(2).is_empty(),
        "table 1's replaced rule still forwards"
    );
    assert_eq!(b.drops("no_match"), before + 1);
}

/// A register a group bucket writes is rolled back after the bucket, for the packet and for
/// the recirculation that follows: each packet enters table 2 with its own reg0, whichever
/// packet made the cached flow of table 1.
#[test]
fn a_group_buckets_register_write_does_not_leak_into_recirculation() {
    let mut b = bench(3);
    b.control
        .command(&[
            "add-group",
            "br0",
            "group_id=5,type=all,bucket=actions=load:9->NXM_NX_REG0[],resubmit(,30)",
        ])
        .unwrap();
    b.flows(
        "table=0,priority=10,ip,in_port=1,nw_src=10.0.0.1,actions=load:1->NXM_NX_REG0[],ct(table=1)\n\
         table=0,priority=10,ip,in_port=1,nw_src=10.0.0.3,actions=load:2->NXM_NX_REG0[],ct(table=1)\n\
         table=1,priority=1,ip,actions=group:5,ct(zone=2,table=2)\n\
         table=2,priority=1,reg0=1,actions=output:2\n\
         table=2,priority=1,reg0=2,actions=output:3\n\
         table=30,priority=1,actions=drop",
    );
    let from = |src: [u8; 4]| {
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4(src, [10, 0, 0, 2])
            .udp(1, 2)
            .build()
    };
    for _ in 0..2 {
        b.send(1, &from([10, 0, 0, 1]));
        b.send(1, &from([10, 0, 0, 3]));
    }
    assert_eq!(b.received(2).len(), 2, "10.0.0.1's packets");
    assert_eq!(
        b.received(3).len(),
        2,
        "10.0.0.3's packets took 10.0.0.1's register"
    );
}

#[test]
fn dec_ttl_drops_at_one_and_counts() {
    let mut b = bench(2);
    b.flows("priority=10,ip,actions=dec_ttl,output:2");
    let live = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .ttl(5)
        .udp(1, 2)
        .build();
    b.send(1, &live);
    let out = b.received(2);
    assert_eq!(out.len(), 1);
    assert_eq!(key_of(&out[0]).nw_ttl, 4);
    assert_eq!(checksum::ipv4_header(&out[0][14..34]), 0);
    let dying = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .ttl(1)
        .udp(1, 2)
        .build();
    b.send(1, &dying);
    assert!(b.received(2).is_empty());
    assert_eq!(b.drops("ttl_expired"), 1);
}

#[test]
fn select_group_spreads_flows_and_keeps_each_flow_on_one_bucket() {
    let mut b = bench(4);
    b.control
        .command(&[
            "add-group",
            "br0",
            "group_id=1,type=select,bucket=weight:100,actions=output:2,bucket=weight:100,actions=output:3,bucket=weight:100,actions=output:4",
        ])
        .unwrap();
    b.flows("priority=10,in_port=1,udp,actions=group:1");
    let mut counts = [0usize; 3];
    for sport in 0..300u16 {
        let f = FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(10000 + sport, 53)
            .build();
        // The same flow twice: both copies must take the same bucket.
        b.send(1, &f);
        b.send(1, &f);
        let got: Vec<usize> = (2..=4).map(|p| b.received(p).len()).collect();
        let bucket = got
            .iter()
            .position(|n| *n == 2)
            .unwrap_or_else(|| panic!("flow split across buckets: {got:?}"));
        counts[bucket] += 1;
    }
    for c in counts {
        assert!(c > 60, "unfair spread over buckets: {counts:?}");
    }
}

#[test]
fn removing_a_select_bucket_moves_only_its_own_flows() {
    let mut b = bench(5);
    let group = |ports: &[u32]| {
        let buckets: Vec<String> = ports
            .iter()
            .map(|p| format!("bucket=weight:100,actions=output:{p}"))
            .collect();
        format!("group_id=1,type=select,{}", buckets.join(","))
    };
    b.control
        .command(&["add-group", "br0", &group(&[2, 3, 4, 5])])
        .unwrap();
    b.flows("priority=10,in_port=1,udp,actions=group:1");
    let frame = |sport: u16| {
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(20000 + sport, 53)
            .build()
    };
    let place = |b: &mut Bench| -> Vec<u32> {
        (0..400u16)
            .map(|s| {
                b.send(1, &frame(s));
                (2..=5)
                    .find(|p| !b.received(*p).is_empty())
                    .expect("forwarded")
            })
            .collect()
    };
    let before = place(&mut b);
    b.control
        .command(&["mod-group", "br0", &group(&[2, 3, 4])])
        .unwrap();
    let after = place(&mut b);
    let survivors: Vec<usize> = (0..400).filter(|i| before[*i] != 5).collect();
    let kept = survivors
        .iter()
        .filter(|i| before[**i] == after[**i])
        .count();
    assert!(
        kept * 100 >= survivors.len() * 90,
        "only {kept} of {} flows on surviving buckets kept their bucket",
        survivors.len()
    );
    assert!(after.iter().all(|p| *p != 5), "removed bucket still used");
}

fn cache_counter(b: &Bench, name: &str) -> u64 {
    let text = b.control.command(&["dump-drops", "br0"]).unwrap();
    let line = text.lines().find(|l| l.starts_with("caches:")).unwrap();
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn flow_changes_revalidate_megaflows_instead_of_flushing_them() {
    let mut b = bench(3);
    b.flows("priority=10,in_port=1,actions=output:2");
    let f = pod_udp();
    b.send(1, &f);
    assert_eq!(b.received(2).len(), 1);
    let misses = cache_counter(&b, "misses");
    // An unrelated flow: the cached walk is still right and must survive.
    b.control
        .command(&["add-flow", "br0", "priority=10,in_port=3,actions=output:1"])
        .unwrap();
    b.send(1, &f);
    assert_eq!(b.received(2).len(), 1);
    assert_eq!(
        cache_counter(&b, "misses"),
        misses,
        "megaflow was flushed, not revalidated"
    );
    // A change of the flow's actions: the cached entry must not survive it.
    b.control
        .command(&["mod-flows", "br0", "in_port=1,actions=output:3"])
        .unwrap();
    b.send(1, &f);
    assert!(
        b.received(2).is_empty(),
        "stale megaflow used after mod-flows"
    );
    assert_eq!(b.received(3).len(), 1);
    // A new higher-priority flow that overrides the walk for this packet.
    b.control
        .command(&["add-flow", "br0", "priority=20,udp,actions=drop"])
        .unwrap();
    b.send(1, &f);
    assert!(
        b.received(3).is_empty(),
        "megaflow survived a shadowing flow"
    );
}

/// As Open vSwitch: a frame with a cut-short header is matched on the layers before the fault
/// (nothing of the faulty layer is in its key) and forwarded unchanged; only a runt is dropped.
#[test]
fn truncated_headers_match_only_the_layers_before_the_fault() {
    let mut b = bench(2);
    b.flows(
        "priority=20,tcp,tp_dst=2,actions=output:2
priority=10,ip,nw_src=10.0.0.1,actions=output:2
priority=5,ip,actions=drop",
    );
    let good = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tcp(1, 2, 0x02)
        .build();
    // IPv4 header cut in the middle: only L2 and the EtherType are known, so `ip` matches but
    // not `nw_src`: the drop flow takes it.
    let dropped = b.drops("flow_drop");
    b.send(1, &good[..14 + 10]);
    assert!(
        b.received(2).is_empty(),
        "a frame without L3 matched nw_src"
    );
    assert_eq!(b.drops("flow_drop"), dropped + 1);
    // A TCP header cut short (the IP total length agrees): L3 is known, the ports are not.
    let mut cut = good[..14 + 20 + 8].to_vec();
    cut[16..18].copy_from_slice(&28u16.to_be_bytes());
    b.send(1, &cut);
    assert_eq!(
        b.received(2),
        vec![cut.clone()],
        "matched on L3, sent unchanged"
    );
    // A runt.
    b.send(1, &good[..10]);
    assert_eq!(b.drops("runt"), 1);
    b.send(1, &good);
    assert_eq!(b.received(2).len(), 1, "well-formed traffic still flows");
}

#[test]
fn trace_follows_conntrack_recirculation_and_nat() {
    let b = bench(2);
    b.control
        .command(&[
            "add-group",
            "br0",
            "group_id=1,type=select,bucket=actions=ct(commit,table=2,zone=1,nat(dst=172.16.1.21:8080))",
        ])
        .unwrap();
    b.flows(
        "table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)\n\
         table=1,priority=100,ct_state=+new+trk,tcp,nw_dst=10.247.0.10,tp_dst=80,actions=group:1\n\
         table=2,priority=10,ip,nw_dst=172.16.1.21,actions=set_field:0a:58:0c:00:00:fe->eth_src,output:2",
    );
    let out = b
        .control
        .command(&[
            "trace",
            "br0",
            "in_port=1,tcp,nw_src=172.16.1.11,nw_dst=10.247.0.10,tp_dst=80",
        ])
        .unwrap();
    let expect_in_order = [
        "Flow: tcp,in_port=1,nw_src=172.16.1.11,nw_dst=10.247.0.10,tp_dst=80",
        "0.  priority=100,ip actions=ct(table=1,zone=1,nat)",
        "recirc(table=1): resuming after conntrack (zone=1) with ct_state=new|trk",
        "1.  table=1, priority=100,ct_state=+new+trk,tcp,nw_dst=10.247.0.10,tp_dst=80 actions=group:1",
        "group:1 select: bucket 0",
        "recirc(table=2): resuming after conntrack (zone=1) with ct_state=new|trk|dnat",
        "2.  table=2, priority=10,ip,nw_dst=172.16.1.21 actions=set_field:0a:58:0c:00:00:fe->eth_src,output:2",
        "output:2 (m2)",
        "Datapath actions: ct(zone=1,nat),recirc(table=1),ct(zone=1,commit,nat(dst=172.16.1.21:8080)),recirc(table=2),set(eth(src=0a:58:0c:00:00:fe)),output:2",
    ];
    let mut rest = out.as_str();
    for line in expect_in_order {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("trace lacks {line:?} (in order) in:\n{out}"));
        rest = &rest[at + line.len()..];
    }
}

#[test]
fn capture_writes_what_a_port_sends_to_a_pcap_file() {
    let mut b = bench(2);
    b.flows("priority=10,in_port=1,actions=output:2");
    let file = std::env::temp_dir().join(format!("vswitch-capture-{}.pcap", std::process::id()));
    let path = file.to_string_lossy().into_owned();
    let sw = b.switch.clone();
    let capturing =
        std::thread::spawn(move || sw.capture("br0", "m2", &path, &["count=3", "seconds=5"]));
    // Let the capture start before traffic flows.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let frames: Vec<Vec<u8>> = (0..3u16)
        .map(|i| {
            FrameBuilder::eth(POD_MAC, POD2_MAC)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
                .udp(100 + i, 53)
                .build()
        })
        .collect();
    for f in &frames {
        b.send(1, f);
    }
    let out = capturing.join().unwrap().unwrap();
    assert_eq!(out, format!("3 frames written to {}\n", file.display()));
    assert_eq!(
        b.received(2).len(),
        3,
        "capturing must not steal the frames"
    );
    let mut reader = pcap_file::pcap::PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let mut got = Vec::new();
    while let Some(p) = reader.next_packet() {
        got.push(p.unwrap().data.to_vec());
    }
    let _ = std::fs::remove_file(&file);
    assert_eq!(got, frames);
}

/// A full table: a connection nobody answered gives its place to a new one (the oldest
/// first, counted as `unestablished_evicted`); answered ones never do, and with only those
/// left a new connection is refused and counted.
#[test]
fn a_full_conntrack_table_refuses_new_connections_only() {
    let opts = datapath::Options {
        conntrack: conntrack::Config {
            max_conns: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut b = Bench::new(2, opts);
    b.flows(
        "table=0,priority=10,in_port=1,udp,actions=ct(commit,table=1)\n\
         table=0,priority=10,in_port=2,udp,actions=ct(table=2)\n\
         table=1,priority=10,ct_state=+trk,actions=output:2\n\
         table=2,priority=10,ct_state=+trk+est,actions=output:1",
    );
    let flow = |sport: u16| {
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(sport, 53)
            .build()
    };
    let reply = |dport: u16| {
        FrameBuilder::eth(POD2_MAC, POD_MAC)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1])
            .udp(53, dport)
            .build()
    };
    let evicted = |b: &Bench| {
        // The conntrack line: `conntrack: connections=N packets=N ... unestablished_evicted=N`.
        let text = b.command(&["dump-drops", "br0"]);
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("unestablished_evicted="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no unestablished_evicted in:\n{text}"))
    };
    // Unanswered, both: a third takes the oldest one's place.
    b.send(1, &flow(1001));
    b.send(1, &flow(1002));
    b.send(1, &flow(1003));
    assert_eq!(b.received(2).len(), 3);
    assert_eq!(evicted(&b), 1);
    b.send(2, &reply(1001));
    assert!(b.received(1).is_empty(), "1001 was the one removed");
    // Answered: established, kept; a new connection is refused.
    b.send(2, &reply(1002));
    b.send(2, &reply(1003));
    assert_eq!(b.received(1).len(), 2);
    b.send(1, &flow(1004));
    assert!(
        b.received(2).is_empty(),
        "a third connection got through a 2-entry table of established ones"
    );
    assert_eq!(b.drops("ct_table_full"), 1);
    assert_eq!(evicted(&b), 1);
    // Established connections keep working.
    b.send(1, &flow(1002));
    b.send(1, &flow(1003));
    assert_eq!(b.received(2).len(), 2);
}

#[test]
fn fragmented_udp_through_a_service_reaches_the_backend_whole() {
    let mut b = bench(2);
    b.flows(
        "table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)\n\
         table=1,priority=100,ct_state=+new+trk,udp,nw_dst=10.247.0.53,tp_dst=53,actions=ct(commit,table=2,zone=1,nat(dst=172.16.1.31:5353))\n\
         table=1,priority=80,ct_state=+new+trk,ip,actions=ct(commit,table=2,zone=1)\n\
         table=1,priority=70,ct_state=+est+trk,ip,actions=resubmit(,2)\n\
         table=2,priority=10,ip,actions=output:2",
    );
    // One 2000-byte UDP datagram in two IPv4 fragments (offsets in 8-byte units).
    let whole = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([172, 16, 1, 11], [10, 247, 0, 53])
        .ident(0x4242)
        .udp(40000, 53)
        .payload(&[7u8; 2000])
        .build();
    let ip = &whole[14..];
    let l4 = &ip[20..]; // UDP header + payload
    let first_len = 1480;
    let frag = |offset: usize, data: &[u8], more: bool| {
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([172, 16, 1, 11], [10, 247, 0, 53])
            .ident(0x4242)
            .fragment(more, (offset / 8) as u16)
            .protocol(17)
            .payload(data)
            .build()
    };
    b.send(1, &frag(0, &l4[..first_len], true));
    b.send(1, &frag(first_len, &l4[first_len..], false));
    let out = b.received(2);
    assert_eq!(
        out.len(),
        2,
        "both fragments must be forwarded; drops:\n{}",
        b.control.command(&["dump-drops", "br0"]).unwrap()
    );
    for f in &out {
        let k = key_of(f);
        assert_eq!(
            k.nw_dst,
            u32::from(Ipv4Addr::new(172, 16, 1, 31)),
            "a fragment left without the Service's DNAT"
        );
        assert_eq!(checksum::ipv4_header(&f[14..34]), 0);
    }
    // The first fragment carries the UDP header: its port is translated too.
    assert_eq!(key_of(&out[0]).tp_dst, 5353);
    assert_eq!(b.drops("ct_invalid"), 0);
}

#[test]
fn replace_flows_under_traffic_never_shows_a_half_applied_table() {
    let mut b = bench(3);
    // Two pipelines that only work whole: table 0 tags the packet in reg0, table 1 forwards
    // only the tag of the same version. A packet that saw table 0 of one version and table 1
    // of the other would miss (no_match).
    let version = |tag: u32, port: u32| {
        let mut text = format!(
            "table=0,priority=100,in_port=1,actions=load:{tag}->NXM_NX_REG0[],resubmit(,1)\n\
             table=1,priority=100,reg0={tag},actions=output:{port}\n"
        );
        for i in 0..10_000u32 {
            text.push_str(&format!(
                "table=1,priority=50,reg0={tag},ip,nw_dst=10.{}.{}.{},actions=drop\n",
                100 + (i >> 16),
                (i >> 8) & 255,
                i & 255
            ));
        }
        text
    };
    let (a, z) = (version(1, 2), version(2, 3));
    b.control
        .command(&["replace-flows", "br0", a.as_str()])
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let sw = b.switch.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let f = pod_udp();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sw.inject("br0", 1, &f).unwrap();
                sent += 1;
            }
            sent
        })
    };
    let mut delivered = 0usize;
    for round in 0..6 {
        let next = if round % 2 == 0 { &z } else { &a };
        b.control
            .command(&["replace-flows", "br0", next.as_str()])
            .unwrap();
        delivered += b.received(2).len() + b.received(3).len();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    for _ in 0..8 {
        delivered += b.received(2).len() + b.received(3).len();
    }
    assert!(
        sent > 100,
        "too little traffic during the replacements ({sent})"
    );
    assert_eq!(b.drops("no_match"), 0, "a packet saw a half-applied table");
    // The in-memory peers hold 1024 frames each; what overflowed them is counted as tx_full.
    assert_eq!(
        delivered as u64 + b.drops("tx_full"),
        sent,
        "packets lost during replace-flows"
    );
}

#[test]
fn flows_expire_on_their_idle_and_hard_timeouts() {
    let mut b = bench(2);
    b.flows(
        "priority=10,in_port=1,udp,tp_dst=1,hard_timeout=1,actions=output:2\n\
         priority=10,in_port=1,udp,tp_dst=2,idle_timeout=1,actions=output:2\n\
         priority=10,in_port=1,udp,tp_dst=3,actions=output:2",
    );
    let f = |dport: u16| {
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(1000, dport)
            .build()
    };
    let count = |b: &Bench| {
        b.control
            .command(&["dump-flows", "br0", "--no-stats"])
            .unwrap()
            .lines()
            .count()
    };
    // Keep the idle-timeout flow busy for longer than its timeout.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(1600) {
        b.send(1, &f(2));
        std::thread::sleep(std::time::Duration::from_millis(200));
        b.switch.expire_flows();
    }
    let dump = b
        .control
        .command(&["dump-flows", "br0", "--no-stats"])
        .unwrap();
    assert!(
        !dump.contains("tp_dst=1"),
        "hard timeout did not expire:\n{dump}"
    );
    assert!(
        dump.contains("tp_dst=2"),
        "a busy idle-timeout flow expired:\n{dump}"
    );
    assert_eq!(count(&b), 2);
    // Now idle for over a second.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(b.switch.expire_flows(), 1);
    let dump = b
        .control
        .command(&["dump-flows", "br0", "--no-stats"])
        .unwrap();
    assert_eq!(
        dump.trim(),
        "priority=10,udp,in_port=1,tp_dst=3 actions=output:2"
    );
    // The datapath follows: the expired flow no longer forwards.
    b.received(2);
    b.send(1, &f(2));
    assert!(b.received(2).is_empty());
}

/// An ICMPv4 echo (request 8 / reply 0) with identifier `id`, checksum valid.
fn echo(src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ty: u8, id: u16) -> Vec<u8> {
    let mut f = FrameBuilder::eth(src_mac, GW_MAC)
        .ipv4(src, dst)
        .icmp(ty, 0)
        .payload(b"echo payload")
        .build();
    f[38..40].copy_from_slice(&id.to_be_bytes());
    f[36..38].copy_from_slice(&[0, 0]);
    let c = checksum::icmpv4(&f[34..]);
    f[36..38].copy_from_slice(&c.to_be_bytes());
    f
}

/// Masquerade of pings: two pods using the same echo identifier towards the same host get
/// different identifiers from the NAT range (else the second would clash), written into the
/// packets with valid checksums, and each reply comes back to its pod with its own identifier.
#[test]
fn icmp_echo_ids_are_translated_by_masquerade() {
    let mut b = bench(2);
    b.flows(
        "table=0,priority=100,ip,in_port=1,actions=ct(commit,table=1,zone=1,nat(src=192.0.2.1:61000-61010))
         table=0,priority=100,ip,in_port=2,actions=ct(table=1,zone=1,nat)
         table=1,priority=100,in_port=1,actions=output:2
         table=1,priority=100,ct_state=+est+trk,in_port=2,actions=output:1",
    );
    let host = [203, 0, 113, 10];
    let mut ids = Vec::new();
    for (mac, ip) in [(POD_MAC, [10, 0, 0, 1]), (POD2_MAC, [10, 0, 0, 2])] {
        b.send(1, &echo(mac, ip, host, 8, 7));
        let out = b.received(2);
        assert_eq!(out.len(), 1, "request from {ip:?} not forwarded");
        let k = key_of(&out[0]);
        assert_eq!(k.nw_src, u32::from(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(checksum::icmpv4(&out[0][34..]), 0, "ICMP checksum");
        assert_eq!(checksum::ipv4_header(&out[0][14..34]), 0, "IPv4 checksum");
        let id = u16::from_be_bytes([out[0][38], out[0][39]]);
        assert!(
            (61000..=61010).contains(&id),
            "id {id} outside the NAT range"
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "two pods share one translated id");
    for (i, want) in [[10u8, 0, 0, 1], [10, 0, 0, 2]].iter().enumerate() {
        b.send(2, &echo(POD_MAC, host, [192, 0, 2, 1], 0, ids[i]));
        let back = b.received(1);
        assert_eq!(back.len(), 1, "reply {i} not delivered");
        let k = key_of(&back[0]);
        assert_eq!(k.nw_dst, u32::from(Ipv4Addr::from(*want)));
        assert_eq!(
            u16::from_be_bytes([back[0][38], back[0][39]]),
            7,
            "original id restored"
        );
        assert_eq!(
            checksum::icmpv4(&back[0][34..]),
            0,
            "ICMP checksum of the reply"
        );
    }
}

/// The megaflow line of each pass of a `trace`.
fn megaflows(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter_map(|l| l.strip_prefix("Megaflow: "))
        .map(str::to_string)
        .collect()
}

/// An affinity group looks at the packet's EtherType before anything (only IPv4 clients are
/// remembered): an IPv6 packet's cached flow pins it, so it cannot serve an IPv4 packet that
/// must be looked up.
#[test]
fn affinity_pins_the_ethertype_it_looked_at() {
    let b = bench(3);
    b.control
        .command(&[
            "add-group",
            "br0",
            "group_id=5,type=select,selection_method=hash,fields(ip_src),affinity_timeout=60,\
             bucket=actions=output:2,bucket=actions=output:3",
        ])
        .unwrap();
    b.flows("table=0,priority=1,in_port=1,actions=group:5");
    let out = b
        .control
        .command(&["trace", "br0", "in_port=1,ipv6,ipv6_src=fd00::1"])
        .unwrap();
    let m = megaflows(&out);
    assert!(m.first().is_some_and(|m| m.contains("ipv6")), "{out}");
}

#[test]
fn ct_pins_nothing_of_the_packet_in_the_megaflow() {
    let b = bench(2);
    b.flows("table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)");
    let out = b
        .control
        .command(&[
            "trace",
            "br0",
            "in_port=1,tcp,nw_src=10.0.0.1,nw_dst=10.96.0.10,tp_src=40000,tp_dst=80,reg3=7,tun_id=5",
        ])
        .unwrap();
    // Open vSwitch: recirc_id(0),in_port(1),eth_type(0x0800) — one entry for every connection.
    assert_eq!(
        megaflows(&out).first().map(String::as_str),
        Some("ip,in_port=1"),
        "{out}"
    );
}

/// A ClusterIP Service over three backends, as the node agent compiles it (conntrack with NAT,
/// a select group committing the DNAT, routing by the backend address).
fn cluster_ip(b: &Bench) {
    let buckets: Vec<String> = (1..=3)
        .map(|i| {
            format!(
                "bucket=weight:100,actions=ct(commit,table=2,zone=1,nat(dst=172.16.1.2{i}:8080))"
            )
        })
        .collect();
    b.control
        .command(&[
            "add-group",
            "br0",
            &format!("group_id=1,type=select,{}", buckets.join(",")),
        ])
        .unwrap();
    b.flows(
        "table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)\n\
         table=1,priority=200,ct_state=+new+trk,tcp,nw_dst=10.96.0.10,tp_dst=80,actions=group:1\n\
         table=1,priority=100,ct_state=+new+trk,ip,actions=goto_table:2\n\
         table=1,priority=90,ct_state=+est+trk,ip,actions=goto_table:2\n\
         table=2,priority=10,ip,nw_dst=172.16.1.21,actions=output:2\n\
         table=2,priority=10,ip,nw_dst=172.16.1.22,actions=output:3\n\
         table=2,priority=10,ip,nw_dst=172.16.1.23,actions=output:4",
    );
}

#[test]
fn a_cluster_ip_service_needs_one_megaflow_per_pass_not_per_connection() {
    let mut b = bench(4);
    cluster_ip(&b);
    let out = b
        .control
        .command(&[
            "trace",
            "br0",
            "in_port=1,tcp,nw_src=172.16.1.11,nw_dst=10.96.0.10,tp_src=40000,tp_dst=80",
        ])
        .unwrap();
    let mf = megaflows(&out);
    assert!(mf.len() >= 3, "{out}");
    for m in &mf {
        assert!(
            !m.contains("tp_src") && !m.contains("nw_src"),
            "megaflow pins the client: {m}\n{out}"
        );
    }
    assert!(
        out.contains("hash taken in the datapath"),
        "select not resolved in the datapath:\n{out}"
    );

    let syn = |sport: u16| {
        FrameBuilder::eth(POD_MAC, GW_MAC)
            .ipv4([172, 16, 1, 11], [10, 96, 0, 10])
            .tcp(sport, 80, 0x02)
            .build()
    };
    let misses_before = cache_counter(&b, "misses");
    let mut spread = [0usize; 3];
    for sport in 0..300u16 {
        let f = syn(30000 + sport);
        b.send(1, &f);
        let got: Vec<usize> = (2..=4).map(|p| b.received(p).len()).collect();
        let backend = got
            .iter()
            .position(|n| *n == 1)
            .unwrap_or_else(|| panic!("connection {sport} not delivered once: {got:?}"));
        assert_eq!(got.iter().sum::<usize>(), 1);
        spread[backend] += 1;
        // A retransmission reaches the same backend (conntrack's NAT, not the hash).
        b.send(1, &f);
        let again: Vec<usize> = (2..=4).map(|p| b.received(p).len()).collect();
        assert_eq!(again[backend], 1, "connection {sport} moved: {again:?}");
    }
    for n in spread {
        assert!(n > 50, "unfair spread over backends: {spread:?}");
    }
    // 600 packets of 300 connections, three passes each: only the first few walks miss
    // (one megaflow per pass and backend), not two per connection.
    let misses = cache_counter(&b, "misses") - misses_before;
    assert!(misses <= 12, "{misses} slow-path walks for 300 connections");
}

/// The replies of established connections through a ClusterIP share one megaflow per pass:
/// `ct_state=+new+trk,tcp,nw_dst=VIP,tp_dst=80` rules them out on `ct_state` alone (the
/// classifier's metadata stage), so a reply's megaflow does not pin the client's address and
/// port. Before, every connection's first reply was a slow-path walk of its own.
#[test]
fn replies_through_a_cluster_ip_share_their_megaflows() {
    let mut b = bench(4);
    cluster_ip(&b);
    b.command(&[
        "add-flow",
        "br0",
        "table=2,priority=10,ip,nw_dst=172.16.1.11,actions=output:1",
    ]);
    let client = [172, 16, 1, 11];
    let mut backend_of = Vec::new();
    for sport in 0..200u16 {
        let syn = FrameBuilder::eth(POD_MAC, GW_MAC)
            .ipv4(client, [10, 96, 0, 10])
            .tcp(40000 + sport, 80, 0x02)
            .build();
        b.send(1, &syn);
        let got: Vec<usize> = (2..=4).map(|p| b.received(p).len()).collect();
        let k = got.iter().position(|n| *n == 1).expect("SYN delivered");
        backend_of.push(k);
    }
    let misses_before = cache_counter(&b, "misses");
    for (sport, k) in backend_of.iter().enumerate() {
        let port = 2 + *k as u32;
        let synack = FrameBuilder::eth(GW_MAC, POD_MAC)
            .ipv4([172, 16, 1, 21 + *k as u8], client)
            .tcp(8080, 40000 + sport as u16, 0x12)
            .build();
        b.send(port, &synack);
        let back = b.received(1);
        assert_eq!(back.len(), 1, "reply of connection {sport} not delivered");
        // Un-NATed: from the VIP's address and port.
        assert_eq!(&back[0][26..30], &[10, 96, 0, 10], "reply not un-NATed");
    }
    // 200 replies over three backend ports, two passes each: a few walks, not one per reply.
    let misses = cache_counter(&b, "misses") - misses_before;
    assert!(misses <= 12, "{misses} slow-path walks for 200 replies");
}

/// A pass that does not read a register does not pin it, so its megaflow is shared by packets
/// with different register values: each must carry its own value into the next recirculation.
#[test]
fn a_shared_megaflow_carries_each_packets_own_registers_through_recirculation() {
    let mut b = bench(3);
    b.flows(
        "table=0,priority=10,ip,nw_dst=10.0.0.5,actions=load:5->NXM_NX_REG0[],ct(table=1,zone=1)\n\
         table=0,priority=10,ip,nw_dst=10.0.0.6,actions=load:6->NXM_NX_REG0[],ct(table=1,zone=1)\n\
         table=1,priority=10,ip,actions=ct(table=2,zone=2)\n\
         table=2,priority=10,reg0=5,actions=output:2\n\
         table=2,priority=10,reg0=6,actions=output:3",
    );
    let to = |dst: [u8; 4], sport: u16| {
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], dst)
            .udp(sport, 53)
            .build()
    };
    for round in 0..3u16 {
        b.send(1, &to([10, 0, 0, 5], 1000 + round));
        b.send(1, &to([10, 0, 0, 6], 2000 + round));
        assert_eq!(
            (b.received(2).len(), b.received(3).len()),
            (1, 1),
            "round {round}"
        );
    }
    let out = b
        .control
        .command(&["trace", "br0", "in_port=1,udp,nw_dst=10.0.0.6,tp_src=9"])
        .unwrap();
    let mf = megaflows(&out);
    assert_eq!(mf.get(1).map(String::as_str), Some("ip,in_port=1"), "{out}");
}

#[test]
fn normal_counts_a_frame_for_a_mac_learned_on_its_input_port() {
    let mut b = bench(3);
    let from = |src, dst| {
        FrameBuilder::eth(src, dst)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(1000, 2000)
            .build()
    };
    // POD_MAC and POD2_MAC both learned behind port 1 (two hosts behind one uplink).
    b.send(1, &from(POD_MAC, [0x02, 0, 0, 0, 0, 9]));
    b.send(1, &from(POD2_MAC, [0x02, 0, 0, 0, 0, 9]));
    for p in 1..=3 {
        b.received(p);
    }
    let before = b.drops("normal_hairpin");
    b.send(1, &from(POD_MAC, POD2_MAC));
    for p in 1..=3 {
        assert!(b.received(p).is_empty(), "sent out of port {p}");
    }
    assert_eq!(b.drops("normal_hairpin"), before + 1);
}

/// A flow-based VXLAN port, ofport 9, on loopback UDP port `udp_port` (it never sends in
/// these tests: no flow sets `tun_dst`).
fn add_flow_based_tunnel(b: &Bench, udp_port: u16) {
    b.command(&[
        "add-port",
        "br0",
        "vxflow",
        "type=vxlan",
        "ofport=9",
        "options:remote_ip=flow",
        "options:key=100",
        "options:local_ip=127.0.0.1",
        &format!("options:dst_port={udp_port}"),
    ]);
}

#[test]
fn a_flow_based_tunnel_without_tun_dst_is_skipped_and_counted() {
    let mut b = bench(2);
    add_flow_based_tunnel(&b, 47891);
    b.flows(
        "priority=10,in_port=1,udp,tp_dst=1,actions=output:9,output:2\n\
         priority=10,in_port=1,udp,tp_dst=2,actions=output:9",
    );
    let to = |port| {
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(1000, port)
            .build()
    };
    b.send(1, &to(1));
    assert_eq!(
        b.received(2).len(),
        1,
        "the output after the skipped tunnel output must run"
    );
    let before = b.drops("tunnel_no_dst");
    b.send(1, &to(2));
    assert!(b.received(2).is_empty());
    assert_eq!(b.drops("tunnel_no_dst"), before + 1);
}

#[test]
fn a_flow_dropping_conntrack_invalid_packets_counts_ct_invalid() {
    let mut b = bench(2);
    let flows = "table=0,priority=10,ip,actions=ct(table=1,zone=1)\n\
                 table=1,priority=20,ct_state=+inv+trk,actions=drop\n\
                 table=1,priority=10,ct_state=+trk,actions=output:2";
    b.flows(flows);
    // SYN and RST together: conntrack marks it invalid.
    const SYN: u16 = 0x02;
    const RST: u16 = 0x04;
    let bad = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tcp(40000, 80, SYN | RST)
        .build();
    let (inv, flow_drop) = (b.drops("ct_invalid"), b.drops("flow_drop"));
    b.send(1, &bad);
    assert!(b.received(2).is_empty());
    assert_eq!(b.drops("ct_invalid"), inv + 1);
    assert_eq!(
        b.drops("flow_drop"),
        flow_drop,
        "counted as flow_drop instead"
    );
    // A valid SYN goes through, and a plain `actions=drop` on it stays flow_drop.
    let syn = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tcp(40001, 80, SYN)
        .build();
    b.send(1, &syn);
    assert_eq!(b.received(2).len(), 1);
    b.flows(&format!(
        "{flows}\ntable=1,priority=30,ct_state=+new+trk,tcp,tp_src=40002,actions=drop"
    ));
    b.send(
        1,
        &FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tcp(40002, 80, SYN)
            .build(),
    );
    assert_eq!(b.drops("flow_drop"), flow_drop + 1);
    assert_eq!(b.drops("ct_invalid"), inv + 1);
}

#[test]
fn output_table_runs_the_packet_through_table_0_again() {
    let mut b = bench(3);
    b.flows(
        "priority=10,reg0=5,actions=output:3\n\
         priority=5,in_port=1,actions=set_field:5->reg0,output:TABLE,output:2",
    );
    let f = pod_udp();
    b.send(1, &f);
    assert_eq!(b.received(3).len(), 1, "table 0 again, with reg0 set");
    assert_eq!(b.received(2).len(), 1, "and the actions after it");
}

#[test]
fn reset_counts_starts_the_datapath_counters_anew() {
    let mut b = bench(3);
    b.flows("priority=10,in_port=1,actions=output:2");
    let f = pod_udp();
    let packets = |b: &Bench| {
        let dump = b.command(&["dump-flows", "br0"]);
        let n = dump
            .split("n_packets=")
            .nth(1)
            .and_then(|t| t.split(',').next())
            .and_then(|n| n.parse::<u64>().ok());
        n.unwrap_or_else(|| panic!("no n_packets in {dump}"))
    };
    for _ in 0..3 {
        b.send(1, &f);
    }
    assert_eq!(b.received(2).len(), 3);
    assert_eq!(packets(&b), 3);
    // A modify keeps the counts; with reset_counts they start again from zero.
    b.command(&["mod-flows", "br0", "in_port=1,actions=output:3"]);
    assert_eq!(packets(&b), 3, "a plain modify keeps the counters");
    b.command(&[
        "mod-flows",
        "br0",
        "reset_counts,in_port=1,actions=output:2",
    ]);
    assert_eq!(packets(&b), 0, "reset_counts");
    b.send(1, &f);
    assert_eq!(b.received(2).len(), 1);
    assert_eq!(packets(&b), 1);
    // The same for an add that replaces the flow.
    b.command(&[
        "add-flow",
        "br0",
        "reset_counts,priority=10,in_port=1,actions=output:2",
    ]);
    assert_eq!(packets(&b), 0, "add with reset_counts");
}

/// An ICMPv6 frame with echo identifier `id` (the builder zeroes the rest of the header):
/// `ty` 128 or 129.
fn icmp6_echo(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: &str,
    dst: &str,
    ty: u8,
    id: u16,
) -> Vec<u8> {
    let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    let mut f = FrameBuilder::eth(src_mac, dst_mac)
        .ipv6(s, d)
        .icmp(ty, 0)
        .payload(&[0xab; 8])
        .build();
    let l4 = 14 + 40;
    f[l4 + 4..l4 + 6].copy_from_slice(&id.to_be_bytes());
    f[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
    let c = checksum::l4_v6(&s, &d, 58, &f[l4..]);
    f[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    f
}

fn icmp6_id(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[14 + 40 + 4], frame[14 + 40 + 5]])
}

#[test]
fn icmpv6_errors_about_a_tracked_connection_are_related() {
    let mut b = bench(3);
    b.flows(
        "table=0,priority=10,ipv6,actions=ct(table=1,zone=1)\n\
         table=1,priority=30,ct_state=+new+trk,ipv6,actions=ct(commit,zone=1),output:2\n\
         table=1,priority=20,ct_state=+rel+trk,ipv6,actions=output:3\n\
         table=1,priority=10,ct_state=+trk,ipv6,actions=drop",
    );
    let (a, z): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
    let syn = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv6(a, z)
        .tcp(40000, 80, 0x02)
        .build();
    b.send(1, &syn);
    assert_eq!(b.received(2).len(), 1, "the SYN is committed and forwarded");
    // Packet Too Big from the far side, quoting the SYN: related, not invalid.
    let mut quote = vec![0, 0, 0x05, 0x00]; // the rest of the header: MTU 1280
    quote.extend_from_slice(&syn[14..]);
    let ptb = FrameBuilder::eth(POD2_MAC, POD_MAC)
        .ipv6(z, a)
        .icmp(2, 0)
        .payload(&quote[4..])
        .build();
    b.send(2, &ptb);
    assert_eq!(b.received(3).len(), 1, "ct_state=+rel");
    assert_eq!(b.drops("ct_invalid") + b.drops("flow_drop"), 0);
}

#[test]
fn icmpv6_echo_ids_are_tracked_and_translated_by_snat() {
    let mut b = bench(3);
    b.flows(
        "table=0,priority=10,in_port=1,ipv6,icmp6,actions=ct(commit,zone=1,nat(src=[fd00::100]),table=1)\n\
         table=0,priority=10,in_port=3,ipv6,icmp6,actions=ct(commit,zone=1,nat(src=[fd00::100]),table=1)\n\
         table=0,priority=10,in_port=2,ipv6,icmp6,actions=ct(zone=1,nat,table=2)\n\
         table=1,priority=10,actions=output:2\n\
         table=2,priority=10,ipv6,ipv6_dst=fd00::1,actions=output:1\n\
         table=2,priority=10,ipv6,ipv6_dst=fd00::3,actions=output:3",
    );
    // Two pods ping the same host with the same identifier.
    b.send(
        1,
        &icmp6_echo(POD_MAC, GW_MAC, "fd00::1", "fd00::9", 128, 7),
    );
    b.send(
        3,
        &icmp6_echo(POD2_MAC, GW_MAC, "fd00::3", "fd00::9", 128, 7),
    );
    let out = b.received(2);
    assert_eq!(out.len(), 2);
    let ids: Vec<u16> = out.iter().map(|f| icmp6_id(f)).collect();
    assert_ne!(
        ids[0], ids[1],
        "both connections SNATed to one address need two ids"
    );
    for f in &out {
        let k = key_of(f);
        let (s, d) = (
            std::net::Ipv6Addr::from(k.ipv6_src),
            std::net::Ipv6Addr::from(k.ipv6_dst),
        );
        assert_eq!(s, "fd00::100".parse::<std::net::Ipv6Addr>().unwrap());
        // Summed with its checksum in place, a valid message sums to zero.
        assert_eq!(
            checksum::l4_v6(&s, &d, 58, &f[14 + 40..]),
            0,
            "ICMPv6 checksum"
        );
    }
    // Each reply goes back to its own pod, with the pod's identifier.
    for (id, port) in [(ids[0], 1u32), (ids[1], 3)] {
        b.send(
            2,
            &icmp6_echo(GW_MAC, POD_MAC, "fd00::9", "fd00::100", 129, id),
        );
        let back = b.received(port);
        assert_eq!(back.len(), 1, "reply with id {id} to port {port}");
        assert_eq!(icmp6_id(&back[0]), 7);
    }
}

#[test]
fn a_flood_passes_a_flow_based_tunnel_by_without_counting_a_drop() {
    let mut b = bench(2);
    add_flow_based_tunnel(&b, 47892);
    b.flows("priority=0,actions=NORMAL");
    let before = b.drops("tunnel_no_dst");
    let arp = FrameBuilder::eth(POD_MAC, [0xff; 6])
        .arp(1, POD_MAC, [10, 0, 0, 1], [0; 6], [10, 0, 0, 2])
        .build();
    b.send(1, &arp);
    assert_eq!(b.received(2).len(), 1, "flooded to the other port");
    assert_eq!(
        b.drops("tunnel_no_dst"),
        before,
        "a delivered flood is no drop"
    );
}

#[test]
fn fast_failover_groups_watching_each_other_in_a_cycle_stay_cheap() {
    let mut b = bench(3);
    b.command(&[
        "add-group",
        "br0",
        "group_id=1,type=ff,bucket=watch_group:2,output:2,bucket=watch_group:2,output:3",
    ]);
    b.command(&[
        "add-group",
        "br0",
        "group_id=2,type=ff,bucket=watch_group:1,output:2,bucket=watch_group:1,output:3",
    ]);
    b.flows("priority=10,in_port=1,actions=group:1");
    let f = pod_udp();
    let started = std::time::Instant::now();
    b.send(1, &f);
    // Every bucket only watches the cycle: none is live, and finding that out is bounded
    // (a walk of every path would take 2^32 steps).
    assert!(b.received(2).is_empty() && b.received(3).is_empty());
    assert_eq!(b.drops("group_missing"), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A conntrack counter from `dump-drops`' `conntrack:` line.
fn conntrack_counter(b: &Bench, name: &str) -> u64 {
    let dump = b.command(&["dump-drops", "br0"]);
    dump.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {name} in {dump}"))
}

/// Two ports; IP through conntrack (zone 1), `+inv` dropped, the rest out of port 2.
fn ct_bench_dropping_invalid() -> Bench {
    let b = bench(2);
    b.flows(
        "table=0,priority=10,ip,actions=ct(table=1,zone=1)\n\
         table=1,priority=20,ct_state=+inv+trk,actions=drop\n\
         table=1,priority=10,ct_state=+trk,actions=output:2",
    );
    b
}

#[test]
fn a_packet_conntrack_cannot_read_or_trust_is_counted_invalid_malformed() {
    let mut b = ct_bench_dropping_invalid();
    let counter = |b: &Bench| conntrack_counter(b, "invalid_malformed");
    let whole = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tcp(40000, 80, 0x02)
        .build();
    // Cut inside the TCP header: the IPv4 total length says more than the frame holds.
    b.send(1, &whole[..14 + 20 + 10]);
    assert!(b.received(2).is_empty());
    assert_eq!(counter(&b), 1);
    assert_eq!(b.drops("ct_invalid"), 1);
    // A wrong IPv4 header checksum (as Open vSwitch's conntrack checks it).
    let mut bad = whole.clone();
    bad[14 + 10] ^= 0x40;
    b.send(1, &bad);
    assert!(b.received(2).is_empty());
    assert_eq!(counter(&b), 2);
    assert_eq!(b.drops("ct_invalid"), 2);
    b.send(1, &whole);
    assert_eq!(b.received(2).len(), 1, "a whole SYN goes through");
    assert_eq!(counter(&b), 2);
}

/// A wrong TCP checksum is `+inv` (counted `invalid_l4_checksum`) unless the receiving port
/// vouched for the packet (the kernel verified it: `csum_valid`) or its sender left the sum to
/// offload (`csum_not_ready`).
#[test]
fn a_wrong_l4_checksum_is_invalid_unless_the_port_vouched_for_it() {
    let mut b = ct_bench_dropping_invalid();
    let counter = |b: &Bench| conntrack_counter(b, "invalid_l4_checksum");
    let mut syn = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tcp(40000, 80, 0x02)
        .build();
    // The checksum field one off.
    syn[14 + 20 + 17] ^= 1;
    b.send(1, &syn);
    assert!(
        b.received(2).is_empty(),
        "a SYN with a wrong checksum went through"
    );
    assert_eq!((counter(&b), b.drops("ct_invalid")), (1, 1));
    let idx = b
        .switch
        .with_bridge("br0", |br| Ok(br.dp_index))
        .expect("br0");
    for meta in [
        tap_io::RxMeta {
            csum_valid: true,
            ..Default::default()
        },
        tap_io::RxMeta {
            csum_not_ready: true,
            ..Default::default()
        },
    ] {
        let frame = syn.clone();
        b.switch
            .dp
            .call(move |dp| dp.inject_with_meta(idx, 1, &frame, meta));
        assert_eq!(b.received(2).len(), 1, "{meta:?}: not summed, tracked");
        assert_eq!(counter(&b), 1, "{meta:?}");
    }
}

/// A table whose flows look at ARP, ICMP, TCP, UDP and IPv6 fields: a packet of one protocol
/// probes the other protocols' subtables too.
const MIXED_PROTOCOLS: &str = "table=0,priority=100,arp,arp_op=1,actions=output:2\n\
     table=0,priority=90,icmp,icmp_type=8,actions=output:2\n\
     table=0,priority=80,tcp,tp_dst=80,tcp_flags=+syn,actions=output:2\n\
     table=0,priority=70,udp,tp_src=53,actions=output:2\n\
     table=0,priority=60,ipv6,ipv6_dst=fd00::1,actions=output:2\n\
     table=0,priority=50,icmp6,icmp_type=135,nd_target=fd00::9,actions=output:2\n\
     table=0,priority=1,actions=output:2";

/// The fields a printed match names (`name` or `name=value`).
fn match_fields(text: &str) -> Vec<String> {
    text.split(',')
        .map(|p| p.split('=').next().unwrap_or("").to_string())
        .collect()
}

/// `trace`'s Megaflow lines name only fields of the packet's protocol and read back, with the
/// flow parser, as the same match.
#[test]
fn trace_megaflow_lines_parse_back_as_flow_matches() {
    let b = bench(2);
    b.flows(MIXED_PROTOCOLS);
    let cases: [(&str, &[&str]); 6] = [
        (
            "in_port=1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=40000,tp_dst=80,tcp_flags=+syn",
            &["arp_op", "icmp_type", "icmp_code", "nd_target", "ipv6_dst"],
        ),
        (
            "in_port=1,udp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=53,tp_dst=4000",
            &["arp_op", "icmp_type", "icmp_code", "tcp_flags", "nd_target"],
        ),
        (
            "in_port=1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2,icmp_type=8,icmp_code=0",
            &["arp_op", "tp_src", "tp_dst", "tcp_flags", "nd_target"],
        ),
        (
            "in_port=1,arp,arp_op=1,arp_spa=10.0.0.1,arp_tpa=10.0.0.2",
            &[
                "icmp_type",
                "icmp_code",
                "tp_src",
                "tp_dst",
                "tcp_flags",
                "nw_proto",
            ],
        ),
        (
            "in_port=1,tcp6,ipv6_src=fd00::2,ipv6_dst=fd00::1,tp_src=40000,tp_dst=80",
            &["arp_op", "icmp_type", "icmp_code", "nd_target", "nw_dst"],
        ),
        (
            "in_port=1,icmp6,ipv6_src=fd00::2,ipv6_dst=fd00::3,icmp_type=135,icmp_code=0,nd_target=fd00::9",
            &["arp_op", "tp_src", "tp_dst", "tcp_flags"],
        ),
    ];
    for (flow, absent) in cases {
        let out = b.command(&["trace", "br0", flow]);
        let lines = megaflows(&out);
        assert!(!lines.is_empty(), "{out}");
        for line in lines {
            let back = flowtable::text::parse_match(&line)
                .unwrap_or_else(|e| panic!("{flow}: Megaflow `{line}` does not parse: {e}"));
            assert_eq!(
                flowtable::text::print_match(&back),
                line,
                "{flow}: Megaflow does not read back the same"
            );
            let names = match_fields(&line);
            for f in absent {
                assert!(
                    !names.iter().any(|n| n == f),
                    "{flow}: Megaflow `{line}` names {f}"
                );
            }
        }
    }
}

/// `dump-megaflows` prints, for each entry, only the fields of its own protocol: no ICMP
/// type/code in a TCP entry, no ports in an ICMP entry.
#[test]
fn dump_megaflows_names_only_fields_of_the_entrys_protocol() {
    let mut b = bench(2);
    b.flows(MIXED_PROTOCOLS);
    let frames = [
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tcp(40000, 80, 0x02)
            .build(),
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(53, 4000)
            .build(),
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .icmp(8, 0)
            .payload(b"ping")
            .build(),
        FrameBuilder::eth(POD_MAC, [0xff; 6])
            .arp(1, POD_MAC, [10, 0, 0, 1], [0; 6], [10, 0, 0, 2])
            .build(),
        FrameBuilder::eth(POD_MAC, POD2_MAC)
            .ipv6(
                "fd00::2".parse::<std::net::Ipv6Addr>().unwrap(),
                "fd00::1".parse::<std::net::Ipv6Addr>().unwrap(),
            )
            .tcp(40000, 80, 0x02)
            .build(),
    ];
    for f in &frames {
        b.send(1, f);
    }
    assert_eq!(b.received(2).len(), frames.len());
    let dump = b.command(&["dump-megaflows", "br0"]);
    let entries: Vec<&str> = dump
        .lines()
        .filter(|l| l.starts_with("recirc_id"))
        .collect();
    assert_eq!(entries.len(), frames.len(), "{dump}");
    for e in entries {
        let key = e.split(", packets:").next().unwrap();
        let groups: Vec<&str> = key.split("),").collect();
        let group = |name: &str| {
            groups
                .iter()
                .find(|g| g.starts_with(&format!("{name}(")))
                .map(|g| g.to_string())
        };
        if key.contains("eth_type(0x0806)") {
            assert!(group("arp").is_some(), "{e}");
            for g in ["ipv4", "ipv6", "tcp", "udp", "icmp", "l4"] {
                assert!(group(g).is_none(), "ARP entry has {g}: {e}");
            }
        } else if key.contains("proto=6") {
            let tcp = group("tcp").unwrap_or_default();
            assert!(!tcp.contains("type=") && !tcp.contains("code="), "{e}");
            assert!(!key.contains("arp(") && !key.contains("nd("), "{e}");
        } else if key.contains("proto=17") {
            let udp = group("udp").unwrap_or_default();
            assert!(!udp.contains("type=") && !udp.contains("code="), "{e}");
            assert!(!key.contains("tcp_flags"), "{e}");
        } else if key.contains("proto=1,") || key.contains("proto=1)") {
            let icmp = group("icmp").unwrap_or_default();
            assert!(!icmp.contains("src=") && !icmp.contains("dst="), "{e}");
            assert!(!key.contains("tcp_flags"), "{e}");
        } else {
            panic!("unexpected entry {e}");
        }
        if key.contains("eth_type(0x86dd)") {
            let v6 = group("ipv6").unwrap_or_default();
            assert!(!v6.contains("."), "IPv4 address in an IPv6 entry: {e}");
        }
    }
}

/// `ct(commit,nat(src))` without an address (ovs-ofctl takes it): a binding that keeps the
/// address, as Linux's null binding; the packets go on unchanged and the reply is `+est`.
#[test]
fn nat_without_an_address_commits_the_connection_unchanged() {
    let mut b = bench(3);
    b.flows(
        "table=0,priority=10,ip,in_port=1,actions=ct(commit,zone=1,nat(src),table=1)\n\
         table=0,priority=10,ip,in_port=2,actions=ct(zone=1,nat,table=1)\n\
         table=1,priority=10,ip,in_port=1,actions=output:2\n\
         table=1,priority=10,ct_state=+est+trk,ip,in_port=2,actions=output:3",
    );
    let request = echo(POD_MAC, [10, 0, 0, 1], [10, 0, 0, 2], 8, 7);
    b.send(1, &request);
    assert_eq!(b.received(2), vec![request], "forwarded unchanged");
    b.send(2, &echo(POD2_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 0, 7));
    assert_eq!(b.received(3).len(), 1, "the reply is +est");
}
