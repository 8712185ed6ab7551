//! Datapath actions: what the slow path compiles an OpenFlow walk into, and what caches store.
//!
//! They are deliberately lower level than OpenFlow actions (like the kernel datapath's ODP
//! actions): ports are resolved to datapath port indices, tables and resubmits are gone,
//! select groups have already picked a bucket, and field writes carry final values.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::drops::DropReason;

/// How often a cached `learn` or `fin_timeout` is sent to the control side again while
/// packets keep using it (Open vSwitch's revalidators push the same refresh about this often).
pub const SIDE_EFFECT_REFRESH_NS: u64 = 1_000_000_000;

/// Claims the right to send now: true for the first use, then at most once per
/// [`SIDE_EFFECT_REFRESH_NS`] across all threads.
fn claim(last_sent_ns: &AtomicU64, now_ns: u64) -> bool {
    let last = last_sent_ns.load(Relaxed);
    if last != 0 && now_ns.saturating_sub(last) < SIDE_EFFECT_REFRESH_NS {
        return false;
    }
    last_sent_ns
        .compare_exchange(last, now_ns.max(1), Relaxed, Relaxed)
        .is_ok()
}

/// What a `learn` asks the control side to install: the flow-mod the slow path built from the
/// bits the learn reads. The megaflow pins those bits, so every packet the entry serves learns
/// the same flow; the request rides in the cached actions and is sent when first used, then at
/// most once per [`SIDE_EFFECT_REFRESH_NS`] (a refresh: the learned flow's hard timeout restarts,
/// or the flow comes back after it expired), as Open vSwitch's `learn` in its xlate cache.
#[derive(Debug)]
pub struct LearnRequest {
    /// `table_id`, `priority`, `match_`, `cookie`, timeouts, `send_flow_rem` and the actions
    /// of the learned flow (command: add, or refresh when an identical flow exists).
    pub fm: flowtable::FlowMod,
    /// The `learn`'s `limit` (0: none), checked again when the flow is applied.
    pub limit: u32,
    last_sent_ns: AtomicU64,
}

impl LearnRequest {
    pub fn new(fm: flowtable::FlowMod, limit: u32) -> LearnRequest {
        LearnRequest {
            fm,
            limit,
            last_sent_ns: AtomicU64::new(0),
        }
    }

    /// True when this use should be sent (see [`LearnRequest`]).
    #[inline]
    pub fn claim(&self, now_ns: u64) -> bool {
        claim(&self.last_sent_ns, now_ns)
    }

    /// Forgets the last send (the queue was full: the next packet tries again).
    pub fn unclaim(&self) {
        self.last_sent_ns.store(0, Relaxed);
    }
}

/// Never equal to another walk's request: a megaflow that learns is re-made at every table
/// change, so its next packet learns again at once (the change may have removed the learned
/// flow).
impl PartialEq for LearnRequest {
    fn eq(&self, other: &LearnRequest) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for LearnRequest {}

/// `fin_timeout`: on a TCP FIN or RST, the control side lowers the timeouts of the rule that
/// ran it (identified by table, match and priority).
#[derive(Debug)]
pub struct FinTimeoutRequest {
    pub table: u8,
    pub priority: u16,
    pub match_: flowtable::Match,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    last_sent_ns: AtomicU64,
}

impl FinTimeoutRequest {
    pub fn new(
        table: u8,
        priority: u16,
        match_: flowtable::Match,
        idle_timeout: u16,
        hard_timeout: u16,
    ) -> FinTimeoutRequest {
        FinTimeoutRequest {
            table,
            priority,
            match_,
            idle_timeout,
            hard_timeout,
            last_sent_ns: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn claim(&self, now_ns: u64) -> bool {
        claim(&self.last_sent_ns, now_ns)
    }

    pub fn unclaim(&self) {
        self.last_sent_ns.store(0, Relaxed);
    }
}

impl PartialEq for FinTimeoutRequest {
    fn eq(&self, o: &FinTimeoutRequest) -> bool {
        (
            self.table,
            self.priority,
            &self.match_,
            self.idle_timeout,
            self.hard_timeout,
        ) == (
            o.table,
            o.priority,
            &o.match_,
            o.idle_timeout,
            o.hard_timeout,
        )
    }
}

impl Eq for FinTimeoutRequest {}

/// Index of a port in the datapath's port table.
pub type DpPortId = u32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtAction {
    pub zone: u16,
    pub commit: bool,
    /// `force`: a commit in the reply direction ends the connection and starts a new one.
    pub force: bool,
    /// The `nat(...)` clause, already in conntrack's terms.
    pub nat: Option<conntrack::NatSpec>,
    /// `exec(set_field:V/M->ct_mark)`.
    pub mark: Option<(u32, u32)>,
    /// `exec(set_field:V/M->ct_label)`.
    pub label: Option<(u128, u128)>,
    /// `table=T`: recirculate into table T with ct fields filled in.
    pub recirc_table: Option<u8>,
    /// `alg=ftp|tftp`: the connection committed is an ALG control connection.
    pub alg: Option<conntrack::Alg>,
}

/// A select group whose bucket the datapath chooses per packet, from a hash of the packet's
/// 5-tuple (Open vSwitch's `selection_method=dp_hash`): the megaflow holding it does not pin the
/// 5-tuple, so one entry serves every connection. `branches[i]` is everything the packet does
/// from here on when bucket `i` is chosen.
#[derive(Debug, Clone)]
pub struct SelectAction {
    pub group_id: u32,
    pub group: std::sync::Arc<crate::pipeline::GroupEntry>,
    pub branches: Vec<Vec<DpAction>>,
    /// Per branch, the counters a packet taking it adds to: the group's and its bucket's, and
    /// those of the rules, groups and table lookups its walk went through after them.
    pub counted: Vec<Box<[std::sync::Arc<crate::pipeline::FlowStats>]>>,
}

impl SelectAction {
    /// The actions a packet with this (current) key takes, with the counters it adds to.
    #[inline]
    pub fn branch(
        &self,
        key: &encap::FlowKey,
    ) -> (&[DpAction], &[std::sync::Arc<crate::pipeline::FlowStats>]) {
        let hash = encap::hash::flow_hash(key) as u64;
        let i = self.group.pick(hash).unwrap_or(0);
        (
            self.branches.get(i).map_or(&[], |b| b.as_slice()),
            self.counted.get(i).map_or(&[], |c| &c[..]),
        )
    }
}

/// Same group entry (the pipeline keeps an unchanged group's entry across publishes), the
/// same branches and the same counters.
impl PartialEq for SelectAction {
    fn eq(&self, other: &SelectAction) -> bool {
        self.group_id == other.group_id
            && std::sync::Arc::ptr_eq(&self.group, &other.group)
            && self.branches == other.branches
            && self.counted.len() == other.counted.len()
            && self.counted.iter().zip(&other.counted).all(|(a, b)| {
                a.len() == b.len()
                    && a.iter()
                        .zip(b.iter())
                        .all(|(x, y)| std::sync::Arc::ptr_eq(x, y))
            })
    }
}

impl Eq for SelectAction {}

/// `check_pkt_larger`: the rest of the walk translated twice; the datapath runs `greater`
/// when the packet (its Ethernet frame without padding) is longer than `pkt_len` bytes, else
/// `le`, and counts the rules that branch hit (the flow's own rules are counted as usual).
#[derive(Debug, Clone)]
pub struct CheckPktLen {
    pub pkt_len: u16,
    pub greater: Vec<DpAction>,
    pub le: Vec<DpAction>,
    pub greater_rules: Vec<std::sync::Arc<crate::pipeline::FlowStats>>,
    pub le_rules: Vec<std::sync::Arc<crate::pipeline::FlowStats>>,
}

impl CheckPktLen {
    /// The branch a packet of `len` bytes takes, with the rules it counts.
    #[inline]
    pub fn branch(
        &self,
        len: usize,
    ) -> (&[DpAction], &[std::sync::Arc<crate::pipeline::FlowStats>]) {
        if len > usize::from(self.pkt_len) {
            (&self.greater, &self.greater_rules)
        } else {
            (&self.le, &self.le_rules)
        }
    }
}

/// Same length, same branches, the same rule counters.
impl PartialEq for CheckPktLen {
    fn eq(&self, other: &CheckPktLen) -> bool {
        let same = |a: &[std::sync::Arc<crate::pipeline::FlowStats>],
                    b: &[std::sync::Arc<crate::pipeline::FlowStats>]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| std::sync::Arc::ptr_eq(x, y))
        };
        self.pkt_len == other.pkt_len
            && self.greater == other.greater
            && self.le == other.le
            && same(&self.greater_rules, &other.greater_rules)
            && same(&self.le_rules, &other.le_rules)
    }
}

impl Eq for CheckPktLen {}

/// A meter the packet passes (the `meter:N` instruction of a flow it hit): over the rate,
/// the packet is dropped here and counted (`meter_drop`); the actions after it do not run.
#[derive(Debug, Clone)]
pub struct MeterAction {
    pub id: u32,
    pub meter: std::sync::Arc<super::meter::MeterEntry>,
}

/// Same meter entry (an unchanged meter keeps its entry across publishes).
impl PartialEq for MeterAction {
    fn eq(&self, other: &MeterAction) -> bool {
        self.id == other.id && std::sync::Arc::ptr_eq(&self.meter, &other.meter)
    }
}

impl Eq for MeterAction {}

/// The metadata NORMAL and FLOOD/ALL read that a walk may have written before them (an
/// `in_port`, `tun_id` or `tun_dst` write is no datapath action: it lives only in the walk's
/// key). The values are constants of the translation (in_port is always pinned; written bits
/// come from constants or from fields the walk read, and so pinned); the bits not written are
/// the packet's own, taken per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalkMeta {
    /// The input port the walk set (a write to `in_port`), if it differs from the packet's.
    pub in_port: Option<u32>,
    /// `tun_id` as (value, bits written); only the written bits of the value count.
    pub tun_id: (u64, u64),
    /// `tun_dst` as (value, bits written).
    pub tun_dst: (u32, u32),
}

impl WalkMeta {
    /// Nothing written: the packet's own key is what NORMAL/FLOOD read.
    pub fn is_empty(&self) -> bool {
        self.in_port.is_none() && self.tun_id.1 == 0 && self.tun_dst.1 == 0
    }

    /// The packet's key with the walk's writes applied.
    pub fn apply(&self, key: &encap::FlowKey) -> encap::FlowKey {
        let mut k = *key;
        if let Some(p) = self.in_port {
            k.in_port = p;
        }
        let (v, m) = self.tun_id;
        k.tun_id = (k.tun_id & !m) | (v & m);
        let (v, m) = self.tun_dst;
        k.tun_dst = (k.tun_dst & !m) | (v & m);
        k
    }
}

/// `(in_port=..,tun_id=..,tun_dst=..)` for what the walk wrote, nothing when it wrote nothing.
impl std::fmt::Display for WalkMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        let mut sep = "(";
        if let Some(p) = self.in_port {
            write!(f, "{sep}in_port={p}")?;
            sep = ",";
        }
        let (v, m) = self.tun_id;
        if m != 0 {
            write!(f, "{sep}tun_id={v:#x}")?;
            if m != u64::MAX {
                write!(f, "/{m:#x}")?;
            }
            sep = ",";
        }
        let (v, m) = self.tun_dst;
        if m != 0 {
            write!(f, "{sep}tun_dst={}", Ipv4Addr::from(v))?;
            if m != u32::MAX {
                write!(f, "/{}", Ipv4Addr::from(m))?;
            }
        }
        f.write_str(")")
    }
}

/// An output of a packet cut to `max_len` bytes, through a tunnel port to `tunnel`'s
/// `(destination, VNI)` when set (with the `proto` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncOutput {
    pub port: DpPortId,
    pub max_len: u32,
    pub tunnel: Option<(Ipv4Addr, u32)>,
    pub proto: TunnelProto,
}

/// The header a tunnel port pushes: what trace and megaflow listings name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelProto {
    Vxlan,
    Geneve,
}

impl TunnelProto {
    /// The protocol of a tunnel port of `kind` (VXLAN for a port that is not a tunnel: it
    /// never pushes one).
    pub fn of(kind: crate::pipeline::PortKind) -> TunnelProto {
        use crate::pipeline::PortKind;
        match kind {
            PortKind::Geneve => TunnelProto::Geneve,
            PortKind::Vxlan | PortKind::AfPacket | PortKind::Tap | PortKind::Internal => {
                TunnelProto::Vxlan
            }
        }
    }

    /// As `ovs-appctl ofproto/trace` writes it in `tnl_push(...)`.
    pub fn name(self) -> &'static str {
        match self {
            TunnelProto::Vxlan => "vxlan",
            TunnelProto::Geneve => "geneve",
        }
    }

    /// As a sentence names it.
    pub fn label(self) -> &'static str {
        match self {
            TunnelProto::Vxlan => "VXLAN",
            TunnelProto::Geneve => "Geneve",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpAction {
    Output(DpPortId),
    /// Encapsulate and send through a tunnel port to `dst` with `vni`.
    Tunnel {
        port: DpPortId,
        dst: Ipv4Addr,
        vni: u32,
        proto: TunnelProto,
    },
    /// `output(port=P,max_len=N)`: the packet's first `max_len` bytes out (see
    /// [`TruncOutput`]); the packet goes on whole.
    OutputTrunc(TruncOutput),
    /// MAC learning + forwarding, resolved per packet (learning changes faster than flows),
    /// with the input port and tunnel fields the walk had written by then.
    Normal(WalkMeta),
    /// Every port of the bridge but the input port, as OpenFlow defines both FLOOD and ALL
    /// (they differ only in ports configured not to flood, which this switch has none of);
    /// `all` keeps the name for traces. `meta` as for [`DpAction::Normal`].
    Flood {
        all: bool,
        meta: WalkMeta,
    },
    SetEthSrc([u8; 6]),
    SetEthDst([u8; 6]),
    SetIpv4Src(Ipv4Addr),
    SetIpv4Dst(Ipv4Addr),
    SetIpv6Src([u8; 16]),
    SetIpv6Dst([u8; 16]),
    /// The 20-bit flow label.
    SetIpv6Label(u32),
    SetTpSrc(u16),
    SetTpDst(u16),
    SetIpTos(u8),
    SetIpTtl(u8),
    PushVlan {
        tpid: u16,
        tci: u16,
    },
    PopVlan,
    /// Rewrite the VID (and PCP) of the outermost tag.
    SetVlanTci(u16),
    DecTtl,
    /// ARP (IPv4 over Ethernet) field writes, for ARP responders written as flows.
    SetArpOp(u16),
    SetArpSpa(Ipv4Addr),
    SetArpTpa(Ipv4Addr),
    SetArpSha([u8; 6]),
    SetArpTha([u8; 6]),
    /// ICMPv4 type/code writes (ICMP checksum updated), for echo responders written as flows.
    SetIcmpType(u8),
    SetIcmpCode(u8),
    /// IPv6 neighbor discovery writes (ICMPv6 checksum updated): the target address, and the
    /// address in the source / target link-layer address option when that is the message's
    /// first such option (Open vSwitch's `set(nd(...))`).
    SetNdTarget([u8; 16]),
    SetNdSll([u8; 6]),
    SetNdTll([u8; 6]),
    Ct(CtAction),
    /// A packet-in (see [`super::PacketInAction`]).
    Controller(std::sync::Arc<super::PacketInAction>),
    /// Session affinity: the client opened a new connection now (refreshes its remembered
    /// bucket, see `lb::affinity`).
    AffinityTouch(conntrack::lb::AffinityTouch),
    /// Dropping on purpose, with the reason counted.
    Drop(DropReason),
    /// Rate-limit through a meter (see [`MeterAction`]).
    Meter(MeterAction),
    /// A select group resolved per packet (see [`SelectAction`]); always the last action.
    Select(SelectAction),
    /// Runs the actions on a copy of the packet, then goes on with the packet as it was (a
    /// group bucket that changes the packet, followed by more actions).
    Clone(Vec<DpAction>),
    /// `check_pkt_larger`: one of two branches by the packet's length.
    CheckPktLen(Box<CheckPktLen>),
    /// `learn`: ask the control side to install (or refresh) a flow.
    Learn(std::sync::Arc<LearnRequest>),
    /// `fin_timeout`: on a TCP FIN or RST, ask the control side to shorten a rule's timeouts.
    FinTimeout(std::sync::Arc<FinTimeoutRequest>),
    /// `sample`: with probability `probability / 65535`, count the packet for its collector
    /// set (see `datapath::sample`); the packet goes on unchanged either way.
    Sample {
        probability: u16,
        collector_set_id: u32,
    },
}

impl DpAction {
    /// True when the action may change the packet's bytes or the key later actions read.
    pub fn changes_packet(&self) -> bool {
        !matches!(
            self,
            DpAction::Output(_)
                | DpAction::Tunnel { .. }
                | DpAction::OutputTrunc(_)
                | DpAction::Normal(_)
                | DpAction::Flood { .. }
                | DpAction::Controller(_)
                | DpAction::AffinityTouch(_)
                | DpAction::Drop(_)
                | DpAction::Meter(_)
                | DpAction::Clone(_)
                | DpAction::Learn(_)
                | DpAction::FinTimeout(_)
                | DpAction::Sample { .. }
        )
    }

    /// True when the action disposes of the packet: sends it somewhere, hands it to
    /// conntrack for another pass, or drops it with a reason.
    pub fn disposes(&self) -> bool {
        match self {
            DpAction::Output(_)
            | DpAction::Tunnel { .. }
            | DpAction::OutputTrunc(_)
            | DpAction::Normal(_)
            | DpAction::Flood { .. }
            | DpAction::Controller(_)
            | DpAction::Drop(_)
            | DpAction::Select(_) => true,
            DpAction::Ct(ct) => ct.recirc_table.is_some(),
            DpAction::Clone(inner) => inner.iter().any(DpAction::disposes),
            DpAction::CheckPktLen(c) => {
                c.greater.iter().any(DpAction::disposes) && c.le.iter().any(DpAction::disposes)
            }
            _ => false,
        }
    }
}

fn mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn nat_range(r: &conntrack::NatRange) -> String {
    let ip = |a: &conntrack::tuple::Addr| {
        let b = a.0;
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    };
    let mut s = ip(&r.addr_min).to_string();
    if r.addr_max != r.addr_min {
        s.push_str(&format!("-{}", ip(&r.addr_max)));
    }
    if r.port_min != 0 {
        s.push_str(&format!(":{}", r.port_min));
        if r.port_max != r.port_min {
            s.push_str(&format!("-{}", r.port_max));
        }
    }
    s
}

/// Datapath actions in the style of `ovs-appctl ofproto/trace`'s "Datapath actions" line.
impl std::fmt::Display for DpAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DpAction::Output(p) => write!(f, "output:dp{p}"),
            DpAction::Tunnel {
                port,
                dst,
                vni,
                proto,
            } => {
                let p = proto.name();
                write!(f, "tnl_push({p}(vni={vni},dst={dst})),output:dp{port}")
            }
            DpAction::OutputTrunc(t) => {
                write!(f, "trunc({}),", t.max_len)?;
                if let Some((dst, vni)) = t.tunnel {
                    write!(f, "tnl_push({}(vni={vni},dst={dst})),", t.proto.name())?;
                }
                write!(f, "output:dp{}", t.port)
            }
            DpAction::Normal(m) => write!(f, "normal{m}"),
            DpAction::Flood { all, meta } => {
                write!(f, "{}{meta}", if *all { "all" } else { "flood" })
            }
            DpAction::SetEthSrc(m) => write!(f, "set(eth(src={}))", mac(m)),
            DpAction::SetEthDst(m) => write!(f, "set(eth(dst={}))", mac(m)),
            DpAction::SetIpv4Src(a) => write!(f, "set(ipv4(src={a}))"),
            DpAction::SetIpv4Dst(a) => write!(f, "set(ipv4(dst={a}))"),
            DpAction::SetIpv6Src(a) => {
                write!(f, "set(ipv6(src={}))", std::net::Ipv6Addr::from(*a))
            }
            DpAction::SetIpv6Dst(a) => {
                write!(f, "set(ipv6(dst={}))", std::net::Ipv6Addr::from(*a))
            }
            DpAction::SetIpv6Label(l) => write!(f, "set(ipv6(label={l:#x}))"),
            DpAction::SetTpSrc(p) => write!(f, "set(l4(src={p}))"),
            DpAction::SetTpDst(p) => write!(f, "set(l4(dst={p}))"),
            DpAction::SetIpTos(t) => write!(f, "set(ip(tos={t:#x}))"),
            DpAction::SetIpTtl(t) => write!(f, "set(ip(ttl={t}))"),
            DpAction::PushVlan { tpid, tci } => write!(
                f,
                "push_vlan(tpid={tpid:#x},vid={},pcp={})",
                tci & 0xfff,
                tci >> 13
            ),
            DpAction::PopVlan => f.write_str("pop_vlan"),
            DpAction::SetVlanTci(tci) => {
                write!(f, "set(vlan(vid={},pcp={}))", tci & 0xfff, tci >> 13)
            }
            DpAction::DecTtl => f.write_str("dec_ttl"),
            DpAction::SetArpOp(op) => write!(f, "set(arp(op={op}))"),
            DpAction::SetArpSpa(a) => write!(f, "set(arp(sip={a}))"),
            DpAction::SetArpTpa(a) => write!(f, "set(arp(tip={a}))"),
            DpAction::SetArpSha(m) => write!(f, "set(arp(sha={}))", mac(m)),
            DpAction::SetArpTha(m) => write!(f, "set(arp(tha={}))", mac(m)),
            DpAction::SetIcmpType(t) => write!(f, "set(icmp(type={t}))"),
            DpAction::SetIcmpCode(c) => write!(f, "set(icmp(code={c}))"),
            DpAction::SetNdTarget(a) => {
                write!(f, "set(nd(target={}))", std::net::Ipv6Addr::from(*a))
            }
            DpAction::SetNdSll(m) => write!(f, "set(nd(sll={}))", mac(m)),
            DpAction::SetNdTll(m) => write!(f, "set(nd(tll={}))", mac(m)),
            DpAction::Ct(ct) => {
                write!(f, "ct(zone={}", ct.zone)?;
                if ct.commit {
                    f.write_str(",commit")?;
                }
                if ct.force {
                    f.write_str(",force")?;
                }
                if let Some((v, m)) = ct.mark {
                    write!(f, ",mark={v:#x}/{m:#x}")?;
                }
                if let Some(n) = &ct.nat {
                    f.write_str(",nat")?;
                    if let Some(r) = &n.src {
                        write!(f, "(src={})", nat_range(r))?;
                    } else if let Some(r) = &n.dst {
                        write!(f, "(dst={})", nat_range(r))?;
                    }
                }
                f.write_str(")")?;
                if let Some(t) = ct.recirc_table {
                    write!(f, ",recirc(table={t})")?;
                }
                Ok(())
            }
            DpAction::Controller(pi) => {
                write!(f, "userspace(controller,max_len={})", pi.max_len)
            }
            DpAction::AffinityTouch(t) => write!(f, "affinity(bucket={:#x})", t.0.bucket),
            DpAction::Drop(r) => write!(f, "drop({})", r.name()),
            DpAction::Meter(m) => write!(f, "meter({})", m.id),
            DpAction::Select(sel) => {
                write!(f, "select(group={},hash(l4))", sel.group_id)?;
                for (i, b) in sel.branches.iter().enumerate() {
                    let text: Vec<String> = b.iter().map(|a| a.to_string()).collect();
                    write!(f, "{}{}", if i == 0 { "{" } else { "|" }, text.join(","))?;
                }
                f.write_str("}")
            }
            DpAction::Clone(inner) => {
                let text: Vec<String> = inner.iter().map(|a| a.to_string()).collect();
                write!(f, "clone({})", text.join(","))
            }
            DpAction::CheckPktLen(c) => {
                let g: Vec<String> = c.greater.iter().map(|a| a.to_string()).collect();
                let l: Vec<String> = c.le.iter().map(|a| a.to_string()).collect();
                write!(
                    f,
                    "check_pkt_len(size={},gt({}),le({}))",
                    c.pkt_len,
                    g.join(","),
                    l.join(",")
                )
            }
            DpAction::Learn(l) => write!(
                f,
                "userspace(learn,table={},priority={})",
                l.fm.table_id, l.fm.priority
            ),
            DpAction::FinTimeout(t) => write!(
                f,
                "userspace(fin_timeout,idle={},hard={})",
                t.idle_timeout, t.hard_timeout
            ),
            DpAction::Sample {
                probability,
                collector_set_id,
            } => write!(
                f,
                "sample(probability={probability},collector_set_id={collector_set_id})"
            ),
        }
    }
}
