//! The ovs-ofctl flow text syntax: parse flows, actions and groups; print them exactly as
//! `ovs-ofctl -O OpenFlow13 dump-flows` / `dump-groups` do (Open vSwitch 3.1).
//!
//! Parsing normalizes legacy forms (`mod_dl_src:` → `set_field:..->eth_src`, `strip_vlan` →
//! `pop_vlan`, `mod_vlan_vid` → `push_vlan` + `set_field`) the way ovs-ofctl does when it
//! encodes OpenFlow 1.3, so printing a parsed flow gives the text a real switch would dump.

mod actions;
mod group;
mod learn;
mod meter;
mod multipath;
mod parse;
mod print;
mod sample;
pub mod value;

pub use actions::parse_actions;
pub use group::{parse_group, parse_group_mod, print_group, print_group_full};
pub use meter::{
    meter_id_text, parse_meter_filter, parse_meter_mod, print_meter, print_meter_line,
};
pub use parse::{parse_flow, parse_flow_mod, parse_flow_mod_exact, parse_match};
pub use print::{
    PrintOpts, duration_ms, print_actions, print_flow, print_flow_mod, print_instructions,
    print_match,
};

use crate::match_::MatchError;

/// Why a piece of flow text was refused. Each message names the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A match field name that does not exist.
    #[error("unknown field '{name}'{}", did_you_mean(suggestion))]
    UnknownField {
        name: String,
        suggestion: Option<String>,
    },
    /// A field value that does not parse.
    #[error("invalid value '{value}' for {field}: expected {expected}")]
    BadValue {
        field: String,
        value: String,
        expected: String,
    },
    /// A mask on a field that cannot be masked.
    #[error("field {0} cannot be masked")]
    NotMaskable(String),
    /// The same field matched twice.
    #[error("field {0} is matched more than once")]
    DuplicateField(String),
    /// A match that breaks OpenFlow rules (prerequisites, widths).
    #[error("{0}")]
    Match(#[from] MatchError),
    /// A flow setting (`priority`, `table`, ...) with a bad value.
    #[error("invalid {what} '{value}': expected {expected}")]
    BadSetting {
        what: String,
        value: String,
        expected: String,
    },
    /// An action name that does not exist.
    #[error("unknown action '{name}'{}", did_you_mean(suggestion))]
    UnknownAction {
        name: String,
        suggestion: Option<String>,
    },
    /// An action ovs-ofctl knows but this switch does not implement.
    #[error("unsupported action '{0}'")]
    UnsupportedAction(String),
    /// An action with bad arguments.
    #[error("invalid {action} action '{text}': {reason}")]
    BadAction {
        action: String,
        text: String,
        reason: String,
    },
    /// `resubmit` with neither a port nor a table (ovs-ofctl's wording).
    #[error("at least one \"in_port\" or \"table\" must be specified on resubmit")]
    ResubmitNeedsPortOrTable,
    /// `drop` together with other actions.
    #[error("\"drop\" must not be accompanied by any other action or instruction")]
    DropWithOthers,
    /// Instructions out of OpenFlow order, or actions after an instruction.
    #[error(
        "invalid instruction ordering at '{0}': expected meter, apply actions, clear_actions, write_actions, write_metadata, goto_table in that order, each instruction once"
    )]
    InstructionOrder(String),
    /// A flow for add-flow without `actions=`.
    #[error("must specify an action (e.g. 'actions=drop')")]
    MissingActions,
    /// A keyword that is not valid for this command.
    #[error("'{0}' is not allowed here")]
    NotAllowed(String),
    /// A flow keyword this command does not take, as ovs-ofctl words it: `priority` in a
    /// `dump-flows` or non-strict `del-flows` match, `actions` in a delete, `out_port` in a
    /// modify.
    #[error("unknown keyword {0}")]
    UnknownKeyword(String),
    /// A flow keyword without its value (`send_flow_rem` in a delete), as ovs-ofctl words it.
    #[error("field {0} missing value")]
    MissingValue(String),
    /// `cookie=V` without a mask in a delete or dump match (ovs-ofctl's wording).
    #[error("cannot set cookie (to match on a cookie, specify a mask, e.g. cookie={0}/-1)")]
    CookieWithoutMask(String),
    /// Meter text that ovs-ofctl refuses, with its message.
    #[error("{0}")]
    Meter(String),
    /// Parentheses that do not balance.
    #[error("unbalanced parentheses in '{0}'")]
    Unbalanced(String),
}

fn did_you_mean(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// The closest candidate within edit distance 2, for "did you mean" hints.
pub(crate) fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The lines of a flow, group or meter file as ovs-ofctl reads them (`ds_get_preprocessed_line`):
/// a `#` anywhere starts a comment to the end of its line, and lines left blank are skipped.
/// Each line comes trimmed, with its 1-based number in the file. A trailing backslash is kept
/// as written: Open vSwitch does not join continued lines.
pub fn file_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let l = l.split_once('#').map_or(l, |(before, _)| before).trim();
        (!l.is_empty()).then_some((i + 1, l))
    })
}

/// [`split_top`] for separators outside ASCII.
fn split_top_chars<'a>(s: &'a str, seps: &[char]) -> Result<Vec<&'a str>, ParseError> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| ParseError::Unbalanced(s.into()))?
            }
            c if depth == 0 && seps.contains(&c) => {
                out.push(s[start..i].trim());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(ParseError::Unbalanced(s.into()));
    }
    out.push(s[start..].trim());
    out.retain(|p| !p.is_empty());
    Ok(out)
}

/// Splits `s` at any of `seps` outside parentheses; empty pieces are dropped, pieces trimmed.
pub(crate) fn split_top<'a>(s: &'a str, seps: &[char]) -> Result<Vec<&'a str>, ParseError> {
    let mut out = Vec::with_capacity(8);
    let mut depth = 0usize;
    let mut start = 0;
    // Byte-wise: parentheses and the separators are ASCII, and no byte of a multi-byte
    // UTF-8 character is, so every split point is a character boundary.
    if !seps.iter().all(char::is_ascii) {
        return split_top_chars(s, seps);
    }
    for (i, &b) in s.as_bytes().iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| ParseError::Unbalanced(s.into()))?
            }
            b if depth == 0 && b.is_ascii() && seps.contains(&char::from(b)) => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(ParseError::Unbalanced(s.into()));
    }
    out.push(s[start..].trim());
    out.retain(|p| !p.is_empty());
    Ok(out)
}
