//! A real Prometheus server (Debian package `prometheus`) scrapes a running quantserve on
//! loopback, with the rules of `deploy/prometheus/rules.yml` loaded, and the test reads a
//! per-variant series and a recorded per-variant rate back through Prometheus's HTTP API, then
//! checks that every rule and every query of the Grafana dashboard evaluates without error.
//!
//! Without `prometheus` on PATH the test is skipped with a message, except under CI (`CI` set),
//! where `.ci/run` installs it and its absence is a failure.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server;
use quantserve::runtime::config::ModelConfig;
use serde_json::Value;

/// How long Prometheus may take to start, scrape and evaluate the rules.
const WAIT: Duration = Duration::from_secs(90);

/// One HTTP/1.0 exchange: no keep-alive and no chunked bodies, so the reply is read to the end.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The Prometheus process; killed (and its storage removed) when dropped, so a failing assertion
/// does not leave it behind. Failures print its log first.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// GET of the HTTP API (errors come as JSON too); `Null` when there is no JSON answer.
    fn api(&self, path: &str) -> Value {
        http(self.addr, "GET", path, "")
            .ok()
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or(Value::Null)
    }

    /// Instant query; the `data.result` array (empty until the series exists).
    fn query(&self, q: &str) -> Vec<Value> {
        self.api(&format!("/api/v1/query?query={}", encode(q)))["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// (name, health, lastError) of every loaded rule.
    fn rules(&self) -> Vec<(String, String, String)> {
        let v = self.api("/api/v1/rules");
        let field = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
        v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                (
                    field(&r, "name"),
                    field(&r, "health"),
                    field(&r, "lastError"),
                )
            })
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn start_prometheus(target: SocketAddr) -> Option<Prometheus> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("prometheus-scrape-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = common::path("deploy/prometheus/rules.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: quantserve\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules = rules.display()
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.join("prometheus.log");
    let spawned = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus is required in CI (Debian package `prometheus`): {e}"
            );
            eprintln!("prometheus not runnable ({e}): test skipped; apt-get install prometheus");
            return None;
        }
    };
    Some(Prometheus {
        child,
        addr,
        dir,
        log,
    })
}

#[test]
fn prometheus_scrapes_per_variant_series() {
    let sentiment = ModelConfig {
        default_variant: "int8".into(),
        variants: vec!["int8".into(), "fp32".into()],
        ..ModelConfig::fp32()
    };
    let mut cfg = server::config(
        common::repo_root().join("models"),
        &[("sentiment", sentiment)],
    );
    cfg.workers.threads = 1;
    // Variants load one after the other (the reference first): both have loaded on return.
    let server = server::start(cfg);
    let addr = server.addr();
    let classify = |variant: &str| {
        let body = format!(
            r#"{{"inputs": ["A gorgeous, witty, seductive movie."], "variant": "{variant}"}}"#
        );
        http(addr, "POST", "/classify", &body).map_or(0, |r| r.0)
    };
    assert_eq!(
        (classify("fp32"), classify("int8")),
        (200, 200),
        "quantserve: sentiment/fp32 and int8 not both served"
    );

    let Some(prom) = start_prometheus(addr) else {
        return;
    };

    // Traffic on both variants while Prometheus starts, scrapes and evaluates the rules.
    let raw = r#"quantserve_requests_total{model="sentiment",variant="int8",endpoint="classify",status="200"}"#;
    let recorded = r#"model_variant:quantserve_requests:rate5m{model="sentiment",variant="fp32"}"#;
    let start = Instant::now();
    let (mut raw_seen, mut recorded_seen) = (Vec::new(), Vec::new());
    while start.elapsed() < WAIT {
        assert_eq!(classify("int8"), 200);
        assert_eq!(classify("fp32"), 200);
        raw_seen = prom.query(raw);
        recorded_seen = prom.query(recorded);
        if !raw_seen.is_empty() && !recorded_seen.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        !raw_seen.is_empty() && !recorded_seen.is_empty(),
        "after {WAIT:?} Prometheus at {} has {raw}: {raw_seen:?}, {recorded}: {recorded_seen:?}\n\
         prometheus log:\n{}",
        prom.addr,
        prom.log()
    );
    let value = |series: &[Value]| -> f64 {
        series[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    assert!(value(&raw_seen) >= 1.0, "{raw_seen:?}");
    assert!(value(&recorded_seen) > 0.0, "{recorded_seen:?}");
    assert_eq!(
        prom.query(r#"up{job="quantserve"}"#)[0]["value"][1],
        "1",
        "scrape target down"
    );

    // Every recording and alerting rule evaluates on the real series without an error (such as
    // a many-to-many match), once each group has run.
    let start = Instant::now();
    let mut rules = prom.rules();
    while (rules.is_empty() || rules.iter().any(|r| r.1 == "unknown")) && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(500));
        rules = prom.rules();
    }
    assert!(rules.len() >= 10, "rules not loaded: {rules:?}");
    let bad: Vec<_> = rules.iter().filter(|r| r.1 != "ok").collect();
    assert!(bad.is_empty(), "rules not healthy: {bad:?}");

    // Every query of the Grafana dashboard runs, with its variables set to "all".
    let path = common::path("deploy/grafana/dashboards/quantserve.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$model", ".*")
                .replace("$variant", ".*")
                .replace("$job", ".*");
            let answer = prom.api(&format!("/api/v1/query?query={}", encode(&expr)));
            assert_eq!(
                answer["status"], "success",
                "{}: {expr}: {answer}",
                panel["title"]
            );
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries} dashboard queries");
    drop(prom);
    server.shutdown();
    server.wait().unwrap();
}
