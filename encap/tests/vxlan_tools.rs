//! VXLAN headers from `encap` decoded by real tools: the test writes a pcap of underlay frames
//! as the kernel sends them for a tunnel port (UDP to 4789, here from 4789 as well, the
//! source port with `VSWITCH_TUNNEL_SRC_PORTS=0`; payload =
//! `encap::vxlan::Header` + inner frame) and asserts that tcpdump and tshark see the VNI, the
//! ports and the inner addresses. A missing tool is a skip (with a message), or a failure when
//! CI=true.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use encap::build::FrameBuilder;
use encap::vxlan::{Header, VXLAN_PORT};
use pcap_file::pcap::{PcapPacket, PcapWriter};

const VNI: u32 = 4242;

fn tool_available(name: &str) -> bool {
    let found = Command::new(name).arg("--version").output().is_ok();
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is not installed and CI=true: install it (apt-get install {name})");
        }
        eprintln!("SKIP: {name} is not installed; install it to run this test");
    }
    found
}

/// Writes a pcap with one TCP and one UDP frame, each VXLAN-encapsulated; returns the path and
/// the UDP source ports used.
fn write_pcap(dir: &Path) -> (PathBuf, u16, u16) {
    let inners = [
        FrameBuilder::eth([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 2])
            .ipv4([10, 244, 1, 5], [10, 244, 2, 7])
            .tcp(40000, 80, 0x02)
            .build(),
        FrameBuilder::eth([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 2])
            .ipv4([10, 244, 1, 5], [10, 244, 2, 8])
            .udp(5353, 53)
            .payload(&[0u8; 12])
            .build(),
    ];
    let path = dir.join(format!("encap-vxlan-{}.pcap", std::process::id()));
    let mut writer = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    for (i, inner) in inners.iter().enumerate() {
        let mut payload = Header::new(VNI).as_bytes().to_vec();
        payload.extend_from_slice(inner);
        let frame = FrameBuilder::eth([2, 0, 0, 0, 0, 0x0a], [2, 0, 0, 0, 0, 0x0b])
            .ipv4([192, 168, 0, 1], [192, 168, 0, 2])
            .udp(VXLAN_PORT, VXLAN_PORT)
            .payload(&payload)
            .build();
        writer
            .write_packet(&PcapPacket::new(
                Duration::from_secs(1 + i as u64),
                frame.len() as u32,
                &frame,
            ))
            .unwrap();
    }
    (path, VXLAN_PORT, VXLAN_PORT)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tcpdump_decodes_our_vxlan() {
    if !tool_available("tcpdump") {
        return;
    }
    let (path, tcp_port, udp_port) = write_pcap(&std::env::temp_dir());
    let text = run(Command::new("tcpdump").args(["-nn", "-v", "-r"]).arg(&path));
    let _ = std::fs::remove_file(&path);
    println!("{text}");
    assert!(
        text.contains(&format!("VXLAN, flags [I] (0x08), vni {VNI}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "192.168.0.1.{tcp_port} > 192.168.0.2.{VXLAN_PORT}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "192.168.0.1.{udp_port} > 192.168.0.2.{VXLAN_PORT}"
        )),
        "{text}"
    );
    assert!(text.contains("10.244.1.5.40000 > 10.244.2.7.80"), "{text}");
    assert!(text.contains("10.244.1.5.5353 > 10.244.2.8.53"), "{text}");
    assert!(
        text.contains("(correct)"),
        "inner TCP checksum checked: {text}"
    );
    assert!(!text.contains("bad cksum"), "{text}");
    assert!(!text.contains("truncated"), "{text}");
}

#[test]
fn tshark_decodes_our_vxlan() {
    if !tool_available("tshark") {
        return;
    }
    let (path, tcp_port, _) = write_pcap(&std::env::temp_dir());
    let text = run(Command::new("tshark")
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-V",
            "-r",
        ])
        .arg(&path)
        .env("HOME", std::env::temp_dir()));
    let _ = std::fs::remove_file(&path);
    assert!(
        text.contains(&format!("VXLAN Network Identifier (VNI): {VNI}")),
        "{text}"
    );
    assert!(text.contains(&format!("Source Port: {tcp_port}")), "{text}");
    assert!(text.contains("Destination Port: 4789"), "{text}");
    assert!(text.contains("Src: 10.244.1.5, Dst: 10.244.2.7"), "{text}");
    assert!(text.contains("Src: 10.244.1.5, Dst: 10.244.2.8"), "{text}");
    assert!(text.contains("[Header checksum status: Good]"), "{text}");
    assert!(!text.contains("Malformed"), "{text}");
    assert!(!text.contains("Bad]"), "{text}");
}
