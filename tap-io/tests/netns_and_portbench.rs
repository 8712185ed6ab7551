//! The netns test support itself, and the portbench forwarder end to end.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tap_io::iface;
use tap_io::netns::{self, Netns, RawEth, in_private_netns, require_root, run_in, test_frame};

#[test]
fn named_netns_is_created_entered_and_removed() {
    if !require_root("named_netns_is_created_entered_and_removed") {
        return;
    }
    let path = std::path::Path::new("/var/run/netns/tio-nstest");
    {
        let ns = Netns::new("tio-nstest").unwrap();
        assert!(path.exists());
        ns.run(&[
            "ip",
            "link",
            "add",
            "tiodummy",
            "type",
            "veth",
            "peer",
            "name",
            "tiodummy1",
        ])
        .unwrap();
        let out = run_in("tio-nstest", &["ip", "-o", "link", "show", "tiodummy"]).unwrap();
        assert!(out.contains("tiodummy"));
        let here = iface::ifindex("tiodummy");
        {
            let _g = ns.enter().unwrap();
            assert!(iface::ifindex("tiodummy").is_ok(), "visible inside");
            assert!(
                iface::is_up("lo").unwrap(),
                "loopback up in the new namespace"
            );
        }
        assert!(here.is_err(), "not visible outside");
        assert!(
            iface::ifindex("tiodummy").is_err(),
            "guard restored the namespace"
        );
        let e = run_in("tio-nstest", &["false"]).unwrap_err();
        assert!(e.to_string().contains("false"), "{e}");
    }
    assert!(!path.exists(), "removed on drop");
}

#[test]
fn portbench_forwards_both_ways_and_reports_on_sigint() {
    if !require_root("portbench_forwards_both_ways_and_reports_on_sigint") {
        return;
    }
    in_private_netns(|| {
        netns::sh(
            "ip link add p1a type veth peer name p1b && ip link add p2a type veth peer name p2b && \
             for i in p1a p1b p2a p2b; do ip link set $i up; done",
        )
        .unwrap();
        let pidfile =
            std::env::temp_dir().join(format!("tio-portbench-{}.pid", std::process::id()));
        let _ = std::fs::remove_file(&pidfile);
        let child = Command::new(env!("CARGO_BIN_EXE_vswitch-portbench"))
            .args([
                "--a",
                "p1b",
                "--b",
                "p2b",
                "--type",
                "afpacket",
                "--pidfile",
            ])
            .arg(&pidfile)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pidfile.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, child.id());
        let (s1, s2) = (RawEth::bind("p1a").unwrap(), RawEth::bind("p2a").unwrap());
        for i in 0..50u8 {
            s1.send(&test_frame(MAC_B, MAC_A, i, 60 + usize::from(i)))
                .unwrap();
            let got = s2
                .recv_matching(Duration::from_secs(2), is_test_frame)
                .unwrap();
            assert_eq!(got, Some(test_frame(MAC_B, MAC_A, i, 60 + usize::from(i))));
            s2.send(&test_frame(MAC_A, MAC_B, i, 100)).unwrap();
            let got = s1
                .recv_matching(Duration::from_secs(2), is_test_frame)
                .unwrap();
            assert_eq!(got, Some(test_frame(MAC_A, MAC_B, i, 100)));
        }
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(&pidfile);
        assert!(out.status.success());
        let log = String::from_utf8_lossy(&out.stderr);
        let summary = log
            .lines()
            .find(|l| l.starts_with("vswitch-portbench: rx="))
            .unwrap();
        let rx: u64 = summary["vswitch-portbench: rx=".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rx >= 100, "{log}");
    })
    .unwrap();
}
