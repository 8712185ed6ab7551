//! FLOW_MOD, FLOW_REMOVED, PACKET_IN and PACKET_OUT bodies.

use super::action::{Action, decode_actions, encode_actions};
use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err};
use super::instruction::{Instruction, decode_instructions, encode_instructions};
use super::oxm::Match;

/// `buffer_id` meaning "no buffered packet".
pub const NO_BUFFER: u32 = 0xffff_ffff;
/// `table_id` meaning "all tables" (delete, stats).
pub const TABLE_ALL: u8 = 0xff;
/// `out_group` meaning "any group".
pub const GROUP_ANY: u32 = 0xffff_ffff;

/// `ofp_flow_mod_command`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowModCommand {
    Add = 0,
    Modify = 1,
    ModifyStrict = 2,
    Delete = 3,
    DeleteStrict = 4,
}

impl FlowModCommand {
    pub fn from_wire(v: u8) -> Result<FlowModCommand, OfError> {
        Ok(match v {
            0 => FlowModCommand::Add,
            1 => FlowModCommand::Modify,
            2 => FlowModCommand::ModifyStrict,
            3 => FlowModCommand::Delete,
            4 => FlowModCommand::DeleteStrict,
            _ => {
                return err(
                    ErrorCode::FlowModBadCommand,
                    format!("flow_mod command {v}"),
                );
            }
        })
    }
}

/// `OFPFF_*` flow-mod flags.
pub mod flow_flags {
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    pub const RESET_COUNTS: u16 = 1 << 2;
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    pub const NO_BYT_COUNTS: u16 = 1 << 4;
    pub const ALL: u16 = 0x1f;
}

/// OFPT_FLOW_MOD body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    pub out_port: u32,
    pub out_group: u32,
    pub flags: u16,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl Default for FlowMod {
    fn default() -> Self {
        FlowMod {
            cookie: 0,
            cookie_mask: 0,
            table_id: 0,
            command: FlowModCommand::Add,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: 0x8000,
            buffer_id: NO_BUFFER,
            out_port: super::action::port::ANY,
            out_group: GROUP_ANY,
            flags: 0,
            match_: Match::any(),
            instructions: Vec::new(),
        }
    }
}

impl FlowMod {
    pub fn decode(r: &mut Reader<'_>) -> Result<FlowMod, OfError> {
        let cookie = r.u64("cookie")?;
        let cookie_mask = r.u64("cookie_mask")?;
        let table_id = r.u8("table_id")?;
        let command = FlowModCommand::from_wire(r.u8("command")?)?;
        let idle_timeout = r.u16("idle_timeout")?;
        let hard_timeout = r.u16("hard_timeout")?;
        let priority = r.u16("priority")?;
        let buffer_id = r.u32("buffer_id")?;
        let out_port = r.u32("out_port")?;
        let out_group = r.u32("out_group")?;
        let flags = r.u16("flags")?;
        r.skip(2, "pad")?;
        if flags & !flow_flags::ALL != 0 {
            return err(
                ErrorCode::FlowModBadFlags,
                format!("unknown flow_mod flags {flags:#x}"),
            );
        }
        if table_id == TABLE_ALL
            && matches!(
                command,
                FlowModCommand::Add | FlowModCommand::Modify | FlowModCommand::ModifyStrict
            )
        {
            return err(
                ErrorCode::FlowModBadTableId,
                "table 255 (all) is only valid for delete",
            );
        }
        let match_ = Match::decode(r)?;
        let instructions = decode_instructions(r.take_rest())?;
        Ok(FlowMod {
            cookie,
            cookie_mask,
            table_id,
            command,
            idle_timeout,
            hard_timeout,
            priority,
            buffer_id,
            out_port,
            out_group,
            flags,
            match_,
            instructions,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.cookie);
        out.put_u64(self.cookie_mask);
        out.put_u8(self.table_id);
        out.put_u8(self.command as u8);
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u16(self.priority);
        out.put_u32(self.buffer_id);
        out.put_u32(self.out_port);
        out.put_u32(self.out_group);
        out.put_u16(self.flags);
        out.put_zeros(2);
        self.match_.encode(out);
        encode_instructions(&self.instructions, out);
    }
}

/// OFPT_FLOW_REMOVED body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowRemoved {
    pub cookie: u64,
    pub priority: u16,
    /// 0 idle timeout, 1 hard timeout, 2 delete, 3 group delete.
    pub reason: u8,
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
}

impl FlowRemoved {
    pub fn decode(r: &mut Reader<'_>) -> Result<FlowRemoved, OfError> {
        Ok(FlowRemoved {
            cookie: r.u64("cookie")?,
            priority: r.u16("priority")?,
            reason: r.u8("reason")?,
            table_id: r.u8("table_id")?,
            duration_sec: r.u32("duration_sec")?,
            duration_nsec: r.u32("duration_nsec")?,
            idle_timeout: r.u16("idle_timeout")?,
            hard_timeout: r.u16("hard_timeout")?,
            packet_count: r.u64("packet_count")?,
            byte_count: r.u64("byte_count")?,
            match_: Match::decode(r)?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.cookie);
        out.put_u16(self.priority);
        out.put_u8(self.reason);
        out.put_u8(self.table_id);
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u64(self.packet_count);
        out.put_u64(self.byte_count);
        self.match_.encode(out);
    }
}

/// OFPT_PACKET_IN body (OpenFlow 1.3 layout).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketIn {
    pub buffer_id: u32,
    pub total_len: u16,
    /// 0 no match, 1 action, 2 invalid ttl.
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    /// Pipeline fields (at least `in_port`).
    pub match_: Match,
    pub data: Vec<u8>,
}

impl PacketIn {
    pub fn decode(r: &mut Reader<'_>) -> Result<PacketIn, OfError> {
        let buffer_id = r.u32("buffer_id")?;
        let total_len = r.u16("total_len")?;
        let reason = r.u8("reason")?;
        let table_id = r.u8("table_id")?;
        let cookie = r.u64("cookie")?;
        let match_ = Match::decode(r)?;
        r.skip(2, "pad")?;
        Ok(PacketIn {
            buffer_id,
            total_len,
            reason,
            table_id,
            cookie,
            match_,
            data: r.take_rest().to_vec(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.buffer_id);
        out.put_u16(self.total_len);
        out.put_u8(self.reason);
        out.put_u8(self.table_id);
        out.put_u64(self.cookie);
        self.match_.encode(out);
        out.put_zeros(2);
        out.extend_from_slice(&self.data);
    }
}

/// OFPT_PACKET_OUT body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketOut {
    pub buffer_id: u32,
    pub in_port: u32,
    pub actions: Vec<Action>,
    pub data: Vec<u8>,
}

impl PacketOut {
    pub fn decode(r: &mut Reader<'_>) -> Result<PacketOut, OfError> {
        let buffer_id = r.u32("buffer_id")?;
        let in_port = r.u32("in_port")?;
        let actions_len = usize::from(r.u16("actions_len")?);
        r.skip(6, "pad")?;
        if actions_len > r.remaining() {
            return err(
                ErrorCode::BadRequestBadLen,
                format!(
                    "packet_out actions_len {actions_len} exceeds the {} bytes left",
                    r.remaining()
                ),
            );
        }
        let actions = decode_actions(r.bytes(actions_len, "packet_out actions")?)?;
        Ok(PacketOut {
            buffer_id,
            in_port,
            actions,
            data: r.take_rest().to_vec(),
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.buffer_id);
        out.put_u32(self.in_port);
        let len_at = out.len();
        out.put_u16(0);
        out.put_zeros(6);
        let start = out.len();
        encode_actions(&self.actions, out);
        let len = (out.len() - start) as u16;
        out.patch_u16(len_at, len);
        out.extend_from_slice(&self.data);
    }
}
