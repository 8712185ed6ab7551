//! The node agent: compiles a declarative node configuration into bridges, ports and flows.

use crate::switch::Switch;

/// Applies a node configuration (TOML text).
pub fn apply(_switch: &Switch, _text: &str) -> Result<(), String> {
    Err("node configuration files are not supported by this build yet".into())
}
