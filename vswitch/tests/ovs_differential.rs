//! The differential suite: every case of `tests/data/ovs_diff/*.cases` (a flow table, maybe
//! groups, and packets) runs through a private Open vSwitch 3.1 (userspace dummy datapath) and
//! through our switch, both programmed by the real `ovs-ofctl`; per packet, which ports send and
//! the exact bytes must be the same (and the conntrack tables where a case asks). Documented
//! differences are marked `known` in the case files and listed in docs/openflow.md.
//!
//! `OVS_DIFF_CASE=substring` runs only matching cases; `OVS_DIFF_VERBOSE=1` prints every diff,
//! known ones included. One Open vSwitch and one switch serve all cases.

mod common;
mod ovs_diff;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use ovs_diff::{Verdict, ours::Ours, ovs::Ovs, parse_cases, run_case};

const PORTS: u32 = 4;

fn case_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ovs_diff");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cases"))
        .collect();
    v.sort();
    v
}

#[test]
fn case_files_parse() {
    // Every case and every packet description is well-formed (runs without root or OVS).
    let mut names = std::collections::HashSet::new();
    for f in case_files() {
        for c in parse_cases(&f) {
            assert!(names.insert(c.id()), "{}: duplicate case {}", c.at, c.id());
            assert!(!c.flows.is_empty(), "{}: no flows", c.at);
            assert!(
                !c.packets.is_empty() || c.both_refuse,
                "{}: no packets",
                c.at
            );
            for p in &c.packets {
                ovs_diff::packet::parse(p).unwrap_or_else(|e| panic!("{}: {e}", c.at));
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    cases: usize,
    packets: usize,
    same: usize,
    known: usize,
}

#[test]
fn same_packets_as_open_vswitch() {
    if !common::require_root("same_packets_as_open_vswitch") {
        return;
    }
    if !ovs_diff::ovs::installed() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("Open vSwitch (openvswitch-switch) is not installed");
        }
        eprintln!("SKIPPED same_packets_as_open_vswitch: openvswitch-switch is not installed");
        return;
    }
    let filter = std::env::var("OVS_DIFF_CASE").ok();
    let verbose = std::env::var_os("OVS_DIFF_VERBOSE").is_some();
    let cases: Vec<_> = case_files()
        .iter()
        .flat_map(|f| parse_cases(f))
        .filter(|c| filter.as_ref().is_none_or(|f| c.id().contains(f.as_str())))
        .collect();
    assert!(!cases.is_empty(), "no case matches {filter:?}");

    let started = Instant::now();
    let mut ovs = Ovs::start("d", PORTS);
    let mut ours = Ours::start("d", PORTS);
    let work = std::env::temp_dir().join(format!("ovsdiff-work-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");

    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut now_same = Vec::new();
    let mut once = Vec::new();
    let mut had_groups = true;
    for c in &cases {
        let t = tally.entry(c.feature.clone()).or_default();
        t.cases += 1;
        t.packets += c.packets.len();
        let mut sent = Vec::new();
        let mut verdict = run_case(&mut ovs, &mut ours, c, &work, had_groups, &mut sent);
        if let Verdict::Differs(first) = &verdict {
            // Once more from a clean state: Open vSwitch itself is not always repeatable here
            // (in ~5 % of runs it sent ct_label_zone's first packet where only an established
            // connection's may go, with its conntrack table empty before the packet). The
            // case passes only if it is the same now and our switch sent exactly what it sent
            // the first time (so only Open vSwitch changed its answer); that is reported below.
            let mut sent_again = Vec::new();
            let again = run_case(&mut ovs, &mut ours, c, &work, true, &mut sent_again);
            verdict = match again {
                Verdict::Same if sent_again == sent => {
                    once.push(format!("{} ({}):\n{first}", c.id(), c.at));
                    Verdict::Same
                }
                Verdict::Same => Verdict::Differs(format!(
                    "{first}our switch sent other packets on a second run, which matched\n"
                )),
                other => other,
            };
        }
        had_groups = !c.groups.is_empty() || !c.meters.is_empty();
        match verdict {
            Verdict::Same => t.same += 1,
            Verdict::Known(d) => {
                t.known += 1;
                if verbose {
                    println!(
                        "known difference {} ({}): {}\n{d}",
                        c.id(),
                        c.at,
                        c.known.as_deref().unwrap_or("")
                    );
                }
            }
            Verdict::KnownNowSame => {
                t.same += 1;
                now_same.push(format!("{} ({})", c.id(), c.at));
            }
            Verdict::Differs(d) => failures.push(format!("{} ({}):\n{d}", c.id(), c.at)),
        }
    }
    let _ = std::fs::remove_dir_all(&work);

    println!(
        "\ndifferential suite against Open vSwitch: {} cases in {:.1?}",
        cases.len(),
        started.elapsed()
    );
    println!(
        "{:<24} {:>6} {:>8} {:>6} {:>6} {:>8}",
        "feature", "cases", "packets", "same", "known", "differ"
    );
    let mut total = Tally::default();
    for (f, t) in &tally {
        let differ = t.cases - t.same - t.known;
        println!(
            "{f:<24} {:>6} {:>8} {:>6} {:>6} {differ:>8}",
            t.cases, t.packets, t.same, t.known
        );
        total.cases += t.cases;
        total.packets += t.packets;
        total.same += t.same;
        total.known += t.known;
    }
    println!(
        "{:<24} {:>6} {:>8} {:>6} {:>6} {:>8}",
        "total",
        total.cases,
        total.packets,
        total.same,
        total.known,
        total.cases - total.same - total.known
    );
    for d in &once {
        println!(
            "NOTE: Open vSwitch answered differently on a second run from a clean state, which matched (ours sent the same both times): {d}"
        );
    }
    for n in &now_same {
        println!(
            "NOTE: {n} is marked `known` but now behaves like Open vSwitch: drop the mark and its docs entry"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Open vSwitch:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
