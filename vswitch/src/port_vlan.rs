//! A port's VLAN role for the NORMAL action: Open vSwitch's Port columns `vlan_mode`, `tag` and
//! `trunks` (`add-port BR NAME tag=10`, `trunks=10,20`, `vlan_mode=native-untagged`).
//!
//! Only NORMAL reads them, as in Open vSwitch: a frame's VLAN is decided by the port it came in
//! on (an access port's untagged frames belong to its `tag`), learned and flooded within that
//! VLAN, and tagged or untagged for each port it leaves by. Explicit outputs, FLOOD and ALL
//! send the frame as it is.

/// `vlan_mode`. Without one a port with a `tag` is an access port, else a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanMode {
    /// Untagged frames only (and priority-tagged ones), all in the port's `tag`; sent untagged.
    Access,
    /// Tagged frames of the `trunks` VLANs (all VLANs without a list; untagged frames are
    /// VLAN 0, so a list without 0 refuses them); sent with their tag.
    Trunk,
    /// A trunk whose untagged frames belong to the `tag` VLAN; that VLAN is sent tagged.
    NativeTagged,
    /// As `NativeTagged`, but the `tag` VLAN is sent untagged.
    NativeUntagged,
}

impl VlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VlanMode::Access => "access",
            VlanMode::Trunk => "trunk",
            VlanMode::NativeTagged => "native-tagged",
            VlanMode::NativeUntagged => "native-untagged",
        }
    }

    fn parse(s: &str) -> Result<VlanMode, PortVlanError> {
        Ok(match s {
            "access" => VlanMode::Access,
            "trunk" => VlanMode::Trunk,
            "native-tagged" => VlanMode::NativeTagged,
            "native-untagged" => VlanMode::NativeUntagged,
            "dot1q-tunnel" => return Err(PortVlanError::Dot1qTunnel),
            other => return Err(PortVlanError::BadMode(other.to_string())),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortVlanError {
    #[error("bad {key} '{value}' (expected a VLAN ID from 0 to 4095)")]
    BadVid { key: &'static str, value: String },
    #[error("unknown vlan_mode '{0}' (expected access, trunk, native-tagged or native-untagged)")]
    BadMode(String),
    #[error("vlan_mode=dot1q-tunnel (802.1ad QinQ) is not supported")]
    Dot1qTunnel,
    #[error("vlan_mode={0} needs a tag (the VLAN of the port's untagged frames)")]
    MissingTag(&'static str),
    #[error("a trunk port carries its frames' own VLANs: tag= applies to access and native ports")]
    TagOnTrunk,
    #[error("an access port carries one VLAN, its tag: trunks= applies to trunk and native ports")]
    TrunksOnAccess,
}

/// What `add-port` was given (kept as given: the state file and `list-ports` show it so).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortVlan {
    pub mode: Option<VlanMode>,
    pub tag: Option<u16>,
    /// Sorted, without repeats; empty = every VLAN.
    pub trunks: Vec<u16>,
}

impl PortVlan {
    /// Takes one `key=value` argument of `add-port` if it is a VLAN setting (`tag`, `trunks`,
    /// `vlan_mode`); `Ok(false)` for any other key.
    pub fn take_arg(&mut self, key: &str, value: &str) -> Result<bool, PortVlanError> {
        match key {
            "tag" => self.tag = Some(parse_vid("tag", value)?),
            "trunks" => {
                let list = value.trim_start_matches('[').trim_end_matches(']');
                let mut trunks = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|v| parse_vid("trunks", v))
                    .collect::<Result<Vec<u16>, _>>()?;
                trunks.sort_unstable();
                trunks.dedup();
                self.trunks = trunks;
            }
            "vlan_mode" => self.mode = Some(VlanMode::parse(value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Refuses a combination a part of which would be ignored.
    pub fn check(&self) -> Result<(), PortVlanError> {
        match self.effective_mode() {
            VlanMode::Access if !self.trunks.is_empty() => Err(PortVlanError::TrunksOnAccess),
            VlanMode::Trunk if self.tag.is_some() => Err(PortVlanError::TagOnTrunk),
            m @ (VlanMode::NativeTagged | VlanMode::NativeUntagged) if self.tag.is_none() => {
                Err(PortVlanError::MissingTag(m.as_str()))
            }
            // `vlan_mode=access` without a tag: VLAN 0, the untagged frames, as Open vSwitch.
            _ => Ok(()),
        }
    }

    pub fn effective_mode(&self) -> VlanMode {
        self.mode.unwrap_or(if self.tag.is_some() {
            VlanMode::Access
        } else {
            VlanMode::Trunk
        })
    }

    /// The `add-port` arguments for these settings.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(m) = self.mode {
            args.push(format!("vlan_mode={}", m.as_str()));
        }
        if let Some(t) = self.tag {
            args.push(format!("tag={t}"));
        }
        if !self.trunks.is_empty() {
            let list: Vec<String> = self.trunks.iter().map(u16::to_string).collect();
            args.push(format!("trunks={}", list.join(",")));
        }
        args
    }

    /// The role NORMAL plays these settings by.
    pub fn role(&self) -> VlanRole {
        let mode = self.effective_mode();
        let tag = self.tag.unwrap_or(0);
        let listed = (!self.trunks.is_empty()).then(|| VlanSet::of(&self.trunks));
        let trunks = match mode {
            VlanMode::Access => None,
            VlanMode::Trunk => listed,
            // As Open vSwitch (`bundle_set`): a native port always trunks its native VLAN and
            // never VLAN 0 (its untagged frames are the native VLAN's).
            VlanMode::NativeTagged | VlanMode::NativeUntagged if tag != 0 => {
                let mut set = listed.unwrap_or_else(VlanSet::all);
                set.insert(tag);
                set.remove(0);
                Some(set)
            }
            VlanMode::NativeTagged | VlanMode::NativeUntagged => listed,
        };
        VlanRole {
            mode,
            tag,
            trunks: trunks.map(Box::new),
        }
    }
}

fn parse_vid(key: &'static str, value: &str) -> Result<u16, PortVlanError> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|v| *v < 4096)
        .ok_or_else(|| PortVlanError::BadVid {
            key,
            value: value.to_string(),
        })
}

/// A set of VLAN IDs (0..4096) as a bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanSet([u64; 64]);

impl VlanSet {
    fn of(vids: &[u16]) -> VlanSet {
        let mut set = VlanSet([0; 64]);
        for v in vids {
            set.insert(*v);
        }
        set
    }

    fn all() -> VlanSet {
        VlanSet([u64::MAX; 64])
    }

    fn insert(&mut self, vid: u16) {
        self.0[usize::from(vid >> 6) & 63] |= 1 << (vid & 63);
    }

    fn remove(&mut self, vid: u16) {
        self.0[usize::from(vid >> 6) & 63] &= !(1 << (vid & 63));
    }

    pub fn contains(&self, vid: u16) -> bool {
        self.0[usize::from(vid >> 6) & 63] & (1 << (vid & 63)) != 0
    }
}

/// How NORMAL treats a port's frames: Open vSwitch's `input_vid_is_valid`,
/// `xvlan_input_translate`, `xbundle_includes_vlan` and `xvlan_output_translate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanRole {
    mode: VlanMode,
    /// The access or native VLAN (0 for a trunk).
    tag: u16,
    /// The VLANs a trunk or native port carries tagged; `None` = all (never for access).
    trunks: Option<Box<VlanSet>>,
}

impl VlanRole {
    /// A trunk of every VLAN: frames keep their tags both ways (the default).
    pub fn is_plain_trunk(&self) -> bool {
        self.mode == VlanMode::Trunk && self.trunks.is_none()
    }

    fn trunks_vlan(&self, vlan: u16) -> bool {
        self.mode != VlanMode::Access && self.trunks.as_ref().is_none_or(|t| t.contains(vlan))
    }

    /// The VLAN a frame that came in with VLAN ID `vid` (0: untagged or priority-tagged)
    /// belongs to, or `None` when the port does not take it (a tagged frame on an access port,
    /// a VLAN outside a trunk's list).
    pub fn input_vlan(&self, vid: u16) -> Option<u16> {
        match self.mode {
            VlanMode::Access => (vid == 0).then_some(self.tag),
            VlanMode::NativeTagged | VlanMode::NativeUntagged if vid == 0 => Some(self.tag),
            _ => self.trunks_vlan(vid).then_some(vid),
        }
    }

    /// Whether frames of `vlan` may leave by this port (NORMAL's flood). A native port's
    /// own VLAN is in its trunks (see [`PortVlan::role`]).
    pub fn includes(&self, vlan: u16) -> bool {
        match self.mode {
            VlanMode::Access => vlan == self.tag,
            _ => self.trunks_vlan(vlan),
        }
    }

    /// The VLAN ID a frame of `vlan` leaves this port with, or `None` when its outer tag
    /// comes off (an access port; a native-untagged port's own VLAN). A VLAN ID of 0 still
    /// leaves as a priority tag when the frame came with a priority.
    pub fn output_vid(&self, vlan: u16) -> Option<u16> {
        match self.mode {
            VlanMode::Access => None,
            VlanMode::NativeUntagged if vlan == self.tag => None,
            VlanMode::Trunk | VlanMode::NativeTagged | VlanMode::NativeUntagged => Some(vlan),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vlan(args: &[(&str, &str)]) -> Result<PortVlan, PortVlanError> {
        let mut v = PortVlan::default();
        for (k, val) in args {
            assert!(v.take_arg(k, val)?, "{k} is a VLAN key");
        }
        v.check()?;
        Ok(v)
    }

    #[test]
    fn settings_parse_check_and_round_trip() {
        let v = vlan(&[("tag", "10")]).unwrap();
        assert_eq!(v.effective_mode(), VlanMode::Access);
        let v = vlan(&[("trunks", "[30,10,20,10]")]).unwrap();
        assert_eq!(
            (v.effective_mode(), v.trunks.clone()),
            (VlanMode::Trunk, vec![10, 20, 30])
        );
        assert_eq!(v.to_args(), ["trunks=10,20,30"]);
        let v = vlan(&[
            ("vlan_mode", "native-untagged"),
            ("tag", "5"),
            ("trunks", "6"),
        ])
        .unwrap();
        let mut back = PortVlan::default();
        for a in v.to_args() {
            let (k, val) = a.split_once('=').unwrap();
            back.take_arg(k, val).unwrap();
        }
        assert_eq!(back, v);
        assert!(!PortVlan::default().take_arg("type", "tap").unwrap());
    }

    #[test]
    fn what_would_be_ignored_is_refused() {
        let err = |a: &[(&str, &str)]| vlan(a).unwrap_err().to_string();
        assert!(err(&[("tag", "4096")]).contains("0 to 4095"));
        assert!(err(&[("trunks", "1,x")]).contains("bad trunks 'x'"));
        assert!(err(&[("vlan_mode", "dot1q-tunnel")]).contains("not supported"));
        assert!(err(&[("vlan_mode", "hybrid")]).contains("unknown vlan_mode"));
        assert!(err(&[("tag", "1"), ("trunks", "2")]).contains("trunks= applies"));
        assert!(err(&[("vlan_mode", "trunk"), ("tag", "2")]).contains("tag= applies"));
        assert!(err(&[("vlan_mode", "native-tagged")]).contains("needs a tag"));
    }

    #[test]
    fn an_access_port_takes_untagged_frames_into_its_vlan_and_sends_them_untagged() {
        let r = vlan(&[("tag", "10")]).unwrap().role();
        assert_eq!(r.input_vlan(0), Some(10));
        assert_eq!(
            r.input_vlan(10),
            None,
            "a tagged frame, even of its own VLAN"
        );
        assert!(r.includes(10) && !r.includes(11) && !r.includes(0));
        assert_eq!(r.output_vid(10), None);
    }

    #[test]
    fn a_trunk_carries_its_list_and_keeps_tags() {
        let all = PortVlan::default().role();
        assert!(all.is_plain_trunk());
        assert_eq!(
            (all.input_vlan(0), all.input_vlan(4095)),
            (Some(0), Some(4095))
        );
        assert_eq!(all.output_vid(7), Some(7));
        let r = vlan(&[("trunks", "10,20")]).unwrap().role();
        assert!(!r.is_plain_trunk());
        assert_eq!(r.input_vlan(20), Some(20));
        assert_eq!(r.input_vlan(30), None);
        assert_eq!(r.input_vlan(0), None, "untagged is VLAN 0, not listed");
        assert!(r.includes(10) && !r.includes(0));
        let with0 = vlan(&[("trunks", "0,10")]).unwrap().role();
        assert_eq!(with0.input_vlan(0), Some(0));
    }

    #[test]
    fn native_ports_map_untagged_frames_to_their_tag() {
        let t = vlan(&[
            ("vlan_mode", "native-tagged"),
            ("tag", "10"),
            ("trunks", "20"),
        ])
        .unwrap()
        .role();
        assert_eq!(t.input_vlan(0), Some(10));
        assert_eq!(
            t.input_vlan(10),
            Some(10),
            "the native VLAN is always trunked"
        );
        assert_eq!(t.input_vlan(20), Some(20));
        assert_eq!(t.input_vlan(30), None);
        assert_eq!((t.output_vid(10), t.output_vid(20)), (Some(10), Some(20)));
        let u = vlan(&[("vlan_mode", "native-untagged"), ("tag", "10")])
            .unwrap()
            .role();
        assert_eq!(u.input_vlan(300), Some(300), "no list: every VLAN");
        assert!(
            !u.includes(0),
            "never VLAN 0: the untagged frames are VLAN 10's"
        );
        assert_eq!((u.output_vid(10), u.output_vid(300)), (None, Some(300)));
    }
}
