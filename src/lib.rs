//! quantserve: an inference server for quantized Transformers on CPU.
//!
//! The request path runs one way: `api` → `runtime` → `model` → `kernels`.

pub mod api;
pub mod eval;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod quant;
pub mod runtime;
