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

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use vswitch::command::MgmtCommand;
use vswitch::ofclient::{self, ClientError, Command, Options, Outcome};
use vswitch::views::OutputFormat;

#[derive(Parser, Debug)]
#[command(
    name = "vswitchctl",
    version,
    about = "Control a running vswitchd: bridges, ports, flows and diagnostics"
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
    /// Output of the dump and list commands: text, or one JSON document.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The whole grammar (flags and every command), for help, completions and the man page.
fn grammar() -> clap::Command {
    vswitch::cli_doc::vswitchctl_command(&Cli::command())
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
            "--format" => {
                let f = it.next().ok_or("--format needs text or json")?;
                cli.format = parse_format(&f)?;
            }
            "--rundir" => {
                cli.rundir = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--rundir needs a directory")?
            }
            _ => {
                if let Some(d) = a.strip_prefix("--rundir=") {
                    cli.rundir = PathBuf::from(d);
                } else if let Some(f) = a.strip_prefix("--format=") {
                    cli.format = parse_format(f)?;
                } else {
                    rest.push(a);
                }
            }
        }
    }
    if rest.is_empty() {
        return Err("missing command; see vswitchctl --help".into());
    }
    cli.command = rest;
    Ok(())
}

fn parse_format(s: &str) -> Result<OutputFormat, String> {
    OutputFormat::from_str(s, false).map_err(|_| format!("--format {s}: expected text or json"))
}

fn main() -> ExitCode {
    let listing = vswitch::cli_doc::command_listing(&grammar());
    let matches = Cli::command().after_help(listing).get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Err(e) = take_trailing_flags(&mut cli) {
        eprintln!("vswitchctl: {e}");
        return ExitCode::from(1);
    }
    match cli.command[0].as_str() {
        "completions" => return completions(&cli.command[1..]),
        "man" => return man_page(),
        // `show` alone is the whole switch (management); `show SWITCH` is ovs-ofctl's.
        "show" if cli.command.len() == 1 => return management(&cli),
        _ => {}
    }
    if Command::is_openflow(&cli.command[0]) {
        return openflow(&cli);
    }
    management(&cli)
}

/// `vswitchctl completions SHELL`: the completion script clap_complete makes of the grammar.
fn completions(args: &[String]) -> ExitCode {
    let shell = match args {
        [one] => clap_complete::Shell::from_str(one, true),
        _ => Err(String::new()),
    };
    let Ok(shell) = shell else {
        eprintln!("vswitchctl: completions needs one shell: bash, zsh, fish, elvish or powershell");
        return ExitCode::from(1);
    };
    clap_complete::generate(shell, &mut grammar(), "vswitchctl", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `vswitchctl man`: the man page (roff) clap_mangen makes of the grammar.
fn man_page() -> ExitCode {
    let mut out = std::io::stdout().lock();
    match clap_mangen::Man::new(grammar())
        .section("8")
        .render(&mut out)
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn openflow(cli: &Cli) -> ExitCode {
    let opts = Options {
        rundir: cli.rundir.clone(),
        strict: cli.strict,
        no_stats: cli.no_stats,
        names: cli.names,
        bundle: cli.bundle,
        format: cli.format,
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
        // Regular files of at most 64 MiB only: `apply /dev/zero` or a FIFO must not hang.
        // A file we cannot read goes as its path (the daemon may be able to, with the same checks).
        MgmtCommand::Apply { config } => {
            let path = std::path::Path::new(config.as_str());
            match vswitch::agent::read_config(path) {
                Ok(text) => *config = text,
                Err(e)
                    if std::fs::metadata(path).is_ok_and(|m| {
                        !m.is_file() || m.len() > vswitch::agent::MAX_CONFIG_BYTES
                    }) =>
                {
                    eprintln!("vswitchctl: {e}");
                    return ExitCode::from(1);
                }
                Err(_) => {}
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
    match vswitch::mgmt::call_command_as(&cli.rundir, &command, cli.format) {
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
