//! The management socket `<rundir>/vswitchd.ctl`: one JSON request line, one JSON reply line.
//!
//! It carries the commands that are not OpenFlow (bridges, ports, pods, drop counters, conntrack
//! dumps), and, until a client prefers the OpenFlow socket, flow commands in `ovs-ofctl` text.
//! A request is a typed command, `{"command":{"add-br":{"bridge":"br0"}}}` (what vswitchctl
//! sends), or the same command as words, `{"args":["add-br","br0"]}`, parsed by the same clap
//! grammar ([`MgmtCommand`]). The reply is `{"ok":true,"output":"..."}`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::MgmtCommand;
use crate::control::ControlError;
use crate::rundir::mgmt_socket;
use crate::views::OutputFormat;

/// One request: a typed command, or its words.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Request {
    Typed {
        command: MgmtCommand,
        /// How to print the result (`"json"`: one JSON document); text when absent.
        #[serde(default)]
        format: OutputFormat,
    },
    Words {
        args: Vec<String>,
        #[serde(default)]
        format: OutputFormat,
    },
}

impl Request {
    /// The command it carries (words are parsed by the shared clap grammar) and the format
    /// its result is wanted in.
    pub fn into_command(self) -> Result<(MgmtCommand, OutputFormat), ControlError> {
        match self {
            Request::Typed { command, format } => Ok((command, format)),
            Request::Words { args, format } => MgmtCommand::parse_words(&args)
                .map(|c| (c, format))
                .map_err(|e| ControlError::Usage(e.render().to_string().trim_end().to_string())),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    #[error("cannot connect to {path}: {source} (is vswitchd running with this --rundir?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("management socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed reply from vswitchd: {0}")]
    BadReply(#[from] serde_json::Error),
}

/// Sends one command, as words, and waits for its reply.
pub fn call(rundir: &Path, args: &[String]) -> Result<Reply, MgmtError> {
    send(
        rundir,
        &Request::Words {
            args: args.to_vec(),
            format: OutputFormat::Text,
        },
    )
}

/// Sends one typed command and waits for its reply (text).
pub fn call_command(rundir: &Path, command: &MgmtCommand) -> Result<Reply, MgmtError> {
    call_command_as(rundir, command, OutputFormat::Text)
}

/// Sends one typed command and waits for its reply, printed in `format`.
pub fn call_command_as(
    rundir: &Path,
    command: &MgmtCommand,
    format: OutputFormat,
) -> Result<Reply, MgmtError> {
    send(
        rundir,
        &Request::Typed {
            command: command.clone(),
            format,
        },
    )
}

fn send(rundir: &Path, request: &Request) -> Result<Reply, MgmtError> {
    let path = mgmt_socket(rundir);
    let stream = UnixStream::connect(&path).map_err(|source| MgmtError::Connect {
        path: path.clone(),
        source,
    })?;
    // Large flow sets take a while to compile; a stuck daemon must not hang the CLI forever.
    // A capture answers when it ends: up to its own 300 s after the daemon got the request.
    let wait = match request {
        Request::Typed {
            command: MgmtCommand::Capture { .. },
            ..
        } => Duration::from_secs(300 + 300),
        _ => Duration::from_secs(300),
    };
    stream.set_read_timeout(Some(wait))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    Ok(serde_json::from_str(&reply)?)
}

/// Answers one request line (a JSON [`Request`]) with `handle`: the reply line, newline included.
pub fn answer(
    line: &[u8],
    handle: impl FnOnce(MgmtCommand, OutputFormat) -> Result<String, ControlError>,
) -> Vec<u8> {
    let reply = match serde_json::from_slice::<Request>(line) {
        Ok(req) => match req
            .into_command()
            .and_then(|(command, format)| handle(command, format))
        {
            Ok(output) => Reply { ok: true, output },
            Err(e) => Reply {
                ok: false,
                output: e.to_string(),
            },
        },
        Err(e) => Reply {
            ok: false,
            output: format!("malformed request: {e}"),
        },
    };
    reply_line(&reply)
}

/// A failure reply line that is not about a command (limits, timeouts).
pub fn error_reply(output: &str) -> Vec<u8> {
    reply_line(&Reply {
        ok: false,
        output: output.to_string(),
    })
}

fn reply_line(reply: &Reply) -> Vec<u8> {
    let mut text = serde_json::to_vec(reply).unwrap_or_default();
    text.push(b'\n');
    text
}
