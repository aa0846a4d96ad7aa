//! `quantserve quantize`: turns a model's fp32 folder into a variant folder
//! (`variant.safetensors` + the tokenizer and config files the model needs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use super::prune;
use super::recipe::Recipe;
use super::tiers;
use crate::format::integrity;
use crate::format::marian_bin::MarianBin;
use crate::format::{
    MARIAN_YML_KEY, RECIPE_KEY, TRAINING_KEY, TensorStore, VARIANT_FILE, VariantInfo, write_store,
};
use crate::layers::{Int8Matrix, Weight};
use crate::models::tokenizer::TextTokenizer;
use crate::models::{bert, marian};
use crate::repo::fetch::sha256_file;
use crate::schemes::{self, SchemeRef};

/// What `quantize` wrote.
#[derive(Debug)]
pub struct QuantizeReport {
    pub info: VariantInfo,
    pub quantized_tensors: usize,
    pub bytes: u64,
    /// Average bits per weight (codes and scales) over the quantized matrices.
    pub avg_bits: f64,
    /// Human-readable findings of the optional steps (frequency tiers, pruning), one per line.
    pub notes: Vec<String>,
}

/// Everything `quantize` can do beyond one scheme for every matrix.
#[derive(Default)]
pub struct QuantizeOptions {
    /// Mixed precision: a scheme per block type (the variant's scheme is then `mixed`).
    pub recipe: Option<Recipe>,
    /// Text files, one sentence per line, whose token frequencies give the embedding rows their
    /// bits (the recipe's frequency tiers).
    pub freq_corpus: Vec<PathBuf>,
    /// FullyQT structured FFN pruning.
    pub prune: Option<PruneOptions>,
    /// How the weights were trained (JSON object text from `tools/qat`), recorded unchanged in
    /// the variant header under `quantserve.training`.
    pub training: Option<String>,
}

/// FullyQT structured FFN pruning: drop the FFN hidden units whose largest activation over a
/// calibration sample is below `lambda` times the standard deviation of those maxima.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub lambda: f32,
    /// Text, one sentence per line (translation models: source sentences).
    pub calibration: PathBuf,
    /// At most this many lines of `calibration` are run.
    pub max_sentences: usize,
}

fn copy_files(src: &Path, out: &Path, skip: impl Fn(&Path) -> bool) -> Result<()> {
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        if path.is_file() && !skip(&path) {
            std::fs::copy(&path, out.join(path.file_name().unwrap()))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn marian_model_file(src: &Path) -> Result<PathBuf> {
    std::fs::read_dir(src)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".bin") && !n.ends_with(".s2t.bin")
        })
        .with_context(|| format!("no Marian model (*.bin) in {}", src.display()))
}

/// Quantizes the model in `src` (an HF BERT folder, a Bergamot Marian folder or a Hugging Face
/// Marian (Opus-MT) folder) with `scheme` into the folder `out`.
pub fn quantize_dir(src: &Path, scheme: &str, out: &Path) -> Result<QuantizeReport> {
    quantize_dir_with(src, scheme, &QuantizeOptions::default(), out)
}

/// Quantizes the model in `src` with a scheme per block type from `recipe` (variant scheme
/// `mixed`) into the folder `out`.
pub fn quantize_dir_recipe(src: &Path, recipe: &Recipe, out: &Path) -> Result<QuantizeReport> {
    let options = QuantizeOptions {
        recipe: Some(recipe.clone()),
        ..QuantizeOptions::default()
    };
    quantize_dir_with(src, "mixed", &options, out)
}

/// Quantizes the model in `src` into the folder `out` with `scheme`, or with `options.recipe`
/// (scheme `mixed`), and the optional steps of `options`.
pub fn quantize_dir_with(
    src: &Path,
    scheme: &str,
    options: &QuantizeOptions,
    out: &Path,
) -> Result<QuantizeReport> {
    let recipe = options.recipe.as_ref();
    let scheme = if recipe.is_some() { "mixed" } else { scheme };
    let mut notes = Vec::new();
    let tiers = recipe.map_or(&[][..], |r| &r.embedding_tiers[..]);
    ensure!(
        tiers.is_empty() || !options.freq_corpus.is_empty(),
        "the recipe's embedding_tiers need token frequencies: pass --freq-corpus FILE"
    );
    ensure!(
        !tiers.is_empty() || options.freq_corpus.is_empty(),
        "--freq-corpus needs a recipe with [[embedding_tiers]] (see quant::recipe)"
    );
    ensure!(src != out, "--out must differ from --model");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let is_hf_marian = marian::is_hf_dir(src);
    let is_bert =
        !is_hf_marian && src.join("config.json").exists() && src.join("model.safetensors").exists();
    let shipped = scheme == "int8-shipped";
    ensure!(
        !(shipped && (is_bert || is_hf_marian)),
        "scheme `int8-shipped` is only available for Bergamot Marian models"
    );
    let parsed = if shipped || recipe.is_some() {
        SchemeRef::parse("int8")?
    } else {
        schemes::parse(scheme)?
    };
    let scheme_for = |name: &str| recipe.map_or_else(|| parsed.clone(), |r| r.scheme_for(name));
    let (bits, granularity) = match recipe {
        Some(r) => (r.max_bits(), "recipe".to_string()),
        None => (parsed.bits(), parsed.granularity()),
    };
    let mut extra = HashMap::new();
    if let Some(r) = recipe {
        extra.insert(RECIPE_KEY.to_string(), r.text.clone());
    }
    if let Some(t) = &options.training {
        let parsed: serde_json::Value =
            serde_json::from_str(t).context("the training metadata is not valid JSON")?;
        ensure!(
            parsed.is_object(),
            "the training metadata must be a JSON object, not {parsed}"
        );
        extra.insert(TRAINING_KEY.to_string(), t.clone());
    }
    // A pruned model is a new model, so an fp32 variant of it is worth writing.
    ensure!(
        !parsed.is_fp32() || options.prune.is_some(),
        "fp32 is the source, not a quantization scheme (only a pruned fp32 variant can be written)"
    );
    let (store, info, source) = if is_hf_marian {
        // Opus-MT (Hugging Face MarianMTModel): the same schemes and recipes over its tensor
        // names; the folder's config, generation config and tokenizer files are copied.
        ensure!(
            options.prune.is_none(),
            "FFN pruning is not implemented for Hugging Face Marian folders"
        );
        let weights = src.join("model.safetensors");
        let mut store = TensorStore::from_safetensors(&weights)?;
        let info = VariantInfo {
            scheme: scheme.into(),
            bits,
            granularity,
            model_kind: marian::hf::MODEL_KIND.into(),
            source_sha256: sha256_file(&weights)?,
            quantserve_version: env!("CARGO_PKG_VERSION").into(),
        };
        hf_embedding_tiers(src, &mut store, options, &mut notes)?;
        schemes::quantize_store(&mut store, scheme_for, marian::hf::tensor_role)?;
        (store, info, weights)
    } else if is_bert {
        let weights = src.join("model.safetensors");
        let mut store = TensorStore::from_safetensors(&weights)?;
        if let Some(p) = &options.prune {
            let pruned = prune::prune_bert(src, &mut store, p)?;
            notes.extend(pruned.notes);
            extra.insert(prune::PRUNE_KEY.to_string(), pruned.record.to_metadata());
        }
        let info = VariantInfo {
            scheme: scheme.into(),
            bits,
            granularity,
            model_kind: "bert".into(),
            source_sha256: sha256_file(&weights)?,
            quantserve_version: env!("CARGO_PKG_VERSION").into(),
        };
        embedding_tiers(src, &mut store, options, &mut notes)?;
        schemes::quantize_store(&mut store, scheme_for, bert::tensor_role)?;
        (store, info, weights)
    } else {
        let model = marian_model_file(src)?;
        let mut bin = MarianBin::read(&model)?;
        if let Some(p) = &options.prune {
            let pruned = prune::prune_marian(src, &mut bin, p)?;
            notes.extend(pruned.notes);
            extra.insert(prune::PRUNE_KEY.to_string(), pruned.record.to_metadata());
        }
        let info = VariantInfo {
            scheme: scheme.into(),
            bits,
            granularity: if shipped {
                "per_tensor".into()
            } else {
                granularity
            },
            model_kind: "marian".into(),
            source_sha256: sha256_file(&model)?,
            quantserve_version: env!("CARGO_PKG_VERSION").into(),
        };
        let role = marian::bergamot::tensor_role;
        if shipped {
            // The shipped codes, as they are: one multiplier per tensor, w = q / multiplier.
            let shipped = &bin.shipped_int8;
            bin.tensors.convert(|name, t| {
                Ok(role(name, &t.shape).and_then(|_| {
                    let s = shipped.get(name)?;
                    Some(Weight::Int8(Int8Matrix {
                        codes: s.codes.clone(),
                        scales: vec![1.0 / s.multiplier; t.shape[0]],
                    }))
                }))
            })?;
        } else {
            embedding_tiers(src, &mut bin.tensors, options, &mut notes)?;
            schemes::quantize_store(&mut bin.tensors, scheme_for, role)?;
        }
        extra.insert(MARIAN_YML_KEY.to_string(), bin.model_yml.clone());
        (bin.tensors, info, model)
    };
    write_store(&out.join(VARIANT_FILE), &store, &info, extra)?;
    // The source's manifest lists the source's files: the variant folder gets its own.
    copy_files(src, out, |p| {
        p == source || p.ends_with(integrity::MANIFEST)
    })?;
    integrity::write_manifest(out, &[VARIANT_FILE])?;
    let (mut bit_sum, mut weights, mut count) = (0.0f64, 0usize, 0usize);
    for (_, _, w) in store.weights() {
        let (b, n) = w.bits_and_weights();
        bit_sum += b;
        weights += n;
        count += 1;
    }
    let bytes = std::fs::metadata(out.join(VARIANT_FILE))?.len();
    Ok(QuantizeReport {
        info,
        quantized_tensors: count,
        bytes,
        avg_bits: bit_sum / weights.max(1) as f64,
        notes,
    })
}

/// Frequency tiers are counted with a `tokenizer.json`, which Opus-MT folders do not have.
fn hf_embedding_tiers(
    _src: &Path,
    _store: &mut TensorStore,
    options: &QuantizeOptions,
    _notes: &mut [String],
) -> Result<()> {
    let tiers = options
        .recipe
        .as_ref()
        .is_some_and(|r| !r.embedding_tiers.is_empty());
    ensure!(
        !tiers,
        "embedding frequency tiers are not implemented for Hugging Face Marian folders"
    );
    Ok(())
}

/// With the recipe's embedding tiers: the word embedding table of `store` quantized tier by
/// tier from the token counts of `--freq-corpus`, put back in its place (so the scheme pass
/// leaves it alone). Adds the tiers' sizes and coverage to `notes`.
fn embedding_tiers(
    src: &Path,
    store: &mut TensorStore,
    options: &QuantizeOptions,
    notes: &mut Vec<String>,
) -> Result<()> {
    let Some(recipe) = options
        .recipe
        .as_ref()
        .filter(|r| !r.embedding_tiers.is_empty())
    else {
        return Ok(());
    };
    let tokenizer = TextTokenizer::from_file(&src.join("tokenizer.json"))?;
    let mut found = false;
    store.convert(|name, table| {
        let embedding = table.shape.len() == 2
            && (name == "Wemb" || (name.contains("word_embeddings") && name.ends_with(".weight")));
        if !embedding {
            return Ok(None);
        }
        found = true;
        let (rows, cols) = (table.shape[0], table.shape[1]);
        let counts = tiers::count_tokens(&tokenizer, &options.freq_corpus, rows)?;
        let assignment = tiers::assign(&counts, &recipe.embedding_tiers);
        let schemes: Vec<SchemeRef> = recipe
            .embedding_tiers
            .iter()
            .map(|t| t.scheme.clone())
            .chain([recipe.scheme_for(name)])
            .collect();
        notes.extend(assignment.describe(&counts, &schemes));
        assignment.quantize(&schemes, &table.data, cols).map(Some)
    })?;
    ensure!(
        found,
        "the model has no fp32 word embedding table to split by frequency"
    );
    Ok(())
}
