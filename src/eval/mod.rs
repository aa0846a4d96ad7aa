//! Offline evaluation: accuracy, BLEU and chrF.

pub mod bleu;
pub mod chrf;
