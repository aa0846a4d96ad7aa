//! Shared test helpers: the model repository (fetched on first use), golden files, and the
//! server harness (`server`, `http_client`, `tiny_bert`).
#![allow(dead_code)]

pub mod crafted;
pub mod http_client;
pub mod openapi_schema;
pub mod server;
pub mod tiny_bert;

use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The model repository the tests use: `models/` in the checkout, fetching what is missing.
pub fn model_dir(model: &str) -> PathBuf {
    let root = repo_root().join("models");
    quantserve::repo::fetch::ensure_model(&root, model)
        .unwrap_or_else(|e| panic!("model {model} is unavailable and could not be fetched: {e:#}"))
}

pub fn golden(name: &str) -> serde_json::Value {
    let path = repo_root().join("tests/golden").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn path(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}
