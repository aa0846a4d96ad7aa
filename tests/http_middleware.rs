//! The standard HTTP middleware end to end: the access log of the real binary (text and JSON),
//! request ids, CORS preflights with allowed and refused origins, and compressed responses.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::http_client::{Resp, get, request};
use common::server::{self, start, wait_settled};
use serde_json::{Value, json};

const ORIGIN: &str = "https://console.example";

/// `quantserve serve` over the test repository with the tiny classifier, its stderr lines sent
/// to the returned channel. `env` adds variables; `args` adds flags.
struct Binary {
    child: Child,
    addr: SocketAddr,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Binary {
    fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("quantserve.toml");
        let text = format!(
            "[server]\nhttp_addr = \"127.0.0.1:0\"\nmodels_dir = {:?}\n\
             [workers]\ncount = 1\nthreads = 1\n[defaults]\nclassify_model = \"tiny-bert\"\n\
             [models.tiny-bert]\n",
            server::test_repository().display().to_string()
        );
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quantserve"));
        cmd.arg("serve").arg("--config").arg(&config).args(args);
        cmd.env_remove("QUANTSERVE_LOG").env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut bin = Self {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            lines,
            seen: Vec::new(),
        };
        // The address is in the "listening" line (text or JSON).
        let line = bin.wait_for(|l| l.contains("listening"));
        let addr = line
            .split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '=')
            .filter_map(|w| w.parse::<SocketAddr>().ok())
            .next()
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        bin.addr = addr;
        wait_settled(addr);
        bin
    }

    /// The first stderr line (since the start) that satisfies `want`.
    fn wait_for(&mut self, want: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| want(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if want(&l) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no such line in stderr:\n{}", self.seen.join("\n"));
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn classify(addr: SocketAddr, id: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("x-request-id", id), ("content-type", "application/json")];
    headers.extend_from_slice(extra);
    let body = json!({"inputs": "a fine day"}).to_string();
    request(addr, "POST", "/classify", &headers, body.as_bytes())
}

#[test]
fn one_access_log_line_per_request_in_text() {
    // The CORS origins come from the environment by the QUANTSERVE_SECTION__KEY rule.
    let cors = format!("[\"{ORIGIN}\"]");
    let mut bin = Binary::start(
        "access-log-text",
        &[],
        &[("QUANTSERVE_CORS__ALLOWED_ORIGINS", cors.as_str())],
    );
    let r = classify(bin.addr, "log-text-1", &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-request-id"), Some("log-text-1"));
    let line = bin.wait_for(|l| l.contains("request_id=log-text-1"));
    for part in [
        " INFO ",
        "method=POST",
        "path=/classify",
        "status=200",
        "model=tiny-bert",
        "variant=fp32",
        "latency_ms=",
    ] {
        assert!(line.contains(part), "{part} missing from {line:?}");
    }
    // A route without a model: the same line with `-`; an unusable client id is replaced.
    let long = "x".repeat(200);
    let r = request(
        bin.addr,
        "GET",
        "/health/live",
        &[("x-request-id", &long)],
        b"",
    );
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 16);
    let line = bin.wait_for(|l| l.contains(&format!("request_id={id}")));
    assert!(
        line.contains("path=/health/live") && line.contains("model=-"),
        "{line}"
    );
    // Exactly one line for the request.
    let _ = classify(bin.addr, "log-text-2", &[]);
    bin.wait_for(|l| l.contains("request_id=log-text-2"));
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(l) = bin.lines.try_recv() {
        bin.seen.push(l);
    }
    let n = bin.seen.iter().filter(|l| l.contains("log-text-2")).count();
    assert_eq!(n, 1, "{:#?}", bin.seen);

    // CORS from the environment: the preflight is answered for the allowed origin.
    let r = preflight(bin.addr, ORIGIN);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
}

#[test]
fn json_log_lines_parse() {
    let mut bin = Binary::start("access-log-json", &["--log-format", "json"], &[]);
    let r = classify(bin.addr, "log-json-1", &[]);
    assert_eq!(r.status, 200);
    let line = bin.wait_for(|l| l.contains("log-json-1"));
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["status"], 200);
    assert_eq!(v["fields"]["model"], "tiny-bert");
    assert_eq!(v["fields"]["variant"], "fp32");
    assert!(v["fields"]["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["span"]["request_id"], "log-json-1");
    assert_eq!(v["span"]["path"], "/classify");
    assert_eq!(v["span"]["method"], "POST");
    // Every line the server wrote is JSON.
    for l in &bin.seen {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[test]
fn the_environment_sets_the_log_format_too() {
    let mut bin = Binary::start("access-log-env", &[], &[("QUANTSERVE_LOG__FORMAT", "json")]);
    let line = bin.wait_for(|l| l.contains("listening"));
    serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
}

fn preflight(addr: SocketAddr, origin: &str) -> Resp {
    request(
        addr,
        "OPTIONS",
        "/classify",
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type, authorization",
            ),
        ],
        b"",
    )
}

#[test]
fn cors_answers_allowed_origins_only_and_is_off_by_default() {
    let mut cfg = server::config(server::test_repository(), &server::fp32(&["tiny-bert"]));
    cfg.defaults.classify_model = "tiny-bert".into();
    cfg.cors.allowed_origins = vec![ORIGIN.into()];
    let on = start(cfg.clone());

    let r = preflight(on.addr(), ORIGIN);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let methods = r.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = r.header("access-control-allow-headers").unwrap_or_default();
    assert!(headers.contains("authorization"), "{headers}");

    // Another origin gets no permission (the browser then blocks the call).
    let r = preflight(on.addr(), "https://elsewhere.example");
    assert_eq!(r.header("access-control-allow-origin"), None);

    // The real request: allowed, with the served model's headers readable by the page.
    let r = classify(on.addr(), "cors-1", &[("origin", ORIGIN)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap_or_default();
    assert!(exposed.contains("x-quantserve-variant"), "{exposed}");

    // Off by default: no CORS headers, and OPTIONS is not a method of the route.
    cfg.cors.allowed_origins.clear();
    let off = start(cfg);
    let r = preflight(off.addr(), ORIGIN);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn responses_are_compressed_when_asked() {
    let mut cfg = server::config(server::test_repository(), &server::fp32(&["tiny-bert"]));
    cfg.defaults.classify_model = "tiny-bert".into();
    let s = start(cfg);
    let _ = classify(s.addr(), "metrics-1", &[]);

    let plain = get(s.addr(), "/metrics");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    let text = String::from_utf8(plain.body.clone()).unwrap();
    assert!(text.contains("quantserve_requests_total"));

    let gz = request(
        s.addr(),
        "GET",
        "/metrics",
        &[("accept-encoding", "gzip")],
        b"",
    );
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut decoded)
        .unwrap();
    assert!(decoded.contains("quantserve_requests_total"), "{decoded}");
    assert!(
        gz.body.len() * 3 < decoded.len(),
        "{} bytes for {}",
        gz.body.len(),
        decoded.len()
    );

    let br = request(
        s.addr(),
        "GET",
        "/metrics",
        &[("accept-encoding", "br")],
        b"",
    );
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert!(br.body.len() * 3 < text.len());

    // JSON answers over MIN_COMPRESSED_BYTES too (a batch of 40), and they parse once decoded.
    let batch = json!({"inputs": vec!["a fine day"; 40]}).to_string();
    let r = request(
        s.addr(),
        "POST",
        "/classify",
        &[
            ("content-type", "application/json"),
            ("accept-encoding", "gzip"),
        ],
        batch.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let v: Value = serde_json::from_reader(flate2::read::GzDecoder::new(&r.body[..])).unwrap();
    assert_eq!(v["results"].as_array().map(Vec::len), Some(40), "{v}");

    // A one-sentence answer is under MIN_COMPRESSED_BYTES: it goes out as it is, even when the
    // client accepts gzip (compressing it cost more time than the bytes it saved).
    let small = classify(s.addr(), "small-1", &[("accept-encoding", "gzip, br")]);
    assert_eq!(small.status, 200);
    assert!(small.body.len() < 1024, "{} bytes", small.body.len());
    assert_eq!(small.header("content-encoding"), None);
    let v: Value = serde_json::from_slice(&small.body).unwrap();
    assert!(v["results"].is_array(), "{v}");
}
