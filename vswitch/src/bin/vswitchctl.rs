//! `vswitchctl`: the command-line client of `vswitchd`.
//!
//! Bridge and port commands (`add-br`, `add-port`, ...) and the diagnostics (`dump-drops`,
//! `dump-conntrack`, `trace`) go over the management socket `<rundir>/vswitchd.ctl`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "vswitchctl",
    version,
    about = "Control a running vswitchd: bridges, ports, flows and diagnostics",
    after_help = "Commands: add-br BR | del-br BR | list-br | add-port BR NAME [type=..] [ofport=N] [options:K=V].. |\n  del-port BR NAME | list-ports BR | add-flow BR FLOW | add-flows BR FILE | del-flows BR [FLOW] |\n  dump-flows BR [FLOW] | dump-ports BR | dump-drops BR | dump-conntrack BR | trace BR FLOW | show BR"
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
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut args = cli.command.clone();
    // Commands that name a file get its contents shipped: the daemon may not share our cwd.
    if matches!(
        args[0].as_str(),
        "add-flows" | "replace-flows" | "add-groups"
    ) && args.len() == 3
    {
        let text = if args[2] == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(&args[2])
        };
        match text {
            Ok(t) => args[2] = t,
            Err(e) => {
                eprintln!("vswitchctl: {}: {e}", args[2]);
                return ExitCode::from(1);
            }
        }
    }
    if cli.strict {
        args.push("--strict".into());
    }
    if cli.no_stats {
        args.push("--no-stats".into());
    }
    match vswitch::mgmt::call(&cli.rundir, &args) {
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
