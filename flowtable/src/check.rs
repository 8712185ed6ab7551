//! Actions against the flow's match, as Open vSwitch's `ofpacts_check_consistency` does
//! (lib/ofp-actions.c) for an OpenFlow 1.3 flow-mod: an action that reads or writes a field
//! the match does not make present is refused at install time with
//! `OFPBAC_MATCH_INCONSISTENT` (`set_field:80->tcp_dst` on a flow that does not match `tcp`),
//! instead of being skipped packet by packet.
//!
//! The walk follows Open vSwitch's: the VLAN stack the match implies is updated by
//! `push_vlan`, `pop_vlan` and writes to `vlan_tci` as the actions go; `clone(...)` and
//! `ct(exec(...))` are checked on a copy (their changes do not reach the actions after them).
//! Open vSwitch has two kinds of failures, both refused in OpenFlow 1.3: "hard" ones
//! (`set_field`, `load`, `move`, `output:FIELD`, `ct`, `nat`: the error at once) and "soft"
//! ones (`pop_vlan`, `dec_ttl`, `mod_nw_ttl`, `fin_timeout`: the flow would only be valid in
//! OpenFlow 1.0; reported after the whole list, and not at all inside `write_actions`).

use encap::flowkey::{CT_EST, CT_INV, CT_NEW, CT_RPL, FRAG_LATER, VLAN_PRESENT};

use crate::action::{Action, Instructions, Nat, SubField};
use crate::fields::{FieldId, Prereq};
use crate::match_::{ETH_TYPE_IP, ETH_TYPE_IPV6, IPPROTO_TCP, IPPROTO_UDP, Match};
use crate::table::TableError;

/// What the actions see of the flow as they run: the match, with its VLAN stack (Open vSwitch
/// keeps two tags, `FLOW_MAX_VLAN_HEADERS`).
#[derive(Clone, Copy)]
struct Walk<'m> {
    m: &'m Match,
    vlans: [u16; 2],
}

/// Checks `ins` against the flow's match `m` (Open vSwitch's `ofpacts_check_consistency`).
pub fn check_consistency(ins: &Instructions, m: &Match) -> Result<(), TableError> {
    let mut soft = None;
    let mut walk = Walk {
        m,
        vlans: [m.value.vlan_tci & m.mask.vlan_tci, 0],
    };
    walk.actions(&ins.apply, &mut soft)?;
    if let Some(w) = &ins.write_actions {
        // Open vSwitch checks an action set on a copy and ignores its soft failures (the
        // order it runs in is not the order it is written in).
        let mut ignored = None;
        let mut copy = walk;
        copy.actions(w, &mut ignored)?;
    }
    match soft {
        Some(why) => Err(TableError::MatchInconsistent(why)),
        None => Ok(()),
    }
}

fn lacks(kind: &str, f: FieldId) -> TableError {
    TableError::MatchInconsistent(format!(
        "{kind} field {} lacks correct prerequisites (needs {})",
        f.info().name,
        prereq_of(f).hint()
    ))
}

/// The prerequisite Open vSwitch gives a field it writes: our `vlan_pcp` row keeps the PCP's
/// tag requirement in its wire codec (`OXM_OF_VLAN_PCP` needs a tag, `MFP_VLAN_VID`).
fn prereq_of(f: FieldId) -> Prereq {
    let info = f.info();
    match info.codec.prereq {
        Some(p) if info.prereq == Prereq::None => p,
        _ => info.prereq,
    }
}

impl Walk<'_> {
    fn ip_any(&self) -> bool {
        matches!(self.m.eth_type(), Some(ETH_TYPE_IP | ETH_TYPE_IPV6))
    }

    /// Open vSwitch's `mf_are_prereqs_ok__`: with `mask`, a `ct_state` requirement is read as
    /// a match (`+trk-inv` counts); without it (`set_field`), as a packet's state.
    fn prereq_ok(&self, p: Prereq, mask: bool) -> bool {
        let later = self.m.value.nw_frag & FRAG_LATER != 0;
        match p {
            Prereq::Vlan => self.vlans[0] & VLAN_PRESENT != 0,
            Prereq::Tcp | Prereq::Udp | Prereq::Sctp | Prereq::L4 => self.m.satisfies(p) && !later,
            Prereq::Ct | Prereq::CtIpv4 | Prereq::CtIpv6 if !mask => {
                self.m.value.ct_state & (CT_NEW | CT_EST | CT_RPL) != 0
                    && (p == Prereq::Ct || self.m.satisfies(p))
            }
            _ => self.m.satisfies(p),
        }
    }

    /// `mf_check_src` / `mf_check_dst`.
    fn check_sub(&self, kind: &str, sf: &SubField) -> Result<(), TableError> {
        if self.prereq_ok(prereq_of(sf.field), true) {
            Ok(())
        } else {
            Err(lacks(kind, sf.field))
        }
    }

    /// `check_SET_FIELD` (also what `load` is in Open vSwitch).
    fn set_field(&mut self, field: FieldId, value: u128, mask: u128) -> Result<(), TableError> {
        let vid_untagged = field == FieldId::VlanVid && self.vlans[0] & VLAN_PRESENT == 0;
        if !self.prereq_ok(prereq_of(field), false) || vid_untagged {
            return Err(lacks("set_field", field));
        }
        if field == FieldId::VlanTci {
            // The write may push or pop the tag.
            self.vlans[0] = (value & mask) as u16;
        }
        Ok(())
    }

    fn soft(soft: &mut Option<String>, why: &str) {
        soft.get_or_insert_with(|| why.to_string());
    }

    fn actions(&mut self, list: &[Action], soft: &mut Option<String>) -> Result<(), TableError> {
        for a in list {
            self.action(a, soft)?;
        }
        Ok(())
    }

    /// A nested list on a copy: what it changes does not reach the actions after it.
    fn nested(&self, list: &[Action], soft: &mut Option<String>) -> Result<(), TableError> {
        let mut copy = *self;
        copy.actions(list, soft)
    }

    fn action(&mut self, a: &Action, soft: &mut Option<String>) -> Result<(), TableError> {
        match a {
            Action::SetField { field, value, mask } => self.set_field(*field, *value, *mask)?,
            Action::RegLoad { dst, value } => {
                self.set_field(dst.field, value << dst.ofs, dst.mask())?
            }
            Action::Move { src, dst } => {
                self.check_sub("source", src)?;
                self.check_sub("destination", dst)?;
            }
            Action::StackPush(sf) => self.check_sub("source", sf)?,
            Action::StackPop(sf) => self.check_sub("destination", sf)?,
            Action::OutputReg { src, .. } => self.check_sub("source", src)?,
            Action::Multipath(mp) => self.check_sub("destination", &mp.dst)?,
            Action::Bundle(b) => {
                if let Some(dst) = &b.dst {
                    self.check_sub("destination", dst)?;
                }
            }
            Action::PushVlan(_) => {
                if self.vlans[1] & VLAN_PRESENT != 0 {
                    return Err(TableError::BadTag);
                }
                self.vlans = [self.vlans[0] | VLAN_PRESENT, self.vlans[0]];
            }
            Action::PopVlan => {
                if self.vlans[0] & VLAN_PRESENT == 0 {
                    Self::soft(soft, "pop_vlan needs a flow that matches a VLAN tag");
                }
                self.vlans = [self.vlans[1], 0];
            }
            Action::DecTtl | Action::SetNwTtl(_) if !self.ip_any() => Self::soft(
                soft,
                "dec_ttl and mod_nw_ttl need a flow that matches ip or ipv6",
            ),
            Action::FinTimeout { .. } if self.m.value.nw_proto != IPPROTO_TCP => {
                Self::soft(soft, "fin_timeout needs a flow that matches tcp (or tcp6)")
            }
            Action::Ct(ct) => {
                let commits_invalid = ct.commit && self.m.value.ct_state & CT_INV != 0;
                if !self.ip_any() || commits_invalid {
                    return Err(TableError::MatchInconsistent(
                        "ct needs a flow that matches ip or ipv6 (and does not commit +inv)".into(),
                    ));
                }
                // `check_CT` too: an ALG needs its protocol in the match.
                let proto = self.m.value.nw_proto;
                if (ct.alg == Some(21) && proto != IPPROTO_TCP)
                    || (ct.alg == Some(69) && proto != IPPROTO_UDP)
                {
                    let (alg, needs) = if ct.alg == Some(21) {
                        ("ftp", "tcp")
                    } else {
                        ("tftp", "udp")
                    };
                    return Err(TableError::MatchInconsistent(format!(
                        "ct(alg={alg}) needs a flow that matches {needs}"
                    )));
                }
                if let Some(crate::action::CtZone::Field(sf)) = &ct.zone {
                    // Open vSwitch stops here: with a zone from a field, the nested actions
                    // (and nat) go unchecked.
                    return self.check_sub("source", sf);
                }
                if let Some(nat) = &ct.nat {
                    self.nat(nat)?;
                }
                self.nested(&ct.exec, soft)?;
            }
            Action::Clone(inner) => self.nested(inner, soft)?,
            _ => {}
        }
        Ok(())
    }

    /// `check_NAT`: the address family of a range must be the flow's.
    fn nat(&self, nat: &Nat) -> Result<(), TableError> {
        let et = self.m.eth_type();
        let family_ok = match nat.addrs {
            Some((std::net::IpAddr::V4(_), _)) => et == Some(ETH_TYPE_IP),
            Some((std::net::IpAddr::V6(_), _)) => et == Some(ETH_TYPE_IPV6),
            None => true,
        };
        if self.ip_any() && family_ok {
            Ok(())
        } else {
            Err(TableError::MatchInconsistent(
                "nat range of another address family than the flow's".into(),
            ))
        }
    }
}
