//! `vswitchctl`: the command-line client of `vswitchd`.
//!
//! The `ovs-ofctl` commands (`show`, `dump-flows`, `add-flow(s)`, groups, ports, tables,
//! `packet-out`, ...) speak OpenFlow 1.3 to the bridge's socket `<rundir>/<bridge>.mgmt` (or
//! `unix:PATH`, `tcp:IP:PORT`), see `vswitch::ofclient`. Bridge and port commands and the
//! diagnostics (`dump-drops`, `dump-conntrack`, `trace`, `fdb-show`) go over the management
//! socket `<rundir>/vswitchd.ctl`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vswitch::command::MgmtCommand;
use vswitch::ofclient::{self, ClientError, Command, Options, Outcome};

#[derive(Parser, Debug)]
#[command(
    name = "vswitchctl",
    version,
    about = "Control a running vswitchd: bridges, ports, flows and diagnostics",
    after_help = "OpenFlow 1.3 commands (SWITCH = bridge name, unix:PATH or tcp:IP:PORT):\n  show | dump-flows [MATCH] | dump-aggregate [MATCH] | add-flow FLOW | add-flows FILE |\n  mod-flows FLOW | del-flows [MATCH] | replace-flows FILE | diff-flows SRC1 SRC2 |\n  add-group GROUP | add-groups FILE | mod-group GROUP | del-groups [GROUP] | dump-groups [ID] |\n  dump-group-stats [ID] | dump-ports [PORT] | dump-ports-desc | dump-tables |\n  packet-out IN_PORT ACTIONS HEX..., each as `vswitchctl CMD SWITCH ARGS`\nManagement commands: add-br BR [--may-exist] | del-br BR [--if-exists] | list-br | br-exists BR |\n  add-port BR NAME [type=..] [ofport=N] [options:K=V].. | del-port BR NAME [--if-exists] |\n  list-ports BR | dump-drops BR | dump-conntrack [BR] [zone=N] | flush-conntrack [BR] |\n  trace BR FLOW | fdb-show BR | capture BR PORT FILE [count=N] [seconds=S] | apply FILE |\n  add-pod NAME port=IF ip=IP mac=MAC [type=..] [ofport=N] [allow_from=CIDR,..] |\n  del-pod NAME [--if-exists] | list-pods | node-info\n  (`vswitchctl CMD --help` for one command's arguments)\nFlags (before or after the command): --strict --no-stats --names --bundle"
)]
struct Cli {
    /// Run directory of the vswitchd to talk to (default $VSWITCH_RUNDIR or /run/vswitch).
    #[arg(long, env = "VSWITCH_RUNDIR", default_value = "/run/vswitch")]
    rundir: PathBuf,
    /// Match flows exactly (del-flows, mod-flows).
    #[arg(long)]
    strict: bool,
    /// Leave out statistics in dump-flows.
    #[arg(long = "no-stats")]
    no_stats: bool,
    /// Print port names instead of numbers (dump-flows).
    #[arg(long)]
    names: bool,
    /// Apply flow/group changes atomically in one ONF bundle.
    #[arg(long)]
    bundle: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Pulls the flags users type after the command (`dump-flows br0 --no-stats`) into `cli`.
fn take_trailing_flags(cli: &mut Cli) -> Result<(), String> {
    let mut rest = Vec::new();
    let mut it = std::mem::take(&mut cli.command).into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--strict" => cli.strict = true,
            "--no-stats" => cli.no_stats = true,
            "--names" => cli.names = true,
            "--no-names" => cli.names = false,
            "--bundle" => cli.bundle = true,
            "--rundir" => {
                cli.rundir = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--rundir needs a directory")?
            }
            _ => match a.strip_prefix("--rundir=") {
                Some(d) => cli.rundir = PathBuf::from(d),
                None => rest.push(a),
            },
        }
    }
    if rest.is_empty() {
        return Err("missing command; see vswitchctl --help".into());
    }
    cli.command = rest;
    Ok(())
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Err(e) = take_trailing_flags(&mut cli) {
        eprintln!("vswitchctl: {e}");
        return ExitCode::from(1);
    }
    if Command::is_openflow(&cli.command[0]) {
        return openflow(&cli);
    }
    management(&cli)
}

fn openflow(cli: &Cli) -> ExitCode {
    let opts = Options {
        rundir: cli.rundir.clone(),
        strict: cli.strict,
        no_stats: cli.no_stats,
        names: cli.names,
        bundle: cli.bundle,
    };
    match ofclient::run(&cli.command[0], &cli.command[1..], &opts) {
        Ok(Outcome::Done(out)) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Differ(out)) => {
            print!("{out}");
            ExitCode::from(2)
        }
        // ovs-ofctl prints a switch's OFPT_ERROR as is, everything else prefixed.
        Err(ClientError::Refused(text)) => {
            eprint!("{text}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("vswitchctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn management(cli: &Cli) -> ExitCode {
    let mut command = match MgmtCommand::parse_words(&cli.command) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let help = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            let _ = e.print();
            return if help {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
    };
    match &mut command {
        // `apply FILE`: ship the contents, the daemon may not share our cwd.
        MgmtCommand::Apply { config } => {
            if let Ok(text) = std::fs::read_to_string(&*config) {
                *config = text;
            }
        }
        // `capture BR PORT FILE`: the daemon writes the file, so give it an absolute path.
        MgmtCommand::Capture { file, .. } => {
            if let Ok(abs) = std::path::absolute(&*file) {
                *file = abs.to_string_lossy().into_owned();
            }
        }
        _ => {}
    }
    match vswitch::mgmt::call_command(&cli.rundir, &command) {
        Ok(reply) if reply.ok => {
            print!("{}", reply.output);
            ExitCode::SUCCESS
        }
        Ok(reply) => {
            eprintln!("vswitchctl: {}", reply.output.trim_end());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("vswitchctl: {e}");
            ExitCode::from(1)
        }
    }
}
