//! `quantserve bench`: end-to-end speed of each variant, measured in the same run so the ratios
//! against fp32 are fair. Classification: sequences/s; translation: sentences/s and tokens/s.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use crate::models::bert::BertClassifier;
use crate::models::marian::{MarianTranslator, SearchOptions};
use crate::models::tokenizer::Overflow;

/// One measured configuration.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BenchRow {
    pub variant: String,
    pub threads: usize,
    pub batch: usize,
    /// Sequences (classification) or sentences (translation) per second.
    pub items_per_s: f64,
    /// Generated tokens per second (translation only).
    pub tokens_per_s: Option<f64>,
    /// Bytes of weights the loaded model holds in memory (packed codes, scales, fp32 rest).
    pub weight_bytes: usize,
}

/// Builds classifier inputs of exactly `seq_len` tokens (when given) from real sentences:
/// `[CLS]` + the sentences' word pieces run together + `[SEP]`.
pub fn classifier_inputs(
    model: &BertClassifier,
    texts: &[String],
    seq_len: Option<usize>,
    count: usize,
) -> Result<Vec<Vec<u32>>> {
    ensure!(!texts.is_empty(), "no input sentences");
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| model.tokenize(t, Overflow::Truncate))
        .collect::<Result<_>>()?;
    let Some(len) = seq_len else {
        return Ok(ids.into_iter().cycle().take(count).collect());
    };
    ensure!(
        len >= 2 && len <= model.max_tokens(),
        "--seq-len must be within 2..={}",
        model.max_tokens()
    );
    let mut words = ids
        .iter()
        .flat_map(|s| s[1..s.len() - 1].iter().copied())
        .cycle();
    let (cls, sep) = (ids[0][0], *ids[0].last().unwrap());
    Ok((0..count)
        .map(|_| {
            let mut seq = vec![cls];
            seq.extend(words.by_ref().take(len - 2));
            seq.push(sep);
            seq
        })
        .collect())
}

/// Runs `f` on successive batches until `min_time` has passed (at least once after a warm-up
/// batch); returns items per second.
fn measure(
    batches: &[&[Vec<u32>]],
    min_time: Duration,
    mut f: impl FnMut(&[Vec<u32>]) -> Result<usize>,
) -> Result<(f64, usize)> {
    f(batches[0])?;
    let start = Instant::now();
    let (mut items, mut extra) = (0usize, 0usize);
    for batch in batches.iter().cycle() {
        extra += f(batch)?;
        items += batch.len();
        if start.elapsed() >= min_time {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((items as f64 / secs, (extra as f64 / secs) as usize))
}

pub fn bench_classifier(
    model: &BertClassifier,
    inputs: &[Vec<u32>],
    batch: usize,
    min_time: Duration,
) -> Result<f64> {
    let batches: Vec<&[Vec<u32>]> = inputs.chunks(batch).filter(|c| c.len() == batch).collect();
    ensure!(!batches.is_empty(), "need at least {batch} inputs");
    Ok(measure(&batches, min_time, |b| model.classify_ids(b).map(|_| 0))?.0)
}

/// `count` sources of exactly `len` ids: the sources' pieces run together, then EOS (so every
/// engine in a race sees the same shapes).
pub fn fixed_length_sources(
    sources: &[Vec<u32>],
    len: usize,
    count: usize,
) -> Result<Vec<Vec<u32>>> {
    ensure!(len >= 2, "--src-len must be at least 2");
    let eos = *sources.first().and_then(|s| s.last()).unwrap_or(&0);
    let mut pieces = sources
        .iter()
        .flat_map(|s| s[..s.len() - 1].iter().copied())
        .cycle();
    Ok((0..count)
        .map(|_| {
            let mut ids: Vec<u32> = pieces.by_ref().take(len - 1).collect();
            ids.push(eos);
            ids
        })
        .collect())
}

/// Translates `sources` in batches of `batch`; returns (sentences/s, generated tokens/s).
/// With `count_eos` a final EOS counts as a generated token (as in the peers' token counts);
/// without it (forced lengths, where EOS is never generated) only output tokens count.
pub fn bench_translator(
    model: &MarianTranslator,
    sources: &[Vec<u32>],
    batch: usize,
    opts: &SearchOptions,
    min_time: Duration,
    count_eos: bool,
) -> Result<(f64, f64)> {
    let batches: Vec<&[Vec<u32>]> = sources.chunks(batch).filter(|c| c.len() == batch).collect();
    ensure!(!batches.is_empty(), "need at least {batch} sentences");
    let (sent, tok) = measure(&batches, min_time, |b| {
        Ok(model
            .translate_ids(b, opts)?
            .iter()
            .map(|o| o.len() + usize::from(count_eos))
            .sum())
    })?;
    Ok((sent, tok as f64))
}

/// Prints rows as a table with each row's ratio against fp32 at the same threads and batch.
/// What `quantserve bench --json` prints: the machine-readable interface of the benchmark
/// (`tools/bench_peers.py` reads it; a field is never removed or renamed without bumping
/// `schema`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    pub schema: u32,
    pub model: String,
    /// What `items_per_s` counts: `sequences` or `sentences`.
    pub unit: String,
    /// The kernel path the run used (`amx`, `avx512vnni`, ...).
    pub isa: String,
    pub cpus: usize,
    /// The 1-minute load average when the run ended (other work on the machine skews speed).
    pub load_average: Option<f64>,
    pub rows: Vec<BenchRow>,
}

impl BenchReport {
    pub fn new(model: &str, unit: &str, rows: Vec<BenchRow>) -> Self {
        Self {
            schema: 1,
            model: model.into(),
            unit: unit.into(),
            isa: crate::kernels::cpu::kernel_isa()
                .map_or_else(|e| format!("unavailable: {e}"), |i| i.to_string()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok()),
            rows,
        }
    }
}

/// The results as a Markdown table, with each row's ratio to fp32 at the same threads and batch.
pub fn table(rows: &[BenchRow], unit: &str) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| variant | weights MB | threads | batch | {unit}/s | tokens/s | vs fp32 |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.variant == "fp32" && b.threads == r.threads && b.batch == r.batch)
            .map(|b| b.items_per_s);
        let ratio = base.map_or("-".to_string(), |b| format!("{:.2}x", r.items_per_s / b));
        let tokens = r
            .tokens_per_s
            .map_or("-".to_string(), |t| format!("{t:.0}"));
        let _ = writeln!(
            t,
            "| {} | {:.1} | {} | {} | {:.1} | {} | {} |",
            r.variant,
            r.weight_bytes as f64 / 1e6,
            r.threads,
            r.batch,
            r.items_per_s,
            tokens,
            ratio
        );
    }
    t
}

/// The speed-vs-quality chart of a bench run: each variant's speed at the smallest batch (most
/// threads) against its quality from `eval_dir/<model>-<variant>.json` (`quantserve eval --json`):
/// accuracy for classifiers, BLEU for translators. Variants without an eval report are left out.
pub fn quality_chart(rows: &[BenchRow], model: &str, eval_dir: &std::path::Path) -> Result<String> {
    let translation = model.contains('-');
    let mut points = Vec::new();
    let mut variants: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
    variants.dedup();
    for v in variants {
        let Some(row) = rows
            .iter()
            .filter(|r| r.variant == v)
            .min_by_key(|r| (r.batch, std::cmp::Reverse(r.threads)))
        else {
            continue;
        };
        let path = eval_dir.join(format!("{model}-{v}.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let report: serde_json::Value = serde_json::from_str(&text)?;
        let key = if translation { "bleu" } else { "accuracy" };
        if let Some(y) = report[key].as_f64() {
            points.push(super::chart::Point {
                label: v.to_string(),
                x: row.items_per_s,
                y,
            });
        }
    }
    let (batch, threads) = rows.first().map_or((1, 1), |r| (r.batch, r.threads));
    let unit = if translation {
        "sentences"
    } else {
        "sequences"
    };
    Ok(super::chart::scatter_svg(
        &format!("{model}: speed vs quality per variant"),
        &format!("{unit}/s (batch {batch}, {threads} threads, log scale)"),
        if translation { "BLEU" } else { "accuracy %" },
        &points,
    ))
}
