//! UDP GSO on the tunnel socket's send path: runs of equal-size payloads to one destination
//! leave as one message and arrive as the same datagrams, in order.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tap_io::buf::GSO_FRAME_ROOM;
use tap_io::netns::{self, in_private_netns, require_root};
use tap_io::{Batch, UdpTunnelSocket};

/// Payload `i` of length `len`: its index in the first two bytes, then a pattern.
fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
    p[..2].copy_from_slice(&(i as u16).to_be_bytes());
    p
}

/// Sends `plan` (destination index, length) through `tx` in one batch; returns what each
/// receiver got, in order.
fn send_and_collect(
    tx: &mut UdpTunnelSocket,
    rxs: &[UdpSocket],
    plan: &[(usize, usize)],
) -> (Vec<Vec<Vec<u8>>>, usize) {
    let addrs: Vec<SocketAddr> = rxs.iter().map(|s| s.local_addr().unwrap()).collect();
    let mut batch = Batch::new(64, 128, 4096);
    let mut dsts = Vec::new();
    for (i, &(d, len)) in plan.iter().enumerate() {
        assert!(batch.push_copy(&payload(i, len)));
        dsts.push(addrs[d]);
    }
    let r = tx.send_batch(&mut batch, &dsts);
    assert_eq!((r.sent, r.dropped_total()), (plan.len(), 0));
    let mut got = vec![Vec::new(); rxs.len()];
    let mut buf = vec![0u8; 70000];
    for (d, rx) in rxs.iter().enumerate() {
        let want = plan.iter().filter(|p| p.0 == d).count();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for _ in 0..want {
            let n = rx.recv(&mut buf).expect("datagram");
            got[d].push(buf[..n].to_vec());
        }
    }
    (got, r.sent)
}

fn expected(plan: &[(usize, usize)], receivers: usize) -> Vec<Vec<Vec<u8>>> {
    let mut e = vec![Vec::new(); receivers];
    for (i, &(d, len)) in plan.iter().enumerate() {
        e[d].push(payload(i, len));
    }
    e
}

#[test]
fn udp_gso_runs_arrive_as_the_same_datagrams_in_order() {
    let mut tx = UdpTunnelSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let rxs = [
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    ];
    // 20 equal to B0, a run ending in a shorter one, a longer one (new run), then B1, then a
    // single one back to B0; 60 in total.
    let mut plan: Vec<(usize, usize)> = vec![(0, 1400); 20];
    plan.extend([(0, 1400), (0, 1400), (0, 600), (0, 1400), (0, 1500)]);
    plan.extend(vec![(1, 900); 30]);
    plan.extend([(0, 100), (1, 50), (1, 50), (0, 2)]);
    plan.push((0, 1400));
    let (got, sent) = send_and_collect(&mut tx, &rxs, &plan);
    assert_eq!(sent, 60);
    assert_eq!(got, expected(&plan, 2));
    let gso_msgs = tx.stats().tx_gso;
    // 20 x 1400 + 1400, 1400, 600 | 30 x 900 | 50, 50: three runs, the rest single.
    assert_eq!(gso_msgs, 3, "runs went out as GSO messages");

    tx.set_tx_gso(false);
    let (got, _) = send_and_collect(&mut tx, &rxs, &plan);
    assert_eq!(got, expected(&plan, 2));
    assert_eq!(tx.stats().tx_gso, gso_msgs, "no GSO when turned off");
}

#[test]
fn udp_gso_refused_by_the_kernel_falls_back_to_single_datagrams() {
    if !require_root("udp_gso_refused_by_the_kernel_falls_back_to_single_datagrams") {
        return;
    }
    in_private_netns(|| {
        // Segments above the MTU make the kernel refuse the GSO send (EINVAL); single
        // datagrams of that size are fragmented and still arrive.
        netns::sh("ip link set lo mtu 1500").unwrap();
        let mut tx = UdpTunnelSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let rxs = [UdpSocket::bind("127.0.0.1:0").unwrap()];
        let mut plan = vec![(0, 2000); 5];
        plan.extend(vec![(0, 1000); 5]);
        let (got, sent) = send_and_collect(&mut tx, &rxs, &plan);
        assert_eq!(sent, 10);
        assert_eq!(got, expected(&plan, 1));
        assert_eq!(
            tx.stats().tx_gso,
            1,
            "only the 1000-byte run went out as GSO"
        );
    })
    .unwrap();
}

/// Sends `plan` (payload lengths) to a GRO receiver and takes it back through batches of 16
/// buffers with `frame_room`; checks the payloads, their order and source, and that every
/// buffer the batch holds afterwards still has the batch's shape.
fn gro_round_trip(plan: &[usize], frame_room: usize) -> UdpTunnelSocket {
    let mut tx = UdpTunnelSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut rx = UdpTunnelSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    rx.set_rx_gro(true).unwrap();
    let to = rx.local_addr();
    let mut out = Batch::new(64, 128, GSO_FRAME_ROOM);
    for (i, &len) in plan.iter().enumerate() {
        assert!(out.push_copy(&payload(i, len)));
    }
    let r = tx.send_batch(&mut out, &vec![to; plan.len()]);
    assert_eq!(r.sent, plan.len());
    // A small batch, so coalesced runs are split across calls.
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut inb = Batch::new(16, 128, frame_room);
    let mut srcs = vec![to; 16];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while got.len() < plan.len() && std::time::Instant::now() < deadline {
        inb.clear();
        let n = rx.recv_batch(&mut inb, &mut srcs).unwrap();
        for (k, p) in inb.iter().enumerate() {
            assert_eq!(srcs[k], tx.local_addr());
            assert_eq!(p.meta.wire_len as usize, p.len());
            got.push(p.data().to_vec());
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let want: Vec<Vec<u8>> = plan
        .iter()
        .enumerate()
        .map(|(i, &l)| payload(i, l))
        .collect();
    assert_eq!(got, want);
    inb.clear();
    while let Some(b) = inb.spare() {
        assert_eq!((b.headroom(), b.frame_room()), (128, frame_room));
        inb.commit();
    }
    assert_eq!(rx.stats().rx_packets, plan.len() as u64);
    rx
}

#[test]
fn udp_gro_splits_coalesced_runs_back_into_the_same_datagrams() {
    let mut plan: Vec<usize> = vec![1400; 40];
    plan.extend([1400, 700, 1000, 1000, 64, 9000]);
    plan.extend(vec![500; 14]);
    let rx = gro_round_trip(&plan, 9216);
    assert!(rx.stats().rx_gso > 0, "some runs arrived coalesced");
}

#[test]
fn udp_gro_moves_whole_datagrams_into_64k_buffers_and_still_splits_runs() {
    // Buffers shaped like the held ones: lone datagrams (the 60000-byte tunnel super-frame
    // among them) are swapped into the batch, runs are split by copying; both in order.
    let mut plan: Vec<usize> = vec![1400; 30];
    plan.extend([60000, 1400, 700, 65000, 64, 9000, 60000]);
    plan.extend(vec![500; 14]);
    plan.extend([60000, 60000, 60000]);
    let rx = gro_round_trip(&plan, GSO_FRAME_ROOM);
    assert!(rx.stats().rx_gso > 0, "some runs arrived coalesced");
}
