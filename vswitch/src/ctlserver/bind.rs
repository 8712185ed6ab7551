//! Creating the run directory and binding its sockets so that nobody else can reach them, even
//! for an instant: the directory is made 0750, the sockets are bound under umask 0177 (so they
//! are born 0600, not chmod-ed after they are already reachable).

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Mutex;

use nix::sys::stat::{Mode, umask};

/// Mode of a run directory vswitchd creates.
pub const RUNDIR_MODE: u32 = 0o750;

/// Serialises our umask changes (the umask is per process).
static UMASK: Mutex<()> = Mutex::new(());

/// Creates the run directory (and missing parents) with mode 0750; an existing one is kept.
pub fn create_rundir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(RUNDIR_MODE)
        .create(path)
}

/// Binds a unix socket that is mode 0600 from the moment it exists.
pub fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    let _serial = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    // Other threads creating files meanwhile only get stricter modes, never looser ones.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn socket_and_rundir_are_private() {
        let base = std::env::temp_dir().join(format!("vswitch-bind-{}", std::process::id()));
        let dir = base.join("run");
        create_rundir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !RUNDIR_MODE, 0, "rundir mode {mode:o}");
        let sock = dir.join("x.ctl");
        let _l = bind_private(&sock).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
