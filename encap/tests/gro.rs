//! Software coalescing (GRO): segments of a super-frame coalesce back into one that segments
//! into the same bytes; every rule that must stop a merge stops it.

use encap::build::FrameBuilder;
use encap::checksum;
use encap::gro::{MAX_IP_LEN, TcpSegment, continues, finish_super_frame};
use encap::gso::{GsoInfo, GsoKind, complete_checksum, segment};
use proptest::prelude::*;

const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn tcp_frame(v4: bool, vlan: bool, seq: u32, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = FrameBuilder::eth(A, B);
    if vlan {
        b = b.vlan(100);
    }
    b = if v4 {
        b.ipv4([10, 0, 0, 1], [10, 0, 0, 2]).ident(0x1234)
    } else {
        b.ipv6(
            "fd00::1".parse::<std::net::Ipv6Addr>().unwrap(),
            "fd00::2".parse::<std::net::Ipv6Addr>().unwrap(),
        )
    };
    let f = b.tcp(40000, 5201, flags).payload(payload).build();
    set_seq(f, seq)
}

/// Rewrites the sequence number and recomputes the TCP checksum (the builder's is complete).
fn set_seq(mut f: Vec<u8>, seq: u32) -> Vec<u8> {
    let s = TcpSegment::parse(&f);
    let l4 = match s {
        Some(s) => s.l4_offset(),
        None => return f,
    };
    f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    refresh_csum(&mut f);
    f
}

fn refresh_csum(f: &mut [u8]) {
    let s = TcpSegment::parse(f).expect("tcp");
    let l4 = s.l4_offset();
    f[l4 + 16..l4 + 18].fill(0);
    let mut g = f.to_vec();
    // A partial sum completed is the full checksum.
    finish_super_frame(&mut g, &s, false);
    f[l4 + 16..l4 + 18].copy_from_slice(&g[l4 + 16..l4 + 18]);
    complete_checksum(f, l4, 16).unwrap();
}

/// Coalesces `segs` in order the way the datapath does (append to the last frame while it
/// continues); returns the resulting frames and their segment size.
fn coalesce(segs: &[Vec<u8>]) -> Vec<(Vec<u8>, usize)> {
    let mut out: Vec<(Vec<u8>, usize)> = Vec::new();
    for s in segs {
        let seg = TcpSegment::parse(s);
        if let (Some(seg), Some((head_frame, mss))) = (seg, out.last_mut()) {
            let head = TcpSegment::parse(head_frame).expect("head parses");
            let m = if *mss == 0 { head.payload_len() } else { *mss };
            if continues(head_frame, &head, s, &seg, m) && seg.checksum_ok(s) {
                head_frame.truncate(head.end());
                head_frame.extend_from_slice(seg.payload(s));
                let grown = head.grown_by(seg.payload_len());
                finish_super_frame(head_frame, &grown, seg.psh(s));
                *mss = m;
                continue;
            }
        }
        out.push((s.clone(), 0));
    }
    out
}

fn seg_all(f: &[u8], v4: bool, mss: u16) -> Vec<Vec<u8>> {
    let kind = if v4 { GsoKind::Tcp4 } else { GsoKind::Tcp6 };
    let mut v = Vec::new();
    segment(
        f,
        &GsoInfo {
            kind,
            mss,
            hdr_len: 0,
        },
        &mut Vec::new(),
        |s| v.push(s.to_vec()),
    )
    .unwrap();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// segment → coalesce → segment gives the same segments (payload, sequence numbers,
    /// flags, IP ids, checksums), and the coalesced frame's partial checksum completes to a
    /// valid one.
    #[test]
    fn coalesced_segments_resegment_to_the_same_bytes(
        v4 in any::<bool>(),
        vlan in any::<bool>(),
        seq in any::<u32>(),
        psh in any::<bool>(),
        len in 1usize..65000,
        mss in 1u16..3000,
        fill in any::<u8>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ fill).collect();
        let flags = if psh { 0x18 } else { 0x10 };
        let whole = tcp_frame(v4, vlan, seq, flags, &payload);
        let segs = seg_all(&whole, v4, mss);
        let merged = coalesce(&segs);
        // Only the 16-bit IP length limits a merge.
        prop_assert_eq!(merged.len(), 1);
        let mut again = Vec::new();
        for (m, size) in &merged {
            if *size == 0 {
                again.push(m.clone());
                continue;
            }
            let mut full = m.clone();
            let s = TcpSegment::parse(&full).unwrap();
            complete_checksum(&mut full, s.l4_offset(), 16).unwrap();
            prop_assert!(s.checksum_ok(&full), "completed checksum");
            if v4 {
                let l3 = if vlan { 18 } else { 14 };
                prop_assert_eq!(checksum::fold(checksum::sum(0, &full[l3..l3 + 20])), 0xffff);
            }
            again.extend(seg_all(m, v4, *size as u16));
        }
        prop_assert_eq!(again.len(), segs.len());
        for (i, (a, b)) in again.iter().zip(&segs).enumerate() {
            prop_assert_eq!(a, b, "segment {}", i);
        }
    }
}

fn pair() -> (Vec<u8>, Vec<u8>) {
    let a = tcp_frame(true, false, 1000, 0x10, &[7; 100]);
    let b = tcp_frame(true, false, 1100, 0x10, &[8; 100]);
    (a, b)
}

fn merges(a: &[u8], b: &[u8]) -> bool {
    let (Some(h), Some(s)) = (TcpSegment::parse(a), TcpSegment::parse(b)) else {
        return false;
    };
    continues(a, &h, b, &s, h.payload_len()) && s.checksum_ok(b)
}

#[test]
fn the_plain_pair_merges() {
    let (a, b) = pair();
    assert!(merges(&a, &b));
}

#[test]
fn a_bad_checksum_is_never_merged() {
    let (a, mut b) = pair();
    let n = b.len();
    b[n - 1] ^= 1;
    let s = TcpSegment::parse(&b).unwrap();
    assert!(!s.checksum_ok(&b));
    assert!(!merges(&a, &b));
}

#[test]
fn gaps_and_other_flows_stop_a_merge() {
    let (a, _) = pair();
    // A gap, a retransmission.
    for seq in [1101, 1000, 999] {
        let b = tcp_frame(true, false, seq, 0x10, &[8; 100]);
        assert!(!merges(&a, &b), "seq {seq}");
    }
    // Longer than the segment size.
    let b = tcp_frame(true, false, 1100, 0x10, &[8; 101]);
    assert!(!merges(&a, &b));
    // Other ports, addresses, TTL, TOS, MACs, VLAN.
    let other = [
        FrameBuilder::eth(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tcp(40001, 5201, 0x10),
        FrameBuilder::eth(A, B)
            .ipv4([10, 0, 0, 3], [10, 0, 0, 2])
            .tcp(40000, 5201, 0x10),
        FrameBuilder::eth(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .ttl(3)
            .tcp(40000, 5201, 0x10),
        FrameBuilder::eth(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tos(4)
            .tcp(40000, 5201, 0x10),
        FrameBuilder::eth(B, A)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tcp(40000, 5201, 0x10),
        FrameBuilder::eth(A, B)
            .vlan(5)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tcp(40000, 5201, 0x10),
    ];
    for (i, b) in other.iter().enumerate() {
        let b = set_seq(b.clone().payload(&[8; 100]).build(), 1100);
        assert!(!merges(&a, &b), "variant {i}");
    }
    // Another ACK number or window.
    for (off, v) in [(8usize, 1u8), (14, 1)] {
        let mut b = pair().1;
        b[34 + off] ^= v;
        refresh_csum(&mut b);
        assert!(!merges(&a, &b), "tcp byte {off}");
    }
}

#[test]
fn flags_fragments_and_options_are_not_merged() {
    let (a, _) = pair();
    for flags in [0x02u16, 0x12, 0x11, 0x14, 0x30, 0x50, 0x90, 0x00] {
        let b = tcp_frame(true, false, 1100, flags, &[8; 100]);
        assert!(TcpSegment::parse(&b).is_none(), "flags {flags:#x}");
    }
    // PSH ends a super-frame: it joins, but nothing joins after it.
    let b = tcp_frame(true, false, 1100, 0x18, &[8; 100]);
    assert!(merges(&a, &b));
    let p = tcp_frame(true, false, 900, 0x18, &[8; 100]);
    assert!(!merges(&p, &tcp_frame(true, false, 1000, 0x10, &[8; 100])));
    // A shorter segment ends it too.
    let short = tcp_frame(true, false, 1000, 0x10, &[7; 50]);
    let h = TcpSegment::parse(&short).unwrap();
    let next = tcp_frame(true, false, 1050, 0x10, &[7; 50]);
    let s = TcpSegment::parse(&next).unwrap();
    assert!(!continues(&short, &h, &next, &s, 100));
    // IPv4 fragments and options; an empty payload.
    let frag = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .fragment(true, 0)
        .tcp(40000, 5201, 0x10)
        .payload(&[1; 100])
        .build();
    assert!(TcpSegment::parse(&frag).is_none());
    let opts = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .ipv4_options(&[1, 1, 1, 1])
        .tcp(40000, 5201, 0x10)
        .payload(&[1; 100])
        .build();
    assert!(TcpSegment::parse(&opts).is_none());
    assert!(TcpSegment::parse(&tcp_frame(true, false, 1, 0x10, &[])).is_none());
    // UDP is not TCP.
    let udp = FrameBuilder::eth(A, B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1, 2)
        .payload(&[1; 100])
        .build();
    assert!(TcpSegment::parse(&udp).is_none());
    // Every prefix of a segment parses without a panic.
    let (a, _) = pair();
    for n in 0..a.len() {
        let _ = TcpSegment::parse(&a[..n]);
    }
}

#[test]
fn different_tcp_options_stop_a_merge() {
    let mut a = pair().0;
    let mut b = pair().1;
    // Give both a 12-byte option block (NOP NOP timestamps) by rebuilding with data offset 8.
    for (f, tsval) in [(&mut a, 1u32), (&mut b, 2u32)] {
        let mut g = f[..54].to_vec();
        g[46] = 0x80; // data offset 8
        g.extend_from_slice(&[1, 1, 8, 10]);
        g.extend_from_slice(&tsval.to_be_bytes());
        g.extend_from_slice(&[0, 0, 0, 0]);
        g.extend_from_slice(&f[54..]);
        let total = (g.len() - 14) as u16;
        g[16..18].copy_from_slice(&total.to_be_bytes());
        g[24..26].fill(0);
        let c = checksum::ipv4_header(&g[14..34]);
        g[24..26].copy_from_slice(&c.to_be_bytes());
        refresh_csum(&mut g);
        *f = g;
    }
    assert!(!merges(&a, &b), "timestamps differ");
    let mut c = b.clone();
    c[58..62].copy_from_slice(&1u32.to_be_bytes());
    refresh_csum(&mut c);
    assert!(merges(&a, &c), "same options merge");
}

#[test]
fn super_frames_stop_at_the_ip_length_limit() {
    let segs: Vec<Vec<u8>> = (0..50u32)
        .map(|i| tcp_frame(true, false, i * 1400, 0x10, &[i as u8; 1400]))
        .collect();
    let merged = coalesce(&segs);
    let per_frame = (MAX_IP_LEN - 40) / 1400;
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[0].0.len(), 54 + per_frame * 1400);
    assert!(merged[0].0.len() - 14 <= MAX_IP_LEN);
    let again: Vec<Vec<u8>> = merged
        .iter()
        .flat_map(|(m, mss)| seg_all(m, true, *mss as u16))
        .collect();
    // IP ids differ (the builder gave every segment the same one); payload and seq do not.
    assert_eq!(again.len(), 50);
    for (a, b) in again.iter().zip(&segs) {
        assert_eq!(a[34..], b[34..]);
    }
}
