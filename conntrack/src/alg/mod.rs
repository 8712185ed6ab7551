//! Application-layer gateways: `ct(commit, alg=ftp|tftp)`.
//!
//! A connection committed with an ALG (its control connection) announces the data
//! connections it will open: TFTP by its request (the server answers from another port to the
//! client's port), FTP in its payload (`PORT`/`EPRT` from the client, `227`/`229` from the
//! server; see [`ftp`]). Each announcement becomes an [`expect::Expectation`]; the first packet
//! of a new connection that matches one is `+rel` (with `+new`), reports the control
//! connection's original tuple, mark and label (as Open vSwitch does), and, when committed, is
//! a related connection: `+rel` on every packet, NATed like its control connection when the
//! `ct` action has `nat`.
//!
//! With NAT on an FTP control connection (and `nat` in the `ct` action, as Open vSwitch
//! requires), the announced address is rewritten in the payload to what the other side must
//! see; a length change shifts the TCP sequence numbers of the rest of the connection, which
//! [`TcpFix`] tells the caller to apply (and the tracker sees in the sender's numbering).

pub(crate) mod expect;
pub mod ftp;

use crate::tuple::{Addr, Family, Tuple};
use expect::Expectation;
use ftp::{AddrStyle, FtpEndpoint, MAX_ADDR_TEXT};

/// The ALG a control connection is tracked with (`alg=ftp` is port 21, `alg=tftp` port 69).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Ftp,
    Tftp,
}

impl Alg {
    /// The ALG of an `alg=PORT` argument (the wire form is the protocol's well-known port).
    pub fn from_port(port: u16) -> Option<Alg> {
        match port {
            21 => Some(Alg::Ftp),
            69 => Some(Alg::Tftp),
            _ => None,
        }
    }

    /// The IP protocol it works on (Open vSwitch rejects `alg=ftp` on a non-TCP flow).
    pub fn proto(self) -> u8 {
        match self {
            Alg::Ftp => crate::tuple::PROTO_TCP,
            Alg::Tftp => crate::tuple::PROTO_UDP,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Alg::Ftp => ALG_FTP,
            Alg::Tftp => ALG_TFTP,
        }
    }
}

/// `Conn::alg` values (0: none).
pub(crate) const ALG_FTP: u8 = 1;
pub(crate) const ALG_TFTP: u8 = 2;

/// A replacement of the announced address in an FTP control packet's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadEdit {
    /// Where the old text starts, from the start of the TCP payload.
    pub offset: u16,
    /// Length of the old text.
    pub old_len: u8,
    len: u8,
    text: [u8; MAX_ADDR_TEXT],
}

impl PayloadEdit {
    /// The new text.
    pub fn text(&self) -> &[u8] {
        &self.text[..self.len as usize]
    }

    /// How much longer the payload gets (negative: shorter).
    pub fn delta(&self) -> i32 {
        i32::from(self.len) - i32::from(self.old_len)
    }
}

/// What the caller must change in a TCP packet of an FTP control connection with NAT: add
/// `seq_delta` to the sequence number and `ack_delta` to the acknowledgment number (both
/// wrapping), then apply `edit` to the payload (fixing the IP length and the checksums).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFix {
    pub seq_delta: i32,
    pub ack_delta: i32,
    pub edit: Option<PayloadEdit>,
}

/// The ALG state of one connection, kept beside the slab (only ALG connections have one).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AlgConn {
    /// A related connection's control connection (original tuple).
    pub parent: Option<Tuple>,
    /// Bytes the payload rewrites added so far, per direction (original, reply).
    pub skew: [i32; 2],
    /// Per direction, the sequence number of the last rewritten packet and what its rewrite
    /// added: a retransmission of it is rewritten alike without counting twice.
    pub last_edit: [Option<(u32, i32)>; 2],
}

/// Who announced a data connection: the control connection's client (original direction) or
/// its server (reply direction). The data connection goes to the announcer.
fn expectation_to_announcer(
    orig: &Tuple,
    reply: &Tuple,
    by_reply: bool,
    proto: u8,
    port: u16,
    local_port: u16,
) -> (Tuple, (Addr, Addr, u16)) {
    if by_reply {
        // The server announced: the client connects to it, as it sees it (orig.dst).
        let key = Tuple {
            src: orig.src,
            dst: orig.dst,
            sport: 0,
            dport: port,
            proto,
            ..*orig
        };
        (key, (reply.dst, reply.src, local_port))
    } else {
        // The client announced: the server connects to it, as it sees it (reply.dst).
        let key = Tuple {
            src: reply.src,
            dst: reply.dst,
            sport: 0,
            dport: port,
            proto,
            ..*reply
        };
        (key, (orig.dst, orig.src, local_port))
    }
}

/// The expectation a TFTP request (original direction) announces: the server's answer, from
/// any port, to the client's port.
pub(crate) fn tftp_expectation(
    orig: &Tuple,
    reply: &Tuple,
    mark: u32,
    label: u128,
    expires: u64,
) -> Expectation {
    let (key, nat_to) =
        expectation_to_announcer(orig, reply, false, orig.proto, reply.dport, orig.sport);
    Expectation {
        key,
        parent: *orig,
        mark,
        label,
        nat_to,
        expires,
    }
}

/// What an FTP announcement leads to.
pub(crate) struct FtpOutcome {
    pub expectation: Expectation,
    pub edit: Option<PayloadEdit>,
}

/// Checks an announced endpoint against the control connection and builds its expectation;
/// `None` when the announced address is not the announcer's (an FTP bounce attempt: Open
/// vSwitch refuses it the same way). `nat`: rewrite the address for the other side.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ftp_expectation(
    e: &FtpEndpoint,
    orig: &Tuple,
    reply: &Tuple,
    by_reply: bool,
    nat: bool,
    mark: u32,
    label: u128,
    expires: u64,
) -> Option<FtpOutcome> {
    // The announcer's address as it wrote it, and as the other side must read it.
    let (own, own_natted) = if by_reply {
        (reply.src, orig.dst)
    } else {
        (orig.src, reply.dst)
    };
    if let Some(a) = e.addr
        && a != own
        && a != own_natted
    {
        return None;
    }
    let (key, nat_to) = expectation_to_announcer(orig, reply, by_reply, orig.proto, e.port, e.port);
    let edit = match e.addr {
        Some(a) if nat && a != own_natted => Some(edit_for(e, own_natted, orig.family)),
        _ => None,
    };
    Some(FtpOutcome {
        expectation: Expectation {
            key,
            parent: *orig,
            mark,
            label,
            nat_to,
            expires,
        },
        edit,
    })
}

fn edit_for(e: &FtpEndpoint, to: Addr, family: Family) -> PayloadEdit {
    let mut text = [0u8; MAX_ADDR_TEXT];
    let style = if family == Family::V6 {
        AddrStyle::Text
    } else {
        e.style
    };
    let len = ftp::addr_text(to, family, style, &mut text);
    PayloadEdit {
        offset: e.addr_span.0 as u16,
        old_len: (e.addr_span.1 - e.addr_span.0) as u8,
        len: len as u8,
        text,
    }
}

/// The packet of a related connection after NAT (`None`: nothing to translate), with the NAT
/// flags it earns.
pub(crate) fn related_wire(t: &Tuple, e: &Expectation) -> Option<(Tuple, u8)> {
    let (src, dst, dport) = e.nat_to;
    let wire = Tuple {
        src,
        dst,
        dport,
        ..*t
    };
    let mut flags = 0;
    if wire.src != t.src {
        flags |= crate::nat::NAT_SRC;
    }
    if wire.dst != t.dst || wire.dport != t.dport {
        flags |= crate::nat::NAT_DST;
    }
    (flags != 0).then_some((wire, flags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::PROTO_TCP;
    use std::net::Ipv4Addr;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<Ipv4Addr>().unwrap())
    }

    fn t(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple {
            src: a(src),
            dst: a(dst),
            sport,
            dport,
            zone: 7,
            proto: PROTO_TCP,
            family: Family::V4,
        }
    }

    fn endpoint(payload: &str) -> FtpEndpoint {
        match ftp::parse(payload.as_bytes(), Family::V4) {
            ftp::FtpMsg::Endpoint(e) => e,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn active_ftp_through_source_nat() {
        // Client 10.0.0.1 is SNATed to 192.0.2.9 towards server 198.51.100.7.
        let orig = t("10.0.0.1", 40000, "198.51.100.7", 21);
        let reply = t("198.51.100.7", 21, "192.0.2.9", 40000);
        let e = endpoint("PORT 10,0,0,1,19,137\r\n");
        let out = ftp_expectation(&e, &orig, &reply, false, true, 5, 6, 100).unwrap();
        let x = out.expectation;
        assert_eq!(x.key, t("198.51.100.7", 0, "192.0.2.9", 5001));
        assert_eq!((x.parent, x.mark, x.label), (orig, 5, 6));
        let edit = out.edit.unwrap();
        assert_eq!(edit.text(), b"192,0,2,9");
        assert_eq!((edit.offset, edit.old_len, edit.delta()), (5, 8, 1));
        // The server's connection back is translated to the client's real address.
        let data = t("198.51.100.7", 20, "192.0.2.9", 5001);
        let (wire, flags) = related_wire(&data, &x).unwrap();
        assert_eq!(wire, t("198.51.100.7", 20, "10.0.0.1", 5001));
        assert_eq!(flags, crate::nat::NAT_DST);
        // Without nat in the action, the payload stays.
        let plain = ftp_expectation(&e, &orig, &reply, false, false, 0, 0, 1).unwrap();
        assert!(plain.edit.is_none());
    }

    #[test]
    fn passive_ftp_to_a_dnat_backend() {
        // Client 10.0.0.1 reaches service 10.96.0.10:21, DNATed to backend 10.244.1.5:21.
        let orig = t("10.0.0.1", 40000, "10.96.0.10", 21);
        let reply = t("10.244.1.5", 21, "10.0.0.1", 40000);
        let e = endpoint("227 Entering Passive Mode (10,244,1,5,117,48).\r\n");
        let out = ftp_expectation(&e, &orig, &reply, true, true, 0, 0, 100).unwrap();
        assert_eq!(out.expectation.key, t("10.0.0.1", 0, "10.96.0.10", 30000));
        assert_eq!(out.edit.unwrap().text(), b"10,96,0,10");
        let data = t("10.0.0.1", 50000, "10.96.0.10", 30000);
        let (wire, flags) = related_wire(&data, &out.expectation).unwrap();
        assert_eq!(wire, t("10.0.0.1", 50000, "10.244.1.5", 30000));
        assert_eq!(flags, crate::nat::NAT_DST);
    }

    #[test]
    fn bounce_attempts_are_refused() {
        let orig = t("10.0.0.1", 40000, "10.0.0.2", 21);
        let reply = orig.reversed();
        let e = endpoint("PORT 10,0,0,99,19,137\r\n");
        assert!(ftp_expectation(&e, &orig, &reply, false, false, 0, 0, 1).is_none());
        let e = endpoint("227 Entering Passive Mode (10,0,0,1,117,48).\r\n");
        assert!(ftp_expectation(&e, &orig, &reply, true, false, 0, 0, 1).is_none());
    }

    #[test]
    fn tftp_answer_is_expected_at_the_clients_port() {
        let mut orig = t("10.0.0.1", 3000, "10.0.0.2", 69);
        orig.proto = crate::tuple::PROTO_UDP;
        let reply = orig.reversed();
        let x = tftp_expectation(&orig, &reply, 0, 0, 9);
        let mut want = t("10.0.0.2", 0, "10.0.0.1", 3000);
        want.proto = crate::tuple::PROTO_UDP;
        assert_eq!(x.key, want);
        let answer = Tuple {
            sport: 4444,
            ..want
        };
        assert!(
            related_wire(&answer, &x).is_none(),
            "no NAT, nothing to translate"
        );
    }
}
