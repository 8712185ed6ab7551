//! Meters (`OFPT_METER_MOD`): per-flow rate limiters with drop bands, as Open vSwitch 3.1's
//! userspace datapath implements them.
//!
//! A flow names a meter with the `meter:N` instruction; every packet of the flow passes the
//! meter before the flow's actions. A band drops the packets above its rate (`kbps` or
//! `pktps`, never both); `burst` lets a band carry `burst_size` (kilobits or packets) of
//! credit, otherwise the burst is one second's worth of the rate. Only drop bands are
//! executed: a `dscp_remark` band is refused with `OFPMMFC_BAD_BAND`, as Open vSwitch's
//! userspace datapath does.

/// Largest usable meter id (`OFPM13_MAX`).
pub const METER_MAX: u32 = 0xffff_0000;
/// The slow-path meter (`OFPM13_SLOWPATH`): Open vSwitch rate-limits upcalls with it.
pub const METER_SLOWPATH: u32 = 0xffff_fffd;
/// The controller meter (`OFPM13_CONTROLLER`): Open vSwitch rate-limits packet-ins with it.
pub const METER_CONTROLLER: u32 = 0xffff_fffe;
/// "All meters" in a delete or stats request (`OFPM13_ALL`).
pub const METER_ALL: u32 = 0xffff_ffff;
/// Meters a bridge holds at most (Open vSwitch's userspace datapath: `MAX_METERS`).
pub const MAX_METERS: u32 = 262_144;
/// Bands a meter holds at most (Open vSwitch's userspace datapath: `MAX_BANDS`).
pub const MAX_BANDS: usize = 8;

/// `OFPMBT13_DROP`.
pub const BAND_DROP: u16 = 1;
/// `OFPMBT13_DSCP_REMARK`.
pub const BAND_DSCP_REMARK: u16 = 2;

/// `OFPMF13_*` meter flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MeterFlags(pub u16);

impl MeterFlags {
    /// Rates in kilobits per second.
    pub const KBPS: u16 = 1 << 0;
    /// Rates in packets per second.
    pub const PKTPS: u16 = 1 << 1;
    /// Bands carry a `burst_size`.
    pub const BURST: u16 = 1 << 2;
    /// Keep statistics (always kept here, as in Open vSwitch).
    pub const STATS: u16 = 1 << 3;
    /// Every flag this switch knows.
    pub const ALL: u16 = Self::KBPS | Self::PKTPS | Self::BURST | Self::STATS;
    /// (bit, name) in the order ovs-ofctl prints and parses them.
    pub const NAMES: [(u16, &'static str); 4] = [
        (Self::KBPS, "kbps"),
        (Self::PKTPS, "pktps"),
        (Self::BURST, "burst"),
        (Self::STATS, "stats"),
    ];

    pub fn contains(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// One band of a meter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MeterBand {
    /// `OFPMBT13_*` ([`BAND_DROP`] is the only one executed).
    pub band_type: u16,
    /// kbps or packets per second, by the meter's flags.
    pub rate: u32,
    /// kilobits or packets; 0 = one second's worth of `rate`.
    pub burst_size: u32,
    /// `dscp_remark` only.
    pub prec_level: u8,
}

impl MeterBand {
    /// A drop band.
    pub fn drop(rate: u32, burst_size: u32) -> MeterBand {
        MeterBand {
            band_type: BAND_DROP,
            rate,
            burst_size,
            prec_level: 0,
        }
    }
}

/// A meter as installed in the switch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Meter {
    pub id: u32,
    pub flags: MeterFlags,
    pub bands: Vec<MeterBand>,
}

/// `OFPMC13_*` commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeterModCommand {
    Add,
    Modify,
    Delete,
}

/// A meter-mod request. For `Delete`, only `meter.id` matters (may be [`METER_ALL`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MeterMod {
    pub command: MeterModCommand,
    pub meter: Meter,
}
