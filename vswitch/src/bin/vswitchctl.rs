//! `vswitchctl`: the command-line client of `vswitchd`.
//!
//! The `ovs-ofctl` commands (`show`, `dump-flows`, `add-flow(s)`, groups, ports, tables,
//! `packet-out`, ...) speak OpenFlow 1.3 to the bridge's socket `<rundir>/<bridge>.mgmt` (or
//! `unix:PATH`, `tcp:IP:PORT`), see `vswitch::ofclient`. Bridge and port commands and the
//! diagnostics (`dump-drops`, `dump-conntrack`, `trace`, `fdb-show`) go over the management
//! socket `<rundir>/vswitchd.ctl`.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    #[arg(long, overrides_with = "no_names")]
    names: bool,
    /// Print port numbers (the default; undoes an earlier --names).
    #[arg(long = "no-names", overrides_with = "names")]
    no_names: bool,
    /// Apply flow/group changes atomically in one ONF bundle.
    #[arg(long)]
    bundle: bool,
    /// dump-flows: sort by FIELD (a match field, or priority when omitted), ascending; give it
    /// (and --rsort) several times for several keys, applied in the order given. Flows that do
    /// not match on FIELD come last.
    #[arg(long, value_name = "FIELD", num_args = 0..=1, require_equals = true,
          default_missing_value = "priority", action = clap::ArgAction::Append)]
    sort: Vec<String>,
    /// dump-flows: as --sort, descending.
    #[arg(long, value_name = "FIELD", num_args = 0..=1, require_equals = true,
          default_missing_value = "priority", action = clap::ArgAction::Append)]
    rsort: Vec<String>,
    /// Show a progress line on stderr for long commands (capture) even when stderr is not a
    /// terminal (on a terminal it is always shown).
    #[arg(long)]
    progress: bool,
    /// Output of the dump and list commands: text, or one JSON document.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
    /// `--sort`/`--rsort` in the order given (taken out before clap parses).
    #[arg(skip)]
    sort_keys: Vec<(String, bool)>,
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
            "--progress" => cli.progress = true,
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

/// Takes every `--sort[=FIELD]` / `--rsort[=FIELD]` out of the arguments (before or after the
/// command), keeping their order across the two flags: ovs-ofctl applies them in that order.
fn take_sort_flags(args: Vec<String>) -> (Vec<String>, Vec<(String, bool)>) {
    let mut rest = Vec::new();
    let mut sort = Vec::new();
    for a in args {
        let (flag, field) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (a.as_str(), None),
        };
        let desc = match flag {
            "--sort" => false,
            "--rsort" => true,
            _ => {
                rest.push(a);
                continue;
            }
        };
        sort.push((field.unwrap_or("priority").to_string(), desc));
    }
    (rest, sort)
}

fn main() -> ExitCode {
    let listing = vswitch::cli_doc::command_listing(&grammar());
    let (args, sort) = take_sort_flags(std::env::args().collect());
    let matches = Cli::command().after_help(listing).get_matches_from(args);
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    cli.sort_keys = sort;
    if let Err(e) = take_trailing_flags(&mut cli) {
        eprintln!("vswitchctl: {e}");
        return ExitCode::from(1);
    }
    // `vswitchctl dump-flows --help`, `show br0 --help`, `completions --help`: the command's
    // help, not a switch named `--help` (a management command's comes from its own grammar).
    let name = cli.command[0].as_str();
    if cli.command[1..].iter().any(|a| a == "--help" || a == "-h")
        && (Command::is_openflow(name) || !MgmtCommand::is_management(name))
        && let Some(code) = command_help(name)
    {
        return code;
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

/// The help of an OpenFlow or local command (`vswitchctl dump-flows --help`), as clap prints a
/// management command's; `None` for a command the grammar does not know.
fn command_help(name: &str) -> Option<ExitCode> {
    let cmd = grammar().find_subcommand(name)?.clone();
    let err = cmd.try_get_matches_from([name, "--help"]).err()?;
    let _ = err.print();
    Some(ExitCode::SUCCESS)
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
    // Made in memory and written as every command's output is (`emit`): clap_complete panics
    // when it cannot write (`vswitchctl completions bash | head -1`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut grammar(), "vswitchctl", &mut script);
    emit(&String::from_utf8_lossy(&script));
    ExitCode::SUCCESS
}

/// `vswitchctl man`: the man page (roff) clap_mangen makes of the grammar.
fn man_page() -> ExitCode {
    let mut page = Vec::new();
    match clap_mangen::Man::new(grammar())
        .section("8")
        .render(&mut page)
    {
        Ok(()) => {
            // A reader that goes away (`vswitchctl man | head`) is not an error.
            emit(&String::from_utf8_lossy(&page));
            ExitCode::SUCCESS
        }
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
        names: cli.names && !cli.no_names,
        bundle: cli.bundle,
        format: cli.format,
        sort: cli.sort_keys.clone(),
    };
    match ofclient::run(&cli.command[0], &cli.command[1..], &opts) {
        Ok(Outcome::Done(out)) => {
            emit(&out);
            ExitCode::SUCCESS
        }
        Ok(Outcome::Differ(out)) => {
            emit(&out);
            ExitCode::from(2)
        }
        // `vswitchctl monitor br0 | grep -m1 ...`: the reader has what it wanted.
        Err(ClientError::OutputClosed) => ExitCode::SUCCESS,
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

/// Prints a command's output. A reader that went away (`vswitchctl dump-flows br0 | head -1`)
/// is not an error: the rest is dropped, as a process killed by SIGPIPE would drop it.
fn emit(out: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
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
    let progress = match &command {
        MgmtCommand::Capture {
            bridge,
            port,
            options,
            ..
        } if cli.progress || std::io::stderr().is_terminal() => Some(CaptureProgress::start(
            cli.rundir.clone(),
            bridge.clone(),
            port.clone(),
            options,
        )),
        _ => None,
    };
    let result = vswitch::mgmt::call_command_as(&cli.rundir, &command, cli.format);
    if let Some(p) = progress {
        p.finish();
    }
    match result {
        Ok(reply) if reply.ok => {
            emit(&reply.output);
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

/// The progress line of `capture`: frames taken so far (asked from the daemon with
/// `capture-status` on a second connection) and time against the capture's limits, on
/// stderr. On a terminal one line rewritten in place four times a second; otherwise (with
/// `--progress`) a line per second.
struct CaptureProgress {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl CaptureProgress {
    fn start(rundir: PathBuf, bridge: String, port: String, options: &[String]) -> CaptureProgress {
        let opt = |key: &str, default: u64| {
            options
                .iter()
                .find_map(|o| o.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(default)
        };
        let (count, seconds) = (opt("count", 100), opt("seconds", 10));
        let stop = Arc::new(AtomicBool::new(false));
        let tty = std::io::stderr().is_terminal();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let status = MgmtCommand::CaptureStatus {
                bridge,
                port: port.clone(),
            };
            let tick = if tty {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(1)
            };
            let mut printed = false;
            loop {
                // Sleep in small steps so the line stops as soon as the capture ends.
                let until = Instant::now() + tick;
                while Instant::now() < until {
                    if stopped.load(Ordering::Relaxed) {
                        if tty && printed {
                            eprint!("\r\x1b[K");
                        }
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let reply = vswitch::mgmt::call_command_as(&rundir, &status, OutputFormat::Text)
                    .ok()
                    .filter(|r| r.ok);
                let field = |name: &str| {
                    let words = reply.as_ref()?.output.split_whitespace();
                    words
                        .filter_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                        .find_map(|v| v.parse::<u64>().ok())
                };
                if field("wanted") == Some(0) {
                    // The daemon's capture is over (its status reads 0 of 0) and the count
                    // line follows from the main thread: a "0 frames" line would be wrong.
                    continue;
                }
                let taken = field("frames").map_or("?".to_string(), |n| n.to_string());
                let line = format!(
                    "capturing on {port}: {taken}/{count} frames, {:.1} s of {seconds} s",
                    t0.elapsed().as_secs_f64()
                );
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r\x1b[K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
                printed = true;
            }
        });
        CaptureProgress { stop, thread }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
