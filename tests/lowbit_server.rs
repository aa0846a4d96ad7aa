//! The low-bit variants are servable: listed in a model's `variants`, they load in the server
//! (derived from fp32 at load time) and answer requests that name them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use quantserve::api::serve::Server;
use quantserve::runtime::config::{Config, ModelConfig, WorkersConfig};
use serde_json::{Value, json};

/// One POST or GET on its own connection; returns (status, JSON body).
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// POSTs until the variant has finished loading (non-default variants load after readiness).
fn post_loaded(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let start = Instant::now();
    loop {
        let (status, resp) = call(addr, "POST", path, Some(body));
        if status != 503 || start.elapsed() > Duration::from_secs(240) {
            return (status, resp);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn lowbit_variants_load_in_the_server_and_answer() {
    common::model_dir("en-pt");
    let mut cfg = Config::default();
    cfg.server.http_addr = "127.0.0.1:0".into();
    cfg.server.models_dir = common::path("models");
    cfg.workers = WorkersConfig {
        count: 1,
        threads: 2,
    };
    let variants = |default: &str, others: &[&str]| ModelConfig {
        default_variant: default.into(),
        variants: std::iter::once(default)
            .chain(others.iter().copied())
            .map(String::from)
            .collect(),
        // Post-training ternary and binary variants lose most of their quality (README "Below
        // 8 bits"); the default self-check bar would rightly refuse them. Here they must load.
        min_agreement: 0.0,
        ..ModelConfig::fp32()
    };
    cfg.defaults.classify_model = "sentiment".into();
    cfg.models.insert(
        "sentiment".into(),
        variants("int4", &["int4-g64", "int6", "ternary", "bcq2"]),
    );
    cfg.models.insert(
        "en-pt".into(),
        variants("int4-g64", &["ternary-row", "bcq3"]),
    );
    let server = Server::start(cfg, false).unwrap();
    let addr = server.addr();
    let start = Instant::now();
    while call(addr, "GET", "/health/ready", None).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "server not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for v in ["int4", "int4-g64", "int6", "ternary", "bcq2"] {
        let req = json!({"inputs": ["I loved this movie!"], "model": "sentiment", "variant": v});
        let (status, body) = post_loaded(addr, "/classify", &req);
        assert_eq!(status, 200, "{v}: {body}");
        assert_eq!(body["variant"], v);
        assert!(body["results"][0]["label"].is_string(), "{v}: {body}");
    }
    for v in ["int4-g64", "ternary-row", "bcq3"] {
        let req = json!({"q": "How are you today?", "source": "en", "target": "pt", "variant": v});
        let (status, body) = post_loaded(addr, "/translate", &req);
        assert_eq!(status, 200, "{v}: {body}");
        assert_eq!(body["variant"], v);
        assert!(body["translatedText"].is_string(), "{v}: {body}");
    }
    server.shutdown();
}
