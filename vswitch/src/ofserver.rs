//! The OpenFlow 1.3 server: one unix socket per bridge, `<rundir>/<bridge>.mgmt` (mode 0600),
//! where `ovs-ofctl -O OpenFlow13` finds it by bridge name, plus an optional loopback TCP
//! listener (`VSWITCH_OF_TCP=BRIDGE@IP:PORT`).
//!
//! Control plane only: a thread per listener and per connection (ovs-ofctl opens 2–3 at
//! once). Each connection is a [`session::Session`] that decodes with `openflow`,
//! applies changes to the bridge under the switch lock and answers in request order, so an
//! error always precedes the barrier reply that follows it.

pub mod session;
pub mod stats;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tracing::{info, warn};

use crate::rundir::bridge_socket;
use crate::switch::{BridgeObserver, Switch};

struct Listening {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

/// The bridges' OpenFlow listeners: registered with the switch as a [`BridgeObserver`], it
/// opens a bridge's socket when the bridge is added and closes it when it goes (unit tests
/// build switches without one, and so without sockets).
pub struct Registry {
    switch: Weak<Switch>,
    rundir: PathBuf,
    listening: Mutex<HashMap<String, Listening>>,
}

impl Registry {
    pub fn new(switch: &Arc<Switch>) -> Registry {
        Registry {
            switch: Arc::downgrade(switch),
            rundir: switch.rundir.clone(),
            listening: Mutex::new(HashMap::new()),
        }
    }
}

impl BridgeObserver for Registry {
    /// Opens `<rundir>/<bridge>.mgmt`. A failure is logged, not fatal: the bridge still
    /// works through the management socket.
    fn bridge_added(&self, bridge: &str) {
        let switch = self.switch.clone();
        let path = bridge_socket(&self.rundir, bridge);
        let _ = std::fs::remove_file(&path);
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                warn!("cannot open OpenFlow socket {}: {e}", path.display());
                return;
            }
        };
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, br) = (stop.clone(), bridge.to_string());
        let spawned = std::thread::Builder::new()
            .name(format!("of-{bridge}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let _ = conn.set_read_timeout(Some(session::IDLE_PUBLISH));
                    spawn_session(conn, switch.clone(), br.clone());
                }
            });
        if spawned.is_ok() {
            info!(socket = %path.display(), "OpenFlow 1.3 listening");
            self.listening
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(bridge.to_string(), Listening { path, stop });
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
            l.stop.store(true, Ordering::Release);
            // Wake the blocking accept so the thread sees the flag and drops the listener.
            let _ = UnixStream::connect(&l.path);
            let _ = std::fs::remove_file(&l.path);
        }
    }
}

fn spawn_session<S>(conn: S, switch: Weak<Switch>, bridge: String)
where
    S: std::io::Read + std::io::Write + Send + 'static,
{
    let _ = std::thread::Builder::new()
        .name("of-conn".into())
        .spawn(move || {
            session::Session::new(switch, bridge).run(conn);
        });
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

/// Serves `bridge` over TCP on `addr` (one thread; sessions as on the unix socket).
pub fn listen_tcp(switch: &Arc<Switch>, bridge: String, addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    let weak = Arc::downgrade(switch);
    info!(%addr, %bridge, "OpenFlow 1.3 listening on TCP");
    std::thread::Builder::new()
        .name("of-tcp".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = conn.set_nodelay(true);
                let _ = conn.set_read_timeout(Some(session::IDLE_PUBLISH));
                spawn_session(conn, weak.clone(), bridge.clone());
            }
        })?;
    Ok(())
}
