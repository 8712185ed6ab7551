//! The management socket `<rundir>/vswitchd.ctl`: one JSON request line, one JSON reply line.
//!
//! It carries the commands that are not OpenFlow (bridges, ports, drop counters, conntrack dumps),
//! and, until a client prefers the OpenFlow socket, flow commands in `ovs-ofctl` text.
//! The protocol is deliberately tiny: `{"args":["add-br","br0"]}` → `{"ok":true,"output":"..."}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// File name of the management socket inside the run directory.
pub const SOCKET_NAME: &str = "vswitchd.ctl";

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub args: Vec<String>,
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

pub fn socket_path(rundir: &Path) -> PathBuf {
    rundir.join(SOCKET_NAME)
}

/// Sends one command and waits for its reply.
pub fn call(rundir: &Path, args: &[String]) -> Result<Reply, MgmtError> {
    let path = socket_path(rundir);
    let stream = UnixStream::connect(&path).map_err(|source| MgmtError::Connect {
        path: path.clone(),
        source,
    })?;
    // Large flow sets take a while to compile; a stuck daemon must not hang the CLI forever.
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut line = serde_json::to_string(&Request {
        args: args.to_vec(),
    })?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    Ok(serde_json::from_str(&reply)?)
}

/// Reads one request from a connection, answers it with `handle`, and closes.
pub fn serve_one(stream: UnixStream, handle: impl FnOnce(Vec<String>) -> Result<String, String>) {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    // Cap a request at 256 MiB: add-flows ships whole files through here.
    if reader
        .by_ref()
        .take(256 << 20)
        .read_line(&mut line)
        .is_err()
    {
        return;
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => match handle(req.args) {
            Ok(output) => Reply { ok: true, output },
            Err(output) => Reply { ok: false, output },
        },
        Err(e) => Reply {
            ok: false,
            output: format!("malformed request: {e}"),
        },
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = (&stream).write_all(text.as_bytes());
    }
}
