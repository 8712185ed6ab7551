//! Load balancing: Maglev consistent hashing over weighted backends, a 5-tuple flow hash, and
//! a bounded client-affinity table.
//!
//! The intended use (a Service's select group): hash the packet's 5-tuple with [`flow_hash`],
//! `pick` a backend from the service's [`Maglev`] table, commit the connection with DNAT to
//! that backend — conntrack then pins the flow, so a table rebuild only moves new flows.

pub mod affinity;
pub mod hash;
pub mod maglev;

pub use affinity::{AffinityTable, AffinityTouch};
pub use hash::{five_tuple_hash, flow_hash};
pub use maglev::{Backend, DEFAULT_TABLE_SIZE, LbError, Maglev};
