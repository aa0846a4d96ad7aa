//! quantserve: an inference server for quantized Transformers on CPU.
//!
//! The request path runs one way: `api` → `runtime` → `models` → `layers` → `kernels`.
//! Dependencies between the top-level modules point one way too (ARCHITECTURE.md):
//! kernels → layers → format → schemes → generate → models → {repo, quant, eval} → runtime →
//! api, with `metrics` beside runtime and api.

pub mod api;
pub mod cli;
pub mod eval;
pub mod format;
pub mod generate;
pub mod kernels;
pub mod layers;
pub mod metrics;
pub mod models;
pub mod progress;
pub mod quant;
pub mod repo;
pub mod runtime;
pub mod schemes;
