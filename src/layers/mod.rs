//! Layers: what models are built from. A dense layer (`Linear`) over a packed weight in any
//! storage form, embedding tables, attention and the transformer encoder layer. Each storage
//! form of a dense layer is one file implementing `linear::LinearKernel` on its kernels.

pub mod attention;
pub mod embedding;
pub mod encoder;
pub mod fp32;
pub mod int8;
pub mod linear;
pub mod lowbit;
pub mod lowbit_matrix;
pub mod scratch;
pub mod tiered;
pub mod weight;

pub use linear::{Linear, LinearKernel, LinearParts};
pub use weight::{Int8Matrix, LowBitFormat, LowBitMatrix, TieredWeight, Weight};
