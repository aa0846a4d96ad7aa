//! Connection hygiene against hostile and careless clients, over real sockets: a slow request
//! head (slowloris) is cut off, idle connections are closed, the connection limit answers 503
//! and counts, a half-sent request does not hold the shutdown, a request with both
//! Transfer-Encoding and Content-Length is refused, JSON endpoints refuse other content types,
//! and a large body sent before reading gets its 413 instead of a reset.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::http_client::request;
use common::server::{self, expect, fp32, metric, start, test_repository};
use quantserve::runtime::config::Config;

fn config() -> Config {
    let mut cfg = server::config(test_repository(), &fp32(&["tiny-bert"]));
    cfg.defaults.classify_model = "tiny-bert".into();
    cfg
}

/// Reads until the server closes the connection (or `within` passes); returns what was read
/// and whether it closed.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(10));
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_slow_request_head_and_an_idle_connection_are_closed() {
    let mut cfg = config();
    cfg.server.header_read_timeout_ms = 500;
    cfg.server.idle_timeout_seconds = 1;
    let server = start(cfg);
    let addr = server.addr();

    // Slowloris: a head that never ends, one byte every 100 ms.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"POST /classify HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let began = Instant::now();
    let mut cut = false;
    while began.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        if slow.write_all(b"a").is_err() {
            cut = true;
            break;
        }
        slow.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let mut b = [0u8; 64];
        match slow.read(&mut b) {
            Ok(_) => cut = true,
            Err(e) => cut = e.kind() == std::io::ErrorKind::ConnectionReset,
        }
        if cut {
            break;
        }
    }
    assert!(cut, "a slow head was not cut off in 5 s");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );

    // A connection that never sends a byte.
    let mut idle = TcpStream::connect(addr).unwrap();
    let began = Instant::now();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(closed, "an idle connection stayed open");
    assert!(began.elapsed() >= Duration::from_millis(900));
    assert!(began.elapsed() < Duration::from_secs(3));

    assert!(
        metric(
            addr,
            "quantserve_connections_timed_out_total",
            "reason=\"header\""
        ) >= 1.0
    );
    assert!(
        metric(
            addr,
            "quantserve_connections_timed_out_total",
            "reason=\"idle\""
        ) >= 1.0
    );
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn the_connection_limit_answers_503_and_is_counted() {
    let mut cfg = config();
    cfg.server.max_connections = 4;
    let server = start(cfg);
    let addr = server.addr();
    // Let the readiness probes' connections close.
    std::thread::sleep(Duration::from_millis(500));
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(addr).unwrap();
    let (got, closed) = read_until_closed(&mut extra, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&got);
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    // Slots come back once the connections close.
    assert_eq!(
        metric(
            addr,
            "quantserve_connections_refused_total",
            "listener=\"http\""
        ),
        1.0
    );
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn a_half_sent_request_does_not_hold_the_shutdown() {
    let mut cfg = config();
    cfg.server.drain_seconds = 30;
    let server = start(cfg);
    let addr = server.addr();
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"POST /classify HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // And a kept-alive connection between requests.
    let mut kept = TcpStream::connect(addr).unwrap();
    kept.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    server.shutdown();
    server.wait().unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        began.elapsed()
    );
    let (_, closed) = read_until_closed(&mut half, Duration::from_secs(2));
    assert!(closed);
}

#[test]
fn wire_details_are_refused_clearly() {
    let server = start(config());
    let addr = server.addr();

    // Transfer-Encoding and Content-Length together: request smuggling behind a proxy.
    let smuggled = raw(
        addr,
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          14\r\n{\"inputs\": \"hello\"}\r\n0\r\n\r\n",
    );
    assert!(smuggled.starts_with("HTTP/1.1 400"), "{smuggled}");
    assert!(
        smuggled.contains("Transfer-Encoding and Content-Length"),
        "{smuggled}"
    );
    // Each alone is fine.
    let chunked = raw(
        addr,
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
          13\r\n{\"inputs\": \"hello\"}\r\n0\r\n\r\n",
    );
    assert!(chunked.starts_with("HTTP/1.1 200"), "{chunked}");

    // text/plain, or no content type, on a JSON endpoint: 415 with the JSON error.
    let body = br#"{"inputs": "hello"}"#;
    let r = request(
        addr,
        "POST",
        "/classify",
        &[("content-type", "text/plain")],
        body,
    );
    expect(&r, 415, "unsupported_media_type");
    let untyped = raw(
        addr,
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
          Content-Length: 19\r\n\r\n{\"inputs\": \"hello\"}",
    );
    assert!(untyped.starts_with("HTTP/1.1 415"), "{untyped}");
    assert!(untyped.contains("unsupported_media_type"), "{untyped}");
    // What `curl -d` sends is still read as JSON.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(request(addr, "POST", "/classify", &form, body).status, 200);

    // A 12 MB body sent in full before reading: the 413 arrives, not a reset.
    for size in [4usize << 20, 12 << 20] {
        let mut s = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {size}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            s.write_all(&chunk)
                .expect("the server reset the connection while the body was sent");
            sent += chunk.len();
        }
        let (got, _) = read_until_closed(&mut s, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 413"), "{size}: {text}");
    }
}
