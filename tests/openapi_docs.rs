//! The OpenAPI document and Swagger UI of a real server: `/openapi.json` passes
//! openapi-spec-validator and refuses the bodies the server refuses
//! (`tests/openapi/check_document.py`, from the venv `.ci/run` makes: `target/py-openapi`, pinned
//! in `tests/openapi/requirements.txt`, or `QUANTSERVE_PY_OPENAPI=<python>`; without it the test
//! fails under `CI` and skips loudly otherwise); the server refuses those bodies too; `/docs`
//! serves the page and its assets from the binary.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

use common::http_client::{get, post, request};
use common::server::{self, start};
use serde_json::{Value, json};

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QUANTSERVE_PY_OPENAPI") {
        return Some(PathBuf::from(p));
    }
    let venv = common::path("target/py-openapi/bin/python");
    venv.exists().then_some(venv)
}

fn config() -> quantserve::runtime::config::Config {
    let mut cfg = server::config(
        server::test_repository(),
        &server::fp32(&["en-pt", "pt-en", "sentiment", "minilm"]),
    );
    cfg.libretranslate.enabled = true;
    cfg
}

#[test]
fn document_is_valid_and_refuses_what_the_server_refuses() {
    let srv = start(config());
    let addr = srv.addr();
    // The server's side of the cases the document must refuse.
    for (path, body) in [
        ("/classify", json!({"inputs": ""})),
        ("/classify", json!({"inputs": "   "})),
        ("/classify", json!({"inputs": []})),
        ("/predict", json!({"inputs": ""})),
        ("/embed", json!({"inputs": ""})),
        ("/translate", json!({"q": ""})),
        ("/translate", json!({"q": "Hello"})),
        (
            "/translate",
            json!({"q": "", "source": "en", "target": "pt"}),
        ),
        ("/detect", json!({"q": " "})),
        (
            "/v1/feedback",
            json!({"request_id": "r", "label": "positive", "correct": true}),
        ),
        ("/admin/models/sentiment/routing", json!({})),
    ] {
        let method = if path.ends_with("routing") {
            "PUT"
        } else {
            "POST"
        };
        let r = request(
            addr,
            method,
            path,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert!(
            (400..500).contains(&r.status),
            "{path} {body}: {}",
            r.status
        );
    }
    let doc = get(addr, "/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    // Without keys configured, keys are optional.
    assert_eq!(
        doc["paths"]["/classify"]["post"]["security"],
        json!([{"api_key": []}, {}])
    );
    assert!(
        doc["components"]["schemas"]["Models"].is_object()
            && doc["paths"]["/v1/models"]["get"]["responses"]["200"]["content"].is_object()
    );
    let Some(python) = python() else {
        let how = "python3 -m venv target/py-openapi && target/py-openapi/bin/pip install -r tests/openapi/requirements.txt";
        if std::env::var_os("CI").is_some() {
            panic!("the openapi venv is missing under CI (.ci/run makes it): {how}");
        }
        eprintln!("\n*** SKIPPED openapi validation: no venv. Make it with:\n***   {how}\n");
        return;
    };
    let out = Command::new(&python)
        .arg(common::path("tests/openapi/check_document.py"))
        .arg(format!("http://{addr}"))
        .output()
        .expect("running the validator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "validation failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("{report}");
    assert!(report["operations"].as_u64().unwrap() >= 32);
    srv.shutdown();
    srv.wait().unwrap();
}

#[test]
fn keys_in_force_are_required_in_the_document() {
    let mut cfg = server::config(server::test_repository(), &server::fp32(&["tiny-bert"]));
    cfg.server.api_key = Some("k".into());
    let srv = start(cfg);
    let doc = get(srv.addr(), "/openapi.json").json();
    assert_eq!(
        doc["paths"]["/classify"]["post"]["security"],
        json!([{"api_key": []}])
    );
    assert_eq!(
        doc["paths"]["/admin/reload"]["post"]["security"],
        json!([{"admin_key": []}])
    );
    assert!(doc["paths"]["/health"]["get"].get("security").is_none());
    srv.shutdown();
    srv.wait().unwrap();
}

#[test]
fn swagger_ui_is_served_from_the_binary() {
    let srv = start(server::config(
        server::test_repository(),
        &server::fp32(&["tiny-bert"]),
    ));
    let addr = srv.addr();
    let page = get(addr, "/docs");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(page.body).unwrap();
    for needle in [
        "docs/swagger-ui-bundle.js",
        "docs/swagger-ui.css",
        "url: \"openapi.json\"",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    for (asset, starts, ct) in [
        (
            "swagger-ui-bundle.js",
            "/*! For license information",
            "application/javascript",
        ),
        ("swagger-ui.css", ".swagger-ui", "text/css"),
    ] {
        let path = format!("/docs/{asset}");
        let gz = request(addr, "GET", &path, &[("accept-encoding", "gzip, br")], b"");
        assert_eq!(gz.status, 200);
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert!(gz.header("content-type").unwrap().starts_with(ct));
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&gz.body[..])
            .read_to_end(&mut inflated)
            .unwrap();
        let plain = get(addr, &path);
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.body, inflated, "{asset}");
        assert!(inflated.len() > 100_000 || asset.ends_with("css"));
        let text = String::from_utf8_lossy(&inflated[..200]).to_string();
        assert!(text.contains(starts), "{asset}: {text}");
    }
    assert_eq!(get(addr, "/docs/other.js").status, 404);
    // Posting to the page is refused, as every wrong method is.
    assert_eq!(post(addr, "/docs", &json!({})).status, 405);
    srv.shutdown();
    srv.wait().unwrap();
}
