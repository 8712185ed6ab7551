//! The FTP ALG under NAT through the in-memory datapath (no root): the `PORT` command of a
//! SNATed client leaves with the translated address (the frame three bytes longer, the IP
//! length and both checksums right), the sequence and acknowledgment numbers of the rest of
//! the control connection follow, and the server's data connection reaches the client.

use encap::build::FrameBuilder;
use encap::checksum;
use std::net::Ipv4Addr;
use vswitch::datapath;

mod common;

const C_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const S_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];
const SNAT: [u8; 4] = [192, 168, 9, 9];
const L3: usize = 14;
const L4: usize = 34;
const SYN: u16 = 0x02;
const ACK: u16 = 0x10;
const PSH_ACK: u16 = 0x18;

/// A TCP frame with sequence and acknowledgment numbers, checksums right.
#[allow(clippy::too_many_arguments)]
fn tcp(
    from_client: bool,
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    flags: u16,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let (smac, dmac) = if from_client {
        (C_MAC, S_MAC)
    } else {
        (S_MAC, C_MAC)
    };
    let mut f = FrameBuilder::eth(smac, dmac)
        .ipv4(src, dst)
        .tcp(ports.0, ports.1, flags)
        .payload(payload)
        .build();
    f[L4 + 4..L4 + 8].copy_from_slice(&seq.to_be_bytes());
    f[L4 + 8..L4 + 12].copy_from_slice(&ack.to_be_bytes());
    f[L4 + 16..L4 + 18].copy_from_slice(&[0, 0]);
    let end = L3 + usize::from(u16::from_be_bytes([f[L3 + 2], f[L3 + 3]]));
    let c = checksum::l4_v4(src.into(), dst.into(), 6, &f[L4..end]);
    f[L4 + 16..L4 + 18].copy_from_slice(&c.to_be_bytes());
    f
}

/// What one frame says, after checking that its IP length and both checksums are right.
struct Seen {
    src: [u8; 4],
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: u32,
    payload: Vec<u8>,
}

fn check(f: &[u8]) -> Seen {
    let total = usize::from(u16::from_be_bytes([f[L3 + 2], f[L3 + 3]]));
    let end = L3 + total;
    assert!(
        end <= f.len(),
        "IP length {total} beyond the frame ({})",
        f.len()
    );
    assert_eq!(
        checksum::fold(checksum::sum(0, &f[L3..L3 + 20])),
        0xffff,
        "IPv4 header checksum"
    );
    let src: [u8; 4] = f[L3 + 12..L3 + 16].try_into().unwrap();
    let dst: [u8; 4] = f[L3 + 16..L3 + 20].try_into().unwrap();
    let pseudo = checksum::pseudo_header_v4(
        Ipv4Addr::from(src),
        Ipv4Addr::from(dst),
        6,
        (end - L4) as u16,
    );
    assert_eq!(
        checksum::fold(checksum::sum(pseudo, &f[L4..end])),
        0xffff,
        "TCP checksum"
    );
    let rd32 = |at: usize| u32::from_be_bytes(f[at..at + 4].try_into().unwrap());
    let data = L4 + usize::from(f[L4 + 12] >> 4) * 4;
    Seen {
        src,
        dst,
        dport: u16::from_be_bytes([f[L4 + 2], f[L4 + 3]]),
        seq: rd32(L4 + 4),
        ack: rd32(L4 + 8),
        payload: f[data..end].to_vec(),
    }
}

fn one(b: &mut common::MemBridge, port: u32) -> Seen {
    let got = b.received(port);
    assert_eq!(got.len(), 1, "one frame out of port {port}");
    check(&got[0])
}

#[test]
fn ftp_port_under_snat_is_rewritten_and_the_connection_goes_on() {
    let mut b = common::MemBridge::new(2, datapath::Options::default());
    b.flows(
        "table=0,priority=10,tcp,actions=ct(table=1,nat)
table=1,priority=100,ct_state=+trk+new-rel,tcp,tp_dst=21,actions=ct(commit,alg=ftp,nat(src=192.168.9.9)),resubmit(,2)
table=1,priority=90,ct_state=+trk+new+rel,tcp,actions=ct(commit,nat),resubmit(,2)
table=1,priority=80,ct_state=+trk+est,tcp,actions=resubmit(,2)
table=2,in_port=1,actions=output:2
table=2,in_port=2,actions=output:1",
    );
    let ctl = (40000, 21);
    let back = (21, 40000);
    b.send(1, &tcp(true, CLIENT, SERVER, ctl, SYN, 100, 0, b""));
    assert_eq!(one(&mut b, 2).src, SNAT);
    b.send(2, &tcp(false, SERVER, SNAT, back, SYN | ACK, 900, 101, b""));
    assert_eq!(one(&mut b, 1).dst, CLIENT);
    b.send(1, &tcp(true, CLIENT, SERVER, ctl, ACK, 101, 901, b""));
    one(&mut b, 2);

    let port = b"PORT 10,0,0,1,19,137\r\n";
    b.send(1, &tcp(true, CLIENT, SERVER, ctl, PSH_ACK, 101, 901, port));
    let out = one(&mut b, 2);
    assert_eq!(out.payload, b"PORT 192,168,9,9,19,137\r\n");
    assert_eq!((out.src, out.seq, out.ack), (SNAT, 101, 901));

    // The server acknowledges the longer command; the client sees its own numbering.
    b.send(2, &tcp(false, SERVER, SNAT, back, ACK, 901, 126, b""));
    let out = one(&mut b, 1);
    assert_eq!((out.dst, out.ack), (CLIENT, 123));
    b.send(
        2,
        &tcp(false, SERVER, SNAT, back, PSH_ACK, 901, 126, b"200 ok\r\n"),
    );
    let out = one(&mut b, 1);
    assert_eq!(
        (out.seq, out.ack, out.payload.as_slice()),
        (901, 123, &b"200 ok\r\n"[..])
    );
    // The client's next command moves up by three.
    b.send(
        1,
        &tcp(true, CLIENT, SERVER, ctl, PSH_ACK, 123, 909, b"RETR f\r\n"),
    );
    let out = one(&mut b, 2);
    assert_eq!(
        (out.seq, out.ack, out.payload.as_slice()),
        (126, 909, &b"RETR f\r\n"[..])
    );

    // The server's data connection to the translated address reaches the client.
    b.send(2, &tcp(false, SERVER, SNAT, (20, 5001), SYN, 500, 0, b""));
    let out = one(&mut b, 1);
    assert_eq!((out.dst, out.dport), (CLIENT, 5001));
    b.send(
        1,
        &tcp(true, CLIENT, SERVER, (5001, 20), SYN | ACK, 700, 501, b""),
    );
    assert_eq!(one(&mut b, 2).src, SNAT);
    // A connection nobody announced goes nowhere.
    b.send(2, &tcp(false, SERVER, SNAT, (20, 5002), SYN, 500, 0, b""));
    assert!(b.received(1).is_empty());

    let ct = b.command(&["dump-conntrack", "br0"]);
    assert!(
        ct.lines()
            .any(|l| l.contains("dport=21)") && l.ends_with("helper=ftp")),
        "{ct}"
    );
    assert!(
        ct.lines().any(|l| l.starts_with(
            "tcp,orig=(src=10.0.0.2,dst=192.168.9.9,sport=20,dport=5001),reply=(src=10.0.0.1,dst=10.0.0.2,sport=5001,dport=20)"
        )),
        "{ct}"
    );
}
