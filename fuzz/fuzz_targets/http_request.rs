#![no_main]
//! A request head as the HTTP endpoints (metrics, `/healthz`, Services' health checks) read it
//! from any host of the node's network. Never a panic; once complete, the answer is one
//! well-formed HTTP/1.1 status line with a length that matches its body.
use libfuzzer_sys::fuzz_target;
use vswitch::http_endpoint::{Response, answer_head};

fuzz_target!(|data: &[u8]| {
    let echo = |path: &str| Response::new(200, "text/plain", path.as_bytes().to_vec());
    let Some(out) = answer_head(data, &echo) else {
        return;
    };
    assert!(out.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&out));
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer has a head");
    let head = std::str::from_utf8(&out[..split]).expect("an ASCII head");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a length")
        .parse()
        .expect("a number");
    let body = out.len() - split - 4;
    // HEAD answers carry the GET body's length and no body.
    assert!(body == length || body == 0, "{head}");
});
