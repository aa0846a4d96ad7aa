//! `quantserve quantize`: turns a model's fp32 folder into a variant folder
//! (`variant.safetensors` + the tokenizer and config files the model needs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use super::format::{Int8Matrix, QuantMatrix, VARIANT_FILE, VariantInfo, write_variant};
use super::prune;
use super::recipe::Recipe;
use super::tiers;
use crate::model::fetch::sha256_file;
use crate::model::marian_bin::MarianBin;
use crate::model::tokenizer::TextTokenizer;
use crate::model::variant::Scheme;
use crate::model::weights::TensorStore;

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

/// Metadata key holding the recipe of a mixed-precision variant.
pub const RECIPE_KEY: &str = "quantserve.recipe";

/// Marian metadata key holding the model's `model.yml`.
pub const MARIAN_YML_KEY: &str = "marian.model_yml";

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

/// Quantizes the model in `src` (an HF BERT folder or a Bergamot Marian folder) with `scheme`
/// into the folder `out`.
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
    let is_bert = src.join("config.json").exists() && src.join("model.safetensors").exists();
    let shipped = scheme == "int8-shipped";
    ensure!(
        !(shipped && is_bert),
        "scheme `int8-shipped` is only available for Marian models"
    );
    let parsed = if shipped || recipe.is_some() {
        Scheme::Int8
    } else {
        Scheme::parse(scheme)?
    };
    let scheme_for = |name: &str| recipe.map_or(parsed, |r| r.scheme_for(name));
    let (bits, granularity) = match recipe {
        Some(r) => (r.max_bits(), "recipe".to_string()),
        None => (parsed.bits(), parsed.granularity()),
    };
    let mut extra = HashMap::new();
    if let Some(r) = recipe {
        extra.insert(RECIPE_KEY.to_string(), r.text.clone());
    }
    let (mut bit_sum, mut weights) = (0.0f64, 0usize);
    let mut tally = |m: &QuantMatrix| {
        let (b, n) = m.bits_and_weights();
        bit_sum += b;
        weights += n;
    };
    // A pruned model is a new model, so an fp32 variant of it is worth writing.
    ensure!(
        parsed != Scheme::Fp32 || options.prune.is_some(),
        "fp32 is the source, not a quantization scheme (only a pruned fp32 variant can be written)"
    );
    let mut count = 0usize;
    let info;
    if is_bert {
        let weights = src.join("model.safetensors");
        let mut store = TensorStore::from_safetensors(&weights)?;
        if let Some(p) = &options.prune {
            let pruned = prune::prune_bert(src, &mut store, p)?;
            notes.extend(pruned.notes);
            extra.insert(prune::PRUNE_KEY.to_string(), pruned.record.to_metadata());
        }
        info = VariantInfo {
            scheme: scheme.into(),
            bits,
            granularity: granularity.clone(),
            model_kind: "bert".into(),
            source_sha256: sha256_file(&weights)?,
            quantserve_version: env!("CARGO_PKG_VERSION").into(),
        };
        let mut embedding_tiers = frequency_tiers(src, &store, options, &mut notes)?;
        // Every weight matrix, word embeddings included; position and token-type tables are tiny
        // and stay fp32.
        let mut select = |name: &str, shape: &[usize], data: &[f32]| -> Option<QuantMatrix> {
            let matrix = shape.len() == 2 && name.ends_with(".weight");
            let small_table =
                name.contains("position_embeddings") || name.contains("token_type_embeddings");
            let embedding = name.contains("word_embeddings");
            if !matrix || small_table {
                return None;
            }
            if embedding && let Some(m) = embedding_tiers.take() {
                return Some(m);
            }
            scheme_for(name).quantize_matrix(shape, data, embedding)
        };
        write_variant(
            &out.join(VARIANT_FILE),
            &store,
            |n, s, d| {
                select(n, s, d).inspect(|m| {
                    count += 1;
                    tally(m);
                })
            },
            &info,
            extra,
        )?;
        copy_files(src, out, |p| p.ends_with("model.safetensors"))?;
    } else {
        let model = marian_model_file(src)?;
        let mut bin = MarianBin::read(&model)?;
        if let Some(p) = &options.prune {
            let pruned = prune::prune_marian(src, &mut bin, p)?;
            notes.extend(pruned.notes);
            extra.insert(prune::PRUNE_KEY.to_string(), pruned.record.to_metadata());
        }
        info = VariantInfo {
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
        let mut embedding_tiers = frequency_tiers(src, &bin.tensors, options, &mut notes)?;
        let mut select = |name: &str, shape: &[usize], data: &[f32]| -> Option<QuantMatrix> {
            // Weight matrices only: not the `*_Wo_ln_*` layer-norm vectors, nor activation scales.
            let matrix = name == "Wemb"
                || (name.contains("_W")
                    && !name.contains("_ln_")
                    && !name.ends_with("_QuantMultA"));
            if shape.len() != 2 || shape[0] < 2 || !matrix {
                return None;
            }
            if shipped {
                // The shipped codes, as they are: one multiplier per tensor, w = q / multiplier.
                let s = bin.shipped_int8.get(name)?;
                Some(QuantMatrix::Int8(Int8Matrix {
                    codes: s.codes.clone(),
                    scales: vec![1.0 / s.multiplier; shape[0]],
                }))
            } else if name == "Wemb"
                && let Some(m) = embedding_tiers.take()
            {
                Some(m)
            } else {
                scheme_for(name).quantize_matrix(shape, data, name == "Wemb")
            }
        };
        extra.insert(MARIAN_YML_KEY.to_string(), bin.model_yml.clone());
        write_variant(
            &out.join(VARIANT_FILE),
            &bin.tensors,
            |n, s, d| {
                select(n, s, d).inspect(|m| {
                    count += 1;
                    tally(m);
                })
            },
            &info,
            extra,
        )?;
        copy_files(src, out, |p| p == model)?;
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

/// With the recipe's embedding tiers: the word embedding table of `store` quantized tier by
/// tier from the token counts of `--freq-corpus` (made before writing, so that errors surface;
/// the writer's callback cannot fail). Adds the tiers' sizes and coverage to `notes`.
fn frequency_tiers(
    src: &Path,
    store: &TensorStore,
    options: &QuantizeOptions,
    notes: &mut Vec<String>,
) -> Result<Option<QuantMatrix>> {
    let Some(recipe) = options
        .recipe
        .as_ref()
        .filter(|r| !r.embedding_tiers.is_empty())
    else {
        return Ok(None);
    };
    let (name, table) = store
        .tensors()
        .find(|(n, t)| {
            t.shape.len() == 2
                && (*n == "Wemb" || (n.contains("word_embeddings") && n.ends_with(".weight")))
        })
        .context("the model has no fp32 word embedding table to split by frequency")?;
    let (rows, cols) = (table.shape[0], table.shape[1]);
    let tokenizer = TextTokenizer::from_file(&src.join("tokenizer.json"))?;
    let counts = tiers::count_tokens(&tokenizer, &options.freq_corpus, rows)?;
    let assignment = tiers::assign(&counts, &recipe.embedding_tiers);
    let schemes: Vec<Scheme> = recipe
        .embedding_tiers
        .iter()
        .map(|t| t.scheme)
        .chain([recipe.scheme_for(name)])
        .collect();
    notes.extend(assignment.describe(&counts, &schemes));
    assignment
        .quantize(&schemes, &table.data, cols)
        .with_context(|| format!("`{name}`"))
        .map(Some)
}
