//! The plugin's inputs: the `CNI_*` environment and the network configuration on stdin.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Result, code};

/// CNI versions whose configuration and result formats this plugin speaks (0.3.0 introduced
/// the result format used here; 1.1.0 added STATUS and GC).
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The version of output written before a configuration could be read.
pub const DEFAULT_VERSION: &str = "1.0.0";

pub const DEFAULT_RUNDIR: &str = "/run/vswitch";
pub const DEFAULT_BRIDGE: &str = "br-int";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// The `CNI_*` variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
    pub path: Vec<PathBuf>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn invalid_env(msg: String) -> CniError {
    CniError::new(code::INVALID_ENV, msg)
}

/// `CNI_COMMAND`, checked.
pub fn command() -> Result<Command> {
    let c = var("CNI_COMMAND").ok_or_else(|| invalid_env("CNI_COMMAND is not set".into()))?;
    Command::parse(&c).ok_or_else(|| {
        invalid_env(format!(
            "CNI_COMMAND {c:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"
        ))
    })
}

impl Env {
    pub fn read() -> Env {
        Env {
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
            path: var("CNI_PATH")
                .map(|p| {
                    p.split(':')
                        .filter(|s| !s.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Checks what `cmd` needs: ADD and CHECK the container id, netns, interface name and
    /// plugin path; DEL the container id and interface name (the netns may be gone, and
    /// without a plugin path only its IPAM step fails: see `del` in main.rs); GC the plugin
    /// path.
    pub fn validate(&self, cmd: Command) -> Result<()> {
        let needs_container = matches!(cmd, Command::Add | Command::Del | Command::Check);
        if needs_container {
            let id = self
                .container_id
                .as_deref()
                .ok_or_else(|| invalid_env("CNI_CONTAINERID is not set".into()))?;
            if !valid_container_id(id) {
                return Err(invalid_env(format!(
                    "CNI_CONTAINERID {id:?} is invalid (an alphanumeric character, then alphanumerics, '_', '.' or '-')"
                )));
            }
            let ifname = self
                .ifname
                .as_deref()
                .ok_or_else(|| invalid_env("CNI_IFNAME is not set".into()))?;
            if !valid_ifname(ifname) {
                return Err(invalid_env(format!(
                    "CNI_IFNAME {ifname:?} is not a valid interface name"
                )));
            }
        }
        if matches!(cmd, Command::Add | Command::Check) {
            let netns = self
                .netns
                .as_deref()
                .ok_or_else(|| invalid_env("CNI_NETNS is not set".into()))?;
            if !std::path::Path::new(netns).exists() {
                return Err(invalid_env(format!("CNI_NETNS {netns} does not exist")));
            }
        }
        if matches!(cmd, Command::Add | Command::Check | Command::Gc) && self.path.is_empty() {
            return Err(invalid_env(
                "CNI_PATH is not set (the IPAM plugin is looked up there)".into(),
            ));
        }
        Ok(())
    }

    pub fn container_id(&self) -> &str {
        self.container_id.as_deref().unwrap_or_default()
    }

    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or_default()
    }

    /// The `MAC=` key of `CNI_ARGS` ("K=V;K=V"), if any. Other keys (K8S_POD_NAME, ...,
    /// IgnoreUnknown) are ignored.
    pub fn mac_arg(&self) -> Result<Option<String>> {
        let Some(args) = self.args.as_deref() else {
            return Ok(None);
        };
        for kv in args.split(';').filter(|s| !s.is_empty()) {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(invalid_env(format!("CNI_ARGS: {kv:?} is not KEY=VALUE")));
            };
            if k == "MAC" {
                return parse_mac(v)
                    .map(Some)
                    .ok_or_else(|| invalid_env(format!("CNI_ARGS: MAC={v} is not a MAC address")));
            }
        }
        Ok(None)
    }
}

/// The spec's container id: an alphanumeric, then alphanumerics, `_`, `.` or `-`.
pub fn valid_container_id(id: &str) -> bool {
    let mut c = id.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

/// Linux's interface name rules (and the spec's): 1..15 bytes, not `.`/`..`, no `/`, `:` or
/// whitespace.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// `xx:xx:xx:xx:xx:xx` (or with `-`), lower-cased; `None` when it is not six hex bytes.
pub fn parse_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

/// The pod MAC when none is asked for: `0a:58` and the IPv4 address, as Kubernetes network
/// plugins do (locally administered, unique as the address is).
pub fn mac_for_ip(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// A `major.minor.patch` version, compared numerically.
pub fn version_tuple(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let t = (it.next()??, it.next()??, it.next()??);
    if it.next().is_some() {
        return None;
    }
    Some(t)
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Top-level keys of a network configuration this plugin takes (anything else is refused
/// with code 2, as are the spec's `cni.dev/` keys it does not know): its own, the ones runtimes
/// add (`prevResult`, `runtimeConfig`, `capabilities`), and `args` and `cniVersions`, which
/// inform and ask for nothing.
const KNOWN_KEYS: [&str; 12] = [
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "rundir",
    "bridge",
    "mtu",
    "ipam",
    "prevResult",
    "runtimeConfig",
    "capabilities",
    "args",
];

/// The spec's runtime-injected keys this plugin reads.
const KNOWN_CNI_DEV_KEYS: [&str; 1] = ["cni.dev/valid-attachments"];

/// The capabilities (and so `runtimeConfig` keys) this plugin implements.
const CAPABILITIES: [&str; 1] = ["mac"];

/// Refuses, with code 2 ("unsupported field", naming the key and its value), what this plugin
/// would otherwise accept without doing: an unknown key (a typo such as `"mut"`, or a
/// well-known one it does not implement, such as `dns` or `ipMasq`), a capability other than
/// `mac`, or a `runtimeConfig` key for one.
fn refuse_unsupported_fields(raw: &Value) -> Result<()> {
    let refuse = |key: &str, value: &Value| {
        Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            format!("unsupported field {key}: {value} (vswitch-cni does not implement it)"),
        ))
    };
    let Some(fields) = raw.as_object() else {
        return Ok(());
    };
    for (key, value) in fields {
        if !KNOWN_KEYS.contains(&key.as_str()) && !KNOWN_CNI_DEV_KEYS.contains(&key.as_str()) {
            return refuse(key, value);
        }
    }
    if let Some(caps) = fields.get("capabilities").and_then(Value::as_object) {
        for (cap, on) in caps {
            if !CAPABILITIES.contains(&cap.as_str()) && *on != Value::Bool(false) {
                return refuse(&format!("capabilities.{cap}"), on);
            }
        }
    }
    if let Some(rc) = fields.get("runtimeConfig").and_then(Value::as_object) {
        for (key, value) in rc {
            if !CAPABILITIES.contains(&key.as_str()) {
                return refuse(&format!("runtimeConfig.{key}"), value);
            }
        }
    }
    Ok(())
}

/// The plugin's network configuration (keys outside [`KNOWN_KEYS`] are refused by
/// [`Config::refuse_unsupported_fields`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    #[serde(default = "default_rundir")]
    pub rundir: PathBuf,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ipam: Option<Value>,
    #[serde(default)]
    pub prev_result: Option<Value>,
    #[serde(default)]
    pub runtime_config: Option<RuntimeConfig>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// `runtimeConfig` keys this plugin uses (capability `mac`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub mac: Option<String>,
}

fn default_rundir() -> PathBuf {
    PathBuf::from(DEFAULT_RUNDIR)
}

fn default_bridge() -> String {
    DEFAULT_BRIDGE.to_string()
}

/// The configuration as read (for the IPAM plugin, which gets it unchanged) and as parsed.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw: Value,
    pub conf: NetConf,
}

impl Config {
    /// Parses stdin's bytes: not JSON → 6, not a valid configuration → 7, a version this
    /// plugin does not speak → 1. Fields it does not implement are checked apart
    /// ([`refuse_unsupported_fields`](Self::refuse_unsupported_fields)).
    pub fn parse(bytes: &[u8]) -> Result<Config> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("cannot decode the network configuration: {e}"),
            )
        })?;
        let conf: NetConf = serde_json::from_value(raw.clone()).map_err(|e| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("invalid network configuration: {e}"),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {:?} is not supported (supported: {})",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let bad = |m: String| Err(CniError::new(code::INVALID_CONFIG, m));
        if conf.name.is_empty() {
            return bad("name must not be empty".into());
        }
        if conf.plugin_type.is_empty() {
            return bad("type must not be empty".into());
        }
        if !conf.rundir.is_absolute() {
            return bad(format!(
                "rundir {} must be an absolute path",
                conf.rundir.display()
            ));
        }
        if conf.bridge.is_empty() {
            return bad("bridge must not be empty".into());
        }
        if let Some(m) = conf.mtu
            && !(576..=65535).contains(&m)
        {
            return bad(format!("mtu {m} is outside 576..65535"));
        }
        if let Some(mac) = conf.runtime_config.as_ref().and_then(|r| r.mac.as_deref())
            && parse_mac(mac).is_none()
        {
            return bad(format!("runtimeConfig.mac {mac:?} is not a MAC address"));
        }
        Ok(Config { raw, conf })
    }

    /// `ipam.type`: required by ADD, DEL and CHECK.
    pub fn ipam_type(&self) -> Result<String> {
        match self.conf.ipam.as_ref().map(|i| i.get("type")) {
            Some(Some(Value::String(t))) if !t.is_empty() && !t.contains('/') => Ok(t.clone()),
            Some(Some(t)) => Err(CniError::new(
                code::INVALID_CONFIG,
                format!("ipam.type {t} is not a plugin name"),
            )),
            _ => Err(CniError::new(
                code::INVALID_CONFIG,
                "ipam.type is missing: an IPAM plugin (e.g. host-local) allocates the pod addresses",
            )),
        }
    }

    pub fn version(&self) -> &str {
        &self.conf.cni_version
    }

    /// Refuses (code 2) a field this plugin does not implement. Checked for ADD, CHECK and
    /// STATUS, not for DEL and GC: a configuration an older plugin took must still tear down
    /// what it set up.
    pub fn refuse_unsupported_fields(&self) -> Result<()> {
        refuse_unsupported_fields(&self.raw)
    }

    /// Refuses (code 1) a command this configuration's version does not have: CHECK came
    /// with 0.4.0, STATUS and GC with 1.1.0 (as the reference plugins' `skel` does).
    pub fn allows(&self, cmd: Command) -> Result<()> {
        let (name, since) = match cmd {
            Command::Check => ("CHECK", "0.4.0"),
            Command::Status => ("STATUS", "1.1.0"),
            Command::Gc => ("GC", "1.1.0"),
            Command::Add | Command::Del | Command::Version => return Ok(()),
        };
        if self.at_least(since) {
            return Ok(());
        }
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {} does not have {name} (it came with {since})",
                self.version()
            ),
        ))
    }

    /// True when the configuration's version is at least `v`.
    pub fn at_least(&self, v: &str) -> bool {
        version_tuple(&self.conf.cni_version) >= version_tuple(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_and_ifnames() {
        assert!(valid_container_id("abc-1.2_3"));
        assert!(!valid_container_id("-abc"));
        assert!(!valid_container_id(""));
        assert!(!valid_container_id("a b"));
        assert!(valid_ifname("eth0"));
        assert!(!valid_ifname("0123456789abcdef"));
        assert!(!valid_ifname(".."));
        assert!(!valid_ifname("a:b"));
        assert!(!valid_ifname("a/b"));
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("0A-58-ac-10-01-05").as_deref(),
            Some("0a:58:ac:10:01:05")
        );
        assert!(parse_mac("0a:58:ac:10:01").is_none());
        assert!(parse_mac("0a:58:ac:10:01:0g").is_none());
        assert_eq!(
            mac_for_ip(Ipv4Addr::new(172, 16, 1, 5)),
            "0a:58:ac:10:01:05"
        );
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = Config::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"}}"#,
        )
        .expect("valid");
        assert_eq!(c.conf.rundir, PathBuf::from("/run/vswitch"));
        assert_eq!(c.conf.bridge, "br-int");
        assert_eq!(c.ipam_type().expect("ipam"), "host-local");
        assert_eq!(Config::parse(b"{").unwrap_err().code, code::DECODE);
        assert_eq!(
            Config::parse(br#"{"cniVersion":"1.0.0","type":"x"}"#)
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        assert_eq!(
            Config::parse(br#"{"cniVersion":"0.2.0","name":"n","type":"x"}"#)
                .unwrap_err()
                .code,
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            Config::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"x","mtu":10}"#)
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        let no_ipam = Config::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"x"}"#)
            .expect("valid without ipam");
        assert_eq!(no_ipam.ipam_type().unwrap_err().code, code::INVALID_CONFIG);
    }

    #[test]
    fn unsupported_fields_are_code_2() {
        let base =
            r#""cniVersion":"1.0.0","name":"n","type":"vswitch-cni","ipam":{"type":"host-local"}"#;
        let parse = |extra: &str| {
            Config::parse(format!("{{{base}{extra}}}").as_bytes())
                .and_then(|c| c.refuse_unsupported_fields().map(|()| c))
        };
        for extra in [
            r#","mut":1400"#,
            r#","dns":{"nameservers":["10.96.0.10"]}"#,
            r#","ipMasq":true"#,
            r#","cni.dev/frobnicate":1"#,
            r#","capabilities":{"portMappings":true}"#,
            r#","runtimeConfig":{"portMappings":[]}"#,
        ] {
            let e = parse(extra).unwrap_err();
            assert_eq!(e.code, code::UNSUPPORTED_FIELD, "{extra}: {e}");
        }
        assert!(
            parse(r#","mut":1400"#)
                .unwrap_err()
                .msg
                .contains("mut: 1400")
        );
        for extra in [
            r#","capabilities":{"mac":true,"portMappings":false}"#,
            r#","runtimeConfig":{"mac":"0a:58:ac:10:01:05"}"#,
            r#","args":{"cni":{"labels":[]}},"cniVersions":["1.0.0"]"#,
            r#","cni.dev/valid-attachments":[]"#,
        ] {
            parse(extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
        }
    }

    #[test]
    fn commands_need_the_version_that_brought_them() {
        let with = |v: &str| {
            Config::parse(
                format!(r#"{{"cniVersion":"{v}","name":"n","type":"vswitch-cni"}}"#).as_bytes(),
            )
            .expect("valid")
        };
        assert_eq!(
            with("0.3.1").allows(Command::Check).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        with("0.4.0")
            .allows(Command::Check)
            .expect("CHECK in 0.4.0");
        for cmd in [Command::Status, Command::Gc] {
            assert_eq!(
                with("1.0.0").allows(cmd).unwrap_err().code,
                code::INCOMPATIBLE_VERSION
            );
            with("1.1.0").allows(cmd).expect("1.1.0");
        }
        with("0.3.0").allows(Command::Add).expect("ADD");
        with("0.3.0").allows(Command::Del).expect("DEL");
    }

    #[test]
    fn versions_compare() {
        assert!(version_tuple("1.0.0") < version_tuple("1.1.0"));
        assert!(version_tuple("0.4.0") < version_tuple("1.0.0"));
        assert!(version_tuple("1.0").is_none());
    }
}
