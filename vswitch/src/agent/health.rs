//! Per-Service health checks, as kube-proxy serves Kubernetes' `healthCheckNodePort`: for a
//! Service with `external_traffic_policy = "local"` and `health_check_node_port = P`, HTTP on
//! `underlay_ip:P` answers any path with 200 while this node has backends of the Service
//! (503 without), so that an external load balancer sends outside clients only to nodes that
//! can serve them. The body is kube-proxy's:
//!
//! ```text
//! {"service":{"namespace":"default","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}
//! ```
//!
//! A node change is applied in two steps: [`HealthChecks::prepare`] opens the listeners the
//! new configuration adds before anything is applied (a port that cannot be opened refuses
//! the change), [`HealthChecks::commit`] then closes the ones it dropped and updates every
//! count. Each listener has its own small HTTP server thread, never a forwarding thread.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use super::model::NodeConfig;
use crate::http_endpoint::{Handler, Limits, Response, Server};

/// What one listener answers: the Service's name and its local backends.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    service: String,
    local_endpoints: usize,
}

/// Dropping it closes the port.
struct Listener {
    status: Arc<Mutex<Status>>,
    _server: Server,
}

/// The health-check listeners in service.
#[derive(Default)]
pub struct HealthChecks {
    running: BTreeMap<SocketAddr, Listener>,
}

/// The listeners a configuration wants, with the ones it adds already open.
pub struct Plan {
    wanted: BTreeMap<SocketAddr, Status>,
    opened: BTreeMap<SocketAddr, Listener>,
}

impl HealthChecks {
    /// Opens the listeners `cfg` adds (an error names the Service and the port).
    pub fn prepare(&self, cfg: &NodeConfig) -> Result<Plan, String> {
        let mut wanted = BTreeMap::new();
        let mut opened = BTreeMap::new();
        for s in &cfg.services {
            let Some(port) = s.health_check_node_port else {
                continue;
            };
            let local_endpoints = s
                .backends
                .iter()
                .filter(|b| cfg.pod_cidr.contains(b.ip))
                .count();
            let addr = SocketAddr::from((cfg.underlay_ip, port));
            let status = Status {
                service: s.name.clone(),
                local_endpoints,
            };
            if !self.running.contains_key(&addr) {
                let l = open(addr, status.clone()).map_err(|e| {
                    format!(
                        "Service {}: cannot listen on {addr} (health_check_node_port): {e}",
                        s.name
                    )
                })?;
                opened.insert(addr, l);
            }
            wanted.insert(addr, status);
        }
        Ok(Plan { wanted, opened })
    }

    /// Makes `plan` the listeners in service: closes the ones it no longer wants, updates
    /// the counts of the others.
    pub fn commit(&mut self, plan: Plan) {
        self.running
            .retain(|addr, _| plan.wanted.contains_key(addr));
        self.running.extend(plan.opened);
        for (addr, status) in plan.wanted {
            if let Some(l) = self.running.get(&addr) {
                let mut cur = l.status.lock().unwrap_or_else(|e| e.into_inner());
                if *cur != status {
                    tracing::info!(
                        service = %status.service,
                        %addr,
                        local_endpoints = status.local_endpoints,
                        "health check updated"
                    );
                    *cur = status;
                }
            }
        }
    }

    /// Closes every listener (vswitchd stops).
    pub fn close_all(&mut self) {
        self.running.clear();
    }
}

fn open(addr: SocketAddr, status: Status) -> std::io::Result<Listener> {
    let listener = TcpListener::bind(addr)?;
    let status = Arc::new(Mutex::new(status));
    let st = status.clone();
    let handler: Arc<Handler> =
        Arc::new(move |_path: &str| answer(&st.lock().unwrap_or_else(|e| e.into_inner())));
    let name = format!("health-{}", addr.port());
    let server = Server::spawn(listener, name, Limits::default(), handler)?;
    tracing::info!(%addr, "Service health check listening");
    Ok(Listener {
        status,
        _server: server,
    })
}

/// The namespace and name kube-proxy reports for a Service named as docs/kubernetes.md plans
/// (`NAMESPACE/NAME:PORTNAME`): `("default", "web")`; any other name is the name alone.
fn kube_service_name(service: &str) -> (&str, &str) {
    match service.split_once('/') {
        Some((ns, rest)) if !ns.is_empty() && !rest.is_empty() => {
            (ns, rest.split_once(':').map_or(rest, |(name, _port)| name))
        }
        _ => ("", service),
    }
}

/// kube-proxy's answer: 200 with local endpoints, 503 without; JSON either way.
fn answer(s: &Status) -> Response {
    let (namespace, name) = kube_service_name(&s.service);
    let body = serde_json::json!({
        "service": { "namespace": namespace, "name": name },
        "localEndpoints": s.local_endpoints,
        "serviceProxyHealthy": true,
    });
    let code = if s.local_endpoints > 0 { 200 } else { 503 };
    Response::new(code, "application/json", body.to_string())
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header(
            "X-Load-Balancing-Endpoint-Weight",
            s.local_endpoints.to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::kube_service_name;

    #[test]
    fn a_kubernetes_style_name_reports_namespace_and_name() {
        assert_eq!(kube_service_name("default/web:http"), ("default", "web"));
        assert_eq!(kube_service_name("kube-system/dns"), ("kube-system", "dns"));
        assert_eq!(kube_service_name("web"), ("", "web"));
        assert_eq!(kube_service_name("/web"), ("", "/web"));
    }
}
