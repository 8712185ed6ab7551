//! Group text: `group_id=1,type=select,bucket=weight:100,actions=output:1,bucket=...`.

use crate::fields::FieldId;
use crate::group::{Bucket, GROUP_ANY, Group, GroupMod, GroupModCommand, GroupType, Selection};
use crate::match_::Match;
use crate::port::OfPort;

use super::print::{PrintOpts, actions_text};
use super::value::{parse_port, parse_uint_bits};
use super::{ParseError, parse_actions, split_top};

fn bad_setting(what: &str, value: &str, expected: &str) -> ParseError {
    ParseError::BadSetting {
        what: what.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// Parses an add-group line.
pub fn parse_group(s: &str) -> Result<Group, ParseError> {
    Ok(parse_group_mod(s, GroupModCommand::Add)?.group)
}

/// Parses a group line for `command`. For delete, only `group_id` is read (default: all).
/// `selection_method=hash|dp_hash` and `fields(a,b)` / `fields=a` are kept in
/// [`Group::selection`] (`dp_hash` is the default selection); `bucket_id` is accepted and
/// dropped, as ovs-ofctl does when speaking OpenFlow 1.3.
pub fn parse_group_mod(s: &str, command: GroupModCommand) -> Result<GroupMod, ParseError> {
    let mut id: Option<u32> = None;
    let mut group_type: Option<GroupType> = None;
    let mut method: Option<&str> = None;
    let mut fields: Vec<FieldId> = Vec::new();
    let mut affinity_timeout: Option<u32> = None;
    // Bucket token lists; tokens are top-level comma pieces.
    let mut buckets: Vec<Vec<&str>> = Vec::new();
    for tok in split_top(s, &[','])? {
        if let Some(first) = tok.strip_prefix("bucket=") {
            buckets.push(if first.is_empty() {
                vec![]
            } else {
                vec![first]
            });
            continue;
        }
        if let Some(b) = buckets.last_mut() {
            b.push(tok);
            continue;
        }
        let (k, v) = tok
            .split_once('=')
            .map_or((tok, ""), |(k, v)| (k.trim(), v.trim()));
        match k {
            "group_id" => {
                let g = if v == "all" {
                    crate::group::GROUP_ALL
                } else {
                    parse_uint_bits(v, 32)
                        .ok_or_else(|| bad_setting("group_id", v, "a 32-bit group id"))?
                        as u32
                };
                id = Some(g);
            }
            "type" => {
                group_type = Some(GroupType::from_name(v).ok_or_else(|| {
                    bad_setting("type", v, "all, select, indirect or fast_failover")
                })?);
            }
            "selection_method" => match v {
                "hash" | "dp_hash" => method = Some(v),
                _ => return Err(bad_setting("selection_method", v, "hash or dp_hash")),
            },
            "fields" => push_hash_field(&mut fields, v)?,
            "affinity_timeout" => {
                affinity_timeout = Some(
                    parse_uint_bits(v, 32)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad_setting("affinity_timeout", v, "seconds, 1 to 2^32-1"))?
                        as u32,
                );
            }
            k if k.starts_with("fields(") => {
                let list = tok
                    .trim()
                    .strip_prefix("fields(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| bad_setting("fields", tok, "fields(NAME,NAME,...)"))?;
                for name in list.split(',') {
                    push_hash_field(&mut fields, name)?;
                }
            }
            "command_bucket_id" | "bucket_id" => {}
            _ => {
                return Err(ParseError::UnknownField {
                    name: k.into(),
                    suggestion: None,
                });
            }
        }
    }
    let id = match (id, command) {
        (Some(id), _) => id,
        (None, GroupModCommand::Delete) => crate::group::GROUP_ALL,
        (None, _) => return Err(bad_setting("group", s, "a group_id=N")),
    };
    let group_type = match (group_type, command) {
        (Some(t), _) => t,
        (None, GroupModCommand::Delete) => GroupType::All,
        (None, _) => {
            return Err(bad_setting(
                "group",
                s,
                "a type=all|select|indirect|fast_failover",
            ));
        }
    };
    let selection = match method {
        None if fields.is_empty() => Selection::Default,
        Some("hash") => Selection::Hash(fields),
        _ if !fields.is_empty() => {
            return Err(ParseError::NotAllowed(
                "fields(...) without selection_method=hash".into(),
            ));
        }
        _ => Selection::Default,
    };
    if affinity_timeout.is_some() && group_type != GroupType::Select {
        return Err(ParseError::NotAllowed(
            "affinity_timeout in a group that is not type=select".into(),
        ));
    }
    if selection != Selection::Default && group_type != GroupType::Select {
        return Err(ParseError::NotAllowed(
            "selection_method in a group that is not type=select".into(),
        ));
    }
    let mut out = Vec::new();
    for toks in buckets {
        out.push(parse_bucket(&toks, group_type)?);
    }
    Ok(GroupMod {
        command,
        group: Group {
            id,
            group_type,
            buckets: out,
            selection,
            affinity_timeout,
        },
    })
}

/// Adds one `fields` entry (a field name; masks are not supported).
fn push_hash_field(fields: &mut Vec<FieldId>, name: &str) -> Result<(), ParseError> {
    let name = name.trim();
    if name.contains('=') || name.contains('/') {
        return Err(bad_setting("fields", name, "field names without masks"));
    }
    let f = FieldId::from_name(name).ok_or_else(|| ParseError::UnknownField {
        name: name.into(),
        suggestion: None,
    })?;
    if fields.contains(&f) {
        return Err(ParseError::DuplicateField(name.into()));
    }
    fields.push(f);
    Ok(())
}

fn parse_bucket(toks: &[&str], t: GroupType) -> Result<Bucket, ParseError> {
    let mut b = Bucket::new(Vec::new());
    b.weight = t.default_weight();
    let mut action_toks: Vec<&str> = Vec::new();
    for (i, tok) in toks.iter().enumerate() {
        if let Some(first) = tok.strip_prefix("actions=") {
            action_toks.push(first);
            action_toks.extend_from_slice(&toks[i + 1..]);
            break;
        }
        let (k, v) = match tok.split_once([':', '=']) {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (*tok, ""),
        };
        match k {
            "weight" => {
                b.weight = parse_uint_bits(v, 16)
                    .ok_or_else(|| bad_setting("weight", v, "a number 0..65535"))?
                    as u16;
            }
            "watch_port" => {
                b.watch_port =
                    parse_port(v).ok_or_else(|| bad_setting("watch_port", v, "a port"))?;
            }
            "watch_group" => {
                b.watch_group = parse_uint_bits(v, 32)
                    .ok_or_else(|| bad_setting("watch_group", v, "a group id"))?
                    as u32;
            }
            "bucket_id" => {}
            // Anything else is an action written without `actions=`.
            _ => action_toks.push(tok),
        }
    }
    if !action_toks.is_empty() {
        let ins = parse_actions(&action_toks.join(","), &Match::any())?;
        if ins.goto_table.is_some()
            || ins.write_metadata.is_some()
            || ins.clear_actions
            || ins.write_actions.is_some()
            || ins.meter.is_some()
        {
            return Err(ParseError::NotAllowed(
                "instructions inside a group bucket".into(),
            ));
        }
        b.actions = ins.apply;
    }
    Ok(b)
}

/// One `dump-groups` line, with its leading space, as OpenFlow 1.3 reports it: without
/// [`Group::selection`], which 1.3 cannot carry (see [`print_group_full`]).
pub fn print_group(g: &Group) -> String {
    print_group_with(g, false)
}

/// [`print_group`] plus the selection method, as ovs-ofctl prints it over OpenFlow 1.5
/// (`selection_method=hash,fields=ip_src` for one field, `fields(a,b)` for more). Parses
/// back to the same group.
pub fn print_group_full(g: &Group) -> String {
    print_group_with(g, true)
}

fn print_group_with(g: &Group, selection: bool) -> String {
    let mut s = format!(" group_id={},type={}", g.id, g.group_type.name());
    if let (true, Selection::Hash(fields)) = (selection, &g.selection) {
        s.push_str(",selection_method=hash");
        let names: Vec<&str> = fields.iter().map(|f| f.info().name).collect();
        match names.as_slice() {
            [] => {}
            [one] => s.push_str(&format!(",fields={one}")),
            many => s.push_str(&format!(",fields({})", many.join(","))),
        }
    }
    if let (true, Some(t)) = (selection, g.affinity_timeout) {
        s.push_str(&format!(",affinity_timeout={t}"));
    }
    let opts = PrintOpts::default();
    for b in &g.buckets {
        s.push_str(",bucket=");
        if b.weight != g.group_type.default_weight() {
            s.push_str(&format!("weight:{},", b.weight));
        }
        if b.watch_port != OfPort::ANY {
            s.push_str(&format!("watch_port:{},", b.watch_port));
        }
        if b.watch_group != GROUP_ANY {
            s.push_str(&format!("watch_group:{},", b.watch_group));
        }
        s.push_str("actions=");
        s.push_str(&actions_text(&b.actions, &opts));
    }
    s
}
