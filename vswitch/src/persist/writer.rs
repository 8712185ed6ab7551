//! Keeps the state file current: a thread that waits for change notices from the switch,
//! lets a burst of changes settle, and rewrites the file (atomically) when its text changed.
//! It never runs on the packet path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::format::write_atomic;
use super::state::capture;
use crate::control::Control;

/// How long a burst of changes may go on before the file is written (a `kill -9` loses at
/// most this much).
pub const SETTLE: Duration = Duration::from_millis(50);
/// How often TAP devices are looked for when nothing else changes (a TAP moved into a pod's
/// namespace less than this before a `kill -9` is looked for in the switch's namespace).
pub const WATCH_TAPS: Duration = Duration::from_secs(1);
/// How soon a write that failed is tried again.
pub const RETRY: Duration = Duration::from_secs(1);

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

    /// Captures the configuration and writes it if it changed since the last write. The
    /// capture is taken under the writer's lock, so two saves write in the order they looked.
    pub fn save(&self, control: &Control) -> std::io::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let text = capture(control).encode();
        if last.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        write_atomic(&self.path, text.as_bytes())?;
        *last = Some(text);
        Ok(())
    }

    /// Saves after every burst of changes while `control` lives, looks for moved TAP devices
    /// every [`WATCH_TAPS`] however often changes come, and retries a failed write (a full
    /// disk) every [`RETRY`] until it succeeds.
    pub fn start(self: &Arc<Self>, control: &Arc<Control>) {
        let changes = control.switch.changes();
        let me = self.clone();
        let control: Weak<Control> = Arc::downgrade(control);
        let _ = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                let mut look_for_taps = Instant::now() + WATCH_TAPS;
                let mut failing = false;
                loop {
                    let mut wait = look_for_taps.saturating_duration_since(Instant::now());
                    if failing {
                        wait = wait.min(RETRY);
                    }
                    let changed = match changes.recv_timeout(wait) {
                        Ok(()) => true,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    };
                    let Some(control) = control.upgrade() else {
                        break;
                    };
                    if Instant::now() >= look_for_taps {
                        // TAP devices move without telling the switch: a move rings
                        // `changes`, and is saved on the next turn.
                        control.switch.refresh_tap_whereabouts();
                        look_for_taps = Instant::now() + WATCH_TAPS;
                    }
                    if !changed && !failing {
                        continue;
                    }
                    std::thread::sleep(SETTLE);
                    while changes.try_recv().is_ok() {}
                    match me.save(&control) {
                        Ok(()) if failing => {
                            tracing::info!("state file {} written again", me.path.display());
                            failing = false;
                        }
                        Ok(()) => {}
                        Err(e) if !failing => {
                            tracing::warn!(
                                "cannot write the state file {} (retried every {}s): {e}",
                                me.path.display(),
                                RETRY.as_secs()
                            );
                            failing = true;
                        }
                        Err(_) => {}
                    }
                }
            });
    }
}
