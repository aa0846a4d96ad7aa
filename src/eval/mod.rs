//! Offline evaluation: accuracy, BLEU and chrF on the committed evaluation sets.

pub mod bench;
pub mod bleu;
pub mod chart;
pub mod chrf;
pub mod datasets;
pub mod run;
