//! The node agent: compiles a declarative node configuration (TOML, `docs/config.md`) into
//! bridges, ports, groups and flows (`docs/pipeline.md`), and applies only what changed.
//!
//! `config` is the file as written, `validate` turns it into the typed `model` (or names the
//! wrong key), `compile` builds the desired ports/groups/flows, `apply` diffs and installs.

pub mod apply;
pub mod compile;
pub mod config;
pub mod model;
pub mod validate;

use crate::switch::Switch;

/// Applies a node configuration (TOML text); returns a one-line summary of the changes.
pub fn apply_text(switch: &Switch, text: &str) -> Result<String, String> {
    let cfg = validate::parse(text).map_err(|e| e.to_string())?;
    let (changes, warnings) = apply::apply_config(switch, &cfg)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let mut out = format!("node {}: {changes}\n", cfg.name);
    for w in warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    Ok(out)
}

/// Applies a node configuration (TOML text).
pub fn apply(switch: &Switch, text: &str) -> Result<(), String> {
    let summary = apply_text(switch, text)?;
    tracing::info!("{}", summary.lines().next().unwrap_or_default());
    Ok(())
}
