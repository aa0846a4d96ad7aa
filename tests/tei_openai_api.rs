//! TEI's and OpenAI's routes over real sockets, each response checked field by field against
//! TEI 1.9.3's published OpenAPI schemas (`tests/fixtures/tei/openapi-subset.json`); the
//! embedder served through them equals sentence-transformers; its int8 variant is self-checked
//! and shadowed against fp32 by cosine similarity.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use common::http_client::{Resp, get, post, request};
use common::openapi_schema::Document;
use common::server::{self, metric, start};
use quantserve::api::serve::Server;
use quantserve::runtime::config::ModelConfig;
use quantserve::runtime::routing::{Routing, Shadow};
use serde_json::{Value, json};

fn shared() -> SocketAddr {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            // The embedder with int8 serving and fp32 as its reference, shadowed on every request.
            let minilm = ModelConfig {
                default_variant: "int8".into(),
                variants: vec!["int8".into(), "fp32".into()],
                min_agreement: 0.98,
                routing: Some(Routing {
                    shadow: Some(Shadow {
                        reference: "fp32".into(),
                        sample_rate: 1.0,
                    }),
                    ..Routing::single("int8")
                }),
                ..ModelConfig::fp32()
            };
            let mut models = server::fp32(&["sentiment"]);
            models.push(("minilm", minilm));
            let mut cfg = server::config(server::test_repository(), &models);
            cfg.limits.max_inputs = 8;
            start(cfg)
        })
        .addr()
}

fn schema() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| Document::load("tests/fixtures/tei/openapi-subset.json"))
}

fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// A TEI error: status, the `ErrorResponse` schema, and its `error_type`.
fn tei_error(r: &Resp, status: u16, kind: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    schema().check(schema().schema("ErrorResponse"), &body);
    assert_eq!(body["error_type"], kind, "{body}");
}

fn norm(v: &Value) -> f64 {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn info_predict_tokenize_decode_follow_the_schema() {
    let addr = shared();
    let doc = schema();
    let info = ok(&get(addr, "/info"));
    doc.check(doc.response("/info", "get", 200), &info);
    assert_eq!(
        info["model_type"],
        json!({"classifier": {"id2label": {"0": "negative", "1": "positive"}, "label2id": {"negative": 0, "positive": 1}}})
    );
    assert_eq!(info["max_input_length"], 512);
    let info = ok(&get(addr, "/info?model=minilm"));
    doc.check(doc.response("/info", "get", 200), &info);
    assert_eq!(
        info["model_type"],
        json!({"embedding": {"pooling": "mean"}})
    );
    assert_eq!(
        (
            info["max_input_length"].as_u64(),
            info["model_dtype"].as_str()
        ),
        (Some(256), Some("int8"))
    );

    let predict = |body: Value| post(addr, "/predict", &body);
    let one = ok(&predict(
        json!({"inputs": "A gorgeous, witty, seductive movie."}),
    ));
    doc.check(doc.response("/predict", "post", 200), &one);
    assert_eq!(one[0]["label"], "positive");
    let scores: Vec<f64> = one
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-4 && scores[0] >= scores[1]);
    let raw = ok(&predict(
        json!({"inputs": "A dull, lifeless mess.", "raw_scores": true}),
    ));
    doc.check(doc.response("/predict", "post", 200), &raw);
    assert_eq!(raw[0]["label"], "negative");
    assert!(
        raw[0]["score"].as_f64().unwrap() > 1.0,
        "logits, not probabilities: {raw}"
    );
    let batch = ok(&predict(
        json!({"inputs": [["Great fun."], ["It was long.", "And boring."]], "truncate": true}),
    ));
    doc.check(doc.response("/predict", "post", 200), &batch);
    assert_eq!(batch.as_array().unwrap().len(), 2);
    let pair = ok(&predict(
        json!({"inputs": ["I liked it.", "Me too."], "truncation_direction": "right"}),
    ));
    doc.check(doc.response("/predict", "post", 200), &pair);
    assert!(pair[0].is_object());

    tei_error(&predict(json!({"inputs": []})), 400, "Empty");
    tei_error(&predict(json!({"inputs": 3})), 422, "Validation");
    tei_error(
        &predict(json!({"inputs": ["a", "b", "c"]})),
        422,
        "Validation",
    );
    tei_error(
        &predict(json!({"inputs": "a", "truncation_direction": "Left"})),
        422,
        "Validation",
    );
    tei_error(
        &predict(json!({"inputs": vec![["a"]; 9]})),
        422,
        "Validation",
    );
    tei_error(
        &predict(json!({"inputs": "a", "raw_scores": "yes"})),
        422,
        "Validation",
    );
    tei_error(
        &predict(json!({"inputs": "a", "model": "minilm"})),
        424,
        "Backend",
    );

    let toks = ok(&post(addr, "/tokenize", &json!({"inputs": "Hello world"})));
    doc.check(doc.response("/tokenize", "post", 200), &toks);
    let t = toks[0].as_array().unwrap();
    assert_eq!(
        t[0],
        json!({"id": 101, "text": "[CLS]", "special": true, "start": null, "stop": null})
    );
    assert_eq!(
        t[1],
        json!({"id": 7592, "text": "Hello", "special": false, "start": 0, "stop": 5})
    );
    assert_eq!(t.last().unwrap()["text"], "[SEP]");
    let toks = ok(&post(
        addr,
        "/tokenize",
        &json!({"inputs": ["a b", "c"], "add_special_tokens": false}),
    ));
    doc.check(doc.response("/tokenize", "post", 200), &toks);
    assert_eq!(toks[1].as_array().unwrap().len(), 1);

    let text = ok(&post(
        addr,
        "/decode",
        &json!({"ids": [101, 7592, 2088, 102]}),
    ));
    doc.check(doc.response("/decode", "post", 200), &text);
    assert_eq!(text, json!(["hello world"]));
    let texts = ok(&post(
        addr,
        "/decode",
        &json!({"ids": [[7592], [2088]], "skip_special_tokens": false}),
    ));
    assert_eq!(texts, json!(["hello", "world"]));
    tei_error(
        &post(addr, "/decode", &json!({"ids": [99999999]})),
        422,
        "Validation",
    );
    tei_error(&post(addr, "/decode", &json!({"ids": []})), 400, "Empty");
    tei_error(
        &post(
            addr,
            "/tokenize",
            &json!({"inputs": "a", "prompt_name": "query"}),
        ),
        422,
        "Validation",
    );
}

#[test]
fn embed_and_openai_embeddings() {
    let addr = shared();
    let doc = schema();
    let golden = common::golden("embedder_minilm.json");
    let case = &golden["cases"][0];
    let text = case["text"].as_str().unwrap();

    // fp32 through the server equals sentence-transformers.
    let r = post(
        addr,
        "/embed",
        &json!({"inputs": text, "model": "minilm", "variant": "fp32"}),
    );
    let v = ok(&r);
    doc.check(doc.response("/embed", "post", 200), &v);
    let got = &v[0];
    let want = &case["embedding"];
    let dot: f64 = got
        .as_array()
        .unwrap()
        .iter()
        .zip(want.as_array().unwrap())
        .map(|(a, b)| a.as_f64().unwrap() * b.as_f64().unwrap())
        .sum();
    assert!(dot >= 0.999, "cosine {dot}");

    let v = ok(&post(
        addr,
        "/embed",
        &json!({"inputs": ["one", "two"], "normalize": false}),
    ));
    doc.check(doc.response("/embed", "post", 200), &v);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0].as_array().unwrap().len(), 384);
    assert!((norm(&v[0]) - 1.0).abs() > 1e-3, "not normalised");
    let v = ok(&post(
        addr,
        "/embed",
        &json!({"inputs": "one", "dimensions": 128}),
    ));
    assert_eq!(v[0].as_array().unwrap().len(), 128);
    assert!((norm(&v[0]) - 1.0).abs() < 1e-4);
    tei_error(
        &post(addr, "/embed", &json!({"inputs": "a", "dimensions": 0})),
        422,
        "Validation",
    );
    tei_error(
        &post(addr, "/embed", &json!({"inputs": "a", "dimensions": 385})),
        422,
        "Validation",
    );
    tei_error(
        &post(addr, "/embed", &json!({"inputs": [1, 2, 3]})),
        422,
        "Validation",
    );
    tei_error(
        &post(addr, "/embed", &json!({"inputs": [""]})),
        422,
        "Validation",
    );
    tei_error(&post(addr, "/embed", &json!({"inputs": []})), 400, "Empty");
    tei_error(
        &post(addr, "/embed", &json!({"inputs": "a", "normalize": 1})),
        422,
        "Validation",
    );
    tei_error(
        &post(
            addr,
            "/embed",
            &json!({"inputs": "a", "model": "sentiment"}),
        ),
        424,
        "Backend",
    );

    // OpenAI: float and base64 (little-endian f32) give the same vector; usage counts tokens.
    let body = json!({"input": ["Hello world", "Olá mundo"], "model": "text-embedding-3-small"});
    let f = ok(&post(addr, "/v1/embeddings", &body));
    doc.check(doc.response("/v1/embeddings", "post", 200), &f);
    assert_eq!(
        (f["object"].as_str(), f["model"].as_str()),
        (Some("list"), Some("minilm"))
    );
    let toks = ok(&post(
        addr,
        "/tokenize",
        &json!({"inputs": ["Hello world", "Olá mundo"], "model": "minilm"}),
    ));
    let n = toks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_array().unwrap().len())
        .sum::<usize>();
    assert_eq!(f["usage"], json!({"prompt_tokens": n, "total_tokens": n}));
    let mut b64 = body.clone();
    b64["encoding_format"] = json!("base64");
    let b = ok(&post(addr, "/v1/embeddings", &b64));
    doc.check(doc.response("/v1/embeddings", "post", 200), &b);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][1]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let plain: Vec<f32> = f["data"][1]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats, plain);
    assert_eq!(
        ok(&post(addr, "/embeddings", &json!({"input": "x"})))["data"][0]["index"],
        0
    );
    for (bad, status) in [
        (json!({"input": "x", "encoding_format": "int8"}), 400),
        (json!({"model": "m"}), 400),
        (json!({"input": ""}), 400),
        (json!({"input": "x", "dimensions": 0}), 400),
    ] {
        let r = post(addr, "/v1/embeddings", &bad);
        assert_eq!(r.status, status, "{bad}");
        assert!(
            !r.json()["error"]["message"].as_str().unwrap().is_empty(),
            "{bad}"
        );
    }
}

#[test]
fn int8_embedder_is_self_checked_and_shadowed_by_cosine() {
    let addr = shared();
    let model = ok(&get(addr, "/v1/models/minilm"));
    let int8 = model["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "int8")
        .unwrap()
        .clone();
    assert_eq!(int8["self_check"]["measure"], "cosine", "{int8}");
    let agreement = int8["self_check"]["agreement"].as_f64().unwrap();
    assert!(agreement > 0.98, "{agreement}");
    for i in 0..4 {
        ok(&request(
            addr,
            "POST",
            "/v1/embeddings",
            &[],
            json!({"input": format!("Shadowed sentence number {i}.")})
                .to_string()
                .as_bytes(),
        ));
    }
    let labels = r#"model="minilm",variant="int8",reference="fp32""#;
    let began = Instant::now();
    while metric(addr, "quantserve_shadow_cosine_count", labels) < 4.0 {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no shadow comparisons"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metric(addr, "quantserve_shadow_comparisons_total", labels) >= 4.0);
    let ab = ok(&get(addr, "/v1/models/minilm/ab?format=json"));
    assert!(ab.is_object());
}
