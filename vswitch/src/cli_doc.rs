//! `vswitchctl`'s whole grammar as one clap [`Command`], for what describes it rather than
//! parses it: `--help` (every command with its arguments), shell completions
//! (`vswitchctl completions SHELL`, clap_complete) and the man page (`vswitchctl man`,
//! clap_mangen). Parsing stays where it is: the OpenFlow commands in `ofclient`, the
//! management commands in [`MgmtCommand`]'s clap grammar.

use clap::{Arg, ArgAction, Command};

use crate::command::MgmtCommand;
use crate::ofclient::Command as OfCommand;

/// The OpenFlow commands (`ovs-ofctl`'s), each with its arguments after SWITCH and what it does.
pub const OPENFLOW_COMMANDS: &[(&str, &[&str], &str)] = &[
    (
        "show",
        &[],
        "Features and ports of one bridge (ovs-ofctl show); without SWITCH, the whole switch (ovs-vsctl show)",
    ),
    ("dump-flows", &["[MATCH]"], "Print the flows"),
    (
        "dump-aggregate",
        &["[MATCH]"],
        "Packet, byte and flow counts of the flows a match selects",
    ),
    ("add-flow", &["FLOW"], "Add one flow"),
    (
        "add-flows",
        &["FILE"],
        "Add the flows of a file (- for stdin)",
    ),
    (
        "mod-flows",
        &["FLOW"],
        "Modify the actions of the flows a match selects",
    ),
    (
        "del-flows",
        &["[MATCH]"],
        "Delete the flows a match selects (all without one)",
    ),
    (
        "replace-flows",
        &["FILE"],
        "Make the flows exactly those of a file",
    ),
    (
        "diff-flows",
        &["SRC2"],
        "Compare two flow sets (switches or files); exit 2 if they differ",
    ),
    ("add-group", &["GROUP"], "Add one group"),
    ("add-groups", &["FILE"], "Add the groups of a file"),
    ("mod-group", &["GROUP"], "Modify a group"),
    (
        "del-groups",
        &["[GROUP]"],
        "Delete groups (all without one)",
    ),
    ("dump-groups", &["[ID]"], "Print the groups"),
    ("dump-group-stats", &["[ID]"], "Group counters"),
    ("dump-ports", &["[PORT]"], "Port counters"),
    ("dump-ports-desc", &[], "Port descriptions"),
    ("dump-tables", &[], "Table counters"),
    (
        "dump-desc",
        &[],
        "The switch's description (manufacturer, hardware, software, datapath)",
    ),
    (
        "dump-group-features",
        &[],
        "Group types, capabilities, limits and actions the switch supports",
    ),
    (
        "add-meter",
        &["METER"],
        "Add a meter (meter=N,kbps|pktps[,burst][,stats],bands=type=drop,rate=R[,burst_size=B])",
    ),
    ("mod-meter", &["METER"], "Modify a meter"),
    (
        "del-meter",
        &["[METER]"],
        "Delete a meter and its flows (meter=N; all without one)",
    ),
    (
        "del-meters",
        &["[METER]"],
        "Delete meters and their flows (all without one)",
    ),
    ("dump-meter", &["[METER]"], "Print one meter (meter=N)"),
    ("dump-meters", &["[METER]"], "Print the meters"),
    (
        "meter-stats",
        &["[METER]"],
        "Meter counters: packets in, packets dropped per band",
    ),
    (
        "meter-features",
        &[],
        "Meter limits, band types and flags the switch supports",
    ),
    (
        "mod-port",
        &["PORT", "ACTION"],
        "Set a port up or down, or (no-)receive / (no-)forward (PORT: number or name)",
    ),
    (
        "packet-out",
        &["IN_PORT", "ACTIONS", "HEX..."],
        "Send a packet through the pipeline with the given actions",
    ),
    (
        "monitor",
        &["[MISS_LEN]", "[watch:]"],
        "Print packet-ins, flow-removed and flow updates as they happen",
    ),
];

/// What vswitchctl does without a daemon.
pub const LOCAL_COMMANDS: &[(&str, &[&str], &str)] = &[
    (
        "completions",
        &["SHELL"],
        "Print a completion script for bash, zsh, fish, elvish or powershell",
    ),
    ("man", &[], "Print vswitchctl's man page (roff)"),
];

fn described(name: &'static str, args: &[&'static str], about: &'static str) -> Command {
    let mut c = Command::new(name).about(about);
    for a in args {
        let optional = a.starts_with('[');
        let many = a.ends_with("...") || a.ends_with("...]");
        let id = a.trim_matches(['[', ']']).trim_end_matches("...");
        let mut arg = Arg::new(id).value_name(id).required(!optional);
        if many {
            arg = arg.action(ArgAction::Append).num_args(1..);
        }
        if id == "SHELL" {
            arg = arg.value_parser(clap::value_parser!(clap_complete::Shell));
        }
        c = c.arg(arg);
    }
    c
}

/// vswitchctl's grammar: its flags (`flags`, taken from the parser) and every command.
pub fn vswitchctl_command(flags: &Command) -> Command {
    let mut cmd = Command::new("vswitchctl")
        .version(env!("CARGO_PKG_VERSION"))
        .about(flags.get_about().cloned().unwrap_or_default())
        .subcommand_value_name("COMMAND");
    for a in flags.get_arguments() {
        if a.is_positional() || a.get_id() == "help" || a.get_id() == "version" {
            continue;
        }
        cmd = cmd.arg(a.clone().global(true));
    }
    for (name, args, about) in OPENFLOW_COMMANDS {
        let switch = Arg::new("SWITCH")
            .value_name("SWITCH")
            .help("bridge name, unix:PATH or tcp:IP:PORT")
            .required(*name != "show" && *name != "diff-flows");
        let switch = if *name == "diff-flows" {
            switch.value_name("SRC1").id("SRC1").required(true)
        } else {
            switch
        };
        let mut c = described(name, &[], about).arg(switch);
        for a in described(name, args, about).get_arguments() {
            c = c.arg(a.clone());
        }
        cmd = cmd.subcommand(c);
    }
    for c in MgmtCommand::clap_commands() {
        // The OpenFlow form of a command wins in vswitchctl (dump-flows BR goes over OpenFlow).
        if OfCommand::is_openflow(c.get_name()) {
            continue;
        }
        cmd = cmd.subcommand(c);
    }
    for (name, args, about) in LOCAL_COMMANDS {
        cmd = cmd.subcommand(described(name, args, about));
    }
    cmd
}

/// `  add-br <BRIDGE> [--may-exist]   Create a bridge ...`: one line per command.
pub fn command_listing(cmd: &Command) -> String {
    let rows: Vec<(String, String)> = cmd
        .get_subcommands()
        .map(|c| {
            let mut usage = c.get_name().to_string();
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" {
                    continue;
                }
                let name = a
                    .get_value_names()
                    .and_then(|v| v.first())
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| id.to_uppercase());
                let many = a.get_num_args().is_some_and(|n| n.max_values() > 1)
                    || matches!(a.get_action(), ArgAction::Append);
                let dots = if many { "..." } else { "" };
                let shown = match a.get_long() {
                    Some(l) if !a.get_action().takes_values() => format!("[--{l}]"),
                    Some(l) => format!("[--{l} {name}]"),
                    None if a.is_required_set() => format!("<{name}>{dots}"),
                    None => format!("[{name}]{dots}"),
                };
                usage.push(' ');
                usage.push_str(&shown);
            }
            let about = c
                .get_about()
                .map(|a| a.to_string())
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            (usage, about)
        })
        .collect();
    let width = rows.iter().map(|(u, _)| u.len()).max().unwrap_or(0).min(48);
    let mut out =
        String::from("Commands (OpenFlow ones take SWITCH: a bridge, unix:PATH or tcp:IP:PORT):\n");
    for (usage, about) in rows {
        if usage.len() > width {
            out.push_str(&format!("  {usage}\n  {:width$}  {about}\n", ""));
        } else {
            out.push_str(&format!("  {usage:width$}  {about}\n"));
        }
    }
    out.push_str(
        "\n`vswitchctl COMMAND --help` explains one command; flags may come before or \
         after the command.\nExit status: 0 success, 1 failure (refused, not found, daemon \
         unreachable, bad arguments), 2 diff-flows found differences or a flag clap rejects.",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Command {
        vswitchctl_command(&Command::new("vswitchctl").about("test"))
    }

    #[test]
    fn every_command_vswitchctl_runs_is_described() {
        let cmd = doc();
        let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        for of in crate::ofclient::commands::COMMANDS {
            assert!(names.contains(of), "{of} missing");
        }
        for m in MgmtCommand::clap_commands() {
            assert!(names.contains(&m.get_name()), "{} missing", m.get_name());
        }
        for local in ["completions", "man", "dump-megaflows", "list-br"] {
            assert!(names.contains(&local), "{local} missing");
        }
    }

    #[test]
    fn the_listing_shows_arguments() {
        let text = command_listing(&doc());
        assert!(text.contains("add-br <BRIDGE> [--may-exist]"), "{text}");
        assert!(
            text.contains("del-port <BRIDGE> <PORT> [--if-exists]"),
            "{text}"
        );
        assert!(text.contains("dump-flows <SWITCH> [MATCH]"), "{text}");
        assert!(text.contains("dump-megaflows <BRIDGE>"), "{text}");
        assert!(text.contains("completions <SHELL>"), "{text}");
    }

    #[test]
    fn completions_and_man_pages_render() {
        let mut cmd = doc();
        let mut out = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "vswitchctl", &mut out);
        let bash = String::from_utf8(out).unwrap();
        assert!(bash.contains("dump-megaflows") && bash.contains("add-br"));
        let mut man = Vec::new();
        clap_mangen::Man::new(doc()).render(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(
            man.contains(".TH vswitchctl") && man.contains("dump\\-megaflows"),
            "{man}"
        );
    }
}
