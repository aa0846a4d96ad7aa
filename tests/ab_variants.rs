//! Variants at run time, end to end over real sockets with the trained sentiment model: hot load,
//! swap and unload under load with no failed request, the self-check refusing a broken variant,
//! routing splits, sticky keys and overrides, shadow comparison on a variant made to disagree,
//! feedback and the A/B report, config reload, and clear errors for bad admin input.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::http_client::{Resp, get, post, request};
use common::server::{self, expect, metric, start};
use quantserve::runtime::config::{Config, ModelConfig};
use quantserve::runtime::routing::{Routing, Shadow};
use serde_json::{Value, json};

/// A model repository: `sentiment/fp32` (the trained model) and `sentiment/flipped`, the same
/// model with its classifier negated, so it gives the opposite label on every input.
fn models_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ab-models");
        let src = common::repo_root().join("models/sentiment/fp32");
        let fp32 = root.join("sentiment/fp32");
        let flipped = root.join("sentiment/flipped");
        std::fs::create_dir_all(&flipped).unwrap();
        let _ = std::fs::remove_file(&fp32);
        std::os::unix::fs::symlink(&src, &fp32).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(src.join(f), flipped.join(f)).unwrap();
        }
        write_flipped(
            &src.join("model.safetensors"),
            &flipped.join("model.safetensors"),
        );
        // The translation model for the shadow chrF case.
        common::model_dir("en-pt");
        let link = root.join("en-pt");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(common::repo_root().join("models/en-pt"), &link).unwrap();
        root
    })
    .clone()
}

/// Copies a safetensors file with `classifier.weight` and `classifier.bias` negated.
fn write_flipped(from: &Path, to: &Path) {
    let bytes = std::fs::read(from).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if name.ends_with("classifier.weight") || name.ends_with("classifier.bias") {
            assert_eq!(view.dtype(), safetensors::Dtype::F16);
            for pair in data.chunks_exact_mut(2) {
                pair[1] ^= 0x80; // the sign bit of a little-endian f16
            }
        }
        owned.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, to).unwrap();
}

fn sentiment(variants: &[&str], routing: Option<Routing>) -> ModelConfig {
    ModelConfig {
        default_variant: variants[0].into(),
        variants: variants.iter().map(|v| v.to_string()).collect(),
        routing,
        ..ModelConfig::fp32()
    }
}

fn config(models: &[(&str, ModelConfig)]) -> Config {
    server::config(models_root(), models)
}

fn classify(addr: SocketAddr, text: &str, headers: &[(&str, &str)]) -> Resp {
    let body = json!({ "inputs": text }).to_string();
    request(addr, "POST", "/classify", headers, body.as_bytes())
}

fn admin(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Resp {
    request(addr, method, path, &[], body.to_string().as_bytes())
}

const TEXTS: [&str; 6] = [
    "A gorgeous, witty, seductive movie.",
    "The plot is nothing but boilerplate clichés.",
    "An utterly charming and hilarious film.",
    "It's a bad sign when you're rooting for the villain to end it all.",
    "Moving, funny and beautifully acted.",
    "Dull, lifeless and far too long.",
];

#[test]
fn hot_swap_and_unload_under_load_fail_no_request() {
    let routing = Routing {
        split: BTreeMap::from([("int8".into(), 50), ("fp32".into(), 50)]),
        ..Routing::default()
    };
    let server = start(config(&[(
        "sentiment",
        sentiment(&["int8", "fp32"], Some(routing)),
    )]));
    let addr = server.addr();
    let stop = AtomicBool::new(false);
    let (ok, failures) = std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let stop = &stop;
                s.spawn(move || {
                    let (mut ok, mut failures) = (0, Vec::new());
                    let mut i = c;
                    while !stop.load(Ordering::SeqCst) {
                        let r = classify(addr, TEXTS[i % TEXTS.len()], &[]);
                        if r.status == 200 {
                            ok += 1;
                        } else {
                            failures.push(String::from_utf8_lossy(&r.body).to_string());
                        }
                        i += 1;
                    }
                    (ok, failures)
                })
            })
            .collect();
        let step = |method: &str, path: &str, body: Value| {
            let r = admin(addr, method, path, &body);
            assert_eq!(
                r.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            r.json()
        };
        let load = "/admin/models/sentiment/variants/int8:load";
        // Hot swap: the variant is reloaded while it serves half the traffic.
        let swapped = step("POST", load, json!({}));
        assert_eq!(swapped["swapped"], true);
        assert!(swapped["self_check"]["agreement"].as_f64().unwrap() >= 0.9);
        // Move all traffic away, unload, load again, move it back; then the same for fp32.
        step(
            "PUT",
            "/admin/models/sentiment/routing",
            json!({"split": {"fp32": 100}}),
        );
        step(
            "POST",
            "/admin/models/sentiment/variants/int8:unload",
            json!({}),
        );
        let fresh = step("POST", load, json!({}));
        assert_eq!(fresh["swapped"], false);
        step(
            "PUT",
            "/admin/models/sentiment/routing",
            json!({"split": {"int8": 100}}),
        );
        step(
            "POST",
            "/admin/models/sentiment/variants/fp32:unload",
            json!({}),
        );
        step(
            "POST",
            "/admin/models/sentiment/variants/fp32:load",
            json!({}),
        );
        step(
            "PUT",
            "/admin/models/sentiment/routing",
            json!({"split": {"int8": 50, "fp32": 50}}),
        );
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        clients.into_iter().map(|c| c.join().unwrap()).fold(
            (0, Vec::new()),
            |(n, mut f), (ok, fail)| {
                f.extend(fail);
                (n + ok, f)
            },
        )
    });
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 20, "only {ok} requests ran during the swaps");
    // Unloaded and replaced copies released their queues: two (live + shadow) per variant.
    let began = Instant::now();
    while server.runtime().pool.queue_count() != 4 {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{} queues open",
            server.runtime().pool.queue_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn self_check_refuses_a_broken_variant_and_admin_errors_are_clear() {
    let server = start(config(&[("sentiment", sentiment(&["int8", "fp32"], None))]));
    let addr = server.addr();
    let r = admin(
        addr,
        "POST",
        "/admin/models/sentiment/variants/flipped:load",
        &json!({}),
    );
    expect(&r, 422, "self_check_failed");
    let check = &r.json()["details"];
    assert_eq!(check["measure"], "label_agreement");
    assert_eq!(check["reference"], "fp32");
    assert!(check["agreement"].as_f64().unwrap() < 0.2, "{check}");
    assert_eq!(check["samples"], 32);
    // Not activated: a request for it is refused, the others still serve.
    let model = get(addr, "/v1/models/sentiment").json();
    let flipped = model["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "flipped")
        .unwrap();
    assert_eq!(flipped["status"], "failed");
    let r = request(
        addr,
        "POST",
        "/classify",
        &[],
        json!({"inputs": "fine", "variant": "flipped"})
            .to_string()
            .as_bytes(),
    );
    // A failed load is permanent until the variant is loaded again or unloaded: not retryable.
    expect(&r, 409, "variant_failed");
    assert_eq!(classify(addr, TEXTS[0], &[]).status, 200);

    // Bad admin input.
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "POST",
            "/admin/models/nope/variants/int8:load",
            json!({}),
            404,
            "unknown_model",
        ),
        (
            "POST",
            "/admin/models/sentiment/variants/int8:explode",
            json!({}),
            404,
            "not_found",
        ),
        (
            "POST",
            "/admin/models/sentiment/variants/int8",
            json!({}),
            404,
            "not_found",
        ),
        (
            "POST",
            "/admin/models/sentiment/variants/int3:load",
            json!({}),
            // Neither a folder nor a scheme: nothing to load, and no entry left behind.
            404,
            "unknown_variant",
        ),
        (
            "POST",
            "/admin/models/sentiment/variants/int8:unload",
            json!({}),
            409,
            "conflict",
        ),
        (
            "POST",
            "/admin/models/sentiment/variants/int4:unload",
            json!({}),
            404,
            "unknown_variant",
        ),
        (
            "PUT",
            "/admin/models/sentiment/routing",
            json!({"split": {"int4": 100}}),
            409,
            "conflict",
        ),
        (
            "PUT",
            "/admin/models/sentiment/routing",
            json!({"split": {}}),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/admin/models/sentiment/routing",
            json!({"split": {"int8": 1}, "shadow": {"reference": "fp32", "sample_rate": 2}}),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/admin/models/sentiment/routing",
            json!({"split": {"int8": -1}}),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/admin/models/sentiment/routing",
            json!({"splitt": {"int8": 1}}),
            400,
            "bad_request",
        ),
        ("POST", "/admin/reload", json!({}), 409, "conflict"),
        (
            "GET",
            "/admin/models/nope/disagreements",
            json!({}),
            // Other users' inputs: never without server.admin_key (tests/admin_lockdown.rs).
            403,
            "admin_key_required",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let r = admin(addr, method, path, &body);
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{method} {path} {body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.json()["error"].as_str().unwrap().is_empty());
    }
    let r = request(
        addr,
        "PUT",
        "/admin/models/sentiment/routing",
        &[],
        b"{not json",
    );
    expect(&r, 400, "bad_request");
    server.shutdown();
    server.wait().unwrap();

    // With an admin key, the admin API needs it; inference does not.
    let mut cfg = config(&[("sentiment", sentiment(&["fp32"], None))]);
    cfg.server.admin_key = Some("s3cret".into());
    let server = start(cfg);
    let addr = server.addr();
    let path = "/admin/models/sentiment/routing";
    expect(&get(addr, path), 401, "unauthorized");
    let r = request(addr, "GET", path, &[("authorization", "Bearer wrong")], b"");
    expect(&r, 401, "unauthorized");
    let r = request(
        addr,
        "GET",
        path,
        &[("authorization", "Bearer s3cret")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["split"]["fp32"], 100);
    assert_eq!(classify(addr, TEXTS[0], &[]).status, 200);
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn split_sticky_and_override_follow_the_routing() {
    let routing = Routing {
        split: BTreeMap::from([("int8".into(), 70), ("fp32".into(), 30)]),
        ..Routing::default()
    };
    let server = start(config(&[(
        "sentiment",
        sentiment(&["int8", "fp32"], Some(routing)),
    )]));
    let addr = server.addr();
    let served = |headers: &[(&str, &str)]| {
        let r = classify(addr, "ok", headers);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.header("x-quantserve-variant").unwrap().to_string();
        assert_eq!(r.json()["variant"], v.as_str());
        v
    };
    // 2,000 requests: fp32's share is 30 % ± 5 σ (σ = 1.02 %).
    let fp32: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..500).filter(|_| served(&[]) == "fp32").count()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let share = fp32 as f64 / 2000.0;
    assert!((share - 0.30).abs() < 0.051, "fp32 served {share:.3}");

    // Sticky by a header: each user keeps one variant, and users spread over both.
    let sticky = json!({"split": {"int8": 50, "fp32": 50}, "sticky_key": "x-user-id"});
    let r = admin(addr, "PUT", "/admin/models/sentiment/routing", &sticky);
    assert_eq!(r.status, 200);
    let mut per_variant = BTreeMap::new();
    for user in 0..40 {
        let id = format!("user-{user}");
        let first = served(&[("x-user-id", &id)]);
        for _ in 0..4 {
            assert_eq!(served(&[("X-User-Id", &id)]), first, "user {id} moved");
        }
        *per_variant.entry(first).or_insert(0) += 1;
    }
    assert_eq!(per_variant.len(), 2, "{per_variant:?}");

    // Overrides: honoured when allowed, refused when not.
    let named = |variant: &str| {
        request(
            addr,
            "POST",
            "/classify",
            &[],
            json!({"inputs": "ok", "variant": variant})
                .to_string()
                .as_bytes(),
        )
    };
    for _ in 0..5 {
        assert_eq!(named("fp32").header("x-quantserve-variant"), Some("fp32"));
    }
    let closed = json!({"split": {"int8": 100}, "allow_override": false});
    assert_eq!(
        admin(addr, "PUT", "/admin/models/sentiment/routing", &closed).status,
        200
    );
    expect(&named("fp32"), 403, "forbidden");
    assert_eq!(served(&[]), "int8");
    let routing = get(addr, "/v1/models/sentiment").json()["routing"].clone();
    assert_eq!(routing["allow_override"], false);
    server.shutdown();
    server.wait().unwrap();
}

/// Mean over labels of |p − q|, from two classify responses' results.
fn mean_abs_diff(a: &Value, b: &Value) -> f64 {
    let probs = |v: &Value| -> BTreeMap<String, f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["label"].as_str().unwrap().to_string(),
                    s["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (pa, pb) = (probs(a), probs(b));
    pa.iter().map(|(l, p)| (p - pb[l]).abs()).sum::<f64>() / pa.len() as f64
}

#[test]
fn shadow_metrics_feedback_and_report_on_a_variant_made_to_disagree() {
    let routing = Routing {
        split: BTreeMap::from([("flipped".into(), 100)]),
        shadow: Some(Shadow {
            reference: "fp32".into(),
            sample_rate: 1.0,
        }),
        ..Routing::default()
    };
    let model = ModelConfig {
        // The flipped variant must load to be shadowed: no self-check bar here.
        min_agreement: 0.0,
        ..sentiment(&["flipped", "fp32"], Some(routing))
    };
    let translation = ModelConfig {
        default_variant: "int8".into(),
        variants: vec!["int8".into(), "fp32".into()],
        routing: Some(Routing {
            shadow: Some(Shadow {
                reference: "fp32".into(),
                sample_rate: 1.0,
            }),
            ..Routing::single("int8")
        }),
        ..ModelConfig::fp32()
    };
    let mut cfg = config(&[("sentiment", model), ("en-pt", translation)]);
    cfg.server.admin_key = Some("admin-k".into());
    let server = start(cfg);
    let addr = server.addr();
    let labels = "model=\"sentiment\",variant=\"flipped\",reference=\"fp32\"";

    let mut expected_diff = 0.0;
    let mut ids = Vec::new();
    for (i, text) in TEXTS.iter().enumerate() {
        let id = format!("req-{i}");
        // Distinct ids: feedback names the live request.
        let ask = |variant: Option<&str>, id: &str| {
            let mut body = json!({"inputs": text, "top_k": 2});
            if let Some(v) = variant {
                body["variant"] = json!(v);
            }
            request(
                addr,
                "POST",
                "/classify",
                &[("x-request-id", id)],
                body.to_string().as_bytes(),
            )
        };
        let live = ask(None, &id);
        assert_eq!(live.header("x-quantserve-variant"), Some("flipped"));
        let reference = ask(Some("fp32"), &format!("{id}-reference"));
        let (lj, rj) = (live.json(), reference.json());
        let (l, r) = (&lj["results"][0], &rj["results"][0]);
        assert!(l["scores"].is_array(), "{lj} {rj}");
        assert_ne!(l["label"], r["label"]);
        expected_diff += mean_abs_diff(&l["scores"], &r["scores"]);
        ids.push((id, r["label"].as_str().unwrap().to_string()));
    }
    let n = TEXTS.len() as f64;
    let began = Instant::now();
    while metric(addr, "quantserve_shadow_comparisons_total", labels) < n {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "shadow never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        metric(addr, "quantserve_shadow_comparisons_total", labels),
        n
    );
    assert_eq!(
        metric(addr, "quantserve_shadow_agreements_total", labels),
        0.0
    );
    assert_eq!(metric(addr, "quantserve_shadow_dropped_total", labels), 0.0);
    let sum = metric(addr, "quantserve_shadow_score_abs_diff_sum", labels);
    assert!(
        (sum - expected_diff).abs() < 1e-4,
        "{sum} vs {expected_diff}"
    );
    assert_eq!(
        metric(addr, "quantserve_shadow_score_abs_diff_count", labels),
        n
    );

    // The disagreements are kept for reading, newest first.
    let log = request(
        addr,
        "GET",
        "/admin/models/sentiment/disagreements",
        &[("authorization", "Bearer admin-k")],
        b"",
    )
    .json();
    let items = log["disagreements"].as_array().unwrap();
    assert_eq!(items.len(), TEXTS.len());
    assert_eq!(items[0]["input"], TEXTS[TEXTS.len() - 1]);
    assert_eq!(items[0]["request_id"], format!("req-{}", TEXTS.len() - 1));
    assert_eq!(items[0]["variant"], "flipped");
    assert_eq!(items[0]["comparison"]["agree"], false);

    // Feedback: the reference's label is the truth here, so flipped is always wrong.
    for (id, truth) in &ids {
        let r = post(
            addr,
            "/v1/feedback",
            &json!({"request_id": id, "label": truth}),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["correct"], false);
        assert_eq!(r.json()["variant"], "flipped");
    }
    let again = post(
        addr,
        "/v1/feedback",
        &json!({"request_id": ids[0].0, "correct": true}),
    );
    expect(&again, 409, "conflict");
    let unknown = post(
        addr,
        "/v1/feedback",
        &json!({"request_id": "never-served", "correct": true}),
    );
    expect(&unknown, 404, "not_found");
    let both = post(
        addr,
        "/v1/feedback",
        &json!({"request_id": ids[1].0, "correct": true, "label": "x"}),
    );
    expect(&both, 400, "bad_request");
    assert_eq!(
        metric(
            addr,
            "quantserve_feedback_total",
            "model=\"sentiment\",variant=\"flipped\",correct=\"false\""
        ),
        n
    );

    let report = get(addr, "/v1/models/sentiment/ab?format=json").json();
    let flipped = report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant"] == "flipped")
        .unwrap()
        .clone();
    assert_eq!(flipped["requests"], TEXTS.len());
    assert_eq!(flipped["shadow_agreement"]["value"], 0.0);
    assert_eq!(flipped["shadow_agreement"]["n"], TEXTS.len());
    assert_eq!(flipped["online_accuracy"]["value"], 0.0);
    let ci = flipped["online_accuracy"]["ci95"].as_array().unwrap();
    assert!(ci[1].as_f64().unwrap() > 0.3 && ci[1].as_f64().unwrap() < 0.5);
    assert!(flipped["latency_p50"].as_f64().unwrap() > 0.0);
    assert!(report["leader"].is_null(), "one variant has feedback");
    let table = String::from_utf8(get(addr, "/v1/models/sentiment/ab").body).unwrap();
    assert!(table.contains("flipped") && table.contains("online accuracy"));

    // Translation: exact match and chrF of int8 against fp32.
    let t_labels = "model=\"en-pt\",variant=\"int8\",reference=\"fp32\"";
    let r = post(
        addr,
        "/translate",
        &json!({"q": "How are you today? The weather is fine.", "source": "en", "target": "pt"}),
    );
    assert_eq!(r.status, 200);
    let began = Instant::now();
    while metric(addr, "quantserve_shadow_chrf_count", t_labels) < 2.0 {
        assert!(began.elapsed() < Duration::from_secs(30), "no chrF");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        metric(addr, "quantserve_shadow_comparisons_total", t_labels),
        2.0
    );
    let agreed = metric(addr, "quantserve_shadow_agreements_total", t_labels);
    let chrf = metric(addr, "quantserve_shadow_chrf_sum", t_labels);
    // Each exact match contributes chrF 100.
    assert!(chrf >= 100.0 * agreed && chrf <= 200.0, "{chrf} {agreed}");
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn reload_applies_the_config_files_models_and_routing() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ab-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("quantserve.toml");
    let root = models_root();
    let write = |body: &str| {
        std::fs::write(
            &path,
            format!(
                "[server]\nhttp_addr = \"127.0.0.1:0\"\nmodels_dir = {:?}\n[workers]\ncount = 1\nthreads = 2\n{body}",
                root.display().to_string()
            ),
        )
        .unwrap()
    };
    write("[models.sentiment]\ndefault_variant = \"fp32\"\n");
    let cfg = Config::load(Some(&path), &Default::default()).unwrap();
    let server = start(cfg);
    let addr = server.addr();
    write(
        "[models.sentiment]\ndefault_variant = \"fp32\"\nvariants = [\"int8\"]\n\
         [models.sentiment.routing]\nsplit = { int8 = 80, fp32 = 20 }\nsticky_key = \"x-user-id\"\n",
    );
    let r = post(addr, "/admin/reload", &json!({}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["loaded"], json!(["sentiment/int8"]));
    let routing = get(addr, "/admin/models/sentiment/routing").json();
    assert_eq!(routing["split"], json!({"int8": 80, "fp32": 20}));
    assert_eq!(routing["sticky_key"], "x-user-id");
    // Back to fp32 only: int8 is unloaded once the routing no longer uses it.
    write("[models.sentiment]\ndefault_variant = \"fp32\"\n");
    let r = post(addr, "/admin/reload", &json!({}));
    assert_eq!(r.json()["unloaded"], json!(["sentiment/int8"]));
    assert_eq!(
        classify(addr, "ok", &[]).header("x-quantserve-variant"),
        Some("fp32")
    );
    // A broken file changes nothing.
    std::fs::write(&path, "[models.sentiment\n").unwrap();
    expect(&post(addr, "/admin/reload", &json!({})), 400, "bad_request");
    assert_eq!(classify(addr, "ok", &[]).status, 200);
    server.shutdown();
    server.wait().unwrap();
}
