//! quantserve: an inference server for quantized Transformers on CPU.
//!
//! The request path runs one way: `api` → `runtime` → `model` → `kernels`.

pub mod eval;
pub mod kernels;
pub mod model;
pub mod quant;
