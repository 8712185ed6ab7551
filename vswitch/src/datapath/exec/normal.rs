//! The NORMAL action, resolved per packet (MAC learning changes faster than flows): the input
//! port's VLAN role puts the frame in a VLAN, its source is learned there, and it goes to the
//! port learned for its destination in that VLAN or floods the ports that carry the VLAN,
//! tagged or untagged as each of them says (Open vSwitch's `xlate_normal`).

use encap::FlowKey;
use encap::flowkey::VLAN_PRESENT;
use tap_io::PacketBuf;

use super::{Ctx, DropReason, may_send, output_ofport, pop_vlan, reparse, shift_offload_offsets};
use crate::datapath::mac_learning;

/// `last`: the packet's last use (a learned unicast output may take its buffer). `key`: the
/// packet's key with the walk's in_port and tunnel writes applied.
pub(super) fn run(
    ctx: &mut Ctx,
    pkt: &mut PacketBuf,
    key: &FlowKey,
    parsed: &encap::Parsed,
    last: bool,
) {
    let in_port = key.in_port;
    let vid = key.vlan_tci & 0x0fff;
    let dst = (key.eth_dst[0] & 1 == 0).then_some(key.eth_dst);
    let from_port = ctx.pipeline.ports.get(&in_port);
    // The frame's VLAN: the input port's role decides (a tagged frame on an access port, or a
    // VLAN outside a trunk's list, is refused); from no port (a packet-out from CONTROLLER or
    // NONE) its own.
    let vlan = match from_port.map(|p| p.vlan.input_vlan(vid)) {
        None => vid,
        Some(Some(vlan)) => vlan,
        Some(None) => {
            ctx.bridge.drops.add(DropReason::NormalVlanRefused, 1);
            return;
        }
    };
    // As Open vSwitch: from a port of the bridge, a frame to a reserved address (STP, LACP,
    // LLDP, ...) is dropped before anything is learned, any other has its source learned;
    // from no port nothing is learned, the frame is only looked up or flooded.
    let out = if from_port.is_some() {
        if mac_learning::is_reserved(key.eth_dst) {
            ctx.bridge.drops.add(DropReason::NormalReservedMac, 1);
            return;
        }
        let (learned, out) = mac_learning::learn_and_lookup(
            &ctx.bridge.mac,
            vlan,
            key.eth_src,
            in_port,
            dst,
            ctx.now_ns,
        );
        if learned == Some(mac_learning::Learned::TableFull) {
            ctx.bridge.drops.add(DropReason::MacTableFull, 1);
        }
        out
    } else {
        dst.and_then(|d| mac_learning::lookup(&ctx.bridge.mac, vlan, d, ctx.now_ns))
    };
    let mut tags = Tags::of(pkt, key, parsed);
    if let Some(out) = out {
        if out == in_port {
            // Learned behind the port it came in on: not sent back (no hairpin).
            ctx.bridge.drops.add(DropReason::NormalHairpin, 1);
        } else if !output_in_vlan(ctx, out, vlan, &mut tags, pkt, key, last) {
            ctx.bridge.drops.add(DropReason::TunnelNoRoute, 1);
        }
    } else {
        flood(ctx, pkt, key, vlan, &mut tags);
    }
    if !last {
        tags.restore(ctx, pkt, key);
    }
}

/// Every port but the input port that carries `vlan`; split horizon: what came from a tunnel
/// port is not sent back into the overlay. Ports set down or no-forward are passed by
/// without counting a drop.
fn flood(ctx: &mut Ctx, pkt: &mut PacketBuf, key: &FlowKey, vlan: u16, tags: &mut Tags) {
    let pipeline = ctx.pipeline;
    let from_tunnel = pipeline
        .ports
        .get(&key.in_port)
        .is_some_and(|p| p.kind.is_tunnel());
    for ofport in &pipeline.port_order {
        let Some(info) = pipeline.ports.get(ofport) else {
            continue;
        };
        if *ofport == key.in_port
            || (from_tunnel && info.kind.is_tunnel())
            || !info.vlan.includes(vlan)
            || !may_send(ctx, *ofport)
        {
            continue;
        }
        output_in_vlan(ctx, *ofport, vlan, tags, pkt, key, false);
    }
}

/// Sends the frame out of `ofport` tagged as the port's role says for `vlan` (Open vSwitch's
/// `output_normal`). False as [`output_ofport`]: a flow-based tunnel without `tun_dst`.
fn output_in_vlan(
    ctx: &mut Ctx,
    ofport: u32,
    vlan: u16,
    tags: &mut Tags,
    pkt: &mut PacketBuf,
    key: &FlowKey,
    last: bool,
) -> bool {
    let vid = match ctx.pipeline.ports.get(&ofport) {
        Some(info) => info.vlan.output_vid(vlan),
        None => Some(vlan),
    };
    if !tags.set(ctx, pkt, key, tags.wanted(vid)) {
        return true;
    }
    output_ofport(ctx, ofport, pkt, key, &tags.parsed, last)
}

/// The frame's outer 802.1Q tag as NORMAL changes it port by port, and as it came.
struct Tags {
    /// The tag's TCI as the frame came (`None`: untagged).
    came: Option<u16>,
    /// Its TPID, kept on a tag put back (802.1Q for one added to an untagged frame).
    tpid: u16,
    now: Option<u16>,
    /// The frame as it is now.
    parsed: encap::Parsed,
}

impl Tags {
    fn of(pkt: &PacketBuf, key: &FlowKey, parsed: &encap::Parsed) -> Tags {
        let d = pkt.data();
        let tagged = key.vlan_tci & VLAN_PRESENT != 0 && d.len() >= 16;
        let came = tagged.then(|| u16::from_be_bytes([d[14], d[15]]));
        let tpid = if tagged {
            u16::from_be_bytes([d[12], d[13]])
        } else {
            0x8100
        };
        Tags {
            came,
            tpid,
            now: came,
            parsed: *parsed,
        }
    }

    /// The tag for a port that sends VLAN ID `vid` (`None`: takes the tag off): the frame's
    /// own priority kept, so VLAN 0 with a priority is a priority tag, as Open vSwitch's
    /// `xvlan_put`.
    fn wanted(&self, vid: Option<u16>) -> Option<u16> {
        let tci = vid? | (self.came.unwrap_or(0) & 0xe000);
        (tci != 0).then_some(tci)
    }

    /// Retags the frame for a port; false (counted) when a tag could not be added.
    fn set(
        &mut self,
        ctx: &mut Ctx,
        pkt: &mut PacketBuf,
        key: &FlowKey,
        want: Option<u16>,
    ) -> bool {
        // The DEI bit is left as the frame has it: it is no part of a VLAN.
        self.now.map(|t| t & !0x1000) == want || self.put(ctx, pkt, key, want)
    }

    fn put(
        &mut self,
        ctx: &mut Ctx,
        pkt: &mut PacketBuf,
        key: &FlowKey,
        want: Option<u16>,
    ) -> bool {
        match (self.now, want) {
            (Some(_), Some(tci)) => {
                if let Some(t) = pkt.data_mut().get_mut(14..16) {
                    t.copy_from_slice(&tci.to_be_bytes());
                }
            }
            (None, Some(tci)) => {
                if pkt.insert_vlan_tag(self.tpid, tci).is_err() {
                    ctx.bridge.drops.add(DropReason::VlanMismatch, 1);
                    return false;
                }
                shift_offload_offsets(pkt, 4);
                self.parsed = reparse(pkt, key);
            }
            (Some(_), None) => {
                if !pop_vlan(pkt) {
                    ctx.bridge.drops.add(DropReason::VlanMismatch, 1);
                    return false;
                }
                shift_offload_offsets(pkt, -4);
                self.parsed = reparse(pkt, key);
            }
            (None, None) => {}
        }
        self.now = want;
        true
    }

    /// Puts the frame's own tag back for the actions after NORMAL.
    fn restore(&mut self, ctx: &mut Ctx, pkt: &mut PacketBuf, key: &FlowKey) {
        if self.now != self.came {
            self.put(ctx, pkt, key, self.came);
        }
    }
}
