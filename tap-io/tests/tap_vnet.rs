//! TAP ports with virtio-net headers against the real kernel: UDP super-frames (USO) come out
//! of the kernel whole with their GSO meta, and a super-frame written with its meta is
//! segmented by the kernel into datagrams a socket receives.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use encap::build::FrameBuilder;
use encap::checksum;
use tap_io::buf::DEFAULT_HEADROOM;
use tap_io::netns::{self, in_private_netns, require_root};
use tap_io::{Batch, GSO_FRAME_ROOM, Gso, GsoKind, Port, RxMeta, TapConfig, TapPort};

const TAP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x78, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x78, 0x02];

/// A vnet TAP `name` with 10.78.0.1/24 and a permanent neighbour 10.78.0.2.
fn vnet_tap(name: &str) -> TapPort {
    let mut cfg = TapConfig::new(name);
    cfg.vnet_hdr = true;
    let port = TapPort::open(&cfg).unwrap();
    netns::sh(&format!(
        "ip link set {name} address 02:00:00:00:78:01 && ip addr add 10.78.0.1/24 dev {name} && \
         ip neigh replace 10.78.0.2 lladdr 02:00:00:00:78:02 dev {name} nud permanent"
    ))
    .unwrap();
    port
}

#[test]
fn tap_vnet_receives_a_udp_super_frame_whole() {
    if !require_root("tap_vnet_receives_a_udp_super_frame_whole") {
        return;
    }
    in_private_netns(|| {
        let mut port = vnet_tap("tiovnet0");
        assert!(port.offloads().gso && port.offloads().csum);
        // One sendto of 10 x 1000 bytes with UDP_SEGMENT: the kernel keeps it one skb when
        // the device takes USO.
        let out = Command::new("python3")
            .args([
                "-c",
                "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
                 s.setsockopt(17, 103, 1000); s.sendto(bytes(i & 255 for i in range(10000)), ('10.78.0.2', 9999))",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut batch = Batch::new(16, DEFAULT_HEADROOM, GSO_FRAME_ROOM);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut found = None;
        while found.is_none() && Instant::now() < deadline {
            batch.clear();
            if port.rx_batch(&mut batch).unwrap() == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            // IPv4, UDP, destination port 9999.
            found = batch
                .iter()
                .find(|p| {
                    let d = p.data();
                    d.len() > 42 && d[12..14] == [8, 0] && d[23] == 17 && d[36..38] == [0x27, 0x0f]
                })
                .map(|p| (p.data().to_vec(), p.meta));
        }
        let (frame, meta) = found.expect("the UDP super-frame came out of the TAP");
        assert_eq!(frame.len(), 42 + 10000, "one frame carries all 10 datagrams");
        let g = meta.gso.expect("GSO meta");
        assert_eq!((g.kind, g.size), (GsoKind::Udp, 1000));
        assert!(meta.csum_not_ready);
        assert_eq!((meta.csum_start, meta.csum_offset), (Some(34), Some(6)));
        assert_eq!(frame[42..], (0..10000).map(|i| i as u8).collect::<Vec<_>>()[..]);
        assert!(port.stats().rx_gso >= 1);
    })
    .unwrap();
}

#[test]
fn tap_vnet_super_frame_written_is_segmented_by_the_kernel() {
    if !require_root("tap_vnet_super_frame_written_is_segmented_by_the_kernel") {
        return;
    }
    in_private_netns(|| {
        let mut port = vnet_tap("tiovnet1");
        let sock = UdpSocket::bind("10.78.0.1:9998").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let payload: Vec<u8> = (0..10000u32).map(|i| (i * 3) as u8).collect();
        let mut frame = FrameBuilder::eth(PEER_MAC, TAP_MAC)
            .ipv4([10, 78, 0, 2], [10, 78, 0, 1])
            .udp(4000, 9998)
            .payload(&payload)
            .build();
        // As a sender with offloads hands it over: checksum field = pseudo-header sum only.
        let partial = checksum::fold(checksum::pseudo_header_v4(
            [10, 78, 0, 2].into(),
            [10, 78, 0, 1].into(),
            17,
            10008,
        ));
        frame[40..42].copy_from_slice(&partial.to_be_bytes());
        let meta = RxMeta {
            csum_not_ready: true,
            csum_start: Some(34),
            csum_offset: Some(6),
            gso: Some(Gso {
                kind: GsoKind::Udp,
                size: 1000,
                hdr_len: 42,
                ecn: false,
            }),
            ..RxMeta::default()
        };
        let mut batch = Batch::new(4, DEFAULT_HEADROOM, GSO_FRAME_ROOM);
        assert!(batch.push_copy_with_meta(&frame, &meta));
        let r = port.tx_batch(&mut batch);
        assert_eq!((r.sent, r.dropped_total()), (1, 0));
        assert_eq!(port.stats().tx_gso, 1);
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        for i in 0..10 {
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i}: {e}"));
            assert_eq!(n, 1000, "datagram {i}");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, payload);
    })
    .unwrap();
}
