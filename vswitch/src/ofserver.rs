//! The OpenFlow 1.3 server: one unix socket per bridge, `<rundir>/<bridge>.mgmt` (mode 0600),
//! where `ovs-ofctl -O OpenFlow13` finds it by bridge name, plus an optional loopback TCP
//! listener (`VSWITCH_OF_TCP=BRIDGE@IP:PORT`).
//!
//! Control plane only: the sockets are served by [`crate::ctlserver`] (one event loop, a few
//! workers, bounded connections and timeouts). Each connection is a [`session::Session`]
//! that decodes with `openflow`,
//! applies changes to the bridge under the switch lock and answers in request order, so an
//! error always precedes the barrier reply that follows it.

pub mod counters;
pub mod session;
pub mod stats;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use tracing::{info, warn};

use crate::ctlserver::{Listener, ListenerId, ServerHandle, Service};
use crate::rundir::bridge_socket;
use crate::switch::{BridgeObserver, Switch};

struct Listening {
    path: PathBuf,
    id: ListenerId,
}

/// The bridges' OpenFlow listeners: registered with the switch as a [`BridgeObserver`], it
/// opens a bridge's socket when the bridge is added and closes it when it goes (unit tests
/// build switches without one, and so without sockets).
pub struct Registry {
    switch: Weak<Switch>,
    rundir: PathBuf,
    server: ServerHandle,
    listening: Mutex<HashMap<String, Listening>>,
}

impl Registry {
    pub fn new(switch: &Arc<Switch>, server: ServerHandle) -> Registry {
        Registry {
            switch: Arc::downgrade(switch),
            rundir: switch.rundir.clone(),
            server,
            listening: Mutex::new(HashMap::new()),
        }
    }
}

impl BridgeObserver for Registry {
    /// Opens `<rundir>/<bridge>.mgmt` (mode 0600 from the start). A failure is logged, not
    /// fatal: the bridge still works through the management socket.
    fn bridge_added(&self, bridge: &str) {
        let path = bridge_socket(&self.rundir, bridge);
        let _ = std::fs::remove_file(&path);
        let listener = match crate::ctlserver::bind::bind_private(&path) {
            Ok(l) => l,
            Err(e) => {
                warn!("cannot open OpenFlow socket {}: {e}", path.display());
                return;
            }
        };
        let service = Service::OpenFlow {
            switch: self.switch.clone(),
            bridge: bridge.to_string(),
        };
        match self.server.listen(Listener::Unix(listener), service) {
            Ok(id) => {
                info!(socket = %path.display(), "OpenFlow 1.3 listening");
                self.listening
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(bridge.to_string(), Listening { path, id });
            }
            Err(e) => {
                warn!("cannot serve OpenFlow socket {}: {e}", path.display());
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Closes the bridge's socket and removes the file. Open sessions notice on their next
    /// request (the bridge is gone) and close.
    fn bridge_removed(&self, bridge: &str) {
        let l = self
            .listening
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(bridge);
        if let Some(l) = l {
            self.server.unlisten(l.id);
            let _ = std::fs::remove_file(&l.path);
        }
    }
}

/// Parses `BRIDGE@IP:PORT` (loopback only: the server has no authentication).
pub fn parse_tcp_spec(spec: &str) -> Result<(String, SocketAddr), String> {
    let (br, addr) = spec
        .split_once('@')
        .ok_or_else(|| format!("'{spec}': expected BRIDGE@IP:PORT, e.g. br0@127.0.0.1:6653"))?;
    let addr: SocketAddr = addr.parse().map_err(|e| format!("'{addr}': {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr}: OpenFlow over TCP is served on loopback only"
        ));
    }
    Ok((br.to_string(), addr))
}

/// Serves `bridge` over TCP on `addr` (sessions as on the unix socket).
pub fn listen_tcp(
    switch: &Arc<Switch>,
    server: &ServerHandle,
    bridge: String,
    addr: SocketAddr,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    info!(%addr, %bridge, "OpenFlow 1.3 listening on TCP");
    let service = Service::OpenFlow {
        switch: Arc::downgrade(switch),
        bridge,
    };
    server.listen(Listener::Tcp(listener), service)?;
    Ok(())
}
