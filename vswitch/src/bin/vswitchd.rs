//! `vswitchd`: the node switch daemon.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clap::builder::TypedValueParser;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RxWait {
    Adaptive,
    Block,
}

#[derive(Parser, Debug)]
#[command(
    name = "vswitchd",
    version,
    about = "Userspace virtual switch for container-cluster nodes"
)]
struct Cli {
    /// Directory for the management and OpenFlow sockets (default $VSWITCH_RUNDIR or /run/vswitch).
    #[arg(long, env = "VSWITCH_RUNDIR", default_value = "/run/vswitch")]
    rundir: PathBuf,
    /// Node configuration (TOML) to apply at start and on SIGHUP.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the daemon's pid to this file.
    #[arg(long)]
    pidfile: Option<PathBuf>,
    /// Busy-poll the ports for this many microseconds before blocking.
    #[arg(long, default_value_t = 0)]
    busy_poll_us: u64,
    /// How a forwarding thread waits for frames: `adaptive` (blocks when traffic is light, so
    /// the first frame wakes it; from 50 frames/ms naps whenever its ports are drained, as long
    /// as its recent rate takes to bring 32 frames (30–100 µs), so each turn serves a batch) or
    /// `block` (always blocks, one wake-up per burst).
    #[arg(long, value_enum, default_value_t = RxWait::Adaptive)]
    rx_wait: RxWait,
    /// Forwarding threads; each port is polled by one of them (`add-port ...
    /// options:thread=K` picks it, else the least loaded; `options:n_rxq=M`: by M of them,
    /// flows hashed over their sockets), and any of them sends out of any port.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// Most connections conntrack keeps (1 to 1073741824); new ones beyond it are dropped
    /// (`ct_table_full`).
    #[arg(long, default_value_t = 1 << 18, value_parser = clap::value_parser!(u32).range(1..=1 << 30).map(|v| v as usize))]
    ct_max_conns: usize,
    /// A conntrack timeout in seconds, e.g. `--ct-timeout tcp_established=3600` (repeatable;
    /// names: tcp_first, tcp_opening, tcp_established, tcp_closing, tcp_fin_wait, tcp_closed,
    /// other_first, other_multiple, other_bidir, icmp_first, icmp_reply).
    #[arg(long, value_name = "NAME=SECS")]
    ct_timeout: Vec<String>,
    /// Most clients connected to the management socket at once; more are refused.
    #[arg(long, default_value_t = vswitch::ctlserver::limits::MGMT_MAX_CONNS, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    mgmt_max_conns: usize,
    /// Most clients connected to each OpenFlow socket (per bridge, and the TCP listener) at once.
    #[arg(long, default_value_t = vswitch::ctlserver::limits::OF_MAX_CONNS, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    of_max_conns: usize,
    /// Longest management request (bytes, at least 1024); a longer one is refused and its
    /// connection closed.
    #[arg(long, default_value_t = vswitch::ctlserver::limits::MGMT_MAX_REQUEST, value_parser = clap::value_parser!(u32).range(1024..).map(|v| v as usize))]
    mgmt_max_request_bytes: usize,
    /// Seconds a control-plane client may stay silent before it is dropped (OpenFlow peers
    /// are first sent an echo request).
    #[arg(long, value_name = "SECS", default_value_t = vswitch::ctlserver::limits::IDLE_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    ctl_idle_timeout: u64,
    /// Threads that run management commands and OpenFlow requests.
    #[arg(long, default_value_t = vswitch::ctlserver::limits::WORKERS, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    ctl_workers: usize,
    /// Serve Prometheus metrics at /metrics and readiness at /healthz over HTTP on
    /// ADDR:PORT (a port alone: 127.0.0.1). Off by default.
    #[arg(long, value_name = "ADDR:PORT", value_parser = vswitch::observe::http::parse_address)]
    metrics_address: Option<std::net::SocketAddr>,
    /// Log lines as text or as one JSON object per line (stderr; level from RUST_LOG,
    /// default info, changed at run time with `vswitchctl log-level`).
    #[arg(long, value_enum, default_value_t = vswitch::logging::LogFormat::Text)]
    log_format: vswitch::logging::LogFormat,
    /// The state file: bridges, ports, flows, groups and the node agent's pods and Services,
    /// restored at start and rewritten after every change (default <rundir>/vswitchd.db).
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Start empty: ignore the saved state and connection handover (the state file is replaced).
    #[arg(long)]
    fresh: bool,
    /// Print the man page (roff, generated from these options) and exit.
    #[arg(long)]
    man: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.man {
        use clap::CommandFactory;
        let page = clap_mangen::Man::new(Cli::command())
            .section("8")
            .render(&mut std::io::stdout().lock());
        return if page.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    // Before any thread starts; on success this process is replaced (same pid) and starts over.
    let huge_pages = vswitch::heap_huge_pages::enable();
    vswitch::logging::init(cli.log_format);
    if let Err(e) = huge_pages {
        tracing::warn!(
            "could not execute itself again with {}=1 in GLIBC_TUNABLES (heap on 4 KiB pages): {e}",
            vswitch::heap_huge_pages::TUNABLE
        );
    }
    if let Err(e) = tap_io::env::check() {
        eprintln!("vswitchd: {e}");
        return ExitCode::from(2);
    }
    let mut conntrack = conntrack::Config {
        max_conns: cli.ct_max_conns,
        ..Default::default()
    };
    for t in &cli.ct_timeout {
        let parsed = t
            .split_once('=')
            .and_then(|(name, secs)| Some((name, secs.parse::<u64>().ok()?)))
            .ok_or_else(|| format!("bad --ct-timeout '{t}' (expected NAME=SECONDS)"))
            .and_then(|(name, secs)| {
                conntrack
                    .timeouts
                    .set(name, std::time::Duration::from_secs(secs))
            });
        if let Err(e) = parsed {
            eprintln!("vswitchd: {e}");
            return ExitCode::from(2);
        }
    }
    let opts = vswitch::daemon::Options {
        rundir: cli.rundir,
        config: cli.config,
        pidfile: cli.pidfile,
        busy_poll_us: cli.busy_poll_us,
        rx_wait_block: cli.rx_wait == RxWait::Block,
        threads: usize::from(cli.threads),
        conntrack,
        limits: vswitch::ctlserver::Limits {
            mgmt_max_conns: cli.mgmt_max_conns,
            of_max_conns: cli.of_max_conns,
            mgmt_max_request: cli.mgmt_max_request_bytes,
            idle_timeout: std::time::Duration::from_secs(cli.ctl_idle_timeout),
            workers: cli.ctl_workers,
        },
        metrics_address: cli.metrics_address,
        db: cli.db,
        fresh: cli.fresh,
    };
    match vswitch::daemon::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            ExitCode::from(1)
        }
    }
}
