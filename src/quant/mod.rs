//! Quantization schemes, one file per scheme: how a dense layer's fp32 weights become a packed
//! low-bit layer, and the variant metadata that names the scheme.

pub mod int8;
