//! TAP ports against the real kernel, each test in its own private network namespace.

mod common;

use std::time::Duration;

use common::*;
use tap_io::netns::{self, RawEth, in_private_netns, require_root, test_frame};
use tap_io::{Batch, Port, TapConfig, TapPort, TxDropReason, iface};

#[test]
fn tap_frames_from_kernel_arrive_intact_in_batches_of_1_to_64() {
    if !require_root("tap_frames_from_kernel_arrive_intact_in_batches_of_1_to_64") {
        return;
    }
    in_private_netns(|| {
        let mut port = TapPort::open(&TapConfig::new("tiotap0")).unwrap();
        assert!(iface::is_up("tiotap0").unwrap());
        let kernel = RawEth::bind("tiotap0").unwrap();
        for n in [1usize, 2, 31, 32, 33, 64] {
            let sent: Vec<Vec<u8>> = (0..n)
                .map(|i| test_frame(MAC_A, MAC_B, i as u8, 60 + i * 7))
                .collect();
            for f in &sent {
                kernel.send(f).unwrap();
            }
            let got = rx_test_frames(&mut port, n, Duration::from_secs(2));
            assert_eq!(got, sent, "batch of {n}");
        }
        assert!(port.stats().rx_packets >= 163);
    })
    .unwrap();
}

#[test]
fn tap_frames_sent_by_port_reach_the_kernel() {
    if !require_root("tap_frames_sent_by_port_reach_the_kernel") {
        return;
    }
    in_private_netns(|| {
        let mut port = TapPort::open(&TapConfig::new("tiotap1")).unwrap();
        let kernel = RawEth::bind("tiotap1").unwrap();
        let mut batch = Batch::new(64, 128, 2048);
        for i in 0..40u8 {
            assert!(batch.push_copy(&test_frame(MAC_B, MAC_A, i, 100)));
        }
        let r = port.tx_batch(&mut batch);
        assert_eq!(r.sent, 40);
        assert_eq!(r.dropped_total(), 0);
        for i in 0..40u8 {
            let want = test_frame(MAC_B, MAC_A, i, 100);
            let got = kernel
                .recv_matching(Duration::from_secs(2), is_test_frame)
                .unwrap();
            assert_eq!(got.as_deref(), Some(&want[..]), "frame {i}");
        }
    })
    .unwrap();
}

#[test]
fn tap_attaches_to_existing_persistent_device_and_counts_link_down() {
    if !require_root("tap_attaches_to_existing_persistent_device_and_counts_link_down") {
        return;
    }
    in_private_netns(|| {
        netns::sh("ip tuntap add dev tiopers mode tap").unwrap();
        let mut port = TapPort::open(&TapConfig::new("tiopers")).unwrap();
        assert_eq!(port.name(), "tiopers");
        assert_eq!(port.mtu(), 1500);
        // Interface goes down mid-run: sends fail with a counted reason, no panic.
        iface::set_up("tiopers", false).unwrap();
        let mut batch = Batch::new(8, 128, 2048);
        for i in 0..5 {
            batch.push_copy(&test_frame(MAC_B, MAC_A, i, 60));
        }
        let r = port.tx_batch(&mut batch);
        assert_eq!(r.sent, 0);
        assert_eq!(r.dropped.get(TxDropReason::LinkDown), 5);
        assert_eq!(port.stats().tx_dropped.get(TxDropReason::LinkDown), 5);
        batch.clear();
        assert_eq!(port.rx_batch(&mut batch).unwrap(), 0);
        // And it comes back.
        iface::set_up("tiopers", true).unwrap();
        batch.push_copy(&test_frame(MAC_B, MAC_A, 9, 60));
        assert_eq!(port.tx_batch(&mut batch).sent, 1);
        drop(port);
        netns::sh("ip link show tiopers").expect("persistent device outlives the port");
    })
    .unwrap();
}

#[test]
fn tap_multi_queue_opens_two_queues() {
    if !require_root("tap_multi_queue_opens_two_queues") {
        return;
    }
    in_private_netns(|| {
        let mut cfg = TapConfig::new("tiomq0");
        cfg.multi_queue = true;
        let q0 = TapPort::open(&cfg).unwrap();
        let q1 = TapPort::open(&cfg).unwrap();
        assert_ne!(q0.raw_fd(), q1.raw_fd());
        // A single-queue open of a multi-queue device is refused with a clear error.
        let e = TapPort::open(&TapConfig::new("tiomq0")).unwrap_err();
        assert!(e.to_string().contains("tiomq0"), "{e}");
    })
    .unwrap();
}

#[test]
fn tap_jumbo_frame_passes_intact() {
    if !require_root("tap_jumbo_frame_passes_intact") {
        return;
    }
    in_private_netns(|| {
        let mut port = TapPort::open(&TapConfig::new("tiojumbo")).unwrap();
        iface::set_mtu("tiojumbo", 9000).unwrap();
        assert_eq!(port.refresh_mtu().unwrap(), 9000);
        let kernel = RawEth::bind("tiojumbo").unwrap();
        let big = test_frame(MAC_A, MAC_B, 3, 9014);
        kernel.send(&big).unwrap();
        let got = rx_test_frames(&mut port, 1, Duration::from_secs(2));
        assert_eq!(got, vec![big.clone()]);
        let mut batch = Batch::new(1, 128, 9216);
        batch.push_copy(&big);
        assert_eq!(port.tx_batch(&mut batch).sent, 1);
        let got = kernel
            .recv_matching(Duration::from_secs(2), is_test_frame)
            .unwrap();
        assert_eq!(got.map(|f| f.len()), Some(9014));
        // A frame too big for the receive buffer is counted, not delivered.
        kernel.send(&big).unwrap();
        let mut small = Batch::new(4, 128, 2048);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while port.stats().rx_truncated == 0 && std::time::Instant::now() < deadline {
            small.clear();
            port.rx_batch(&mut small).unwrap();
            assert!(small.iter().all(|p| !is_test_frame(p.data())));
        }
        assert_eq!(port.stats().rx_truncated, 1);
        // A read that fills the buffer may have been cut: the largest frame a buffer takes is
        // one byte short of its room (rooms are sized above the largest frame of the MTU).
        let fits = test_frame(MAC_A, MAC_B, 4, 2047);
        let edge = test_frame(MAC_A, MAC_B, 5, 2048);
        kernel.send(&fits).unwrap();
        kernel.send(&edge).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while port.stats().rx_truncated < 2 && std::time::Instant::now() < deadline {
            small.clear();
            port.rx_batch(&mut small).unwrap();
            got.extend(
                small
                    .iter()
                    .filter(|p| is_test_frame(p.data()))
                    .map(|p| p.data().to_vec()),
            );
        }
        assert_eq!(got, vec![fits]);
        assert_eq!(port.stats().rx_truncated, 2);
    })
    .unwrap();
}
