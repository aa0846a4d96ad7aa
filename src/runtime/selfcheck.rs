//! The check a variant passes before it serves: its answers on a small fixed set of texts are
//! compared with the model's reference variant (fp32), and a variant that agrees too little (a
//! broken quantization, wrong scales, a mixed-up file) is never activated.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::compare::compare;
use super::config::Task;
use crate::models::Model;
use crate::models::tokenizer::Overflow;

const SENTIMENT_EN: &str = include_str!("../../data/selfcheck/sentiment-en.txt");
const BIBLE_EN: &str = include_str!("../../data/selfcheck/en.txt");
const BIBLE_PT: &str = include_str!("../../data/selfcheck/pt.txt");

/// The outcome of a self-check, kept with the variant and shown by `/v1/models/{model}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SelfCheck {
    pub reference: String,
    /// `label_agreement` (classifiers), `chrf` (translators, as a fraction) or `cosine`
    /// (embedders, mean cosine similarity).
    pub measure: &'static str,
    /// Mean over the texts, in [0, 1].
    pub agreement: f64,
    pub min_agreement: f64,
    pub samples: usize,
}

impl SelfCheck {
    pub fn passed(&self) -> bool {
        self.agreement >= self.min_agreement
    }
}

/// The texts a model is checked on: the configured file (one text per line), else built-in
/// sentences: English reviews for classifiers, Bible verses in the source language of a
/// translator named `src-tgt`.
pub fn texts(task: Task, model: &str, file: Option<&Path>) -> Result<Vec<String>> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the self-check file {}", path.display()))?,
        None => match task {
            // Embedders are checked on the review sentences too: any English text will do.
            Task::Classify | Task::Embed => SENTIMENT_EN.to_string(),
            Task::Translate if model.starts_with("pt-") => BIBLE_PT.to_string(),
            Task::Translate => BIBLE_EN.to_string(),
        },
    };
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if lines.is_empty() {
        bail!("the self-check set is empty");
    }
    Ok(lines)
}

/// Runs both engines on `texts` (on the calling thread, off the request path) and measures how
/// well the candidate agrees with the reference.
pub fn measure(
    candidate: &dyn Model,
    reference: &dyn Model,
    texts: &[String],
) -> Result<(f64, &'static str)> {
    let ids = texts
        .iter()
        .map(|t| candidate.tokenize(t, Overflow::Truncate))
        .collect::<Result<Vec<_>, _>>()?;
    let got = candidate.run(&ids, candidate.default_params())?;
    let want = reference.run(&ids, reference.default_params())?;
    let measure = match candidate.task() {
        Task::Classify => "label_agreement",
        Task::Translate => "chrf",
        Task::Embed => "cosine",
    };
    let mut total = 0.0;
    for (g, w) in got.iter().zip(&want) {
        total += compare(g, w)
            .context("the variant and its reference answer different tasks")?
            .score();
    }
    Ok((total / texts.len() as f64, measure))
}
