//! The low-bit variants are servable: listed in a model's `variants`, they load in the server
//! (derived from fp32 at load time) and answer requests that name them.

mod common;

use common::http_client::post;
use common::server;
use quantserve::runtime::config::ModelConfig;
use serde_json::json;

#[test]
fn lowbit_variants_load_in_the_server_and_answer() {
    common::model_dir("en-pt");
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
    let mut cfg = server::config(
        common::path("models"),
        &[
            (
                "sentiment",
                variants("int4", &["int4-g64", "int6", "ternary", "bcq2"]),
            ),
            ("en-pt", variants("int4-g64", &["ternary-row", "bcq3"])),
        ],
    );
    cfg.defaults.classify_model = "sentiment".into();
    // Every variant has loaded once this returns.
    let server = server::start(cfg);
    let addr = server.addr();
    for v in ["int4", "int4-g64", "int6", "ternary", "bcq2"] {
        let req = json!({"inputs": ["I loved this movie!"], "model": "sentiment", "variant": v});
        let r = post(addr, "/classify", &req);
        let body = r.json();
        assert_eq!(r.status, 200, "{v}: {body}");
        assert_eq!(body["variant"], v);
        assert!(body["results"][0]["label"].is_string(), "{v}: {body}");
    }
    for v in ["int4-g64", "ternary-row", "bcq3"] {
        let req = json!({"q": "How are you today?", "source": "en", "target": "pt", "variant": v});
        let r = post(addr, "/translate", &req);
        let body = r.json();
        assert_eq!(r.status, 200, "{v}: {body}");
        assert_eq!(body["variant"], v);
        assert!(body["translatedText"].is_string(), "{v}: {body}");
    }
    server.shutdown();
}
