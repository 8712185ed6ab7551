//! `vswitchd`: the node switch daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let opts = vswitch::daemon::Options {
        rundir: cli.rundir,
        config: cli.config,
        pidfile: cli.pidfile,
        busy_poll_us: cli.busy_poll_us,
    };
    match vswitch::daemon::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            ExitCode::from(1)
        }
    }
}
