//! Models: BERT, Marian, tokenizers, weights.

pub mod attention;
pub mod bert;
pub mod linear;
pub mod marian_bin;
pub mod tokenizer;
pub mod weights;
pub mod marian;
pub mod shortlist;
pub mod fetch;
