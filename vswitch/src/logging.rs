//! vswitchd's log: `tracing` events on stderr, as text or one JSON object per line
//! (`--log-format`), filtered by `RUST_LOG` (default `info`), and a filter that
//! `vswitchctl log-level` replaces at run time through a reload handle.
//!
//! Release builds keep debug events (OpenFlow protocol errors log there) and compile trace
//! events out; the per-packet paths hold no log calls at all, so a filter costs them nothing.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

struct Reload {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The filter in force, as given.
    current: std::sync::Mutex<String>,
}

static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Installs the process's subscriber (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| parse_filter(s).is_ok())
        .unwrap_or_else(|| "info".to_string());
    let filter = parse_filter(&spec).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colour codes only on a terminal: logs redirected to files stay greppable.
            .with_ansi(ansi)
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    if tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
        .is_ok()
    {
        let _ = RELOAD.set(Reload {
            handle,
            current: std::sync::Mutex::new(spec),
        });
    }
}

/// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or an `EnvFilter` directive
/// list (`info,vswitch::ofserver=debug`). A bare word that is not a level is refused (an
/// `EnvFilter` would take it as a target name and log everything of it).
pub fn parse_filter(spec: &str) -> Result<EnvFilter, String> {
    let spec = spec.trim();
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if spec.is_empty() {
        return Err("empty log filter".into());
    }
    if !spec.contains(['=', ',', ':', '[']) && !LEVELS.contains(&spec.to_ascii_lowercase().as_str())
    {
        return Err(format!(
            "'{spec}' is not a level (off, error, warn, info, debug, trace) or a filter like info,vswitch::ofserver=debug"
        ));
    }
    EnvFilter::try_new(spec).map_err(|e| format!("bad log filter '{spec}': {e}"))
}

/// Replaces the filter in force; returns the previous one.
pub fn set_filter(spec: &str) -> Result<String, String> {
    let r = RELOAD
        .get()
        .ok_or("this process did not set up its log (not vswitchd)")?;
    let filter = parse_filter(spec)?;
    r.handle
        .reload(filter)
        .map_err(|e| format!("cannot change the log filter: {e}"))?;
    let mut cur = r.current.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::mem::replace(&mut *cur, spec.trim().to_string());
    tracing::info!(filter = %spec.trim(), previous = %old, "log filter changed");
    Ok(old)
}

/// The filter in force.
pub fn current_filter() -> Result<String, String> {
    let r = RELOAD
        .get()
        .ok_or("this process did not set up its log (not vswitchd)")?;
    Ok(r.current.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_parse_and_stray_words_do_not() {
        for ok in [
            "debug",
            "WARN",
            "off",
            "info,vswitch::ofserver=debug",
            "vswitch=trace",
        ] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "verbose", "info,vswitch=loud"] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }
}
