//! `trace`: the slow path run on a described packet, narrated (like `ofproto/trace`).
//!
//! It reads the published pipeline and never changes datapath state: conntrack is simulated
//! (a committing NAT takes the first address/port of its range, as a new connection would)
//! and affinity is reported, not remembered.

use encap::flowkey::{CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_SNAT, CT_TRK};
use flowtable::{Match, text};

use crate::bridge::BridgeCtl;
use crate::datapath::actions::DpAction;
use crate::datapath::xlate::Xlate;
use crate::pipeline::Pipeline;

/// `trace BR FLOW`: runs a packet described in flow syntax through bridge `b`'s published
/// pipeline and explains every table hit, conntrack recirculation and the datapath actions.
pub fn trace(b: &BridgeCtl, flow: &str) -> Result<String, String> {
    let m = text::parse_match(flow).map_err(|e| e.to_string())?;
    {
        let pipeline = b.pipeline.load_full();
        let key = m.value;
        let mut log = String::new();
        log.push_str(&format!(
            "Flow: {}\n\nbridge(\"{}\")\n-------------\n",
            text::print_match(&m),
            b.name
        ));
        let mut key = key;
        let mut table = 0u8;
        let mut all_actions = Vec::new();
        // Follow recirculations the way ofproto/trace does: the packet comes back from
        // conntrack as a new connection (+trk+new) unless the input says otherwise.
        for pass in 0..8 {
            let (flow, wc, chosen) =
                Xlate::new(&pipeline, &key, Some(&mut log)).run_with_choice(table);
            // The actions this packet takes: a select group resolved in the datapath
            // contributes the bucket the walk narrated.
            let mut taken: Vec<DpAction> = Vec::with_capacity(flow.actions.len());
            for a in &flow.actions {
                match a {
                    DpAction::Select(sel) => {
                        let i = chosen.unwrap_or(0);
                        taken.extend(sel.branches.get(i).into_iter().flatten().cloned());
                    }
                    other => taken.push(other.clone()),
                }
            }
            log.push_str(&format!(
                "\nMegaflow: {}\n",
                // Only the fields of the packet's protocol, as valid flow syntax.
                text::print_match(&Match::from_megaflow(&key, &wc))
            ));
            all_actions.extend(taken.iter().cloned());
            let recirc = taken.iter().find_map(|a| match a {
                DpAction::Ct(ct) => ct.recirc_table.map(|t| (t, ct)),
                _ => None,
            });
            let Some((next_table, ct)) = recirc else {
                break;
            };
            let zone = ct.zone;
            let mut next = flow.recirc_meta;
            // A committing NAT takes the first address/port of its range, as a new
            // connection would.
            if let Some(nat) = ct.nat.as_ref().filter(|_| ct.commit) {
                let v4 = |a: &conntrack::tuple::Addr| {
                    u32::from_be_bytes([a.0[12], a.0[13], a.0[14], a.0[15]])
                };
                if let Some(r) = &nat.dst {
                    next.nw_dst = v4(&r.addr_min);
                    if r.port_min != 0 {
                        next.tp_dst = r.port_min;
                    }
                    next.ct_state |= CT_DNAT;
                }
                if let Some(r) = &nat.src {
                    next.nw_src = v4(&r.addr_min);
                    if r.port_min != 0 {
                        next.tp_src = r.port_min;
                    }
                    next.ct_state |= CT_SNAT;
                }
            }
            next.recirc_id = next_table as u32 + 1;
            next.ct_zone = zone;
            let nat_bits = next.ct_state & (CT_SNAT | CT_DNAT);
            next.ct_state = if pass == 0 && key.ct_state == 0 {
                CT_TRK | CT_NEW
            } else {
                key.ct_state | CT_TRK
            } | nat_bits;
            log.push_str(&format!(
                    "\nrecirc(table={next_table}): resuming after conntrack (zone={zone}) with ct_state={}\n----------------------------------------------------------------\n",
                    ct_state_text(next.ct_state)
                ));
            key = next;
            table = next_table;
        }
        log.push_str(&format!(
            "Datapath actions: {}\n",
            format_dp_actions(&all_actions, &pipeline)
        ));
        Ok(log)
    }
}

fn format_dp_actions(actions: &[DpAction], p: &Pipeline) -> String {
    // Datapath port ids mean nothing to users: show the OpenFlow port number instead.
    let text: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
    let mut out = text.join(",");
    for info in p.ports.values() {
        out = out.replace(
            &format!("output:dp{}", info.dp_id),
            &format!("output:{}", info.ofport),
        );
    }
    out
}

fn ct_state_text(state: u8) -> String {
    let names = [
        (CT_NEW, "new"),
        (CT_EST, "est"),
        (CT_REL, "rel"),
        (CT_RPL, "rpl"),
        (CT_INV, "inv"),
        (CT_TRK, "trk"),
        (CT_SNAT, "snat"),
        (CT_DNAT, "dnat"),
    ];
    names
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("|")
}
