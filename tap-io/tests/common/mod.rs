//! Helpers shared by the kernel-facing tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use tap_io::{Batch, Port};

pub const ETH_TEST: [u8; 2] = [0x88, 0xb5];
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];

/// True for frames made by `netns::test_frame` (EtherType 0x88b5), possibly VLAN-tagged.
pub fn is_test_frame(f: &[u8]) -> bool {
    f.len() >= 14 && (f[12..14] == ETH_TEST || (f.len() >= 18 && f[16..18] == ETH_TEST))
}

/// Receives test frames from `port` until `want` arrived or `timeout` passed (bounded).
pub fn rx_test_frames(port: &mut dyn Port, want: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut batch = Batch::new(64, 128, 9216 + 64);
    while got.len() < want && Instant::now() < deadline {
        batch.clear();
        match port.rx_batch(&mut batch) {
            Ok(0) => std::thread::sleep(Duration::from_millis(1)),
            Ok(_) => {
                for p in batch.iter() {
                    if is_test_frame(p.data()) {
                        got.push(p.data().to_vec());
                    }
                }
            }
            Err(e) => panic!("rx error: {e}"),
        }
    }
    got
}
