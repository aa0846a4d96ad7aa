//! `quantserve ab-report` against a real Prometheus (Debian package `prometheus`): a server with
//! sticky users and feedback from the labelled dev split is scraped, and the verdict the CLI
//! computes from the summed counters equals the server's own `/v1/models/{m}/ab` comparisons,
//! SRM and power.
//!
//! Without `prometheus` on PATH the test is skipped with a message, except under CI (`CI` set).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http_client::{get, post, request};
use common::server;
use quantserve::runtime::config::ModelConfig;
use quantserve::runtime::routing::Routing;
use serde_json::{Value, json};

struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prometheus(target: SocketAddr, addr: SocketAddr) -> Option<Prometheus> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("prometheus-ab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: quantserve\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let spawned = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn();
    match spawned {
        Ok(child) => Some(Prometheus { child, dir }),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus is required in CI: {e}"
            );
            eprintln!("prometheus not runnable ({e}): test skipped; apt-get install prometheus");
            None
        }
    }
}

fn ab_report(prom: SocketAddr) -> Result<Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_quantserve"))
        .args([
            "ab-report",
            "--prometheus",
            &format!("http://{prom}"),
            "--model",
            "sentiment",
            "--json",
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

#[test]
fn ab_report_from_prometheus_matches_the_servers_verdict() {
    let sentiment = ModelConfig {
        default_variant: "fp32".into(),
        variants: vec!["fp32".into(), "int8".into()],
        routing: Some(Routing {
            split: [("fp32".to_string(), 50), ("int8".to_string(), 50)].into(),
            sticky_key: Some("x-user-id".into()),
            ..Routing::default()
        }),
        ..ModelConfig::fp32()
    };
    let server = server::start(server::config(
        common::repo_root().join("models"),
        &[("sentiment", sentiment)],
    ));
    let addr = server.addr();
    let dev = std::fs::read_to_string(common::path("data/sentiment/dev.tsv")).unwrap();
    for (i, line) in dev.lines().take(300).enumerate() {
        let (label, text) = line.split_once('\t').unwrap();
        let (user, id) = (format!("u{}", i % 30), format!("p-{i}"));
        let body = json!({ "inputs": text }).to_string();
        let r = request(
            addr,
            "POST",
            "/classify",
            &[("x-user-id", &user), ("x-request-id", &id)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200);
        let fb = post(
            addr,
            "/v1/feedback",
            &json!({"request_id": id, "label": label}),
        );
        assert_eq!(fb.status, 200);
    }
    let mine = get(addr, "/v1/models/sentiment/ab?format=json").json();
    assert!(mine["comparisons"][0]["trials"].as_u64().unwrap() > 0);
    // How representative the shadow sample is, beside the per-variant drop rates.
    assert_eq!(mine["shadow_min_share"], 0.05);

    let prom_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let Some(_prom) = start_prometheus(addr, prom_addr) else {
        return;
    };
    // Until Prometheus has scraped every counter (the CLI then sees the server's totals).
    let began = Instant::now();
    let theirs = loop {
        let r = ab_report(prom_addr);
        if let Ok(v) = &r
            && v["comparisons"] == mine["comparisons"]
        {
            break v.clone();
        }
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "ab-report never matched the server: {r:?}\nserver: {}",
            mine["comparisons"]
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(theirs["srm"], mine["srm"]);
    assert_eq!(theirs["power"], mine["power"]);
    assert_eq!(theirs["experiment"]["period"], 1);
    // Latency percentiles come from the histogram, at bucket resolution, with intervals.
    assert!(theirs["latency"]["int8"]["p50"]["high"].is_number());
    server.shutdown();
    server.wait().unwrap();
}
