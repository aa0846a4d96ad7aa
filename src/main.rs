//! The `quantserve` command line: parses the arguments and hands each subcommand to the library
//! (`quantserve::cli`, `quantserve::api::serve`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use quantserve::api::serve::{ServeArgs, serve_main};
use quantserve::cli::{self, ClassifyArgs, QuantizeArgs, TranslateArgs, bench, eval};
use quantserve::repo::{fetch, import};
use quantserve::runtime::config::LogFormat;

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

#[derive(Subcommand)]
enum Command {
    /// Download and verify the default models that are missing; or, given a PATH, register the
    /// Marian model folder or archive there as models/<pair>/fp32.
    Fetch {
        /// Model repository root to fetch into (one folder per model).
        #[arg(long, env = "QUANTSERVE_MODELS", default_value = "models")]
        models: PathBuf,
        /// An Opus-MT (Hugging Face MarianMTModel) or Bergamot model folder, or a .zip / .tar /
        /// .tar.gz archive holding one.
        path: Option<PathBuf>,
        /// The language pair it translates, SOURCE-TARGET (default: from its files).
        #[arg(long, requires = "path")]
        pair: Option<String>,
    },
    /// Build a vocabulary map (CTranslate2-style target-vocabulary shortlist) for an Opus-MT
    /// model from a parallel corpus.
    Vmap(cli::vmap::VmapArgs),
    /// Classify texts (arguments, or one per line on stdin).
    Classify(ClassifyArgs),
    /// Serve the models over HTTP/JSON and gRPC until SIGTERM or SIGINT.
    Serve {
        /// Configuration file (TOML); when absent, the shipped config/quantserve.toml (compiled in).
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
        /// Log lines as `text` or `json` (one object per line; overrides [log] format and
        /// QUANTSERVE_LOG__FORMAT). The filter is QUANTSERVE_LOG (default `info`).
        #[arg(long, value_name = "text|json")]
        log_format: Option<LogFormat>,
    },
    /// Translate texts (arguments, or one per line on stdin).
    Translate(TranslateArgs),
    /// Write a quantized variant of a model folder (e.g. models/sentiment/fp32 → models/sentiment/int8).
    Quantize(QuantizeArgs),
    /// Measure end-to-end speed of variants side by side (ratios against fp32 from the same run).
    Bench(bench::BenchArgs),
    /// Measure quality: accuracy on the sentiment test split, or BLEU/chrF on the Bible sample.
    Eval(eval::EvalArgs),
    /// An A/B experiment's verdict from Prometheus, summed over every replica.
    AbReport(cli::ab_report::AbReportArgs),
}

fn main() {
    let command = Cli::parse().command;
    if !matches!(command, Command::Serve { .. }) {
        // Drawn only when stderr is a terminal.
        quantserve::progress::enable();
    }
    let result = match command {
        Command::Fetch {
            models, path: None, ..
        } => fetch::fetch_all(&models),
        Command::Fetch {
            models,
            path: Some(path),
            pair,
        } => import::import_marian(&models, &path, pair.as_deref()).and_then(|(name, dir)| {
            cli::print(&format!(
                "{name}: registered at {} (serve it with [models.{name}] in the config)",
                dir.display()
            ))
        }),
        Command::Vmap(args) => cli::vmap::run(args),
        Command::Serve {
            config,
            http_addr,
            grpc_addr,
            models,
            log_format,
        } => serve_main(ServeArgs {
            config,
            http_addr,
            grpc_addr,
            models,
            log_format,
        }),
        Command::Classify(args) => cli::classify(args),
        Command::Translate(args) => cli::translate(args),
        Command::Quantize(args) => cli::quantize(args),
        Command::Bench(args) => bench::run(args),
        Command::Eval(args) => eval::run(args),
        Command::AbReport(args) => cli::ab_report::run(args),
    };
    match result {
        Ok(()) => {}
        // The reader went away (`quantserve translate ... | head -n1`): nothing left to say.
        Err(e) if cli::is_broken_pipe(&e) => {}
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and argument of every subcommand says what it is in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &path, missing);
            }
        }
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
