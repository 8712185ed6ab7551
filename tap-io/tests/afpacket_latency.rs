//! Latency through an AF_PACKET forwarding loop at low load: with the default port config a
//! lone frame must not wait for a ring timer (TPACKET_V3's block retire timer made every hop
//! wait up to a millisecond or more).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use mio::{Events, Interest, Poll, Token};
use tap_io::netns::{self, RawEth, in_private_netns, require_root, test_frame};
use tap_io::{AfPacketConfig, AfPacketPort, Batch, Port, RingKind};

const PINGS: usize = 20;

/// `pa` <-> `fa` [forwarder] `fb` <-> `pb`, all in the current namespace.
fn topology() {
    netns::sh(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
         ip link add pa type veth peer name fa && ip link add pb type veth peer name fb && \
         for i in pa fa pb fb; do ip link set $i up; done",
    )
    .unwrap();
}

/// A forwarder thread that sleeps in `poll` between frames, as a switch does at low load.
fn spawn_forwarder(ring: RingKind, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let open = |name: &str| {
        let mut cfg = AfPacketConfig::new(name);
        cfg.ring = ring;
        AfPacketPort::open(&cfg).unwrap()
    };
    let mut a = open("fa");
    let mut b = open("fb");
    std::thread::spawn(move || {
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut a, Token(0), Interest::READABLE)
            .unwrap();
        poll.registry()
            .register(&mut b, Token(1), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(8);
        let mut batch = Batch::new(64, 128, 2048);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(10)))
                .unwrap();
            // Edge-triggered: drain both ports before sleeping again.
            loop {
                let from_a = a.rx_batch(&mut batch).unwrap();
                b.tx_batch(&mut batch);
                let from_b = b.rx_batch(&mut batch).unwrap();
                a.tx_batch(&mut batch);
                if from_a < batch.capacity() && from_b < batch.capacity() {
                    break;
                }
            }
        }
    })
}

/// Round trips pa -> pb -> pa through the forwarder, in microseconds, sorted.
fn round_trips(ring: RingKind) -> Vec<u128> {
    let stop = Arc::new(AtomicBool::new(false));
    let fwd = spawn_forwarder(ring, stop.clone());
    let pa = RawEth::bind("pa").unwrap();
    let pb = RawEth::bind("pb").unwrap();
    let mut rtts = Vec::new();
    for seq in 0..(PINGS + 2) as u8 {
        let ping = test_frame(MAC_B, MAC_A, seq, 100);
        let pong = test_frame(MAC_A, MAC_B, seq, 100);
        let t0 = Instant::now();
        pa.send(&ping).unwrap();
        let got = pb
            .recv_matching(Duration::from_secs(1), |f| f == ping.as_slice())
            .unwrap();
        assert!(got.is_some(), "ping {seq} crossed the forwarder");
        pb.send(&pong).unwrap();
        let got = pa
            .recv_matching(Duration::from_secs(1), |f| f == pong.as_slice())
            .unwrap();
        assert!(got.is_some(), "pong {seq} crossed the forwarder");
        // The first two warm up (caches, page faults).
        if seq >= 2 {
            rtts.push(t0.elapsed().as_micros());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    fwd.join().unwrap();
    rtts.sort_unstable();
    rtts
}

#[test]
fn default_afpacket_ports_forward_a_lone_frame_without_waiting_for_a_timer() {
    if !require_root("default_afpacket_ports_forward_a_lone_frame_without_waiting_for_a_timer") {
        return;
    }
    // Up to three tries, so that a burst of load from other processes on the (2-core) machine
    // cannot fail the test; the V3 ring's timer fails every try.
    let mut tries = Vec::new();
    for _ in 0..3 {
        let rtts = in_private_netns(|| {
            topology();
            round_trips(AfPacketConfig::new("x").ring)
        })
        .unwrap();
        let median = rtts[PINGS / 2];
        tries.push(rtts);
        if median < 500 {
            break;
        }
    }
    // For comparison only (not asserted): the V3 ring with its 1 ms retire timer.
    let v3 = in_private_netns(|| {
        topology();
        round_trips(RingKind::V3)
    })
    .unwrap();
    eprintln!("RTT us, default ring: {tries:?}\nRTT us, V3 ring: {v3:?}");
    // Four hops through AF_PACKET sockets (two of them the forwarder's rings) and four
    // thread wake-ups: well under 0.5 ms on an idle machine. With V3 each of the two ring
    // hops waits for the retire timer, so its median is about a millisecond or more.
    let best = tries
        .iter()
        .map(|r| r[PINGS / 2])
        .min()
        .unwrap_or(u128::MAX);
    assert!(
        best < 500,
        "median round trip through the default AF_PACKET ports: {best} us at best: {tries:?}"
    );
}
