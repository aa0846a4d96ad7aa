//! Real clients against a running server: libretranslatepy's translate / languages / detect and
//! the openai client's `embeddings.create` (`tests/clients/check_clients.py`), from the venv
//! `.ci/run` makes (`target/py-clients`, pinned in `tests/clients/requirements.txt`; or
//! `QUANTSERVE_PY_CLIENTS=<python>`). Without the venv the test fails under `CI` and skips
//! loudly otherwise.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::server::{self, start};

const KEY: &str = "client-key";

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QUANTSERVE_PY_CLIENTS") {
        return Some(PathBuf::from(p));
    }
    let venv = common::path("target/py-clients/bin/python");
    venv.exists().then_some(venv)
}

#[test]
fn libretranslate_and_openai_clients_work_unchanged() {
    let Some(python) = python() else {
        let how = "python3 -m venv target/py-clients && target/py-clients/bin/pip install -r tests/clients/requirements.txt";
        if std::env::var_os("CI").is_some() {
            panic!("the client venv is missing under CI (.ci/run makes it): {how}");
        }
        eprintln!("\n*** SKIPPED python_clients: no client venv. Make it with:\n***   {how}\n");
        return;
    };
    let mut cfg = server::config(
        server::test_repository(),
        &server::fp32(&["en-pt", "pt-en", "minilm"]),
    );
    cfg.libretranslate.enabled = true;
    cfg.server.api_key = Some(KEY.into());
    let srv = start(cfg);
    let out = Command::new(&python)
        .arg(common::path("tests/clients/check_clients.py"))
        .arg(format!("http://{}", srv.addr()))
        .arg(KEY)
        .output()
        .expect("running the client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "clients failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("{report}");
    assert_eq!(report["translate"], "Como você está hoje?");
    assert_eq!(report["openai"]["dims"], 384);
    srv.shutdown();
    srv.wait().unwrap();
}
