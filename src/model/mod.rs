//! Models: BERT, Marian, tokenizers, weights.

pub mod attention;
pub mod bert;
pub mod embedding;
pub mod encoder;
pub mod fetch;
pub mod linear;
pub mod marian;
pub mod marian_bin;
pub mod observe;
pub mod shortlist;
pub mod spm;
pub mod tokenizer;
pub mod variant;
pub mod weights;
