//! Load balancing: Maglev consistent hashing over weighted backends and a bounded
//! client-affinity table.
//!
//! The intended use (a Service's select group): hash the packet's 5-tuple with
//! [`encap::hash::flow_hash_seeded`] (the switch's one flow hash, IPv4 and IPv6),
//! `pick` a backend from the service's [`Maglev`] table, commit the connection with DNAT to
//! that backend — conntrack then pins the flow, so a table rebuild only moves new flows.

pub mod affinity;
pub mod maglev;

pub use affinity::{AffinityTable, AffinityTouch};
pub use maglev::{Backend, DEFAULT_TABLE_SIZE, LbError, Maglev};
