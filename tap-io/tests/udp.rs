//! The UDP tunnel socket: batches over loopback (no root), the edge-triggered drain rule with
//! mio, and interop with the kernel's own VXLAN device (root, in namespaces).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use mio::{Events, Interest, Poll, Token};
use tap_io::netns::{self, Netns, RawEth, in_private_netns, require_root, test_frame};
use tap_io::{Batch, TxDropReason, UdpTunnelSocket};

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Receives until `want` payloads arrived or 2 s passed.
fn recv_n(s: &mut UdpTunnelSocket, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut out = Vec::new();
    let mut batch = Batch::new(64, 128, 9216);
    let mut srcs = vec![lo(); 64];
    let deadline = Instant::now() + Duration::from_secs(2);
    while out.len() < want && Instant::now() < deadline {
        batch.clear();
        let n = s.recv_batch(&mut batch, &mut srcs).unwrap();
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for (p, a) in batch.iter().zip(&srcs) {
            out.push((p.data().to_vec(), *a));
        }
    }
    out
}

#[test]
fn udp_batches_carry_payloads_and_peer_addresses() {
    let mut a = UdpTunnelSocket::bind(lo()).unwrap();
    let mut b = UdpTunnelSocket::bind(lo()).unwrap();
    assert_ne!(b.local_addr().port(), 0);
    for n in [1usize, 32, 64] {
        let mut batch = Batch::new(64, 128, 9216);
        let dsts = vec![b.local_addr(); n];
        let sent: Vec<Vec<u8>> = (0..n)
            .map(|i| (0..(8 + i * 37)).map(|j| (i + j) as u8).collect())
            .collect();
        for p in &sent {
            assert!(batch.push_copy(p));
        }
        let r = a.send_batch(&mut batch, &dsts);
        assert_eq!((r.sent, r.dropped_total()), (n, 0));
        let got = recv_n(&mut b, n);
        let payloads: Vec<Vec<u8>> = got.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(payloads, sent, "batch of {n}");
        assert!(got.iter().all(|(_, src)| *src == a.local_addr()));
    }
    // A payload with no destination is dropped as unreachable, the rest is sent.
    let mut batch = Batch::new(4, 128, 2048);
    batch.push_copy(&[1; 10]);
    batch.push_copy(&[2; 10]);
    let r = a.send_batch(&mut batch, &[b.local_addr()]);
    assert_eq!(r.sent, 1);
    assert_eq!(r.dropped.get(TxDropReason::Unreachable), 1);
    // A jumbo datagram larger than the receiving buffer is counted, not delivered.
    let mut batch = Batch::new(4, 128, 9216);
    assert!(batch.push_copy(&[3; 4000]));
    batch.push_copy(&[4; 100]);
    a.send_batch(&mut batch, &[b.local_addr(), b.local_addr()]);
    let mut small = Batch::new(4, 128, 2048);
    let mut srcs = vec![lo(); 4];
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    while got.len() < 2 && Instant::now() < deadline {
        small.clear();
        b.recv_batch(&mut small, &mut srcs).unwrap();
        got.extend(small.iter().map(|p| p.data().to_vec()));
    }
    assert_eq!(got, vec![vec![1; 10], vec![4; 100]]);
    assert_eq!(b.stats().rx_truncated, 1);
}

/// The drain rule: mio is edge-triggered, so a port read only partly gives no new event; the
/// caller must remember it as still ready and come back.
#[test]
fn udp_edge_triggered_readiness_needs_a_full_drain() {
    let mut a = UdpTunnelSocket::bind(lo()).unwrap();
    let mut b = UdpTunnelSocket::bind(lo()).unwrap();
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut b, Token(7), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(8);
    let mut batch = Batch::new(64, 128, 2048);
    for i in 0..100u8 {
        if batch.is_full() {
            a.send_batch(&mut batch, &[b.local_addr(); 64]);
        }
        batch.push_copy(&[i; 20]);
    }
    let n = batch.len();
    a.send_batch(&mut batch, &vec![b.local_addr(); n]);
    poll.poll(&mut events, Some(Duration::from_secs(2)))
        .unwrap();
    assert!(events.iter().any(|e| e.token() == Token(7)));

    // A budget of 32 stops early: the port still holds data.
    let mut srcs = vec![lo(); 64];
    let mut small = Batch::new(32, 128, 2048);
    assert_eq!(b.recv_batch(&mut small, &mut srcs).unwrap(), 32);
    let still_ready = small.is_full();
    assert!(still_ready, "a full batch means: come back without waiting");
    // No new event comes for the data left behind.
    poll.poll(&mut events, Some(Duration::from_millis(100)))
        .unwrap();
    assert!(events.is_empty(), "edge-triggered: no event for old data");
    // Draining until a short batch gets everything.
    let mut total = 32;
    loop {
        small.clear();
        let k = b.recv_batch(&mut small, &mut srcs).unwrap();
        total += k;
        if k < small.capacity() {
            break;
        }
    }
    assert_eq!(total, 100);
    // Once drained, new data raises a new event.
    batch.push_copy(&[9; 20]);
    a.send_batch(&mut batch, &[b.local_addr()]);
    poll.poll(&mut events, Some(Duration::from_secs(2)))
        .unwrap();
    assert!(events.iter().any(|e| e.token() == Token(7)));
    poll.registry().deregister(&mut b).unwrap();
}

/// The kernel's vxlan device (in a named namespace, behind a veth underlay) and our socket
/// exchange plain VXLAN payloads on port 4789.
#[test]
fn udp_socket_talks_vxlan_with_the_kernel() {
    if !require_root("udp_socket_talks_vxlan_with_the_kernel") {
        return;
    }
    in_private_netns(|| {
        let peer = Netns::new("tio-vxpeer").unwrap();
        netns::sh(&format!(
            "ip link add tu1 type veth peer name tu2 netns {ns} && \
             ip addr add 192.0.2.1/24 dev tu1 && ip link set tu1 up",
            ns = peer.name()
        ))
        .unwrap();
        // No IPv6 on vx0: its router solicitations and MLD reports would be extra datagrams
        // in a test that counts them.
        peer.sh("ip addr add 192.0.2.2/24 dev tu2 && ip link set tu2 up && \
             ip link add vx0 address 02:00:00:00:00:bb type vxlan id 42 local 192.0.2.2 \
                remote 192.0.2.1 dstport 4789 dev tu2 && \
             sysctl -qw net.ipv6.conf.vx0.disable_ipv6=1 && \
             ip addr add 198.51.100.2/24 dev vx0 && ip link set vx0 up && \
             ip neigh add 198.51.100.1 lladdr 02:00:00:00:00:aa dev vx0")
            .unwrap();
        let mut sock = UdpTunnelSocket::bind("192.0.2.1:4789".parse().unwrap()).unwrap();

        // Kernel -> us: a UDP datagram inside the peer, sent to 198.51.100.1, is encapsulated.
        {
            let _in_peer = peer.enter().unwrap();
            let u = std::net::UdpSocket::bind("198.51.100.2:0").unwrap();
            u.send_to(b"ping-through-vxlan", "198.51.100.1:9").unwrap();
        }
        let got = recv_n(&mut sock, 1);
        assert_eq!(got.len(), 1, "VXLAN datagram from the kernel");
        let (payload, src) = &got[0];
        assert_eq!(src.ip().to_string(), "192.0.2.2");
        assert_eq!(
            &payload[..8],
            &[0x08, 0, 0, 0, 0, 0, 42, 0],
            "VXLAN header, VNI 42"
        );
        let inner = &payload[8..];
        assert_eq!(&inner[..6], &MAC_A, "inner dst MAC");
        assert_eq!(&inner[6..12], &MAC_B, "inner src MAC = vx0");
        assert!(inner.ends_with(b"ping-through-vxlan"));

        // Us -> kernel: a VXLAN payload with an inner frame for vx0 arrives on vx0.
        let sniff = {
            let _in_peer = peer.enter().unwrap();
            RawEth::bind("vx0").unwrap()
        };
        let frame = test_frame(MAC_B, MAC_A, 77, 80);
        let mut batch = Batch::new(1, 128, 2048);
        let b = batch.spare().unwrap();
        b.set_frame(&frame).unwrap();
        b.push_front(8)
            .unwrap()
            .copy_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]);
        batch.commit();
        // The kernel sends from a flow-hashed source port but listens on 4789.
        let dst = SocketAddr::new(src.ip(), tap_io::VXLAN_PORT);
        let r = sock.send_batch(&mut batch, &[dst]);
        assert_eq!(r.sent, 1);
        let seen = sniff
            .recv_matching(Duration::from_secs(2), is_test_frame)
            .unwrap();
        assert_eq!(seen, Some(frame));
    })
    .unwrap();
}

/// A UDP port nothing holds (bound, read and closed: another test could take it in between,
/// which the binds below would report).
fn free_port(ip: &str) -> SocketAddr {
    std::net::UdpSocket::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
}

fn send_from(from: &str, to: SocketAddr, payload: &[u8]) -> UdpTunnelSocket {
    let mut s = UdpTunnelSocket::bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut batch = Batch::new(4, 128, 2048);
    batch.push_copy(payload);
    assert_eq!(s.send_batch(&mut batch, &[to]).sent, 1);
    s
}

/// Tunnel ports sharing one UDP port (loopback, no root): each remote's datagrams reach the
/// socket of the port for that remote, the others the port for any remote; a second port for
/// the same remote, or for any remote, is refused; another program's socket on the port too.
#[test]
fn tunnel_ports_share_a_udp_port_parted_by_remote() {
    let local = free_port("127.0.0.1");
    let ip = |s: &str| Some(s.parse().unwrap());
    let mut any = UdpTunnelSocket::bind_tunnel(local, None, "vx0").unwrap();
    let mut to2 = UdpTunnelSocket::bind_tunnel(local, ip("127.0.0.2"), "vx2").unwrap();
    let mut to3 = UdpTunnelSocket::bind_tunnel(local, ip("127.0.0.3"), "vx3").unwrap();
    let err = UdpTunnelSocket::bind_tunnel(local, ip("127.0.0.2"), "vx9")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("port vx2") && err.contains("127.0.0.2"),
        "{err}"
    );
    let err = UdpTunnelSocket::bind_tunnel(local, None, "vx9")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("port vx0") && err.contains("any remote"),
        "{err}"
    );

    for (from, tag) in [("127.0.0.2", 2u8), ("127.0.0.3", 3), ("127.0.0.4", 4)] {
        for _ in 0..3 {
            send_from(from, local, &[tag; 16]);
        }
    }
    let tags =
        |got: Vec<(Vec<u8>, SocketAddr)>| -> Vec<u8> { got.iter().map(|(p, _)| p[0]).collect() };
    assert_eq!(tags(recv_n(&mut to2, 3)), vec![2; 3]);
    assert_eq!(tags(recv_n(&mut to3, 3)), vec![3; 3]);
    assert_eq!(tags(recv_n(&mut any, 3)), vec![4; 3]);

    // A port given up frees its remote for another.
    drop(to3);
    let _again = UdpTunnelSocket::bind_tunnel(local, ip("127.0.0.3"), "vx3b").unwrap();

    // Another local address on the same UDP port is refused (the kernel could not part a
    // wildcard-bound connected socket from an address-bound one).
    let wildcard = SocketAddr::new("0.0.0.0".parse().unwrap(), local.port());
    let err = UdpTunnelSocket::bind_tunnel(wildcard, ip("127.0.0.6"), "vx6")
        .unwrap_err()
        .to_string();
    assert!(err.contains("same local_ip"), "{err}");

    // Another program holding a UDP port with SO_REUSEPORT (which a plain bind of ours with
    // it would join): the first tunnel port there is refused.
    let mut holder = std::process::Command::new("python3")
        .args(["-c", HOLD_WITH_REUSEPORT])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let held: SocketAddr = format!("127.0.0.1:{}", line.trim()).parse().unwrap();
    let err = UdpTunnelSocket::bind_tunnel(held, None, "vx1")
        .map(|_| ())
        .map_err(|e| e.to_string());
    let _ = holder.kill();
    let _ = holder.wait();
    let err = err.unwrap_err();
    assert!(err.contains("Address already in use"), "{err}");
}

/// Binds a UDP socket with SO_REUSEPORT on loopback, prints its port, holds it for 10 s.
const HOLD_WITH_REUSEPORT: &str = "import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(('127.0.0.1', 0))
print(s.getsockname()[1], flush=True)
time.sleep(10)
";

/// A port with a remote it has no route to when it opens: its socket stays unconnected and
/// takes any sender's datagrams, as a lone port did; a port for any remote cannot join it on
/// the UDP port (root: a namespace with loopback only).
#[test]
fn a_port_with_no_route_to_its_remote_stays_unconnected() {
    if !require_root("a_port_with_no_route_to_its_remote_stays_unconnected") {
        return;
    }
    in_private_netns(|| {
        netns::sh("ip link set lo up").unwrap();
        let local: SocketAddr = "127.0.0.1:4789".parse().unwrap();
        let mut lone =
            UdpTunnelSocket::bind_tunnel(local, Some("10.9.9.9".parse().unwrap()), "vx9").unwrap();
        assert_eq!(lone.connected_remote(), None);
        send_from("127.0.0.2", local, &[9; 16]);
        assert_eq!(
            recv_n(&mut lone, 1).len(),
            1,
            "an unconnected socket takes any sender"
        );
        let err = UdpTunnelSocket::bind_tunnel(local, None, "vx0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("port vx9") && err.contains("any sender"),
            "{err}"
        );
        // A remote with a route connects, and shares the port.
        let routed =
            UdpTunnelSocket::bind_tunnel(local, Some("127.0.0.3".parse().unwrap()), "vx3").unwrap();
        assert_eq!(
            routed.connected_remote(),
            Some("127.0.0.3".parse().unwrap())
        );
    })
    .unwrap();
}

/// A port connected to its remote hears of an ICMP port unreachable for what it sent there
/// (the remote has no tunnel socket yet): neither the datagrams waiting for it nor the next
/// send are lost to that report.
#[test]
fn an_icmp_report_on_a_connected_tunnel_socket_loses_nothing() {
    let local = free_port("127.0.0.1");
    let mut port =
        UdpTunnelSocket::bind_tunnel(local, Some("127.0.0.5".parse().unwrap()), "vx5").unwrap();
    let closed = free_port("127.0.0.5");
    let mut batch = Batch::new(4, 128, 2048);
    batch.push_copy(&[1; 16]);
    assert_eq!(port.send_batch(&mut batch, &[closed]).sent, 1);
    // The remote's answer arrives meanwhile, after the ICMP report.
    std::thread::sleep(Duration::from_millis(50));
    let _peer = send_from("127.0.0.5", local, &[7; 16]);
    let got = recv_n(&mut port, 1);
    assert_eq!(got.len(), 1, "the datagram behind the report was not read");
    assert_eq!(got[0].0, vec![7; 16]);

    // Again, now with a send as the first call after the report.
    let mut peer = UdpTunnelSocket::bind("127.0.0.5:0".parse().unwrap()).unwrap();
    batch.push_copy(&[2; 16]);
    port.send_batch(&mut batch, &[closed]);
    std::thread::sleep(Duration::from_millis(50));
    batch.push_copy(&[3; 16]);
    let r = port.send_batch(&mut batch, &[peer.local_addr()]);
    assert_eq!(
        (r.sent, r.dropped_total()),
        (1, 0),
        "the send after the report"
    );
    assert_eq!(recv_n(&mut peer, 1)[0].0, vec![3; 16]);
    assert_eq!(port.stats().rx_errors, 0);
}

/// With source ports, each payload leaves from its flow's lane, in its batch order; a run of
/// one flow's equal payloads is still one UDP GSO message; no flow hash means the socket's
/// own port. The lanes drop what is sent to them.
#[test]
fn flows_leave_from_their_own_source_ports() {
    let mut a = UdpTunnelSocket::bind(lo()).unwrap();
    let mut b = UdpTunnelSocket::bind(lo()).unwrap();
    let ports = std::sync::Arc::new(
        tap_io::SourcePorts::open("127.0.0.1".parse().unwrap(), 4).expect("source ports"),
    );
    a.set_source_ports(Some(ports.clone()))
        .expect("same address");
    // A set on another address would change the outer source address: refused.
    let mut other = UdpTunnelSocket::bind("127.0.0.2:0".parse().unwrap()).unwrap();
    assert!(other.set_source_ports(Some(ports.clone())).is_err());
    // Flow hashes that fall on lanes 0..4, interleaved; payload k names its flow and place.
    let hashes = [0u32, 0x4000_0000, 0x8000_0000, 0xc000_0000];
    let mut batch = Batch::new(64, 128, 9216);
    let mut flows = Vec::new();
    for k in 0..40u8 {
        let f = usize::from(k % 4);
        assert!(batch.push_copy(&[f as u8, k, 0, 0, 0, 0, 0, 0]));
        flows.push(hashes[f]);
    }
    let dsts = vec![b.local_addr(); 40];
    let gso_before = a.stats().tx_gso;
    let r = a.send_batch_flows(&mut batch, &dsts, &[], &flows);
    assert_eq!((r.sent, r.dropped_total()), (40, 0));
    assert!(
        a.stats().tx_gso > gso_before,
        "a lane's run of equal payloads was not one GSO message"
    );
    let got = recv_n(&mut b, 40);
    assert_eq!(got.len(), 40);
    let mut last_seq = [None::<u8>; 4];
    for (p, src) in &got {
        let f = usize::from(p[0]);
        assert_eq!(src.port(), ports.port(f), "flow {f} from the wrong port");
        assert_ne!(src.port(), a.local_addr().port());
        // In its flow, in batch order.
        assert!(last_seq[f].is_none_or(|s| s < p[1]), "flow {f} reordered");
        last_seq[f] = Some(p[1]);
    }
    // No flow hashes: the socket's own port.
    batch.push_copy(&[9; 8]);
    a.send_batch_flows(&mut batch, &[b.local_addr()], &[], &[]);
    let got = recv_n(&mut b, 1);
    assert_eq!(got[0].1, a.local_addr());
    // A datagram to a lane is dropped by its filter, not queued.
    let stray = send_from(
        "127.0.0.1",
        SocketAddr::new(ports.local(), ports.port(0)),
        &[1; 8],
    );
    drop(stray);
    let drops = udp_socket_drops(ports.port(0));
    assert!(
        drops >= 1,
        "the lane took a stray datagram without dropping it"
    );
}

/// The `drops` column of `/proc/net/udp` for the socket bound to local `port`.
fn udp_socket_drops(port: u16) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap();
        let want = format!(":{port:04X}");
        let drops = table
            .lines()
            .skip(1)
            .find(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(&want))
            })
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0);
        if drops > 0 || Instant::now() > deadline {
            return drops;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
