//! encap: flow-key extraction, the VXLAN header check and push (what a tunnel port does per
//! datagram), against a hand-written fixed-offset parser of
//! the same fields and etherparse's `SlicedPacket`.
//!
//! cargo bench -p benches --bench encap -- --warm-up-time 1 --measurement-time 2

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use encap::build::FrameBuilder;
use encap::vxlan::{HEADER_LEN, Header, check_header};
use encap::{FlowKey, extract, flow_hash};

const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn tcp_frame() -> Vec<u8> {
    FrameBuilder::eth(A, B)
        .ipv4([10, 244, 1, 5], [10, 244, 2, 7])
        .tcp(40000, 80, 0x18)
        .payload(&[0u8; 18])
        .build()
}

fn vlan_udp_frame() -> Vec<u8> {
    FrameBuilder::eth(A, B)
        .vlan(100)
        .ipv4([10, 244, 1, 5], [10, 244, 2, 7])
        .udp(5353, 53)
        .payload(&[0u8; 18])
        .build()
}

/// A tunnel port's received UDP payload: VXLAN header + inner TCP frame.
fn vxlan_payload() -> Vec<u8> {
    let mut p = Header::new(4242).as_bytes().to_vec();
    p.extend_from_slice(&tcp_frame());
    p
}

#[inline(always)]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The baseline: assumes Ethernet / optional single VLAN / IPv4 without options / TCP or UDP,
/// reads the same fields at fixed offsets after one length check. No validation beyond that.
#[inline(never)]
fn fixed_offset_parse(f: &[u8], key: &mut FlowKey) -> bool {
    if f.len() < 58 {
        return false;
    }
    key.eth_dst.copy_from_slice(&f[0..6]);
    key.eth_src.copy_from_slice(&f[6..12]);
    let mut l3 = 14;
    let mut et = rd16(f, 12);
    if et == 0x8100 {
        key.vlan_tci = rd16(f, 14) | 0x1000;
        et = rd16(f, 16);
        l3 = 18;
    }
    key.eth_type = et;
    if et != 0x0800 {
        return false;
    }
    let ip = &f[l3..l3 + 40];
    key.nw_tos = ip[1];
    key.nw_frag = 0;
    key.nw_ttl = ip[8];
    key.nw_proto = ip[9];
    key.nw_src = rd32(ip, 12);
    key.nw_dst = rd32(ip, 16);
    key.tp_src = rd16(ip, 20);
    key.tp_dst = rd16(ip, 22);
    if ip[9] == 6 {
        key.tcp_flags = rd16(ip, 32) & 0x0fff;
    }
    true
}

#[inline(never)]
fn etherparse_parse(f: &[u8]) -> usize {
    match etherparse::SlicedPacket::from_ethernet(f) {
        Ok(p) => p.transport.is_some() as usize,
        Err(_) => 0,
    }
}

fn bench_extract(c: &mut Criterion) {
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in [
        ("eth_ipv4_tcp", tcp_frame()),
        ("eth_vlan_ipv4_udp", vlan_udp_frame()),
    ] {
        let mut key = FlowKey::default();
        g.bench_function(format!("encap/{name}"), |b| {
            b.iter(|| black_box(extract(black_box(&frame), &mut key)))
        });
        let mut key = FlowKey::default();
        g.bench_function(format!("fixed_offset/{name}"), |b| {
            b.iter(|| black_box(fixed_offset_parse(black_box(&frame), &mut key)))
        });
        g.bench_function(format!("etherparse_sliced/{name}"), |b| {
            b.iter(|| black_box(etherparse_parse(black_box(&frame))))
        });
    }
    let payload = vxlan_payload();
    let mut key = FlowKey::default();
    g.bench_function("encap/vxlan_check_then_extract", |b| {
        b.iter(|| {
            let f = black_box(&payload[..]);
            key.tun_id = check_header(f).unwrap() as u64;
            black_box(extract(&f[HEADER_LEN..], &mut key))
        })
    });
    g.finish();
}

fn bench_vxlan(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan");
    g.throughput(Throughput::Elements(1));
    let inner = tcp_frame();
    let mut buf = vec![0u8; 128 + inner.len()];
    buf[128..].copy_from_slice(&inner);
    g.bench_function("header_push", |b| {
        b.iter(|| {
            let h = Header::new(black_box(4242));
            buf[128 - HEADER_LEN..128].copy_from_slice(h.as_bytes());
            black_box(&buf);
        })
    });
    let payload = vxlan_payload();
    g.bench_function("header_check", |b| {
        b.iter(|| black_box(check_header(black_box(&payload))))
    });
    let mut key = FlowKey::default();
    extract(&inner, &mut key);
    g.bench_function("flow_hash", |b| {
        b.iter(|| black_box(flow_hash(black_box(&key))))
    });
    g.finish();
}

criterion_group!(benches, bench_extract, bench_vxlan);
benches::criterion_main!(benches);
