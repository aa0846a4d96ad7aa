//! `quantserve bench`: end-to-end speed of variants side by side, with ratios against fp32
//! from the same run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::{data_path, search_options, thread_pool};
use crate::eval::{bench, datasets};
use crate::models::Task;
use crate::models::bert::{BertClassifier, BertConfig};
use crate::models::marian::is_hf_dir;
use crate::models::tokenizer::{Overflow, TextTokenizer};
use crate::repo::{self, fetch};

#[derive(Args)]
pub struct BenchArgs {
    /// Model repository root (one folder per model, one sub-folder per variant).
    #[arg(long, env = "QUANTSERVE_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// `sentiment`, `en-pt` or `pt-en`.
    #[arg(long, default_value = "sentiment")]
    pub model: String,
    /// Variants to measure, comma-separated (folders or schemes derived at load).
    #[arg(long, value_delimiter = ',', default_value = "fp32,int8")]
    pub variants: Vec<String>,
    /// Batch sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub batch: Vec<usize>,
    /// Intra-op thread counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Classification: a BERT config.json to benchmark with random weights instead of the
    /// model's (e.g. config/bert-base.json; the tokenizer is the model's).
    #[arg(long)]
    pub random_init: Option<PathBuf>,
    /// Classification: inputs of exactly this many tokens (default: real sentence lengths).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Minimum measuring time per configuration, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Translation: decode over the full vocabulary.
    #[arg(long)]
    pub no_shortlist: bool,
    /// Translation: beam size (default: the model's config).
    #[arg(long)]
    pub beam_size: Option<usize>,
    /// Translation: sources of exactly this many tokens (EOS included), made from the
    /// Bible sample's pieces run together.
    #[arg(long)]
    pub src_len: Option<usize>,
    /// Translation: generate exactly this many tokens (EOS banned before, the output cut
    /// after), to compare engines at a fixed length (Opus-MT models).
    #[arg(long)]
    pub force_len: Option<usize>,
    /// Write the results as a JSON document (`bench::BenchReport`) to this file, or with no
    /// file to standard output (the table then goes to standard error). Scripts read this, never
    /// the table.
    #[arg(long, num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,
    /// Write an SVG chart of speed (smallest batch) vs quality per variant, the quality read
    /// from `--eval-dir`.
    #[arg(long, requires = "eval_dir")]
    pub svg: Option<PathBuf>,
    /// Folder of `quantserve eval --json` reports named `<model>-<variant>.json`.
    #[arg(long)]
    pub eval_dir: Option<PathBuf>,
}

/// The languages of the Bible sample a translator is measured on (`None` for a classifier):
/// its own pair, or for Opus-MT folders the sample's English side (their pair may have no
/// column in it).
pub(super) fn bible_languages(models: &Path, model: &str) -> Result<Option<(String, String)>> {
    let dir = fetch::ensure_model(models, model)?;
    if repo::detect_task(&dir) == Task::Classify {
        return Ok(None);
    }
    if is_hf_dir(&dir) {
        return Ok(Some(("en".into(), "pt".into())));
    }
    repo::language_pair(&dir, model)
        .map(Some)
        .with_context(|| format!("cannot tell the language pair of `{model}`"))
}

pub fn run(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        models,
        model,
        variants,
        batch,
        threads,
        random_init,
        seq_len,
        seconds,
        no_shortlist,
        beam_size,
        src_len,
        force_len,
        json,
        svg,
        eval_dir,
    } = args;
    let min_time = std::time::Duration::from_secs_f64(seconds);
    let mut rows = Vec::new();
    let translation = bible_languages(&models, &model)?;
    for v in &variants {
        super::require_model(&models, &model, v)?;
    }
    let progress = crate::progress::bar(
        (variants.len() * threads.len() * batch.len()) as u64,
        "bench: configurations",
    );
    for v in &variants {
        for &t in &threads {
            let pool = thread_pool(Some(t))?;
            for &b in &batch {
                progress.set_message(format!("bench: {v}, {t} threads, batch {b}"));
                let row = if let Some((from, to)) = &translation {
                    let tr = repo::load_translator(&models, &model, v)?;
                    let data = datasets::read_bible(&data_path("bible/sample500.tsv"), from, to)?;
                    let mut sources: Vec<Vec<u32>> = data
                        .sources
                        .iter()
                        .map(|s| tr.tokenize(s, Overflow::Truncate))
                        .collect::<Result<_>>()?;
                    if let Some(len) = src_len {
                        sources = bench::fixed_length_sources(&sources, len, 512.max(b))?;
                    }
                    let mut opts = search_options(&tr.defaults, beam_size, no_shortlist);
                    if let Some(n) = force_len {
                        opts.min_length = n;
                        opts.max_length = Some(n + 1);
                        opts.max_length_factor = f32::INFINITY;
                    }
                    let (sent, tok) = pool.install(|| {
                        bench::bench_translator(
                            &tr,
                            &sources,
                            b,
                            &opts,
                            min_time,
                            force_len.is_none(),
                        )
                    })?;
                    bench::BenchRow {
                        variant: v.clone(),
                        threads: t,
                        batch: b,
                        items_per_s: sent,
                        tokens_per_s: Some(tok),
                        weight_bytes: tr.weight_bytes(),
                    }
                } else {
                    let clf = match &random_init {
                        Some(cfg) => {
                            let tok = fetch::ensure_model(&models, &model)?.join("tokenizer.json");
                            BertClassifier::random_init(
                                BertConfig::from_file(cfg)?,
                                TextTokenizer::from_file(&tok)?,
                                42,
                                &crate::schemes::parse(v)?,
                            )?
                        }
                        None => repo::load_classifier(&models, &model, v)?,
                    };
                    let data = datasets::read_labelled(&data_path("sentiment/test.tsv"))?;
                    let texts: Vec<String> = data.into_iter().map(|d| d.text).collect();
                    let inputs = bench::classifier_inputs(&clf, &texts, seq_len, 1024.max(b))?;
                    let sps =
                        pool.install(|| bench::bench_classifier(&clf, &inputs, b, min_time))?;
                    bench::BenchRow {
                        variant: v.clone(),
                        threads: t,
                        batch: b,
                        items_per_s: sps,
                        tokens_per_s: None,
                        weight_bytes: clf.weight_bytes(),
                    }
                };
                progress.suspend(|| {
                    eprintln!(
                        "bench: {} threads {} batch {}: {:.1}/s",
                        row.variant, t, b, row.items_per_s
                    )
                });
                progress.inc(1);
                rows.push(row);
            }
        }
    }
    progress.finish_and_clear();
    let unit = if translation.is_some() {
        "sentences"
    } else {
        "sequences"
    };
    let to_stdout = json.as_deref() == Some(Path::new("-"));
    let table = bench::table(&rows, unit);
    if to_stdout {
        eprint!("{table}");
    } else {
        super::print(table.trim_end())?;
    }
    if let Some(path) = json {
        let report = bench::BenchReport::new(&model, unit, rows.clone());
        let text = serde_json::to_string_pretty(&report)?;
        if to_stdout {
            super::print(&text)?;
        } else {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if let (Some(path), Some(dir)) = (svg, eval_dir) {
        std::fs::write(&path, bench::quality_chart(&rows, &model, &dir)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
