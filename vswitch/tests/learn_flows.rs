//! `learn` and `fin_timeout` end to end in the switch (datapath thread, caches, control side)
//! with in-memory ports: learned flows in `dump-flows`, refreshed rather than duplicated,
//! deleted with their learning flow (`delete_learned`), timing out (and a refresh restarting
//! the hard timeout), `fin_timeout` lowering timeouts on a FIN. What packets do is compared
//! with Open vSwitch in tests/data/ovs_diff/learn.cases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vswitch::control::Control;
use vswitch::switch::Switch;

struct Sw {
    sw: Arc<Switch>,
    ctl: Control,
    peers: Vec<tap_io::MemPort>,
}

impl Sw {
    fn start(tag: &str) -> Sw {
        let (dp, _threads) =
            vswitch::datapath::spawn(vswitch::datapath::Options::default()).expect("datapath");
        let dir = std::env::temp_dir().join(format!("learn-{tag}-{}", std::process::id()));
        let sw = Arc::new(Switch::new(dp, dir));
        sw.start_learning();
        sw.add_br("br0").expect("add-br");
        let mut peers = Vec::new();
        for i in 1..=3u32 {
            let (ours, theirs) =
                tap_io::MemPort::pair(&format!("{tag}p{i}"), &format!("{tag}q{i}"), 256);
            let spec =
                vswitch::portspec::PortSpec::parse(&format!("{tag}p{i}"), &[format!("ofport={i}")])
                    .expect("port spec");
            sw.add_port_with_io("br0", spec, ours).expect("add-port");
            peers.push(theirs);
        }
        let ctl = Control::new(sw.clone());
        Sw { sw, ctl, peers }
    }

    fn cmd(&self, args: &[&str]) -> String {
        self.ctl
            .command(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn flows(&self, flows: &[&str]) {
        self.cmd(&["del-flows", "br0"]);
        for f in flows {
            self.cmd(&["add-flow", "br0", f]);
        }
    }

    /// `dump-flows` lines without statistics.
    fn dump(&self) -> Vec<String> {
        let text = self.cmd(&["dump-flows", "br0", "--no-stats"]);
        text.lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Sends a UDP frame from `src` to `dst` (MAC last bytes) on `in_port`; returns the ports
    /// it went out of.
    fn send(&mut self, in_port: u32, src: u8, dst: u8, tcp_flags: Option<u8>) -> Vec<u32> {
        let frame = frame(src, dst, tcp_flags);
        self.sw.inject("br0", in_port, &frame).expect("inject");
        self.sw.settle_learning();
        let mut out = Vec::new();
        let mut batch = tap_io::Batch::new(16, 128, 2048);
        for (i, p) in self.peers.iter_mut().enumerate() {
            batch.clear();
            use tap_io::Port as _;
            if p.rx_batch(&mut batch).unwrap_or(0) > 0 {
                out.push(i as u32 + 1);
            }
        }
        out
    }
}

impl Drop for Sw {
    fn drop(&mut self) {
        self.sw.shutdown();
    }
}

/// Ethernet/IPv4 to 10.0.0.2 with UDP (or TCP with `flags`), MACs 00:..:src → 00:..:dst.
fn frame(src: u8, dst: u8, tcp_flags: Option<u8>) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, dst, 0, 0, 0, 0, 0, src, 0x08, 0x00];
    let l4: Vec<u8> = match tcp_flags {
        Some(fl) => vec![
            0x04, 0xd2, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, fl, 0xff, 0xff, 0, 0, 0, 0,
        ],
        None => vec![0x04, 0xd2, 0, 53, 0, 8, 0, 0],
    };
    let total = 20 + l4.len() as u16;
    let proto = if tcp_flags.is_some() { 6 } else { 17 };
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        64,
        proto,
        0,
        0,
        10,
        0,
        0,
        1,
        10,
        0,
        0,
        2,
    ];
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    f.extend(l4);
    f
}

const LEARN_MAC: &str = "table=0,priority=10,actions=learn(table=1,priority=5,cookie=0x7,delete_learned,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),resubmit(,1)";

#[test]
fn learned_flows_forward_show_in_dumps_and_are_refreshed_not_duplicated() {
    let mut s = Sw::start("lf");
    s.flows(&[LEARN_MAC, "table=1,priority=0,actions=output:3"]);
    // Unknown destination: table 1's default.
    assert_eq!(s.send(1, 0x11, 0x22, None), vec![3]);
    assert_eq!(
        s.dump(),
        vec![
            "priority=10 actions=learn(table=1,priority=5,delete_learned,cookie=0x7,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),resubmit(,1)",
            "cookie=0x7, table=1, priority=5,dl_dst=00:00:00:00:00:11 actions=output:1",
            "table=1, priority=0 actions=output:3",
        ]
    );
    // The reply finds the learned flow.
    assert_eq!(s.send(2, 0x22, 0x11, None), vec![1]);
    // Learning again from the same source changes nothing; from another port moves it.
    assert_eq!(s.send(1, 0x11, 0x33, None), vec![3]);
    assert_eq!(s.dump().len(), 4, "{:?}", s.dump());
    assert_eq!(s.send(3, 0x11, 0x44, None), Vec::<u32>::new());
    assert!(
        s.dump().contains(
            &"cookie=0x7, table=1, priority=5,dl_dst=00:00:00:00:00:11 actions=output:3"
                .to_string()
        ),
        "{:?}",
        s.dump()
    );
    assert_eq!(s.send(2, 0x22, 0x11, None), vec![3]);
}

#[test]
fn delete_learned_goes_with_the_last_learning_flow() {
    let mut s = Sw::start("dl");
    let second = "table=0,priority=9,in_port=3,actions=learn(table=1,priority=5,cookie=0x7,delete_learned,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])";
    s.flows(&[
        LEARN_MAC,
        second,
        "table=1,priority=0,actions=output:3",
        "table=1,priority=1,cookie=0x8,dl_dst=00:00:00:00:00:99,actions=drop",
    ]);
    s.send(1, 0x11, 0x22, None);
    s.send(2, 0x12, 0x22, None);
    let learned = |s: &Sw| {
        s.dump()
            .iter()
            .filter(|l| l.starts_with("cookie=0x7, table=1"))
            .count()
    };
    assert_eq!(learned(&s), 2, "{:?}", s.dump());
    // Another flow still holds a learn with the same table and cookie: nothing goes.
    s.cmd(&["del-flows", "br0", "priority=10", "--strict"]);
    assert_eq!(learned(&s), 2, "{:?}", s.dump());
    // The last one: its learned flows go, other cookies stay.
    s.cmd(&["del-flows", "br0", "in_port=3"]);
    assert_eq!(learned(&s), 0, "{:?}", s.dump());
    assert_eq!(s.dump().len(), 2, "{:?}", s.dump());
    // Without delete_learned, learned flows outlive their learning flow.
    s.flows(&[
        "table=0,actions=learn(table=1,cookie=0x7,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])",
    ]);
    s.send(1, 0x11, 0x22, None);
    s.cmd(&["del-flows", "br0", "table=0"]);
    assert_eq!(learned(&s), 1, "{:?}", s.dump());
}

#[test]
fn learned_flows_time_out_and_a_refresh_restarts_the_hard_timeout() {
    let mut s = Sw::start("to");
    s.flows(&[
        "table=0,actions=learn(table=1,hard_timeout=3,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),learn(table=2,idle_timeout=1,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])",
    ]);
    let t0 = Instant::now();
    s.send(1, 0x11, 0x22, None);
    // A learned flow's line starts with its table (the learning flow's mentions it inside).
    let has = |s: &Sw, table: &str| s.dump().iter().any(|l| l.starts_with(table));
    assert!(has(&s, "table=1,") && has(&s, "table=2,"), "{:?}", s.dump());
    // A refresh more than a second later (the datapath sends one at most every second).
    std::thread::sleep(Duration::from_millis(1500));
    s.send(1, 0x11, 0x22, None);
    // At t0+3.5 s the hard timeout counts from the refresh, so table 1's flow stays; table 2's
    // idle timeout counts from packets hitting it (none did), so it went.
    std::thread::sleep(
        (t0 + Duration::from_millis(3500)).saturating_duration_since(Instant::now()),
    );
    s.sw.expire_flows();
    assert!(
        has(&s, "table=1,"),
        "refreshed flow expired: {:?}",
        s.dump()
    );
    assert!(
        !has(&s, "table=2,"),
        "idle flow still there: {:?}",
        s.dump()
    );
    std::thread::sleep(
        (t0 + Duration::from_millis(5000)).saturating_duration_since(Instant::now()),
    );
    s.sw.expire_flows();
    assert!(!has(&s, "table=1,"), "{:?}", s.dump());
}

#[test]
fn fin_timeout_lowers_the_timeouts_on_fin_or_rst_only() {
    let mut s = Sw::start("fin");
    s.flows(&["tcp,idle_timeout=60,actions=fin_timeout(idle_timeout=5,hard_timeout=1),output:2"]);
    s.send(1, 0x11, 0x22, Some(0x10)); // ACK
    assert_eq!(
        s.dump(),
        vec!["idle_timeout=60, tcp actions=fin_timeout(idle_timeout=5,hard_timeout=1),output:2"]
    );
    s.send(1, 0x11, 0x22, Some(0x11)); // FIN+ACK
    assert_eq!(
        s.dump(),
        vec![
            "idle_timeout=5, hard_timeout=1, tcp actions=fin_timeout(idle_timeout=5,hard_timeout=1),output:2"
        ]
    );
    std::thread::sleep(Duration::from_millis(1200));
    s.sw.expire_flows();
    assert!(s.dump().is_empty(), "{:?}", s.dump());
}

/// `learn(limit=N,result_dst=..)` (NXAST_LEARN2): at most N flows with the learn's cookie in
/// the learned table; `result_dst` says 1 when the flow was learned or was there already, 0
/// when the limit stopped it; a freed place is taken by the next packet that learns. (Packet
/// by packet against Open vSwitch: tests/data/ovs_diff/learn.cases.)
#[test]
fn learn_limit_and_result_dst() {
    let mut s = Sw::start("lim");
    s.flows(&[
        "table=0,priority=10,actions=learn(table=1,priority=5,cookie=0x7,limit=2,result_dst=NXM_NX_REG0[0],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),resubmit(,2)",
        "table=1,priority=0,actions=drop",
        "table=2,priority=1,reg0=0x1/0x1,actions=output:2",
        "table=2,priority=0,actions=output:3",
    ]);
    let learned = |s: &Sw| {
        s.dump()
            .iter()
            .filter(|l| l.starts_with("cookie=0x7, table=1"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(s.send(1, 0x11, 0x22, None), vec![2], "first: learned");
    assert_eq!(s.send(1, 0x12, 0x22, None), vec![2], "second: learned");
    assert_eq!(
        s.send(1, 0x13, 0x22, None),
        vec![3],
        "third: over the limit"
    );
    assert_eq!(learned(&s).len(), 2, "{:?}", s.dump());
    // Learning an existing flow again is a refresh: still a success at the limit.
    assert_eq!(s.send(1, 0x11, 0x22, None), vec![2], "refresh");
    assert_eq!(s.send(1, 0x13, 0x22, None), vec![3], "still over the limit");
    // A learned flow goes: the next packet that learns takes its place.
    s.cmd(&["del-flows", "br0", "table=1,dl_dst=00:00:00:00:00:11"]);
    assert_eq!(learned(&s).len(), 1, "{:?}", s.dump());
    assert_eq!(s.send(1, 0x13, 0x22, None), vec![2], "a place was freed");
    assert_eq!(
        learned(&s),
        vec![
            "cookie=0x7, table=1, priority=5,dl_dst=00:00:00:00:00:12 actions=output:1",
            "cookie=0x7, table=1, priority=5,dl_dst=00:00:00:00:00:13 actions=output:1",
        ]
    );
    // The limit counts every flow of the table with that cookie, not only learned ones.
    s.flows(&[
        "table=0,priority=10,actions=learn(table=1,cookie=0x9,limit=1,result_dst=NXM_NX_REG0[0],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),resubmit(,2)",
        "table=1,priority=1,cookie=0x9,dl_dst=00:00:00:00:00:99,actions=drop",
        "table=2,priority=1,reg0=0x1/0x1,actions=output:2",
        "table=2,priority=0,actions=output:3",
    ]);
    assert_eq!(s.send(1, 0x11, 0x22, None), vec![3], "the table is full");
    assert_eq!(s.dump().len(), 4, "{:?}", s.dump());
}

/// A full learn queue loses the request, counted as `learn_queue_full` in dump-drops apart
/// from the packets dropped: the packet itself goes on.
#[test]
fn a_full_learn_queue_is_counted() {
    let (dp, _threads) =
        vswitch::datapath::spawn(vswitch::datapath::Options::default()).expect("datapath");
    let dir = std::env::temp_dir().join(format!("learn-full-{}", std::process::id()));
    let sw = Arc::new(Switch::new(dp, dir));
    sw.add_br("br0").expect("add-br");
    let (ours, mut theirs) = tap_io::MemPort::pair("lqfp1", "lqfq1", 256);
    let spec =
        vswitch::portspec::PortSpec::parse("lqfp1", &["ofport=1".to_string()]).expect("port spec");
    sw.add_port_with_io("br0", spec, ours).expect("add-port");
    // A queue of one that nobody reads.
    let (tx, _rx) = crossbeam_channel::bounded(1);
    sw.dp.set_learn_sink(tx);
    let ctl = Control::new(sw.clone());
    let cmd = |args: &[&str]| {
        ctl.command(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    cmd(&["del-flows", "br0"]);
    cmd(&[
        "add-flow",
        "br0",
        "actions=learn(table=1,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]),in_port",
    ]);
    let count = || -> u64 {
        let text = cmd(&["dump-drops", "br0"]);
        text.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("learn_queue_full")).then(|| w.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no learn_queue_full in {text}"))
    };
    assert_eq!(count(), 0);
    let mut back = 0;
    for src in 1..=3u8 {
        sw.inject("br0", 1, &frame(src, 0x22, None))
            .expect("inject");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut batch = tap_io::Batch::new(16, 128, 2048);
        loop {
            batch.clear();
            use tap_io::Port as _;
            if theirs.rx_batch(&mut batch).unwrap_or(0) > 0 {
                back += 1;
                break;
            }
            assert!(Instant::now() < deadline, "packet {src} did not come back");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(back, 3, "every packet went on");
    assert_eq!(
        count(),
        2,
        "the first request filled the queue, the next two were lost"
    );
    let text = cmd(&["dump-drops", "br0"]);
    assert!(
        text.starts_with("total dropped: 0\n"),
        "lost learn requests are no dropped packets:\n{text}"
    );
    let events = text
        .split_once("counted, packet not dropped:\n")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no section for events whose packet went on:\n{text}"));
    assert!(
        events
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["learn_queue_full", "2"])),
        "{text}"
    );
    sw.shutdown();
}
