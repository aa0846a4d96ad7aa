//! The server harness every server test shares: a model repository, a configuration on a free
//! loopback port, starting a server and waiting until every variant has loaded, and reading its
//! metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use quantserve::api::serve::Server;
use quantserve::runtime::config::{Config, ModelConfig, WorkersConfig};

use super::http_client::{Resp, get};

/// A model repository for server tests: links to the translation models and the embedder
/// (fetched when missing) and the sentiment model, and the tiny random BERT (`tiny_bert.rs`) as
/// `tiny-bert`.
pub fn test_repository() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("server-models");
        std::fs::create_dir_all(&root).unwrap();
        let linked = ["en-pt", "pt-en", "sentiment", "minilm"];
        for m in linked {
            super::model_dir(m);
        }
        for m in linked {
            let link = root.join(m);
            let _ = std::fs::remove_file(&link);
            // A copy fetched here before the embedder was linked.
            if link.is_dir() {
                let _ = std::fs::remove_dir_all(&link);
            }
            std::os::unix::fs::symlink(super::repo_root().join("models").join(m), &link).unwrap();
        }
        super::tiny_bert::write(&root.join("tiny-bert").join("fp32"));
        root
    })
    .clone()
}

/// A server on a free loopback port over the repository `models_dir`, one worker of 2 threads,
/// serving `models`.
pub fn config(models_dir: PathBuf, models: &[(&str, ModelConfig)]) -> Config {
    let mut cfg = Config::default();
    cfg.server.http_addr = "127.0.0.1:0".into();
    cfg.server.models_dir = models_dir;
    cfg.workers = WorkersConfig {
        count: 1,
        threads: 2,
    };
    for (name, m) in models {
        cfg.models.insert(name.to_string(), m.clone());
    }
    cfg
}

/// `names`, each with the default configuration (fp32 only).
pub fn fp32<'a>(names: &[&'a str]) -> Vec<(&'a str, ModelConfig)> {
    names.iter().map(|&n| (n, ModelConfig::fp32())).collect()
}

/// Starts a server and waits until it is ready and no configured variant is still loading
/// (ready means one variant of each split serves; the tests want every variant settled).
pub fn start(cfg: Config) -> Server {
    let server = Server::start(cfg, false).unwrap();
    wait_settled(server.addr());
    server
}

/// Waits until the server at `addr` is ready and none of its variants is still loading.
pub fn wait_settled(addr: SocketAddr) {
    let began = Instant::now();
    loop {
        let ready = get(addr, "/health/ready");
        let loading = String::from_utf8_lossy(&get(addr, "/v1/models").body)
            .contains("\"status\":\"loading\"");
        if ready.status == 200 && !loading {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(300),
            "not ready: {}",
            String::from_utf8_lossy(&ready.body)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of a metric's series whose labels include all of `labels` (`k="v"` pairs joined by
/// commas, in any order).
pub fn metric(addr: SocketAddr, name: &str, labels: &str) -> f64 {
    let text = String::from_utf8(get(addr, "/metrics").body).unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.split(',').all(|pair| l.contains(pair)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Asserts a response's status, its JSON error code and that the error says something.
pub fn expect(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        !r.json()["error"].as_str().unwrap_or_default().is_empty(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}
