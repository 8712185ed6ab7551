//! A small HTTP/1.1 server for the read-only endpoints vswitchd exposes to the network (the
//! metrics and `/healthz` server, the Services' health checks). Those ports face any host of
//! the node's network, so every request is bounded: its head in bytes, its connection in
//! time, the connections in number. A client can make its own request fail, never vswitchd
//! crash, stall or grow. Requests carry no body (GET and HEAD only); each answer closes its
//! connection.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ratelimit::RateLimit;

/// The bounds every connection lives within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line and headers, in bytes (a longer head gets 431).
    pub max_head: usize,
    /// From accept to the last byte of the answer.
    pub deadline: Duration,
    /// Connections served at once; past it a new one is closed at once.
    pub max_connections: usize,
    /// Connections served at once from one client address (so that one client cannot hold
    /// every place, and a load balancer's probe still gets in).
    pub max_per_client: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            deadline: Duration::from_secs(5),
            max_connections: 32,
            max_per_client: 4,
        }
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body)
    }
}

/// What answers a request: its path (the query string cut off) to a response.
pub type Handler = dyn Fn(&str) -> Response + Send + Sync;

/// A running server; dropping it closes the port and ends its thread.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// The listening socket (a second handle): shut down to wake the blocked accept.
    wake: TcpListener,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` from a thread named `name`.
    pub fn spawn(
        listener: TcpListener,
        name: String,
        limits: Limits,
        handler: Arc<Handler>,
    ) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let wake = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = std::thread::Builder::new()
            .name(name)
            .spawn(move || accept_loop(listener, &flag, limits, handler))?;
        Ok(Server {
            addr,
            stop,
            wake,
            accept: Some(accept),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // On Linux, shutting a listening socket down makes a blocked accept() return (with
        // EINVAL); the thread then sees `stop` and ends, and the port is free once it has.
        let woken =
            nix::sys::socket::shutdown(self.wake.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let (Ok(()), Some(t)) = (woken, self.accept.take()) {
            let _ = t.join();
        }
    }
}

/// The connections being served: at most `max_connections`, `max_per_client` per address.
struct Slots {
    limits: Limits,
    taken: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One connection's place, given back when dropped (a handler that panics too).
struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

impl Slots {
    fn take(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let mut t = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *t;
        let mine = per.entry(client).or_insert(0);
        if *total >= self.limits.max_connections || *mine >= self.limits.max_per_client {
            if *mine == 0 {
                per.remove(&client);
            }
            return None;
        }
        *total += 1;
        *mine += 1;
        Some(Slot {
            slots: self.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.taken.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *t;
        *total -= 1;
        if let Some(n) = per.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.client);
            }
        }
    }
}

fn accept_loop(listener: TcpListener, stop: &AtomicBool, limits: Limits, handler: Arc<Handler>) {
    let slots = Arc::new(Slots {
        limits,
        taken: Mutex::new((0, HashMap::new())),
    });
    let mut warn = RateLimit::new(Duration::from_secs(10));
    while !stop.load(Ordering::Acquire) {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(_) if stop.load(Ordering::Acquire) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors, an aborted handshake…: the port stays open, and
                // the next accept is tried after a pause instead of spinning.
                if let Some(suppressed) = warn.allow(Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "HTTP endpoint: accept failed");
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Some(slot) = slots.take(peer.ip()) else {
            continue; // closed unanswered: the places (or this client's) are taken
        };
        let handler = handler.clone();
        // A failed spawn drops the closure, and the slot with it.
        let _ = std::thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let _slot = slot;
                let _ = serve_one(stream, limits, &*handler);
            });
    }
}

/// Reads one request head within the limits, answers it, closes.
fn serve_one(mut stream: TcpStream, limits: Limits, handler: &Handler) -> io::Result<()> {
    let deadline = Instant::now() + limits.deadline;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let response = loop {
        if let Some(r) = parse_head(&head, handler) {
            break r;
        }
        if head.len() >= limits.max_head {
            break Response::text(431, "request head too large\n");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(()); // too slow: closed without an answer
        }
        stream.set_read_timeout(Some(left))?;
        let want = chunk.len().min(limits.max_head - head.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Ok(()),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
    stream.write_all(&encode(&response))?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    linger(&mut stream, deadline);
    Ok(())
}

/// Reads what the client still sends (bounded in bytes and time) before closing: closing
/// with unread bytes makes the kernel send a reset, which can destroy the answer in flight.
fn linger(stream: &mut TcpStream, deadline: Instant) {
    let mut sink = [0u8; 4096];
    let mut left_bytes: usize = 64 * 1024;
    while left_bytes > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.min(Duration::from_millis(200));
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left_bytes = left_bytes.saturating_sub(n),
        }
    }
}

/// The bytes sent back for a request head read so far: `None` while more are needed. (The
/// server's parse and encoding without a socket, for the fuzz target.)
pub fn answer_head(head: &[u8], handler: &Handler) -> Option<Vec<u8>> {
    parse_head(head, handler).map(|r| encode(&r))
}

/// The answer to `head` once it is complete, `None` while more bytes are needed.
fn parse_head(head: &[u8], handler: &Handler) -> Option<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let response = match req.parse(head) {
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => Response::text(431, "too many headers\n"),
        Err(e) => Response::text(400, &format!("bad request: {e}\n")),
        Ok(httparse::Status::Complete(_)) => answer(&req, handler),
    };
    Some(response)
}

fn answer(req: &httparse::Request, handler: &Handler) -> Response {
    let method = req.method.unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "only GET and HEAD\n").with_header("Allow", "GET, HEAD");
    }
    let has_body = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.iter().any(|&b| b != b'0'))
    });
    if has_body {
        return Response::text(400, "a request body is not accepted\n");
    }
    let path = req.path.unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let mut response = handler(path);
    if method == "HEAD" {
        response
            .headers
            .push(("Content-Length", response.body.len().to_string()));
        response.body.clear();
    }
    response
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn encode(r: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(r.body.len() + 256);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type
    );
    let explicit_length = r.headers.iter().any(|(k, _)| *k == "Content-Length");
    for (k, v) in &r.headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if !explicit_length {
        let _ = write!(out, "Content-Length: {}\r\n", r.body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&r.body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let handler: Arc<Handler> = Arc::new(|path: &str| match path {
            "/ok" => Response::new(200, "text/plain", "fine\n").with_header("X-Test", "1"),
            _ => Response::text(404, "no\n"),
        });
        Server::spawn(listener, "http-test".into(), limits, handler).unwrap()
    }

    /// Sends `request` and reads until the server closes (bounded by a 10 s timeout).
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(request);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn answers_get_and_head_and_closes() {
        let srv = serve(Limits::default());
        let r = exchange(srv.local_addr(), b"GET /ok?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("X-Test: 1\r\n") && r.contains("Connection: close\r\n"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\nfine\n"), "{r}");
        let r = exchange(srv.local_addr(), b"HEAD /ok HTTP/1.0\r\n\r\n");
        assert!(
            r.contains("Content-Length: 5\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        let r = exchange(srv.local_addr(), b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    }

    #[test]
    fn refuses_bodies_methods_and_garbage() {
        let srv = serve(Limits::default());
        let huge = b"GET / HTTP/1.1\r\nContent-Length: 4611686018427387904\r\n\r\n";
        assert!(exchange(srv.local_addr(), huge).starts_with("HTTP/1.1 400 "));
        let chunked = b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(exchange(srv.local_addr(), chunked).starts_with("HTTP/1.1 400 "));
        let post = b"POST /ok HTTP/1.1\r\n\r\n";
        assert!(exchange(srv.local_addr(), post).starts_with("HTTP/1.1 405 "));
        assert!(exchange(srv.local_addr(), b"\x00\xff\r\n\r\n").starts_with("HTTP/1.1 400 "));
        // Still serving.
        assert!(exchange(srv.local_addr(), b"GET /ok HTTP/1.1\r\n\r\n").contains(" 200 "));
    }

    #[test]
    fn an_endless_head_is_cut_at_the_limit() {
        let srv = serve(Limits::default());
        let mut req = b"GET /ok HTTP/1.1\r\nX-Long: ".to_vec();
        req.resize(16 * 1024, b'a');
        assert!(exchange(srv.local_addr(), &req).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn a_silent_client_is_dropped_at_the_deadline_and_others_are_served() {
        let limits = Limits {
            deadline: Duration::from_millis(300),
            max_connections: 2,
            ..Limits::default()
        };
        let srv = serve(limits);
        let t0 = Instant::now();
        let silent: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(srv.local_addr()).unwrap();
                s.write_all(b"GET /ok HTTP/1.1\r\n").ok();
                s
            })
            .collect();
        // Both slots held: a third connection is closed unanswered…
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(exchange(srv.local_addr(), b"GET /ok HTTP/1.1\r\n\r\n"), "");
        // …and once the deadline has passed for the silent ones, served again.
        for mut s in silent {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            assert!(out.is_empty(), "a silent client got an answer");
        }
        assert!(t0.elapsed() < Duration::from_secs(4));
        std::thread::sleep(Duration::from_millis(50));
        assert!(exchange(srv.local_addr(), b"GET /ok HTTP/1.1\r\n\r\n").contains(" 200 "));
    }

    #[test]
    fn dropping_the_server_frees_its_port() {
        let srv = serve(Limits::default());
        let addr = srv.local_addr();
        drop(srv);
        TcpListener::bind(addr).expect("the port is free again");
        // Bound to the wildcard address too.
        let handler: Arc<Handler> = Arc::new(|_: &str| Response::text(200, "ok\n"));
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let srv = Server::spawn(listener, "http-test".into(), Limits::default(), handler).unwrap();
        let addr = srv.local_addr();
        drop(srv);
        TcpListener::bind(addr).expect("the wildcard port is free again");
    }

    /// One client holds at most `max_per_client` places, whatever is left in all.
    #[test]
    fn one_client_cannot_take_every_place() {
        let srv = serve(Limits {
            max_per_client: 1,
            max_connections: 8,
            ..Limits::default()
        });
        let mut silent = TcpStream::connect(srv.local_addr()).unwrap();
        silent.write_all(b"GET /ok HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(exchange(srv.local_addr(), b"GET /ok HTTP/1.1\r\n\r\n"), "");
        drop(silent);
        std::thread::sleep(Duration::from_millis(100));
        assert!(exchange(srv.local_addr(), b"GET /ok HTTP/1.1\r\n\r\n").contains(" 200 "));
    }

    /// A handler that panics loses its connection, not its place: the server keeps serving.
    #[test]
    fn a_panicking_handler_gives_its_place_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let handler: Arc<Handler> = Arc::new(|path: &str| {
            assert_ne!(path, "/panic", "a handler bug");
            Response::text(200, "ok\n")
        });
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let srv = Server::spawn(listener, "http-test".into(), limits, handler).unwrap();
        for _ in 0..3 {
            assert_eq!(
                exchange(srv.local_addr(), b"GET /panic HTTP/1.1\r\n\r\n"),
                ""
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(exchange(srv.local_addr(), b"GET /ok HTTP/1.1\r\n\r\n").contains(" 200 "));
    }
}
