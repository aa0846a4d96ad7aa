//! Models: BERT, Marian, tokenizers, weights.
