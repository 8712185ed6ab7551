//! The `ovs-ofctl` commands over OpenFlow 1.3: argument parsing, the messages each command
//! sends, and its output.
//!
//! Request xids follow ovs-ofctl's (dumps start at 2; flow/group changes at 6, after the two
//! probe connections ovs-ofctl opens first), so reply headers and error texts read the same.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use flowtable::text::{self, PrintOpts};
use flowtable::{FlowEntry, FlowModCommand, OfPort};

use super::{ClientError, Conn, Received, Sender, Target, errors, print};
use openflow::convert;
use openflow::experimenter::{BUNDLE_ATOMIC, BUNDLE_ORDERED, bundle_ctrl};
use openflow::multipart::FlowStatsRequest;
use openflow::{BundleControl, Message, MultipartReply, MultipartRequest, PacketOut};

/// Command-line switches that change what a command does.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub rundir: PathBuf,
    pub strict: bool,
    pub no_stats: bool,
    pub names: bool,
    pub bundle: bool,
    /// `--format json`: the dumps as one JSON document (see `super::json`).
    pub format: crate::views::OutputFormat,
    /// `--sort[=FIELD]` / `--rsort[=FIELD]` in the order given: dump-flows sorted by these
    /// (`priority` or a match field; `true`: descending).
    pub sort: Vec<(String, bool)>,
}

/// What a successful command produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Print this and exit 0.
    Done(String),
    /// `diff-flows` found differences: print this and exit 2.
    Differ(String),
}

/// The commands served over OpenFlow (the rest go to the management socket).
pub const COMMANDS: &[&str] = &[
    "show",
    "dump-flows",
    "dump-aggregate",
    "add-flow",
    "add-flows",
    "mod-flows",
    "del-flows",
    "replace-flows",
    "diff-flows",
    "add-group",
    "add-groups",
    "mod-group",
    "del-groups",
    "dump-groups",
    "dump-group-stats",
    "dump-ports",
    "dump-ports-desc",
    "dump-tables",
    "dump-desc",
    "dump-group-features",
    "add-meter",
    "mod-meter",
    "del-meter",
    "del-meters",
    "dump-meter",
    "dump-meters",
    "meter-stats",
    "meter-features",
    "mod-port",
    "packet-out",
    "monitor",
];

/// A command name this module serves.
pub struct Command;

impl Command {
    pub fn is_openflow(name: &str) -> bool {
        COMMANDS.contains(&name)
    }
}

/// First xid of a change: ovs-ofctl spends 1..=5 on probes before its first flow-mod.
const CHANGE_XID: u32 = 6;
/// First xid of a dump.
pub(super) const DUMP_XID: u32 = 2;
/// Bundle id used for `--bundle` (one bundle per connection at a time).
const BUNDLE_ID: u32 = 0;

fn usage(s: impl Into<String>) -> ClientError {
    ClientError::Usage(s.into())
}

pub(super) fn arg<'a>(
    args: &'a [String],
    i: usize,
    cmd: &str,
    what: &str,
) -> Result<&'a str, ClientError> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| usage(format!("'{cmd}' command requires {what}")))
}

fn read_file(path: &str) -> Result<String, ClientError> {
    let r = if path == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    r.map_err(|e| usage(format!("{path}: {e}")))
}

/// Meaningful lines of a flow or group file, with their 1-based numbers: what ovs-ofctl reads
/// (`#` comments anywhere in a line and blank lines skipped), for every command that reads a
/// flow or group file (`add-flows`, `replace-flows`, `diff-flows`, `add-groups`).
fn file_lines(text_in: &str) -> impl Iterator<Item = (usize, &str)> {
    text::file_lines(text_in)
}

fn parse_flows(
    text_in: &str,
    command: FlowModCommand,
) -> Result<Vec<flowtable::FlowMod>, ClientError> {
    file_lines(text_in)
        .map(|(n, l)| text::parse_flow_mod(l, command).map_err(|e| usage(format!("line {n}: {e}"))))
        .collect()
}

/// One flow line (number `n`) as a wire flow-mod.
fn parse_msg(n: usize, line: &str, command: FlowModCommand) -> Result<Message, ClientError> {
    let fm = text::parse_flow_mod(line, command).map_err(|e| usage(format!("line {n}: {e}")))?;
    convert::flow_mod_out(&fm)
        .map(Message::FlowMod)
        .map_err(wire)
}

/// Numbered flow lines as wire flow-mods; the first bad line is the error.
fn parse_msgs(
    lines: &[(usize, &str)],
    command: FlowModCommand,
) -> Result<Vec<Message>, ClientError> {
    lines
        .iter()
        .map(|&(n, l)| parse_msg(n, l, command))
        .collect()
}

/// Parses the flow lines of `text_in` into wire flow-mods, splitting the file across the
/// available cores; the first bad line (by line number) is the error.
fn parse_flow_msgs_parallel(
    text_in: &str,
    command: FlowModCommand,
) -> Result<Vec<Message>, ClientError> {
    let lines: Vec<(usize, &str)> = file_lines(text_in).collect();
    let parse_chunk = |chunk: &[(usize, &str)]| parse_msgs(chunk, command);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if threads < 2 || lines.len() < 4096 {
        return parse_chunk(&lines);
    }
    let per = lines.len().div_ceil(threads);
    let parts: Vec<Result<Vec<Message>, ClientError>> = std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(per)
            .map(|c| s.spawn(move || parse_chunk(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(usage("a parser thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(lines.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

fn parse_one_flow(s: &str, command: FlowModCommand) -> Result<flowtable::FlowMod, ClientError> {
    text::parse_flow_mod(s, command).map_err(|e| usage(e.to_string()))
}

pub(super) fn wire(e: openflow::OfError) -> ClientError {
    usage(e.detail)
}

/// Runs `cmd` with `args` (the first is the switch).
pub fn run(cmd: &str, args: &[String], opts: &Options) -> Result<Outcome, ClientError> {
    if cmd == "diff-flows" {
        if opts.format == crate::views::OutputFormat::Json {
            return super::json::run(cmd, args, opts).map(Outcome::Done); // refused there
        }
        return diff_flows(args, opts);
    }
    let target = Target::parse(
        arg(args, 0, cmd, "a switch (bridge, unix:PATH or tcp:IP:PORT)")?,
        &opts.rundir,
    )?;
    set_port_names(&target);
    if opts.format == crate::views::OutputFormat::Json {
        return super::json::run(cmd, args, opts).map(Outcome::Done);
    }
    let rest = &args[1..];
    let out = match cmd {
        "show" => show(&target)?,
        "dump-flows" => dump_flows(&target, rest.first().map(String::as_str), opts)?,
        "dump-aggregate" => {
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let req = flow_stats_request(rest.first().map(String::as_str))?;
            let (xid, parts) = c.multipart(MultipartRequest::Aggregate(req))?;
            match parts.first() {
                Some(MultipartReply::Aggregate(a)) => print::aggregate(a, xid),
                _ => return Err(ClientError::Protocol("no aggregate reply".into())),
            }
        }
        "add-flow" | "add-flows" | "mod-flows" | "del-flows" => {
            let mods = match cmd {
                "add-flow" => vec![parse_one_flow(
                    arg(rest, 0, cmd, "a flow")?,
                    FlowModCommand::Add,
                )?],
                "add-flows" if opts.bundle => {
                    // Bundled: parse while sending; a bad line discards the whole bundle.
                    // The second half of the file is parsed on another thread meanwhile.
                    let text_in = read_file(arg(rest, 0, cmd, "a file")?)?;
                    send_changes(&target, true, move |s| {
                        let lines: Vec<(usize, &str)> = file_lines(&text_in).collect();
                        let (first, second) = lines.split_at(lines.len() / 2);
                        std::thread::scope(|scope| {
                            let later = scope.spawn(|| parse_msgs(second, FlowModCommand::Add));
                            for &(n, l) in first {
                                s.send(parse_msg(n, l, FlowModCommand::Add)?)?;
                            }
                            let later = later
                                .join()
                                .unwrap_or_else(|_| Err(usage("a parser thread panicked")))?;
                            later.into_iter().try_for_each(|m| s.send(m))
                        })
                    })?;
                    return Ok(Outcome::Done(String::new()));
                }
                "add-flows" => {
                    // The whole file is parsed before anything is sent (a bad line changes
                    // nothing), on every core.
                    let text_in = read_file(arg(rest, 0, cmd, "a file")?)?;
                    let msgs = parse_flow_msgs_parallel(&text_in, FlowModCommand::Add)?;
                    send_changes(&target, false, send_all(msgs))?;
                    return Ok(Outcome::Done(String::new()));
                }
                "mod-flows" => {
                    let c = if opts.strict {
                        FlowModCommand::ModifyStrict
                    } else {
                        FlowModCommand::Modify
                    };
                    let mut fm = parse_one_flow(arg(rest, 0, cmd, "a flow")?, c)?;
                    // OpenFlow 1.3 has no "all tables" modify: ovs-ofctl sends table 0.
                    if fm.table_id == flowtable::flow::TABLE_ALL {
                        fm.table_id = 0;
                    }
                    vec![fm]
                }
                _ => {
                    let c = if opts.strict {
                        FlowModCommand::DeleteStrict
                    } else {
                        FlowModCommand::Delete
                    };
                    vec![parse_one_flow(
                        rest.first().map(String::as_str).unwrap_or(""),
                        c,
                    )?]
                }
            };
            let msgs = mods
                .iter()
                .map(|m| convert::flow_mod_out(m).map(Message::FlowMod))
                .collect::<Result<Vec<_>, _>>()
                .map_err(wire)?;
            send_changes(&target, opts.bundle, send_all(msgs))?;
            String::new()
        }
        "replace-flows" => {
            let want = parse_flows(
                &read_file(arg(rest, 0, cmd, "a file")?)?,
                FlowModCommand::Add,
            )?;
            replace_flows(&target, want, opts.bundle)?;
            String::new()
        }
        "add-group" | "add-groups" | "mod-group" | "del-groups" => {
            use flowtable::group::GroupModCommand as G;
            let command = match cmd {
                "mod-group" => G::Modify,
                "del-groups" => G::Delete,
                _ => G::Add,
            };
            let lines: Vec<String> = match cmd {
                "add-groups" => file_lines(&read_file(arg(rest, 0, cmd, "a file")?)?)
                    .map(|(_, l)| l.to_string())
                    .collect(),
                "del-groups" if rest.is_empty() => vec!["group_id=all".into()],
                "del-groups" => rest.to_vec(),
                _ => vec![arg(rest, 0, cmd, "a group")?.to_string()],
            };
            let msgs = lines
                .iter()
                .map(|l| {
                    let gm = text::parse_group_mod(l, command).map_err(|e| usage(e.to_string()))?;
                    convert::group_mod_out(&gm)
                        .map(Message::GroupMod)
                        .map_err(wire)
                })
                .collect::<Result<Vec<_>, _>>()?;
            send_changes(&target, opts.bundle, send_all(msgs))?;
            String::new()
        }
        "dump-groups" => {
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let only = group_filter(rest.first())?;
            let (xid, parts) = c.multipart(MultipartRequest::GroupDesc)?;
            let mut s = format!("OFPST_GROUP_DESC reply (OF1.3) (xid={xid:#x}):\n");
            for part in parts {
                let MultipartReply::GroupDesc(list) = part else {
                    continue;
                };
                for gd in list
                    .iter()
                    .filter(|g| only.is_none_or(|id| id == g.group_id))
                {
                    let g = convert::group_desc_in(gd).map_err(wire)?;
                    s.push(' ');
                    s.push_str(text::print_group(&g).trim_start());
                    s.push('\n');
                }
            }
            s
        }
        "dump-group-stats" => {
            let mut c = Conn::open(&target)?;
            c.set_next_xid(CHANGE_XID);
            let group_id = group_filter(rest.first())?.unwrap_or(openflow::group::group_id::ALL);
            let (xid, parts) = c.multipart(MultipartRequest::Group { group_id })?;
            let list: Vec<_> = parts
                .into_iter()
                .flat_map(|p| match p {
                    MultipartReply::Group(l) => l,
                    _ => Vec::new(),
                })
                .collect();
            print::group_stats(&list, xid)
        }
        "dump-ports" => {
            let port_no = match rest.first() {
                Some(p) => resolve_port(&target, p)?,
                None => openflow::action::port::ANY,
            };
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let (xid, parts) = c.multipart(MultipartRequest::PortStats { port_no })?;
            let list: Vec<_> = parts
                .into_iter()
                .flat_map(|p| match p {
                    MultipartReply::PortStats(l) => l,
                    _ => Vec::new(),
                })
                .collect();
            print::port_stats(&list, xid)
        }
        "dump-ports-desc" => {
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let (xid, ports) = port_desc(&mut c)?;
            print::port_desc(&ports, xid)
        }
        "dump-tables" => {
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let (xid, parts) = c.multipart(MultipartRequest::Table)?;
            let list: Vec<_> = parts
                .into_iter()
                .flat_map(|p| match p {
                    MultipartReply::Table(l) => l,
                    _ => Vec::new(),
                })
                .collect();
            print::table_stats(&list, xid)
        }
        "dump-desc" => {
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let (xid, parts) = c.multipart(MultipartRequest::Desc)?;
            match parts.first() {
                Some(MultipartReply::Desc(d)) => print::desc(d, xid),
                _ => return Err(ClientError::Protocol("no description reply".into())),
            }
        }
        "dump-group-features" => {
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let (xid, parts) = c.multipart(MultipartRequest::GroupFeatures)?;
            match parts.first() {
                Some(MultipartReply::GroupFeatures(g)) => print::group_features(g, xid),
                _ => return Err(ClientError::Protocol("no group features reply".into())),
            }
        }
        "add-meter" | "mod-meter" | "del-meter" | "del-meters" => {
            use flowtable::MeterModCommand as M;
            let command = match cmd {
                "add-meter" => M::Add,
                "mod-meter" => M::Modify,
                _ => M::Delete,
            };
            let mm = match rest.first() {
                None if command == M::Delete => flowtable::MeterMod {
                    command,
                    meter: flowtable::Meter {
                        id: flowtable::meter::METER_ALL,
                        flags: flowtable::MeterFlags(0),
                        bands: Vec::new(),
                    },
                },
                _ => text::parse_meter_mod(arg(rest, 0, cmd, "a meter")?, command)
                    .map_err(|e| usage(e.to_string()))?,
            };
            // No name lookups before a meter-mod: ovs-ofctl sends it as its first request.
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let t = c.transact_with(
                None,
                send_all(vec![Message::MeterMod(convert::meter_mod_out(&mm))]),
            )?;
            refusals(&t.replies, &t.sent, &[])?;
            t.produced?;
            String::new()
        }
        "dump-meter" | "dump-meters" | "meter-stats" => {
            let meter_id = match rest.first() {
                Some(a) => text::parse_meter_filter(a).map_err(|e| usage(e.to_string()))?,
                None => flowtable::meter::METER_ALL,
            };
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let stats = cmd == "meter-stats";
            let req = if stats {
                MultipartRequest::Meter { meter_id }
            } else {
                MultipartRequest::MeterConfig { meter_id }
            };
            // ovs-ofctl prints an error reply (an unknown meter) like any reply, and exits 0.
            let (xid, parts) = match c.multipart(req) {
                Ok(r) => r,
                Err(ClientError::Refused(text)) => return Ok(Outcome::Done(text)),
                Err(e) => return Err(e),
            };
            if stats {
                let list: Vec<_> = parts
                    .into_iter()
                    .flat_map(|p| match p {
                        MultipartReply::Meter(l) => l,
                        _ => Vec::new(),
                    })
                    .collect();
                print::meter_stats(&list, xid)
            } else {
                let list: Vec<_> = parts
                    .into_iter()
                    .flat_map(|p| match p {
                        MultipartReply::MeterConfig(l) => l,
                        _ => Vec::new(),
                    })
                    .collect();
                print::meter_config(&list, xid)
            }
        }
        "meter-features" => {
            let mut c = Conn::open(&target)?;
            c.set_next_xid(DUMP_XID);
            let (xid, parts) = c.multipart(MultipartRequest::MeterFeatures)?;
            match parts.first() {
                Some(MultipartReply::MeterFeatures(f)) => print::meter_features(f, xid),
                _ => return Err(ClientError::Protocol("no meter features reply".into())),
            }
        }
        "mod-port" => {
            let pm = port_mod(
                &target,
                arg(rest, 0, cmd, "a port")?,
                arg(
                    rest,
                    1,
                    cmd,
                    "an action (up, down, receive, no-receive, forward, no-forward)",
                )?,
            )?;
            send_changes(&target, false, send_all(vec![Message::PortMod(pm)]))?;
            String::new()
        }
        "packet-out" => {
            packet_out(&target, rest)?;
            String::new()
        }
        "monitor" => {
            monitor(&target, rest)?;
            String::new()
        }
        other => return Err(usage(format!("unknown OpenFlow command '{other}'"))),
    };
    Ok(Outcome::Done(out))
}

pub(super) fn group_filter(arg: Option<&String>) -> Result<Option<u32>, ClientError> {
    let Some(a) = arg else { return Ok(None) };
    let v = a.strip_prefix("group_id=").unwrap_or(a);
    if v == "all" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| usage(format!("{a}: expected a group number")))
}

fn port_desc(c: &mut Conn) -> Result<(u32, Vec<openflow::Port>), ClientError> {
    let (xid, parts) = c.multipart(MultipartRequest::PortDesc)?;
    let list = parts
        .into_iter()
        .flat_map(|p| match p {
            MultipartReply::PortDesc(l) => l,
            _ => Vec::new(),
        })
        .collect();
    Ok((xid, list))
}

/// Lets flow text name ports (`in_port=vethA`, `output:vethA`, `out_port=...`) as ovs-ofctl
/// does: the first name met asks the switch for its ports (PORT_DESC, on a side connection)
/// once; a name the switch does not have is refused by the parser.
fn set_port_names(target: &Target) {
    let target = target.clone();
    let cache: std::sync::Mutex<Option<HashMap<String, u32>>> = std::sync::Mutex::new(None);
    text::value::set_port_name_lookup(Box::new(move |name| {
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.is_none() {
            let ports = Conn::open(&target)
                .and_then(|mut c| port_desc(&mut c))
                .map(|(_, ports)| ports)
                .unwrap_or_default();
            *cache = Some(
                ports
                    .into_iter()
                    .map(|p| (p.name.text(), p.port_no))
                    .collect(),
            );
        }
        cache.as_ref().and_then(|m| m.get(name).copied())
    }));
}

/// `mod-port SWITCH PORT ACTION` as ovs-ofctl builds it: the port's number and address from
/// PORT_DESC, one config bit and its mask. The words ovs-ofctl takes whose bit OpenFlow 1.3
/// does not have (stp, receive-stp, flood) are refused here rather than sent as a no-op, and
/// packet-in is refused by the switch.
fn port_mod(target: &Target, port: &str, action: &str) -> Result<openflow::PortMod, ClientError> {
    use openflow::switch::port_config as pc;
    let lower = action.to_ascii_lowercase();
    let (word, not) = match lower
        .strip_prefix("no-")
        .or_else(|| lower.strip_prefix("no"))
    {
        Some(w) => (w, true),
        None => (lower.as_str(), false),
    };
    // (word, bit, whether the word alone sets the bit)
    let (bit, on) = match word {
        "up" => (pc::PORT_DOWN, false),
        "down" => (pc::PORT_DOWN, true),
        "receive" => (pc::NO_RECV, false),
        "forward" => (pc::NO_FWD, false),
        "packet-in" => (pc::NO_PACKET_IN, false),
        "stp" | "receive-stp" | "flood" => {
            return Err(usage(format!(
                "mod-port {action}: OpenFlow 1.3 has no such port setting (OpenFlow 1.0 only); \
                 vswitch ports support up, down, receive, no-receive, forward, no-forward"
            )));
        }
        _ => return Err(usage(format!("unknown mod-port command '{action}'"))),
    };
    let mut c = Conn::open(target)?;
    let (_, ports) = port_desc(&mut c)?;
    let found = match port.parse::<u32>() {
        // As in flow text: OpenFlow 1.0's reserved numbers name their ports (65534: LOCAL).
        Ok(n) => {
            let n = flowtable::OfPort::from_text_number(n).0;
            ports.iter().find(|p| p.port_no == n)
        }
        Err(_) => ports.iter().find(|p| p.name.text() == port),
    };
    let p = found.ok_or_else(|| usage(format!("{port}: couldn't find port `{port}'")))?;
    Ok(openflow::PortMod {
        port_no: p.port_no,
        hw_addr: p.hw_addr,
        config: if on ^ not { bit } else { 0 },
        mask: bit,
        advertise: 0,
    })
}

/// A port given as number, reserved name, or port name (looked up on a side connection).
pub(super) fn resolve_port(target: &Target, p: &str) -> Result<u32, ClientError> {
    if let Ok(n) = p.parse() {
        return Ok(flowtable::OfPort::from_text_number(n).0);
    }
    if let Some(port) = text::value::parse_port(p) {
        return Ok(port.0);
    }
    let mut c = Conn::open(target)?;
    let (_, ports) = port_desc(&mut c)?;
    ports
        .iter()
        .find(|x| x.name.text() == p)
        .map(|x| x.port_no)
        .ok_or_else(|| usage(format!("{p}: port not found on the switch")))
}

fn show(target: &Target) -> Result<String, ClientError> {
    let mut c = Conn::open(target)?;
    c.set_next_xid(DUMP_XID);
    let mut s = String::new();
    let r = c.request(&Message::FeaturesRequest)?;
    match r.msg {
        Message::FeaturesReply(f) => s.push_str(&print::features(&f, r.header.xid)),
        _ => return Err(ClientError::Protocol("expected FEATURES_REPLY".into())),
    }
    let (xid, ports) = port_desc(&mut c)?;
    s.push_str(&print::port_desc(&ports, xid));
    // ovs-ofctl spends xid 4 on a SET_CONFIG it does not wait for; skip it to match.
    c.alloc_xid();
    let r = c.request(&Message::GetConfigRequest)?;
    if let Message::GetConfigReply(cfg) = r.msg {
        s.push_str(&print::config(&cfg, r.header.xid));
    }
    Ok(s)
}

fn flow_stats_request(filter: Option<&str>) -> Result<FlowStatsRequest, ClientError> {
    let mut req = FlowStatsRequest::default();
    if let Some(f) = filter.filter(|f| !f.trim().is_empty()) {
        let fm = parse_one_flow(f, FlowModCommand::Delete)?;
        req.table_id = fm.table_id;
        req.cookie = fm.cookie;
        req.cookie_mask = fm.cookie_mask;
        req.out_port = fm.out_port.0;
        req.out_group = fm.out_group;
        req.match_ = openflow::Match::from_flow(&fm.match_.value, &fm.match_.mask);
    }
    Ok(req)
}

/// All flows the switch has that `filter` selects, as table entries.
pub(super) fn fetch_flows(
    c: &mut Conn,
    filter: Option<&str>,
) -> Result<(u32, Vec<FlowEntry>), ClientError> {
    let req = flow_stats_request(filter)?;
    let (xid, parts) = c.multipart(MultipartRequest::Flow(req))?;
    let now = Instant::now();
    let mut out = Vec::new();
    for p in parts {
        if let MultipartReply::Flow(list) = p {
            for fs in &list {
                out.push(convert::flow_stats_in(fs, now).map_err(wire)?);
            }
        }
    }
    Ok((xid, out))
}

fn dump_flows(
    target: &Target,
    filter: Option<&str>,
    opts: &Options,
) -> Result<String, ClientError> {
    let names: HashMap<u32, String> = if opts.names {
        let mut c = Conn::open(target)?;
        let (_, ports) = port_desc(&mut c)?;
        port_name_map(ports.iter().map(|p| (p.port_no, p.name.text())))
    } else {
        HashMap::new()
    };
    let criteria = sort_criteria(&opts.sort)?;
    let mut c = Conn::open(target)?;
    c.set_next_xid(DUMP_XID);
    let (xid, mut flows) = fetch_flows(&mut c, filter)?;
    if !criteria.is_empty() {
        flows.sort_by(|a, b| compare_flows(a, b, &criteria));
    }
    let lookup = |p: OfPort| names.get(&p.0).cloned();
    let now = Instant::now();
    let popts = PrintOpts {
        stats: !opts.no_stats,
        now: Some(now),
        port_names: if opts.names { Some(&lookup) } else { None },
        ..PrintOpts::default()
    };
    let mut s = String::new();
    // As ovs-ofctl: a sorted dump, or one with port names, is printed flow by flow, without
    // the reply's header line.
    if !opts.no_stats && criteria.is_empty() && !opts.names {
        s.push_str(&format!("OFPST_FLOW reply (OF1.3) (xid={xid:#x}):\n"));
    }
    for e in &flows {
        s.push_str(&text::print_flow(e, &popts));
        s.push('\n');
    }
    Ok(s)
}

/// How `--names` prints each port, as ovs-ofctl's port map (`namemap_put`,
/// `ofputil_format_port`): a reserved port keeps its reserved name (`LOCAL`), a name two ports
/// share or a port with two names prints as its number, and a name that is not a letter
/// followed by letters and digits is quoted as a JSON string (`"aud-v1"`, `"eth_1"`).
fn port_name_map(ports: impl IntoIterator<Item = (u32, String)>) -> HashMap<u32, String> {
    let mut by_number: HashMap<u32, (String, bool)> = HashMap::new();
    let mut by_name: HashMap<String, u32> = HashMap::new();
    for (number, name) in ports {
        if let Some(&other) = by_name.get(&name) {
            if other != number
                && let Some(entry) = by_number.get_mut(&other)
            {
                entry.1 = true;
            }
            continue;
        }
        if let Some(entry) = by_number.get_mut(&number) {
            entry.1 = true;
            continue;
        }
        by_name.insert(name.clone(), number);
        by_number.insert(number, (name, false));
    }
    by_number
        .into_iter()
        .filter(|(number, (_, duplicate))| !duplicate && OfPort(*number).reserved_name().is_none())
        .map(|(number, (name, _))| (number, quoted_name(&name)))
        .collect()
}

/// `namemap_put_name`: a name as is when it is a letter followed by letters and digits, else
/// as a JSON string (`json_string_escape`).
fn quoted_name(name: &str) -> String {
    let mut bytes = name.bytes();
    let plain = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric());
    if plain {
        return name.to_string();
    }
    let mut s = String::from('"');
    for c in name.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\u{8}' => s.push_str("\\b"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\u{c}' => s.push_str("\\f"),
            '\r' => s.push_str("\\r"),
            c if u32::from(c) < 0x20 => s.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// One `--sort`/`--rsort` criterion: `None` is the priority.
pub(super) type SortKey = (Option<&'static flowtable::fields::FieldInfo>, bool);

pub(super) fn sort_criteria(sort: &[(String, bool)]) -> Result<Vec<SortKey>, ClientError> {
    sort.iter()
        .map(|(name, desc)| {
            if name == "priority" {
                return Ok((None, *desc));
            }
            flowtable::fields::FieldId::from_name(name)
                .map(|f| (Some(f.info()), *desc))
                .ok_or_else(|| {
                    usage(format!(
                        "{name}: unknown field (--sort/--rsort take priority or a match field)"
                    ))
                })
        })
        .collect()
}

/// ovs-ofctl's `compare_flows`: by each criterion in turn; a flow that does not match on a
/// field sorts after those that do, whichever the direction; wildcarded bits count as 0.
pub(super) fn compare_flows(
    a: &FlowEntry,
    b: &FlowEntry,
    criteria: &[SortKey],
) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for &(field, desc) in criteria {
        let ord = match field {
            None => a.priority.cmp(&b.priority),
            Some(f) => {
                let (am, bm) = ((f.get)(&a.match_.mask), (f.get)(&b.match_.mask));
                match (am != 0, bm != 0) {
                    (true, false) => return Ordering::Less,
                    (false, true) => return Ordering::Greater,
                    _ => ((f.get)(&a.match_.value) & am).cmp(&((f.get)(&b.match_.value) & bm)),
                }
            }
        };
        if ord != Ordering::Equal {
            return if desc { ord.reverse() } else { ord };
        }
    }
    Ordering::Equal
}

/// A producer that sends `msgs` as they are.
fn send_all(msgs: Vec<Message>) -> impl FnOnce(&mut Sender) -> Result<(), ClientError> + Send {
    move |s: &mut Sender| msgs.into_iter().try_for_each(|m| s.send(m))
}

/// Sends the flow/group changes `produce` makes (in one atomic ONF bundle when `bundle`);
/// every OFPT_ERROR the switch answers is rendered into [`ClientError::Refused`].
fn send_changes<F>(target: &Target, bundle: bool, produce: F) -> Result<(), ClientError>
where
    F: FnOnce(&mut Sender) -> Result<(), ClientError> + Send + 'static,
{
    let mut c = Conn::open(target)?;
    if !bundle {
        c.set_next_xid(CHANGE_XID);
        let t = c.transact_with(None, produce)?;
        refusals(&t.replies, &t.sent, &[])?;
        return t.produced;
    }
    let flags = BUNDLE_ATOMIC | BUNDLE_ORDERED;
    let control = |ctrl_type| {
        Message::BundleControl(BundleControl {
            bundle_id: BUNDLE_ID,
            ctrl_type,
            flags,
            properties: Vec::new(),
        })
    };
    // The open takes the xid before the first change, so the changes are numbered from 6 as
    // ovs-ofctl numbers them (its error texts quote them).
    c.set_next_xid(CHANGE_XID - 1);
    c.request(&control(bundle_ctrl::OPEN_REQUEST))?;
    let t = c.transact_with(Some((BUNDLE_ID, flags)), produce)?;
    let staged = refusals(&t.replies, &t.sent, &[]).and(t.produced);
    if let Err(e) = staged {
        let _ = c.request(&control(bundle_ctrl::DISCARD_REQUEST));
        return Err(e);
    }
    let commit = c.transact_with(None, send_all(vec![control(bundle_ctrl::COMMIT_REQUEST)]))?;
    refusals(&commit.replies, &t.sent, &commit.sent)
}

fn refusals(
    replies: &[Received],
    sent: &[(Message, u32)],
    more: &[(Message, u32)],
) -> Result<(), ClientError> {
    let by_xid: HashMap<u32, &Message> = sent.iter().chain(more).map(|(m, x)| (*x, m)).collect();
    let mut text_out = String::new();
    for r in replies {
        if let Message::Error(e) = &r.msg {
            text_out.push_str(&errors::format_error(
                e,
                r.header.xid,
                by_xid.get(&r.header.xid).copied(),
            ));
        }
    }
    if text_out.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Refused(text_out))
    }
}

/// `replace-flows`: dumps the switch, then deletes (strictly) what the file lacks and adds
/// what is new or different, as ovs-ofctl does (unchanged flows keep their counters).
fn replace_flows(
    target: &Target,
    want: Vec<flowtable::FlowMod>,
    bundle: bool,
) -> Result<(), ClientError> {
    let have = {
        let mut c = Conn::open(target)?;
        c.set_next_xid(DUMP_XID);
        fetch_flows(&mut c, None)?.1
    };
    let now = Instant::now();
    let want: Vec<FlowEntry> = want.iter().map(|fm| FlowEntry::from_mod(fm, now)).collect();
    let diff = FlowDiff::new(&have, &want);
    let mut msgs = Vec::new();
    for (key, (old, new)) in &diff.entries {
        match (old, new) {
            (Some(_), None) => {
                let fm = flowtable::FlowMod {
                    command: FlowModCommand::DeleteStrict,
                    table_id: key.0,
                    priority: key.1,
                    match_: key.2,
                    ..flowtable::FlowMod::default()
                };
                msgs.push(Message::FlowMod(convert::flow_mod_out(&fm).map_err(wire)?));
            }
            (old, Some(n)) if old.as_ref().map(|o| &o.version) != Some(&n.version) => {
                let fm = flowtable::FlowMod {
                    command: FlowModCommand::Add,
                    table_id: n.entry.table_id,
                    cookie: n.entry.cookie,
                    priority: n.entry.priority,
                    idle_timeout: n.entry.idle_timeout,
                    hard_timeout: n.entry.hard_timeout,
                    flags: n.entry.flags,
                    match_: n.entry.match_,
                    instructions: (*n.entry.instructions).clone(),
                    ..flowtable::FlowMod::default()
                };
                msgs.push(Message::FlowMod(convert::flow_mod_out(&fm).map_err(wire)?));
            }
            _ => {}
        }
    }
    if msgs.is_empty() {
        return Ok(());
    }
    send_changes(target, bundle, send_all(msgs))
}

type FlowKey = (u8, u16, flowtable::Match);

/// One side of a diff: the entry and what decides "different" (cookie, timeouts, actions).
struct Side {
    entry: FlowEntry,
    version: (u64, u16, u16, String),
}

/// The two sides' versions of one flow (either may be missing).
type Pair = (Option<Side>, Option<Side>);

/// Two flow sets keyed by (table, priority, match), in first-seen order.
struct FlowDiff {
    entries: Vec<(FlowKey, Pair)>,
}

impl FlowDiff {
    fn new(a: &[FlowEntry], b: &[FlowEntry]) -> FlowDiff {
        let mut index: HashMap<FlowKey, usize> = HashMap::new();
        let mut entries: Vec<(FlowKey, Pair)> = Vec::new();
        for (which, list) in [(0, a), (1, b)] {
            for e in list {
                let key = (e.table_id, e.priority, e.match_);
                let side = Side {
                    entry: e.clone(),
                    version: (
                        e.cookie,
                        e.idle_timeout,
                        e.hard_timeout,
                        text::print_instructions(&e.instructions),
                    ),
                };
                let i = *index.entry(key).or_insert_with(|| {
                    entries.push((key, (None, None)));
                    entries.len() - 1
                });
                if which == 0 {
                    entries[i].1.0 = Some(side);
                } else {
                    entries[i].1.1 = Some(side);
                }
            }
        }
        FlowDiff { entries }
    }
}

/// A flow as diff-flows prints it: `[table=N ]MATCH[ cookie=..][ idle_timeout=..] actions=..`.
fn diff_line(e: &FlowEntry) -> String {
    let mut bare = e.clone();
    bare.table_id = 0;
    bare.cookie = 0;
    bare.idle_timeout = 0;
    bare.hard_timeout = 0;
    bare.flags = flowtable::flow::FlowFlags(0);
    let printed = text::print_flow(&bare, &PrintOpts::default());
    let printed = printed.strip_prefix(' ').unwrap_or(&printed);
    let (m, actions) = match printed.find("actions=") {
        Some(i) => (printed[..i].trim_end(), &printed[i..]),
        None => ("", printed),
    };
    let mut s = String::new();
    if e.table_id != 0 {
        s.push_str(&format!("table={} ", e.table_id));
    }
    s.push_str(m);
    if e.cookie != 0 {
        s.push_str(&format!(" cookie={:#x}", e.cookie));
    }
    if e.idle_timeout != 0 {
        s.push_str(&format!(" idle_timeout={}", e.idle_timeout));
    }
    if e.hard_timeout != 0 {
        s.push_str(&format!(" hard_timeout={}", e.hard_timeout));
    }
    s.push(' ');
    s.push_str(actions);
    s
}

/// A diff-flows source: an existing file, else a switch.
fn flows_of(source: &str, opts: &Options) -> Result<Vec<FlowEntry>, ClientError> {
    if std::path::Path::new(source).is_file() || source == "-" {
        let now = Instant::now();
        return Ok(parse_flows(&read_file(source)?, FlowModCommand::Add)?
            .iter()
            .map(|fm| FlowEntry::from_mod(fm, now))
            .collect());
    }
    let target = Target::parse(source, &opts.rundir)?;
    let mut c = Conn::open(&target)?;
    c.set_next_xid(DUMP_XID);
    Ok(fetch_flows(&mut c, None)?.1)
}

fn diff_flows(args: &[String], opts: &Options) -> Result<Outcome, ClientError> {
    let a = flows_of(arg(args, 0, "diff-flows", "two sources")?, opts)?;
    let b = flows_of(arg(args, 1, "diff-flows", "two sources")?, opts)?;
    let diff = FlowDiff::new(&a, &b);
    let mut s = String::new();
    for (_, (old, new)) in &diff.entries {
        if old.as_ref().map(|o| &o.version) == new.as_ref().map(|n| &n.version) {
            continue;
        }
        if let Some(o) = old {
            s.push_str(&format!("-{}\n", diff_line(&o.entry)));
        }
        if let Some(n) = new {
            s.push_str(&format!("+{}\n", diff_line(&n.entry)));
        }
    }
    Ok(if s.is_empty() {
        Outcome::Done(s)
    } else {
        Outcome::Differ(s)
    })
}

/// `packet-out SWITCH IN_PORT ACTIONS PACKET...` (hex frames).
fn packet_out(target: &Target, rest: &[String]) -> Result<(), ClientError> {
    let in_port = arg(rest, 0, "packet-out", "IN_PORT ACTIONS PACKET")?;
    let actions = arg(rest, 1, "packet-out", "IN_PORT ACTIONS PACKET")?;
    if rest.len() < 3 {
        return Err(usage(
            "'packet-out' command requires IN_PORT ACTIONS PACKET",
        ));
    }
    let in_port = match in_port.parse::<u32>() {
        Ok(n) => flowtable::OfPort::from_text_number(n).0,
        Err(_) => text::value::parse_port(in_port)
            .map(|p| p.0)
            .ok_or_else(|| usage(format!("{in_port}: bad in_port")))?,
    };
    let ins =
        text::parse_actions(actions, &flowtable::Match::any()).map_err(|e| usage(e.to_string()))?;
    let wire_actions = convert::actions_out(&ins.apply).map_err(wire)?;
    let mut msgs = Vec::new();
    for hex in &rest[2..] {
        let data = text::value::parse_hex_bytes(hex)
            .ok_or_else(|| usage(format!("{hex}: expected the packet in hex")))?;
        msgs.push(Message::PacketOut(PacketOut {
            buffer_id: openflow::flow::NO_BUFFER,
            in_port,
            actions: wire_actions.clone(),
            data,
        }));
    }
    send_changes(target, false, send_all(msgs))
}

/// `monitor`: asks for packet-ins and prints each as ovs-ofctl does, until the switch closes
/// the connection or the process is stopped.
fn monitor(target: &Target, args: &[String]) -> Result<(), ClientError> {
    use openflow::monitor::{
        FlowUpdate, MonitorRequest, ONF_EXPERIMENTER, ONFST_FLOW_MONITOR, flags,
    };
    use std::io::Write;
    // As ovs-ofctl: `monitor SWITCH [MISS_LEN] [watch:[...]]`.
    let miss_send_len = args
        .iter()
        .find_map(|a| a.parse::<u16>().ok())
        .unwrap_or(u16::MAX);
    let watch = args.iter().any(|a| a.starts_with("watch:"));
    let mut c = Conn::open(target)?;
    c.send_one(&Message::SetConfig(openflow::SwitchConfig {
        flags: 0,
        miss_send_len,
    }))?;
    let _ = c.request(&Message::BarrierRequest)?;
    if watch {
        let mut body = Vec::new();
        MonitorRequest {
            id: 0,
            flags: flags::INITIAL
                | flags::ADD
                | flags::DELETE
                | flags::MODIFY
                | flags::ACTIONS
                | flags::OWN,
            out_port: OfPort::ANY.0,
            table_id: 0xff,
            match_: openflow::oxm::Match::default(),
        }
        .encode(&mut body);
        // ovs-ofctl numbers this request 9 (after its config and barrier requests).
        c.set_next_xid(9);
        c.send_one(&Message::MultipartRequest {
            flags: 0,
            body: MultipartRequest::Experimenter {
                experimenter: ONF_EXPERIMENTER,
                exp_type: ONFST_FLOW_MONITOR,
                body,
            },
        })?;
    }
    loop {
        let got = match c.recv() {
            Ok(r) => r,
            Err(ClientError::Closed) => return Ok(()),
            // Nothing to show for a while: a monitor runs until stopped.
            Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => return Err(e),
        };
        let pi = match got.msg {
            Message::PacketIn(pi) => pi,
            Message::MultipartReply {
                body:
                    MultipartReply::Experimenter {
                        experimenter: ONF_EXPERIMENTER,
                        exp_type: ONFST_FLOW_MONITOR,
                        body,
                    },
                ..
            } => {
                let updates = FlowUpdate::decode_list(&body).map_err(wire)?;
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "ONFST_FLOW_MONITOR reply (OF1.3) (xid={:#x}):",
                    got.header.xid
                )
                .map_err(output_closed)?;
                for u in &updates {
                    writeln!(out, " {}", flow_update_text(u)?).map_err(output_closed)?;
                }
                out.flush().map_err(output_closed)?;
                continue;
            }
            Message::FlowRemoved(fr) => {
                let reason = removed_reason(u16::from(fr.reason)).unwrap_or("unknown");
                let m = fr
                    .match_
                    .to_flow()
                    .map(|(value, mask)| text::print_match(&flowtable::Match { value, mask }))
                    .unwrap_or_default();
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "OFPT_FLOW_REMOVED (OF1.3) (xid={:#x}): priority={},{m} reason={reason} table_id={} duration{}.{:03}s idle{} hard{} pkts{} bytes{}",
                    got.header.xid,
                    fr.priority,
                    fr.table_id,
                    fr.duration_sec,
                    fr.duration_nsec / 1_000_000,
                    fr.idle_timeout,
                    fr.hard_timeout,
                    fr.packet_count,
                    fr.byte_count
                ).map_err(output_closed)?;
                out.flush().map_err(output_closed)?;
                continue;
            }
            _ => continue,
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", packet_in_text(got.header.xid, &pi)).map_err(output_closed)?;
        out.flush().map_err(output_closed)?;
    }
}

/// An `OFPT_PACKET_IN` as `ovs-ofctl ofp-print` prints it (`ofputil_packet_in_private_format`):
/// the header line (`table_id=` unless 0, `cookie=` unless all ones, the pipeline fields in
/// the match, the truncation remark) and the packet (`ofp_packet_to_string`), no final
/// newline.
fn packet_in_text(xid: u32, pi: &openflow::flow::PacketIn) -> String {
    use std::fmt::Write as _;
    let mut s = format!("OFPT_PACKET_IN (OF1.3) (xid={xid:#x}):");
    if pi.table_id != 0 {
        let _ = write!(s, " table_id={}", pi.table_id);
    }
    if pi.cookie != u64::MAX {
        let _ = write!(s, " cookie={:#x}", pi.cookie);
    }
    let fields = pi
        .match_
        .to_flow()
        .map(|(value, mask)| text::print_match(&flowtable::Match { value, mask }))
        .unwrap_or_default();
    let _ = write!(s, " total_len={} {fields}", pi.total_len);
    match flowtable::action::PacketInReason::ALL.get(usize::from(pi.reason)) {
        Some(r) => {
            let _ = write!(s, " (via {})", r.name());
        }
        None => {
            let _ = write!(s, " (via {})", pi.reason);
        }
    }
    let _ = write!(s, " data_len={}", pi.data.len());
    if pi.buffer_id == u32::MAX {
        s.push_str(" (unbuffered)");
        if usize::from(pi.total_len) != pi.data.len() {
            s.push_str(" (***total_len != data_len***)");
        }
    } else {
        let _ = write!(s, " buffer=0x{:08x}", pi.buffer_id);
        if usize::from(pi.total_len) < pi.data.len() {
            s.push_str(" (***total_len < data_len***)");
        }
    }
    s.push('\n');
    s.push_str(&super::packet::packet_to_string(&pi.data));
    s
}

/// Standard output failed (a reader like `grep -m1` went away): the monitor ends.
fn output_closed(_: std::io::Error) -> ClientError {
    ClientError::OutputClosed
}

/// ovs-ofctl's name for an `OFPRR_*` flow-removal reason.
fn removed_reason(r: u16) -> Option<&'static str> {
    Some(match r {
        0 => "idle",
        1 => "hard",
        2 => "delete",
        3 => "group_delete",
        4 => "meter_delete",
        _ => return None,
    })
}

/// One flow-monitor update as ovs-ofctl prints it: the match without its priority, the
/// timeouts only when set, the actions only when the flow has any.
fn flow_update_text(u: &openflow::monitor::FlowUpdate) -> Result<String, ClientError> {
    use openflow::monitor::event;
    let mut s = match u.event {
        event::ADDED => "event=ADDED".to_string(),
        event::DELETED => format!(
            "event=DELETED reason={}",
            removed_reason(u.reason).unwrap_or("eviction")
        ),
        event::MODIFIED => "event=MODIFIED".to_string(),
        other => format!("event={other}"),
    };
    s.push_str(&format!(" table={}", u.table_id));
    if u.idle_timeout != 0 {
        s.push_str(&format!(" idle_timeout={}", u.idle_timeout));
    }
    if u.hard_timeout != 0 {
        s.push_str(&format!(" hard_timeout={}", u.hard_timeout));
    }
    // C's %#x: "0" for zero, "0x..." otherwise.
    if u.cookie == 0 {
        s.push_str(" cookie=0");
    } else {
        s.push_str(&format!(" cookie={:#x}", u.cookie));
    }
    let (value, mask) = u.match_.to_flow().map_err(wire)?;
    let m = text::print_match(&flowtable::Match { value, mask });
    if !m.is_empty() {
        s.push(' ');
        s.push_str(&m);
    }
    if !u.instructions.is_empty() {
        let ins = convert::instructions_in(&u.instructions).map_err(wire)?;
        s.push_str(" actions=");
        s.push_str(&text::print_instructions(&ins));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(s: &str) -> FlowEntry {
        FlowEntry::from_mod(&text::parse_flow(s).unwrap(), Instant::now())
    }

    #[test]
    fn diff_lines_read_like_ovs() {
        assert_eq!(
            diff_line(&entry("priority=0,actions=NORMAL")),
            "priority=0 actions=NORMAL"
        );
        assert_eq!(
            diff_line(&entry(
                "table=1,cookie=0x5,idle_timeout=9,priority=7,tcp,tp_dst=80,actions=drop"
            )),
            "table=1 priority=7,tcp,tp_dst=80 cookie=0x5 idle_timeout=9 actions=drop"
        );
    }

    #[test]
    fn diff_pairs_by_table_priority_and_match() {
        let a = vec![
            entry("priority=1,ip,actions=drop"),
            entry("priority=2,arp,actions=NORMAL"),
        ];
        let b = vec![
            entry("priority=1,ip,actions=output:1"),
            entry("priority=2,arp,actions=NORMAL"),
        ];
        let d = FlowDiff::new(&a, &b);
        let changed: Vec<_> = d
            .entries
            .iter()
            .filter(|(_, (o, n))| o.as_ref().map(|x| &x.version) != n.as_ref().map(|x| &x.version))
            .collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].0.1, 1);
    }

    /// Packet-ins print as `ovs-ofctl ofp-print` (3.1) printed these messages: pipeline
    /// fields in the match, `table_id` only when not 0, `cookie` only when not all ones, a
    /// cut packet remarked on, a reason OpenFlow 1.3 has no name for by number.
    #[test]
    fn packet_ins_print_as_ovs_ofctl_prints_them() {
        let udp = "udp,vlan_tci=0x0000,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_tos=0,nw_ecn=0,nw_ttl=64,nw_frag=no,tp_src=9999,tp_dst=9999 udp_csum:0";
        for (hex, head, packet) in [
            (
                "040a007900000007ffffffff002f010300000000000012340001002c8000000400000001800004080000000000000005000100040000000780004c080000000000000064000000000000020000000002020000000001080045000021000100004011f9ca0a0000010a000002270f270f000d000068656c6c6f",
                "OFPT_PACKET_IN (OF1.3) (xid=0x7): table_id=3 cookie=0x1234 total_len=47 reg0=0x7,tun_id=0x64,metadata=0x5,in_port=1 (via action) data_len=47 (unbuffered)",
                udp,
            ),
            (
                "040a003e00000007ffffffff002f0000ffffffffffffffff0001000c80000004fffffffe0000000000000200000000020200000000010800450000210001",
                "OFPT_PACKET_IN (OF1.3) (xid=0x7): total_len=47 in_port=LOCAL (via no_match) data_len=20 (unbuffered) (***total_len != data_len***)",
                "ip,vlan_tci=0x0000,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,nw_src=0.0.0.0,nw_dst=0.0.0.0,nw_proto=0,nw_tos=0,nw_ecn=0,nw_ttl=0,nw_frag=no",
            ),
            (
                "040a005900000007ffffffff002f050000000000000000000001000c8000000400000002000000000000020000000002020000000001080045000021000100004011f9ca0a0000010a000002270f270f000d000068656c6c6f",
                "OFPT_PACKET_IN (OF1.3) (xid=0x7): cookie=0x0 total_len=47 in_port=2 (via packet_out) data_len=47 (unbuffered)",
                udp,
            ),
            (
                "040a005900000007ffffffff002f090100000000000000000001000c8000000400000002000000000000020000000002020000000001080045000021000100004011f9ca0a0000010a000002270f270f000d000068656c6c6f",
                "OFPT_PACKET_IN (OF1.3) (xid=0x7): table_id=1 cookie=0x0 total_len=47 in_port=2 (via 9) data_len=47 (unbuffered)",
                udp,
            ),
        ] {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let (h, Message::PacketIn(pi)) = openflow::decode(&bytes).unwrap() else {
                panic!("not a packet-in: {hex}");
            };
            assert_eq!(packet_in_text(h.xid, &pi), format!("{head}\n{packet}"));
        }
    }

    /// `--names` prints ports as ovs-ofctl's port map does (lib/namemap.c, lib/ofp-port.c).
    #[test]
    fn port_names_print_as_ovs_ofctl_prints_them() {
        let map = port_name_map(
            [
                (1, "aud-v1"),
                (2, "plain3"),
                (3, "3x"),
                (4, "eth_1"),
                (5, "twice"),
                (6, "twice"),
                (7, "q\"b\\s"),
                (8, ""),
                (OfPort::LOCAL.0, "br0"),
            ]
            .map(|(n, s)| (n, s.to_string())),
        );
        let name = |n: u32| map.get(&n).cloned();
        assert_eq!(name(1).as_deref(), Some("\"aud-v1\""));
        assert_eq!(name(2).as_deref(), Some("plain3"));
        assert_eq!(name(3).as_deref(), Some("\"3x\""));
        assert_eq!(name(4).as_deref(), Some("\"eth_1\""));
        // A name two ports share names neither; LOCAL stays LOCAL.
        assert_eq!((name(5), name(6)), (None, None));
        assert_eq!(name(7).as_deref(), Some(r#""q\"b\\s""#));
        assert_eq!(name(8).as_deref(), Some("\"\""));
        assert_eq!(name(OfPort::LOCAL.0), None);
        assert_eq!(quoted_name("tab\there\u{1}"), r#""tab\there\u0001""#);
    }

    #[test]
    fn targets_resolve_like_ovs_ofctl() {
        let r = std::path::Path::new("/run/x");
        assert_eq!(
            Target::parse("br0", r).unwrap(),
            Target::Unix("/run/x/br0.mgmt".into())
        );
        assert_eq!(
            Target::parse("unix:/a/b", r).unwrap(),
            Target::Unix("/a/b".into())
        );
        assert_eq!(
            Target::parse("tcp:127.0.0.1:6653", r).unwrap(),
            Target::Tcp("127.0.0.1:6653".parse().unwrap())
        );
        assert!(Target::parse("tcp:nope", r).is_err());
    }

    /// A port given by number reads as in flow text: OpenFlow 1.0's 65534 is LOCAL (no
    /// connection is needed for a number).
    #[test]
    fn port_numbers_read_as_in_flow_text() {
        let t = Target::Unix("/nonexistent/br0.mgmt".into());
        assert_eq!(
            resolve_port(&t, "65534").unwrap(),
            flowtable::OfPort::LOCAL.0
        );
        assert_eq!(resolve_port(&t, "3").unwrap(), 3);
        assert_eq!(
            resolve_port(&t, "LOCAL").unwrap(),
            flowtable::OfPort::LOCAL.0
        );
    }
}
