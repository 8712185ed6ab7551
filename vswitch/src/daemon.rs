//! Daemon lifecycle: run directory, pid file, sockets, signals, clean shutdown.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{info, warn};

use crate::control::Control;
use crate::datapath;
use crate::ofserver::Registry;
use crate::persist;
use crate::switch::Switch;

pub struct Options {
    pub rundir: PathBuf,
    pub config: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub busy_poll_us: u64,
    /// `--rx-wait block`: forwarding threads always block when idle (no adaptive nap/spin).
    pub rx_wait_block: bool,
    /// Forwarding threads (0 or 1: one).
    pub threads: usize,
    pub conntrack: conntrack::Config,
    /// Bounds of the management and OpenFlow sockets.
    pub limits: crate::ctlserver::Limits,
    /// Where `/metrics` and `/healthz` are served over HTTP (off when `None`).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// The state file (default `<rundir>/vswitchd.db`).
    pub db: Option<PathBuf>,
    /// Start empty: ignore (and replace) the saved state and any handover.
    pub fresh: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create run directory {0}: {1}")]
    Rundir(PathBuf, std::io::Error),
    #[error("another vswitchd is already serving {0}")]
    AlreadyRunning(PathBuf),
    #[error("cannot listen on {0}: {1}")]
    Listen(PathBuf, std::io::Error),
    #[error("cannot write pid file {0}: {1}")]
    Pidfile(PathBuf, std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the control-plane server: {0}")]
    Server(std::io::Error),
    #[error("cannot start the datapath: {0}")]
    Datapath(std::io::Error),
    #[error("configuration {0}: {1}")]
    Config(PathBuf, String),
    #[error("cannot serve metrics on {0}: {1}")]
    Metrics(std::net::SocketAddr, std::io::Error),
    #[error("state file refused: {0}")]
    State(String),
    #[error(
        "cannot restore the saved state from {0}: {1} (nothing was kept; fix the cause, or start with --fresh to discard the saved state)"
    )]
    Restore(PathBuf, String),
}

pub fn run(opts: Options) -> Result<(), DaemonError> {
    crate::ctlserver::bind::create_rundir(&opts.rundir)
        .map_err(|e| DaemonError::Rundir(opts.rundir.clone(), e))?;
    let sock = crate::rundir::mgmt_socket(&opts.rundir);
    // Held until this process exits (a crash too): two starts on one run directory, say
    // after a crash, cannot both get past here and take each other's socket.
    let _instance = lock_rundir(&opts.rundir, &sock)?;
    let listener = bind_fresh(&sock)?;
    if let Some(p) = &opts.pidfile {
        // Written aside and renamed: a reader sees no file or the whole pid, never half.
        let tmp = p.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, p))
            .map_err(|e| {
                let _ = std::fs::remove_file(&sock);
                DaemonError::Pidfile(p.clone(), e)
            })?;
    }
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|e| {
        remove_files(&sock, opts.pidfile.as_deref());
        DaemonError::Signals(e)
    })?;
    let db = opts
        .db
        .clone()
        .unwrap_or_else(|| crate::rundir::state_file(&opts.rundir));
    let handover_path = crate::rundir::handover_file(&opts.rundir);
    // Read and checked whole before anything is built: a refused file changes nothing.
    let saved = if opts.fresh {
        None
    } else {
        match persist::StateFile::load(&db) {
            Ok(s) => s,
            Err(e) => {
                remove_files(&sock, opts.pidfile.as_deref());
                return Err(DaemonError::State(e.to_string()));
            }
        }
    };
    let checkpoint_path = crate::rundir::checkpoint_file(&opts.rundir);
    let handover = if opts.fresh {
        let _ = std::fs::remove_file(&handover_path);
        let _ = std::fs::remove_file(&checkpoint_path);
        None
    } else {
        // A graceful stop's handover, else (after a crash) the last checkpoint.
        persist::handover::read(&handover_path)
            .map(|h| (h, persist::handover::Source::Handover))
            .or_else(|| {
                persist::handover::read_checkpoint(&checkpoint_path)
                    .map(|h| (h, persist::handover::Source::Checkpoint))
            })
    };

    let server = crate::ctlserver::spawn(opts.limits.clone()).map_err(|e| {
        remove_files(&sock, opts.pidfile.as_deref());
        DaemonError::Server(e)
    })?;
    crate::ctlserver::log_limits(&opts.limits);
    let (dp, dp_threads) = datapath::spawn(datapath::Options {
        busy_poll_us: opts.busy_poll_us,
        rx_wait_block: opts.rx_wait_block,
        threads: opts.threads,
        conntrack: opts.conntrack.clone(),
        ct_shards: 0,
    })
    .map_err(|e| {
        remove_files(&sock, opts.pidfile.as_deref());
        DaemonError::Datapath(e)
    })?;
    let switch = Arc::new(Switch::new(dp, opts.rundir.clone()));
    switch.observe_bridges(Arc::new(Registry::new(&switch, server.clone())));
    // VSWITCH_OF_TCP=BRIDGE@127.0.0.1:6653: OpenFlow over loopback TCP as well.
    if let Ok(spec) = std::env::var("VSWITCH_OF_TCP") {
        match crate::ofserver::parse_tcp_spec(&spec) {
            Ok((br, addr)) => {
                if let Err(e) = crate::ofserver::listen_tcp(&switch, &server, br, addr) {
                    warn!("cannot listen for OpenFlow on {addr}: {e}");
                }
            }
            Err(e) => warn!("VSWITCH_OF_TCP ignored: {e}"),
        }
    }
    let control = Arc::new(Control::new(switch.clone()));
    if let Some((h, source)) = &handover {
        // Before any port forwards: connections of the previous process are known at once.
        persist::handover::restore_conntrack(&switch, h, *source);
    }
    if let Some(state) = &saved {
        match persist::state::restore(&control, state) {
            Ok(r) => info!(db = %db.display(), "restored {r}"),
            Err(e) => {
                stop_keeping_interfaces(&control, dp_threads, &sock, opts.pidfile.as_deref());
                return Err(DaemonError::Restore(db, e));
            }
        }
    }
    if let Some((h, _)) = &handover {
        persist::handover::restore_mac_tables(&switch, h);
        persist::handover::restore_affinity(&switch, h);
    }
    // Served from before the configuration is applied: /healthz answers 503 until then.
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(addr) = opts.metrics_address
        && let Err(e) = crate::observe::http::serve(addr, control.clone(), ready.clone())
    {
        stop_keeping_interfaces(&control, dp_threads, &sock, opts.pidfile.as_deref());
        return Err(DaemonError::Metrics(addr, e));
    }
    if let Some(config) = &opts.config
        && let Err(e) = control.agent.apply_file(&switch, config)
    {
        // Nothing is left behind by a failed start: no socket, no pid file, no bridge; the
        // saved state stays as it was (the interfaces it names too).
        stop_keeping_interfaces(&control, dp_threads, &sock, opts.pidfile.as_deref());
        return Err(DaemonError::Config(config.clone(), e));
    }
    let writer = persist::StateWriter::new(&db);
    // Written now (with --fresh: replaced), then after every change.
    if let Err(e) = writer.save(&control) {
        warn!("cannot write the state file {}: {e}", db.display());
    }
    writer.start(&control);
    let checkpointer = persist::handover::Checkpointer::start(switch.clone(), &checkpoint_path);

    switch.start_packet_in_dispatch();
    switch.start_learning();
    switch.start_flow_expiry();
    let runner = control.clone();
    let handler: crate::ctlserver::MgmtHandler =
        Arc::new(move |cmd, format| runner.run_as(cmd, format));
    if let Err(e) = server.listen(
        crate::ctlserver::Listener::Unix(listener),
        crate::ctlserver::Service::Mgmt(handler),
    ) {
        checkpointer.stop(false);
        stop_keeping_interfaces(&control, dp_threads, &sock, opts.pidfile.as_deref());
        return Err(DaemonError::Listen(sock.clone(), e));
    }
    if matches!(handover, Some((_, persist::handover::Source::Handover))) {
        persist::handover::used(&handover_path);
    }
    ready.store(true, std::sync::atomic::Ordering::Release);
    info!(rundir = %opts.rundir.display(), "vswitchd ready");
    // Under systemd (Type=notify): configured and serving, so dependants may start.
    if let Err(e) = crate::sd_notify::notify("READY=1") {
        warn!("cannot notify the service manager: {e}");
    }

    for sig in signals.forever() {
        match sig {
            SIGHUP => match &opts.config {
                Some(config) => match control.agent.apply_file(&switch, config) {
                    Ok(_) => info!("configuration reloaded"),
                    Err(e) => warn!("configuration reload refused: {e}"),
                },
                None => info!("SIGHUP without --config: nothing to reload"),
            },
            _ => break,
        }
    }
    info!("shutting down for a restart: state saved, interfaces kept");
    let _ = crate::sd_notify::notify("STOPPING=1");
    // Where the TAP devices are now (moved into pods' namespaces since the last look).
    switch.refresh_tap_whereabouts();
    if let Err(e) = writer.save(&control) {
        warn!("cannot write the state file {}: {e}", db.display());
    }
    // The MAC tables need the forwarding threads; the connection table is copied once they
    // have stopped, so the handover is exact (nothing forwarded after the copy).
    let mac_tables = persist::handover::capture_mac_tables(&switch);
    checkpointer.stop(false);
    stop_forwarding(&control, dp_threads);
    let h = persist::handover::capture_with(
        &switch,
        mac_tables,
        persist::handover::Forwarding::Stopped,
    );
    // The handover first: killed between the two, or unable to write it, the next start
    // still finds one of them.
    if persist::handover::save(&h, &handover_path) {
        checkpointer.remove();
    }
    remove_files(&sock, opts.pidfile.as_deref());
    Ok(())
}

/// Stops so that the next start takes over: the bridges' sockets, the forwarding threads, the
/// management socket and the pid file go; the interfaces (persistent TAP devices), the host
/// firewall and the state file stay.
fn stop_keeping_interfaces(
    control: &Control,
    dp_threads: Vec<std::thread::JoinHandle<()>>,
    sock: &Path,
    pidfile: Option<&Path>,
) {
    stop_forwarding(control, dp_threads);
    remove_files(sock, pidfile);
}

/// The bridges' OpenFlow sockets close and the forwarding threads end; the interfaces stay.
fn stop_forwarding(control: &Control, dp_threads: Vec<std::thread::JoinHandle<()>>) {
    control.switch.stop_keeping_interfaces();
    for t in dp_threads {
        let _ = t.join();
    }
}

fn remove_files(sock: &Path, pidfile: Option<&Path>) {
    let _ = std::fs::remove_file(sock);
    if let Some(p) = pidfile {
        let _ = std::fs::remove_file(p);
    }
}

/// Takes the run directory's instance lock (`vswitchd.lock`, an `flock`).
fn lock_rundir(rundir: &Path, sock: &Path) -> Result<Flock<std::fs::File>, DaemonError> {
    let path = rundir.join("vswitchd.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| DaemonError::Rundir(path.clone(), e))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            DaemonError::AlreadyRunning(sock.to_path_buf())
        } else {
            DaemonError::Rundir(path, std::io::Error::from(errno))
        }
    })
}

/// Binds the socket, replacing a stale file left by a crash but never a live daemon's socket.
pub(crate) fn bind_fresh(path: &Path) -> Result<UnixListener, DaemonError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(DaemonError::AlreadyRunning(path.to_path_buf()));
        }
        let _ = std::fs::remove_file(path);
    }
    // Born 0600: never reachable by others, not even between bind and chmod.
    crate::ctlserver::bind::bind_private(path)
        .map_err(|e| DaemonError::Listen(path.to_path_buf(), e))
}
