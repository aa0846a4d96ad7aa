//! `quantserve eval`: accuracy on the sentiment test split, or BLEU/chrF on the Bible sample.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::bench::bible_languages;
use super::{Common, data_path, search_options, thread_pool};
use crate::eval::{datasets, run as eval_run};
use crate::repo;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub common: Common,
    /// `sentiment`, `en-pt` or `pt-en`.
    #[arg(long, default_value = "sentiment")]
    pub model: String,
    /// Sentiment split to score (`test` or `dev`).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Sentences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Translation: beam size (default: the model's config).
    #[arg(long)]
    pub beam_size: Option<usize>,
    /// Translation: decode over the full vocabulary instead of the lexical shortlist.
    #[arg(long)]
    pub no_shortlist: bool,
    /// Also write the full report (with translations) as JSON to this file, or with no file to
    /// standard output (the summary line then goes to standard error).
    #[arg(long, num_args = 0..=1, default_missing_value = "-", value_name = "FILE")]
    pub json: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let EvalArgs {
        common,
        model,
        split,
        batch,
        beam_size,
        no_shortlist,
        json,
    } = args;
    let pool = thread_pool(common.threads)?;
    super::require_model(&common.models, &model, &common.variant)?;
    let to_stdout = json.as_deref() == Some(std::path::Path::new("-"));
    // With the report on stdout, the summary line goes to stderr.
    let summary = |line: String| {
        if to_stdout {
            eprintln!("{line}");
            Ok(())
        } else {
            super::print(&line)
        }
    };
    let report = if let Some((from, to)) = bible_languages(&common.models, &model)? {
        let tr = repo::load_translator(&common.models, &model, &common.variant)?;
        let data = datasets::read_bible(&data_path("bible/sample500.tsv"), &from, &to)?;
        let opts = search_options(&tr.defaults, beam_size, no_shortlist);
        let r = pool.install(|| eval_run::translation(&tr, &data, &opts, batch))?;
        summary(format!(
            "{model} {} beam {} shortlist {}: BLEU {:.2} chrF {:.2} on {} verse pairs ({:.1} s)",
            common.variant, opts.beam_size, opts.shortlist, r.bleu, r.chrf, r.sentences, r.seconds
        ))?;
        serde_json::to_value(r)?
    } else {
        let clf = repo::load_classifier(&common.models, &model, &common.variant)?;
        let data = datasets::read_labelled(&data_path(&format!("sentiment/{split}.tsv")))?;
        let r = pool.install(|| eval_run::accuracy(&clf, &data, batch))?;
        summary(format!(
            "{model} {} {split}: accuracy {:.2}% ({}/{}) ({:.1} s)",
            common.variant, r.accuracy, r.correct, r.total, r.seconds
        ))?;
        serde_json::to_value(r)?
    };
    if to_stdout {
        super::print(&serde_json::to_string(&report)?)?;
    } else if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
