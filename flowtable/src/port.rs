//! OpenFlow 1.3 port numbers, with the reserved ports as named constants.

/// A 32-bit OpenFlow port number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfPort(pub u32);

impl OfPort {
    /// Largest number of a physical/logical port.
    pub const MAX: OfPort = OfPort(0xffff_ff00);
    pub const IN_PORT: OfPort = OfPort(0xffff_fff8);
    pub const TABLE: OfPort = OfPort(0xffff_fff9);
    pub const NORMAL: OfPort = OfPort(0xffff_fffa);
    pub const FLOOD: OfPort = OfPort(0xffff_fffb);
    pub const ALL: OfPort = OfPort(0xffff_fffc);
    pub const CONTROLLER: OfPort = OfPort(0xffff_fffd);
    pub const LOCAL: OfPort = OfPort(0xffff_fffe);
    /// "No port" / wildcard (`OFPP_ANY`, OpenFlow 1.0's `OFPP_NONE`).
    pub const ANY: OfPort = OfPort(0xffff_ffff);

    const NAMES: [(OfPort, &'static str); 8] = [
        (OfPort::IN_PORT, "IN_PORT"),
        (OfPort::TABLE, "TABLE"),
        (OfPort::NORMAL, "NORMAL"),
        (OfPort::FLOOD, "FLOOD"),
        (OfPort::ALL, "ALL"),
        (OfPort::CONTROLLER, "CONTROLLER"),
        (OfPort::LOCAL, "LOCAL"),
        (OfPort::ANY, "ANY"),
    ];

    /// The reserved port's name as ovs-ofctl prints it, or `None` for a numbered port.
    pub fn reserved_name(self) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|(p, _)| *p == self)
            .map(|(_, n)| *n)
    }

    /// Parses a reserved name (case-insensitive; `NONE` is accepted for `ANY`).
    pub fn from_reserved_name(s: &str) -> Option<OfPort> {
        if s.eq_ignore_ascii_case("none") {
            return Some(OfPort::ANY);
        }
        Self::NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(p, _)| *p)
    }

    /// A port number written in flow text, as ovs-ofctl reads it: OpenFlow 1.0's 16-bit
    /// reserved numbers (0xff00..=0xffff: 65534 is LOCAL, 65533 CONTROLLER, 65535 ANY) stand
    /// for their OpenFlow 1.3 ports (0xffffff00 and up); other numbers are themselves.
    pub fn from_text_number(n: u32) -> OfPort {
        if (0xff00..=0xffff).contains(&n) {
            OfPort(n | 0xffff_0000)
        } else {
            OfPort(n)
        }
    }

    /// Whether Open vSwitch can represent the port: it keeps OpenFlow 1.0's 16-bit port
    /// numbers inside, so an OpenFlow 1.3 number must be below 0xff00 or 0xffffff00 and up
    /// (`ofputil_port_from_ofp11`, lib/ofp-port.c). A port in 0xff00..=0xfffffeff is one
    /// ovs-vswitchd refuses in a flow-mod and ovs-ofctl cannot decode in a reply.
    pub fn is_representable(self) -> bool {
        self.0 < 0xff00 || self.0 >= Self::MAX.0
    }

    /// Whether a packet can be sent to the port (Open vSwitch's `ofpact_check_output_port`,
    /// after `ofputil_port_from_ofp11`): a numbered port below 0xff00, or one of the reserved
    /// ports `IN_PORT`, `TABLE`, `NORMAL`, `FLOOD`, `ALL`, `CONTROLLER`, `LOCAL`. Port 0 is one
    /// (below the port count, as `ofpact_check_output_port` checks): no port has it, so the
    /// output sends nothing, as to any absent port.
    pub fn is_output_port(self) -> bool {
        self.0 < 0xff00 || (self.reserved_name().is_some() && self != OfPort::ANY)
    }

    /// True for a numbered (non-reserved) port.
    pub fn is_physical(self) -> bool {
        self.0 != 0 && self.0 <= Self::MAX.0
    }
}

/// As ovs-ofctl prints a port, so that the text reads back as the same port
/// ([`OfPort::from_text_number`]).
impl core::fmt::Display for OfPort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.reserved_name() {
            Some(n) => f.write_str(n),
            // An unnamed reserved port by its OpenFlow 1.0 number (0xffffff00 is 65280).
            None if self.0 >= Self::MAX.0 => write!(f, "{}", self.0 & 0xffff),
            // A port numbered in OpenFlow 1.0's reserved range: in decimal it would read
            // back as a reserved port.
            None if (0xff00..=0xffff).contains(&self.0) => write!(f, "{:#x}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}
