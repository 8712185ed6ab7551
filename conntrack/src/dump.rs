//! Connection snapshots and their `ovs-appctl dpctl/dump-conntrack` text form.
//!
//! ```text
//! tcp,orig=(src=172.16.1.2,dst=10.247.0.10,sport=40000,dport=80),reply=(src=172.16.1.5,dst=172.16.1.2,sport=8080,dport=40000),zone=1,mark=1,protoinfo=(state=ESTABLISHED)
//! icmp,orig=(src=10.1.1.1,dst=10.1.1.2,id=7,type=8,code=0),reply=(src=10.1.1.2,dst=10.1.1.1,id=7,type=0,code=0)
//! ```
//! As in OVS: `zone=` and `mark=` (decimal) only when non-zero, `protoinfo` for TCP only,
//! TCP state coalesced (SYN_RECV shows ESTABLISHED, FIN_WAIT_2 shows TIME_WAIT), `helper=`
//! for an ALG control connection.

use super::ConnId;
use super::tcp::TcpState;
use super::tuple::{Family, Tuple, proto_name};
use std::fmt;

/// A snapshot of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    pub id: ConnId,
    pub orig: Tuple,
    /// The reply tuple (the reply packet as it arrives, before un-NAT).
    pub reply: Tuple,
    pub zone: u16,
    pub mark: u32,
    /// `ct_label` (printed as `labels=0x..`).
    pub label: u128,
    /// `NAT_SRC` / `NAT_DST` flags.
    pub nat: u8,
    /// TCP display state (coalesced as OVS prints it); `None` for other protocols.
    pub tcp_state: Option<TcpState>,
    /// ICMP type/code of the original direction (ICMP only).
    pub icmp_type_code: Option<(u8, u8)>,
    /// Nanoseconds until expiry (0 if already due).
    pub expires_in_ns: u64,
    pub seen_reply: bool,
    /// The ALG of a control connection (printed as `helper=ftp`).
    pub helper: Option<crate::Alg>,
    /// Whether an ALG announced it (a related data connection).
    pub related: bool,
}

impl ConnEntry {
    /// The ICMP type/code of the reply direction (echo request → echo reply).
    fn reply_type_code(&self) -> Option<(u8, u8)> {
        self.icmp_type_code
            .map(|(t, c)| match (self.orig.family, t) {
                (Family::V4, 8) => (0, c),
                (Family::V6, 128) => (129, c),
                (_, t) => (t, c),
            })
    }
}

impl fmt::Display for ConnEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match proto_name(self.orig.proto) {
            Some(n) => f.write_str(n)?,
            None => write!(f, "{}", self.orig.proto)?,
        }
        f.write_str(",orig=(")?;
        self.orig.fmt_ovs(self.icmp_type_code, f)?;
        f.write_str("),reply=(")?;
        self.reply.fmt_ovs(self.reply_type_code(), f)?;
        f.write_str(")")?;
        if self.zone != 0 {
            write!(f, ",zone={}", self.zone)?;
        }
        if self.mark != 0 {
            write!(f, ",mark={}", self.mark)?;
        }
        if self.label != 0 {
            write!(f, ",labels={:#x}", self.label)?;
        }
        if let Some(s) = self.tcp_state {
            write!(f, ",protoinfo=(state={})", s.name())?;
        }
        match self.helper {
            Some(crate::Alg::Ftp) => f.write_str(",helper=ftp")?,
            Some(crate::Alg::Tftp) => f.write_str(",helper=tftp")?,
            None => {}
        }
        Ok(())
    }
}
