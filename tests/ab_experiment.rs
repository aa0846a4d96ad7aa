//! A/B experiments end to end on a real server with the trained sentiment model (fp32 and int8):
//! sticky users assigned by salted rendezvous hashing, feedback from the labelled dev split
//! counted per experiment period, verdicts with SRM and power in `/v1/models/{m}/ab`, feedback
//! validation (labels, one per request, reused ids, requests served by another replica), ramps
//! that move only the users they must, and a new period on every split change and hot swap.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::http_client::{Resp, get, post, request};
use common::server::{self, expect, metric};
use quantserve::runtime::ab::ticket::{Kind, Ticket};
use quantserve::runtime::config::ModelConfig;
use quantserve::runtime::routing::Routing;
use serde_json::{Value, json};

/// (label, text) of the sentiment dev split.
fn dev() -> Vec<(String, String)> {
    std::fs::read_to_string(common::path("data/sentiment/dev.tsv"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(l, t)| (l.to_string(), t.to_string()))
        .collect()
}

fn routing(split: &[(&str, u32)]) -> Routing {
    Routing {
        split: split.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
        sticky_key: Some("x-user-id".into()),
        ..Routing::default()
    }
}

fn classify(addr: SocketAddr, text: &str, user: &str, id: &str) -> Resp {
    let body = json!({ "inputs": text }).to_string();
    let r = request(
        addr,
        "POST",
        "/classify",
        &[("x-user-id", user), ("x-request-id", id)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r
}

fn put_routing(addr: SocketAddr, r: &Routing) {
    let resp = request(
        addr,
        "PUT",
        "/admin/models/sentiment/routing",
        &[],
        serde_json::to_string(r).unwrap().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

fn report(addr: SocketAddr) -> Value {
    get(addr, "/v1/models/sentiment/ab?format=json").json()
}

fn start(split: &[(&str, u32)]) -> quantserve::api::serve::Server {
    let sentiment = ModelConfig {
        default_variant: "fp32".into(),
        variants: vec!["fp32".into(), "int8".into()],
        routing: Some(routing(split)),
        ..ModelConfig::fp32()
    };
    let cfg = server::config(
        common::repo_root().join("models"),
        &[("sentiment", sentiment)],
    );
    server::start(cfg)
}

#[test]
fn feedback_from_sticky_users_gives_verdicts_srm_and_power() {
    let server = start(&[("fp32", 50), ("int8", 50)]);
    let addr = server.addr();
    let data = dev();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut feedback_per_variant: BTreeMap<String, u64> = BTreeMap::new();
    for (i, (label, text)) in data.iter().take(240).enumerate() {
        let user = format!("user-{}", i % 40);
        let id = format!("fb-{i}");
        let r = classify(addr, text, &user, &id);
        let variant = r.header("x-quantserve-variant").unwrap().to_string();
        let ticket = Ticket::decode(r.header("x-quantserve-ab-ticket").unwrap()).unwrap();
        assert_eq!((ticket.kind, ticket.period), (Kind::Randomised, 1));
        assert_eq!(ticket.served, variant);
        assert!(ticket.bucket < 64);
        // Sticky: a user always sees one variant.
        assert_eq!(seen.entry(user).or_insert(variant.clone()), &variant);
        // The dev split's labels, capitalised on every other one: matched ignoring case.
        let given = if i % 2 == 0 {
            label.clone()
        } else {
            label.to_uppercase()
        };
        let fb = post(
            addr,
            "/v1/feedback",
            &json!({"request_id": id, "label": given}),
        );
        assert_eq!(fb.status, 200, "{}", String::from_utf8_lossy(&fb.body));
        assert_eq!(fb.json()["analysed"], true);
        *feedback_per_variant.entry(variant).or_default() += 1;
    }
    // An override is served but left out of the analysis.
    let overridden = request(
        addr,
        "POST",
        "/classify",
        &[("x-user-id", "user-0"), ("x-request-id", "named")],
        br#"{"inputs": "fine", "variant": "int8"}"#,
    );
    let t = Ticket::decode(overridden.header("x-quantserve-ab-ticket").unwrap()).unwrap();
    assert_eq!(t.kind, Kind::Override);
    let fb = post(
        addr,
        "/v1/feedback",
        &json!({"request_id": "named", "correct": true}),
    );
    assert_eq!(fb.json()["analysed"], false);

    // Validation: an unknown label, a second feedback, a reused request id.
    expect(
        &post(
            addr,
            "/v1/feedback",
            &json!({"request_id": "fb-0", "label": "neutral"}),
        ),
        409,
        "conflict",
    );
    classify(addr, "fine", "user-1", "fresh");
    expect(
        &post(
            addr,
            "/v1/feedback",
            &json!({"request_id": "fresh", "label": "neutral"}),
        ),
        422,
        "unsupported",
    );
    classify(addr, "fine", "user-1", "dup");
    classify(addr, "awful", "user-2", "dup");
    let dup = post(
        addr,
        "/v1/feedback",
        &json!({"request_id": "dup", "correct": true}),
    );
    expect(&dup, 409, "conflict");
    assert!(
        dup.json()["error"]
            .as_str()
            .unwrap()
            .contains("more than one")
    );

    // Feedback for a request another replica served: by its ticket, or by model and variant.
    let remote = Ticket {
        served: "int8".into(),
        assigned: "int8".into(),
        ..t.clone()
    };
    let remote = Ticket {
        kind: Kind::Randomised,
        ..remote
    };
    let fb = post(
        addr,
        "/v1/feedback",
        &json!({"request_id": "elsewhere-1", "ticket": remote.encode(), "correct": true}),
    );
    assert_eq!(fb.status, 200, "{}", String::from_utf8_lossy(&fb.body));
    assert_eq!(
        (
            fb.json()["served_here"].clone(),
            fb.json()["analysed"].clone()
        ),
        (json!(false), json!(true))
    );
    let fb = post(
        addr,
        "/v1/feedback",
        &json!({"request_id": "elsewhere-2", "model": "sentiment", "variant": "fp32",
                "user": "user-3", "label": "Positive", "predicted": "negative"}),
    );
    assert_eq!(fb.json()["correct"], false);
    expect(
        &post(
            addr,
            "/v1/feedback",
            &json!({"request_id": "elsewhere-2", "correct": true, "model": "sentiment", "variant": "fp32"}),
        ),
        409,
        "conflict",
    );
    *feedback_per_variant.get_mut("int8").unwrap() += 1;
    *feedback_per_variant.get_mut("fp32").unwrap() += 1;

    let r = report(addr);
    assert_eq!(r["experiment"]["id"], "sentiment");
    assert_eq!(r["experiment"]["period"], 1);
    assert!(r["leader"].is_null(), "the old 'ahead' is gone");
    let c = &r["comparisons"][0];
    assert_eq!(r["comparisons"].as_array().unwrap().len(), 1);
    assert_eq!(
        (c["variant"].as_str(), c["reference"].as_str()),
        (Some("int8"), Some("fp32"))
    );
    assert_eq!(c["metric"], "online_accuracy");
    assert_eq!(c["trials"], feedback_per_variant["int8"]);
    assert_eq!(c["reference_trials"], feedback_per_variant["fp32"]);
    assert_eq!(c["method"], "msprt_normal_mixture_clustered");
    assert!(["non_inferior", "inferior", "inconclusive"].contains(&c["verdict"].as_str().unwrap()));
    for k in [
        "difference",
        "ci_low",
        "ci_high",
        "margin",
        "p_value_always_valid",
    ] {
        assert!(c[k].is_number(), "{k}: {c}");
    }
    assert!(c["ci_low"].as_f64() <= c["difference"].as_f64());
    assert_eq!(r["srm"]["unit"], "users");
    let users: u64 = r["srm"]["observed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_u64().unwrap())
        .sum();
    assert_eq!(users, 40);
    assert!(r["srm"]["p_value"].as_f64().unwrap() > 0.0);
    assert!(r["power"]["needed_per_arm"]["variant"].as_u64().unwrap() > 0);
    let variants = r["current_period"]["variants"].as_array().unwrap();
    for v in variants {
        assert!(v["users"].as_u64().unwrap() > 0);
        assert!(v["feedback_rate"].as_f64().unwrap() > 0.9, "{v}");
        assert_eq!(v["error_rate"], 0.0);
        assert!(v["latency"]["p50"]["estimate"].as_f64().unwrap() > 0.0);
        assert!(v["latency"]["p99"]["high"].is_number() || v["latency"]["p99"]["high"] == "inf");
    }
    // The counters Prometheus gets add up to the same trials.
    let trials = metric(
        addr,
        "quantserve_ab_trials_total",
        "model=\"sentiment\",period=\"1\",variant=\"int8\",metric=\"feedback\"",
    );
    assert_eq!(trials as u64, feedback_per_variant["int8"]);
    let text = String::from_utf8(get(addr, "/v1/models/sentiment/ab").body).unwrap();
    assert!(text.contains("Verdicts on online accuracy"), "{text}");
    assert!(
        text.contains("Sample ratio (users)") && !text.contains("ahead"),
        "{text}"
    );
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn ramps_move_only_the_users_they_must_and_start_periods() {
    let server = start(&[("fp32", 90), ("int8", 10)]);
    let addr = server.addr();
    let users: Vec<String> = (0..150).map(|i| format!("ramp-user-{i}")).collect();
    let stage = |tag: &str| -> BTreeMap<String, String> {
        users
            .iter()
            .map(|u| {
                let r = classify(addr, "fine", u, &format!("{tag}-{u}"));
                (
                    u.clone(),
                    r.header("x-quantserve-variant").unwrap().to_string(),
                )
            })
            .collect()
    };
    let mut before = stage("s10");
    let on_int8 = |m: &BTreeMap<String, String>| m.values().filter(|v| *v == "int8").count();
    let mut counts = vec![on_int8(&before)];
    for (period, w) in [(2, 20), (3, 50)] {
        put_routing(addr, &routing(&[("fp32", 100 - w), ("int8", w)]));
        let after = stage(&format!("s{w}"));
        for u in &users {
            if before[u] == "int8" {
                assert_eq!(after[u], "int8", "{u} left int8 while int8 grew");
            }
        }
        counts.push(on_int8(&after));
        let r = report(addr);
        assert_eq!(r["experiment"]["period"], period);
        assert_eq!(r["current_period"]["reason"], "split changed");
        assert_eq!(
            r["previous_periods"].as_array().unwrap().len(),
            period as usize - 1
        );
        before = after;
    }
    assert!(counts[0] < counts[1] && counts[1] < counts[2], "{counts:?}");
    // A hot swap of a variant in the split starts a new period; users stay where they were.
    let swap = post(
        addr,
        "/admin/models/sentiment/variants/int8:load",
        &json!({}),
    );
    assert_eq!(swap.status, 200, "{}", String::from_utf8_lossy(&swap.body));
    let r = report(addr);
    assert_eq!(r["experiment"]["period"], 4);
    assert_eq!(r["current_period"]["reason"], "int8 reloaded");
    assert_eq!(stage("swap"), before);
    // A new experiment name reshuffles and restarts the periods.
    let mut renamed = routing(&[("fp32", 50), ("int8", 50)]);
    renamed.experiment.name = Some("sentiment-bits-2".into());
    put_routing(addr, &renamed);
    stage("renamed");
    let r = report(addr);
    assert_eq!(
        (
            r["experiment"]["id"].as_str(),
            r["experiment"]["period"].as_u64()
        ),
        (Some("sentiment-bits-2"), Some(1))
    );
    server.shutdown();
    server.wait().unwrap();
}
