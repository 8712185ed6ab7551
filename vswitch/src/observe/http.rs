//! The metrics server: `/metrics` (Prometheus text) and `/healthz` (503 until vswitchd has
//! started and applied its configuration, then 200), on one thread of its own.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{families, gather};
use crate::control::Control;

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

/// Listens on `addr` and serves scrapes from a thread named `metrics`.
pub fn serve(
    addr: SocketAddr,
    control: Arc<Control>,
    ready: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    tracing::info!(%addr, "metrics and health served over HTTP");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let resp = answer(req.url(), &control, &ready);
                let _ = req.respond(resp);
            }
        })?;
    Ok(())
}

fn header(k: &str, v: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("a valid header")
}

fn answer(
    url: &str,
    control: &Control,
    ready: &AtomicBool,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split('?').next().unwrap_or(url);
    match path {
        "/metrics" => {
            let text = families::encode(gather::gather(control));
            tiny_http::Response::from_string(text)
                .with_header(header("Content-Type", families::CONTENT_TYPE))
        }
        "/healthz" => {
            let up = ready.load(Ordering::Acquire);
            let body = serde_json::json!({
                "status": if up { "ok" } else { "starting" },
                "configured": control.agent.configured(),
                "bridges": control.switch.lock().len(),
            });
            tiny_http::Response::from_string(format!("{body}\n"))
                .with_status_code(if up { 200 } else { 503 })
                .with_header(header("Content-Type", "application/json"))
        }
        _ => tiny_http::Response::from_string("not found: try /metrics or /healthz\n")
            .with_status_code(404),
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
