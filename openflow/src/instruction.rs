//! OpenFlow 1.3 instructions (`ofp_instruction`).

use super::action::{Action, decode_actions, encode_actions};
use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err};

/// `ofp_instruction_type` values.
pub mod inst_type {
    pub const GOTO_TABLE: u16 = 1;
    pub const WRITE_METADATA: u16 = 2;
    pub const WRITE_ACTIONS: u16 = 3;
    pub const APPLY_ACTIONS: u16 = 4;
    pub const CLEAR_ACTIONS: u16 = 5;
    pub const METER: u16 = 6;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// One instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    GotoTable(u8),
    WriteMetadata { metadata: u64, mask: u64 },
    WriteActions(Vec<Action>),
    ApplyActions(Vec<Action>),
    ClearActions,
    Meter(u32),
}

/// Decodes instructions filling all of `bytes`.
pub fn decode_instructions(bytes: &[u8]) -> Result<Vec<Instruction>, OfError> {
    let mut r = Reader::new(bytes, ErrorCode::BadInstructionBadLen);
    let mut out = Vec::new();
    while !r.is_empty() {
        let mut hr = r.clone();
        let ty = hr.u16("instruction type")?;
        let len = usize::from(hr.u16("instruction length")?);
        if len < 8 || len % 8 != 0 || len > r.remaining() {
            return err(
                ErrorCode::BadInstructionBadLen,
                format!(
                    "instruction type {ty}: length {len} ({} bytes left)",
                    r.remaining()
                ),
            );
        }
        let body = &r.bytes(len, "instruction")?[4..];
        let mut b = Reader::new(body, ErrorCode::BadInstructionBadLen);
        let fixed = |want: usize| -> Result<(), OfError> {
            if len != want {
                return err(
                    ErrorCode::BadInstructionBadLen,
                    format!("instruction {ty}: length {len}, want {want}"),
                );
            }
            Ok(())
        };
        use inst_type as t;
        let inst = match ty {
            t::GOTO_TABLE => {
                fixed(8)?;
                Instruction::GotoTable(b.u8("goto_table table_id")?)
            }
            t::WRITE_METADATA => {
                fixed(24)?;
                b.skip(4, "write_metadata pad")?;
                let metadata = b.u64("metadata")?;
                let mask = b.u64("metadata mask")?;
                Instruction::WriteMetadata { metadata, mask }
            }
            t::WRITE_ACTIONS | t::APPLY_ACTIONS => {
                b.skip(4, "actions pad")?;
                let actions = decode_actions(b.take_rest())?;
                if ty == t::WRITE_ACTIONS {
                    Instruction::WriteActions(actions)
                } else {
                    Instruction::ApplyActions(actions)
                }
            }
            t::CLEAR_ACTIONS => {
                fixed(8)?;
                Instruction::ClearActions
            }
            t::METER => {
                fixed(8)?;
                Instruction::Meter(b.u32("meter id")?)
            }
            t::EXPERIMENTER => {
                return err(
                    ErrorCode::BadInstructionBadExperimenter,
                    "experimenter instructions are not supported",
                );
            }
            _ => {
                return err(
                    ErrorCode::BadInstructionUnknownInst,
                    format!("unknown instruction type {ty}"),
                );
            }
        };
        if out
            .iter()
            .any(|o: &Instruction| core::mem::discriminant(o) == core::mem::discriminant(&inst))
        {
            return err(
                ErrorCode::BadInstructionUnsupInst,
                format!("instruction type {ty} appears twice"),
            );
        }
        out.push(inst);
    }
    Ok(out)
}

/// Encodes instructions.
pub fn encode_instructions(insts: &[Instruction], out: &mut Vec<u8>) {
    use inst_type as t;
    for i in insts {
        let start = out.len();
        let ty = match i {
            Instruction::GotoTable(_) => t::GOTO_TABLE,
            Instruction::WriteMetadata { .. } => t::WRITE_METADATA,
            Instruction::WriteActions(_) => t::WRITE_ACTIONS,
            Instruction::ApplyActions(_) => t::APPLY_ACTIONS,
            Instruction::ClearActions => t::CLEAR_ACTIONS,
            Instruction::Meter(_) => t::METER,
        };
        out.put_u16(ty);
        out.put_u16(0);
        match i {
            Instruction::GotoTable(id) => {
                out.put_u8(*id);
                out.put_zeros(3);
            }
            Instruction::WriteMetadata { metadata, mask } => {
                out.put_zeros(4);
                out.put_u64(*metadata);
                out.put_u64(*mask);
            }
            Instruction::WriteActions(a) | Instruction::ApplyActions(a) => {
                out.put_zeros(4);
                encode_actions(a, out);
            }
            Instruction::ClearActions => out.put_zeros(4),
            Instruction::Meter(m) => out.put_u32(*m),
        }
        let len = (out.len() - start) as u16;
        out.patch_u16(start + 2, len);
    }
}
