//! Keeps the state file current: a thread that waits for change notices from the switch,
//! lets a burst of changes settle, and rewrites the file (atomically) when its text changed.
//! It never runs on the packet path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::format::write_atomic;
use super::state::capture;
use crate::control::Control;

/// How long a burst of changes may go on before the file is written (a `kill -9` loses at
/// most this much).
pub const SETTLE: Duration = Duration::from_millis(50);
/// How often TAP devices are looked for when nothing else changes (a TAP moved into a pod's
/// namespace less than this before a `kill -9` is looked for in the switch's namespace).
pub const WATCH_TAPS: Duration = Duration::from_secs(1);

/// Writes the state file of one switch.
pub struct StateWriter {
    path: PathBuf,
    /// The last text written (saves that change nothing are skipped); one writer at a time.
    last: Mutex<Option<String>>,
}

impl StateWriter {
    pub fn new(path: &Path) -> Arc<StateWriter> {
        Arc::new(StateWriter {
            path: path.to_path_buf(),
            last: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Captures the configuration and writes it if it changed since the last write.
    pub fn save(&self, control: &Control) -> std::io::Result<()> {
        let text = capture(control).encode();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        write_atomic(&self.path, text.as_bytes())?;
        *last = Some(text);
        Ok(())
    }

    /// Saves after every burst of changes while `control` lives.
    pub fn start(self: &Arc<Self>, control: &Arc<Control>) {
        let changes = control.switch.changes();
        let me = self.clone();
        let control: Weak<Control> = Arc::downgrade(control);
        let _ = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                loop {
                    match changes.recv_timeout(WATCH_TAPS) {
                        Ok(()) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            // TAP devices move without telling the switch: look where they
                            // are (a move rings `changes`, saved on the next turn).
                            match control.upgrade() {
                                Some(c) => c.switch.refresh_tap_whereabouts(),
                                None => break,
                            }
                            continue;
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                    std::thread::sleep(SETTLE);
                    while changes.try_recv().is_ok() {}
                    let Some(control) = control.upgrade() else {
                        break;
                    };
                    if let Err(e) = me.save(&control) {
                        tracing::warn!("cannot write the state file {}: {e}", me.path.display());
                    }
                }
            });
    }
}
