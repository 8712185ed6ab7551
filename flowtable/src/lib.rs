//! flowtable (work in progress)
