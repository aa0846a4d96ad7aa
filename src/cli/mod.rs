//! The work behind `quantserve`'s subcommands (`main.rs` only parses the arguments): classify
//! and translate texts, quantize a model folder, measure speed and quality.

pub mod ab_report;
pub mod bench;
pub mod eval;
pub mod vmap;

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::models::marian::SearchOptions;
use crate::models::tokenizer::Overflow;
use crate::quant::convert::{self, PruneOptions, QuantizeOptions};
use crate::quant::recipe::Recipe;
use crate::repo;

/// Where the models are and how to run them: shared by the offline subcommands.
#[derive(Args, Clone)]
pub struct Common {
    /// Model repository root (one folder per model, one sub-folder per variant).
    #[arg(long, env = "QUANTSERVE_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Intra-op threads (default: all cores).
    #[arg(long, env = "QUANTSERVE_THREADS")]
    pub threads: Option<usize>,
    /// Variant to run.
    #[arg(long, default_value = "fp32")]
    pub variant: String,
}

#[derive(Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "sentiment")]
    pub model: String,
    /// Truncate inputs longer than the model's limit instead of failing.
    #[arg(long)]
    pub truncate: bool,
    pub texts: Vec<String>,
}

#[derive(Args)]
pub struct TranslateArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "en")]
    pub from: String,
    #[arg(long, default_value = "pt")]
    pub to: String,
    /// Beam size (default: the model's config).
    #[arg(long)]
    pub beam_size: Option<usize>,
    /// Decode over the full vocabulary instead of the lexical shortlist.
    #[arg(long)]
    pub no_shortlist: bool,
    #[arg(long)]
    pub truncate: bool,
    pub texts: Vec<String>,
}

#[derive(Args)]
pub struct QuantizeArgs {
    /// The model's fp32 folder (HF BERT or Bergamot Marian).
    #[arg(long)]
    pub model: PathBuf,
    /// `int8`, `int4`, `int6`, `int4-g64`, `int4-g128`, `ternary`, `ternary-row`, `bcq1`..`bcq4`
    /// (see `schemes`), or for Marian models also `int8-shipped` (the shipped codes).
    #[arg(long, default_value = "int8")]
    pub scheme: String,
    /// Mixed precision: a TOML recipe with a scheme per block type (see `quant::recipe`);
    /// overrides `--scheme` (the variant's scheme is then `mixed`).
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Token frequencies from this text file (one sentence per line; repeat the flag for
    /// several) give the embedding rows the schemes of the recipe's `embedding_tiers`
    /// (frequent tokens more bits).
    #[arg(long)]
    pub freq_corpus: Vec<PathBuf>,
    /// FullyQT structured FFN pruning: drop FFN hidden units whose largest activation over
    /// the calibration sentences is below λ · std of those maxima (e.g. 0.5; 0 keeps every
    /// unit). Composes with every scheme and recipe; with `--scheme fp32` it writes a pruned
    /// fp32 variant.
    #[arg(long)]
    pub prune_lambda: Option<f32>,
    /// Calibration text for `--prune-lambda`, one sentence per line (translation: source
    /// sentences).
    #[arg(long, requires = "prune_lambda")]
    pub calibration: Option<PathBuf>,
    /// At most this many calibration sentences are run.
    #[arg(long, default_value_t = 500)]
    pub calibration_sentences: usize,
    /// The variant folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// A JSON object describing how the weights were trained (written by tools/qat), stored
    /// unchanged in the variant header as `quantserve.training` and shown by `/v1/models`.
    #[arg(long)]
    pub training_metadata: Option<PathBuf>,
}

/// The texts given as arguments, or stdin's lines when there are none.
fn inputs(texts: Vec<String>) -> Result<Vec<String>> {
    if !texts.is_empty() {
        return Ok(texts);
    }
    let mut lines = Vec::new();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        lines.push(line.with_context(|| format!("stdin line {} is not valid UTF-8", i + 1))?);
    }
    Ok(lines)
}

pub(crate) fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .context("starting the thread pool")
}

/// A file of the committed evaluation data (`data/` next to the binary's working directory, or
/// `QUANTSERVE_DATA`).
fn data_path(rel: &str) -> PathBuf {
    let root =
        std::env::var_os("QUANTSERVE_DATA").map_or_else(|| PathBuf::from("data"), PathBuf::from);
    root.join(rel)
}

fn overflow(truncate: bool) -> Overflow {
    if truncate {
        Overflow::Truncate
    } else {
        Overflow::Error
    }
}

/// The decoding settings of the CLI flags over the model's defaults.
fn search_options(
    defaults: &SearchOptions,
    beam_size: Option<usize>,
    no_shortlist: bool,
) -> SearchOptions {
    SearchOptions {
        beam_size: beam_size.unwrap_or(defaults.beam_size),
        shortlist: !no_shortlist,
        ..defaults.clone()
    }
}

/// `quantserve classify`: one line per text, `label<TAB>score<TAB>text`.
pub fn classify(args: ClassifyArgs) -> Result<()> {
    let texts = inputs(args.texts)?;
    let pool = thread_pool(args.common.threads)?;
    let clf = repo::load_classifier(&args.common.models, &args.model, &args.common.variant)?;
    if texts.iter().any(|t| t.trim().is_empty()) {
        bail!("empty input text");
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let results = pool.install(|| clf.classify(&refs, overflow(args.truncate)))?;
    for (text, r) in texts.iter().zip(results) {
        println!(
            "{}\t{:.4}\t{}",
            clf.labels[r.label], r.scores[r.label], text
        );
    }
    Ok(())
}

/// `quantserve translate`: one translation per line.
pub fn translate(args: TranslateArgs) -> Result<()> {
    let texts = inputs(args.texts)?;
    let pool = thread_pool(args.common.threads)?;
    let model = format!("{}-{}", args.from, args.to);
    let tr = repo::load_translator(&args.common.models, &model, &args.common.variant)?;
    let opts = search_options(&tr.defaults, args.beam_size, args.no_shortlist);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for out in pool.install(|| tr.translate(&refs, &opts, overflow(args.truncate)))? {
        println!("{out}");
    }
    Ok(())
}

/// `quantserve quantize`: writes the variant folder and reports what it did.
pub fn quantize(args: QuantizeArgs) -> Result<()> {
    let prune = match (args.prune_lambda, args.calibration) {
        (Some(lambda), Some(calibration)) => Some(PruneOptions {
            lambda,
            calibration,
            max_sentences: args.calibration_sentences,
        }),
        (Some(_), None) => bail!("--prune-lambda needs --calibration FILE"),
        _ => None,
    };
    let options = QuantizeOptions {
        recipe: args.recipe.map(|p| Recipe::from_file(&p)).transpose()?,
        freq_corpus: args.freq_corpus,
        prune,
        training: args
            .training_metadata
            .as_deref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading --training-metadata {}", p.display()))
            })
            .transpose()?,
    };
    let r = convert::quantize_dir_with(&args.model, &args.scheme, &options, &args.out)?;
    for note in &r.notes {
        println!("{note}");
    }
    println!(
        "{}: scheme {} ({} bits, {}), {} tensors quantized, {:.2} bits/weight on average, {:.1} MB",
        args.out.display(),
        r.info.scheme,
        r.info.bits,
        r.info.granularity,
        r.quantized_tensors,
        r.avg_bits,
        r.bytes as f64 / 1e6
    );
    Ok(())
}
