//! What a scrape reads: the counters the datapath, the bridges, conntrack, the OpenFlow
//! server and the agent already keep, copied out at scrape time. Locks taken: the switch
//! lock (bridges, ports, flow tables; no per-flow walk), the agent's, and the conntrack
//! table's once (its entries are walked for the per-zone and per-Service counts).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use conntrack::Counter as CtCounter;

use super::families::{Family, Kind};
use crate::bridge::FlowModCounts;
use crate::control::Control;
use crate::datapath::drops::DropReason;

/// How long the previous scrape took to gather (ns), and how long of it the conntrack
/// table's lock was held (ns): exported by the next scrape (a scrape cannot time itself).
static LAST_GATHER_NS: AtomicU64 = AtomicU64::new(0);
static LAST_CT_LOCK_NS: AtomicU64 = AtomicU64::new(0);

/// Every family, in a stable order.
pub fn gather(control: &Control) -> Vec<Family> {
    let started = Instant::now();
    // Both figures are the previous scrape's: read them before this scrape's own conntrack
    // copy stores its lock time, or a slow scrape would report its lock against the previous
    // (shorter) gather.
    let last_gather_ns = LAST_GATHER_NS.load(Relaxed);
    let last_ct_lock_ns = LAST_CT_LOCK_NS.load(Relaxed);
    let mut out = gather_families(control);
    let mut f = Family::new(
        "scrape_gather_seconds",
        Kind::Gauge,
        "How long the previous scrape took to read every counter (before encoding).",
    );
    f.add_f64(vec![], last_gather_ns as f64 / 1e9);
    out.push(f);
    let mut f = Family::new(
        "scrape_conntrack_lock_seconds",
        Kind::Gauge,
        "How long the previous scrape held the conntrack table's lock (ct traffic waits meanwhile).",
    );
    f.add_f64(vec![], last_ct_lock_ns as f64 / 1e9);
    out.push(f);
    LAST_GATHER_NS.store(started.elapsed().as_nanos() as u64, Relaxed);
    out
}

fn gather_families(control: &Control) -> Vec<Family> {
    let mut out = Vec::new();
    let mut build = Family::new("build_info", Kind::Gauge, "The running vswitchd; always 1.");
    build.add(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1);
    out.push(build);
    bridges(control, &mut out);
    threads(control, &mut out);
    conntrack(control, &mut out);
    openflow(&mut out);
    out
}

/// Records how long the conntrack lock was held when dropped just before the guard.
struct LockTimer(Instant);

impl Drop for LockTimer {
    fn drop(&mut self) {
        LAST_CT_LOCK_NS.store(self.0.elapsed().as_nanos() as u64, Relaxed);
    }
}

fn bl(bridge: &str) -> Vec<(&'static str, String)> {
    vec![("bridge", bridge.to_string())]
}

/// Ports, drops, caches, flow tables and flow-mods of every bridge.
fn bridges(control: &Control, out: &mut Vec<Family>) {
    use Kind::{Counter, Gauge};
    let port_families = [
        ("port_receive_packets", "Frames received on the port."),
        ("port_receive_bytes", "Bytes received on the port."),
        (
            "port_receive_dropped_packets",
            "Frames dropped before the switch saw them (a full AF_PACKET ring: the kernel's drop count).",
        ),
        (
            "port_receive_errors",
            "Receive calls that failed on the port.",
        ),
        ("port_transmit_packets", "Frames sent out of the port."),
        ("port_transmit_bytes", "Bytes sent out of the port."),
        (
            "port_transmit_dropped_packets",
            "Frames for the port that were not sent (too big, queue full, kernel refused).",
        ),
        (
            "port_transmit_errors",
            "Send calls that failed on the port.",
        ),
    ];
    let mut ports: Vec<Family> = port_families
        .iter()
        .map(|(n, h)| Family::new(n, Counter, h))
        .collect();
    let mut drops = Family::new(
        "dropped_packets",
        Counter,
        "Packets the switch dropped, by bridge and reason (`vswitchctl dump-drops`).",
    );
    let mut emc_hits = Family::new("emc_hits", Counter, "Exact-match cache hits.");
    let mut emc_misses = Family::new(
        "emc_misses",
        Counter,
        "Exact-match cache misses (looked up in the megaflow cache next).",
    );
    let mut mf_hits = Family::new("megaflow_hits", Counter, "Megaflow cache hits.");
    let mut mf_misses = Family::new(
        "megaflow_misses",
        Counter,
        "Megaflow cache misses (each one an upcall).",
    );
    let mut upcalls = Family::new(
        "upcalls",
        Counter,
        "Slow-path translations: packets classified through the OpenFlow tables.",
    );
    let mut megaflows = Family::new(
        "megaflows",
        Gauge,
        "Megaflows cached, summed over the forwarding threads.",
    );
    let mut masks = Family::new(
        "megaflow_masks",
        Gauge,
        "Distinct megaflow masks, summed over the forwarding threads.",
    );
    let mut flows = Family::new("flows", Gauge, "OpenFlow flows, by bridge and table.");
    let mut groups = Family::new("groups", Gauge, "OpenFlow groups, by bridge.");
    let mut group_packets = Family::new(
        "group_packets",
        Counter,
        "Packets that ran a bucket of the group (`vswitchctl dump-group-stats`), by bridge and group.",
    );
    let mut group_bytes = Family::new(
        "group_bytes",
        Counter,
        "Bytes of those packets, by bridge and group.",
    );
    let mut table_lookups = Family::new(
        "table_lookups",
        Counter,
        "Packets looked up in an OpenFlow table, by bridge, table and result (matched, missed); \
         tables never looked up are left out (`vswitchctl dump-tables`).",
    );
    let mut sampled = Family::new(
        "sampled_packets",
        Counter,
        "Packets `sample` actions sampled, by bridge and collector set id (`vswitchctl dump-samples`).",
    );
    let mut flow_mods = Family::new(
        "flow_mods",
        Counter,
        "Flow-mods the bridge's tables took, by command and result (applied, refused, rolled_back).",
    );
    {
        let state = control.switch.lock();
        for b in state.values() {
            for p in b.ports.values() {
                let c = p.counters.snapshot();
                let values = [
                    c.rx_packets,
                    c.rx_bytes,
                    c.rx_dropped,
                    c.rx_errors,
                    c.tx_packets,
                    c.tx_bytes,
                    c.tx_dropped,
                    c.tx_errors,
                ];
                for (f, v) in ports.iter_mut().zip(values) {
                    f.add(
                        vec![("bridge", b.name.clone()), ("port", p.spec.name.clone())],
                        v,
                    );
                }
            }
            for r in DropReason::ALL {
                drops.add(
                    vec![("bridge", b.name.clone()), ("reason", r.name().to_string())],
                    b.drops.get(*r),
                );
            }
            let sum = |f: fn(&crate::datapath::CacheStats) -> u64| -> u64 {
                b.cache_stats.iter().map(|s| f(s)).sum()
            };
            let emc = sum(|s| s.emc_hits.load(Relaxed));
            let mf = sum(|s| s.megaflow_hits.load(Relaxed));
            let miss = sum(|s| s.misses.load(Relaxed));
            emc_hits.add(bl(&b.name), emc);
            emc_misses.add(bl(&b.name), mf + miss);
            mf_hits.add(bl(&b.name), mf);
            mf_misses.add(bl(&b.name), miss);
            upcalls.add(bl(&b.name), miss);
            megaflows.add(bl(&b.name), sum(|s| s.megaflows.load(Relaxed)));
            masks.add(bl(&b.name), sum(|s| s.megaflow_masks.load(Relaxed)));
            for (table, n) in b.tables().table_sizes() {
                flows.add(
                    vec![("bridge", b.name.clone()), ("table", table.to_string())],
                    n as u64,
                );
            }
            groups.add(bl(&b.name), b.tables().groups().count() as u64);
            for g in b.tables().groups() {
                let Some(e) = b.group_entry(g.id) else {
                    continue;
                };
                let (packets, bytes) = e.counts.group.counts();
                let l = vec![("bridge", b.name.clone()), ("group", g.id.to_string())];
                group_packets.add(l.clone(), packets);
                group_bytes.add(l, bytes);
            }
            let counts = b.pipeline.load().table_counts.clone();
            for table in 0..=u8::MAX {
                let (lookups, matched) = counts.of(table);
                if lookups == 0 {
                    continue;
                }
                for (result, n) in [("matched", matched), ("missed", lookups - matched)] {
                    table_lookups.add(
                        vec![
                            ("bridge", b.name.clone()),
                            ("table", table.to_string()),
                            ("result", result.to_string()),
                        ],
                        n,
                    );
                }
            }
            for (id, n) in b.samples.snapshot() {
                sampled.add(
                    vec![
                        ("bridge", b.name.clone()),
                        ("collector_set_id", id.to_string()),
                    ],
                    n,
                );
            }
            if b.samples.other() != 0 {
                sampled.add(
                    vec![
                        ("bridge", b.name.clone()),
                        ("collector_set_id", "other".to_string()),
                    ],
                    b.samples.other(),
                );
            }
            for (c, counts) in b.flow_mod_counts.counts.iter().enumerate() {
                for (o, n) in counts.iter().enumerate() {
                    flow_mods.add(
                        vec![
                            ("bridge", b.name.clone()),
                            ("command", FlowModCounts::COMMAND_NAMES[c].to_string()),
                            ("result", FlowModCounts::OUTCOME_NAMES[o].to_string()),
                        ],
                        *n,
                    );
                }
            }
        }
    }
    out.extend(ports);
    out.extend([
        drops,
        emc_hits,
        emc_misses,
        mf_hits,
        mf_misses,
        upcalls,
        megaflows,
        masks,
        flows,
        groups,
        group_packets,
        group_bytes,
        table_lookups,
        sampled,
        flow_mods,
    ]);
}

/// Busy and idle time of each forwarding thread.
fn threads(control: &Control, out: &mut Vec<Family>) {
    let mut busy = Family::new(
        "thread_busy_seconds",
        Kind::Counter,
        "Time a forwarding thread spent handling packets, control jobs and housekeeping.",
    );
    let mut idle = Family::new(
        "thread_idle_seconds",
        Kind::Counter,
        "Time a forwarding thread spent waiting for packets.",
    );
    let mut rx = Family::new(
        "thread_rx_packets",
        Kind::Counter,
        "Frames a forwarding thread received from the ports (and receive queues) it polls.",
    );
    for (t, s) in control.switch.dp.thread_stats.iter().enumerate() {
        let l = vec![("thread", t.to_string())];
        busy.add_f64(l.clone(), s.busy_ns.load(Relaxed) as f64 / 1e9);
        idle.add_f64(l.clone(), s.idle_ns.load(Relaxed) as f64 / 1e9);
        rx.add(l, s.rx_frames.load(Relaxed));
    }
    out.extend([busy, idle, rx]);
}

/// The connection table: size, limit, zones, events, and connections per Service backend.
fn conntrack(control: &Control, out: &mut Vec<Family>) {
    use Kind::{Counter, Gauge};
    let services = control.agent.service_endpoints();
    // (zone, frontend address, port, protocol) -> Service name.
    let mut by_frontend: BTreeMap<(u16, Ipv4Addr, u16, u8), &str> = BTreeMap::new();
    // (Service, backend) -> connections; every configured backend starts at 0.
    let mut per_backend: BTreeMap<(String, String), u64> = BTreeMap::new();
    for s in &services {
        for &(ip, port, proto) in &s.frontends {
            by_frontend.insert((s.zone, ip, port, proto), &s.name);
        }
        for (ip, port) in &s.backends {
            per_backend.insert((s.name.clone(), format!("{ip}:{port}")), 0);
        }
    }
    let dp = &control.switch.dp;
    // Counts kept by conntrack at commit and removal: nothing here walks the table, and no
    // shard is locked (only the accounting's own lock, for as long as the copy takes).
    let (zones, entries, limit, counters, default_zone_limit, zone_limits, source_limits) = {
        let ct = &dp.ct;
        let locked = Instant::now();
        let _timed = LockTimer(locked);
        for (k, n) in ct.dnat_counts() {
            if k.family != conntrack::Family::V4 {
                continue;
            }
            let dst = Ipv4Addr::from(k.frontend.v4_host());
            if let Some(name) = by_frontend.get(&(k.zone, dst, k.frontend_port, k.proto)) {
                let backend = format!("{}:{}", Ipv4Addr::from(k.backend.v4_host()), k.backend_port);
                *per_backend.entry((name.to_string(), backend)).or_default() += u64::from(n);
            }
        }
        let zones: BTreeMap<u16, u64> = ct
            .zone_counts()
            .into_iter()
            .map(|(z, n)| (z, u64::from(n)))
            .collect();
        (
            zones,
            ct.len(),
            ct.config().max_conns,
            ct.counters(),
            ct.default_zone_limit(),
            ct.zone_limits(),
            ct.source_limits(),
        )
    };
    let mut f = Family::new("conntrack_entries", Gauge, "Connections tracked.");
    f.add(vec![], entries as u64);
    out.push(f);
    let mut f = Family::new(
        "conntrack_entries_limit",
        Gauge,
        "Most connections tracked (`vswitchd --ct-max-conns`); new ones beyond it are dropped.",
    );
    f.add(vec![], limit as u64);
    out.push(f);
    let mut f = Family::new(
        "conntrack_zone_entries",
        Gauge,
        "Connections tracked, by zone.",
    );
    for (z, n) in zones {
        f.add(vec![("zone", z.to_string())], n);
    }
    out.push(f);
    let mut f = Family::new(
        "conntrack_zone_limit",
        Gauge,
        "Connection limit of a zone (`vswitchctl ct-set-limits`; zone=\"default\": zones without their own); 0 is unlimited.",
    );
    f.add(
        vec![("zone", "default".to_string())],
        default_zone_limit as u64,
    );
    for z in &zone_limits {
        f.add(vec![("zone", z.zone.to_string())], z.limit as u64);
    }
    out.push(f);
    let mut f = Family::new(
        "conntrack_source_limit",
        Gauge,
        "Connection limit of a source address (pod) in a zone (node.toml conntrack.per_pod_limit).",
    );
    let mut g = Family::new(
        "conntrack_source_entries",
        Gauge,
        "Connections a limited source address (pod) holds in a zone.",
    );
    for s in &source_limits {
        let labels = vec![("zone", s.zone.to_string()), ("src", s.src_text())];
        f.add(labels.clone(), s.limit as u64);
        g.add(labels, s.count as u64);
    }
    out.extend([f, g]);
    let mut f = Family::new(
        "conntrack_packets",
        Counter,
        "Packets that went through connection tracking.",
    );
    f.add(vec![], counters.get(CtCounter::Packets));
    out.push(f);
    let mut f = Family::new(
        "conntrack_nat_allocation_failures",
        Counter,
        "New connections refused because no NAT address or port was free.",
    );
    f.add(vec![], counters.get(CtCounter::DropNatExhausted));
    out.push(f);
    let mut f = Family::new(
        "conntrack_events",
        Counter,
        "Connection tracking events, by name (as in `vswitchctl dump-drops`' conntrack line).",
    );
    for c in CtCounter::ALL.iter().filter(|c| **c != CtCounter::Packets) {
        f.add(vec![("event", c.name().to_string())], counters.get(*c));
    }
    out.push(f);
    let mut f = Family::new(
        "service_backend_connections",
        Gauge,
        "Connections conntrack holds from a Service's frontends to each backend.",
    );
    for ((service, backend), n) in per_backend {
        f.add(vec![("service", service), ("backend", backend)], n);
    }
    out.push(f);
}

/// OpenFlow sessions per bridge.
fn openflow(out: &mut Vec<Family>) {
    let mut open = Family::new(
        "openflow_sessions",
        Kind::Gauge,
        "OpenFlow connections open, by bridge.",
    );
    let mut opened = Family::new(
        "openflow_sessions_opened",
        Kind::Counter,
        "OpenFlow connections accepted, by bridge.",
    );
    let mut errors = Family::new(
        "openflow_errors_sent",
        Kind::Counter,
        "OFPT_ERROR replies sent, by bridge.",
    );
    let mut lost = Family::new(
        "openflow_async_dropped",
        Kind::Counter,
        "Asynchronous messages lost to OpenFlow connections that fell behind, by bridge and what (packet_in, monitor_update: dropped past 1024 waiting; connection: cut off past 256k waiting, so that no FLOW_REMOVED or PORT_STATUS is lost).",
    );
    for (bridge, c) in crate::ofserver::counters::snapshot() {
        open.add(bl(&bridge), c.open);
        opened.add(bl(&bridge), c.opened);
        errors.add(bl(&bridge), c.errors_sent);
        for (what, n) in [
            ("packet_in", c.packet_ins_dropped),
            ("monitor_update", c.monitor_updates_dropped),
            ("connection", c.async_overruns),
        ] {
            lost.add(
                vec![("bridge", bridge.clone()), ("what", what.to_string())],
                n,
            );
        }
    }
    out.extend([open, opened, errors, lost]);
}
