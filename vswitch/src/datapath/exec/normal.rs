//! The NORMAL action, resolved per packet (MAC learning changes faster than flows): the input
//! port's VLAN role puts the frame in a VLAN, its source is learned there, and it goes to the
//! port learned for its destination in that VLAN or floods the ports that carry the VLAN,
//! tagged or untagged as each of them says (Open vSwitch's `xlate_normal`).

use encap::FlowKey;
use encap::flowkey::VLAN_PRESENT;
use tap_io::PacketBuf;

use super::{Ctx, DropReason, may_send, output_port, pop_vlan, reparse, shift_offload_offsets};
use crate::datapath::mac_learning;
use crate::pipeline::PortInfo;

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
    let pipeline = ctx.pipeline;
    let from_port = pipeline.ports.get(&in_port);
    // The frame's VLAN: the input port's role decides (a tagged frame on an access port, or a
    // VLAN outside a trunk's list, is refused); from no port (a packet-out from CONTROLLER or
    // NONE), or with no roles on the bridge, its own.
    let vlan = match from_port.filter(|_| pipeline.vlan_roles) {
        None => vid,
        Some(p) => match p.vlan.input_vlan(vid) {
            Some(vlan) => vlan,
            None => {
                ctx.bridge.drops.add(DropReason::NormalVlanRefused, 1);
                return;
            }
        },
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
    // Without VLAN roles every port sends the frame as it came: no tag work at all.
    let mut tags = pipeline.vlan_roles.then(|| Tags::of(pkt, key, parsed));
    match out.map(|o| (o, pipeline.ports.get(&o))) {
        Some((out, _)) if out == in_port => {
            // Learned behind the port it came in on: not sent back (no hairpin).
            ctx.bridge.drops.add(DropReason::NormalHairpin, 1);
        }
        Some((_, None)) => ctx.bridge.drops.add(DropReason::PortDown, 1),
        // A port that no longer carries the VLAN (its role changed since) is flooded past.
        Some((_, Some(info))) if info.vlan.includes(vlan) => {
            if !output_in_vlan(ctx, info, vlan, &mut tags, pkt, key, parsed, last) {
                ctx.bridge.drops.add(DropReason::TunnelNoRoute, 1);
            }
        }
        _ => {
            let from_tunnel = from_port.is_some_and(|p| p.kind.is_tunnel());
            flood(ctx, pkt, key, parsed, vlan, from_tunnel, &mut tags)
        }
    }
    if let Some(tags) = tags.as_mut().filter(|_| !last) {
        tags.restore(ctx, pkt, key);
    }
}

/// Every port but the input port that carries `vlan`; split horizon: what came from a tunnel
/// port is not sent back into the overlay. Ports set down or no-forward are passed by
/// without counting a drop.
fn flood(
    ctx: &mut Ctx,
    pkt: &mut PacketBuf,
    key: &FlowKey,
    parsed: &encap::Parsed,
    vlan: u16,
    from_tunnel: bool,
    tags: &mut Option<Tags>,
) {
    let pipeline = ctx.pipeline;
    for ofport in &pipeline.port_order {
        let Some(info) = pipeline.ports.get(ofport) else {
            continue;
        };
        if *ofport == key.in_port
            || (from_tunnel && info.kind.is_tunnel())
            || !info.vlan.includes(vlan)
            || !may_send(ctx, info)
        {
            continue;
        }
        output_in_vlan(ctx, info, vlan, tags, pkt, key, parsed, false);
    }
}

/// Sends the frame out of the port tagged as its role says for `vlan` (Open vSwitch's
/// `output_normal`); `tags` is `None` when no port has a role (the frame goes as it came).
/// False as [`output_port`]: a flow-based tunnel without `tun_dst`.
#[allow(clippy::too_many_arguments)]
fn output_in_vlan(
    ctx: &mut Ctx,
    info: &PortInfo,
    vlan: u16,
    tags: &mut Option<Tags>,
    pkt: &mut PacketBuf,
    key: &FlowKey,
    parsed: &encap::Parsed,
    last: bool,
) -> bool {
    let Some(tags) = tags.as_mut() else {
        return output_port(ctx, info, pkt, key, parsed, last);
    };
    if !tags.set(ctx, pkt, key, tags.wanted(info.vlan.output_vid(vlan))) {
        return true;
    }
    // An ICMP error about the frame (too big for a tunnel) goes back tagged as it came.
    ctx.normal_came = (tags.now != tags.came).then_some(tags.came.map(|tci| (tags.tpid, tci)));
    let sent = output_port(ctx, info, pkt, key, &tags.parsed, last);
    ctx.normal_came = None;
    sent
}

/// Gives an ICMP error built from a retagged frame the outer tag its frame came with
/// (`None`: untagged). Only errors the rate limit lets out get here: moving bytes is fine.
pub(super) fn tag_reply(reply: &mut Vec<u8>, came: Option<(u16, u16)>) {
    let tagged =
        reply.len() >= 16 && matches!(u16::from_be_bytes([reply[12], reply[13]]), 0x8100 | 0x88a8);
    match (tagged, came) {
        (true, Some((tpid, tci))) => {
            reply[12..14].copy_from_slice(&tpid.to_be_bytes());
            reply[14..16].copy_from_slice(&tci.to_be_bytes());
        }
        (false, Some((tpid, tci))) if reply.len() >= 12 => {
            let [t0, t1] = tpid.to_be_bytes();
            let [c0, c1] = tci.to_be_bytes();
            reply.splice(12..12, [t0, t1, c0, c1]);
        }
        (true, None) => {
            reply.drain(12..16);
        }
        _ => {}
    }
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
