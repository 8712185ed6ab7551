//! GSO super-frames and partial checksums through the pipeline on in-memory ports: frames are
//! injected with the receive metadata an offloading port gives them (`inject_with_meta`) and
//! read back from the peers of the output ports (ports without offloads: super-frames leave
//! segmented, checksums complete).

use encap::FlowKey;
use encap::build::FrameBuilder;
use tap_io::{Gso, GsoKind, RxMeta};
use vswitch::datapath;

mod common;

const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0b];
const POD2_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0c];
const MSS: u16 = 1448;

fn bench(n: u32) -> common::MemBridge {
    common::MemBridge::new(n, datapath::Options::default())
}

/// Runs `frame` through `br0` as if port `in_port` had received it with `meta`.
fn send_with_meta(b: &common::MemBridge, in_port: u32, frame: &[u8], meta: RxMeta) {
    let idx = b
        .switch
        .with_bridge("br0", |br| Ok(br.dp_index))
        .expect("br0");
    let frame = frame.to_vec();
    b.switch
        .dp
        .call(move |dp| dp.inject_with_meta(idx, in_port, &frame, meta));
}

/// A pod's TSO super-frame: IPv4/TCP 10.0.0.1:40000 -> 10.0.0.2:5201 with `payload` bytes,
/// and the metadata a port with offloads gives it (segments of `MSS`, TCP checksum partial).
fn tcp_super_frame(payload: usize) -> (Vec<u8>, RxMeta) {
    let data: Vec<u8> = (0..payload).map(|i| (i * 7 + 1) as u8).collect();
    let frame = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tcp(40000, 5201, 0x18)
        .payload(&data)
        .build();
    let meta = RxMeta {
        csum_not_ready: true,
        csum_start: Some(34),
        csum_offset: Some(16),
        gso: Some(Gso {
            kind: GsoKind::Tcp4,
            size: MSS,
            hdr_len: 54,
            ecn: false,
        }),
        ..RxMeta::default()
    };
    (frame, meta)
}

fn key_of(frame: &[u8]) -> FlowKey {
    let mut k = FlowKey::default();
    assert!(encap::extract(frame, &mut k).is_ok());
    k
}

/// The TCP payload bytes of segments, in order.
fn payload_of(segments: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segments {
        let seg = encap::gro::TcpSegment::parse(s).expect("a TCP segment");
        assert!(seg.checksum_ok(s), "segment with a bad TCP checksum");
        out.extend_from_slice(seg.payload(s));
    }
    out
}

/// A `clone` (and any copy of the packet: group buckets that change it, packet-in through
/// the controller meter, `check_pkt_larger` branches) copies a 64 KiB super-frame whole; it
/// was copied into a jumbo-sized buffer and lost as `too_big`.
#[test]
fn clone_copies_a_super_frame_whole() {
    let mut b = bench(3);
    b.command(&[
        "add-group",
        "br0",
        "group_id=1,type=all,bucket=actions=set_field:02:00:00:00:00:77->eth_dst,output:3,bucket=actions=output:1",
    ]);
    b.command(&[
        "add-flows",
        "br0",
        "in_port=1,actions=clone(set_field:02:00:00:00:00:99->eth_dst,output:2),output:3\n\
         in_port=2,actions=group:1",
    ]);
    let (frame, meta) = tcp_super_frame(40 * 1000);
    assert!(frame.len() > tap_io::buf::DEFAULT_FRAME_ROOM);
    let too_big = b.drops("too_big");
    for _ in 0..2 {
        send_with_meta(&b, 1, &frame, meta);
    }
    let cloned = b.received(2);
    let direct = b.received(3);
    let n = 40_000usize.div_ceil(usize::from(MSS));
    assert_eq!(cloned.len(), 2 * n, "the clone's copy left segmented");
    assert_eq!(direct.len(), 2 * n);
    assert!(
        cloned
            .iter()
            .all(|s| key_of(s).eth_dst == [2, 0, 0, 0, 0, 0x99])
    );
    assert_eq!(payload_of(&cloned[..n]).len(), 40_000);
    assert_eq!(payload_of(&cloned[..n]), payload_of(&direct[..n]));
    // A group bucket that changes the packet runs on a copy too.
    send_with_meta(&b, 2, &frame, meta);
    let bucket = b.received(3);
    assert_eq!(bucket.len(), n);
    assert!(
        bucket
            .iter()
            .all(|s| key_of(s).eth_dst == [2, 0, 0, 0, 0, 0x77])
    );
    assert_eq!(b.received(1).len(), n);
    assert_eq!(b.drops("too_big"), too_big, "nothing lost as too big");
}

/// `check_pkt_larger` measures a super-frame by the segments it stands for (headers plus one
/// segment's payload), as the kernel's datapath does: 3 x 1448 bytes of TCP payload leave as
/// 1502-byte frames, within 1514.
#[test]
fn check_pkt_larger_measures_a_super_frame_per_segment() {
    let mut b = bench(2);
    b.flows(
        "table=0,ip,actions=check_pkt_larger(1514)->NXM_NX_REG0[0],resubmit(,1)\n\
         table=1,reg0=0x1/0x1,actions=drop\n\
         table=1,priority=0,actions=output:2",
    );
    let (frame, meta) = tcp_super_frame(3 * usize::from(MSS));
    assert!(frame.len() > 1514);
    send_with_meta(&b, 1, &frame, meta);
    let out = b.received(2);
    assert_eq!(out.len(), 3, "three segments of 1502 bytes: at most 1514");
    assert!(out.iter().all(|s| s.len() == 1502));
    // The same bytes as one frame (no GSO) are longer than 1514: dropped by the flow.
    let flow_drops = b.drops("flow_drop");
    send_with_meta(&b, 1, &frame, RxMeta::default());
    assert!(b.received(2).is_empty());
    assert_eq!(b.drops("flow_drop"), flow_drops + 1);
    // Segments of 1500 bytes of payload are 1554-byte frames: longer.
    let big = RxMeta {
        gso: meta.gso.map(|g| Gso { size: 1500, ..g }),
        ..meta
    };
    send_with_meta(&b, 1, &frame, big);
    assert!(b.received(2).is_empty());
    assert_eq!(b.drops("flow_drop"), flow_drops + 2);
    // A super-frame of one short segment is measured by what it holds.
    let (short, meta) = tcp_super_frame(400);
    send_with_meta(&b, 1, &short, meta);
    assert_eq!(b.received(2).len(), 1);
}

/// A pod's own VXLAN traffic with checksum offload: the outer UDP checksum 0 (none) or
/// complete (as the kernel's local checksum offload computes it: for the inner checksum as it
/// will be once finished), the inner TCP checksum left partial (`csum_start` at the inner TCP
/// header).
fn pod_vxlan(outer_udp_checksum: bool) -> (Vec<u8>, RxMeta) {
    let inner = FrameBuilder::eth([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
        .ipv4([192, 168, 7, 1], [192, 168, 7, 2])
        .tcp(33000, 8080, 0x18)
        .payload(b"inner payload, checksum left to the NIC")
        .build();
    let tcp_len = (inner.len() - 34) as u16;
    let pseudo = encap::checksum::pseudo_header_v4(
        [192, 168, 7, 1].into(),
        [192, 168, 7, 2].into(),
        6,
        tcp_len,
    );
    let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    vxlan.extend_from_slice(&inner);
    let outer = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(40000, 4789)
        .payload(&vxlan);
    let mut frame = if outer_udp_checksum {
        outer.build()
    } else {
        outer.without_udp_checksum().build()
    };
    let inner_csum = 42 + 8 + 34 + 16;
    frame[inner_csum..inner_csum + 2].copy_from_slice(&encap::checksum::fold(pseudo).to_be_bytes());
    let meta = RxMeta {
        csum_not_ready: true,
        csum_start: Some(42 + 8 + 34),
        csum_offset: Some(16),
        ..RxMeta::default()
    };
    (frame, meta)
}

/// The outer UDP checksum of a frame: 0, or whether it verifies.
fn outer_udp_checksum(f: &[u8]) -> Option<bool> {
    let sent = u16::from_be_bytes([f[40], f[41]]);
    if sent == 0 {
        return None;
    }
    let src = std::net::Ipv4Addr::new(f[26], f[27], f[28], f[29]);
    let dst = std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    let mut seg = f[34..].to_vec();
    seg[6..8].fill(0);
    let c = encap::checksum::udp_nonzero(encap::checksum::l4_v4(src, dst, 17, &seg));
    Some(c == sent)
}

/// Partial-checksum mode applies to the L4 header whose checksum the sender left partial
/// (`csum_start`), not to whatever L4 header a rewrite changes: an outer address rewrite or
/// SNAT of a pod's VXLAN traffic updated the outer UDP checksum as if it were a partial sum
/// (a 0 became garbage, a complete one went wrong).
#[test]
fn outer_rewrites_keep_a_complete_outer_checksum_of_tunnelled_traffic() {
    for snat in [false, true] {
        let mut b = bench(2);
        b.flows(if snat {
            "udp,in_port=1,actions=ct(commit,zone=1,nat(src=10.9.9.9)),output:2"
        } else {
            "udp,in_port=1,actions=set_field:10.9.9.9->ip_src,output:2"
        });
        for outer_sum in [false, true] {
            let (frame, meta) = pod_vxlan(outer_sum);
            send_with_meta(&b, 1, &frame, meta);
            let out = b.received(2);
            assert_eq!(out.len(), 1);
            let f = &out[0];
            assert_eq!(key_of(f).nw_src, u32::from_be_bytes([10, 9, 9, 9]));
            assert_eq!(key_of(f).tp_src, 40000);
            let want = outer_sum.then_some(true);
            assert_eq!(
                outer_udp_checksum(f),
                want,
                "snat={snat} outer_sum={outer_sum}: the outer UDP checksum"
            );
            // The inner TCP checksum was finished on the way out (no checksum offload).
            let inner = &f[50..];
            let seg = encap::gro::TcpSegment::parse(inner).expect("inner TCP");
            assert!(seg.checksum_ok(inner), "snat={snat}: inner TCP checksum");
        }
    }
}

/// `output(port=P,max_len=N)` of a super-frame sends one frame, its first N bytes, without
/// the offload work (a cut super-frame is no segmentation job); the output after it still
/// gets every segment, whole.
#[test]
fn output_trunc_cuts_a_super_frame_once() {
    let mut b = bench(3);
    b.flows("in_port=1,actions=output(port=2,max_len=100),output:3");
    let (frame, meta) = tcp_super_frame(20 * 1000);
    send_with_meta(&b, 1, &frame, meta);
    assert_eq!(b.received(2), vec![frame[..100].to_vec()]);
    let whole = b.received(3);
    assert_eq!(whole.len(), 20_000usize.div_ceil(usize::from(MSS)));
    assert_eq!(payload_of(&whole).len(), 20_000);
    // A frame no longer than max_len leaves as it is.
    let small = FrameBuilder::eth(POD_MAC, POD2_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1, 2)
        .payload(&[7; 40])
        .build();
    b.send(1, &small);
    assert_eq!(b.received(2), vec![small.clone()]);
    assert_eq!(b.received(3), vec![small]);
}
