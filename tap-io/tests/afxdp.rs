//! AF_XDP ports on veth pairs, each test in its own private network namespace.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tap_io::netns::{self, RawEth, in_private_netns, require_root, test_frame};
use tap_io::{AfXdpConfig, AfXdpError, AfXdpPort, Batch, Port, TxDropReason, XdpTx};

/// A veth pair `a` <-> `b`, both up (one queue each, the default).
fn veth(a: &str, b: &str) {
    netns::sh(&format!(
        "ip link add {a} type veth peer name {b} && ip link set {a} up && ip link set {b} up"
    ))
    .unwrap();
}

/// No IPv6 on new interfaces (no neighbour discovery): only the test's frames reach the port,
/// so its counters can be checked exactly.
fn no_ipv6() {
    netns::sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        .unwrap();
}

#[test]
fn afxdp_frames_pass_both_ways_intact_xsk_tx() {
    if !require_root("afxdp_frames_pass_both_ways_intact_xsk_tx") {
        return;
    }
    frames_pass_both_ways_intact(XdpTx::Xsk);
}

#[test]
fn afxdp_frames_pass_both_ways_intact_afpacket_tx() {
    if !require_root("afxdp_frames_pass_both_ways_intact_afpacket_tx") {
        return;
    }
    frames_pass_both_ways_intact(XdpTx::AfPacket);
}

fn frames_pass_both_ways_intact(tx: XdpTx) {
    in_private_netns(move || {
        no_ipv6();
        veth("va", "vb");
        let cfg = AfXdpConfig {
            tx,
            ..AfXdpConfig::new("va")
        };
        let mut port = AfXdpPort::open(&cfg).unwrap();
        assert_eq!(port.offloads().csum, tx == XdpTx::AfPacket, "{tx:?}");
        let kernel = RawEth::bind("vb").unwrap();
        // Kernel -> port, in batches of several sizes, up to a full-MTU frame.
        for n in [1usize, 2, 31, 33, 64] {
            let sent: Vec<Vec<u8>> = (0..n)
                .map(|i| test_frame(MAC_A, MAC_B, i as u8, 60 + i * 23))
                .collect();
            for f in &sent {
                kernel.send(f).unwrap();
            }
            assert_eq!(
                rx_test_frames(&mut port, n, Duration::from_secs(2)),
                sent,
                "batch of {n}"
            );
        }
        let full = test_frame(MAC_A, MAC_B, 9, 1514);
        kernel.send(&full).unwrap();
        assert_eq!(
            rx_test_frames(&mut port, 1, Duration::from_secs(2)),
            vec![full]
        );
        // Port -> kernel: more frames than one kick sends (32), and more than one batch in
        // flight, so chunks must come back from the completion ring.
        for round in 0..40u8 {
            let mut batch = Batch::new(64, 128, 2048);
            for i in 0..64u8 {
                let seed = round.wrapping_mul(64).wrapping_add(i);
                assert!(batch.push_copy(&test_frame(MAC_B, MAC_A, seed, 60 + usize::from(i))));
            }
            let r = port.tx_batch(&mut batch);
            assert_eq!((r.sent, r.dropped_total()), (64, 0), "round {round}");
            for i in 0..64u8 {
                let seed = round.wrapping_mul(64).wrapping_add(i);
                let got = kernel
                    .recv_matching(Duration::from_secs(2), is_test_frame)
                    .unwrap();
                assert_eq!(
                    got,
                    Some(test_frame(MAC_B, MAC_A, seed, 60 + usize::from(i))),
                    "round {round} frame {i}"
                );
            }
        }
        let st = port.stats();
        assert_eq!(st.tx_packets, 40 * 64);
        assert_eq!(st.rx_packets, 1 + 2 + 31 + 33 + 64 + 1);
        // Too big for the MTU: counted, not sent.
        let mut batch = Batch::new(4, 128, 9216);
        batch.push_copy(&test_frame(MAC_B, MAC_A, 1, 1500 + 19));
        let r = port.tx_batch(&mut batch);
        assert_eq!(r.dropped.get(tap_io::TxDropReason::TooBig), 1);
    })
    .unwrap();
}

#[test]
fn afxdp_full_rx_ring_drops_in_the_kernel_and_counts() {
    if !require_root("afxdp_full_rx_ring_drops_in_the_kernel_and_counts") {
        return;
    }
    in_private_netns(|| {
        no_ipv6();
        veth("va", "vb");
        let cfg = AfXdpConfig {
            rx_frames: 64,
            ..AfXdpConfig::new("va")
        };
        let mut port = AfXdpPort::open(&cfg).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        // Nobody reads while 300 frames arrive: 64 fit, the rest are dropped at the ring.
        for i in 0..300u16 {
            kernel
                .send(&test_frame(MAC_A, MAC_B, i as u8, 100))
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        port.refresh_stats();
        let drops = port.stats().rx_kernel_drops;
        let got = rx_test_frames(&mut port, 300, Duration::from_millis(500));
        assert_eq!(got.len(), 64, "the ring held 64 frames");
        assert_eq!(
            drops,
            300 - 64,
            "every other frame counted as a kernel drop"
        );
        // The chunks went back to the kernel: the port receives again.
        let again = test_frame(MAC_A, MAC_B, 77, 200);
        kernel.send(&again).unwrap();
        assert_eq!(
            rx_test_frames(&mut port, 1, Duration::from_secs(2)),
            vec![again]
        );
        port.refresh_stats();
        assert_eq!(port.stats().rx_kernel_drops, 300 - 64, "no new drops");
    })
    .unwrap();
}

#[test]
fn afxdp_edge_triggered_readiness_after_a_full_drain() {
    if !require_root("afxdp_edge_triggered_readiness_after_a_full_drain") {
        return;
    }
    in_private_netns(|| {
        veth("va", "vb");
        let mut port = AfXdpPort::open(&AfXdpConfig::new("va")).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        let mut poll = mio::Poll::new().unwrap();
        poll.registry()
            .register(&mut port, mio::Token(0), mio::Interest::READABLE)
            .unwrap();
        let mut events = mio::Events::with_capacity(4);
        for round in 0..3u8 {
            kernel.send(&test_frame(MAC_A, MAC_B, round, 80)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut woke = false;
            while !woke && Instant::now() < deadline {
                poll.poll(&mut events, Some(Duration::from_millis(100)))
                    .unwrap();
                woke = !events.is_empty();
            }
            assert!(woke, "round {round}: no readiness event");
            let got = rx_test_frames(&mut port, 1, Duration::from_secs(1));
            assert_eq!(got, vec![test_frame(MAC_A, MAC_B, round, 80)]);
        }
    })
    .unwrap();
}

#[test]
fn afxdp_refuses_multi_queue_and_host_address_interfaces() {
    if !require_root("afxdp_refuses_multi_queue_and_host_address_interfaces") {
        return;
    }
    in_private_netns(|| {
        netns::sh(
            "ip link add vq numrxqueues 2 type veth peer name vr && ip link set vq up && ip link set vr up",
        )
        .unwrap();
        let e = AfXdpPort::open(&AfXdpConfig::new("vq")).unwrap_err();
        assert!(
            matches!(&e, AfXdpError::Refused { why, .. } if why.contains("2 receive queues")),
            "{e}"
        );
        veth("va", "vb");
        netns::sh("ip addr add 192.0.2.1/24 dev va").unwrap();
        let e = AfXdpPort::open(&AfXdpConfig::new("va")).unwrap_err();
        assert!(e.to_string().contains("address of the host's own"), "{e}");
        // Once refused, nothing is left attached: AF_PACKET may take the interface.
        assert!(!netns::sh("ip link show va").unwrap().contains("xdp"));
    })
    .unwrap();
}

/// The queue an AF_XDP port held is taken for a moment after it closes (the kernel releases
/// it asynchronously), and refused with EBUSY while another port holds it: opening patiently
/// gets the port as soon as the queue is free.
#[test]
fn afxdp_open_patiently_waits_for_a_busy_queue() {
    if !require_root("afxdp_open_patiently_waits_for_a_busy_queue") {
        return;
    }
    in_private_netns(|| {
        no_ipv6();
        veth("va", "vb");
        let cfg = AfXdpConfig::new("va");
        let first = AfXdpPort::open(&cfg).unwrap();
        let e = AfXdpPort::open(&cfg).unwrap_err();
        assert!(e.is_busy(), "{e}");
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let t = Instant::now();
        let second = AfXdpPort::open_patiently(&cfg, Duration::from_secs(3));
        holder.join().unwrap();
        assert!(second.is_ok(), "{:?}", second.err());
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
    })
    .unwrap();
}

/// Frames sent while the interface is down are counted as dropped for the link, not as sent
/// (and not as a full queue later); once it runs again, frames leave.
#[test]
fn afxdp_sends_on_a_down_link_count_as_link_down() {
    if !require_root("afxdp_sends_on_a_down_link_count_as_link_down") {
        return;
    }
    in_private_netns(|| {
        no_ipv6();
        veth("va", "vb");
        let mut port = AfXdpPort::open(&AfXdpConfig::new("va")).unwrap();
        tap_io::iface::set_up("va", false).unwrap();
        let mut batch = Batch::new(16, 128, 2048);
        for round in 0..3u8 {
            for i in 0..10 {
                batch.push_copy(&test_frame(MAC_B, MAC_A, round * 10 + i, 60));
            }
            let r = port.tx_batch(&mut batch);
            assert_eq!(r.sent, 0, "round {round}: {r:?}");
            assert_eq!(
                r.dropped.get(TxDropReason::LinkDown),
                10,
                "round {round}: {r:?}"
            );
        }
        tap_io::iface::set_up("va", true).unwrap();
        let kernel = RawEth::bind("vb").unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut sent = 0;
        while sent == 0 && Instant::now() < deadline {
            batch.push_copy(&test_frame(MAC_B, MAC_A, 99, 60));
            sent = port.tx_batch(&mut batch).sent;
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(sent, 1, "nothing sent once the link is up again");
        drop(kernel);
    })
    .unwrap();
}
