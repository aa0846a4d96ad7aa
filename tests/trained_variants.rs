//! The committed QAT-trained variants are served like every variant: `POST .../:load` runs the
//! self-check at the default `min_agreement` (0.8), and `/v1/models` lists each with its scheme,
//! bits and training record. `quantserve quantize --training-metadata` records the training in
//! the variant header.

mod common;

use std::process::Command;

use common::http_client::{get, post};
use common::server;
use quantserve::format::{TRAINING_KEY, VARIANT_FILE, read_header_metadata};
use quantserve::runtime::config::ModelConfig;
use serde_json::{Value, json};

fn listed(addr: std::net::SocketAddr, model: &str, variant: &str) -> Value {
    let body = get(addr, "/v1/models").json();
    let m = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model)
        .unwrap_or_else(|| panic!("{model} not in {body}"));
    m["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == variant)
        .unwrap_or_else(|| panic!("{variant} not in {m}"))
        .clone()
}

/// Loads `variant` through the admin API; returns the status and the body.
fn load(addr: std::net::SocketAddr, model: &str, variant: &str) -> (u16, Value) {
    let path = format!("/admin/models/{model}/variants/{variant}:load");
    let r = post(addr, &path, &json!({}));
    let status = r.status;
    (status, r.json())
}

#[test]
fn trained_variants_load_pass_or_fail_their_self_check_and_are_listed() {
    common::model_dir("en-pt");
    common::model_dir("pt-en");
    let int8 = || ModelConfig {
        default_variant: "int8".into(),
        variants: vec!["int8".into()],
        ..ModelConfig::fp32()
    };
    let mut cfg = server::config(
        server::test_repository(),
        &[("sentiment", int8()), ("en-pt", int8()), ("pt-en", int8())],
    );
    cfg.defaults.classify_model = "sentiment".into();
    let server = server::start(cfg);
    let addr = server.addr();

    // Measured on the committed folders (README "Below 8 bits"): these meet the default bar of
    // 0.8 agreement with fp32 ...
    for (model, variant, bits) in [
        ("sentiment", "int4-kd", 4),
        ("sentiment", "ternary-kd", 2),
        ("sentiment", "bcq2-kd", 2),
        // A recipe: BCQ-3 matrices, word-embedding rows int8 (frequent tokens) or BCQ-2; a
        // mixed variant's `bits` is its widest code.
        ("sentiment", "mixed-kd", 8),
        ("en-pt", "int4-kd", 4),
        ("pt-en", "int4-kd", 4),
        // BCQ per block type, tiered embedding rows (2.96 bits): BLEU 32.6 against 37.1, a
        // self-check of 0.820; en→pt 29.6 against 32.0, 0.811.
        ("pt-en", "mixed-kd", 8),
        ("en-pt", "mixed-kd", 8),
    ] {
        let (status, body) = load(addr, model, variant);
        assert_eq!(status, 200, "{model}/{variant}: {body}");
        let check = &body["self_check"];
        assert!(
            check["agreement"].as_f64().unwrap() >= 0.8,
            "{model}/{variant}: {body}"
        );
        eprintln!(
            "{model}/{variant}: self-check {} = {:.3}",
            check["measure"], check["agreement"]
        );
        let v = listed(addr, model, variant);
        assert_eq!(v["status"], "ready", "{v}");
        assert_eq!(v["bits"], bits, "{v}");
        assert!(v["training"]["method"].is_string(), "{v}");
        assert_eq!(v["training"]["variant"], variant, "{v}");
        assert!(v["training"]["teacher_sha256"].is_string(), "{v}");
    }
    // ... and this one does not (BLEU 11.9 against fp32's 32.0): refused, never activated.
    let (status, body) = load(addr, "en-pt", "ternary-kd");
    assert_eq!(status, 422, "en-pt/ternary-kd: {body}");
    assert_eq!(body["code"], "self_check_failed", "{body}");
    eprintln!("en-pt/ternary-kd: refused, {body}");

    // A loaded trained variant answers requests that name it.
    let r = post(
        addr,
        "/classify",
        &json!({"inputs": ["A gorgeous, witty, seductive movie."], "variant": "ternary-kd"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["results"][0]["label"], "positive");
    let r = post(
        addr,
        "/translate",
        &json!({"q": "In the beginning God created the heaven and the earth.",
                "source": "en", "target": "pt", "variant": "int4-kd"}),
    );
    assert_eq!(r.status, 200);
    let text = r.json()["translatedText"].as_str().unwrap().to_string();
    assert!(text.contains("Deus"), "{text}");
    server.shutdown();
}

#[test]
fn quantize_records_the_training_metadata_or_refuses_it_clearly() {
    let tmp = std::env::temp_dir().join(format!("quantserve-training-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let src = tmp.join("tiny").join("fp32");
    common::tiny_bert::write(&src);
    let quantize = |out: &str, meta: &str| {
        let file = tmp.join(format!("{out}.json"));
        std::fs::write(&file, meta).unwrap();
        Command::new(env!("CARGO_BIN_EXE_quantserve"))
            .args(["quantize", "--scheme", "int4", "--model"])
            .arg(&src)
            .arg("--out")
            .arg(tmp.join("tiny").join(out))
            .arg("--training-metadata")
            .arg(&file)
            .output()
            .unwrap()
    };
    let meta = r#"{"method": "fullyqt-qat", "variant": "int4-kd", "steps": 12, "seed": 1}"#;
    let out = quantize("int4-kd", meta);
    assert!(out.status.success(), "{out:?}");
    let header = read_header_metadata(&tmp.join("tiny/int4-kd").join(VARIANT_FILE)).unwrap();
    assert_eq!(header[TRAINING_KEY], meta);
    let kind = quantserve::repo::variant_kind(&tmp, "tiny", "int4-kd");
    assert_eq!(kind.training.unwrap()["steps"], 12);

    for (bad, says) in [
        ("{\"method\": ", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ] {
        let out = quantize("bad", bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(says), "{bad}: {err}");
        assert!(!tmp.join("tiny/bad").join(VARIANT_FILE).exists());
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
