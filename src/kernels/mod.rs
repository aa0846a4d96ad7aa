//! Compute kernels (GEMM/GEMV), one file per ISA and scheme.

pub mod int8;
