//! FullyQT structured FFN pruning (papers.md §1): per FFN layer, the largest activation of each
//! hidden unit over a calibration sample; units whose maximum is below `λ · std(maxima of the
//! layer)` are dropped, i.e. row j of W1, b1[j] and column j of W2 are removed. The edit is made
//! on the fp32 tensors before quantization, so it composes with every scheme and recipe.
//!
//! Calibration runs the fp32 model as it is served: BERT over the sentences; Marian's encoder
//! FFNs over the source sentences and its decoder FFNs over every step of the greedy (beam 1)
//! translations of those sentences. Activations are read after the FFN's activation (GELU for
//! BERT, ReLU for Marian) through `quant::calibrate`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use super::calibrate::{UnitMaxima, observe};
use super::convert::PruneOptions;
use crate::format::marian_bin::{MarianBin, ShippedInt8};
use crate::format::{Tensor, TensorStore};
use crate::layers::Linear;
use crate::models::bert::{self, BertClassifier};
use crate::models::marian::{MarianTranslator, SearchOptions};
use crate::models::tokenizer::Overflow;
use crate::repo::fetch::sha256_file;

/// Metadata key of a pruned variant: its `PruneRecord` as JSON.
pub const PRUNE_KEY: &str = "quantserve.prune";

/// Per layer, each FFN unit's largest activation.
pub type LayerMaxima = Vec<Vec<f32>>;

/// Sentences per calibration batch (memory stays small; the results do not depend on it).
const BATCH: usize = 32;

/// What pruning did, as recorded in the variant metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneRecord {
    pub lambda: f32,
    /// sha256 of the calibration file, as `source_sha256` names the weights.
    pub calibration_sha256: String,
    /// Calibration sentences run.
    pub sentences: usize,
    /// The configured FFN width every layer started from.
    pub width: usize,
    /// Units kept per encoder layer, in layer order.
    pub encoder: Vec<usize>,
    /// Units kept per decoder layer (empty for BERT).
    pub decoder: Vec<usize>,
}

impl PruneRecord {
    pub fn to_metadata(&self) -> String {
        serde_json::to_string(self).expect("a prune record serializes")
    }

    /// The record of a variant's metadata; `None` when the variant is not pruned.
    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<Option<Self>> {
        meta.get(PRUNE_KEY)
            .map(|text| serde_json::from_str(text).with_context(|| format!("bad `{PRUNE_KEY}`")))
            .transpose()
    }
}

/// The outcome: the record for the metadata and one report line per layer plus a total.
pub struct Pruned {
    pub record: PruneRecord,
    pub notes: Vec<String>,
}

/// Up to `max` non-blank lines of the calibration file.
pub fn read_calibration(path: &Path, max: usize) -> Result<Vec<String>> {
    ensure!(max > 0, "--calibration-sentences must be at least 1");
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading calibration file {}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(max)
        .map(String::from)
        .collect();
    ensure!(
        !lines.is_empty(),
        "calibration file {} has no sentences",
        path.display()
    );
    Ok(lines)
}

/// The units that stay: those whose maximum is at least `lambda · std(maxima)` (population
/// standard deviation), in index order. `lambda = 0` keeps every unit: after ReLU that is the
/// rule itself (maxima are ≥ 0), but a GELU unit negative on every token has a negative maximum,
/// and dropping it would change the outputs, so 0 means "off" for every activation. A layer never
/// loses every unit: if the threshold is above all maxima, the strongest unit stays (a zero-width
/// FFN is not a layer the kernels or loaders accept).
pub fn keep_units(maxima: &[f32], lambda: f32) -> Vec<usize> {
    if lambda == 0.0 {
        return (0..maxima.len()).collect();
    }
    let threshold = threshold(maxima, lambda);
    let kept: Vec<usize> = (0..maxima.len())
        .filter(|&j| f64::from(maxima[j]) >= threshold)
        .collect();
    if kept.is_empty() && !maxima.is_empty() {
        return vec![crate::kernels::ops::argmax(maxima)];
    }
    kept
}

/// `lambda · std(maxima)`, in f64.
pub fn threshold(maxima: &[f32], lambda: f32) -> f64 {
    let n = maxima.len().max(1) as f64;
    let mean = maxima.iter().map(|&m| f64::from(m)).sum::<f64>() / n;
    let var = maxima
        .iter()
        .map(|&m| (f64::from(m) - mean).powi(2))
        .sum::<f64>()
        / n;
    f64::from(lambda) * var.sqrt()
}

/// Installs observers on `layers` and returns their handles.
fn observe_all(layers: Vec<&mut Linear>) -> Vec<std::sync::Arc<UnitMaxima>> {
    layers.into_iter().map(observe).collect()
}

/// Per encoder layer, each FFN unit's largest GELU output over every token of `sentences`.
/// `model` keeps its observers afterwards: load one for calibration only.
pub fn calibrate_bert(model: &mut BertClassifier, sentences: &[String]) -> Result<LayerMaxima> {
    let observers = observe_all(model.ffn_inputs_mut());
    let progress = crate::progress::bar(sentences.len() as u64, "calibration: sentences");
    for chunk in sentences.chunks(BATCH) {
        let ids = chunk
            .iter()
            .map(|s| model.tokenize(s, Overflow::Truncate))
            .collect::<Result<Vec<_>>>()?;
        model.classify_ids(&ids)?;
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    Ok(observers.iter().map(|o| o.get()).collect())
}

/// Per encoder layer over the source tokens, and per decoder layer over every step of the greedy
/// translations, each FFN unit's largest ReLU output. `model` keeps its observers afterwards.
pub fn calibrate_marian(
    model: &mut MarianTranslator,
    sentences: &[String],
) -> Result<(LayerMaxima, LayerMaxima)> {
    let (enc, dec) = model.ffn_inputs_mut();
    let (enc, dec) = (observe_all(enc), observe_all(dec));
    let opts = SearchOptions {
        beam_size: 1,
        ..model.defaults.clone()
    };
    let sources = sentences
        .iter()
        .map(|s| model.tokenize(s, Overflow::Truncate))
        .collect::<Result<Vec<_>>>()?;
    let progress = crate::progress::bar(sources.len() as u64, "calibration: sentences");
    for chunk in sources.chunks(BATCH) {
        model.translate_ids(chunk, &opts)?;
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    let get = |o: &[std::sync::Arc<UnitMaxima>]| o.iter().map(|o| o.get()).collect();
    Ok((get(&enc), get(&dec)))
}

/// The tensors of one FFN: `w1` `[width, dim]`, `b1` `[width]` (or `[1, width]`), `w2`
/// `[dim, width]`.
struct FfnTensors {
    w1: String,
    b1: String,
    w2: String,
}

/// Rows `kept` of a row-major matrix with `cols` columns.
fn keep_rows<T: Copy>(data: &[T], cols: usize, kept: &[usize]) -> Vec<T> {
    kept.iter()
        .flat_map(|&r| data[r * cols..(r + 1) * cols].iter().copied())
        .collect()
}

/// Columns `kept` of every row of a row-major matrix with `cols` columns.
fn keep_cols<T: Copy>(data: &[T], cols: usize, kept: &[usize]) -> Vec<T> {
    data.chunks_exact(cols)
        .flat_map(|row| kept.iter().map(move |&c| row[c]))
        .collect()
}

/// Replaces the fp32 tensor `name` by `edit(data, shape)` with the new shape `new_shape`.
fn edit_tensor(
    store: &mut TensorStore,
    name: &str,
    expect: impl Fn(&[usize]) -> bool,
    edit: impl Fn(&[f32], &[usize]) -> (Vec<f32>, Vec<usize>),
) -> Result<()> {
    let shape = store
        .shape(name)
        .with_context(|| format!("pruning: tensor `{name}` is missing"))?
        .to_vec();
    ensure!(
        expect(&shape),
        "pruning: tensor `{name}` has shape {shape:?}, which does not fit the calibrated layer"
    );
    let data = store.take(name, &shape)?;
    let (data, shape) = edit(&data, &shape);
    store.insert(name, Tensor { shape, data });
    Ok(())
}

/// Removes the units not in `kept` from one FFN of `width` units; the shipped int8 codes of W1
/// and W2 (Marian), when present, the same way.
fn prune_ffn(
    store: &mut TensorStore,
    shipped: &mut HashMap<String, ShippedInt8>,
    t: &FfnTensors,
    width: usize,
    kept: &[usize],
) -> Result<()> {
    let last = |s: &[usize]| s.last().copied() == Some(width);
    let dim = store
        .shape(&t.w1)
        .and_then(|s| s.get(1).copied())
        .unwrap_or(0);
    edit_tensor(
        store,
        &t.w1,
        |s| s.len() == 2 && s[0] == width,
        |d, s| (keep_rows(d, s[1], kept), vec![kept.len(), s[1]]),
    )?;
    edit_tensor(
        store,
        &t.b1,
        |s| last(s) && s.iter().product::<usize>() == width,
        |d, s| {
            let mut shape = s.to_vec();
            *shape.last_mut().unwrap() = kept.len();
            (kept.iter().map(|&j| d[j]).collect(), shape)
        },
    )?;
    edit_tensor(
        store,
        &t.w2,
        |s| s.len() == 2 && s[1] == width && s[0] == dim,
        |d, s| (keep_cols(d, s[1], kept), vec![s[0], kept.len()]),
    )?;
    if let Some(q) = shipped.get_mut(&t.w1) {
        q.codes = keep_rows(&q.codes, dim, kept);
    }
    if let Some(q) = shipped.get_mut(&t.w2) {
        q.codes = keep_cols(&q.codes, width, kept);
    }
    Ok(())
}

/// Selects and removes the units of each layer; returns the kept counts and the report lines.
fn prune_layers(
    store: &mut TensorStore,
    shipped: &mut HashMap<String, ShippedInt8>,
    layers: &[(String, FfnTensors, Vec<f32>)],
    lambda: f32,
    totals: &mut (usize, usize),
    notes: &mut Vec<String>,
) -> Result<Vec<usize>> {
    let mut kept_counts = Vec::new();
    for (label, tensors, maxima) in layers {
        let width = maxima.len();
        let kept = keep_units(maxima, lambda);
        prune_ffn(store, shipped, tensors, width, &kept)?;
        let pruned = width - kept.len();
        let mut note = format!(
            "{label} FFN: pruned {pruned} / {width} units ({:.1} %)",
            100.0 * pruned as f64 / width.max(1) as f64
        );
        if kept.len() == 1 && f64::from(maxima[kept[0]]) < threshold(maxima, lambda) {
            note.push_str(" (every maximum is below λ·std: the strongest unit stays)");
        }
        notes.push(note);
        totals.0 += pruned;
        totals.1 += width;
        kept_counts.push(kept.len());
    }
    Ok(kept_counts)
}

fn check_options(opts: &PruneOptions) -> Result<()> {
    ensure!(
        opts.lambda.is_finite() && opts.lambda >= 0.0,
        "--prune-lambda must be a finite number ≥ 0, not {}",
        opts.lambda
    );
    Ok(())
}

fn total_note(opts: &PruneOptions, sentences: usize, (pruned, width): (usize, usize)) -> String {
    format!(
        "FFN pruning total (λ = {}, {sentences} calibration sentences): pruned {pruned} / {width} \
         units ({:.1} %)",
        opts.lambda,
        100.0 * pruned as f64 / width.max(1) as f64
    )
}

/// Calibrates the fp32 BERT model in `src` and prunes the FFNs of `store` (its
/// `model.safetensors` tensors) in place.
pub fn prune_bert(src: &Path, store: &mut TensorStore, opts: &PruneOptions) -> Result<Pruned> {
    check_options(opts)?;
    let sentences = read_calibration(&opts.calibration, opts.max_sentences)?;
    let mut model = BertClassifier::load(src)?;
    let width = model.config.intermediate_size;
    let maxima = calibrate_bert(&mut model, &sentences)?;
    let resolve = |name: String| bert::resolve(store, &name);
    let layers: Vec<_> = maxima
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let p = format!("encoder.layer.{i}");
            let tensors = FfnTensors {
                w1: resolve(format!("{p}.intermediate.dense.weight")),
                b1: resolve(format!("{p}.intermediate.dense.bias")),
                w2: resolve(format!("{p}.output.dense.weight")),
            };
            (format!("encoder layer {}", i + 1), tensors, m)
        })
        .collect();
    let (mut notes, mut totals) = (Vec::new(), (0, 0));
    let mut no_codes = HashMap::new();
    let encoder = prune_layers(
        store,
        &mut no_codes,
        &layers,
        opts.lambda,
        &mut totals,
        &mut notes,
    )?;
    finish(
        opts,
        sentences.len(),
        width,
        (encoder, Vec::new()),
        totals,
        notes,
    )
}

/// Calibrates the fp32 Marian model in `src` and prunes the FFNs of `bin` (its fp32 tensors and
/// shipped int8 codes) in place.
pub fn prune_marian(src: &Path, bin: &mut MarianBin, opts: &PruneOptions) -> Result<Pruned> {
    check_options(opts)?;
    let sentences = read_calibration(&opts.calibration, opts.max_sentences)?;
    let mut model = MarianTranslator::load(src)?;
    let width = model.config.ffn_dim;
    let (enc, dec) = calibrate_marian(&mut model, &sentences)?;
    let layers = |side: &str, maxima: LayerMaxima| -> Vec<(String, FfnTensors, Vec<f32>)> {
        maxima
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let p = format!("{side}_l{}_ffn", i + 1);
                let tensors = FfnTensors {
                    w1: format!("{p}_W1"),
                    b1: format!("{p}_b1"),
                    w2: format!("{p}_W2"),
                };
                (format!("{side} layer {}", i + 1), tensors, m)
            })
            .collect()
    };
    let (mut notes, mut totals) = (Vec::new(), (0, 0));
    let (store, shipped) = (&mut bin.tensors, &mut bin.shipped_int8);
    let encoder = prune_layers(
        store,
        shipped,
        &layers("encoder", enc),
        opts.lambda,
        &mut totals,
        &mut notes,
    )?;
    let decoder = prune_layers(
        store,
        shipped,
        &layers("decoder", dec),
        opts.lambda,
        &mut totals,
        &mut notes,
    )?;
    finish(
        opts,
        sentences.len(),
        width,
        (encoder, decoder),
        totals,
        notes,
    )
}

/// The record of a finished pruning, and the notes with their total line.
fn finish(
    opts: &PruneOptions,
    sentences: usize,
    width: usize,
    (encoder, decoder): (Vec<usize>, Vec<usize>),
    totals: (usize, usize),
    mut notes: Vec<String>,
) -> Result<Pruned> {
    notes.push(total_note(opts, sentences, totals));
    Ok(Pruned {
        record: PruneRecord {
            lambda: opts.lambda,
            calibration_sha256: sha256_file(&opts.calibration)?,
            sentences,
            width,
            encoder,
            decoder,
        },
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_units_at_or_above_lambda_std() {
        // mean 2, std √2 ≈ 1.414: λ = 1 keeps the maxima ≥ 1.414.
        let m = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(keep_units(&m, 1.0), vec![2, 3, 4]);
        assert_eq!(keep_units(&m, 0.0), vec![0, 1, 2, 3, 4]);
        // λ = 0 keeps a GELU unit that never turned positive; any λ > 0 drops it.
        assert_eq!(keep_units(&[-0.1, 1.0, 2.0], 0.0), vec![0, 1, 2]);
        assert_eq!(keep_units(&[-0.1, 1.0, 2.0], 1e-6), vec![1, 2]);
        // A threshold above every maximum keeps the strongest unit.
        assert_eq!(keep_units(&m, 10.0), vec![4]);
    }

    #[test]
    fn removes_rows_and_columns() {
        let w = [1, 2, 3, 4, 5, 6]; // 3 × 2
        assert_eq!(keep_rows(&w, 2, &[0, 2]), vec![1, 2, 5, 6]);
        let w2 = [1, 2, 3, 4, 5, 6]; // 2 × 3
        assert_eq!(keep_cols(&w2, 3, &[0, 2]), vec![1, 3, 4, 6]);
    }
}
