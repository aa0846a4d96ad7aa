//! The web console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven by Selenium (`tests/browser/console_test.py`, pinned in
//! `tests/browser/requirements.txt`, in the venv `.ci/run` makes under `target/browser-venv`, or
//! `QUANTSERVE_BROWSER_PYTHON=<python>`), against a real server with the trained sentiment model
//! and en-pt, two variants each. The script types, translates, compares, classifies, operates a
//! variant and watches the A/B charts; this test checks what the page showed against the server's
//! own answers. Screenshots go to `target/console-screenshots/`. A JavaScript error fails it.
//! Without the browser or the venv it fails under `CI` (or `QUANTSERVE_REQUIRE_BROWSER=1`) and
//! skips loudly otherwise.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http_client::request;
use common::server::{self, start};
use quantserve::runtime::config::ModelConfig;
use quantserve::runtime::routing::{Routing, Shadow};
use serde_json::{Value, json};

const KEY: &str = "browser-key";
const ADMIN_KEY: &str = "browser-admin";

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QUANTSERVE_BROWSER_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = common::path("target/browser-venv/bin/python");
    venv.exists().then_some(venv)
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// fp32 and int8 serving half the traffic each, every request shadowed on fp32, and `more`
/// variants loaded without traffic (to compare).
fn ab_model(more: &[&str]) -> ModelConfig {
    let mut variants = vec!["fp32".to_string(), "int8".to_string()];
    variants.extend(more.iter().map(|v| v.to_string()));
    ModelConfig {
        default_variant: "int8".into(),
        variants,
        routing: Some(Routing {
            split: BTreeMap::from([("fp32".into(), 50), ("int8".into(), 50)]),
            shadow: Some(Shadow {
                reference: "fp32".into(),
                sample_rate: 1.0,
            }),
            ..Routing::default()
        }),
        ..ModelConfig::fp32()
    }
}

fn authed(addr: SocketAddr, path: &str, body: &Value) -> Value {
    let auth = format!("Bearer {KEY}");
    let r = request(
        addr,
        "POST",
        path,
        &[("authorization", &auth)],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[test]
fn console_works_in_a_real_browser() {
    let missing: Vec<&str> = [
        ("the selenium venv", python().is_some()),
        ("chromium", on_path("chromium")),
        ("chromedriver", on_path("chromedriver")),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(what, _)| what)
    .collect();
    if !missing.is_empty() {
        let how = "apt-get install -y chromium chromium-driver && python3 -m venv target/browser-venv \
                   && target/browser-venv/bin/pip install -r tests/browser/requirements.txt";
        let required = std::env::var_os("CI").is_some()
            || std::env::var("QUANTSERVE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        if required {
            panic!("missing {missing:?} under CI (.ci/run installs them): {how}");
        }
        eprintln!(
            "\n*** SKIPPED console_browser: missing {missing:?}. Install with:\n***   {how}\n"
        );
        return;
    }
    let mut cfg = server::config(
        server::test_repository(),
        &[
            ("sentiment", ab_model(&[])),
            ("en-pt", ab_model(&["int4-kd"])),
        ],
    );
    cfg.server.api_key = Some(KEY.into());
    cfg.server.admin_key = Some(ADMIN_KEY.into());
    let srv = start(cfg);
    let addr = srv.addr();
    // Every variant loaded before the page looks (the harness's wait cannot read the listing
    // without the key).
    let began = Instant::now();
    let auth = format!("Bearer {KEY}");
    while String::from_utf8_lossy(
        &request(addr, "GET", "/v1/models", &[("authorization", &auth)], b"").body,
    )
    .contains("\"status\":\"loading\"")
    {
        assert!(began.elapsed() < Duration::from_secs(600));
        std::thread::sleep(Duration::from_millis(100));
    }

    let shots = common::path("target/console-screenshots");
    let out = Command::new(python().unwrap())
        .arg(common::path("tests/browser/console_test.py"))
        .arg(format!("http://{addr}"))
        .args([KEY, ADMIN_KEY])
        .arg(&shots)
        .output()
        .expect("running the browser script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(
        out.status.success(),
        "the browser run failed ({}); JavaScript errors: {}\n{}",
        out.status,
        report["console_errors"],
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["console_errors"], json!([]));

    // Translate: what the page showed is what the server gives that variant.
    let served = report["translate"]["served"].as_str().unwrap();
    let variant = served
        .split(" · ")
        .next()
        .and_then(|s| s.strip_prefix("en-pt / "))
        .unwrap_or_else(|| panic!("{served}"));
    let text = "The weather is lovely today and the food was great.";
    let expected = authed(
        addr,
        "/v1/translate",
        &json!({ "q": text, "model": "en-pt", "variant": variant }),
    );
    assert_eq!(report["translate"]["text"], expected["translatedText"]);

    // Compare: every variant, the reference's output, chrF on the others' rows.
    let rows = report["compare_translate"].as_array().unwrap();
    let variants: Vec<&str> = rows
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(variants, ["fp32", "int4-kd", "int8"]);
    let fp32 = authed(
        addr,
        "/v1/translate",
        &json!({ "q": text, "model": "en-pt", "variant": "fp32" }),
    );
    assert_eq!(rows[0]["output"], fp32["translatedText"]);
    for row in &rows[1..] {
        let agreement = row["agreement"].as_str().unwrap();
        assert!(agreement.starts_with("chrF "), "{agreement}");
        // Marked words exactly when the translation is not the reference's.
        let identical = row["output"] == rows[0]["output"];
        assert_eq!(agreement.contains("identical"), identical, "{row}");
        assert_eq!(row["marked_words"].as_u64() == Some(0), identical, "{row}");
    }
    assert!(
        rows.iter()
            .all(|r| r["latency"].as_str().unwrap().ends_with(" ms"))
    );

    // Classify: the label, and both variants compared by label.
    assert!(
        report["classify"].as_str().unwrap().starts_with("positive"),
        "{}",
        report["classify"]
    );
    let rows = report["compare_classify"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[1]["agreement"].as_str().unwrap().contains("label"));

    // Variants: the table as the listing says, and a load and unload done from the page.
    assert_eq!(report["admin_buttons_disabled_without_key"], true);
    let sentiment = report["variants"]["sentiment"].as_array().unwrap();
    let int8 = sentiment
        .iter()
        .find(|r| r["variant"].as_str().unwrap().starts_with("int8"))
        .unwrap();
    assert_eq!(
        (int8["scheme"].as_str(), int8["bits"].as_str()),
        (Some("int8"), Some("8"))
    );
    assert_eq!(int8["status"], "ready");
    assert!(
        int8["self-check"]
            .as_str()
            .unwrap()
            .starts_with("label_agreement")
    );
    assert!(int8["size"].as_str().unwrap().ends_with("MB"));
    assert!(report["loaded"].as_str().unwrap().contains("ready"));
    assert_eq!(report["unloaded"], "unloaded");

    // A/B: bars for the latency percentiles, intervals for shadow agreement and feedback, lines
    // over time with more than one point.
    let ab = &report["ab"];
    assert!(ab["bars"].as_u64().unwrap() >= 3, "{ab}");
    // The experiment's verdicts: a table of comparisons, or the sentence saying none yet.
    assert!(ab["verdicts"].is_u64(), "{ab}");
    let verdict_text = ab["verdict_text"].as_str().unwrap();
    assert!(
        ab["verdicts"].as_u64() > Some(0) && verdict_text.contains("vs")
            || verdict_text.starts_with("Verdicts: none yet"),
        "{ab}"
    );
    assert!(ab["points"].as_u64().unwrap() >= 2, "{ab}");
    assert!(
        ab["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().parse::<u32>().unwrap() >= 2),
        "{ab}"
    );
    assert!(
        report["phone_overflow_px"].as_i64().unwrap() <= 0,
        "{report}"
    );
    for name in [
        "1-try-translate.png",
        "2-compare-translate.png",
        "3-compare-classify.png",
        "4-variants.png",
        "5-ab.png",
        "6-phone-compare.png",
    ] {
        assert!(shots.join(name).is_file(), "{name}");
    }
    srv.shutdown();
    srv.wait().unwrap();
}
