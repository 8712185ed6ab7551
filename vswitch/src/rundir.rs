//! Where the daemon's sockets live in its run directory; shared by the daemon and vswitchctl.

use std::path::{Path, PathBuf};

/// File name of the management socket inside the run directory.
pub const MGMT_SOCKET_NAME: &str = "vswitchd.ctl";

/// `<rundir>/vswitchd.ctl`: the management socket.
pub fn mgmt_socket(rundir: &Path) -> PathBuf {
    rundir.join(MGMT_SOCKET_NAME)
}

/// `<rundir>/<bridge>.mgmt`: a bridge's OpenFlow socket (where `ovs-ofctl` looks for it).
pub fn bridge_socket(rundir: &Path, bridge: &str) -> PathBuf {
    rundir.join(format!("{bridge}.mgmt"))
}

/// File name of the state file inside the run directory (`vswitchd --db` moves it).
pub const STATE_FILE_NAME: &str = "vswitchd.db";
/// File name of the connection and MAC tables a graceful restart hands over.
pub const HANDOVER_FILE_NAME: &str = "vswitchd.handover";

/// `<rundir>/vswitchd.db`: the configuration that survives restarts.
pub fn state_file(rundir: &Path) -> PathBuf {
    rundir.join(STATE_FILE_NAME)
}

/// File name of the periodic checkpoint of the connection and MAC tables (for a crash).
pub const CHECKPOINT_FILE_NAME: &str = "vswitchd.checkpoint";

/// `<rundir>/vswitchd.checkpoint`: the connection and MAC tables a start after a crash uses.
pub fn checkpoint_file(rundir: &Path) -> PathBuf {
    rundir.join(CHECKPOINT_FILE_NAME)
}

/// `<rundir>/vswitchd.handover`: what a graceful restart hands the next process.
pub fn handover_file(rundir: &Path) -> PathBuf {
    rundir.join(HANDOVER_FILE_NAME)
}
