//! The `quantserve` command line.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use quantserve::api::serve::{ServeArgs, serve_main};
use quantserve::eval::{bench, datasets, run as eval_run};
use quantserve::model::bert::{BertClassifier, BertConfig};
use quantserve::model::marian::SearchOptions;
use quantserve::model::tokenizer::Overflow;
use quantserve::model::tokenizer::TextTokenizer;
use quantserve::model::{fetch, variant};

#[derive(Parser)]
#[command(
    name = "quantserve",
    version,
    about = "Inference server for quantized Transformers on CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Model repository root (one folder per model, one sub-folder per variant).
    #[arg(long, env = "QUANTSERVE_MODELS", default_value = "models")]
    models: PathBuf,
    /// Intra-op threads (default: all cores).
    #[arg(long, env = "QUANTSERVE_THREADS")]
    threads: Option<usize>,
    /// Variant to run.
    #[arg(long, default_value = "fp32")]
    variant: String,
}

#[derive(Subcommand)]
enum Command {
    /// Download and verify the default models that are missing.
    Fetch {
        #[arg(long, env = "QUANTSERVE_MODELS", default_value = "models")]
        models: PathBuf,
    },
    /// Classify texts (arguments, or one per line on stdin).
    Classify {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "sentiment")]
        model: String,
        /// Truncate inputs longer than the model's limit instead of failing.
        #[arg(long)]
        truncate: bool,
        texts: Vec<String>,
    },
    /// Serve the models over HTTP/JSON and gRPC until SIGTERM or SIGINT.
    Serve {
        /// Configuration file (TOML); built-in defaults when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, HOST:PORT (overrides the file and QUANTSERVE_HTTP_ADDR).
        #[arg(long)]
        http_addr: Option<String>,
        /// gRPC listen address, HOST:PORT (overrides the file and QUANTSERVE_GRPC_ADDR); gRPC
        /// shares the HTTP port when unset.
        #[arg(long)]
        grpc_addr: Option<String>,
        /// Model repository (overrides the file and QUANTSERVE_MODELS).
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// Translate texts (arguments, or one per line on stdin).
    Translate {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "en")]
        from: String,
        #[arg(long, default_value = "pt")]
        to: String,
        /// Beam size (default: the model's config).
        #[arg(long)]
        beam_size: Option<usize>,
        /// Decode over the full vocabulary instead of the lexical shortlist.
        #[arg(long)]
        no_shortlist: bool,
        #[arg(long)]
        truncate: bool,
        texts: Vec<String>,
    },
    /// Write a quantized variant of a model folder (e.g. models/sentiment/fp32 → models/sentiment/int8).
    Quantize {
        /// The model's fp32 folder (HF BERT or Bergamot Marian).
        #[arg(long)]
        model: PathBuf,
        /// `int8`, `int4`, `int6`, `int4-g64`, `int4-g128`, `ternary`, `ternary-row`, `bcq1`..`bcq4`
        /// (see `model::variant`), or for Marian models also `int8-shipped` (the shipped codes).
        #[arg(long, default_value = "int8")]
        scheme: String,
        /// Mixed precision: a TOML recipe with a scheme per block type (see `quant::recipe`);
        /// overrides `--scheme` (the variant's scheme is then `mixed`).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Token frequencies from this text file (one sentence per line; repeat the flag for
        /// several) give the embedding rows the schemes of the recipe's `embedding_tiers`
        /// (frequent tokens more bits).
        #[arg(long)]
        freq_corpus: Vec<PathBuf>,
        /// FullyQT structured FFN pruning: drop FFN hidden units whose largest activation over
        /// the calibration sentences is below λ · std of those maxima (e.g. 0.5; 0 keeps every
        /// unit). Composes with every scheme and recipe; with `--scheme fp32` it writes a pruned
        /// fp32 variant.
        #[arg(long)]
        prune_lambda: Option<f32>,
        /// Calibration text for `--prune-lambda`, one sentence per line (translation: source
        /// sentences).
        #[arg(long, requires = "prune_lambda")]
        calibration: Option<PathBuf>,
        /// At most this many calibration sentences are run.
        #[arg(long, default_value_t = 500)]
        calibration_sentences: usize,
        /// The variant folder to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure end-to-end speed of variants side by side (ratios against fp32 from the same run).
    Bench {
        #[arg(long, env = "QUANTSERVE_MODELS", default_value = "models")]
        models: PathBuf,
        /// `sentiment`, `en-pt` or `pt-en`.
        #[arg(long, default_value = "sentiment")]
        model: String,
        #[arg(long, value_delimiter = ',', default_value = "fp32,int8")]
        variants: Vec<String>,
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        batch: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        threads: Vec<usize>,
        /// Classification: a BERT config.json to benchmark with random weights instead of the
        /// model's (e.g. config/bert-base.json; the tokenizer is the model's).
        #[arg(long)]
        random_init: Option<PathBuf>,
        /// Classification: inputs of exactly this many tokens (default: real sentence lengths).
        #[arg(long)]
        seq_len: Option<usize>,
        /// Minimum measuring time per configuration, in seconds.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Translation: decode over the full vocabulary.
        #[arg(long)]
        no_shortlist: bool,
        #[arg(long)]
        beam_size: Option<usize>,
        /// Translation: sources of exactly this many tokens (EOS included), made from the
        /// Bible sample's pieces run together.
        #[arg(long)]
        src_len: Option<usize>,
        /// Translation: generate exactly this many tokens (EOS banned before, the output cut
        /// after), to compare engines at a fixed length (Opus-MT models).
        #[arg(long)]
        force_len: Option<usize>,
        /// Also write the rows as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an SVG chart of speed (smallest batch) vs quality per variant, the quality read
        /// from `--eval-dir`.
        #[arg(long, requires = "eval_dir")]
        svg: Option<PathBuf>,
        /// Folder of `quantserve eval --json` reports named `<model>-<variant>.json`.
        #[arg(long)]
        eval_dir: Option<PathBuf>,
    },
    /// Measure quality: accuracy on the sentiment test split, or BLEU/chrF on the Bible sample.
    Eval {
        #[command(flatten)]
        common: Common,
        /// `sentiment`, `en-pt` or `pt-en`.
        #[arg(long, default_value = "sentiment")]
        model: String,
        /// Sentiment split to score (`test` or `dev`).
        #[arg(long, default_value = "test")]
        split: String,
        /// Sentences per batch.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long)]
        beam_size: Option<usize>,
        #[arg(long)]
        no_shortlist: bool,
        /// Also write the full report (with translations) as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
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

fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
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

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fetch { models } => fetch::fetch_all(&models),
        Command::Serve {
            config,
            http_addr,
            grpc_addr,
            models,
        } => serve_main(ServeArgs {
            config,
            http_addr,
            grpc_addr,
            models,
        }),
        Command::Classify {
            common,
            model,
            truncate,
            texts,
        } => {
            let texts = inputs(texts)?;
            let pool = thread_pool(common.threads)?;
            let clf = variant::load_classifier(&common.models, &model, &common.variant)?;
            let overflow = if truncate {
                Overflow::Truncate
            } else {
                Overflow::Error
            };
            for text in &texts {
                if text.trim().is_empty() {
                    bail!("empty input text");
                }
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let results = pool.install(|| clf.classify(&refs, overflow))?;
            for (text, r) in texts.iter().zip(results) {
                println!(
                    "{}\t{:.4}\t{}",
                    clf.labels[r.label], r.scores[r.label], text
                );
            }
            Ok(())
        }
        Command::Translate {
            common,
            from,
            to,
            beam_size,
            no_shortlist,
            truncate,
            texts,
        } => {
            let texts = inputs(texts)?;
            let pool = thread_pool(common.threads)?;
            let tr =
                variant::load_translator(&common.models, &format!("{from}-{to}"), &common.variant)?;
            let opts = SearchOptions {
                beam_size: beam_size.unwrap_or(tr.defaults.beam_size),
                shortlist: !no_shortlist,
                ..tr.defaults.clone()
            };
            let overflow = if truncate {
                Overflow::Truncate
            } else {
                Overflow::Error
            };
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            for out in pool.install(|| tr.translate(&refs, &opts, overflow))? {
                println!("{out}");
            }
            Ok(())
        }
        Command::Quantize {
            model,
            scheme,
            recipe,
            freq_corpus,
            prune_lambda,
            calibration,
            calibration_sentences,
            out,
        } => {
            use quantserve::quant::{convert, recipe::Recipe};
            let prune = match (prune_lambda, calibration) {
                (Some(lambda), Some(calibration)) => Some(convert::PruneOptions {
                    lambda,
                    calibration,
                    max_sentences: calibration_sentences,
                }),
                (Some(_), None) => anyhow::bail!("--prune-lambda needs --calibration FILE"),
                _ => None,
            };
            let options = convert::QuantizeOptions {
                recipe: recipe.map(|p| Recipe::from_file(&p)).transpose()?,
                freq_corpus,
                prune,
            };
            let r = convert::quantize_dir_with(&model, &scheme, &options, &out)?;
            for note in &r.notes {
                println!("{note}");
            }
            println!(
                "{}: scheme {} ({} bits, {}), {} tensors quantized, {:.2} bits/weight on average, {:.1} MB",
                out.display(),
                r.info.scheme,
                r.info.bits,
                r.info.granularity,
                r.quantized_tensors,
                r.avg_bits,
                r.bytes as f64 / 1e6
            );
            Ok(())
        }
        Command::Bench {
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
        } => {
            let min_time = std::time::Duration::from_secs_f64(seconds);
            let mut rows = Vec::new();
            // Opus-MT folders are measured on the English side of the Bible sample.
            let opus_mt = quantserve::model::marian::is_hf_dir(&fetch::fp32_dir(&models, &model));
            let translation = if opus_mt {
                Some(("en", "pt"))
            } else {
                model.split_once('-')
            };
            for v in &variants {
                for &t in &threads {
                    let pool = thread_pool(Some(t))?;
                    for &b in &batch {
                        let row = if let Some((from, to)) = translation {
                            let tr = variant::load_translator(&models, &model, v)?;
                            let data =
                                datasets::read_bible(&data_path("bible/sample500.tsv"), from, to)?;
                            let mut sources: Vec<Vec<u32>> = data
                                .sources
                                .iter()
                                .map(|s| tr.tokenize(s, Overflow::Truncate))
                                .collect::<Result<_>>()?;
                            if let Some(len) = src_len {
                                sources = bench::fixed_length_sources(&sources, len, 512.max(b))?;
                            }
                            let mut opts = SearchOptions {
                                beam_size: beam_size.unwrap_or(tr.defaults.beam_size),
                                shortlist: !no_shortlist,
                                ..tr.defaults.clone()
                            };
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
                                    let tok = fetch::ensure_model(&models, &model)?
                                        .join("tokenizer.json");
                                    let mut m = BertClassifier::random_init(
                                        BertConfig::from_file(cfg)?,
                                        TextTokenizer::from_file(&tok)?,
                                        42,
                                    )?;
                                    variant::Scheme::parse(v)?.apply_to_classifier(&mut m)?;
                                    m
                                }
                                None => variant::load_classifier(&models, &model, v)?,
                            };
                            let data = datasets::read_labelled(&data_path("sentiment/test.tsv"))?;
                            let texts: Vec<String> = data.into_iter().map(|d| d.text).collect();
                            let inputs =
                                bench::classifier_inputs(&clf, &texts, seq_len, 1024.max(b))?;
                            let sps = pool
                                .install(|| bench::bench_classifier(&clf, &inputs, b, min_time))?;
                            bench::BenchRow {
                                variant: v.clone(),
                                threads: t,
                                batch: b,
                                items_per_s: sps,
                                tokens_per_s: None,
                                weight_bytes: clf.weight_bytes(),
                            }
                        };
                        eprintln!(
                            "bench: {} threads {} batch {}: {:.1}/s",
                            row.variant, t, b, row.items_per_s
                        );
                        rows.push(row);
                    }
                }
            }
            bench::print_table(
                &rows,
                if translation.is_some() {
                    "sentences"
                } else {
                    "sequences"
                },
            );
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&rows)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let (Some(path), Some(dir)) = (svg, eval_dir) {
                std::fs::write(&path, bench::quality_chart(&rows, &model, &dir)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::Eval {
            common,
            model,
            split,
            batch,
            beam_size,
            no_shortlist,
            json,
        } => {
            let pool = thread_pool(common.threads)?;
            let report = if let Some((from, to)) = model.split_once('-') {
                let tr = variant::load_translator(&common.models, &model, &common.variant)?;
                let data = datasets::read_bible(&data_path("bible/sample500.tsv"), from, to)?;
                let opts = SearchOptions {
                    beam_size: beam_size.unwrap_or(tr.defaults.beam_size),
                    shortlist: !no_shortlist,
                    ..tr.defaults.clone()
                };
                let r = pool.install(|| eval_run::translation(&tr, &data, &opts, batch))?;
                println!(
                    "{model} {} beam {} shortlist {}: BLEU {:.2} chrF {:.2} on {} verse pairs ({:.1} s)",
                    common.variant,
                    opts.beam_size,
                    opts.shortlist,
                    r.bleu,
                    r.chrf,
                    r.sentences,
                    r.seconds
                );
                serde_json::to_value(r)?
            } else {
                let clf = variant::load_classifier(&common.models, &model, &common.variant)?;
                let data = datasets::read_labelled(&data_path(&format!("sentiment/{split}.tsv")))?;
                let r = pool.install(|| eval_run::accuracy(&clf, &data, batch))?;
                println!(
                    "{model} {} {split}: accuracy {:.2}% ({}/{}) ({:.1} s)",
                    common.variant, r.accuracy, r.correct, r.total, r.seconds
                );
                serde_json::to_value(r)?
            };
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
    }
}
