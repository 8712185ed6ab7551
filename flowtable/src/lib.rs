//! The OpenFlow 1.3 flow model and the ovs-ofctl flow text syntax.
//!
//! - [`fields`]: the match-field table (names, wire ids, prerequisites, `FlowKey` location).
//! - [`match_::Match`]: value + mask over [`encap::FlowKey`], usable directly by the classifier.
//! - [`action`]: actions and instructions; [`flow`]: flow entries and flow-mods;
//!   [`group`]: groups and buckets; [`meter`]: meters and bands; [`port::OfPort`]: port numbers.
//! - [`check`]: actions against the flow's match (`OFPBAC_MATCH_INCONSISTENT`).
//! - [`table`]: OpenFlow 1.3 flow-mod / group-mod semantics over per-table flow maps.
//! - [`text`]: parse and print the ovs-ofctl syntax exactly as `ovs-ofctl -O OpenFlow13` does.

#![forbid(unsafe_code)]

pub mod action;
pub mod check;
pub mod classifier;
pub mod fields;
pub mod flow;
pub mod grace;
pub mod group;
pub mod match_;
pub mod meter;
pub mod port;
pub mod table;
#[doc(hidden)]
pub mod testgen;
pub mod text;

pub use action::{Action, Instructions};
pub use fields::FieldId;
pub use flow::{FlowEntry, FlowMod, FlowModCommand};
pub use group::{Bucket, Group, GroupType, Selection};
pub use match_::Match;
pub use meter::{Meter, MeterBand, MeterFlags, MeterMod, MeterModCommand};
pub use port::OfPort;
