//! tap-io (work in progress)
