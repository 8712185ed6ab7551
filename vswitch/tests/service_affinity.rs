//! Session affinity (`sessionAffinity: ClientIP`) through the datapath on in-memory ports, no
//! root: a Service's select group with `selection_method=hash,fields(ip_src)` sends every
//! connection of one client to one backend, while different clients still spread.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use encap::FlowKey;
use encap::build::FrameBuilder;
use vswitch::datapath;

const CLIENT_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 1, 0, 0x0b];
const GW_MAC: [u8; 6] = [0x0a, 0x58, 0x0c, 0, 0, 0xfe];
const BACKENDS: [[u8; 4]; 3] = [[172, 16, 1, 21], [172, 16, 1, 22], [172, 16, 1, 23]];

mod common;

/// `br0` with in-memory ports 1 (clients) and 2..=4 (one per backend).
struct Bridge(common::MemBridge);

impl Bridge {
    /// A UDP Service 10.247.0.53:53 over the three backends (DNAT to port 5353), its group
    /// selecting by `selection` (empty: the default 5-tuple hash).
    fn service(selection: &str) -> Bridge {
        let b = Bridge(common::MemBridge::new(4, datapath::Options::default()));
        let buckets: Vec<String> = BACKENDS
            .iter()
            .map(|b| {
                format!(
                    "bucket=actions=ct(commit,table=2,zone=1,nat(dst={}:5353))",
                    Ipv4Addr::from(*b)
                )
            })
            .collect();
        let group = format!("group_id=1,type=select{selection},{}", buckets.join(","));
        b.command(&["add-group", "br0", &group]);
        b.0.flows(
            "table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)\n\
             table=1,priority=100,ct_state=+new+trk,udp,nw_dst=10.247.0.53,tp_dst=53,actions=group:1\n\
             table=1,priority=70,ct_state=+est+trk,ip,actions=resubmit(,2)\n\
             table=2,priority=10,ip,nw_dst=172.16.1.21,actions=output:2\n\
             table=2,priority=10,ip,nw_dst=172.16.1.22,actions=output:3\n\
             table=2,priority=10,ip,nw_dst=172.16.1.23,actions=output:4",
        );
        b
    }

    fn command(&self, args: &[&str]) -> String {
        self.0.command(args)
    }

    /// Sends one UDP datagram from `client:sport` to the Service and returns the backend
    /// (index into [`BACKENDS`]) it reached, checking the DNAT on the way.
    fn connect(&mut self, client: [u8; 4], sport: u16) -> usize {
        let f = FrameBuilder::eth(CLIENT_MAC, GW_MAC)
            .ipv4(client, [10, 247, 0, 53])
            .udp(sport, 53)
            .payload(b"query")
            .build();
        self.0.send(1, &f);
        let mut reached = None;
        for (i, backend) in BACKENDS.iter().enumerate() {
            for p in self.0.received(i as u32 + 2) {
                let mut k = FlowKey::default();
                assert!(encap::extract(&p, &mut k).is_ok());
                assert_eq!(k.nw_dst, u32::from(Ipv4Addr::from(*backend)), "DNAT");
                assert_eq!(k.tp_dst, 5353);
                assert!(reached.replace(i).is_none(), "one datagram, two copies");
            }
        }
        reached.unwrap_or_else(|| {
            panic!(
                "{client:?}:{sport} reached no backend; drops:\n{}",
                self.command(&["dump-drops", "br0"])
            )
        })
    }
}

#[test]
fn every_connection_of_a_client_reaches_the_same_backend() {
    let mut b = Bridge::service(",selection_method=hash,fields(ip_src)");
    for client in 1..=6u8 {
        let ip = [172, 16, 9, client];
        let backends: BTreeSet<usize> = (0..32).map(|i| b.connect(ip, 20_000 + i)).collect();
        assert_eq!(backends.len(), 1, "client {ip:?} spread over {backends:?}");
    }
}

#[test]
fn different_clients_still_spread_over_the_backends() {
    let mut b = Bridge::service(",selection_method=hash,fields(ip_src)");
    let mut per_backend = [0usize; 3];
    for client in 1..=90u8 {
        per_backend[b.connect([172, 16, 9, client], 30_000)] += 1;
    }
    for n in per_backend {
        assert!(n >= 15, "unfair spread of 90 clients: {per_backend:?}");
    }
}

/// The control: without the selection method the same client's connections do spread, so
/// the test above would notice if the fields were ignored.
#[test]
fn the_default_hash_spreads_one_clients_connections() {
    let mut b = Bridge::service("");
    let backends: BTreeSet<usize> = (0..32)
        .map(|i| b.connect([172, 16, 9, 1], 20_000 + i))
        .collect();
    assert_eq!(backends.len(), 3, "{backends:?}");
}

#[test]
fn trace_names_the_hashed_fields() {
    let b = Bridge::service(",selection_method=hash,fields(ip_src)");
    let out = b.command(&[
        "trace",
        "br0",
        "in_port=1,udp,nw_src=172.16.9.1,nw_dst=10.247.0.53,tp_src=1000,tp_dst=53",
    ]);
    assert!(
        out.contains("group:1 select (hash of ip_src): bucket "),
        "{out}"
    );
}

/// The megaflow of a `fields(ip_src)` group pins the client address only: one client's
/// connections on new source ports hit the cached megaflow (no new upcall). With the default
/// selection the datapath takes the 5-tuple hash per packet (`dp_hash`), so new ports do not
/// miss either.
#[test]
fn only_the_hashed_fields_enter_the_megaflow() {
    for (selection, want_misses) in [(",selection_method=hash,fields(ip_src)", 1), ("", 1)] {
        let b = Bridge::service(selection);
        // Plain output buckets.
        b.command(&[
            "add-group",
            "br0",
            &format!(
                "group_id=2,type=select{selection},bucket=output:2,bucket=output:3,bucket=output:4"
            ),
        ]);
        b.command(&["del-flows", "br0"]);
        b.command(&[
            "add-flow",
            "br0",
            "priority=10,in_port=1,udp,actions=group:2",
        ]);
        let misses = |b: &Bridge| -> u64 {
            let text = b.command(&["dump-drops", "br0"]);
            let line = text.lines().find(|l| l.starts_with("caches:")).unwrap();
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix("misses="))
                .unwrap()
                .parse()
                .unwrap()
        };
        let before = misses(&b);
        for sport in 0..16u16 {
            let f = FrameBuilder::eth(CLIENT_MAC, GW_MAC)
                .ipv4([172, 16, 9, 1], [10, 247, 0, 53])
                .udp(30_000 + sport, 53)
                .build();
            b.0.send(1, &f);
        }
        assert_eq!(misses(&b) - before, want_misses, "selection '{selection}'");
    }
}

/// The Service's group text over `BACKENDS[i]` with `weights[i]` (0: the bucket is left out).
fn group_text(selection: &str, weights: [u16; 3]) -> String {
    let buckets: Vec<String> = BACKENDS
        .iter()
        .zip(weights)
        .filter(|(_, w)| *w > 0)
        .map(|(b, w)| {
            format!(
                "bucket=weight:{w},actions=ct(commit,table=2,zone=1,nat(dst={}:5353))",
                Ipv4Addr::from(*b)
            )
        })
        .collect();
    format!("group_id=1,type=select{selection},{}", buckets.join(","))
}

/// Which backend each of 90 clients reaches on a new connection (new source port `sport`).
fn placement(b: &mut Bridge, sport: u16) -> Vec<usize> {
    (1..=90u8)
        .map(|c| b.connect([172, 16, 9, c], sport))
        .collect()
}

/// `affinity_timeout`: when the group changes (a backend's weight grows, so consistent
/// hashing alone moves some clients to it), every client keeps its backend; when a backend
/// goes, only its own clients move. The control without the timeout shows the hash alone
/// does move clients on the same change.
#[test]
fn remembered_clients_keep_their_backend_when_the_group_changes() {
    let with = ",selection_method=hash,fields(ip_src),affinity_timeout=60";
    let without = ",selection_method=hash,fields(ip_src)";
    let mut moved = Vec::new();
    for selection in [with, without] {
        let mut b = Bridge::service(selection);
        let before = placement(&mut b, 40_000);
        b.command(&["mod-group", "br0", &group_text(selection, [1, 1, 6])]);
        let after = placement(&mut b, 40_001);
        moved.push(before.iter().zip(&after).filter(|(x, y)| x != y).count());
        if selection == with {
            // Backend 0 goes away: its clients (and only they) move.
            b.command(&["mod-group", "br0", &group_text(selection, [0, 1, 6])]);
            let last = placement(&mut b, 40_002);
            for (c, (was, now)) in after.iter().zip(&last).enumerate() {
                if *was == 0 {
                    assert_ne!(*now, 0, "client {c} still reached the removed backend");
                } else {
                    assert_eq!(was, now, "client {c} moved although its backend stayed");
                }
            }
            let trace = b.command(&[
                "trace",
                "br0",
                "in_port=1,udp,nw_src=172.16.9.1,nw_dst=10.247.0.53,tp_src=1000,tp_dst=53",
            ]);
            assert!(
                trace.contains("affinity: 172.16.9.1 keeps bucket"),
                "{trace}"
            );
            // Tracing a client never seen changes nothing.
            let unseen = "in_port=1,udp,nw_src=172.16.99.1,nw_dst=10.247.0.53,tp_src=1,tp_dst=53";
            for _ in 0..2 {
                let t = b.command(&["trace", "br0", unseen]);
                assert!(
                    t.contains("affinity: 172.16.99.1 would be remembered"),
                    "{t}"
                );
            }
        }
    }
    assert_eq!(moved[0], 0, "with affinity no client may move");
    assert!(
        moved[1] > 5,
        "the control should move clients, moved {}",
        moved[1]
    );
}
