//! A vswitchd without ports in the test's own namespace (no root needed), killed and its run
//! directory removed on drop; shared by the daemon-surface tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const VSWITCHD: &str = env!("CARGO_BIN_EXE_vswitchd");
pub const VSWITCHCTL: &str = env!("CARGO_BIN_EXE_vswitchctl");

pub struct Daemon {
    pub child: Child,
    pub rundir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.rundir);
    }
}

/// A run directory of this test process, unique per `tag`.
pub fn rundir(prefix: &str, tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}-{}-{tag}", std::process::id()))
}

/// Waits up to 10 s for `path` to exist (`present`) or to be gone.
pub fn wait_for(path: &Path, present: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if path.exists() == present {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Runs `vswitchctl --rundir RUNDIR ARGS`.
pub fn ctl(rundir: &Path, args: &[&str]) -> Output {
    Command::new(VSWITCHCTL)
        .arg("--rundir")
        .arg(rundir)
        .args(args)
        .output()
        .expect("run vswitchctl")
}
