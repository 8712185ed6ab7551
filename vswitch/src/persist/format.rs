//! The state file's format: JSON with a header naming the format and its version, flows and
//! groups as the `ovs-ofctl` text the switch parses and prints, so that the file is readable.
//!
//! A file is read whole and checked whole (header, then every field) before anything is
//! applied; a foreign, truncated or newer file is refused with an error that says which.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::agent::config::{RawPod, RawService};

/// The `format` field of every state file.
pub const STATE_FORMAT: &str = "vswitchd-state";
/// Bumped when a reader of the previous version could misread the file.
pub const STATE_VERSION: u32 = 1;
/// The largest state file read (a node with 10k Services and 100k flows stays far below).
pub const MAX_STATE_BYTES: u64 = 512 << 20;

/// Everything the switch restores at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub format: String,
    pub version: u32,
    /// The vswitchd version that wrote the file (informational).
    pub written_by: String,
    pub bridges: Vec<SavedBridge>,
    #[serde(default)]
    pub agent: Option<SavedAgent>,
    /// Zone connection limits set with `ct-set-limits` (absent: none; the node agent's
    /// per-pod limits come back with its pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct_limits: Option<SavedCtLimits>,
}

/// `ct-set-limits` settings: the default for zones without their own, and the zones' own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedCtLimits {
    /// 0: unlimited.
    pub default: u32,
    /// Zone -> its own limit (0: unlimited whatever the default).
    #[serde(default)]
    pub zones: BTreeMap<u16, u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedBridge {
    pub name: String,
    pub ports: Vec<SavedPort>,
    /// Groups as `add-group` text.
    pub groups: Vec<String>,
    /// Meters as `add-meter` text. Absent in files of builds without meters, and left out
    /// when there are none, so that such builds still read the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<String>,
    /// Flows as `add-flow` text (cookie, table, priority, timeouts, flags, match, actions).
    pub flows: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPort {
    pub name: String,
    /// `add-port` arguments (`type=`, `ofport=`, `options:...`).
    pub args: Vec<String>,
    /// Settings of `mod-port` in force (`down`, `no-receive`, `no-forward`); absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mod_port: Vec<String>,
    /// Where a TAP port's device was moved (`ip link set TAP netns POD`), so that the next
    /// start reattaches it there; absent: in the switch's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved: Option<MovedTap>,
}

/// A TAP device living in another network namespace than the switch's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovedTap {
    /// A file naming the namespace (`/run/netns/NAME`, a bind mount as `ip netns` and
    /// container runtimes make).
    pub netns: String,
    /// The device's name there (pods usually rename it, `eth0`).
    pub ifname: String,
}

/// The node agent's inputs and numbering, so that it recompiles the very same pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedAgent {
    /// The node file as last applied (TOML text).
    pub node_file: Option<String>,
    /// Pods added at run time (`add-pod`, the CNI plugin).
    pub pods: BTreeMap<String, RawPod>,
    /// Services set at run time (`set-service`, `set-backends`).
    pub services: Vec<RawService>,
    /// The agent's bridge.
    pub bridge: String,
    /// Pod port name -> ofport.
    pub ofports: BTreeMap<String, u32>,
    /// Service name -> group id.
    pub groups: BTreeMap<String, u32>,
    /// EIPs bound (an address) or unbound (`null`) at run time, by pod name (`set-eip`,
    /// `del-eip`); they win over the pod's `eip` in the node file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eips: BTreeMap<String, Option<String>>,
}

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a regular file")]
    NotRegular(String),
    #[error("{0}: larger than {MAX_STATE_BYTES} bytes")]
    TooLarge(String),
    #[error("{path}: not a {format} file ({why})")]
    Foreign {
        path: String,
        format: &'static str,
        why: String,
    },
    #[error(
        "{path}: {format} version {found}, this vswitchd reads version {supported} (start with --fresh to discard it)"
    )]
    Version {
        path: String,
        format: &'static str,
        found: u32,
        supported: u32,
    },
    #[error("{path}: corrupt or truncated: {why}")]
    Corrupt { path: String, why: String },
}

/// Parses `text` as a file of `format`, version `version` (header first, so a foreign or newer
/// file is named as such rather than as a field error).
pub fn decode<T: serde::de::DeserializeOwned>(
    path: &str,
    text: &str,
    format: &'static str,
    version: u32,
) -> Result<T, FormatError> {
    let corrupt = |why: String| FormatError::Corrupt {
        path: path.to_string(),
        why,
    };
    let foreign = |why: String| FormatError::Foreign {
        path: path.to_string(),
        format,
        why,
    };
    // The header alone first (the rest is skipped, not built: a large connection table as a
    // generic JSON tree would take ten times the file's size), then the file as `T`.
    #[derive(Deserialize)]
    struct Header {
        format: Option<serde_json::Value>,
        version: Option<serde_json::Value>,
    }
    let header: Header = match serde_json::from_str(text) {
        Ok(h) => h,
        // Cut short, or damaged after our header: ours, but corrupt.
        Err(e) if e.is_eof() || text.contains(format) => return Err(corrupt(e.to_string())),
        Err(e) => return Err(foreign(e.to_string())),
    };
    match header.format.as_ref().and_then(|f| f.as_str()) {
        Some(f) if f == format => {}
        Some(f) => return Err(foreign(format!("its format is '{f}'"))),
        None => return Err(foreign("no \"format\" field".into())),
    }
    let found = header
        .version
        .as_ref()
        .and_then(|v| v.as_u64())
        .ok_or_else(|| corrupt("no \"version\" number".into()))?;
    if found != u64::from(version) {
        return Err(FormatError::Version {
            path: path.to_string(),
            format,
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: version,
        });
    }
    serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))
}

impl StateFile {
    pub fn new(bridges: Vec<SavedBridge>, agent: Option<SavedAgent>) -> StateFile {
        StateFile {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            written_by: format!("vswitchd {}", env!("CARGO_PKG_VERSION")),
            bridges,
            agent,
            ct_limits: None,
        }
    }

    pub fn with_ct_limits(mut self, limits: Option<SavedCtLimits>) -> StateFile {
        self.ct_limits = limits;
        self
    }

    pub fn encode(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("state serializes");
        s.push('\n');
        s
    }

    pub fn decode(path: &str, text: &str) -> Result<StateFile, FormatError> {
        decode(path, text, STATE_FORMAT, STATE_VERSION)
    }

    /// Reads the state file at `path`; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<StateFile>, FormatError> {
        match read_capped(path, MAX_STATE_BYTES)? {
            None => Ok(None),
            Some(text) => StateFile::decode(&path.display().to_string(), &text).map(Some),
        }
    }
}

/// Reads a regular file of at most `max` bytes; `Ok(None)` when it does not exist.
pub fn read_capped(path: &Path, max: u64) -> Result<Option<String>, FormatError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let io = |source| FormatError::Io {
        path: shown.clone(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FormatError::NotRegular(shown));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(FormatError::TooLarge(shown));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| FormatError::Corrupt {
            path: shown.clone(),
            why: e.to_string(),
        })
}

/// Replaces `path` with `bytes` so that a crash at any point leaves the old file or the new
/// one, whole: a temporary file beside it, fsync, rename over, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_0600()
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// State files hold the node's configuration: readable by root only.
trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateFile {
        let mut pods = BTreeMap::new();
        pods.insert(
            "p1".to_string(),
            RawPod {
                name: Some("p1".into()),
                port: "tp1".into(),
                kind: Some("tap".into()),
                ip: "172.16.1.11".into(),
                mac: "0a:58:0c:01:00:0b".into(),
                ofport: None,
                allow_from: Some(vec!["10.0.0.0/8".into()]),
                vlan: None,
                security_groups: None,
                eip: None,
                conntrack_limit: None,
            },
        );
        StateFile::new(
            vec![SavedBridge {
                name: "br0".into(),
                ports: vec![SavedPort {
                    name: "tap1".into(),
                    args: vec!["type=tap".into(), "ofport=3".into()],
                    mod_port: vec!["down".into()],
                    moved: Some(MovedTap {
                        netns: "/run/netns/pod1".into(),
                        ifname: "eth0".into(),
                    }),
                }],
                groups: vec!["group_id=1,type=select,bucket=actions=output:3".into()],
                meters: vec!["meter=2,pktps,burst,bands=type=drop,rate=100,burst_size=10".into()],
                flows: vec![
                    "cookie=0x5,table=1,priority=7,ip,actions=group:1".into(),
                    "table=1,priority=8,udp,actions=meter:2,output:3".into(),
                ],
            }],
            Some(SavedAgent {
                node_file: Some("[node]\nname = \"n1\"\n".into()),
                pods,
                services: Vec::new(),
                bridge: "br-int".into(),
                ofports: [("tp1".to_string(), 1)].into_iter().collect(),
                groups: BTreeMap::new(),
                eips: [("a".to_string(), Some("100.100.0.11".to_string()))]
                    .into_iter()
                    .collect(),
            }),
        )
        .with_ct_limits(Some(SavedCtLimits {
            default: 10,
            zones: [(3, 0), (7, 20)].into_iter().collect(),
        }))
    }

    #[test]
    fn a_state_round_trips() {
        let s = sample();
        assert_eq!(StateFile::decode("f", &s.encode()).unwrap(), s);
    }

    #[test]
    fn every_truncation_is_refused_as_corrupt() {
        let text = sample().encode();
        let body = text.trim_end();
        for cut in (1..body.len()).step_by(7) {
            let e = StateFile::decode("f", &body[..cut]).unwrap_err();
            assert!(
                matches!(e, FormatError::Corrupt { .. }),
                "cut at {cut}: {e}"
            );
            assert!(e.to_string().contains("corrupt or truncated"), "{e}");
        }
    }

    #[test]
    fn another_version_or_format_is_refused_by_name() {
        let mut s = sample();
        s.version = STATE_VERSION + 1;
        let e = StateFile::decode("/r/vswitchd.db", &s.encode()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "/r/vswitchd.db: vswitchd-state version {}, this vswitchd reads version {STATE_VERSION} (start with --fresh to discard it)",
                STATE_VERSION + 1
            )
        );
        s.version = STATE_VERSION;
        s.format = "something-else".into();
        let e = StateFile::decode("f", &s.encode()).unwrap_err();
        assert!(e.to_string().contains("not a vswitchd-state file"), "{e}");
        let e = StateFile::decode("f", "[node]\nname = 1\n").unwrap_err();
        assert!(e.to_string().contains("not a vswitchd-state file"), "{e}");
        let e = StateFile::decode("f", "{\"x\": 1}").unwrap_err();
        assert!(e.to_string().contains("not a vswitchd-state file"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = sample()
            .encode()
            .replacen("\"bridges\"", "\"extra\": 1, \"bridges\"", 1);
        let e = StateFile::decode("f", &text).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn an_atomic_write_replaces_the_file_whole() {
        let dir = std::env::temp_dir().join(format!("vswitch-fmt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("vswitchd.db");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, sample().encode().as_bytes()).unwrap();
        assert_eq!(StateFile::load(&p).unwrap().unwrap(), sample());
        assert!(!dir.join("vswitchd.db.tmp").exists());
        assert!(StateFile::load(&dir.join("none")).unwrap().is_none());
        let e = StateFile::load(&dir).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
