//! flowtable (work in progress)
pub mod classifier;
