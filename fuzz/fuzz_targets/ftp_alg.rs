#![no_main]
//! FTP control payloads -> the FTP ALG: the parser never panics and reports an address span
//! inside what it read; through conntrack (a control connection under source NAT), a payload
//! never panics, and a rewrite it asks for lies inside the payload and says its length right.
use conntrack::alg::ftp::{self, FtpMsg};
use conntrack::tcp::{TCP_ACK, TCP_SYN};
use conntrack::tuple::Family;
use conntrack::{Addr, Alg, Config, Conntrack, CtAction, NatRange, NatSpec, PacketFacts};
use encap::FlowKey;
use libfuzzer_sys::fuzz_target;

fn key(src: u32, sport: u16, dst: u32, dport: u16, flags: u16) -> FlowKey {
    FlowKey {
        eth_type: 0x0800,
        nw_src: src,
        nw_dst: dst,
        nw_proto: 6,
        tp_src: sport,
        tp_dst: dport,
        tcp_flags: flags,
        ..FlowKey::default()
    }
}

fuzz_target!(|data: &[u8]| {
    for family in [Family::V4, Family::V6] {
        if let FtpMsg::Endpoint(e) = ftp::parse(data, family) {
            let (a, b) = e.addr_span;
            assert!(a <= b && b <= data.len().min(ftp::WINDOW));
            assert_eq!(e.addr.is_some(), b > a);
            assert_ne!(e.port, 0);
        }
    }

    let mut ct = Conntrack::new(Config {
        max_conns: 16,
        max_expectations: 4,
        hash_seed: Some(1),
        ..Config::default()
    })
    .expect("config");
    let (c, s, n) = (0x0a00_0001, 0x0a00_0002, 0xc000_0209);
    let snat = NatSpec::snat(NatRange::addr(Addr::v4(n)));
    let first = CtAction {
        commit: true,
        nat: Some(&snat),
        alg: Some(Alg::Ftp),
        ..CtAction::default()
    };
    let plain = NatSpec::default();
    let later = CtAction {
        nat: Some(&plain),
        ..CtAction::default()
    };
    let facts = |seq, ack, len: usize| PacketFacts {
        tcp_seq: seq,
        tcp_ack: ack,
        tcp_window: 65535,
        l4_payload_len: len as u32,
        payload_offset: 54,
        ..PacketFacts::default()
    };
    let mut frame = vec![0u8; 54];
    frame.extend_from_slice(data);
    let k = key(c, 40000, s, 21, TCP_SYN);
    ct.process_frame(&k, &facts(100, 0, 0), &first, 0, &frame[..54], &k);
    let k = key(s, 21, n, 40000, TCP_SYN | TCP_ACK);
    ct.process_frame(&k, &facts(900, 101, 0), &later, 0, &frame[..54], &k);
    for (k, seq, ack) in [
        (key(c, 40000, s, 21, TCP_ACK), 101, 901),
        (key(s, 21, n, 40000, TCP_ACK), 901, 101),
    ] {
        let r = ct.process_frame(&k, &facts(seq, ack, data.len()), &later, 0, &frame, &k);
        if let Some(edit) = r.tcp_fix.and_then(|f| f.edit) {
            let end = usize::from(edit.offset) + usize::from(edit.old_len);
            assert!(end <= data.len().min(ftp::WINDOW));
            assert!(!edit.text().is_empty());
            assert_eq!(
                edit.delta(),
                edit.text().len() as i32 - i32::from(edit.old_len)
            );
        }
    }
});
