//! The web console's server side over real sockets: the page and its files at `/` and
//! `/console/*` (types, cache validation, the no-elsewhere policy), and `POST /v1/compare` on
//! real models with two variants each: every variant's output equals what a single request to
//! that variant gives, and the agreement numbers are the ones the outputs imply (chrF, label and
//! probabilities, cosine). The page itself runs in a real browser in `console_browser.rs`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http_client::{Resp, request};
use common::server::{self, expect, start};
use quantserve::eval::chrf::sentence_chrf;
use quantserve::models::embedder::cosine;
use quantserve::runtime::config::ModelConfig;
use quantserve::runtime::routing::Routing;
use serde_json::{Value, json};

const KEY: &str = "console-key";
const AUTH: (&str, &str) = ("authorization", "Bearer console-key");

fn two_variants() -> ModelConfig {
    ModelConfig {
        default_variant: "int8".into(),
        variants: vec!["fp32".into(), "int8".into()],
        ..ModelConfig::fp32()
    }
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> Resp {
    request(addr, "POST", path, &[AUTH], body.to_string().as_bytes())
}

/// Waits until no variant is loading (the harness's own wait reads `/v1/models` without a key).
fn wait_loaded(addr: SocketAddr) {
    let began = Instant::now();
    while String::from_utf8_lossy(&request(addr, "GET", "/v1/models", &[AUTH], b"").body)
        .contains("\"status\":\"loading\"")
    {
        assert!(began.elapsed() < Duration::from_secs(600), "still loading");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn compare(addr: SocketAddr, model: &str, input: &str) -> Value {
    let r = post(
        addr,
        "/v1/compare",
        &json!({ "model": model, "input": input }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn result<'a>(c: &'a Value, variant: &str) -> &'a Value {
    c["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["variant"] == variant)
        .unwrap_or_else(|| panic!("no {variant} in {c}"))
}

#[test]
fn console_page_and_variant_comparison() {
    let mut locked = ModelConfig::fp32();
    locked.routing = Some(Routing {
        allow_override: false,
        ..Routing::single("fp32")
    });
    let mut cfg = server::config(
        server::test_repository(),
        &[
            ("en-pt", two_variants()),
            ("sentiment", two_variants()),
            ("minilm", two_variants()),
            ("tiny-bert", locked),
        ],
    );
    cfg.server.api_key = Some(KEY.into());
    let srv = start(cfg);
    let addr = srv.addr();
    wait_loaded(addr);

    // The page and its files: no key needed (the page asks for it), typed, revalidated.
    let page = request(addr, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("connect-src 'self'") && csp.contains("script-src 'self'"));
    assert!(String::from_utf8_lossy(&page.body).contains("<title>quantserve console</title>"));
    for (file, ty) in [
        ("console.js", "text/javascript; charset=utf-8"),
        ("charts.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = request(addr, "GET", &format!("/console/{file}"), &[], b"");
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(ty)),
            "{file}"
        );
        let etag = r.header("etag").unwrap().to_string();
        let again = request(
            addr,
            "GET",
            &format!("/console/{file}"),
            &[("if-none-match", &etag)],
            b"",
        );
        assert_eq!(again.status, 304, "{file}");
        assert!(again.body.is_empty());
    }
    expect(
        &request(addr, "GET", "/console/secret.txt", &[], b""),
        404,
        "not_found",
    );

    // Translation: each variant's output is what a request naming that variant gives, and the
    // int8 row's chrF is sentence chrF of its text against fp32's.
    let text = "The weather is lovely today and the food was great.";
    let c = compare(addr, "en-pt", text);
    assert_eq!(
        (c["task"].as_str(), c["reference"].as_str()),
        (Some("translate"), Some("fp32"))
    );
    assert_eq!(
        c["results"][0]["variant"], "fp32",
        "the reference comes first"
    );
    let mut outputs = Vec::new();
    for v in ["fp32", "int8"] {
        let r = result(&c, v);
        assert!(r["latency_ms"].as_f64().unwrap() > 0.0);
        let single = post(
            addr,
            "/v1/translate",
            &json!({ "q": text, "model": "en-pt", "variant": v }),
        );
        assert_eq!(single.status, 200);
        assert_eq!(r["output"]["text"], single.json()["translatedText"], "{v}");
        outputs.push(r["output"]["text"].as_str().unwrap().to_string());
    }
    assert!(result(&c, "fp32")["agreement"].is_null());
    let a = &result(&c, "int8")["agreement"];
    assert_eq!(a["kind"], "text");
    let chrf = sentence_chrf(&outputs[1], &[outputs[0].as_str()]);
    assert!(
        (a["chrf"].as_f64().unwrap() - chrf).abs() < 1e-9,
        "{a} vs {chrf}"
    );
    assert_eq!(a["exact"], outputs[0] == outputs[1]);
    assert_eq!(result(&c, "int8")["scheme"], "int8");
    assert_eq!(result(&c, "int8")["bits"], 8);

    // Classification: label agreement and the mean probability difference from the outputs.
    let c = compare(addr, "sentiment", "A gorgeous, witty, seductive movie.");
    let (r, q) = (&result(&c, "fp32")["output"], &result(&c, "int8")["output"]);
    assert_eq!(r["label"], "positive");
    let a = &result(&c, "int8")["agreement"];
    assert_eq!(
        (a["kind"].as_str(), a["agree"].as_bool()),
        (Some("classes"), Some(r["label"] == q["label"]))
    );
    let prob = |o: &Value, label: &Value| {
        o["scores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["label"] == *label)
            .unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    let labels: Vec<&Value> = r["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["label"])
        .collect();
    let mean = labels
        .iter()
        .map(|l| (prob(q, l) - prob(r, l)).abs())
        .sum::<f64>()
        / labels.len() as f64;
    assert!((a["mean_abs_diff"].as_f64().unwrap() - mean).abs() < 1e-6);

    // Embeddings: the cosine of the two vectors (their leading components are shown).
    let c = compare(
        addr,
        "minilm",
        "A quantized model answers almost like the full one.",
    );
    let a = &result(&c, "int8")["agreement"];
    assert_eq!(a["kind"], "vector");
    let cos = a["cosine"].as_f64().unwrap();
    assert!(cos > 0.95 && cos <= 1.0 + 1e-9, "{cos}");
    let head = |v: &str| -> Vec<f32> {
        result(&c, v)["output"]["head"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    assert_eq!(result(&c, "fp32")["output"]["dims"], 384);
    assert!(cosine(&head("fp32"), &head("int8")) > 0.9);

    // Named variants only, and a reference that is not among them: nothing compared.
    let r = post(
        addr,
        "/v1/compare",
        &json!({ "model": "sentiment", "input": "Dull.", "variants": ["int8"] }),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["reference"].is_null());
    assert!(r.json()["results"][0]["agreement"].is_null());

    // Errors: the usual JSON shape and statuses.
    let bad = |body: Value| post(addr, "/v1/compare", &body);
    expect(
        &bad(json!({ "model": "nope", "input": "x" })),
        404,
        "unknown_model",
    );
    expect(
        &bad(json!({ "model": "sentiment", "input": "x", "variants": ["int3"] })),
        404,
        "unknown_variant",
    );
    expect(
        &bad(json!({ "model": "sentiment", "input": "  " })),
        400,
        "bad_request",
    );
    expect(&bad(json!({ "model": "sentiment" })), 400, "bad_request");
    expect(
        &bad(json!({ "model": "sentiment", "input": "x", "extra": 1 })),
        400,
        "bad_request",
    );
    expect(
        &bad(json!({ "model": "tiny-bert", "input": "x" })),
        403,
        "forbidden",
    );
    expect(
        &request(
            addr,
            "POST",
            "/v1/compare",
            &[],
            br#"{"model":"sentiment","input":"x"}"#,
        ),
        401,
        "unauthorized",
    );
    srv.shutdown();
    srv.wait().unwrap();
}
