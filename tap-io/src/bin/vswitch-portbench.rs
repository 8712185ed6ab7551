//! vswitch-portbench: forwards every frame between two ports, A <-> B, with no flow table.
//! It measures the I/O ceiling of tap-io's own port code.
//!
//! Usage: vswitch-portbench --a IF --b IF [--type afpacket|tap] [--batch N]
//!        [--busy-poll-us N] [--vnet on|off] [--ring-kb N] [--ring v2|v3] [--pidfile PATH]
//!
//! `--ring` picks the AF_PACKET receive ring layout (default: `AfPacketConfig`'s, V2): V2 hands
//! every frame over at once, V3 packs frames into blocks handed over when full or after 1 ms.
//! `--vnet on` (the default for afpacket) opens the ports with virtio-net headers, so TSO/GSO
//! super-frames and partial checksums pass through whole (buffers of 64 KiB); `off` is the
//! plain path, which needs the pods' offloads off.
//! Prints counters on SIGINT/SIGTERM and exits.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tap_io::{AfPacketConfig, AfPacketPort, Batch, BufferPool, Port, RingKind, TapConfig, TapPort};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Args {
    a: String,
    b: String,
    kind: String,
    batch: usize,
    busy_poll_us: u64,
    vnet: Option<bool>,
    ring_kb: Option<usize>,
    ring: Option<RingKind>,
    pidfile: Option<String>,
}

const USAGE: &str = "usage: vswitch-portbench --a IF --b IF [--type afpacket|tap] [--batch N] \
                     [--busy-poll-us N] [--vnet on|off] [--ring-kb N] [--ring v2|v3] [--pidfile PATH]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        a: String::new(),
        b: String::new(),
        kind: "afpacket".into(),
        batch: 32,
        busy_poll_us: 0,
        vnet: None,
        ring_kb: None,
        ring: None,
        pidfile: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--a" => args.a = val()?,
            "--b" => args.b = val()?,
            "--type" => args.kind = val()?,
            "--batch" => args.batch = val()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--busy-poll-us" => {
                args.busy_poll_us = val()?.parse().map_err(|e| format!("--busy-poll-us: {e}"))?
            }
            "--vnet" => {
                args.vnet = Some(match val()?.as_str() {
                    "on" => true,
                    "off" => false,
                    v => return Err(format!("--vnet must be on or off, not {v}")),
                })
            }
            "--ring-kb" => {
                args.ring_kb = Some(val()?.parse().map_err(|e| format!("--ring-kb: {e}"))?)
            }
            "--ring" => {
                args.ring = Some(match val()?.as_str() {
                    "v2" => RingKind::V2,
                    "v3" => RingKind::V3,
                    v => return Err(format!("--ring must be v2 or v3, not {v}")),
                })
            }
            "--pidfile" => args.pidfile = Some(val()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.a.is_empty() || args.b.is_empty() {
        return Err(format!("--a and --b are required\n{USAGE}"));
    }
    if !(1..=tap_io::buf::MAX_BATCH).contains(&args.batch) {
        return Err(format!("--batch must be 1..={}", tap_io::buf::MAX_BATCH));
    }
    if args.kind != "afpacket" && args.kind != "tap" {
        return Err(format!("--type must be afpacket or tap, not {}", args.kind));
    }
    Ok(args)
}

#[derive(Default)]
struct Loop {
    loops: u64,
    sleeps: u64,
    rx_errors: u64,
}

/// Moves one batch from `from` to `to`; returns how many frames were received.
fn forward<P: Port>(from: &mut P, to: &mut P, batch: &mut Batch, lp: &mut Loop) -> usize {
    match from.rx_batch(batch) {
        Ok(0) => 0,
        Ok(n) => {
            to.tx_batch(batch);
            n
        }
        Err(e) => {
            if lp.rx_errors == 0 {
                eprintln!("vswitch-portbench: receive on {} failed: {e}", from.name());
            }
            lp.rx_errors += 1;
            batch.clear();
            0
        }
    }
}

fn run<P: Port>(mut a: P, mut b: P, args: &Args) -> std::io::Result<()> {
    let mtu = a.mtu().max(b.mtu());
    let gso = a.offloads().gso || b.offloads().gso;
    let mut pool = BufferPool::for_mtu_gso(2 * args.batch, mtu, gso);
    let mut batch = pool
        .batch(args.batch)
        .ok_or_else(|| std::io::Error::other("buffer pool too small"))?;
    let mut poll = Poll::new()?;
    for (i, p) in [&a, &b].into_iter().enumerate() {
        if let Some(fd) = p.fd() {
            poll.registry()
                .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
        }
    }
    let mut events = Events::with_capacity(4);
    let busy = Duration::from_micros(args.busy_poll_us);
    let mut lp = Loop::default();
    let mut idle_since: Option<Instant> = None;
    eprintln!(
        "vswitch-portbench ready: type={} batch={} busy-poll-us={} vnet={} {}<->{} mtu={}",
        args.kind,
        args.batch,
        args.busy_poll_us,
        gso,
        a.name(),
        b.name(),
        mtu
    );
    while !STOP.load(Ordering::Relaxed) {
        lp.loops += 1;
        let moved = forward(&mut a, &mut b, &mut batch, &mut lp)
            + forward(&mut b, &mut a, &mut batch, &mut lp);
        if moved > 0 {
            idle_since = None;
            continue;
        }
        // Both ports returned nothing: both are drained, so sleeping on edge-triggered
        // readiness cannot miss frames.
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < busy {
            continue;
        }
        lp.sleeps += 1;
        match poll.poll(&mut events, Some(Duration::from_millis(100))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut err = std::io::stderr().lock();
    for p in [&a, &b] {
        let s = p.stats();
        let drops: Vec<String> = tap_io::TxDropReason::ALL
            .iter()
            .filter(|r| s.tx_dropped.get(**r) > 0)
            .map(|r| format!("{}={}", r.as_str(), s.tx_dropped.get(*r)))
            .collect();
        let _ = writeln!(
            err,
            "  {}: rx={} rx_bytes={} rx_gso={} rx_trunc={} rx_kernel_drops={} rx_errors={} tx={} tx_bytes={} tx_gso={} tx_dropped={} [{}]",
            p.name(),
            s.rx_packets,
            s.rx_bytes,
            s.rx_gso,
            s.rx_truncated,
            s.rx_kernel_drops,
            s.rx_errors,
            s.tx_packets,
            s.tx_bytes,
            s.tx_gso,
            s.tx_dropped.total(),
            drops.join(" ")
        );
    }
    let (sa, sb) = (a.stats(), b.stats());
    let _ = writeln!(
        err,
        "vswitch-portbench: rx={} tx={} txfail={} loops={} sleeps={} rx_errors={}",
        sa.rx_packets + sb.rx_packets,
        sa.tx_packets + sb.tx_packets,
        sa.tx_dropped.total() + sb.tx_dropped.total(),
        lp.loops,
        lp.sleeps,
        lp.rx_errors
    );
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; PDEATHSIG
    // makes sure the forwarder never outlives the harness that started it.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    let write_pid = |args: &Args| {
        if let Some(path) = &args.pidfile
            && let Err(e) = std::fs::write(path, format!("{}\n", std::process::id()))
        {
            eprintln!("vswitch-portbench: cannot write pidfile {path}: {e}");
            std::process::exit(1);
        }
    };
    let result = if args.kind == "tap" {
        let open = |n: &str| {
            let mut cfg = TapConfig::new(n);
            cfg.vnet_hdr = args.vnet.unwrap_or(false);
            TapPort::open(&cfg)
        };
        match (open(&args.a), open(&args.b)) {
            (Ok(a), Ok(b)) => {
                write_pid(&args);
                run(a, b, &args)
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("vswitch-portbench: {e}");
                std::process::exit(1);
            }
        }
    } else {
        let open = |n: &str| {
            let mut cfg = AfPacketConfig::new(n);
            cfg.vnet_hdr = args.vnet.unwrap_or(true);
            if let Some(kb) = args.ring_kb {
                cfg.ring_bytes = kb << 10;
            }
            if let Some(ring) = args.ring {
                cfg.ring = ring;
            }
            AfPacketPort::open(&cfg)
        };
        match (open(&args.a), open(&args.b)) {
            (Ok(a), Ok(b)) => {
                write_pid(&args);
                run(a, b, &args)
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("vswitch-portbench: {e}");
                std::process::exit(1);
            }
        }
    };
    if let Err(e) = result {
        eprintln!("vswitch-portbench: {e}");
        std::process::exit(1);
    }
}
