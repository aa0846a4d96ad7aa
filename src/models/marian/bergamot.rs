//! Bergamot model folders: a Marian `.bin` (or a quantized `variant.safetensors` written from
//! one), `tokenizer.json`, the optional lexical shortlist and `config.*.yml` decoding defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use super::config::MarianConfig;
use super::decoder::{DecoderLayer, SelfBlock};
use super::shortlist::Shortlist;
use super::{MarianTranslator, Parts};
use crate::format::marian_bin::MarianBin;
use crate::format::{MARIAN_YML_KEY, TensorStore, VARIANT_FILE};
use crate::generate::{Rules, Search, SearchOptions};
use crate::layers::LinearParts;
use crate::layers::embedding::Embedding;
use crate::layers::encoder::{EncoderLayer, Norm};
use crate::models::tensors::{ffn_width, read_variant, take_linear, take_norm};
use crate::models::tokenizer::TextTokenizer;
use crate::schemes::{self, Role, SchemeRef};

/// How the model uses the tensor `name` of a Marian `.bin`: the tied embedding table, a weight
/// matrix, or neither (layer-norm vectors, biases, intgemm activation scales).
pub fn tensor_role(name: &str, shape: &[usize]) -> Option<Role> {
    if shape.len() != 2 || shape[0] < 2 {
        return None;
    }
    if name == "Wemb" {
        return Some(Role::Embedding);
    }
    let matrix = name.contains("_W") && !name.contains("_ln_") && !name.ends_with("_QuantMultA");
    matrix.then_some(Role::Matrix)
}

/// Loads a Bergamot folder: a variant folder as it is, or the fp32 `.bin` with its matrices
/// quantized by `scheme` when given.
pub(super) fn load(dir: &Path, scheme: Option<&SchemeRef>) -> Result<MarianTranslator> {
    let variant = dir.join(VARIANT_FILE);
    let files = find_files(dir, !variant.exists())?;
    // A committed variant folder may hold only its weights: the tokenizer and the shortlist
    // then come from the model's reference folder beside it (`../fp32`).
    let assets = if variant.exists() && !dir.join("tokenizer.json").exists() {
        let reference = dir.with_file_name("fp32");
        ensure!(
            reference.join("tokenizer.json").exists(),
            "{} has no tokenizer.json, and neither has its reference folder {}",
            dir.display(),
            reference.display()
        );
        Some(find_files(&reference, false)?)
    } else {
        None
    };
    let tokenizer_dir = if assets.is_some() {
        dir.with_file_name("fp32")
    } else {
        dir.to_path_buf()
    };
    let tokenizer = TextTokenizer::from_file(&tokenizer_dir.join("tokenizer.json"))?;
    let shortlist = files
        .shortlist
        .or_else(|| assets.and_then(|a| a.shortlist))
        .as_deref()
        .map(Shortlist::read)
        .transpose()?;
    if variant.exists() {
        // A quantized variant folder: tensors and model.yml from `variant.safetensors`.
        let (store, _) = read_variant(&variant, "marian")?;
        let yml = store
            .metadata
            .get(MARIAN_YML_KEY)
            .cloned()
            .context("variant has no model.yml in its metadata")?;
        return build(store, &yml, tokenizer, shortlist, files.options)
            .with_context(|| format!("loading {}", variant.display()));
    }
    let model = files.model.context("no model file")?;
    let mut bin = MarianBin::read(&model)?;
    if let Some(scheme) = scheme {
        schemes::quantize_store(&mut bin.tensors, |_| scheme.clone(), tensor_role)?;
    }
    build(
        bin.tensors,
        &bin.model_yml,
        tokenizer,
        shortlist,
        files.options,
    )
    .with_context(|| format!("loading {}", model.display()))
}

/// The model files of a Bergamot model directory, named by its `config.*.yml` when present.
struct ModelFiles {
    model: Option<PathBuf>,
    shortlist: Option<PathBuf>,
    options: SearchOptions,
}

fn find_files(dir: &Path, need_model: bool) -> Result<ModelFiles> {
    let mut options = SearchOptions::default();
    let mut model = None;
    let mut shortlist = None;
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading model directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let config = entries.iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("config") && n.ends_with(".yml"))
    });
    if let Some(cfg) = config {
        let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(cfg)?)
            .with_context(|| format!("parsing {}", cfg.display()))?;
        let first = |key: &str| {
            doc.get(key)
                .and_then(serde_yaml::Value::as_sequence)
                .and_then(|s| s.first())
                .and_then(serde_yaml::Value::as_str)
                .map(|s| dir.join(s))
        };
        model = first("models");
        shortlist = first("shortlist").filter(|p| p.exists());
        if let Some(b) = doc.get("beam-size").and_then(serde_yaml::Value::as_u64) {
            options.beam_size = b.max(1) as usize;
        }
        if let Some(n) = doc.get("normalize").and_then(serde_yaml::Value::as_f64) {
            options.normalize = n as f32;
        }
        if let Some(f) = doc
            .get("max-length-factor")
            .and_then(serde_yaml::Value::as_f64)
        {
            options.max_length_factor = f as f32;
        }
    }
    let by_ext = |suffix: &str| {
        entries
            .iter()
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix))
            })
            .cloned()
    };
    let model = model.or_else(|| {
        entries
            .iter()
            .find(|p| {
                let n = p.to_string_lossy();
                n.ends_with(".bin") && !n.ends_with(".s2t.bin")
            })
            .cloned()
    });
    if need_model {
        ensure!(
            model.as_ref().is_some_and(|m| m.exists()),
            "no Marian model (*.bin) in {}",
            dir.display()
        );
    }
    let shortlist = shortlist.or_else(|| by_ext(".s2t.bin"));
    Ok(ModelFiles {
        model,
        shortlist,
        options,
    })
}

/// Marian's layer-norm names: `<prefix>_ln_scale`, `<prefix>_ln_bias`.
fn norm(store: &mut TensorStore, prefix: &str, d: usize) -> Result<Norm> {
    let (g, b) = (format!("{prefix}_ln_scale"), format!("{prefix}_ln_bias"));
    take_norm(store, &g, &b, d)
}

/// The model from its tensors (fp32 or any stored form) and `model.yml`.
fn build(
    mut store: TensorStore,
    model_yml: &str,
    tokenizer: TextTokenizer,
    shortlist: Option<Shortlist>,
    defaults: SearchOptions,
) -> Result<MarianTranslator> {
    let config = MarianConfig::from_yml(model_yml)?;
    let s = &mut store;
    let (d, f, v) = (config.dim, config.ffn_dim, config.vocab);
    // Tied embeddings: one table for source and target lookups and the output projection.
    let wemb = s.take_weight("Wemb", &[v, d])?;
    let out_bias = s.take("decoder_ff_logit_out_b", &[v])?;
    let output = LinearParts {
        weight: wemb.clone(),
        bias: Some(out_bias),
        n_out: v,
        n_in: d,
    }
    .build()?;
    let embeddings = Embedding::from_weight(wemb, d);
    let mut encoder = Vec::new();
    for l in 1..=config.enc_depth {
        let p = format!("encoder_l{l}");
        let lin = |s: &mut TensorStore, w: &str, b: &str, o, i| {
            take_linear(s, &format!("{p}_{w}"), Some(&format!("{p}_{b}")), o, i)
        };
        // A pruned variant keeps fewer FFN units, as many as its stored matrices say.
        let f = ffn_width(s, &format!("{p}_ffn_W1"), f)?;
        encoder.push(EncoderLayer {
            qkv: LinearParts::concat(vec![
                lin(s, "self_Wq", "self_bq", d, d)?,
                lin(s, "self_Wk", "self_bk", d, d)?,
                lin(s, "self_Wv", "self_bv", d, d)?,
            ])?
            .build()?,
            attn_out: lin(s, "self_Wo", "self_bo", d, d)?.build()?,
            attn_norm: norm(s, &format!("{p}_self_Wo"), d)?,
            ffn_in: lin(s, "ffn_W1", "ffn_b1", f, d)?.build()?,
            ffn_out: lin(s, "ffn_W2", "ffn_b2", d, f)?.build()?,
            ffn_norm: norm(s, &format!("{p}_ffn_ffn"), d)?,
        });
    }
    let mut decoder = Vec::new();
    for l in 1..=config.dec_depth {
        let p = format!("decoder_l{l}");
        let lin = |s: &mut TensorStore, w: &str, b: &str, o, i| {
            take_linear(s, &format!("{p}_{w}"), Some(&format!("{p}_{b}")), o, i)
        };
        // The candidate state x·W has no bias; give it zeros so both halves share one matmul.
        let forget = lin(s, "rnn_Wf", "rnn_bf", d, d)?;
        let mut cand = take_linear(s, &format!("{p}_rnn_W"), None, d, d)?;
        let f = ffn_width(s, &format!("{p}_ffn_W1"), f)?;
        cand.bias = Some(vec![0.0; d]);
        decoder.push(DecoderLayer {
            self_block: SelfBlock::Ssru(LinearParts::concat(vec![forget, cand])?.build()?),
            self_norm: norm(s, &format!("{p}_rnn_ffn"), d)?,
            query: lin(s, "context_Wq", "context_bq", d, d)?.build()?,
            cross_kv: LinearParts::concat(vec![
                lin(s, "context_Wk", "context_bk", d, d)?,
                lin(s, "context_Wv", "context_bv", d, d)?,
            ])?
            .build()?,
            ctx_out: lin(s, "context_Wo", "context_bo", d, d)?.build()?,
            ctx_norm: norm(s, &format!("{p}_context_Wo"), d)?,
            ffn_in: lin(s, "ffn_W1", "ffn_b1", f, d)?.build()?,
            ffn_out: lin(s, "ffn_W2", "ffn_b2", d, f)?.build()?,
            ffn_norm: norm(s, &format!("{p}_ffn_ffn"), d)?,
        });
    }
    let eos = tokenizer.token_id_or("</s>")?;
    let unk = tokenizer.token_id("<unk>");
    ensure!(
        tokenizer.vocab_size() <= v,
        "tokenizer has more tokens than the model's vocabulary"
    );
    Ok(MarianTranslator::assemble(Parts {
        config,
        tokenizer,
        defaults,
        embeddings,
        target_embeddings: None,
        output,
        encoder,
        decoder,
        shortlist,
        rules: Rules {
            eos,
            start: None,
            // Marian does not output <unk> unless told to.
            banned: unk.map(|u| vec![vec![u]]).unwrap_or_default(),
            forced_eos: false,
            search: Search::Marian,
            max_target_len: usize::MAX,
        },
    }))
}
