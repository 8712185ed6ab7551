//! The differential suite against Open vSwitch: case files, the two switches behind one trait,
//! and the comparison. See docs/openflow.md, "Differential suite against Open vSwitch".

pub mod ours;
pub mod ovs;
pub mod packet;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::run_timeout;

/// What one switch sent in answer to one packet: ofport -> frames, in order.
pub type Outputs = BTreeMap<u32, Vec<Vec<u8>>>;

/// One switch under test.
pub trait Backend {
    /// The `ovs-ofctl` target of its bridge `br0`.
    fn mgmt(&self) -> String;
    /// Forgets connections and learned MACs of the previous case.
    fn reset_state(&mut self) -> Result<(), String>;
    /// After the flow table changed: no cached decision of the old table may survive.
    fn settle_flows(&mut self) -> Result<(), String>;
    fn send(&mut self, in_port: u32, frame: &[u8]) -> Result<(), String>;
    /// Everything sent since the last call, per port.
    fn collect(&mut self) -> Result<Outputs, String>;
    /// `dpctl/dump-conntrack` text.
    fn conntrack(&mut self) -> Result<String, String>;
    /// Sets port `port`'s VLAN role (`tag=N`, `trunks=N,M`, `vlan_mode=M`); `&[]` clears it.
    fn set_port_vlan(&mut self, port: u32, settings: &[String]) -> Result<(), String>;
    /// Packets sampled so far per collector set id (`sample` actions).
    fn samples(&mut self) -> Result<BTreeMap<u32, u64>, String>;
}

/// Runs a command with a generous limit; stdout, or an error with its stderr.
pub fn run_cmd(c: &mut Command) -> Result<String, String> {
    let r = run_timeout(c, Duration::from_secs(30));
    if r.ok {
        Ok(r.stdout)
    } else {
        Err(format!(
            "{:?}: {}{}{}",
            c,
            if r.timed_out { "timed out; " } else { "" },
            r.stdout.trim(),
            r.stderr.trim()
        ))
    }
}

/// Like [`run_cmd`], panicking on failure (setup steps).
pub fn cmd_ok(c: &mut Command) -> String {
    run_cmd(c).unwrap_or_else(|e| panic!("{e}"))
}

/// One case: a flow table (and groups) and the packets sent through it.
#[derive(Debug, Clone, Default)]
pub struct Case {
    pub feature: String,
    pub name: String,
    /// `file:line` of its first line.
    pub at: String,
    pub flows: Vec<String>,
    pub groups: Vec<String>,
    /// `add-meter` lines, added before the flows (and deleted with `del-meters` after).
    pub meters: Vec<String>,
    pub packets: Vec<String>,
    /// Compare `dump-conntrack` after the packets too.
    pub ct: bool,
    /// Compare `ovs-ofctl --no-stats dump-flows` after the packets too (learned flows).
    pub dump: bool,
    /// Compare how many packets each collector set sampled (Open vSwitch: its IPFIX
    /// statistics, `dump-ipfix-flow`; ours: `dump-samples`).
    pub samples: bool,
    /// Compare only how many frames went out per packet (select groups: the bucket is a hash).
    pub count_only: bool,
    /// Both switches must refuse the table (Open vSwitch refuses it too).
    pub both_refuse: bool,
    /// A documented difference (docs/openflow.md), with its reason.
    pub known: Option<String>,
    /// `ovs-ofctl -O` version (default OpenFlow13).
    pub version: String,
    /// Ports taken down (`mod-port N down`) for the case's packets and brought up after.
    pub ports_down: Vec<u32>,
    /// Ports given a VLAN role (`vlan-port N tag=10 ...`) for the case, cleared after.
    pub port_vlans: Vec<(u32, Vec<String>)>,
}

impl Case {
    pub fn id(&self) -> String {
        format!("{}/{}", self.feature, self.name)
    }
}

fn split_list(s: &str, sep: &str) -> Vec<String> {
    s.split(sep)
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// Parses a case file (format in docs/openflow.md).
pub fn parse_cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let mut feature = file.trim_end_matches(".cases").to_string();
    let mut cases: Vec<Case> = Vec::new();
    let mut open: Option<Case> = None;
    let new_case = |feature: &str, name: &str, at: String| Case {
        feature: feature.to_string(),
        name: name.to_string(),
        at,
        version: "OpenFlow13".into(),
        ..Case::default()
    };
    for (n, raw) in text.lines().enumerate() {
        let at = format!("{file}:{}", n + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let bad = |msg: &str| -> ! { panic!("{at}: {msg}: {raw}") };
        match word {
            "feature" => {
                cases.extend(open.take());
                feature = rest.to_string();
            }
            "case" => {
                cases.extend(open.take());
                open = Some(new_case(&feature, rest, at));
            }
            // One-liners: `m NAME | MATCH | PKTS [| OPTS]` (MATCH at priority 100 to port 2,
            // the rest to port 3) and `t NAME | FLOW // FLOW | PKTS [| OPTS]`.
            "m" | "t" => {
                cases.extend(open.take());
                let parts: Vec<&str> = rest.split(" | ").map(str::trim).collect();
                if parts.len() < 3 {
                    bad("want NAME | FLOWS | PACKETS");
                }
                let mut c = new_case(&feature, parts[0], at.clone());
                if word == "m" {
                    c.flows = vec![
                        format!("priority=100,{},actions=output:2", parts[1]),
                        "priority=0,actions=output:3".into(),
                    ];
                } else {
                    c.flows = split_list(parts[1], " // ");
                }
                c.packets = split_list(parts[2], " ; ");
                for opt in &parts[3..] {
                    apply_option(&mut c, opt).unwrap_or_else(|e| bad(&e));
                }
                cases.push(c);
            }
            _ => {
                let Some(c) = open.as_mut() else {
                    bad("outside a case")
                };
                match word {
                    "flow" => c.flows.push(rest.to_string()),
                    "group" => c.groups.push(rest.to_string()),
                    "meter" => c.meters.push(rest.to_string()),
                    "packet" => c.packets.push(rest.to_string()),
                    _ => apply_option(c, line).unwrap_or_else(|e| bad(&e)),
                }
            }
        }
    }
    cases.extend(open);
    cases
}

fn apply_option(c: &mut Case, opt: &str) -> Result<(), String> {
    let (k, v) = opt.split_once(' ').unwrap_or((opt, ""));
    match k {
        "ct" => c.ct = true,
        "count-only" => c.count_only = true,
        "dump" => c.dump = true,
        "samples" => c.samples = true,
        "both-refuse" => c.both_refuse = true,
        "known" if !v.trim().is_empty() => c.known = Some(v.trim().to_string()),
        "version" => c.version = v.trim().to_string(),
        "group" => c.groups.push(v.trim().to_string()),
        "meter" => c.meters.push(v.trim().to_string()),
        "port-down" => c.ports_down.push(
            v.trim()
                .parse()
                .map_err(|_| format!("port-down wants a port number: {opt:?}"))?,
        ),
        "vlan-port" => {
            let mut words = v.split_whitespace();
            let port = words
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("vlan-port wants a port number: {opt:?}"))?;
            c.port_vlans.push((port, words.map(String::from).collect()));
        }
        _ => return Err(format!("unknown option {opt:?}")),
    }
    Ok(())
}

/// Programs `case`'s table into one switch with the real ovs-ofctl: Ok, or the refusal.
/// `had_groups`: the previous case left groups behind. One `add-flows` whose first line is a
/// `delete` replaces the flows (one ovs-ofctl run instead of two).
fn program(b: &mut dyn Backend, case: &Case, dir: &Path, had_groups: bool) -> Result<(), String> {
    b.reset_state()?;
    let target = b.mgmt();
    let ofctl = |args: &[&str]| -> Result<String, String> {
        let mut c = Command::new("ovs-ofctl");
        c.args(["-O", &case.version]).args(args);
        run_cmd(&mut c)
    };
    if had_groups || !case.groups.is_empty() {
        ofctl(&["del-groups", &target])?;
    }
    // Meters go with each case: a meter's buckets start full, so every case starts alike.
    if had_groups || !case.meters.is_empty() {
        ofctl(&["del-meters", &target])?;
    }
    for m in &case.meters {
        ofctl(&["add-meter", &target, m])?;
    }
    if !case.groups.is_empty() {
        let f = dir.join("groups.txt");
        std::fs::write(&f, case.groups.join("\n") + "\n").expect("write groups");
        ofctl(&["add-groups", &target, f.to_str().unwrap()])?;
    }
    let f = dir.join("flows.txt");
    let text = format!("delete\n{}\n", case.flows.join("\n"));
    std::fs::write(&f, text).expect("write flows");
    ofctl(&["add-flows", &target, f.to_str().unwrap()])?;
    b.settle_flows()
}

/// How a case came out.
pub enum Verdict {
    Same,
    /// Differs as documented (the diff, for `OVS_DIFF_VERBOSE`).
    Known(String),
    /// Marked as a known difference but now behaves like Open vSwitch.
    KnownNowSame,
    Differs(String),
}

fn hexs(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

fn show(o: &Outputs) -> String {
    if o.is_empty() {
        return "  (nothing sent)\n".into();
    }
    let mut s = String::new();
    for (p, frames) in o {
        for f in frames {
            let _ = writeln!(s, "  port {p}: {}", hexs(f));
        }
    }
    s
}

/// `dump-conntrack` lines in a canonical order, without fields that legitimately differ.
pub fn normalize_ct(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split(',')
                .filter(|f| !f.starts_with("id=") && !f.starts_with("timeout="))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    v.sort();
    v
}

/// `mod-port PORT up|down` through the real ovs-ofctl. Open vSwitch sees a port's carrier
/// in its main loop and brings its translation up to date a round later: a few commands
/// through that loop (stale megaflows purged) make sure it did before the next packet.
fn mod_port(b: &mut dyn Backend, case: &Case, port: u32, how: &str) -> Result<(), String> {
    let mut c = Command::new("ovs-ofctl");
    c.args([
        "-O",
        &case.version,
        "mod-port",
        &b.mgmt(),
        &port.to_string(),
        how,
    ]);
    run_cmd(&mut c)?;
    for _ in 0..4 {
        b.settle_flows()?;
    }
    Ok(())
}

fn count(o: &Outputs) -> usize {
    o.values().map(Vec::len).sum()
}

/// Runs one case through both switches; what our switch sent for each packet goes to
/// `ours_sent`.
pub fn run_case(
    ovs: &mut dyn Backend,
    ours: &mut dyn Backend,
    case: &Case,
    dir: &Path,
    had_groups: bool,
    ours_sent: &mut Vec<Outputs>,
) -> Verdict {
    let packets: Vec<packet::TestPacket> = case
        .packets
        .iter()
        .map(|p| packet::parse(p).unwrap_or_else(|e| panic!("{}: {e}", case.at)))
        .collect();
    let mut diff = String::new();
    let p_ovs = program(ovs, case, dir, had_groups);
    let p_ours = program(ours, case, dir, had_groups);
    match (&p_ovs, &p_ours, case.both_refuse) {
        (Err(_), Err(_), true) => return judge(case, diff),
        (_, _, true) => {
            let _ = writeln!(
                diff,
                "both should refuse the table: Open vSwitch {}, vswitch {}",
                p_ovs.as_ref().map_or("refused", |_| "accepted"),
                p_ours.as_ref().map_or("refused", |_| "accepted")
            );
            return judge(case, diff);
        }
        (Err(e), _, false) => {
            // A broken case, not a difference: it fails the suite with the reason.
            return Verdict::Differs(format!("Open vSwitch refuses the case's table: {e}\n"));
        }
        (Ok(()), Err(e), false) => {
            let _ = writeln!(diff, "vswitch refuses what Open vSwitch accepts: {e}");
            return judge(case, diff);
        }
        (Ok(()), Ok(()), false) => {}
    }
    for &p in &case.ports_down {
        mod_port(ovs, case, p, "down").unwrap_or_else(|e| panic!("{}: {e}", case.at));
        mod_port(ours, case, p, "down").unwrap_or_else(|e| panic!("{}: {e}", case.at));
    }
    for (p, settings) in &case.port_vlans {
        let set = ovs
            .set_port_vlan(*p, settings)
            .and_then(|()| ours.set_port_vlan(*p, settings));
        set.unwrap_or_else(|e| panic!("{}: {e}", case.at));
    }
    let samples_before = case.samples.then(|| {
        let a = ovs.samples().unwrap_or_else(|e| panic!("{}: {e}", case.at));
        let b = ours
            .samples()
            .unwrap_or_else(|e| panic!("{}: {e}", case.at));
        (a, b)
    });
    for (i, p) in packets.iter().enumerate() {
        let sent = ovs
            .send(p.in_port, &p.frame)
            .and_then(|()| ours.send(p.in_port, &p.frame));
        if let Err(e) = sent {
            panic!("{}: cannot send packet {i}: {e}", case.at);
        }
        let a = ovs.collect().unwrap_or_else(|e| panic!("{}: {e}", case.at));
        let b = ours
            .collect()
            .unwrap_or_else(|e| panic!("{}: {e}", case.at));
        let differs = if case.count_only {
            count(&a) != count(&b)
        } else {
            a != b
        };
        ours_sent.push(b.clone());
        if differs {
            let _ = write!(
                diff,
                "packet {i} ({}) in_port={} {}\n Open vSwitch sent:\n{} vswitch sent:\n{}",
                case.packets[i],
                p.in_port,
                hexs(&p.frame),
                show(&a),
                show(&b)
            );
        }
    }
    if case.dump {
        let dump = |b: &dyn Backend| -> Vec<String> {
            let mut c = Command::new("ovs-ofctl");
            c.args(["-O", &case.version, "--no-stats", "dump-flows", &b.mgmt()]);
            let text = run_cmd(&mut c).unwrap_or_else(|e| panic!("{}: dump-flows: {e}", case.at));
            let mut v: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
            v.sort();
            v
        };
        let (a, b) = (dump(&*ovs), dump(&*ours));
        if a != b {
            let _ = write!(
                diff,
                "dump-flows differs\n Open vSwitch:\n  {}\n vswitch:\n  {}\n",
                a.join("\n  "),
                b.join("\n  ")
            );
        }
    }
    for &p in &case.ports_down {
        mod_port(ovs, case, p, "up").unwrap_or_else(|e| panic!("{}: {e}", case.at));
        mod_port(ours, case, p, "up").unwrap_or_else(|e| panic!("{}: {e}", case.at));
    }
    for (p, _) in &case.port_vlans {
        let clear = ovs
            .set_port_vlan(*p, &[])
            .and_then(|()| ours.set_port_vlan(*p, &[]));
        clear.unwrap_or_else(|e| panic!("{}: {e}", case.at));
    }
    if let Some((a0, b0)) = samples_before {
        let delta = |now: BTreeMap<u32, u64>, before: &BTreeMap<u32, u64>| {
            now.into_iter()
                .map(|(id, n)| (id, n.saturating_sub(before.get(&id).copied().unwrap_or(0))))
                .filter(|(_, n)| *n != 0)
                .collect::<BTreeMap<u32, u64>>()
        };
        let a = delta(
            ovs.samples().unwrap_or_else(|e| panic!("{}: {e}", case.at)),
            &a0,
        );
        let b = delta(
            ours.samples()
                .unwrap_or_else(|e| panic!("{}: {e}", case.at)),
            &b0,
        );
        if a != b {
            let _ = writeln!(
                diff,
                "sampled packets per collector set differ\n Open vSwitch: {a:?}\n vswitch: {b:?}"
            );
        }
    }
    if case.ct {
        let a = normalize_ct(&ovs.conntrack().unwrap_or_else(|e| panic!("{e}")));
        let b = normalize_ct(&ours.conntrack().unwrap_or_else(|e| panic!("{e}")));
        if a != b {
            let _ = write!(
                diff,
                "conntrack differs\n Open vSwitch:\n  {}\n vswitch:\n  {}\n",
                a.join("\n  "),
                b.join("\n  ")
            );
        }
    }
    judge(case, diff)
}

fn judge(case: &Case, diff: String) -> Verdict {
    match (diff.is_empty(), &case.known) {
        (true, None) => Verdict::Same,
        (true, Some(_)) => Verdict::KnownNowSame,
        (false, Some(_)) => Verdict::Known(diff),
        (false, None) => Verdict::Differs(diff),
    }
}
