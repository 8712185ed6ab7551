//! GROUP_MOD and the group multipart bodies (desc, stats, features).

use super::action::{Action, decode_actions, encode_actions};
use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err};

/// `group_id` values with special meaning.
pub mod group_id {
    pub const MAX: u32 = 0xffff_ff00;
    pub const ALL: u32 = 0xffff_fffc;
    pub const ANY: u32 = 0xffff_ffff;
}

/// `ofp_group_mod_command`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupModCommand {
    Add = 0,
    Modify = 1,
    Delete = 2,
}

/// `ofp_group_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupType {
    All = 0,
    Select = 1,
    Indirect = 2,
    FastFailover = 3,
}

impl GroupType {
    pub fn from_wire(v: u8) -> Result<GroupType, OfError> {
        Ok(match v {
            0 => GroupType::All,
            1 => GroupType::Select,
            2 => GroupType::Indirect,
            3 => GroupType::FastFailover,
            _ => return err(ErrorCode::GroupModBadType, format!("group type {v}")),
        })
    }
}

/// `ofp_bucket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub weight: u16,
    pub watch_port: u32,
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            weight: 0,
            watch_port: super::action::port::ANY,
            watch_group: group_id::ANY,
            actions: Vec::new(),
        }
    }
}

impl Bucket {
    fn decode_list(bytes: &[u8]) -> Result<Vec<Bucket>, OfError> {
        let mut r = Reader::new(bytes, ErrorCode::GroupModBadBucket);
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.clone().u16("bucket length")?);
            if len < 16 || len % 8 != 0 || len > r.remaining() {
                return err(
                    ErrorCode::GroupModBadBucket,
                    format!("bucket length {len} ({} left)", r.remaining()),
                );
            }
            let mut b = Reader::new(r.bytes(len, "bucket")?, ErrorCode::GroupModBadBucket);
            b.skip(2, "bucket len")?;
            let weight = b.u16("weight")?;
            let watch_port = b.u32("watch_port")?;
            let watch_group = b.u32("watch_group")?;
            b.skip(4, "pad")?;
            let actions = decode_actions(b.take_rest())?;
            // Open vSwitch decodes the actions first, then the watch_port, which must be a port
            // it can represent: below 0xff00 or from 0xffffff00 on (`ofputil_port_from_ofp11`).
            if (0xff00..super::action::port::MAX).contains(&watch_port) {
                return err(
                    ErrorCode::GroupModBadWatch,
                    format!(
                        "watch_port {watch_port:#x} is outside the supported range 0 through \
                         0xfeff or 0xffffff00 through 0xffffffff"
                    ),
                );
            }
            out.push(Bucket {
                weight,
                watch_port,
                watch_group,
                actions,
            });
        }
        Ok(out)
    }

    fn encode_list(buckets: &[Bucket], out: &mut Vec<u8>) {
        for b in buckets {
            let start = out.len();
            out.put_u16(0);
            out.put_u16(b.weight);
            out.put_u32(b.watch_port);
            out.put_u32(b.watch_group);
            out.put_zeros(4);
            encode_actions(&b.actions, out);
            let len = (out.len() - start) as u16;
            out.patch_u16(start, len);
        }
    }
}

/// OFPT_GROUP_MOD body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMod {
    pub command: GroupModCommand,
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

impl GroupMod {
    pub fn decode(r: &mut Reader<'_>) -> Result<GroupMod, OfError> {
        let command = match r.u16("group_mod command")? {
            0 => GroupModCommand::Add,
            1 => GroupModCommand::Modify,
            2 => GroupModCommand::Delete,
            c => {
                return err(
                    ErrorCode::GroupModBadCommand,
                    format!("group_mod command {c}"),
                );
            }
        };
        let group_type = GroupType::from_wire(r.u8("group type")?)?;
        r.skip(1, "pad")?;
        let group_id = r.u32("group_id")?;
        if group_id > group_id::MAX
            && !(command == GroupModCommand::Delete && group_id == group_id::ALL)
        {
            return err(
                ErrorCode::GroupModInvalidGroup,
                format!("group id {group_id:#x} is reserved"),
            );
        }
        let buckets = Bucket::decode_list(r.take_rest())?;
        Ok(GroupMod {
            command,
            group_type,
            group_id,
            buckets,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16(self.command as u16);
        out.put_u8(self.group_type as u8);
        out.put_zeros(1);
        out.put_u32(self.group_id);
        Bucket::encode_list(&self.buckets, out);
    }
}

/// One `ofp_group_desc` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDesc {
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

impl GroupDesc {
    pub(crate) fn decode_list(bytes: &[u8]) -> Result<Vec<GroupDesc>, OfError> {
        let mut r = Reader::new(bytes, ErrorCode::BadRequestBadLen);
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.clone().u16("group_desc length")?);
            if len < 8 || len > r.remaining() {
                return err(
                    ErrorCode::BadRequestBadLen,
                    format!("group_desc length {len}"),
                );
            }
            let mut b = Reader::new(r.bytes(len, "group_desc")?, ErrorCode::BadRequestBadLen);
            b.skip(2, "length")?;
            let group_type = GroupType::from_wire(b.u8("type")?)?;
            b.skip(1, "pad")?;
            let group_id = b.u32("group_id")?;
            let buckets = Bucket::decode_list(b.take_rest())?;
            out.push(GroupDesc {
                group_type,
                group_id,
                buckets,
            });
        }
        Ok(out)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u16(0);
        out.put_u8(self.group_type as u8);
        out.put_zeros(1);
        out.put_u32(self.group_id);
        Bucket::encode_list(&self.buckets, out);
        let len = (out.len() - start) as u16;
        out.patch_u16(start, len);
    }
}

/// One `ofp_group_stats` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    pub group_id: u32,
    pub ref_count: u32,
    pub packet_count: u64,
    pub byte_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    /// `(packet_count, byte_count)` per bucket.
    pub buckets: Vec<(u64, u64)>,
}

impl GroupStats {
    pub(crate) fn decode_list(bytes: &[u8]) -> Result<Vec<GroupStats>, OfError> {
        let mut r = Reader::new(bytes, ErrorCode::BadRequestBadLen);
        let mut out = Vec::new();
        while !r.is_empty() {
            let len = usize::from(r.clone().u16("group_stats length")?);
            if len < 40 || (len - 40) % 16 != 0 || len > r.remaining() {
                return err(
                    ErrorCode::BadRequestBadLen,
                    format!("group_stats length {len}"),
                );
            }
            let mut b = Reader::new(r.bytes(len, "group_stats")?, ErrorCode::BadRequestBadLen);
            b.skip(4, "length+pad")?;
            let mut g = GroupStats {
                group_id: b.u32("group_id")?,
                ref_count: b.u32("ref_count")?,
                ..GroupStats::default()
            };
            b.skip(4, "pad")?;
            g.packet_count = b.u64("packet_count")?;
            g.byte_count = b.u64("byte_count")?;
            g.duration_sec = b.u32("duration_sec")?;
            g.duration_nsec = b.u32("duration_nsec")?;
            while !b.is_empty() {
                g.buckets
                    .push((b.u64("bucket packets")?, b.u64("bucket bytes")?));
            }
            out.push(g);
        }
        Ok(out)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16((40 + 16 * self.buckets.len()) as u16);
        out.put_zeros(2);
        out.put_u32(self.group_id);
        out.put_u32(self.ref_count);
        out.put_zeros(4);
        out.put_u64(self.packet_count);
        out.put_u64(self.byte_count);
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
        for (p, b) in &self.buckets {
            out.put_u64(*p);
            out.put_u64(*b);
        }
    }
}

/// `ofp_group_features`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupFeatures {
    /// Bitmap of supported `GroupType`s (1 << type).
    pub types: u32,
    /// `OFPGFC_*` bits.
    pub capabilities: u32,
    pub max_groups: [u32; 4],
    /// Per type, bitmap of supported `OFPAT_*` (1 << action type).
    pub actions: [u32; 4],
}

impl GroupFeatures {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<GroupFeatures, OfError> {
        let mut g = GroupFeatures {
            types: r.u32("types")?,
            capabilities: r.u32("capabilities")?,
            ..Default::default()
        };
        for m in &mut g.max_groups {
            *m = r.u32("max_groups")?;
        }
        for a in &mut g.actions {
            *a = r.u32("actions")?;
        }
        Ok(g)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.types);
        out.put_u32(self.capabilities);
        for v in self.max_groups.iter().chain(self.actions.iter()) {
            out.put_u32(*v);
        }
    }
}
