//! The HTTP server end to end: real sockets, the real router, the real models (translation from
//! the model repository, fetched on first use; classification from a tiny random BERT written by
//! `common/tiny_bert.rs`, plus the trained `models/sentiment`).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::http_client::{Resp, get, post, request};
use common::server::{self, expect, start};
use common::tiny_bert;
use quantserve::api::serve::Server;
use quantserve::runtime::config::{Config, WorkersConfig};
use serde_json::{Value, json};

const HOW_ARE_YOU: &str = "How are you today?";
const HOW_ARE_YOU_PT: &str = "Como você está hoje?";

// ---------------------------------------------------------------------------------------------
// Servers.

fn config(models: &[&str]) -> Config {
    let mut cfg = server::config(server::test_repository(), &server::fp32(models));
    cfg.server.drain_seconds = 60;
    cfg.limits.max_body_bytes = 200_000;
    cfg.limits.max_inputs = 8;
    cfg.limits.max_input_chars = 2_000;
    cfg.defaults.classify_model = "tiny-bert".into();
    cfg
}

/// The server most tests share: both translation directions and the tiny classifier.
fn shared() -> SocketAddr {
    static SERVER: OnceLock<Server> = OnceLock::new();
    let models = ["en-pt", "pt-en", "tiny-bert", "sentiment"];
    SERVER.get_or_init(|| start(config(&models))).addr()
}

fn translate(addr: SocketAddr, q: Value, source: &str, target: &str) -> Resp {
    post(
        addr,
        "/translate",
        &json!({"q": q, "source": source, "target": target}),
    )
}

// ---------------------------------------------------------------------------------------------
// Round trips.

#[test]
fn translate_round_trip() {
    let addr = shared();
    let r = translate(addr, json!(HOW_ARE_YOU), "en", "pt");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["translatedText"], HOW_ARE_YOU_PT);
    assert_eq!(
        (body["model"].as_str(), body["variant"].as_str()),
        (Some("en-pt"), Some("fp32"))
    );
    assert_eq!(r.header("x-quantserve-variant"), Some("fp32"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-request-id").map(str::len), Some(16));

    // The array form and the /v1 alias; the client's request id is echoed.
    let req = json!({"q": [HOW_ARE_YOU, "", "Thank you very much."], "source": "en", "target": "pt", "format": "text"});
    let r = request(
        addr,
        "POST",
        "/v1/translate",
        &[("x-request-id", "abc-123")],
        req.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let out = r.json()["translatedText"].clone();
    assert_eq!(out[0], HOW_ARE_YOU_PT);
    assert_eq!(out[1], "");
    assert!(!out[2].as_str().unwrap().is_empty());

    // Several sentences in one text are translated one by one and rejoined with their layout.
    let two = format!("{HOW_ARE_YOU}\n\n{HOW_ARE_YOU}");
    let r = translate(addr, json!(two), "en", "pt");
    assert_eq!(
        r.json()["translatedText"],
        format!("{HOW_ARE_YOU_PT}\n\n{HOW_ARE_YOU_PT}")
    );

    // The other direction, by explicit model name, with a beam.
    let r = post(
        addr,
        "/translate",
        &json!({"q": "Obrigado.", "model": "pt-en", "beam_size": 4}),
    );
    assert_eq!(r.status, 200);
    assert!(!r.json()["translatedText"].as_str().unwrap().is_empty());
}

#[test]
fn classify_round_trip() {
    let addr = shared();
    let r = post(
        addr,
        "/classify",
        &json!({"inputs": ["good movie", "terrible!"], "top_k": 2}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-quantserve-variant"), Some("fp32"));
    let body = r.json();
    assert_eq!(body["model"], "tiny-bert");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for res in results {
        assert!(tiny_bert::LABELS.contains(&res["label"].as_str().unwrap()));
        let scores = res["scores"].as_array().unwrap();
        assert_eq!(scores.len(), 2);
        assert_eq!(scores[0]["label"], res["label"]);
        assert!(scores[0]["score"].as_f64() >= scores[1]["score"].as_f64());
    }
    // All labels' probabilities sum to one; without top_k there is no `scores`.
    let r = post(
        addr,
        "/v1/classify",
        &json!({"inputs": "good", "model": "tiny-bert", "top_k": 99}),
    );
    let res = &r.json()["results"][0];
    let sum: f64 = res["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["score"].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-4, "{sum}");
    let r = post(addr, "/classify", &json!({"inputs": "good"}));
    assert!(r.json()["results"][0].get("scores").is_none());
}

#[test]
fn sentiment_model_round_trip() {
    let r = post(
        shared(),
        "/classify",
        &json!({"inputs": ["I loved this movie!", "This was awful."], "model": "sentiment"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let results = r.json()["results"].clone();
    assert_ne!(results[0]["label"], results[1]["label"], "{results}");
}

#[test]
fn models_and_health() {
    let addr = shared();
    assert_eq!(get(addr, "/health/live").status, 200);
    assert_eq!(get(addr, "/health/ready").status, 200);
    let models = get(addr, "/v1/models").json();
    let en_pt = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "en-pt")
        .unwrap()
        .clone();
    assert_eq!(en_pt["task"], "translate");
    assert_eq!(en_pt["default_variant"], "fp32");
    assert_eq!(en_pt["variants"][0]["status"], "ready");
    assert!(en_pt["variants"][0]["bytes"].as_u64().unwrap() > 1_000_000);
    let spec = get(addr, "/openapi.json");
    assert_eq!(spec.status, 200);
    assert!(spec.json()["paths"]["/classify"].is_object());
}

// ---------------------------------------------------------------------------------------------
// Concurrency and backpressure.

/// Equal JSON, except that numbers (classification scores) may differ by float rounding: the
/// fp32 GEMM sums in another order for another batch size. Labels and texts must be identical.
fn assert_same(got: &Value, want: &Value, what: &str) {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-5, "{what}: {a} vs {b}");
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{what}");
            a.iter().zip(b).for_each(|(x, y)| assert_same(x, y, what));
        }
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{what}"
            );
            a.iter().for_each(|(k, x)| assert_same(x, &b[k], what));
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

#[test]
fn concurrent_requests_match_sequential_ones() {
    let addr = shared();
    let en = [
        HOW_ARE_YOU,
        "The cat sat on the mat.",
        "I would like a cup of coffee, please.",
        "Where is the train station?",
        "In the beginning was the Word.",
        "The weather is nice today. Let's go for a walk!",
        "She reads a book every week.",
        "Please close the door.",
    ];
    let pt = [
        "Bom dia.",
        "Onde fica a biblioteca?",
        "Eu gosto de música.",
        "O livro está na mesa.",
        "Obrigado pela ajuda.",
    ];
    let cls = [
        "good",
        "bad movie",
        "it was not great",
        "the movie is terrible",
        "i",
        "great great great good",
    ];
    let mut distinct: Vec<(&str, Value)> = Vec::new();
    distinct.extend(en.iter().map(|t| {
        (
            "/translate",
            json!({"q": t, "source": "en", "target": "pt"}),
        )
    }));
    distinct.extend(pt.iter().map(|t| {
        (
            "/translate",
            json!({"q": [t], "source": "pt", "target": "en"}),
        )
    }));
    distinct.extend(
        cls.iter()
            .map(|t| ("/classify", json!({"inputs": [t, "good"], "top_k": 3}))),
    );
    distinct.push((
        "/translate",
        json!({"q": en, "source": "en", "target": "pt"}),
    ));
    let sequential: Vec<Value> = distinct
        .iter()
        .map(|(path, body)| {
            let r = post(addr, path, body);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            r.json()
        })
        .collect();

    let n = 200;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (path, body) = distinct[(i * 7) % distinct.len()].clone();
            std::thread::spawn(move || post(addr, path, &body))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap();
        assert_eq!(
            r.status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_same(
            &r.json(),
            &sequential[(i * 7) % distinct.len()],
            &format!("request {i}"),
        );
    }
}

#[test]
fn overfilled_queue_answers_429() {
    let mut cfg = config(&["en-pt"]);
    cfg.workers = WorkersConfig {
        count: 1,
        threads: 1,
    };
    cfg.batching.queue_capacity = 1;
    cfg.batching.max_batch_size = 1;
    let server = start(cfg);
    let addr = server.addr();
    let text = "The committee will meet again next week to discuss the budget, the schedule and the new rules.";
    let handles: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                post(
                    addr,
                    "/translate",
                    &json!({"q": text, "source": "en", "target": "pt", "beam_size": 4}),
                )
            })
        })
        .collect();
    let responses: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let refused: Vec<&Resp> = responses.iter().filter(|r| r.status == 429).collect();
    assert!(!refused.is_empty(), "no request was refused");
    assert!(responses.iter().all(|r| r.status == 200 || r.status == 429));
    assert_eq!(refused[0].code(), "queue_full");
    assert_eq!(refused[0].header("retry-after"), Some("1"));
    // The answered ones are all the same, correct translation.
    let ok: Vec<Value> = responses
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["translatedText"].clone())
        .collect();
    assert!(ok.windows(2).all(|w| w[0] == w[1]));
    let metrics = get(addr, "/metrics");
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .contains(r#"endpoint="translate",model="en-pt",status="429""#)
    );
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn deadline_exceeded_answers_504() {
    let addr = shared();
    let long = "The committee will meet again next week to discuss the budget and the schedule.";
    let r = post(
        addr,
        "/translate",
        &json!({"q": long, "source": "en", "target": "pt", "beam_size": 8, "timeout_ms": 1}),
    );
    assert_eq!((r.status, r.code().as_str()), (504, "deadline_exceeded"));
    let body = json!({"q": long, "source": "en", "target": "pt", "beam_size": 8}).to_string();
    let r = request(
        addr,
        "POST",
        "/translate",
        &[("x-timeout-ms", "1")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 504);
    // The server carries on.
    assert_eq!(
        translate(addr, json!(HOW_ARE_YOU), "en", "pt").json()["translatedText"],
        HOW_ARE_YOU_PT
    );
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn every_error_code() {
    let addr = shared();
    let raw = |path: &str, body: &[u8]| request(addr, "POST", path, &[], body);
    // 400: malformed JSON, wrong types, empty input, bad parameters, hostile bodies.
    expect(&raw("/classify", b"{\"inputs\": "), 400, "bad_request");
    expect(&raw("/classify", b""), 400, "bad_request");
    expect(
        &raw("/translate", b"\x00\x01\xff binary"),
        400,
        "bad_request",
    );
    expect(
        &raw(
            "/translate",
            b"{\"q\": \"\xff\xfe\", \"source\": \"en\", \"target\": \"pt\"}",
        ),
        400,
        "bad_request",
    );
    let nested = format!("{{\"q\": {}{}}}", "[".repeat(50_000), "]".repeat(50_000));
    expect(&raw("/translate", nested.as_bytes()), 400, "bad_request");
    expect(
        &post(addr, "/classify", &json!({"inputs": 42})),
        400,
        "bad_request",
    );
    expect(
        &post(addr, "/classify", &json!({"inputs": ["a", null]})),
        400,
        "bad_request",
    );
    expect(
        &post(
            addr,
            "/classify",
            &json!({"inputs": "a", "truncate": "yes"}),
        ),
        400,
        "bad_request",
    );
    expect(
        &post(
            addr,
            "/classify",
            &json!({"inputs": "", "model": "tiny-bert"}),
        ),
        400,
        "bad_request",
    );
    expect(
        &post(addr, "/classify", &json!({"inputs": []})),
        400,
        "bad_request",
    );
    expect(
        &post(addr, "/classify", &json!({"inputs": "a", "model": "en-pt"})),
        400,
        "bad_request",
    );
    expect(&translate(addr, json!(""), "en", "pt"), 400, "bad_request");
    // As LibreTranslate: a blank text is refused, a list of blank texts comes back blank.
    let blank = translate(addr, json!(["  "]), "en", "pt");
    assert_eq!(
        blank.status,
        200,
        "{}",
        String::from_utf8_lossy(&blank.body)
    );
    let out = blank.json()["translatedText"].clone();
    assert!(
        out.as_array()
            .is_some_and(|a| a.len() == 1 && a[0].as_str().is_some_and(|t| t.trim().is_empty())),
        "{out}"
    );
    expect(
        &post(addr, "/translate", &json!({"q": "Hi"})),
        400,
        "bad_request",
    );
    expect(
        &post(
            addr,
            "/translate",
            &json!({"q": "Hi", "source": "en", "target": "pt", "beam_size": 0}),
        ),
        400,
        "bad_request",
    );
    expect(
        &post(
            addr,
            "/translate",
            &json!({"q": "Hi", "source": "en", "target": "pt", "beam_size": 99}),
        ),
        400,
        "bad_request",
    );
    expect(
        &post(
            addr,
            "/translate",
            &json!({"q": "Hi", "source": "en", "target": "pt", "timeout_ms": 0}),
        ),
        400,
        "bad_request",
    );
    let r = request(
        addr,
        "POST",
        "/translate",
        &[("x-timeout-ms", "soon")],
        br#"{"q": "Hi", "source": "en", "target": "pt"}"#,
    );
    expect(&r, 400, "bad_request");
    // A named model with another language than its own: refused, never silently translated
    // into the model's target (found by schemathesis: a garbage `target` beside `model`).
    let r = post(
        addr,
        "/translate",
        &json!({"q": "Hi", "model": "en-pt", "source": "en", "target": "de"}),
    );
    expect(&r, 400, "bad_request");
    let message = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        message.contains("translates en→pt, not en→de"),
        "{}",
        r.json()
    );
    expect(
        &post(
            addr,
            "/translate",
            &json!({"q": "Hi", "model": "en-pt", "source": "fr"}),
        ),
        400,
        "bad_request",
    );
    // 404: unknown model, variant, endpoint; 405: wrong method.
    expect(
        &post(addr, "/classify", &json!({"inputs": "a", "model": "nope"})),
        404,
        "unknown_model",
    );
    expect(
        &post(addr, "/translate", &json!({"q": "a", "model": "nope"})),
        404,
        "unknown_model",
    );
    expect(
        &post(
            addr,
            "/classify",
            &json!({"inputs": "a", "variant": "int3"}),
        ),
        404,
        "unknown_variant",
    );
    expect(
        &post(
            addr,
            "/translate",
            &json!({"q": "a", "source": "en", "target": "pt", "variant": "int3"}),
        ),
        404,
        "unknown_variant",
    );
    expect(&get(addr, "/nowhere"), 404, "not_found");
    expect(&get(addr, "/translate"), 405, "method_not_allowed");
    // 413: body over the limit, too many inputs, too many characters.
    let big = json!({"inputs": "a".repeat(300_000)}).to_string();
    expect(&raw("/classify", big.as_bytes()), 413, "payload_too_large");
    expect(
        &post(addr, "/classify", &json!({"inputs": vec!["good"; 9]})),
        413,
        "payload_too_large",
    );
    expect(
        &translate(addr, json!("word ".repeat(500)), "en", "pt"),
        413,
        "payload_too_large",
    );
    // 422: too many tokens without truncation; unsupported language pair, detection, format.
    let long = "good ".repeat(100);
    expect(
        &post(addr, "/classify", &json!({"inputs": long})),
        422,
        "input_too_long",
    );
    assert_eq!(
        post(
            addr,
            "/classify",
            &json!({"inputs": long, "truncate": true})
        )
        .status,
        200
    );
    let run_on = "word ".repeat(300);
    expect(
        &translate(addr, json!(run_on), "en", "pt"),
        422,
        "input_too_long",
    );
    expect(
        &translate(addr, json!("Hi"), "en", "de"),
        422,
        "unsupported",
    );
    expect(
        &translate(addr, json!("Hi"), "auto", "pt"),
        422,
        "unsupported",
    );
    expect(
        &post(
            addr,
            "/translate",
            &json!({"q": "Hi", "source": "en", "target": "pt", "format": "html"}),
        ),
        422,
        "unsupported",
    );
    // 429 and 504 have tests of their own; 503 below. The server is still healthy after all this.
    assert_eq!(
        translate(addr, json!(HOW_ARE_YOU), "en", "pt").json()["translatedText"],
        HOW_ARE_YOU_PT
    );
}

#[test]
fn not_ready_and_unauthorized() {
    // A model that does not exist never loads: the server is live but not ready.
    let mut cfg = config(&["missing-model"]);
    cfg.server.api_key = Some("s3cret".into());
    let server = Server::start(cfg, false).unwrap();
    let addr = server.addr();
    assert_eq!(get(addr, "/health/live").status, 200);
    let start = Instant::now();
    loop {
        let models = request(
            addr,
            "GET",
            "/v1/models",
            &[("authorization", "Bearer s3cret")],
            b"",
        )
        .json();
        if models["models"][0]["variants"][0]["status"] == "failed" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(addr, "/health/ready").status, 503);
    let body = br#"{"inputs": "a", "model": "missing-model"}"#;
    expect(
        &request(
            addr,
            "POST",
            "/classify",
            &[("authorization", "Bearer s3cret")],
            body,
        ),
        503,
        "not_ready",
    );
    // 401 without the key or with a wrong one; health and metrics stay open.
    let r = request(addr, "POST", "/classify", &[], body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    expect(&r, 401, "unauthorized");
    expect(
        &request(
            addr,
            "POST",
            "/classify",
            &[("authorization", "Bearer nope")],
            body,
        ),
        401,
        "unauthorized",
    );
    assert_eq!(get(addr, "/metrics").status, 200);
    server.shutdown();
    server.wait().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Shutdown and metrics.

#[test]
fn graceful_shutdown_loses_nothing_in_flight() {
    let mut cfg = config(&["en-pt"]);
    cfg.workers = WorkersConfig {
        count: 1,
        threads: 1,
    };
    // Small batches, so most requests are still queued when the shutdown begins.
    cfg.batching.max_batch_size = 2;
    let server = start(cfg);
    let addr = server.addr();
    let n = 12;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let q = format!("{HOW_ARE_YOU} I have {i} questions for you.");
            std::thread::spawn(move || {
                post(
                    addr,
                    "/translate",
                    &json!({"q": q, "source": "en", "target": "pt", "beam_size": 4}),
                )
            })
        })
        .collect();
    // Shut down once every request is inside the server (queued or running).
    let start = Instant::now();
    while server.runtime().in_flight() < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "requests did not arrive"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    server.shutdown();
    assert!(
        server.runtime().in_flight() > 0,
        "everything finished before the shutdown: the test proves nothing"
    );
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            r.json()["translatedText"]
                .as_str()
                .unwrap()
                .starts_with(HOW_ARE_YOU_PT)
        );
    }
    server.wait().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

/// The value of one series in Prometheus text format (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn metrics_follow_requests() {
    let addr = shared();
    let read = || String::from_utf8(get(addr, "/metrics").body).unwrap();
    let mv = r#"{model="en-pt",variant="fp32"}"#;
    let ok = r#"quantserve_requests_total{endpoint="translate",model="en-pt",status="200",variant="fp32"}"#;
    let unknown = r#"quantserve_requests_total{endpoint="translate",model="unknown",status="404",variant="unknown"}"#;
    let before = read();
    assert_eq!(translate(addr, json!(HOW_ARE_YOU), "en", "pt").status, 200);
    assert_eq!(
        post(
            addr,
            "/translate",
            &json!({"q": "a", "model": "no-such-model"})
        )
        .status,
        404
    );
    let after = read();
    let grew = |name: &str| series(&after, name) - series(&before, name);
    assert!(grew(ok) >= 1.0);
    assert!(grew(unknown) >= 1.0);
    for h in [
        "request_duration_seconds",
        "queue_duration_seconds",
        "inference_duration_seconds",
        "batch_size",
        "batch_tokens",
    ] {
        assert!(grew(&format!("quantserve_{h}_count{mv}")) >= 1.0, "{h}");
    }
    assert!(grew(&format!("quantserve_input_tokens_total{mv}")) >= 6.0);
    assert!(grew(&format!("quantserve_generated_tokens_total{mv}")) >= 5.0);
    assert!(
        series(
            &after,
            r#"quantserve_variant_info{bits="32",model="en-pt",scheme="fp32",variant="fp32"}"#
        ) > 1e6
    );
    assert!(after.contains(&format!("quantserve_queue_depth{mv} ")));
    assert!(after.contains("process_resident_memory_bytes"));
    // Exposition passes `promtool check metrics` (Debian package `prometheus`).
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        // CI installs promtool (.ci/run), so there a missing promtool is a failure, not a skip.
        Err(e) if std::env::var_os("CI").is_some() => panic!("promtool is required in CI: {e}"),
        Err(_) => eprintln!("promtool not installed: exposition lint skipped"),
        Ok(mut child) => {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(after.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && said.trim().is_empty(),
                "promtool: {said}"
            );
        }
    }
}
