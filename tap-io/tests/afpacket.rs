//! AF_PACKET ports on veth pairs, each test in its own private network namespace.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tap_io::netns::{self, RawEth, in_private_netns, require_root, test_frame};
use tap_io::{AfPacketConfig, AfPacketPort, Batch, Port, RingKind, TxDropReason, iface};

/// Each test runs once per receive ring layout.
macro_rules! both_rings {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn v2() {
                super::$name(tap_io::RingKind::V2);
            }
            #[test]
            fn v3() {
                super::$name(tap_io::RingKind::V3);
            }
        }
    )*};
}

both_rings!(
    afpacket_frames_from_kernel_arrive_intact_in_batches_of_1_to_64,
    afpacket_sent_frames_reach_the_peer_and_are_not_seen_by_the_port,
    afpacket_vlan_tag_is_restored_on_rx_and_kept_on_tx,
    afpacket_jumbo_frames_pass_and_oversize_frames_are_counted,
    afpacket_interface_going_down_mid_run_is_counted_not_fatal,
    afpacket_offloaded_checksum_is_flagged_not_ready,
    afpacket_edge_triggered_readiness_needs_a_full_drain,
);

fn cfg(ifname: &str, ring: RingKind) -> AfPacketConfig {
    let mut c = AfPacketConfig::new(ifname);
    c.ring = ring;
    c
}

/// A veth pair `a` <-> `b`, both up, with `mtu`.
fn veth(a: &str, b: &str, mtu: usize) {
    netns::sh(&format!(
        "ip link add {a} mtu {mtu} type veth peer name {b} mtu {mtu} && ip link set {a} up && ip link set {b} up"
    ))
    .unwrap();
}

fn tagged(tci: u16, inner: &[u8]) -> Vec<u8> {
    let mut f = inner[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&tci.to_be_bytes());
    f.extend_from_slice(&inner[12..]);
    f
}

fn afpacket_frames_from_kernel_arrive_intact_in_batches_of_1_to_64(ring: RingKind) {
    if !require_root("afpacket_frames_from_kernel_arrive_intact_in_batches_of_1_to_64") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        let mut port = AfPacketPort::open(&cfg("va", ring)).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        for n in [1usize, 2, 31, 32, 33, 64] {
            let sent: Vec<Vec<u8>> = (0..n)
                .map(|i| test_frame(MAC_A, MAC_B, i as u8, 60 + i * 23))
                .collect();
            for f in &sent {
                kernel.send(f).unwrap();
            }
            let got = rx_test_frames(&mut port, n, Duration::from_secs(2));
            assert_eq!(got, sent, "batch of {n}");
        }
        // Full-MTU frame (1514 bytes) is not cut.
        let full = test_frame(MAC_A, MAC_B, 1, 1514);
        kernel.send(&full).unwrap();
        assert_eq!(
            rx_test_frames(&mut port, 1, Duration::from_secs(2)),
            vec![full]
        );
        assert_eq!(port.stats().rx_truncated, 0);
    })
    .unwrap();
}

fn afpacket_sent_frames_reach_the_peer_and_are_not_seen_by_the_port(ring: RingKind) {
    if !require_root("afpacket_sent_frames_reach_the_peer_and_are_not_seen_by_the_port") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        let mut port = AfPacketPort::open(&cfg("va", ring)).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        let mut batch = Batch::new(64, 128, 2048);
        for i in 0..64u8 {
            assert!(batch.push_copy(&test_frame(MAC_B, MAC_A, i, 60 + usize::from(i))));
        }
        let r = port.tx_batch(&mut batch);
        assert_eq!((r.sent, r.dropped_total()), (64, 0));
        assert!(batch.is_empty());
        for i in 0..64u8 {
            let got = kernel
                .recv_matching(Duration::from_secs(2), is_test_frame)
                .unwrap();
            assert_eq!(
                got,
                Some(test_frame(MAC_B, MAC_A, i, 60 + usize::from(i))),
                "frame {i}"
            );
        }
        // PACKET_IGNORE_OUTGOING: the port's own frames do not come back to it.
        let echoed = rx_test_frames(&mut port, 1, Duration::from_millis(200));
        assert!(echoed.is_empty(), "port saw its own frames");
        assert_eq!(port.stats().tx_packets, 64);
    })
    .unwrap();
}

fn afpacket_vlan_tag_is_restored_on_rx_and_kept_on_tx(ring: RingKind) {
    if !require_root("afpacket_vlan_tag_is_restored_on_rx_and_kept_on_tx") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        let mut port = AfPacketPort::open(&cfg("va", ring)).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        let frame = tagged(0x2064, &test_frame(MAC_A, MAC_B, 5, 100));
        kernel.send(&frame).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut batch = Batch::new(8, 128, 2048);
        while batch.is_empty() && Instant::now() < deadline {
            port.rx_batch(&mut batch).unwrap();
            batch.retain(|p| is_test_frame(p.data()));
        }
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].data(), &frame[..], "tag re-inserted in place");
        assert_eq!(batch[0].meta.vlan_tci, Some(0x2064));
        // Sent tagged, it leaves with its tag: a second port on the peer sees it in the
        // aux data (this kernel may lack 8021q, so no VLAN sub-interface is used).
        let mut peer = AfPacketPort::open(&cfg("vb", ring)).unwrap();
        let out = tagged(100, &test_frame(MAC_B, MAC_A, 6, 100));
        batch.clear();
        batch.push_copy(&out);
        assert_eq!(port.tx_batch(&mut batch).sent, 1);
        let deadline = Instant::now() + Duration::from_secs(2);
        while batch.is_empty() && Instant::now() < deadline {
            peer.rx_batch(&mut batch).unwrap();
            batch.retain(|p| is_test_frame(p.data()));
        }
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].data(), &out[..]);
        assert_eq!(batch[0].meta.vlan_tci, Some(100));
    })
    .unwrap();
}

fn afpacket_jumbo_frames_pass_and_oversize_frames_are_counted(ring: RingKind) {
    if !require_root("afpacket_jumbo_frames_pass_and_oversize_frames_are_counted") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 9000);
        let mut port = AfPacketPort::open(&cfg("va", ring)).unwrap();
        assert_eq!(port.mtu(), 9000);
        let kernel = RawEth::bind("vb").unwrap();
        let big = test_frame(MAC_A, MAC_B, 3, 9014);
        kernel.send(&big).unwrap();
        assert_eq!(
            rx_test_frames(&mut port, 1, Duration::from_secs(2)),
            vec![big.clone()]
        );
        let mut batch = Batch::new(4, 128, 9216);
        batch.push_copy(&big);
        batch.push_copy(&test_frame(MAC_A, MAC_B, 3, 9100)); // over the MTU
        let r = port.tx_batch(&mut batch);
        assert_eq!(r.sent, 1);
        assert_eq!(r.dropped.get(TxDropReason::TooBig), 1);
        let got = kernel
            .recv_matching(Duration::from_secs(2), is_test_frame)
            .unwrap();
        assert_eq!(got, Some(big.clone()));
        // Too big for the receiving buffer: counted as truncated, not delivered.
        kernel.send(&big).unwrap();
        let mut small = Batch::new(4, 128, 2048);
        let deadline = Instant::now() + Duration::from_secs(2);
        while port.stats().rx_truncated == 0 && Instant::now() < deadline {
            small.clear();
            port.rx_batch(&mut small).unwrap();
            assert!(small.iter().all(|p| !is_test_frame(p.data())));
        }
        assert_eq!(port.stats().rx_truncated, 1);
    })
    .unwrap();
}

#[test]
fn afpacket_ring_truncation_is_counted() {
    let ring = RingKind::V3;
    if !require_root("afpacket_ring_truncation_is_counted") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 16000);
        // A V3 ring block too small for the MTU: the kernel cuts the frame
        // (tp_snaplen < tp_len).
        let mut cfg = cfg("va", ring);
        cfg.block_size = Some(8192);
        let mut port = AfPacketPort::open(&cfg).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        kernel.send(&test_frame(MAC_A, MAC_B, 1, 12000)).unwrap();
        kernel.send(&test_frame(MAC_A, MAC_B, 2, 100)).unwrap();
        let got = rx_test_frames(&mut port, 1, Duration::from_secs(2));
        assert_eq!(got, vec![test_frame(MAC_A, MAC_B, 2, 100)]);
        assert_eq!(port.stats().rx_truncated, 1);
    })
    .unwrap();
}

fn afpacket_interface_going_down_mid_run_is_counted_not_fatal(ring: RingKind) {
    if !require_root("afpacket_interface_going_down_mid_run_is_counted_not_fatal") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        let mut port = AfPacketPort::open(&cfg("va", ring)).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        let mut batch = Batch::new(16, 128, 2048);
        for i in 0..10 {
            batch.push_copy(&test_frame(MAC_B, MAC_A, i, 60));
        }
        iface::set_up("va", false).unwrap();
        let r = port.tx_batch(&mut batch);
        assert_eq!(r.sent, 0);
        assert_eq!(r.dropped.get(TxDropReason::LinkDown), 10);
        // Whatever was queued before (IPv6 chatter) may still come; nothing new, no error.
        port.rx_batch(&mut batch).unwrap();
        assert!(batch.iter().all(|p| !is_test_frame(p.data())));
        batch.clear();
        assert!(
            port.take_error().is_some(),
            "ENETDOWN reported on the socket"
        );
        assert_eq!(port.stats().rx_errors, 1);
        // Back up: traffic flows again in both directions.
        iface::set_up("va", true).unwrap();
        let f = test_frame(MAC_A, MAC_B, 42, 80);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            kernel.send(&f).unwrap();
            got = rx_test_frames(&mut port, 1, Duration::from_millis(100));
        }
        assert_eq!(got.first(), Some(&f));
        batch.push_copy(&test_frame(MAC_B, MAC_A, 43, 80));
        assert_eq!(port.tx_batch(&mut batch).sent, 1);
        // Interface deleted: still no panic, drops counted.
        netns::sh("ip link del va").unwrap();
        batch.push_copy(&test_frame(MAC_B, MAC_A, 44, 80));
        let r = port.tx_batch(&mut batch);
        assert_eq!(r.sent, 0);
        assert_eq!(r.dropped_total(), 1);
        let _ = port.rx_batch(&mut batch);
    })
    .unwrap();
}

/// The pod end of a veth set down takes the carrier from the switch's end: with the qdisc
/// bypassed the kernel refuses each frame with ENOBUFS, as for a full queue; they count as
/// the link being down.
#[test]
fn afpacket_sends_to_a_peer_without_carrier_count_as_link_down() {
    if !require_root("afpacket_sends_to_a_peer_without_carrier_count_as_link_down") {
        return;
    }
    in_private_netns(|| {
        veth("va", "vb", 1500);
        let mut port = AfPacketPort::open(&cfg("va", RingKind::V2)).unwrap();
        iface::set_up("vb", false).unwrap();
        // The kernel marks the switch's end not running a moment later (link watch): wait
        // for it, as a pod down for longer than that would be.
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(iface::is_running("va"), Ok(true)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut batch = Batch::new(32, 128, 2048);
        for i in 0..32 {
            batch.push_copy(&test_frame(MAC_B, MAC_A, i, 60));
        }
        let r = port.tx_batch(&mut batch);
        assert_eq!(r.sent, 0);
        assert_eq!(r.dropped.get(TxDropReason::LinkDown), 32, "{r:?}");
    })
    .unwrap();
}

fn afpacket_offloaded_checksum_is_flagged_not_ready(ring: RingKind) {
    if !require_root("afpacket_offloaded_checksum_is_flagged_not_ready") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        // A local UDP socket sending out of vb leaves the checksum to the (virtual) NIC.
        netns::sh("ip addr add 192.0.2.1/24 dev vb && ip neigh add 192.0.2.2 lladdr 02:00:00:00:00:aa dev vb")
            .unwrap();
        let mut port = AfPacketPort::open(&cfg("va", ring)).unwrap();
        let sock = std::net::UdpSocket::bind("192.0.2.1:0").unwrap();
        sock.send_to(b"hello", "192.0.2.2:9").unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut batch = Batch::new(8, 128, 2048);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            batch.clear();
            port.rx_batch(&mut batch).unwrap();
            seen = batch
                .iter()
                .find(|p| p.data().len() > 23 && p.data()[12..14] == [8, 0] && p.data()[23] == 17)
                .map(|p| p.meta);
        }
        let meta = seen.expect("UDP frame received");
        assert!(meta.csum_not_ready);
        assert_eq!(port.stats().rx_csum_not_ready, 1);
    })
    .unwrap();
}

fn afpacket_edge_triggered_readiness_needs_a_full_drain(ring: RingKind) {
    if !require_root("afpacket_edge_triggered_readiness_needs_a_full_drain") {
        return;
    }
    use mio::{Events, Interest, Poll, Token};
    in_private_netns(move || {
        // No IPv6 chatter on the link: only our frames may raise events.
        netns::sh(
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
        )
        .unwrap();
        veth("va", "vb", 1500);
        // A long block retire timeout keeps the 100-frame burst in one block (one event);
        // with 1 ms the timer may split it, and each block handed over is a new event.
        let mut cfg = cfg("va", ring);
        cfg.retire_tov_ms = 1000;
        let mut port = AfPacketPort::open(&cfg).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut port, Token(1), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(8);
        for i in 0..100u8 {
            kernel.send(&test_frame(MAC_A, MAC_B, i, 60)).unwrap();
        }
        poll.poll(&mut events, Some(Duration::from_secs(2)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == Token(1)));
        let mut batch = Batch::new(32, 128, 2048);
        // The retire timer may still be closing the block: wait until the ring yields.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !batch.is_full() && Instant::now() < deadline {
            port.rx_batch(&mut batch).unwrap();
        }
        assert!(batch.is_full(), "budget stopped early: port is still ready");
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        assert!(
            events.is_empty(),
            "edge-triggered: no event for frames left in the ring"
        );
        let mut total = batch.len();
        loop {
            batch.clear();
            let k = port.rx_batch(&mut batch).unwrap();
            total += k;
            if k < batch.capacity() {
                break;
            }
        }
        assert_eq!(total, 100);
        poll.registry().deregister(&mut port).unwrap();
    })
    .unwrap();
}

/// Long, long and tagged (the kernel strips the tag; we put it back), then short frames on
/// either side: the order must hold across a V2 ring of 2048-byte slots and the socket queue.
fn long_frames_arrive_whole_and_in_order(port: &mut AfPacketPort, kernel: &RawEth) {
    let sent = vec![
        test_frame(MAC_A, MAC_B, 1, 100),
        test_frame(MAC_A, MAC_B, 2, 12000),
        tagged(0x2005, &test_frame(MAC_A, MAC_B, 3, 9000)),
        test_frame(MAC_A, MAC_B, 4, 200),
        tagged(7, &test_frame(MAC_A, MAC_B, 5, 3000)),
    ];
    for f in &sent {
        kernel.send(f).unwrap();
    }
    let mut got = Vec::new();
    let mut batch = Batch::new(8, 128, 16384);
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < sent.len() && Instant::now() < deadline {
        batch.clear();
        port.rx_batch(&mut batch).unwrap();
        got.extend(
            batch
                .iter()
                .filter(|p| is_test_frame(p.data()))
                .map(|p| p.data().to_vec()),
        );
    }
    assert_eq!(got, sent);
    assert_eq!(port.stats().rx_truncated, 0);
    assert_eq!(port.stats().rx_errors, 0);
}

fn v2_port_with_short_slots() -> AfPacketPort {
    let mut cfg = cfg("va", RingKind::V2);
    cfg.frame_size = Some(2048);
    AfPacketPort::open(&cfg).unwrap()
}

#[test]
fn afpacket_v2_frames_longer_than_a_slot_arrive_whole_through_the_socket_queue() {
    if !require_root("afpacket_v2_frames_longer_than_a_slot_arrive_whole_through_the_socket_queue")
    {
        return;
    }
    in_private_netns(|| {
        veth("va", "vb", 16000);
        let mut port = v2_port_with_short_slots();
        let kernel = RawEth::bind("vb").unwrap();
        long_frames_arrive_whole_and_in_order(&mut port, &kernel);
    })
    .unwrap();
}

/// The kernel leaves ENETDOWN pending on the socket when the interface goes down; the first
/// read of the socket queue after it comes back up reports it instead of the frame. The port
/// must read again, or every long frame after it comes one step late.
#[test]
fn afpacket_v2_long_frames_stay_in_step_after_the_link_went_down_and_up() {
    if !require_root("afpacket_v2_long_frames_stay_in_step_after_the_link_went_down_and_up") {
        return;
    }
    in_private_netns(|| {
        veth("va", "vb", 16000);
        let mut port = v2_port_with_short_slots();
        let kernel = RawEth::bind("vb").unwrap();
        iface::set_up("va", false).unwrap();
        iface::set_up("va", true).unwrap();
        // Wait for the carrier: a short frame (through the ring) gets through.
        let probe = test_frame(MAC_A, MAC_B, 42, 80);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            kernel.send(&probe).unwrap();
            got = rx_test_frames(&mut port, 1, Duration::from_millis(100));
        }
        assert_eq!(got.first(), Some(&probe));
        long_frames_arrive_whole_and_in_order(&mut port, &kernel);
    })
    .unwrap();
}

/// A transmit handle cloned off a port sends from another thread while the port keeps
/// receiving on its own: what the datapath's forwarding threads rely on.
#[test]
fn afpacket_tx_clone_sends_from_another_thread_while_the_port_receives() {
    if !require_root("afpacket_tx_clone_sends_from_another_thread_while_the_port_receives") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        let mut port = AfPacketPort::open(&cfg("va", RingKind::V2)).unwrap();
        let mut clone = port.try_clone_tx().unwrap();
        assert_eq!(clone.fd(), None, "a transmit handle has nothing to poll");
        let kernel = RawEth::bind("vb").unwrap();
        let sender = std::thread::spawn(move || {
            let mut batch = Batch::new(64, 128, 2048);
            for i in 0..32u8 {
                assert!(batch.push_copy(&test_frame(MAC_B, MAC_A, i, 60)));
            }
            let r = clone.tx_batch(&mut batch);
            (r.sent, clone.stats().tx_packets)
        });
        // Meanwhile the kernel side sends to the port, which receives as usual.
        for i in 0..8u8 {
            kernel.send(&test_frame(MAC_A, MAC_B, i, 60)).unwrap();
        }
        assert_eq!(sender.join().unwrap(), (32, 32));
        for i in 0..32u8 {
            let got = kernel
                .recv_matching(Duration::from_secs(2), is_test_frame)
                .unwrap();
            assert_eq!(got, Some(test_frame(MAC_B, MAC_A, i, 60)), "frame {i}");
        }
        let got = rx_test_frames(&mut port, 8, Duration::from_secs(2));
        assert_eq!(got.len(), 8, "the owner still receives");
        // The clone's frames are outgoing for the port's socket too: not looped back.
        assert!(rx_test_frames(&mut port, 1, Duration::from_millis(200)).is_empty());
    })
    .unwrap();
}

/// An untagged IPv4/UDP frame from B to A with destination port `dport` (checksums left
/// zero: a packet socket does not check them).
fn udp_frame(dport: u16, frag_offset: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&[0x08, 0x00]);
    // IPv4: version/IHL, TOS, total length 46, id, flags/fragment offset, TTL, UDP.
    f.extend_from_slice(&[0x45, 0, 0, 46, 0, 1]);
    f.extend_from_slice(&frag_offset.to_be_bytes());
    f.extend_from_slice(&[64, 17, 0, 0, 192, 168, 0, 2, 192, 168, 0, 1]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 26, 0, 0]);
    f.resize(60, 0xab);
    f
}

/// `skip_udp_dst_port`: the kernel keeps UDP to that port (a tunnel's traffic) out of the
/// ring; other UDP, later fragments (no port to look at) and non-IP frames still arrive.
#[test]
fn afpacket_filter_keeps_one_udp_port_out_of_the_ring() {
    if !require_root("afpacket_filter_keeps_one_udp_port_out_of_the_ring") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        let mut c = cfg("va", RingKind::V2);
        c.skip_udp_dst_port = Some(4789);
        let mut port = AfPacketPort::open(&c).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        let sent = [
            udp_frame(4789, 0),
            udp_frame(4790, 0),
            udp_frame(4789, 0x0010), // a later fragment: bytes 20.. are not a UDP header
            test_frame(MAC_A, MAC_B, 7, 60),
        ];
        for f in &sent {
            kernel.send(f).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut batch = Batch::new(64, 128, 2048);
        // Only frames from B are ours: the kernel talks on the veth too (IPv6 MLD, ...).
        let take = |batch: &Batch, got: &mut Vec<Vec<u8>>| {
            got.extend(
                batch
                    .iter()
                    .map(|p| p.data().to_vec())
                    .filter(|f| f.get(6..12) == Some(&MAC_B[..])),
            )
        };
        while got.len() < 3 && std::time::Instant::now() < deadline {
            batch.clear();
            match port.rx_batch(&mut batch) {
                Ok(0) => std::thread::sleep(Duration::from_millis(1)),
                Ok(_) => take(&batch, &mut got),
                Err(e) => panic!("rx error: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        batch.clear();
        let _ = port.rx_batch(&mut batch);
        take(&batch, &mut got);
        assert_eq!(
            got,
            sent[1..].to_vec(),
            "only the frames not to UDP/4789 arrive"
        );
    })
    .unwrap();
}

/// A V2 ring of a few slots that nobody reads overflows; the kernel's `tp_drops` reach
/// `stats().rx_kernel_drops` through `refresh_stats` (read-and-reset in the kernel, so the port
/// accumulates: a second read adds nothing).
#[test]
fn afpacket_ring_overflow_is_counted_as_kernel_drops() {
    if !require_root("afpacket_ring_overflow_is_counted_as_kernel_drops") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        // IPv6 on the veth would add its own frames (router/neighbour solicitations).
        let _ = netns::sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
        let mut c = cfg("va", RingKind::V2);
        c.frame_nr = Some(64);
        let mut port = AfPacketPort::open(&c).unwrap();
        let (_, blocks, _) = port.ring_geometry();
        let kernel = RawEth::bind("vb").unwrap();
        const SENT: usize = 400;
        for chunk in 0..SENT / 50 {
            for i in 0..50 {
                kernel
                    .send(&test_frame(MAC_A, MAC_B, (chunk * 50 + i) as u8, 100))
                    .unwrap();
            }
            // Stay under the veth's backlog (netdev_max_backlog), which drops uncounted.
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(50));
        port.refresh_stats();
        let drops = port.stats().rx_kernel_drops;
        let got = rx_test_frames(&mut port, SENT, Duration::from_millis(300)).len();
        port.refresh_stats();
        assert_eq!(
            port.stats().rx_kernel_drops,
            drops,
            "accumulated, not re-added"
        );
        assert!(drops > 0, "ring of {blocks} blocks overflowed");
        assert_eq!(
            got as u64 + drops,
            SENT as u64,
            "every frame read or counted"
        );
    })
    .unwrap();
}

/// An ARP request for `ip` from `MAC_B`/10.77.0.2.
fn arp_request(ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&[10, 77, 0, 2]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip);
    f.resize(60, 0);
    f
}

/// Whether the host stack behind `va` answers an ARP request for 10.77.0.1 sent from `vb`.
fn host_answers_arp(kernel: &RawEth) -> bool {
    kernel.send(&arp_request([10, 77, 0, 1])).unwrap();
    kernel
        .recv_matching(Duration::from_millis(500), |f| {
            f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2]
        })
        .unwrap()
        .is_some()
}

fn host_filter_present(dev: &str) -> bool {
    netns::sh(&format!("tc filter show dev {dev} ingress"))
        .unwrap()
        .contains("vswitch-host-rx-drop")
}

#[test]
fn afpacket_port_without_address_keeps_the_host_stack_off_its_frames() {
    if !require_root("afpacket_port_without_address_keeps_the_host_stack_off_its_frames") {
        return;
    }
    in_private_netns(|| {
        veth("va", "vb", 1500);
        let kernel = RawEth::bind("vb").unwrap();
        // No address on va when the port opens: the switch owns it, the host stack is cut off.
        let mut port = AfPacketPort::open(&AfPacketConfig::new("va")).unwrap();
        assert!(port.host_rx_dropped(), "{:?}", port.host_rx_error());
        assert!(host_filter_present("va"));
        netns::sh("ip addr add 10.77.0.1/24 dev va").unwrap();
        assert!(
            !host_answers_arp(&kernel),
            "the host stack answered on a switch port"
        );
        // The port itself still received the request.
        let mut batch = Batch::new(64, 128, 2048);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = false;
        while !seen && Instant::now() < deadline {
            batch.clear();
            port.rx_batch(&mut batch).unwrap();
            seen = batch.iter().any(|p| p.data()[12..14] == [0x08, 0x06]);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(seen, "the port did not receive the ARP request");
        // Closing the port gives the interface back to the host stack.
        drop(port);
        assert!(!host_filter_present("va"));
        assert!(
            host_answers_arp(&kernel),
            "no ARP answer after the port closed"
        );
        // With an address (an uplink), the default leaves the host stack on.
        let port = AfPacketPort::open(&AfPacketConfig::new("va")).unwrap();
        assert!(!port.host_rx_dropped());
        assert!(!host_filter_present("va"));
        assert!(host_answers_arp(&kernel));
        drop(port);
        // Asked explicitly, the drop applies with an address too.
        let mut c = AfPacketConfig::new("va");
        c.host_rx = tap_io::HostRx::Drop;
        let port = AfPacketPort::open(&c).unwrap();
        assert!(port.host_rx_dropped());
        assert!(!host_answers_arp(&kernel));
        drop(port);
        assert!(host_answers_arp(&kernel));
    })
    .unwrap();
}

/// With vnet headers a port sends frames with offload work (here a partial checksum) through
/// its header socket and plain frames through the header-less one: a batch mixing them still
/// leaves in batch order, every frame once.
#[test]
fn afpacket_mixed_offload_and_plain_frames_leave_in_batch_order() {
    if !require_root("afpacket_mixed_offload_and_plain_frames_leave_in_batch_order") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        let mut port = AfPacketPort::open(&cfg("va", RingKind::V2)).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        let mut batch = Batch::new(64, 128, 2048);
        // Runs of 1, 2 and 3 of each kind, then a single one: 0 p, 1-2 c, 3-5 p, 6 c, ...
        let partial = |i: u8| matches!(i, 1 | 2 | 6 | 10 | 11 | 12);
        for i in 0..14u8 {
            let mut f = udp_frame(5000 + u16::from(i), 0);
            f[42] = i; // first payload byte: the frame's number
            let meta = tap_io::RxMeta {
                csum_not_ready: partial(i),
                csum_start: partial(i).then_some(34),
                csum_offset: partial(i).then_some(6),
                ..tap_io::RxMeta::default()
            };
            assert!(batch.push_copy_with_meta(&f, &meta));
        }
        let r = port.tx_batch(&mut batch);
        assert_eq!((r.sent, r.dropped_total()), (14, 0));
        let mut order = Vec::new();
        while let Some(got) = kernel
            .recv_matching(Duration::from_millis(500), |f| {
                f.len() >= 43 && f[12..14] == [8, 0] && f[23] == 17 && f[6..12] == MAC_B
            })
            .unwrap()
        {
            order.push(got[42]);
        }
        assert_eq!(order, (0..14u8).collect::<Vec<_>>());
        assert_eq!(port.stats().tx_packets, 14);
    })
    .unwrap();
}

/// An IPv4/UDP frame from B to A of flow `sport` → 5353, carrying `seq`.
fn udp_flow_frame(sport: u16, seq: u8) -> Vec<u8> {
    let mut f = udp_frame(5353, 0);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[42] = seq;
    f
}

/// `fanout`: a further receive socket (`try_clone_rx`) joins the port's group; the kernel
/// gives each flow to one socket, so both sockets get flows and no flow is split. Frames the
/// sockets send are outgoing for the whole group: none comes back (sent through the qdisc
/// here, where the kernel's taps see them; the default bypass never shows them to taps). A
/// port opened without a group has no further receive queue.
#[test]
fn afpacket_fanout_spreads_flows_over_receive_sockets_each_flow_on_one() {
    if !require_root("afpacket_fanout_spreads_flows_over_receive_sockets_each_flow_on_one") {
        return;
    }
    in_private_netns(move || {
        veth("va", "vb", 1500);
        let plain = AfPacketPort::open(&cfg("va", RingKind::V2)).unwrap();
        assert!(
            Port::try_clone_rx(&plain).is_none(),
            "no group, no second queue"
        );
        drop(plain);
        let mut c = cfg("va", RingKind::V2);
        c.fanout = true;
        c.qdisc_bypass = false;
        // The port's own filter still holds for every member, behind the group's.
        c.skip_udp_dst_port = Some(4789);
        let mut first = AfPacketPort::open(&c).unwrap();
        let mut second = Port::try_clone_rx(&first).unwrap().unwrap();
        assert!(first.fanout_id().is_some());
        assert_ne!(second.fd(), None, "a receive queue of its own");
        let kernel = RawEth::bind("vb").unwrap();
        const FLOWS: u16 = 64;
        const EACH: u8 = 4;
        for seq in 0..EACH {
            for flow in 0..FLOWS {
                kernel.send(&udp_flow_frame(40000 + flow, seq)).unwrap();
                // Kept out by the filter: seen by no member (checked by the total below).
                let mut skipped = udp_flow_frame(40000 + flow, seq);
                skipped[36..38].copy_from_slice(&4789u16.to_be_bytes());
                kernel.send(&skipped).unwrap();
            }
        }
        // Which socket each flow's frames reached, in order.
        let mut seen: std::collections::HashMap<u16, Vec<(usize, u8)>> = Default::default();
        let want = usize::from(FLOWS) * usize::from(EACH);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut batch = Batch::new(64, 128, 2048);
        let mut total = 0;
        while total < want && Instant::now() < deadline {
            let mut idle = true;
            for (i, port) in [&mut first as &mut dyn Port, &mut *second]
                .into_iter()
                .enumerate()
            {
                batch.clear();
                if port.rx_batch(&mut batch).unwrap() > 0 {
                    idle = false;
                }
                for p in batch.iter().map(|p| p.data()) {
                    if p.get(6..12) == Some(&MAC_B[..]) && p.len() >= 43 {
                        assert_ne!(p[36..38], 4789u16.to_be_bytes(), "filtered UDP arrived");
                        let sport = u16::from_be_bytes([p[34], p[35]]);
                        seen.entry(sport).or_default().push((i, p[42]));
                        total += 1;
                    }
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(
            total, want,
            "every frame arrives once, on one of the sockets"
        );
        let mut per_socket = [0; 2];
        for (flow, got) in &seen {
            let socket = got[0].0;
            assert!(
                got.iter().all(|(s, _)| *s == socket),
                "flow {flow} split: {got:?}"
            );
            let order: Vec<u8> = got.iter().map(|(_, seq)| *seq).collect();
            assert_eq!(order, (0..EACH).collect::<Vec<_>>(), "flow {flow} in order");
            per_socket[socket] += 1;
        }
        assert!(
            per_socket.iter().all(|n| *n > 0),
            "both sockets get flows: {per_socket:?}"
        );
        // What either socket sends is not received by the group.
        let mut out = Batch::new(64, 128, 2048);
        for i in 0..8u8 {
            assert!(out.push_copy(&test_frame(MAC_B, MAC_A, i, 60)));
        }
        assert_eq!(second.tx_batch(&mut out).sent, 8);
        for i in 0..8u8 {
            let got = kernel
                .recv_matching(Duration::from_secs(2), is_test_frame)
                .unwrap();
            assert_eq!(
                got,
                Some(test_frame(MAC_B, MAC_A, i, 60)),
                "frame {i} leaves"
            );
        }
        assert!(rx_test_frames(&mut first, 1, Duration::from_millis(200)).is_empty());
        assert!(rx_test_frames(&mut *second, 1, Duration::from_millis(100)).is_empty());
    })
    .unwrap();
}
