//! `quantserve eval`: accuracy of a classifier on the sentiment split, BLEU/chrF of a translator on
//! the Bible sample. Progress goes to stderr; the result is returned for printing or JSON.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::bleu::corpus_bleu;
use super::chrf::corpus_chrf;
use super::datasets::{LabelledText, Parallel};
use crate::models::bert::BertClassifier;
use crate::models::marian::{MarianTranslator, SearchOptions};
use crate::models::tokenizer::Overflow;

#[derive(Debug, Serialize)]
pub struct AccuracyReport {
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct TranslationReport {
    pub sentences: usize,
    pub bleu: f64,
    pub chrf: f64,
    pub seconds: f64,
    pub hypotheses: Vec<String>,
}

/// Classifies `data` in batches of `batch` and compares with the gold labels.
pub fn accuracy(
    model: &BertClassifier,
    data: &[LabelledText],
    batch: usize,
) -> Result<AccuracyReport> {
    let start = Instant::now();
    let mut correct = 0;
    let progress = crate::progress::bar(data.len() as u64, "eval: texts classified");
    for chunk in data.chunks(batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|d| d.text.as_str()).collect();
        for (r, d) in model
            .classify(&texts, Overflow::Truncate)?
            .iter()
            .zip(chunk)
        {
            correct += usize::from(model.labels[r.label] == d.label);
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    let total = data.len();
    Ok(AccuracyReport {
        correct,
        total,
        accuracy: if total == 0 {
            0.0
        } else {
            100.0 * correct as f64 / total as f64
        },
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Translates `data.sources` in batches of `batch` and scores against `data.references`.
pub fn translation(
    model: &MarianTranslator,
    data: &Parallel,
    opts: &SearchOptions,
    batch: usize,
) -> Result<TranslationReport> {
    let start = Instant::now();
    let mut hypotheses = Vec::with_capacity(data.sources.len());
    let progress = crate::progress::bar(data.sources.len() as u64, "eval: sentences translated");
    for chunk in data.sources.chunks(batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        hypotheses.extend(model.translate(&texts, opts, Overflow::Truncate)?);
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    let refs = [data.references.as_slice()];
    Ok(TranslationReport {
        sentences: hypotheses.len(),
        bleu: corpus_bleu(&hypotheses, &refs).score,
        chrf: corpus_chrf(&hypotheses, &refs),
        seconds: start.elapsed().as_secs_f64(),
        hypotheses,
    })
}
