//! `quantserve vmap`: a vocabulary map (target shortlist) for an Opus-MT folder from a parallel
//! corpus, written as `vmap.txt` in the folder (the loader then decodes over it), and with
//! `--eval N` its effect measured: BLEU and speed with and without it on the corpus' first N
//! sentence pairs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use super::thread_pool;
use crate::eval::bleu::corpus_bleu;
use crate::models::marian::vmap::{self, VMAP_FILE, VmapOptions};
use crate::models::marian::{MarianTranslator, is_hf_dir};
use crate::models::spm::marian_tokenizer;
use crate::models::tokenizer::Overflow;

#[derive(Args)]
pub struct VmapArgs {
    /// The Opus-MT (Hugging Face MarianMTModel) folder; `vmap.txt` is written there.
    #[arg(long)]
    pub model: PathBuf,
    /// Source sentences, one per line.
    #[arg(long)]
    pub source: PathBuf,
    /// Their translations, line by line.
    #[arg(long)]
    pub target: PathBuf,
    /// Target tokens kept per source token.
    #[arg(long, default_value_t = 20)]
    pub per_token: usize,
    /// Most frequent target tokens, always allowed.
    #[arg(long, default_value_t = 300)]
    pub always: usize,
    /// Where to write the map (default: `<model>/vmap.txt`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// After writing, translate the first N source lines (greedy) with and without the map and
    /// report BLEU (against the targets, and of one against the other) and speed. Those lines
    /// are part of the map's corpus: hold them out with `--skip N` for an unbiased BLEU.
    #[arg(long)]
    pub eval: Option<usize>,
    /// Leave the first N pairs out of the map (the `--eval` sentences).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Intra-op threads for the `--eval` translations (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn lines(path: &PathBuf) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .lines()
        .map(str::to_string)
        .collect())
}

pub fn run(args: VmapArgs) -> Result<()> {
    if !is_hf_dir(&args.model) {
        bail!(
            "{} is not an Opus-MT folder (config.json + source.spm); Bergamot models ship a \
             lexical shortlist of their own",
            args.model.display()
        );
    }
    let (src, tgt) = (lines(&args.source)?, lines(&args.target)?);
    ensure!(src.len() == tgt.len(), "the two files differ in line count");
    let vocab = args.model.join("vocab.json");
    let model_vocab = crate::models::marian::hf::vocab_size(&args.model)?;
    let source_tok = marian_tokenizer(&args.model.join("source.spm"), &vocab, model_vocab)?;
    let target_spm = args.model.join("target.spm");
    let target_spm = if target_spm.is_file() {
        target_spm
    } else {
        args.model.join("source.spm")
    };
    let target_tok = marian_tokenizer(&target_spm, &vocab, model_vocab)?;
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = src
        .iter()
        .zip(&tgt)
        .skip(args.skip)
        .map(|(s, t)| Ok((source_tok.encode(s, false)?, target_tok.encode(t, false)?)))
        .collect::<Result<_>>()?;
    let (sources, targets): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let specials: Vec<u32> = ["</s>", "<unk>"]
        .iter()
        .filter_map(|t| target_tok.token_id(t))
        .collect();
    let opts = VmapOptions {
        per_token: args.per_token,
        always: args.always,
    };
    let map = vmap::build(&sources, &targets, &target_tok, &specials, opts);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.model.join(VMAP_FILE));
    std::fs::write(&out, &map.text).with_context(|| format!("writing {}", out.display()))?;
    super::print(&format!(
        "{}: {} source tokens, {} pairs, {} always allowed, from {} sentence pairs",
        out.display(),
        map.keys,
        map.pairs,
        opts.always,
        sources.len()
    ))?;
    if let Some(n) = args.eval {
        evaluate(&args, &src, &tgt, n.min(src.len()))?;
    }
    Ok(())
}

fn evaluate(args: &VmapArgs, src: &[String], tgt: &[String], n: usize) -> Result<()> {
    let pool = thread_pool(args.threads)?;
    let model = MarianTranslator::load(&args.model)?;
    ensure!(
        model.has_shortlist(),
        "the map is not in the model folder (--out elsewhere): nothing to compare"
    );
    let texts: Vec<&str> = src[..n].iter().map(String::as_str).collect();
    let refs = [tgt[..n].to_vec()];
    let mut runs = Vec::new();
    for shortlist in [false, true] {
        let opts = crate::models::marian::SearchOptions {
            beam_size: 1,
            shortlist,
            ..model.defaults.clone()
        };
        // One untimed pass warms the caches; the timed pass is the second.
        pool.install(|| model.translate(&texts[..n.min(8)], &opts, Overflow::Truncate))?;
        let started = Instant::now();
        let out = pool.install(|| model.translate(&texts, &opts, Overflow::Truncate))?;
        let secs = started.elapsed().as_secs_f64();
        let bleu = corpus_bleu(&out, &refs).score;
        super::print(&format!(
            "{:<13} BLEU {bleu:6.2}  {:7.1} sentences/s",
            if shortlist { "with vmap" } else { "full vocab" },
            n as f64 / secs
        ))?;
        runs.push((out, secs));
    }
    let agreement = corpus_bleu(&runs[1].0, &[runs[0].0.clone()]).score;
    let same = runs[1]
        .0
        .iter()
        .zip(&runs[0].0)
        .filter(|(a, b)| a == b)
        .count();
    super::print(&format!(
        "vmap vs full vocab: BLEU {agreement:.2}, identical outputs {same}/{n}, speed {:.2}x",
        runs[0].1 / runs[1].1
    ))?;
    Ok(())
}
