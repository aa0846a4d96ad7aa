//! The admin API locked down: off on a non-loopback address without `admin_key`, on a listener
//! of its own when configured, disagreements only with the admin key, a cap on variants per
//! model, unknown names answered 404 without taking a slot, failed entries removable and
//! answered as a permanent error, and a routing change that keeps the configured shadow.

mod common;

use std::path::PathBuf;

use common::http_client::{Resp, get, request};
use common::server::{self, expect, start, test_repository};
use quantserve::runtime::config::{Config, ModelConfig};
use quantserve::runtime::routing::{Routing, Shadow};
use serde_json::{Value, json};

fn admin(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    request(addr, method, path, &headers, body.to_string().as_bytes())
}

fn tiny(root: PathBuf) -> Config {
    let mut cfg = server::config(root, &[("tiny-bert", ModelConfig::fp32())]);
    cfg.defaults.classify_model = "tiny-bert".into();
    cfg
}

#[test]
fn admin_is_off_on_a_public_address_without_admin_key() {
    let mut cfg = tiny(test_repository());
    cfg.server.http_addr = "0.0.0.0:0".into();
    let server = start(cfg);
    let addr = server.addr();
    let r = admin(
        addr,
        "GET",
        "/admin/models/tiny-bert/routing",
        None,
        &json!({}),
    );
    expect(&r, 403, "admin_disabled");
    let r = admin(addr, "POST", "/admin/reload", None, &json!({}));
    expect(&r, 403, "admin_disabled");
    // Inference is unaffected.
    assert_eq!(get(addr, "/v1/models").status, 200);
    server.shutdown();
    server.wait().unwrap();

    // With an admin key the same address serves /admin, to the key only.
    let mut cfg = tiny(test_repository());
    cfg.server.http_addr = "0.0.0.0:0".into();
    cfg.server.admin_key = Some("adm".into());
    let server = start(cfg);
    let addr = server.addr();
    let path = "/admin/models/tiny-bert/routing";
    expect(
        &admin(addr, "GET", path, None, &json!({})),
        401,
        "unauthorized",
    );
    assert_eq!(
        admin(addr, "GET", path, Some("adm"), &json!({})).status,
        200
    );
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn admin_on_its_own_listener_and_disagreements_need_the_admin_key() {
    let mut cfg = tiny(test_repository());
    cfg.server.admin_addr = Some("127.0.0.1:0".into());
    let server = start(cfg);
    let (addr, admin_addr) = (server.addr(), server.admin_addr().unwrap());
    let path = "/admin/models/tiny-bert/routing";
    expect(
        &admin(addr, "GET", path, None, &json!({})),
        404,
        "not_found",
    );
    assert_eq!(admin(admin_addr, "GET", path, None, &json!({})).status, 200);
    // Open admin reads (loopback, no key) still do not show other users' inputs.
    let r = admin(
        admin_addr,
        "GET",
        "/admin/models/tiny-bert/disagreements",
        None,
        &json!({}),
    );
    expect(&r, 403, "admin_key_required");
    server.shutdown();
    server.wait().unwrap();
}

/// A repository with tiny-bert and a variant folder that cannot load.
fn repository_with_a_broken_variant() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-lockdown-models");
    let model = root.join("tiny-bert");
    std::fs::create_dir_all(model.join("broken")).unwrap();
    std::fs::write(model.join("broken").join("config.json"), "not json").unwrap();
    let _ = std::fs::remove_file(model.join("fp32"));
    std::os::unix::fs::symlink(
        test_repository().join("tiny-bert").join("fp32"),
        model.join("fp32"),
    )
    .unwrap();
    root
}

#[test]
fn variant_slots_are_bounded_and_failures_are_permanent_and_removable() {
    let mut cfg = tiny(repository_with_a_broken_variant());
    cfg.server.max_variants_per_model = 2;
    let server = start(cfg);
    let addr = server.addr();
    let variants = |addr| -> Vec<String> {
        get(addr, "/v1/models/tiny-bert").json()["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    let action = |v: &str, a: &str| {
        admin(
            addr,
            "POST",
            &format!("/admin/models/tiny-bert/variants/{v}:{a}"),
            None,
            &json!({}),
        )
    };
    // Junk names: 404, and nothing listed.
    for i in 0..5 {
        expect(&action(&format!("junk{i}"), "load"), 404, "unknown_variant");
    }
    assert_eq!(variants(addr), ["fp32"]);

    // A folder that fails to load is listed as failed and answered as a permanent error.
    expect(&action("broken", "load"), 422, "load_failed");
    assert_eq!(variants(addr), ["broken", "fp32"]);
    let r = request(
        addr,
        "POST",
        "/classify",
        &[],
        json!({"inputs": "hi", "variant": "broken"})
            .to_string()
            .as_bytes(),
    );
    expect(&r, 409, "variant_failed");

    // Two slots taken: a third variant is refused before any loading.
    let r = action("int8", "load");
    expect(&r, 409, "conflict");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("max_variants_per_model")
    );

    // The failed entry is removable, which frees its slot.
    assert_eq!(action("broken", "unload").status, 200);
    assert_eq!(variants(addr), ["fp32"]);
    let r = action("int8", "load");
    assert_ne!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn a_split_change_keeps_the_configured_shadow() {
    let model = ModelConfig {
        routing: Some(Routing {
            shadow: Some(Shadow {
                reference: "fp32".into(),
                sample_rate: 0.5,
            }),
            ..Routing::single("fp32")
        }),
        ..ModelConfig::fp32()
    };
    let cfg = server::config(test_repository(), &[("tiny-bert", model)]);
    let server = start(cfg);
    let addr = server.addr();
    let path = "/admin/models/tiny-bert/routing";
    let r = admin(addr, "PUT", path, None, &json!({"split": {"fp32": 100}}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["shadow"]["reference"], "fp32", "{}", r.json());
    // Removing it is explicit.
    let r = admin(
        addr,
        "PUT",
        path,
        None,
        &json!({"split": {"fp32": 100}, "shadow": null}),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["shadow"].is_null(), "{}", r.json());
    server.shutdown();
    server.wait().unwrap();
}
