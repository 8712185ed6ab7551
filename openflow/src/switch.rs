//! Switch-level bodies: FEATURES_REPLY, switch config, `ofp_port`, PORT_STATUS.

use super::buf::{FixedStr, Put, Reader};
use super::error::OfError;

/// OFPT_FEATURES_REPLY body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeaturesReply {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    pub auxiliary_id: u8,
    /// `OFPC_*` bits.
    pub capabilities: u32,
    pub reserved: u32,
}

/// `OFPC_*` capability bits.
pub mod capabilities {
    pub const FLOW_STATS: u32 = 1 << 0;
    pub const TABLE_STATS: u32 = 1 << 1;
    pub const PORT_STATS: u32 = 1 << 2;
    pub const GROUP_STATS: u32 = 1 << 3;
    pub const IP_REASM: u32 = 1 << 5;
    pub const QUEUE_STATS: u32 = 1 << 6;
    pub const PORT_BLOCKED: u32 = 1 << 8;
}

impl FeaturesReply {
    pub const LEN: usize = 24;

    pub fn decode(r: &mut Reader<'_>) -> Result<FeaturesReply, OfError> {
        let datapath_id = r.u64("datapath_id")?;
        let n_buffers = r.u32("n_buffers")?;
        let n_tables = r.u8("n_tables")?;
        let auxiliary_id = r.u8("auxiliary_id")?;
        r.skip(2, "pad")?;
        let capabilities = r.u32("capabilities")?;
        let reserved = r.u32("reserved")?;
        Ok(FeaturesReply {
            datapath_id,
            n_buffers,
            n_tables,
            auxiliary_id,
            capabilities,
            reserved,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.datapath_id);
        out.put_u32(self.n_buffers);
        out.put_u8(self.n_tables);
        out.put_u8(self.auxiliary_id);
        out.put_zeros(2);
        out.put_u32(self.capabilities);
        out.put_u32(self.reserved);
    }
}

/// GET_CONFIG_REPLY / SET_CONFIG body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchConfig {
    /// `OFPC_FRAG_*` bits.
    pub flags: u16,
    pub miss_send_len: u16,
}

impl SwitchConfig {
    pub fn decode(r: &mut Reader<'_>) -> Result<SwitchConfig, OfError> {
        Ok(SwitchConfig {
            flags: r.u16("config flags")?,
            miss_send_len: r.u16("miss_send_len")?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16(self.flags);
        out.put_u16(self.miss_send_len);
    }
}

/// `ofp_port` (64 bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Port {
    pub port_no: u32,
    pub hw_addr: [u8; 6],
    pub name: FixedStr<16>,
    /// `OFPPC_*` bits.
    pub config: u32,
    /// `OFPPS_*` bits.
    pub state: u32,
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    /// kbps.
    pub curr_speed: u32,
    pub max_speed: u32,
}

/// `OFPPC_*` bits.
pub mod port_config {
    pub const PORT_DOWN: u32 = 1 << 0;
    pub const NO_RECV: u32 = 1 << 2;
    pub const NO_FWD: u32 = 1 << 5;
    pub const NO_PACKET_IN: u32 = 1 << 6;
}

/// `OFPPS_*` bits.
pub mod port_state {
    pub const LINK_DOWN: u32 = 1 << 0;
    pub const BLOCKED: u32 = 1 << 1;
    pub const LIVE: u32 = 1 << 2;
}

/// `ofp_port_reason`: why a PORT_STATUS was sent.
pub mod port_reason {
    pub const ADD: u8 = 0;
    pub const DELETE: u8 = 1;
    pub const MODIFY: u8 = 2;
}

/// OFPT_PORT_MOD body (`ofp_port_mod`, 32 bytes after the header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortMod {
    pub port_no: u32,
    /// Must be the port's address (a sanity check, as in the spec).
    pub hw_addr: [u8; 6],
    /// New `OFPPC_*` bits, of those set in `mask`.
    pub config: u32,
    pub mask: u32,
    /// `OFPPF_*` features to advertise; 0 leaves them.
    pub advertise: u32,
}

impl PortMod {
    pub const LEN: usize = 32;

    pub fn decode(r: &mut Reader<'_>) -> Result<PortMod, OfError> {
        let port_no = r.u32("port_no")?;
        r.skip(4, "pad")?;
        let hw_addr = r.array("hw_addr")?;
        r.skip(2, "pad")?;
        let pm = PortMod {
            port_no,
            hw_addr,
            config: r.u32("config")?,
            mask: r.u32("mask")?,
            advertise: r.u32("advertise")?,
        };
        r.skip(4, "pad")?;
        Ok(pm)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.port_no);
        out.put_zeros(4);
        out.extend_from_slice(&self.hw_addr);
        out.put_zeros(2);
        out.put_u32(self.config);
        out.put_u32(self.mask);
        out.put_u32(self.advertise);
        out.put_zeros(4);
    }
}

impl Port {
    pub const LEN: usize = 64;

    pub fn decode(r: &mut Reader<'_>) -> Result<Port, OfError> {
        let port_no = r.u32("port_no")?;
        r.skip(4, "pad")?;
        let hw_addr = r.array("hw_addr")?;
        r.skip(2, "pad")?;
        let name = FixedStr(r.array("port name")?);
        Ok(Port {
            port_no,
            hw_addr,
            name,
            config: r.u32("config")?,
            state: r.u32("state")?,
            curr: r.u32("curr")?,
            advertised: r.u32("advertised")?,
            supported: r.u32("supported")?,
            peer: r.u32("peer")?,
            curr_speed: r.u32("curr_speed")?,
            max_speed: r.u32("max_speed")?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.port_no);
        out.put_zeros(4);
        out.extend_from_slice(&self.hw_addr);
        out.put_zeros(2);
        out.extend_from_slice(&self.name.0);
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            out.put_u32(v);
        }
    }
}

/// OFPT_PORT_STATUS body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStatus {
    /// 0 add, 1 delete, 2 modify.
    pub reason: u8,
    pub port: Port,
}

impl PortStatus {
    pub fn decode(r: &mut Reader<'_>) -> Result<PortStatus, OfError> {
        let reason = r.u8("port_status reason")?;
        r.skip(7, "pad")?;
        Ok(PortStatus {
            reason,
            port: Port::decode(r)?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.reason);
        out.put_zeros(7);
        self.port.encode(out);
    }
}
