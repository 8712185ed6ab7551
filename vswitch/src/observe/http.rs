//! The metrics server: `/metrics` (Prometheus text) and `/healthz` (503 until vswitchd has
//! started and applied its configuration, then 200), on one thread of its own.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{families, gather};
use crate::control::Control;
use crate::http_endpoint::{Handler, Limits, Response, Server};

/// `ADDR:PORT`, or a port alone (`9100`, `:9100`) for loopback.
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!("bad metrics address '{s}' (expected ADDR:PORT, e.g. 127.0.0.1:9474, or a port)")
    })
}

/// Listens on `addr` and serves scrapes from a thread named `metrics`; the server lives as
/// long as vswitchd.
pub fn serve(
    addr: SocketAddr,
    control: Arc<Control>,
    ready: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    let handler: Arc<Handler> = Arc::new(move |path: &str| answer(path, &control, &ready));
    let server = Server::spawn(listener, "metrics".into(), Limits::default(), handler)?;
    tracing::info!(%addr, "metrics and health served over HTTP");
    std::mem::forget(server);
    Ok(())
}

fn answer(path: &str, control: &Control, ready: &AtomicBool) -> Response {
    match path {
        "/metrics" => Response::new(
            200,
            families::CONTENT_TYPE,
            families::encode(gather::gather(control)),
        ),
        "/healthz" => {
            let up = ready.load(Ordering::Acquire);
            let body = serde_json::json!({
                "status": if up { "ok" } else { "starting" },
                "configured": control.agent.configured(),
                "bridges": control.switch.lock().len(),
            });
            Response::new(
                if up { 200 } else { 503 },
                "application/json",
                format!("{body}\n"),
            )
        }
        _ => Response::new(
            404,
            "text/plain; charset=utf-8",
            "not found: try /metrics or /healthz\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_address("9474").unwrap().to_string(), "127.0.0.1:9474");
        assert_eq!(
            parse_address(":9474").unwrap().to_string(),
            "127.0.0.1:9474"
        );
        assert_eq!(parse_address("0.0.0.0:1").unwrap().to_string(), "0.0.0.0:1");
        assert_eq!(parse_address("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(parse_address("localhost").is_err());
    }
}
