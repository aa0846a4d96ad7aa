//! Quantization schemes, one file per scheme, the variant file format, and the conversion of a
//! model folder into a variant folder.

pub mod bcq;
pub mod convert;
pub mod format;
pub mod int8;
pub mod lowbit;
pub mod prune;
pub mod recipe;
pub mod ternary;
pub mod tiers;
pub mod uniform;
