//! Asynchronous OpenFlow messages and the session state behind them, driven in-process: a
//! switch with a real datapath, and OpenFlow sessions fed bytes directly (the same
//! `Session` the server runs per connection). No root, no sockets.
//!
//! FLOW_REMOVED never lost, packet-in losses counted, PORT_STATS/PORT_DESC in parts, packet-in
//! contents (metadata, userdata, reasons, FULL_LEN, controller ids), flow-removed reasons,
//! counters across delete + add, flow-monitor bookkeeping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowtable::FlowModCommand;
use openflow::{Message, decode, encode};
use vswitch::bridge::Commit;
use vswitch::control::Control;
use vswitch::ofserver::session::Session;
use vswitch::switch::Switch;

struct Sw {
    sw: Arc<Switch>,
    ctl: Control,
    br: String,
}

impl Sw {
    /// A switch with bridge `br` (a name of its own per test: the session counters are
    /// process-wide, by bridge name).
    fn start(br: &str) -> Sw {
        let (dp, _threads) =
            vswitch::datapath::spawn(vswitch::datapath::Options::default()).expect("datapath");
        let dir = std::env::temp_dir().join(format!("ofasync-{br}-{}", std::process::id()));
        let sw = Arc::new(Switch::new(dp, dir));
        sw.start_packet_in_dispatch();
        sw.add_br(br).expect("add-br");
        let ctl = Control::new(sw.clone());
        Sw {
            sw,
            ctl,
            br: br.to_string(),
        }
    }

    fn cmd(&self, args: &[&str]) -> String {
        self.ctl
            .command(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Adds `n` flows built by `text(i)` in one transaction.
    fn add_flows(&self, n: usize, text: impl Fn(usize) -> String) {
        let mods: Vec<flowtable::FlowMod> = (0..n)
            .map(|i| flowtable::text::parse_flow_mod(&text(i), FlowModCommand::Add).unwrap())
            .collect();
        let mut state = self.sw.lock();
        let b = state.get_mut(&self.br).unwrap();
        b.transaction(Commit::Atomic, |tx| {
            for fm in &mods {
                tx.flow_mod(fm)?;
            }
            Ok::<(), flowtable::table::TableError>(())
        })
        .unwrap();
    }

    /// A negotiated OpenFlow session on the bridge.
    fn session(&self) -> Conn {
        let mut c = Conn {
            s: Session::new(Arc::downgrade(&self.sw), self.br.clone()),
        };
        let hello = c.raw(&[4, 0, 0, 8, 0, 0, 0, 1]);
        assert!(hello.is_empty(), "{hello:?}");
        c
    }
}

struct Conn {
    s: Session,
}

/// Splits back-to-back OpenFlow messages.
fn split(mut out: &[u8]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while out.len() >= 8 {
        let len = usize::from(u16::from_be_bytes([out[2], out[3]]));
        v.push(out[..len].to_vec());
        out = &out[len..];
    }
    v
}

const OFPT_ERROR: u8 = 1;
const OFPT_PACKET_IN: u8 = 10;
const OFPT_FLOW_REMOVED: u8 = 11;
const OFPT_MULTIPART_REPLY: u8 = 19;

impl Conn {
    /// Feeds raw bytes; the messages answered.
    fn raw(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let step = self.s.input(bytes, &mut out);
        assert!(step.open, "session closed");
        split(&out)
    }

    fn send(&mut self, msg: &Message, xid: u32) -> Vec<Vec<u8>> {
        self.raw(&encode(msg, xid).unwrap())
    }

    /// `got` and what the session delivers on its ticks until `want` says enough of all
    /// that (or 10 s pass).
    fn async_until(
        &mut self,
        mut got: Vec<Vec<u8>>,
        mut want: impl FnMut(&[Vec<u8>]) -> bool,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut out = Vec::new();
            self.s.tick(true, &mut out);
            got.extend(split(&out));
            if want(&got) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks for asynchronous messages (as `ovs-ofctl monitor` does).
    fn subscribe(&mut self) {
        let r = self.send(
            &Message::SetConfig(openflow::SwitchConfig {
                flags: 0,
                miss_send_len: 0xffff,
            }),
            2,
        );
        assert!(r.is_empty(), "{r:?}");
    }
}

fn count_type(msgs: &[Vec<u8>], t: u8) -> usize {
    msgs.iter().filter(|m| m[1] == t).count()
}

/// OFPT_FLOW_MOD DELETE of every flow (table ALL, empty match).
fn delete_all_flow_mod(xid: u32) -> Vec<u8> {
    let mut fm = vec![4, 14, 0, 0];
    fm.extend_from_slice(&xid.to_be_bytes());
    fm.extend_from_slice(&[0; 16]); // cookie, cookie_mask
    fm.extend_from_slice(&[0xff, 3, 0, 0, 0, 0, 0, 0]); // table ALL, DELETE, timeouts, prio
    fm.extend_from_slice(&[0xff; 12]); // buffer_id, out_port, out_group
    fm.extend_from_slice(&[0, 0, 0, 0]); // flags, pad
    fm.extend_from_slice(&[0, 1, 0, 4, 0, 0, 0, 0]); // empty OXM match, padded
    let len = fm.len() as u16;
    fm[2..4].copy_from_slice(&len.to_be_bytes());
    fm
}

/// One DELETE of 2000 `send_flow_rem` flows: 2000 FLOW_REMOVED, none lost (Open vSwitch
/// never drops them).
#[test]
fn flow_removed_burst_is_never_lost() {
    let d = Sw::start("frburst");
    let mut c = d.session();
    c.subscribe();
    const N: usize = 2000;
    d.add_flows(N, |i| {
        format!(
            "send_flow_rem,priority=5,ip,nw_dst=10.1.{}.{},actions=drop",
            i / 256,
            i % 256
        )
    });
    let got = c.raw(&delete_all_flow_mod(7));
    let got = c.async_until(got, |m| count_type(m, OFPT_FLOW_REMOVED) >= N);
    assert_eq!(count_type(&got, OFPT_ERROR), 0);
    assert_eq!(count_type(&got, OFPT_FLOW_REMOVED), N);
    for m in got.iter().filter(|m| m[1] == OFPT_FLOW_REMOVED) {
        let Ok((_, Message::FlowRemoved(fr))) = decode(m) else {
            panic!("bad FLOW_REMOVED {m:02x?}");
        };
        assert_eq!((fr.reason, fr.priority), (2, 5));
    }
}

/// Packet-ins beyond a connection's queue are dropped, and every drop is counted where the
/// metrics read (`ofserver::counters`).
#[test]
fn packet_ins_lost_to_a_slow_reader_are_counted() {
    let d = Sw::start("pinlost");
    let mut c = d.session();
    c.subscribe();
    d.cmd(&["add-flow", &d.br, "priority=100,actions=controller"]);
    let frame = encap::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1000, 53)
        .build();
    const N: u64 = 1500;
    for _ in 0..N {
        d.sw.inject(&d.br, 1, &frame).unwrap();
    }
    let lost = vswitch::events::LOSSY_QUEUED_MAX as u64;
    let dropped = || {
        vswitch::ofserver::counters::snapshot()
            .get(&d.br)
            .map_or(0, |c| c.packet_ins_dropped)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while dropped() < N - lost && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(dropped(), N - lost);
    let got = c.async_until(Vec::new(), |m| count_type(m, OFPT_PACKET_IN) as u64 >= lost);
    assert_eq!(count_type(&got, OFPT_PACKET_IN) as u64, lost);
}

/// The replies of a multipart request: every part at most 64 KiB, REPLY_MORE on all parts
/// but the last, and the parts' bodies.
fn multipart_parts(msgs: &[Vec<u8>]) -> Vec<openflow::MultipartReply> {
    assert_eq!(count_type(msgs, OFPT_ERROR), 0, "{msgs:02x?}");
    let n = msgs.len();
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            assert_eq!(m[1], OFPT_MULTIPART_REPLY);
            let Ok((_, Message::MultipartReply { flags, body })) = decode(m) else {
                panic!("bad multipart reply");
            };
            assert_eq!(flags & openflow::multipart::MORE != 0, i + 1 < n);
            body
        })
        .collect()
}

/// PORT_STATS and PORT_DESC of a bridge with 1100 ports (a PORT_STATS entry is 112 bytes, a
/// PORT_DESC one 64, so one message holds 585 or 1023 at most) come in several REPLY_MORE
/// parts, every port once.
#[test]
fn port_stats_and_port_desc_of_many_ports_come_in_parts() {
    let d = Sw::start("manyports");
    const N: u32 = 1100;
    let mut peers = Vec::new();
    for i in 1..=N {
        let (ours, theirs) = tap_io::MemPort::pair(&format!("mp{i}"), &format!("mq{i}"), 4);
        let spec = vswitch::portspec::PortSpec::parse(&format!("mp{i}"), &[format!("ofport={i}")])
            .expect("port spec");
        d.sw.add_port_with_io(&d.br, spec, ours).expect("add-port");
        peers.push(theirs);
    }
    let mut c = d.session();
    let want: Vec<u32> = (1..=N).collect();

    let r = c.send(
        &Message::MultipartRequest {
            flags: 0,
            body: openflow::MultipartRequest::PortStats {
                port_no: 0xffff_ffff,
            },
        },
        5,
    );
    assert!(r.len() >= 3, "{} part(s)", r.len());
    let mut ports = Vec::new();
    for body in multipart_parts(&r) {
        let openflow::MultipartReply::PortStats(list) = body else {
            panic!("not port stats");
        };
        ports.extend(list.iter().map(|p| p.port_no));
    }
    ports.sort();
    assert_eq!(ports, want);

    let r = c.send(
        &Message::MultipartRequest {
            flags: 0,
            body: openflow::MultipartRequest::PortDesc,
        },
        6,
    );
    // 1100 × 64 bytes: two parts.
    assert!(r.len() >= 2, "{} part(s)", r.len());
    let mut ports = Vec::new();
    for body in multipart_parts(&r) {
        let openflow::MultipartReply::PortDesc(list) = body else {
            panic!("not port desc");
        };
        ports.extend(list.iter().map(|p| p.port_no));
    }
    ports.sort();
    assert_eq!(ports, want);
}

/// The OFPT_FLOW_MOD for flow text `text`.
fn flow_mod(text: &str, cmd: FlowModCommand) -> Message {
    let fm = flowtable::text::parse_flow_mod(text, cmd).unwrap();
    Message::FlowMod(openflow::convert::flow_mod_out(&fm).unwrap())
}

/// NXT_SET_PACKET_IN_FORMAT.
fn packet_in_format(c: &mut Conn, format: u32) -> Vec<Vec<u8>> {
    c.send(&Message::NxSetPacketInFormat(format), 3)
}

/// The (type, code) of an OFPT_ERROR.
fn error_of(m: &[u8]) -> (u16, u16) {
    assert_eq!(m[1], OFPT_ERROR, "{m:02x?}");
    (
        u16::from_be_bytes([m[8], m[9]]),
        u16::from_be_bytes([m[10], m[11]]),
    )
}

fn udp_frame(payload: &[u8]) -> Vec<u8> {
    encap::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .udp(1000, 53)
        .payload(payload)
        .build()
}

/// The NXT_PACKET_IN2 Open vSwitch 3.1 sent `ovs-ofctl -O OpenFlow13 monitor` (recorded in
/// the OpenFlow vectors, `cmd/monitor/of13`) for this 106-byte frame on port 1 hitting
/// `priority=300,udp,in_port=1,actions=controller` in table 0: no FULL_LEN (the packet is
/// whole), no USERDATA, metadata `in_port=1`.
const RECORDED_PACKET_IN2: &str = "040400b000000000000023200000001e0000006e00000000000200000000000108004500005c000000004011668f0a0000010a00000203e800350048033b000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f000000030005000000000004001000000000000000000000000000050005010000000006000c800000040000000100000000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Our NXT_PACKET_IN2 for the recorded case is Open vSwitch's, byte for byte.
#[test]
fn nxt_packet_in2_matches_the_recording_byte_for_byte() {
    let d = Sw::start("pin2rec");
    let mut c = d.session();
    assert!(packet_in_format(&mut c, 2).is_empty());
    d.cmd(&[
        "add-flow",
        &d.br,
        "priority=300,udp,in_port=1,actions=controller",
    ]);
    let want = unhex(RECORDED_PACKET_IN2);
    // The packet property: 4 bytes of header, then the frame.
    let frame = &want[20..20 + 106];
    d.sw.inject(&d.br, 1, frame).unwrap();
    let got = c.async_until(Vec::new(), |m| !m.is_empty());
    assert_eq!(got, vec![want]);
}

/// A packet-in carries the pipeline fields that are not zero (registers, metadata, the
/// conntrack fields with the eth_type and original tuple), the action's userdata, and a
/// reason OpenFlow 1.3 has (`group` goes out as `action`, as Open vSwitch sends it to an
/// OpenFlow 1.3 connection in either format); FULL_LEN only when the packet was cut.
#[test]
fn packet_ins_carry_metadata_userdata_and_openflow13_reasons() {
    use encap::flowkey::{CT_NEW, CT_TRK};
    let d = Sw::start("pinmeta");
    d.cmd(&[
        "add-flow",
        &d.br,
        "priority=10,udp,actions=ct(zone=3,table=1)",
    ]);
    d.cmd(&[
        "add-flow",
        &d.br,
        "table=1,priority=10,ct_state=+trk,udp,actions=load:0x2a->NXM_NX_REG0[],\
         load:0x7->NXM_NX_REG12[],load:0x5->OXM_OF_METADATA[],controller(reason=group,userdata=01.02.03),\
         controller(max_len=20)",
    ]);
    let mut nxt2 = d.session();
    assert!(packet_in_format(&mut nxt2, 2).is_empty());
    let mut std13 = d.session();
    std13.subscribe();
    let frame = udp_frame(b"0123456789abcdefghijklmnopqrstuvwxyz");
    d.sw.inject(&d.br, 1, &frame).unwrap();

    let check_metadata = |m: &openflow::oxm::Match| {
        let m = openflow::convert::match_in(m).unwrap();
        let (v, k) = (&m.value, &m.mask);
        assert_eq!((v.in_port, k.in_port), (1, u32::MAX));
        assert_eq!((v.regs[0], k.regs[0]), (0x2a, u32::MAX));
        assert_eq!((v.regs[12], k.regs[12]), (7, u32::MAX));
        assert_eq!(k.regs[1..12], [0; 11], "zero registers are left out");
        assert_eq!(k.regs[13..], [0; 3], "zero registers are left out");
        assert_eq!((v.metadata, k.metadata), (5, u64::MAX));
        assert_eq!((v.ct_state, k.ct_state), (CT_TRK | CT_NEW, u8::MAX));
        assert_eq!((v.ct_zone, k.ct_zone), (3, u16::MAX));
        assert_eq!(k.ct_mark, 0, "a zero ct_mark is left out");
        assert_eq!((v.eth_type, k.eth_type), (0x0800, u16::MAX));
        assert_eq!((v.ct_nw_proto, v.ct_tp_src, v.ct_tp_dst), (17, 1000, 53));
        assert_eq!(
            (v.ct_nw_src, v.ct_nw_dst),
            (
                u32::from_be_bytes([10, 0, 0, 1]),
                u32::from_be_bytes([10, 0, 0, 2])
            )
        );
        assert_eq!(k.nw_src, 0, "packet fields are not metadata");
    };

    let got = nxt2.async_until(Vec::new(), |m| m.len() >= 2);
    assert_eq!(got.len(), 2, "{got:02x?}");
    let pins: Vec<openflow::PacketIn2> = got
        .iter()
        .map(|m| match decode(m) {
            Ok((_, Message::NxPacketIn2(p))) => p,
            other => panic!("not an NXT_PACKET_IN2: {other:?}"),
        })
        .collect();
    assert_eq!(pins[0].reason, 1, "group is sent as action in OpenFlow 1.3");
    assert_eq!(pins[0].userdata.as_deref(), Some(&[1u8, 2, 3][..]));
    assert_eq!(pins[0].full_len, None, "whole packet: no FULL_LEN");
    assert_eq!(pins[0].packet, frame);
    assert_eq!(pins[0].table_id, 1);
    check_metadata(&openflow::oxm::Match {
        fields: pins[0].metadata.clone(),
    });
    assert_eq!(pins[1].userdata, None);
    assert_eq!(pins[1].full_len, Some(frame.len() as u32), "cut: FULL_LEN");
    assert_eq!(pins[1].packet, frame[..20]);

    let got = std13.async_until(Vec::new(), |m| m.len() >= 2);
    assert_eq!(got.len(), 2, "{got:02x?}");
    let Ok((_, Message::PacketIn(p))) = decode(&got[0]) else {
        panic!("not a PACKET_IN: {:02x?}", got[0]);
    };
    assert_eq!(got[0][1], OFPT_PACKET_IN);
    assert_eq!(p.reason, 1, "OpenFlow 1.3 has no reason group");
    assert_eq!(usize::from(p.total_len), frame.len());
    check_metadata(&p.match_);
}

/// `controller(pause)` would need NXT_RESUME, which this switch does not implement: refused
/// (flow-mod, packet-out, vswitchctl), never accepted and ignored.
#[test]
fn controller_pause_is_refused() {
    let d = Sw::start("pinpause");
    let mut c = d.session();
    let r = c.send(
        &flow_mod("priority=5,actions=controller(pause)", FlowModCommand::Add),
        11,
    );
    assert_eq!(r.len(), 1, "{r:02x?}");
    assert_eq!(error_of(&r[0]), (2, 5), "OFPBAC_BAD_ARGUMENT");
    let r = c.send(
        &flow_mod(
            "priority=5,actions=clone(controller(pause,userdata=01))",
            FlowModCommand::Add,
        ),
        12,
    );
    assert_eq!(error_of(&r[0]), (2, 5));
    let actions =
        flowtable::text::parse_actions("controller(pause)", &flowtable::Match::any()).unwrap();
    let po = Message::PacketOut(openflow::PacketOut {
        buffer_id: openflow::flow::NO_BUFFER,
        in_port: 0xffff_fffd,
        actions: openflow::convert::actions_out(&actions.apply).unwrap(),
        data: udp_frame(b"x"),
    });
    let r = c.send(&po, 13);
    assert_eq!(error_of(&r[0]), (2, 5));
    assert!(
        d.ctl
            .command(&["add-flow", &d.br, "priority=5,actions=controller(pause)"])
            .is_err()
    );
    let dump = d.cmd(&["dump-flows", &d.br]);
    assert!(!dump.contains("pause"), "{dump}");
}

/// NXT_SET_PACKET_IN_FORMAT with a format this switch does not send: OFPBRC_EPERM, as Open
/// vSwitch answers an unknown one.
#[test]
fn unknown_packet_in_formats_are_refused() {
    let d = Sw::start("pinfmt");
    let mut c = d.session();
    for f in [1, 3, 0xffff_ffff] {
        let r = packet_in_format(&mut c, f);
        assert_eq!(r.len(), 1, "format {f}: {r:02x?}");
        assert_eq!(error_of(&r[0]), (1, 5), "format {f}");
    }
    assert!(packet_in_format(&mut c, 0).is_empty());
    assert!(packet_in_format(&mut c, 2).is_empty());
}

/// `controller(id=N)` packet-ins go only to connections whose NXT_SET_CONTROLLER_ID is N.
#[test]
fn controller_ids_choose_the_connections() {
    let d = Sw::start("pinid");
    d.cmd(&["add-flow", &d.br, "priority=5,udp,actions=controller(id=7)"]);
    d.cmd(&["add-flow", &d.br, "priority=5,tcp,actions=controller"]);
    let mut zero = d.session();
    zero.subscribe();
    let mut seven = d.session();
    assert!(seven.send(&Message::NxSetControllerId(7), 4).is_empty());
    d.sw.inject(&d.br, 1, &udp_frame(b"to 7")).unwrap();
    let tcp = encap::build::FrameBuilder::eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
        .tcp(1000, 80, 0x02)
        .build();
    d.sw.inject(&d.br, 1, &tcp).unwrap();
    let to_seven = seven.async_until(Vec::new(), |m| !m.is_empty());
    let to_zero = zero.async_until(Vec::new(), |m| !m.is_empty());
    std::thread::sleep(Duration::from_millis(100));
    let mut rest = Vec::new();
    seven.s.tick(true, &mut rest);
    zero.s.tick(true, &mut rest);
    assert!(rest.is_empty(), "more packet-ins: {rest:02x?}");
    let proto = |m: &[u8]| match decode(m) {
        Ok((_, Message::PacketIn(p))) => p.data[23],
        other => panic!("{other:?}"),
    };
    assert_eq!(to_seven.iter().map(|m| proto(m)).collect::<Vec<_>>(), [17]);
    assert_eq!(to_zero.iter().map(|m| proto(m)).collect::<Vec<_>>(), [6]);
    // The id's six leading bytes must be zero (NXBRC_MUST_BE_ZERO).
    let mut bad = encode(&Message::NxSetControllerId(1), 9).unwrap();
    bad[16] = 1;
    let r = seven.raw(&bad);
    assert_eq!(error_of(&r[0]), (0xffff, 5));
    assert_eq!(&r[0][12..16], &0x2320u32.to_be_bytes());
}

/// ONFST_FLOW_MONITOR request as `ovs-ofctl -O OpenFlow13 monitor BR watch:` sends it
/// (recorded): every table, every event, with actions and initial flows.
const WATCH_ALL: &str = "0412003000000009ffff0000000000004f4e46000000074e00000000003f0004ffffffffff0000000001000400000000";

/// The flow-monitor updates in `msgs`: (event, reason, table, cookie).
fn monitor_updates(msgs: &[Vec<u8>]) -> Vec<(u16, u16, u8, u64)> {
    let mut v = Vec::new();
    for m in msgs.iter().filter(|m| m[1] == OFPT_MULTIPART_REPLY) {
        let Ok((
            _,
            Message::MultipartReply {
                body: openflow::MultipartReply::Experimenter { body, .. },
                ..
            },
        )) = decode(m)
        else {
            continue;
        };
        for u in openflow::monitor::FlowUpdate::decode_list(&body).unwrap() {
            v.push((u.event, u.reason, u.table_id, u.cookie));
        }
    }
    v
}

/// FLOW_REMOVED in `msgs`: (table, cookie, reason), sorted.
fn flows_removed(msgs: &[Vec<u8>]) -> Vec<(u8, u64, u8)> {
    let mut v: Vec<(u8, u64, u8)> = msgs
        .iter()
        .filter(|m| m[1] == OFPT_FLOW_REMOVED)
        .map(|m| match decode(m) {
            Ok((_, Message::FlowRemoved(fr))) => (fr.table_id, fr.cookie, fr.reason),
            other => panic!("{other:?}"),
        })
        .collect();
    v.sort();
    v
}

const LEARNING: &str = "table=0,priority=5,udp,send_flow_rem,actions=learn(table=1,priority=5,\
    cookie=0x77,delete_learned,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])";
/// A flow as the learning flow's learn builds it (same table and cookie).
const LEARNED: &str =
    "table=1,priority=5,cookie=0x77,send_flow_rem,dl_dst=02:00:00:00:00:01,actions=output:1";

/// A learning flow that times out takes its `delete_learned` flows with it, and those are
/// reported like any delete: FLOW_REMOVED `delete` and a flow-monitor DELETED (the learning
/// flow itself: `hard`).
#[test]
fn learned_flows_flushed_by_an_expiry_are_reported() {
    use openflow::monitor::event::DELETED;
    let d = Sw::start("explearn");
    d.cmd(&[
        "add-flow",
        &d.br,
        &LEARNING.replace("udp,", "udp,hard_timeout=1,"),
    ]);
    d.cmd(&["add-flow", &d.br, LEARNED]);
    let mut c = d.session();
    c.subscribe();
    c.raw(&unhex(WATCH_ALL));
    let expired =
        d.sw.lock()
            .get_mut(&d.br)
            .unwrap()
            .expire_flows(Instant::now() + Duration::from_secs(5), 0);
    assert_eq!(expired, 1);
    let got = c.async_until(Vec::new(), |m| {
        count_type(m, OFPT_FLOW_REMOVED) >= 2 && monitor_updates(m).len() >= 2
    });
    assert_eq!(flows_removed(&got), [(0, 0, 1), (1, 0x77, 2)]);
    let mut updates = monitor_updates(&got);
    updates.sort();
    assert_eq!(updates, [(DELETED, 1, 0, 0), (DELETED, 2, 1, 0x77)]);
    assert!(!d.cmd(&["dump-flows", &d.br]).contains("cookie=0x77"));
}

/// A learning flow modified (mod-flows) or replaced (an add of the same match and priority)
/// into one without its `delete_learned` learn takes the learned flows with it, as in Open
/// vSwitch; one that keeps the learn keeps them.
#[test]
fn learned_flows_go_when_their_learning_flow_is_modified_or_replaced() {
    let d = Sw::start("modlearn");
    let learned = |d: &Sw| d.cmd(&["dump-flows", &d.br]).contains("cookie=0x77");
    d.cmd(&["add-flow", &d.br, LEARNING]);
    d.cmd(&["add-flow", &d.br, LEARNED]);
    // Modified, learn kept: nothing goes.
    d.cmd(&["mod-flows", &d.br, &LEARNING.replace("send_flow_rem,", "")]);
    assert!(learned(&d));
    let mut c = d.session();
    c.subscribe();
    d.cmd(&["mod-flows", &d.br, "table=0,udp,actions=drop"]);
    assert!(!learned(&d), "mod-flows left the learned flow");
    let got = c.async_until(Vec::new(), |m| count_type(m, OFPT_FLOW_REMOVED) >= 1);
    assert_eq!(flows_removed(&got), [(1, 0x77, 2)]);

    d.cmd(&["add-flow", &d.br, LEARNING]);
    d.cmd(&["add-flow", &d.br, LEARNED]);
    assert!(learned(&d));
    d.cmd(&["add-flow", &d.br, "table=0,priority=5,udp,actions=drop"]);
    assert!(!learned(&d), "a replacing add left the learned flow");
}

/// `n_packets` of the flow at `priority` in the dump.
fn n_packets(d: &Sw, priority: u16) -> u64 {
    let dump = d.cmd(&["dump-flows", &d.br]);
    let line = dump
        .lines()
        .find(|l| l.contains(&format!("priority={priority},")))
        .unwrap_or_else(|| panic!("no priority {priority} in {dump}"));
    let n = line.split("n_packets=").nth(1).unwrap();
    n[..n.find(',').unwrap()].parse().unwrap()
}

/// A flow deleted and added again before the datapath snapshot is published is a new flow:
/// its counters start at 0. An add over a flow (no delete) keeps them, as in Open vSwitch
/// (`modify_keep_counts` without `reset_counts`).
#[test]
fn a_flow_deleted_and_added_again_starts_from_zero() {
    let d = Sw::start("readd");
    const FLOW: &str = "priority=50,udp,actions=drop";
    d.cmd(&["add-flow", &d.br, FLOW]);
    let frame = udp_frame(b"count me");
    for _ in 0..3 {
        d.sw.inject(&d.br, 1, &frame).unwrap();
    }
    assert_eq!(n_packets(&d, 50), 3);
    // An add over it: counters kept.
    let mut c = d.session();
    let r = c.send(&flow_mod(FLOW, FlowModCommand::Add), 20);
    assert!(r.is_empty(), "{r:02x?}");
    assert_eq!(c.send(&Message::BarrierRequest, 21).len(), 1);
    assert_eq!(n_packets(&d, 50), 3);
    // Delete and add in one batch (no barrier between them): one publish sees both.
    let mut batch = encode(
        &flow_mod("priority=50,udp", FlowModCommand::DeleteStrict),
        22,
    )
    .unwrap();
    batch.extend(encode(&flow_mod(FLOW, FlowModCommand::Add), 23).unwrap());
    batch.extend(encode(&Message::BarrierRequest, 24).unwrap());
    let r = c.raw(&batch);
    assert_eq!(r.len(), 1, "only the barrier reply: {r:02x?}");
    assert_eq!(n_packets(&d, 50), 0);
    d.sw.inject(&d.br, 1, &frame).unwrap();
    assert_eq!(n_packets(&d, 50), 1);
}

/// Flows deleted with their group are reported with OpenFlow 1.3's OFPRR_GROUP_DELETE (3),
/// as Open vSwitch does, in FLOW_REMOVED and to flow monitors; a plain delete stays 2.
#[test]
fn flows_deleted_with_their_group_say_group_delete() {
    use openflow::monitor::event::DELETED;
    let d = Sw::start("grpdel");
    d.cmd(&["add-group", &d.br, "group_id=4,type=all,bucket=output:1"]);
    d.cmd(&[
        "add-flow",
        &d.br,
        "priority=9,cookie=0x9,send_flow_rem,udp,actions=clone(output:2,group:4)",
    ]);
    d.cmd(&[
        "add-flow",
        &d.br,
        "priority=8,cookie=0x8,send_flow_rem,tcp,actions=drop",
    ]);
    let mut c = d.session();
    c.subscribe();
    c.raw(&unhex(WATCH_ALL));
    d.cmd(&["del-groups", &d.br, "group_id=4"]);
    d.cmd(&["del-flows", &d.br, "tcp"]);
    let got = c.async_until(Vec::new(), |m| {
        count_type(m, OFPT_FLOW_REMOVED) >= 2 && monitor_updates(m).len() >= 2
    });
    assert_eq!(flows_removed(&got), [(0, 0x8, 2), (0, 0x9, 3)]);
    let mut updates = monitor_updates(&got);
    updates.sort();
    assert_eq!(updates, [(DELETED, 2, 0, 0x8), (DELETED, 3, 0, 0x9)]);
}

/// The switch-wide "some connection monitors flows" count goes back to zero: after a
/// flow-monitor request that names no monitor, and when a monitoring session closes.
/// Subscriptions of closed sessions are forgotten when another subscribes.
#[test]
fn monitor_counts_and_subscriptions_do_not_leak() {
    let d = Sw::start("leaks");
    let hub = d.sw.packet_ins.clone();
    let mut c = d.session();
    // ONFST_FLOW_MONITOR with no monitor in it.
    let empty = "0412001800000009ffff0000000000004f4e46000000074e";
    let r = c.raw(&unhex(empty));
    assert_eq!(count_type(&r, OFPT_ERROR), 0, "{r:02x?}");
    assert!(
        !hub.has_flow_monitors(),
        "an empty request left the count up"
    );
    c.raw(&unhex(WATCH_ALL));
    assert!(hub.has_flow_monitors());
    drop(c);
    assert!(!hub.has_flow_monitors());

    let mut a = d.session();
    a.subscribe();
    assert_eq!(hub.subscribers(&d.br), 1);
    drop(a);
    let mut b = d.session();
    b.subscribe();
    assert_eq!(
        hub.subscribers(&d.br),
        1,
        "the closed session is still subscribed"
    );
}
