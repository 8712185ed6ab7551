//! Agent scale figures (run in release, ignored by default):
//! `cargo test -p vswitch --release --test agent_bench -- --ignored --nocapture`
//!
//! 10 000 ClusterIP Services × 3 backends compiled and applied to an empty bridge, then one
//! Service added to them (compile + diff + one atomic batch + publish).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use vswitch::agent::apply::{Batch, Installed};
use vswitch::agent::compile::{Runtime, compile};
use vswitch::agent::validate::parse;
use vswitch::datapath;
use vswitch::switch::Switch;

const HEAD: &str = r#"
[node]
name = "node1"
underlay_ip = "192.168.0.11"
pod_cidr = "172.16.1.0/24"
gateway_ip = "172.16.1.1"
gateway_mac = "0a:58:0c:00:00:fe"
mode = "tunnel"
[tunnel]
vni = 100
[[peers]]
name = "node2"
underlay_ip = "192.168.0.12"
pod_cidr = "172.16.2.0/24"
"#;

fn config(services: usize) -> String {
    let mut s = String::from(HEAD);
    for i in 0..services {
        let _ = write!(
            s,
            "[[services]]\nname = \"svc{i}\"\ncluster_ip = \"10.247.{}.{}\"\nport = 80\ntarget_port = 8080\n\
             backends = [{{ ip = \"172.16.1.{}\" }}, {{ ip = \"172.16.2.{}\" }}, {{ ip = \"172.16.2.{}\" }}]\n",
            i / 250,
            i % 250 + 1,
            i % 250 + 2,
            i % 250 + 2,
            (i + 7) % 250 + 2,
        );
    }
    s
}

struct Step {
    parse: Duration,
    compile: Duration,
    plan: Duration,
    apply: Duration,
}

fn step(sw: &Switch, text: &str, prev: &mut Installed) -> Step {
    let t = Instant::now();
    let cfg = parse(text).unwrap();
    let parse_t = t.elapsed();
    let t = Instant::now();
    let d = compile(&cfg, &mut prev.numbering, Runtime::default()).unwrap();
    let compile_t = t.elapsed();
    let t = Instant::now();
    let batch = Batch::plan(prev, &d).unwrap();
    let plan_t = t.elapsed();
    let t = Instant::now();
    {
        let mut st = sw.lock();
        batch.run(st.get_mut("br-int").unwrap()).unwrap();
    }
    let apply_t = t.elapsed();
    prev.desired = d;
    Step {
        parse: parse_t,
        compile: compile_t,
        plan: plan_t,
        apply: apply_t,
    }
}

fn show(what: &str, s: &Step) {
    let total = s.compile + s.plan + s.apply;
    println!(
        "{what}: parse+validate {:.1} ms, compile {:.1} ms, diff+parse flows {:.1} ms, batch+publish {:.1} ms; compile..publish {:.1} ms",
        s.parse.as_secs_f64() * 1e3,
        s.compile.as_secs_f64() * 1e3,
        s.plan.as_secs_f64() * 1e3,
        s.apply.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
}

#[test]
#[ignore = "scale figures: run in release with --ignored --nocapture"]
fn ten_thousand_services() {
    let (dp, _thread) = datapath::spawn(datapath::Options::default()).unwrap();
    let sw = Switch::new(dp, std::env::temp_dir());
    sw.add_br("br-int").unwrap();
    let mut prev = Installed::default();
    let base = config(10_000);
    let s = step(&sw, &base, &mut prev);
    show("10k Services x 3 backends from scratch", &s);
    let flows = prev.desired.flow_count();
    let groups = prev.desired.groups().len();
    println!("  {flows} flows, {groups} groups");
    let more = format!(
        "{base}[[services]]\nname = \"extra\"\ncluster_ip = \"10.247.200.1\"\nport = 80\nbackends = [{{ ip = \"172.16.1.5\" }}]\n"
    );
    let s = step(&sw, &more, &mut prev);
    show("one Service added to 10k", &s);
    let s = step(&sw, &base, &mut prev);
    show("one Service removed from 10k", &s);
    let s = step(&sw, &base, &mut prev);
    show("same file again (SIGHUP, no change)", &s);
    assert_eq!(prev.desired.flow_count(), flows);
    sw.shutdown();
}

/// The compile step alone, 100 times (alternately with and without one more Service), for
/// `perf record`: `cargo test -p vswitch --release --test agent_bench -- --ignored --nocapture compile_only`.
#[test]
#[ignore = "profiling aid: run in release with --ignored --nocapture"]
fn compile_only() {
    let base = config(10_000);
    let cfg = parse(&base).unwrap();
    let more = format!(
        "{base}[[services]]\nname = \"extra\"\ncluster_ip = \"10.247.200.1\"\nport = 80\nbackends = [{{ ip = \"172.16.1.5\" }}]\n"
    );
    let cfg2 = parse(&more).unwrap();
    let mut n = vswitch::agent::compile::Numbering::default();
    compile(&cfg, &mut n, Runtime::default()).unwrap();
    let t = Instant::now();
    for i in 0..100 {
        let c = if i % 2 == 0 { &cfg2 } else { &cfg };
        let d = compile(c, &mut n, Runtime::default()).unwrap();
        std::hint::black_box(d);
    }
    println!(
        "compile of 10k Services (memoized): {:.2} ms per apply",
        t.elapsed().as_secs_f64() * 1e3 / 100.0
    );
}

/// CPU time of the calling thread: on a shared machine it moves far less than wall time.
fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// One pod or one Service changed at run time (`add-pod`, `set-service`, `set-backends`,
/// `del-service`, `del-pod` through the management plane) with 10k Services installed: the
/// whole request, validation to publish. Root (the pod is a TAP), in a namespace of its own:
/// `cargo test -p vswitch --release --test agent_bench -- --ignored --nocapture live_changes`.
#[test]
#[ignore = "scale figures: run in release, as root, with --ignored --nocapture"]
fn live_changes_with_ten_thousand_services() {
    if !tap_io::netns::require_root("live_changes_with_ten_thousand_services") {
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let (dp, _thread) = datapath::spawn(datapath::Options::default()).unwrap();
    let sw = std::sync::Arc::new(Switch::new(dp, std::env::temp_dir()));
    let ctl = vswitch::control::Control::new(sw.clone());
    // The tunnel socket binds the node address: loopback here.
    let text = config(10_000)
        .replace(
            "underlay_ip = \"192.168.0.11\"",
            "underlay_ip = \"127.0.0.1\"\nhost_port = false",
        )
        .replace("vni = 100", "vni = 100\ndst_port = 47891");
    std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap();
    let t = Instant::now();
    ctl.command(&["apply", &text]).unwrap();
    println!(
        "10k Services applied in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let time = |what: &str, args: &[&str]| {
        let mut best = Duration::MAX;
        let mut total = Duration::ZERO;
        let mut best_cpu = Duration::MAX;
        for _ in 0..5 {
            let (t, cpu) = (Instant::now(), thread_cpu());
            ctl.command(args)
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let d = t.elapsed();
            best_cpu = best_cpu.min(thread_cpu() - cpu);
            best = best.min(d);
            total += d;
        }
        println!(
            "{what}: best {:.2} ms, mean {:.2} ms, best CPU of the calling thread {:.2} ms (5 runs)",
            best.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3 / 5.0,
            best_cpu.as_secs_f64() * 1e3
        );
    };
    time(
        "set-backends of one Service",
        &["set-backends", "svc42", "172.16.1.9", "172.16.2.9"],
    );
    time(
        "set-service (a new one, then the same again)",
        &[
            "set-service",
            "{ name = \"extra\", cluster_ip = \"10.247.200.1\", port = 80, backends = [{ ip = \"172.16.1.5\" }] }",
        ],
    );
    let mut pods = 0;
    let mut pod_round = |ctl: &vswitch::control::Control| {
        pods += 1;
        let name = format!("p{pods}");
        let port = format!("port=tp{pods}");
        let (t, cpu) = (Instant::now(), thread_cpu());
        ctl.command(&[
            "add-pod",
            &name,
            &port,
            "type=tap",
            "ip=172.16.1.200",
            "mac=0a:58:0c:01:00:c8",
        ])
        .unwrap();
        let add = (t.elapsed(), thread_cpu() - cpu);
        let (t, cpu) = (Instant::now(), thread_cpu());
        ctl.command(&["del-pod", &name]).unwrap();
        (add, (t.elapsed(), thread_cpu() - cpu))
    };
    let mut adds = Vec::new();
    let mut dels = Vec::new();
    for _ in 0..5 {
        let (a, d) = pod_round(&ctl);
        adds.push(a);
        dels.push(d);
    }
    let ms = |v: &[(Duration, Duration)]| {
        v.iter()
            .map(|(wall, cpu)| {
                format!(
                    "{:.2} (CPU {:.2})",
                    wall.as_secs_f64() * 1e3,
                    cpu.as_secs_f64() * 1e3
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "add-pod (TAP created): {} ms; del-pod: {} ms",
        ms(&adds),
        ms(&dels)
    );
    sw.shutdown();
}
