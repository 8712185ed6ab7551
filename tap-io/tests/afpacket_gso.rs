//! AF_PACKET ports with virtio-net headers between two namespaces with real kernel TCP
//! stacks (TSO on): super-frames arrive whole with their GSO meta, and a tiny forwarder in
//! the test carries a TCP stream either whole (vnet on both sides) or segmented in software
//! by `encap::gso` (vnet off on the way out).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use encap::gso::{GsoInfo, GsoKind, GsoPlan, complete_checksum};
use tap_io::buf::DEFAULT_HEADROOM;
use tap_io::netns::{self, Netns, in_private_netns, require_root};
use tap_io::{
    AfPacketConfig, AfPacketPort, Batch, GSO_FRAME_ROOM, GsoKind as MetaKind, Port, RingKind,
};

/// Bytes the sender writes (in 64 KiB writes, so its TSO builds 64 KiB super-frames).
const BYTES: usize = 16 << 20;

const RECEIVER: &str = r#"
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.2", 5001)); s.listen(1); s.settimeout(15)
c, _ = s.accept(); c.settimeout(15)
h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())
"#;

const SENDER: &str = r#"
import hashlib, socket, sys, time
n = int(sys.argv[1]); chunk = bytes((i * 7) & 0xff for i in range(65536))
deadline = time.time() + 5
while True:
    try:
        s = socket.create_connection(("10.77.0.2", 5001), timeout=2); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.05)
s.settimeout(15)
h = hashlib.sha256(); sent = 0
while sent < n:
    b = chunk[: min(len(chunk), n - sent)]
    s.sendall(b); h.update(b); sent += len(b)
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print(sent, h.hexdigest())
"#;

/// Two namespaces `gso{tag}a` (10.77.0.1) and `gso{tag}b` (10.77.0.2), each joined by a veth pair to
/// the calling thread's namespace (`sa`, `sb`), TSO on on the senders' side.
fn topology(tag: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("gso{tag}a")).unwrap();
    let b = Netns::new(&format!("gso{tag}b")).unwrap();
    for (ns, us, peer, ip) in [(&a, "sa", "pa", "10.77.0.1"), (&b, "sb", "pb", "10.77.0.2")] {
        netns::sh(&format!(
            "ip link add {us} type veth peer name {peer} && ip link set {peer} netns {} && ip link set {us} up",
            ns.name()
        ))
        .unwrap();
        ns.sh(&format!(
            "ip addr add {ip}/24 dev {peer} && ip link set {peer} up && ethtool -K {peer} tso on gso on tx on >/dev/null"
        ))
        .unwrap();
    }
    // The receiving kernel must really verify the checksums we produce.
    b.sh("ethtool -K pb rx off gro off >/dev/null").unwrap();
    (a, b)
}

fn spawn_in(ns: &str, script: &str, arg: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script, arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn output(mut c: Child) -> String {
    let mut s = String::new();
    let _ = c.stdout.take().unwrap().read_to_string(&mut s);
    let mut e = String::new();
    let _ = c.stderr.take().unwrap().read_to_string(&mut e);
    let _ = c.wait();
    assert!(e.trim().is_empty(), "script failed: {e}");
    s.trim().to_owned()
}

#[derive(Debug, Default)]
struct FwdStats {
    gso_frames: u64,
    largest: usize,
    segments_made: u64,
    largest_out: usize,
}

/// Moves frames a -> b and b -> a until both scripts exited or the deadline passed. Frames
/// leaving through a port without offloads are segmented / checksum-completed first.
fn forward(a: &mut AfPacketPort, b: &mut AfPacketPort, kids: &mut [&mut Child]) -> FwdStats {
    let mut st = FwdStats::default();
    let mut rx = Batch::new(64, DEFAULT_HEADROOM, GSO_FRAME_ROOM);
    let mut tx = Batch::new(64, DEFAULT_HEADROOM, GSO_FRAME_ROOM);
    let deadline = Instant::now() + Duration::from_secs(25);
    while Instant::now() < deadline {
        let mut moved = 0;
        for dir in 0..2 {
            let (from, to) = if dir == 0 {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            rx.clear();
            moved += from.rx_batch(&mut rx).unwrap();
            let offl = to.offloads();
            for i in 0..rx.len() {
                let meta = rx[i].meta;
                if let Some(g) = meta.gso {
                    st.gso_frames += 1;
                    st.largest = st.largest.max(rx[i].len());
                    assert!(matches!(g.kind, MetaKind::Tcp4));
                }
                if let (Some(g), false) = (meta.gso, offl.gso) {
                    let info = GsoInfo {
                        kind: GsoKind::Tcp4,
                        mss: g.size,
                        hdr_len: g.hdr_len,
                    };
                    let plan = GsoPlan::new(rx[i].data(), &info).unwrap();
                    for s in 0..plan.segments() {
                        if tx.is_full() {
                            to.tx_batch(&mut tx);
                        }
                        let out = tx.spare().unwrap();
                        let n = plan.write(rx[i].data(), s, out.rx_space()).unwrap();
                        out.set_len(n).unwrap();
                        st.segments_made += 1;
                        st.largest_out = st.largest_out.max(n);
                        tx.commit();
                    }
                } else {
                    let p = &mut rx[i];
                    // A port with checksum offload can finish it only when the position is
                    // known; a frame from a port without vnet knows none (TCP/IPv4 here).
                    if meta.csum_not_ready && (!offl.csum || meta.csum_start.is_none()) {
                        let d = p.data();
                        let start = meta
                            .csum_start
                            .map(usize::from)
                            .unwrap_or(14 + usize::from(d[14] & 15) * 4);
                        let off = meta.csum_offset.map(usize::from).unwrap_or(16);
                        if d.len() > 23 && d[12..14] == [8, 0] && d[23] == 6 {
                            complete_checksum(p.data_mut(), start, off).unwrap();
                        }
                        p.meta.csum_not_ready = false;
                    }
                    st.largest_out = st.largest_out.max(p.len());
                    assert!(tx.take_from(&mut rx, i));
                }
                if tx.is_full() {
                    to.tx_batch(&mut tx);
                }
            }
            to.tx_batch(&mut tx);
        }
        if moved == 0 {
            if kids.iter_mut().all(|c| c.try_wait().unwrap().is_some()) {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    for c in kids.iter_mut() {
        if c.try_wait().unwrap().is_none() {
            let _ = c.kill();
        }
    }
    st
}

fn run_stream(
    vnet_out: bool,
    ring: RingKind,
) -> (FwdStats, String, String, AfPacketPort, AfPacketPort) {
    let (a_ns, b_ns) = topology(if vnet_out { "v" } else { "s" });
    let mut cfg_a = AfPacketConfig::new("sa");
    cfg_a.ring = ring;
    let mut a = AfPacketPort::open(&cfg_a).unwrap();
    let mut cfg_b = AfPacketConfig::new("sb");
    cfg_b.ring = ring;
    cfg_b.vnet_hdr = vnet_out;
    let mut b = AfPacketPort::open(&cfg_b).unwrap();
    let mut recv = spawn_in(b_ns.name(), RECEIVER, "");
    std::thread::sleep(Duration::from_millis(200));
    let mut send = spawn_in(a_ns.name(), SENDER, &BYTES.to_string());
    let st = forward(&mut a, &mut b, &mut [&mut send, &mut recv]);
    let sent = output(send);
    let got = output(recv);
    drop((a_ns, b_ns));
    (st, sent, got, a, b)
}

fn super_frames_cross_whole(ring: RingKind) {
    let (st, sent, got, a, b) = run_stream(true, ring);
    assert!(sent.starts_with(&format!("{BYTES} ")), "sender: {sent}");
    assert_eq!(got, sent, "receiver got every byte in order");
    assert!(st.gso_frames > 0, "super-frames arrived: {st:?}");
    assert!(
        st.largest > 1514,
        "a super-frame is larger than the MTU: {st:?}"
    );
    assert!(a.stats().rx_gso > 0 && b.stats().tx_gso > 0);
    match ring {
        RingKind::V3 => assert_eq!(
            a.ring_geometry(),
            (128 << 10, 64, 0),
            "64 blocks of 128 KiB"
        ),
        RingKind::V2 => {
            // MTU-sized slots; super-frames come through the socket queue.
            let (block, blocks, slot) = a.ring_geometry();
            assert!(slot < 2048, "slots sized for the MTU: {slot}");
            assert!((block / slot) * blocks >= 2048, "at least 2048 slots");
        }
    }
    assert_eq!(a.stats().rx_truncated, 0);
    assert_eq!(b.stats().tx_dropped.total(), 0, "{:?}", b.stats());
}

#[test]
fn tso_super_frames_cross_a_vnet_forwarder_whole_and_intact() {
    if !require_root("tso_super_frames_cross_a_vnet_forwarder_whole_and_intact") {
        return;
    }
    in_private_netns(|| super_frames_cross_whole(RingKind::V2)).unwrap();
}

#[test]
fn tso_super_frames_cross_a_v3_ring_forwarder_whole_and_intact() {
    if !require_root("tso_super_frames_cross_a_v3_ring_forwarder_whole_and_intact") {
        return;
    }
    in_private_netns(|| super_frames_cross_whole(RingKind::V3)).unwrap();
}

#[test]
fn tso_super_frames_are_segmented_in_software_for_a_port_without_vnet() {
    if !require_root("tso_super_frames_are_segmented_in_software_for_a_port_without_vnet") {
        return;
    }
    in_private_netns(|| {
        let (st, sent, got, _a, b) = run_stream(false, RingKind::V2);
        assert!(sent.starts_with(&format!("{BYTES} ")), "sender: {sent}");
        assert_eq!(got, sent, "receiver got every byte in order");
        assert!(
            st.gso_frames > 0 && st.segments_made > st.gso_frames,
            "{st:?}"
        );
        assert!(st.largest_out <= 1514, "every segment fits the MTU: {st:?}");
        assert_eq!(b.stats().tx_gso, 0);
        assert_eq!(b.stats().tx_dropped.total(), 0, "{:?}", b.stats());
    })
    .unwrap();
}
