//! State that outlives the process: the configuration (bridges, ports, flows, groups and the
//! node agent's inputs) in the state file, rewritten after every change, and the connection
//! and MAC tables handed from one process to the next at a graceful restart (`handover`).
//!
//! - `format`: the state file's schema, its checks and the atomic write;
//! - `state`: what is captured from a running switch and how it is put back;
//! - `writer`: the thread that rewrites the state file shortly after changes;
//! - `handover`: the connection and MAC tables across a graceful restart.

pub mod format;
pub mod handover;
pub mod state;
pub mod writer;

pub use format::{FormatError, StateFile};
pub use writer::StateWriter;
