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
