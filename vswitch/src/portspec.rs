//! `add-port BR NAME [type=..] [ofport=N] [options:key=value]...`: what a port should be.

use std::net::IpAddr;

pub use crate::pipeline::{FromFlow, PortKind};
use crate::port_vlan::{PortVlan, PortVlanError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    pub remote_ip: FromFlow<IpAddr>,
    pub key: FromFlow<u32>,
    pub local_ip: Option<IpAddr>,
    pub dst_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    pub kind: PortKind,
    pub ofport: Option<u32>,
    pub tunnel: Option<TunnelSpec>,
    /// `options:thread=K`: the forwarding thread that polls the port (default: the least
    /// loaded one).
    pub thread: Option<usize>,
    /// `options:n_rxq=N` (AF_PACKET ports): how many forwarding threads receive from the
    /// port, each through a socket of its own in one flow-hashed fanout group (a connection's
    /// frames stay on one thread). Absent: one.
    pub n_rxq: Option<usize>,
    /// `options:rx_skip_udp_dport=P` (AF_PACKET ports): the kernel keeps IPv4 UDP to port P
    /// out of the port's receive ring, e.g. VXLAN on an uplink that shares the underlay with
    /// the tunnel socket.
    pub skip_udp_dport: Option<u16>,
    /// `options:host_rx=true|false` (AF_PACKET ports): whether the host's network stack still
    /// processes the frames arriving on the interface. Absent: off unless the interface has
    /// an address of the host's own when the port opens (`tap_io::HostRx::Auto`).
    pub host_rx: Option<bool>,
    /// `options:xdp=on|auto|off` (afpacket ports). Absent: auto, unless `host_rx=true` or
    /// `rx_skip_udp_dport` (an XDP program would take those frames too).
    pub xdp: Option<XdpMode>,
    /// `tag=`, `trunks=`, `vlan_mode=`: the port's VLAN role for NORMAL.
    pub vlan: PortVlan,
}

/// How an afpacket port uses AF_XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Read and write the interface through an AF_XDP socket fed by a native XDP program
    /// (`tap_io::AfXdpPort`) instead of AF_PACKET. When the kernel or the interface refuses
    /// it, the port falls back to AF_PACKET, the log says why and the port's recorded spec has
    /// no `xdp` option (what runs).
    On,
    /// AF_PACKET, attaching an AF_XDP socket while a flood overruns the receive ring
    /// (`tap_io::SheddingPort`).
    Auto,
    /// AF_PACKET only.
    Off,
}

impl XdpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::On => "on",
            XdpMode::Auto => "auto",
            XdpMode::Off => "off",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortSpecError {
    #[error("unknown port type '{0}' (expected afpacket, tap, vxlan, geneve or internal)")]
    UnknownType(String),
    #[error("bad ofport '{0}' (expected a number from 1 to 65279)")]
    BadOfport(String),
    #[error("bad value '{value}' for options:{key}: {why}")]
    BadOption {
        key: String,
        value: String,
        why: &'static str,
    },
    #[error("unknown option '{0}' (expected remote_ip, key, local_ip or dst_port)")]
    UnknownOption(String),
    #[error(
        "unexpected argument '{0}' (expected type=, ofport=, tag=, trunks=, vlan_mode= or options:KEY=VALUE)"
    )]
    UnexpectedArg(String),
    #[error(transparent)]
    Vlan(#[from] PortVlanError),
    #[error("a tunnel port (vxlan, geneve) needs options:remote_ip=IP or options:remote_ip=flow")]
    MissingRemote,
    #[error("options:{0} only applies to tunnel ports (vxlan, geneve)")]
    TunnelOptionOnPlainPort(String),
    #[error("bad port name '{0}' (1 to 15 characters, no '/', ' ' or ':')")]
    BadName(String),
}

/// Highest ofport a user may assign: 65279, as Open vSwitch's `ofport_request` (it keeps
/// OpenFlow 1.0's 16-bit port numbers, below `OFPP_MAX` 0xff00; a higher OpenFlow 1.3 number
/// is one it refuses in a flow and ovs-ofctl cannot decode in a reply or packet-in).
pub const OFPP_MAX: u32 = 0xfeff;

/// Most receive queues a port may have (`options:n_rxq`).
pub const MAX_RX_QUEUES: usize = 64;

impl PortSpec {
    pub fn parse(name: &str, args: &[String]) -> Result<PortSpec, PortSpecError> {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
            return Err(PortSpecError::BadName(name.to_string()));
        }
        let mut kind = PortKind::AfPacket;
        let mut ofport = None;
        let mut options: Vec<(String, String)> = Vec::new();
        let mut thread = None;
        let mut n_rxq: Option<usize> = None;
        let mut skip_udp_dport: Option<u16> = None;
        let mut host_rx: Option<bool> = None;
        let mut xdp = None;
        let mut vlan = PortVlan::default();
        for arg in args {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| PortSpecError::UnexpectedArg(arg.clone()))?;
            if vlan.take_arg(key, value)? {
                continue;
            }
            match key {
                "type" => {
                    kind = match value {
                        "afpacket" | "system" => PortKind::AfPacket,
                        "tap" => PortKind::Tap,
                        "vxlan" => PortKind::Vxlan,
                        "geneve" => PortKind::Geneve,
                        "internal" => PortKind::Internal,
                        other => return Err(PortSpecError::UnknownType(other.to_string())),
                    }
                }
                "ofport" | "ofport_request" => {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| PortSpecError::BadOfport(value.to_string()))?;
                    if n == 0 || n > OFPP_MAX {
                        return Err(PortSpecError::BadOfport(value.to_string()));
                    }
                    ofport = Some(n);
                }
                "options:thread" => {
                    thread = Some(value.parse().map_err(|_| PortSpecError::BadOption {
                        key: "thread".into(),
                        value: value.to_string(),
                        why: "expected a forwarding thread number (0, 1, ...)",
                    })?);
                }
                "options:n_rxq" => {
                    n_rxq = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| (1..=MAX_RX_QUEUES).contains(n))
                            .ok_or_else(|| PortSpecError::BadOption {
                                key: "n_rxq".into(),
                                value: value.to_string(),
                                why: "expected a number of receive queues from 1 to 64",
                            })?,
                    );
                }
                "options:rx_skip_udp_dport" => {
                    skip_udp_dport = Some(value.parse().map_err(|_| PortSpecError::BadOption {
                        key: "rx_skip_udp_dport".into(),
                        value: value.to_string(),
                        why: "expected a UDP port number",
                    })?);
                }
                "options:host_rx" => {
                    host_rx = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(PortSpecError::BadOption {
                                key: "host_rx".into(),
                                value: value.to_string(),
                                why: "expected true or false",
                            });
                        }
                    });
                }
                "options:xdp" => {
                    xdp = Some(match value {
                        "on" | "true" => XdpMode::On,
                        "off" | "false" => XdpMode::Off,
                        "auto" => XdpMode::Auto,
                        _ => {
                            return Err(PortSpecError::BadOption {
                                key: "xdp".into(),
                                value: value.to_string(),
                                why: "expected on, off or auto",
                            });
                        }
                    });
                }
                _ => match key.strip_prefix("options:") {
                    Some(opt) => options.push((opt.to_string(), value.to_string())),
                    None => return Err(PortSpecError::UnexpectedArg(arg.clone())),
                },
            }
        }
        if let Some(port) = skip_udp_dport.filter(|_| kind != PortKind::AfPacket) {
            return Err(PortSpecError::BadOption {
                key: "rx_skip_udp_dport".into(),
                value: port.to_string(),
                why: "only afpacket ports filter their receive ring",
            });
        }
        if let Some(n) = n_rxq.filter(|n| *n > 1) {
            let bad = |why| {
                Err(PortSpecError::BadOption {
                    key: "n_rxq".into(),
                    value: n.to_string(),
                    why,
                })
            };
            if kind != PortKind::AfPacket {
                return bad("only afpacket ports spread their receive over threads");
            }
            if matches!(xdp, Some(XdpMode::On | XdpMode::Auto)) {
                return bad("one AF_XDP socket takes all the port's frames (use xdp=off)");
            }
        }
        if let Some(v) = host_rx.filter(|_| kind != PortKind::AfPacket) {
            return Err(PortSpecError::BadOption {
                key: "host_rx".into(),
                value: v.to_string(),
                why: "only afpacket ports share their interface with the host stack",
            });
        }
        if let Some(mode) = xdp.filter(|&m| m != XdpMode::Off) {
            let v = mode.as_str();
            let bad = |why| {
                Err(PortSpecError::BadOption {
                    key: "xdp".into(),
                    value: v.into(),
                    why,
                })
            };
            if kind != PortKind::AfPacket {
                return bad("only afpacket ports open an existing interface");
            }
            if host_rx == Some(true) {
                return bad(
                    "an AF_XDP socket takes every frame from the host stack (host_rx=true)",
                );
            }
            if skip_udp_dport.is_some() {
                return bad("an AF_XDP socket has no rx_skip_udp_dport filter");
            }
        }
        vlan.check()?;
        // `xdp=off` means nothing on other ports: recorded as not given.
        if kind != PortKind::AfPacket {
            xdp = None;
        }
        let tunnel = if kind.is_tunnel() {
            let default_port = match kind {
                PortKind::Geneve => encap::geneve::GENEVE_PORT,
                _ => encap::vxlan::VXLAN_PORT,
            };
            Some(parse_tunnel(&options, default_port)?)
        } else {
            if let Some((k, _)) = options.first() {
                return Err(PortSpecError::TunnelOptionOnPlainPort(k.clone()));
            }
            None
        };
        Ok(PortSpec {
            name: name.to_string(),
            kind,
            ofport,
            tunnel,
            thread,
            n_rxq,
            skip_udp_dport,
            host_rx,
            xdp,
            vlan,
        })
    }
}

impl PortSpec {
    /// How many forwarding threads receive from the port.
    pub fn rx_queues(&self) -> usize {
        self.n_rxq.unwrap_or(1)
    }

    /// Whether this AF_PACKET port attaches an AF_XDP socket while a flood overruns it (not
    /// when spread over threads: the XDP socket would take every thread's frames).
    pub fn sheds(&self) -> bool {
        self.kind == PortKind::AfPacket
            && self.rx_queues() == 1
            && match self.xdp {
                Some(mode) => mode == XdpMode::Auto,
                None => self.host_rx != Some(true) && self.skip_udp_dport.is_none(),
            }
    }

    /// The `add-port` arguments that parse back into this spec (the state file keeps ports so).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        args.push(format!("type={}", self.kind.as_str()));
        if let Some(n) = self.ofport {
            args.push(format!("ofport={n}"));
        }
        if let Some(t) = &self.tunnel {
            args.push(match t.remote_ip {
                FromFlow::Fixed(ip) => format!("options:remote_ip={ip}"),
                FromFlow::Flow => "options:remote_ip=flow".to_string(),
            });
            args.push(match t.key {
                FromFlow::Fixed(k) => format!("options:key={k}"),
                FromFlow::Flow => "options:key=flow".to_string(),
            });
            if let Some(ip) = t.local_ip {
                args.push(format!("options:local_ip={ip}"));
            }
            args.push(format!("options:dst_port={}", t.dst_port));
        }
        if let Some(t) = self.thread {
            args.push(format!("options:thread={t}"));
        }
        if let Some(n) = self.n_rxq {
            args.push(format!("options:n_rxq={n}"));
        }
        if let Some(p) = self.skip_udp_dport {
            args.push(format!("options:rx_skip_udp_dport={p}"));
        }
        if let Some(h) = self.host_rx {
            args.push(format!("options:host_rx={h}"));
        }
        if let Some(mode) = self.xdp {
            args.push(format!("options:xdp={}", mode.as_str()));
        }
        args.extend(self.vlan.to_args());
        args
    }
}

fn parse_tunnel(
    options: &[(String, String)],
    default_port: u16,
) -> Result<TunnelSpec, PortSpecError> {
    let bad = |key: &str, value: &str, why| PortSpecError::BadOption {
        key: key.to_string(),
        value: value.to_string(),
        why,
    };
    let mut remote_ip = None;
    let mut key = FromFlow::Fixed(0);
    let mut local_ip = None;
    let mut dst_port = default_port;
    for (k, v) in options {
        match k.as_str() {
            "remote_ip" => {
                remote_ip = Some(if v == "flow" {
                    FromFlow::Flow
                } else {
                    FromFlow::Fixed(v.parse().map_err(|_| bad(k, v, "not an IP address"))?)
                })
            }
            "key" | "in_key" | "out_key" => {
                key = if v == "flow" {
                    FromFlow::Flow
                } else {
                    let n = parse_u32(v).ok_or_else(|| bad(k, v, "not a number"))?;
                    if n >= 1 << 24 {
                        return Err(bad(k, v, "a VNI has 24 bits"));
                    }
                    FromFlow::Fixed(n)
                }
            }
            "local_ip" => local_ip = Some(v.parse().map_err(|_| bad(k, v, "not an IP address"))?),
            "dst_port" => {
                dst_port = v
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad(k, v, "not a UDP port"))?
            }
            _ => return Err(PortSpecError::UnknownOption(k.clone())),
        }
    }
    Ok(TunnelSpec {
        remote_ip: remote_ip.ok_or(PortSpecError::MissingRemote)?,
        key,
        local_ip,
        dst_port,
    })
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_spec_round_trips_through_its_arguments() {
        let cases: [(&str, &[&str]); 5] = [
            (
                "eth1",
                &["options:thread=1", "options:rx_skip_udp_dport=4789"],
            ),
            ("eth2", &["options:n_rxq=4", "options:xdp=off"]),
            ("tap1", &["type=tap", "ofport=7", "tag=10"]),
            ("br0", &["type=internal"]),
            (
                "vx0",
                &[
                    "type=vxlan",
                    "options:remote_ip=flow",
                    "options:key=0x10",
                    "options:local_ip=10.0.0.1",
                    "options:dst_port=4790",
                ],
            ),
        ];
        for (name, a) in cases {
            let spec = PortSpec::parse(name, &args(a)).unwrap();
            assert_eq!(PortSpec::parse(name, &spec.to_args()).unwrap(), spec);
        }
    }

    #[test]
    fn thread_and_receive_filter_options() {
        let p = PortSpec::parse(
            "eth1",
            &args(&["options:thread=1", "options:rx_skip_udp_dport=4789"]),
        )
        .unwrap();
        assert_eq!((p.thread, p.skip_udp_dport), (Some(1), Some(4789)));
        let tap = PortSpec::parse("t", &args(&["type=tap", "options:rx_skip_udp_dport=4789"]));
        assert_eq!(
            tap.unwrap_err().to_string(),
            "bad value '4789' for options:rx_skip_udp_dport: only afpacket ports filter their receive ring"
        );
        let p = PortSpec::parse("p", &args(&["options:host_rx=true"])).unwrap();
        assert_eq!(p.host_rx, Some(true));
        let p = PortSpec::parse("p", &args(&["options:host_rx=false"])).unwrap();
        assert_eq!(p.host_rx, Some(false));
        assert_eq!(PortSpec::parse("p", &[]).unwrap().host_rx, None);
        let bad = PortSpec::parse("p", &args(&["options:host_rx=maybe"])).unwrap_err();
        assert!(bad.to_string().contains("expected true or false"), "{bad}");
        let p = PortSpec::parse("p", &args(&["options:xdp=on"])).unwrap();
        assert_eq!(p.xdp, Some(XdpMode::On));
        assert!(!p.sheds(), "an AF_XDP port has nothing to shed");
        assert_eq!(PortSpec::parse("p", &p.to_args()).unwrap(), p);
        assert_eq!(PortSpec::parse("p", &[]).unwrap().xdp, None);
        assert!(PortSpec::parse("p", &[]).unwrap().sheds());
        for (arg, sheds) in [("options:xdp=off", false), ("options:xdp=auto", true)] {
            let p = PortSpec::parse("p", &args(&[arg])).unwrap();
            assert_eq!(p.sheds(), sheds, "{arg}");
            assert_eq!(PortSpec::parse("p", &p.to_args()).unwrap(), p);
        }
        let kept = PortSpec::parse("p", &args(&["options:host_rx=true"])).unwrap();
        assert!(!kept.sheds(), "host_rx=true keeps the port AF_PACKET only");
        let tap = PortSpec::parse("p", &args(&["type=tap"])).unwrap();
        assert!(!tap.sheds());
        for bad in [
            &["options:xdp=maybe"][..],
            &["type=tap", "options:xdp=on"],
            &["options:xdp=on", "options:host_rx=true"],
            &["options:xdp=on", "options:rx_skip_udp_dport=4789"],
            &["type=tap", "options:xdp=auto"],
            &["options:xdp=auto", "options:host_rx=true"],
        ] {
            assert!(PortSpec::parse("p", &args(bad)).is_err(), "{bad:?}");
        }
        let bad = PortSpec::parse("t", &args(&["type=tap", "options:host_rx=false"])).unwrap_err();
        assert!(bad.to_string().contains("only afpacket"), "{bad}");
        let bad = PortSpec::parse("p", &args(&["options:thread=x"])).unwrap_err();
        assert!(bad.to_string().contains("options:thread"), "{bad}");
    }

    /// `n_rxq`: AF_PACKET ports only, 1 to 64, no AF_XDP with more than one; a spread port
    /// does not shed (one XDP socket would take every thread's frames).
    #[test]
    fn receive_queues() {
        let p = PortSpec::parse("p", &args(&["options:n_rxq=2"])).unwrap();
        assert_eq!((p.n_rxq, p.rx_queues(), p.sheds()), (Some(2), 2, false));
        let one = PortSpec::parse("p", &args(&["options:n_rxq=1"])).unwrap();
        assert_eq!((one.rx_queues(), one.sheds()), (1, true));
        assert_eq!(PortSpec::parse("p", &[]).unwrap().rx_queues(), 1);
        for (bad, says) in [
            (&["options:n_rxq=0"][..], "from 1 to 64"),
            (&["options:n_rxq=65"], "from 1 to 64"),
            (&["options:n_rxq=two"], "from 1 to 64"),
            (&["type=tap", "options:n_rxq=2"], "only afpacket"),
            (&["options:n_rxq=2", "options:xdp=on"], "AF_XDP"),
            (&["options:n_rxq=2", "options:xdp=auto"], "AF_XDP"),
        ] {
            let e = PortSpec::parse("p", &args(bad)).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("n_rxq"), "{bad:?}: {e}");
        }
        // One queue is any port's: nothing to refuse.
        assert!(PortSpec::parse("t", &args(&["type=tap", "options:n_rxq=1"])).is_ok());
    }

    #[test]
    fn plain_port_defaults_to_afpacket() {
        let spec = PortSpec::parse("veth0", &[]).unwrap();
        assert_eq!(spec.kind, PortKind::AfPacket);
        assert_eq!(spec.ofport, None);
        assert!(spec.tunnel.is_none());
    }

    #[test]
    fn vxlan_port_with_flow_key() {
        let spec = PortSpec::parse(
            "vx0",
            &args(&[
                "type=vxlan",
                "ofport=9",
                "options:remote_ip=flow",
                "options:key=flow",
            ]),
        )
        .unwrap();
        let t = spec.tunnel.unwrap();
        assert_eq!(t.remote_ip, FromFlow::Flow);
        assert_eq!(t.key, FromFlow::Flow);
        assert_eq!(t.dst_port, 4789);
        assert_eq!(spec.ofport, Some(9));
    }

    #[test]
    fn vxlan_fixed_remote_and_vni() {
        let spec = PortSpec::parse(
            "vx1",
            &args(&[
                "type=vxlan",
                "options:remote_ip=192.168.0.12",
                "options:key=0x10",
                "options:local_ip=192.168.0.11",
                "options:dst_port=8472",
            ]),
        )
        .unwrap();
        let t = spec.tunnel.unwrap();
        assert_eq!(
            t.remote_ip,
            FromFlow::Fixed("192.168.0.12".parse().unwrap())
        );
        assert_eq!(t.key, FromFlow::Fixed(16));
        assert_eq!(t.local_ip, Some("192.168.0.11".parse().unwrap()));
        assert_eq!(t.dst_port, 8472);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            PortSpec::parse("p", &args(&["type=gre"])).unwrap_err(),
            PortSpecError::UnknownType("gre".into())
        );
        assert_eq!(
            PortSpec::parse("p", &args(&["ofport=0"])).unwrap_err(),
            PortSpecError::BadOfport("0".into())
        );
        // A port Open vSwitch can represent (and output to): 1..=65279.
        assert_eq!(
            PortSpec::parse("p", &args(&["ofport=65280"])).unwrap_err(),
            PortSpecError::BadOfport("65280".into())
        );
        assert_eq!(
            PortSpec::parse("p", &args(&["ofport=70000"])).unwrap_err(),
            PortSpecError::BadOfport("70000".into())
        );
        assert_eq!(
            PortSpec::parse("p", &args(&["ofport=65279"]))
                .unwrap()
                .ofport,
            Some(65279)
        );
        assert_eq!(
            PortSpec::parse("p", &args(&["type=vxlan"])).unwrap_err(),
            PortSpecError::MissingRemote
        );
        assert!(matches!(
            PortSpec::parse(
                "p",
                &args(&[
                    "type=vxlan",
                    "options:remote_ip=1.2.3.4",
                    "options:key=16777216"
                ])
            ),
            Err(PortSpecError::BadOption { .. })
        ));
        assert_eq!(
            PortSpec::parse("p", &args(&["options:key=5"])).unwrap_err(),
            PortSpecError::TunnelOptionOnPlainPort("key".into())
        );
        assert!(PortSpec::parse("this-name-is-too-long", &[]).is_err());
    }
}
