//! Loader for Hugging Face `MarianMTModel` folders as Opus-MT ships them: `config.json` (and
//! `generation_config.json` when present), `model.safetensors`, `source.spm` + `vocab.json`.
//! The architecture is transformers' (post-norm layers, causal self-attention decoder,
//! `final_logits_bias`), and so is generation (decoder start token, forced EOS, `bad_words_ids`,
//! beam search).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::config::{DecoderKind, MarianConfig, Positions};
use super::decoder::{DecoderLayer, SelfBlock};
use super::{MarianTranslator, Parts};
use crate::format::{TensorStore, VARIANT_FILE};
use crate::generate::{Rules, Search, SearchOptions};
use crate::kernels::epilogue::Activation;
use crate::layers::embedding::Embedding;
use crate::layers::encoder::{EncoderLayer, Norm};
use crate::layers::{Linear, LinearParts, Weight};
use crate::models::spm::marian_tokenizer;
use crate::models::tensors::{self, read_variant};
use crate::schemes::{self, Role, SchemeRef};

/// transformers' `nn.LayerNorm` default.
const LAYER_NORM_EPS: f32 = 1e-5;

/// A folder in the Opus-MT Hugging Face layout (rather than a Bergamot one, or a classifier).
pub fn is_hf_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file() && dir.join("source.spm").is_file()
}

/// Settings from `config.json`, overridden by `generation_config.json` where it has them (newer
/// transformers write generation settings only there).
struct HfConfig {
    config: Value,
    generation: Value,
}

impl HfConfig {
    fn read(dir: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<Value> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        };
        let config = read("config.json")?;
        let generation = if dir.join("generation_config.json").is_file() {
            read("generation_config.json")?
        } else {
            Value::Null
        };
        Ok(Self { config, generation })
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.generation
            .get(key)
            .filter(|v| !v.is_null())
            .or_else(|| self.config.get(key).filter(|v| !v.is_null()))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .with_context(|| format!("config.json has no integer `{key}`"))
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.usize(key),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> bool {
        self.get(key).and_then(Value::as_bool).unwrap_or(default)
    }

    /// A token id that may be given as a list (`eos_token_id: [0]`): the first.
    fn token(&self, key: &str) -> Option<u32> {
        let v = self.get(key)?;
        v.as_u64()
            .or_else(|| v.as_array()?.first()?.as_u64())
            .map(|v| v as u32)
    }
}

/// The model's vocabulary size (`config.json`'s `vocab_size`), which bounds `vocab.json`'s ids.
pub fn vocab_size(dir: &Path) -> Result<usize> {
    HfConfig::read(dir)?.usize("vocab_size")
}

fn model_config(hf: &HfConfig) -> Result<MarianConfig> {
    if let Some(t) = hf.get("model_type").and_then(Value::as_str) {
        ensure!(
            t == "marian",
            "config.json model_type is `{t}`, not `marian`"
        );
    }
    let dim = hf.usize("d_model")?;
    let heads = hf.usize("encoder_attention_heads")?;
    let ffn_dim = hf.usize("encoder_ffn_dim")?;
    ensure!(
        hf.usize_or("decoder_attention_heads", heads)? == heads
            && hf.usize_or("decoder_ffn_dim", ffn_dim)? == ffn_dim,
        "encoder and decoder differ in heads or FFN size; not supported"
    );
    let vocab = hf.usize("vocab_size")?;
    ensure!(
        hf.usize_or("decoder_vocab_size", vocab)? == vocab
            && hf.bool_or("share_encoder_decoder_embeddings", true),
        "separate source and target vocabularies are not supported"
    );
    let act = hf
        .get("activation_function")
        .and_then(Value::as_str)
        .unwrap_or("gelu");
    // `normalize_before` and `normalize_embedding` are legacy BART keys that transformers'
    // Marian ignores (its layers are always post-norm): ignored here too, for the same outputs.
    let cfg = MarianConfig {
        dim,
        heads,
        ffn_dim,
        ffn_activation: Activation::from_name(act)
            .with_context(|| format!("activation `{act}` is not supported"))?,
        enc_depth: hf.usize("encoder_layers")?,
        dec_depth: hf.usize("decoder_layers")?,
        vocab,
        layer_norm_eps: LAYER_NORM_EPS,
        embed_scale: if hf.bool_or("scale_embedding", false) {
            (dim as f32).sqrt()
        } else {
            1.0
        },
        positions: Positions::HuggingFace,
        decoder: DecoderKind::SelfAttention,
    };
    ensure!(
        heads > 0 && dim.is_multiple_of(heads) && dim.is_multiple_of(2),
        "bad dims in config.json"
    );
    Ok(cfg)
}

fn generation(hf: &HfConfig, vocab: usize) -> Result<(Rules, SearchOptions)> {
    let pad = hf
        .token("pad_token_id")
        .context("config.json has no pad_token_id")?;
    let eos = hf
        .token("eos_token_id")
        .context("config.json has no eos_token_id")?;
    let start = hf.token("decoder_start_token_id").unwrap_or(pad);
    ensure!(
        [pad, eos, start].iter().all(|&t| (t as usize) < vocab),
        "special token ids outside the vocabulary"
    );
    // The pad token is never generated (Opus-MT configs say so with bad_words_ids [[pad]]).
    let mut banned = vec![vec![pad]];
    if let Some(lists) = hf.get("bad_words_ids").and_then(Value::as_array) {
        for seq in lists {
            let ids: Option<Vec<u32>> = seq
                .as_array()
                .map(|s| s.iter().map(|t| t.as_u64().map(|t| t as u32)).collect())
                .unwrap_or(None);
            let ids = ids.context("bad_words_ids must be lists of token ids")?;
            if !ids.is_empty() && !banned.contains(&ids) {
                banned.push(ids);
            }
        }
    }
    let positions = hf.usize_or("max_position_embeddings", 1024)?;
    // transformers counts the decoder start token in max_length; here only outputs count.
    let max_length = hf.usize_or("max_length", positions)?.min(positions);
    let forced_eos = hf.token("forced_eos_token_id") == Some(eos);
    let rules = Rules {
        eos,
        start: Some(start),
        banned,
        forced_eos,
        search: Search::HuggingFace,
        max_target_len: max_length.saturating_sub(1).max(1),
    };
    let length_penalty = hf
        .get("length_penalty")
        .and_then(Value::as_f64)
        .unwrap_or(1.0) as f32;
    let opts = SearchOptions {
        beam_size: hf.usize_or("num_beams", 1)?.max(1),
        normalize: length_penalty,
        // No length factor: transformers caps outputs by max_length only.
        max_length_factor: f32::INFINITY,
        max_length: None,
        shortlist: false,
        min_length: hf.usize_or("min_length", 0)?,
    };
    Ok((rules, opts))
}

/// transformers' names: `<prefix>.weight` and `<prefix>.bias`.
fn take_norm(s: &mut TensorStore, prefix: &str, d: usize) -> Result<Norm> {
    let (w, b) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
    tensors::take_norm(s, &w, &b, d)
}

fn take_linear(
    s: &mut TensorStore,
    prefix: &str,
    n_out: usize,
    n_in: usize,
) -> Result<LinearParts> {
    let (w, b) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
    tensors::take_linear(s, &w, Some(&b), n_out, n_in)
}

/// `[Q | K | V]` (or `[K | V]` without Q) of an attention module, fused into one layer.
fn fused(s: &mut TensorStore, attn: &str, parts: &[&str], d: usize) -> Result<Linear> {
    let parts = parts
        .iter()
        .map(|p| take_linear(s, &format!("{attn}.{p}_proj"), d, d))
        .collect::<Result<Vec<_>>>()?;
    LinearParts::concat(parts)?.build()
}

/// `model_kind` of variant files written from these folders.
pub const MODEL_KIND: &str = "marian-hf";

/// The tensors of a `MarianMTModel` folder: a variant's `variant.safetensors` (written by
/// `quantserve quantize`, loadable without the fp32 source), else `model.safetensors`.
fn read_tensors(dir: &Path) -> Result<TensorStore> {
    let variant = dir.join(VARIANT_FILE);
    if variant.is_file() {
        return Ok(read_variant(&variant, MODEL_KIND)?.0);
    }
    let st = dir.join("model.safetensors");
    if st.is_file() {
        return TensorStore::from_safetensors(&st);
    }
    if dir.join("pytorch_model.bin").is_file() {
        bail!(
            "{}: only model.safetensors is read (pytorch_model.bin is a Python pickle, which \
             quantserve does not unpickle); convert it once with transformers: \
             `MarianMTModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)`",
            dir.display()
        );
    }
    if dir.join("model.safetensors.index.json").is_file() {
        bail!("{}: sharded checkpoints are not supported", dir.display());
    }
    bail!("{}: no model.safetensors", dir.display())
}

/// How the model uses the tensor `name` of a `MarianMTModel` checkpoint: an embedding table
/// (shared, per side), a weight matrix (projections, FFN, an untied `lm_head`), or neither (layer
/// norms, biases, `final_logits_bias`, stored sinusoidal positions).
pub fn tensor_role(name: &str, shape: &[usize]) -> Option<Role> {
    if shape.len() != 2 || !name.ends_with(".weight") || name.contains("layer_norm") {
        return None;
    }
    if name.contains("embed_positions") {
        None
    } else if name == "model.shared.weight" || name.ends_with("embed_tokens.weight") {
        Some(Role::Embedding)
    } else {
        Some(Role::Matrix)
    }
}

/// Loads a `MarianMTModel` folder, its matrices quantized by `scheme` when given.
pub(super) fn load(dir: &Path, scheme: Option<&SchemeRef>) -> Result<MarianTranslator> {
    let hf = HfConfig::read(dir)?;
    let config = model_config(&hf).with_context(|| format!("{}", dir.display()))?;
    let (rules, defaults) = generation(&hf, config.vocab)?;
    let tokenizer = marian_tokenizer(
        &dir.join("source.spm"),
        &dir.join("vocab.json"),
        config.vocab,
    )?;
    ensure!(
        tokenizer.vocab_size() <= config.vocab,
        "vocab.json has more tokens than the model's vocabulary"
    );
    ensure!(
        tokenizer.token_id("</s>") == Some(rules.eos),
        "vocab.json's </s> is not the model's eos_token_id"
    );
    let mut store = read_tensors(dir)?;
    if let Some(scheme) = scheme {
        schemes::quantize_store(&mut store, |_| scheme.clone(), tensor_role)?;
    }
    let s = &mut store;
    let (d, f, v) = (config.dim, config.ffn_dim, config.vocab);

    // One shared table (share_encoder_decoder_embeddings), unless the checkpoint gives the
    // encoder or decoder its own: transformers then uses the module's own (untied checkpoints).
    let shared = ["model.shared.weight", "model.encoder.embed_tokens.weight"]
        .into_iter()
        .find(|n| s.contains(n))
        .context("no embedding table (model.shared.weight)")?;
    let wemb = s.take_weight(shared, &[v, d])?;
    let mut own = |name: &str| -> Result<Option<Weight>> {
        if !s.contains(name) {
            return Ok(None);
        }
        let w = s.take_weight(name, &[v, d])?;
        // Older checkpoints store the tied table several times.
        Ok((w != wemb).then_some(w))
    };
    let source = own("model.encoder.embed_tokens.weight")?;
    let target = own("model.decoder.embed_tokens.weight")?;
    let tied = hf.bool_or("tie_word_embeddings", true) || !s.contains("lm_head.weight");
    let out_weight = if tied {
        target.clone().unwrap_or_else(|| wemb.clone())
    } else {
        s.take_weight("lm_head.weight", &[v, d])?
    };
    let out_bias = if s.contains("final_logits_bias") {
        s.take("final_logits_bias", &[1, v])?
    } else {
        vec![0.0; v]
    };
    let output = LinearParts {
        weight: out_weight,
        bias: Some(out_bias),
        n_out: v,
        n_in: d,
    }
    .build()?;
    let target_embeddings = target.map(|w| Embedding::from_weight(w, d));
    let embeddings = Embedding::from_weight(source.unwrap_or(wemb), d);

    let mut encoder = Vec::new();
    for l in 0..config.enc_depth {
        let p = format!("model.encoder.layers.{l}");
        encoder.push(EncoderLayer {
            qkv: fused(s, &format!("{p}.self_attn"), &["q", "k", "v"], d)?,
            attn_out: take_linear(s, &format!("{p}.self_attn.out_proj"), d, d)?.build()?,
            attn_norm: take_norm(s, &format!("{p}.self_attn_layer_norm"), d)?,
            ffn_in: take_linear(s, &format!("{p}.fc1"), f, d)?.build()?,
            ffn_out: take_linear(s, &format!("{p}.fc2"), d, f)?.build()?,
            ffn_norm: take_norm(s, &format!("{p}.final_layer_norm"), d)?,
        });
    }
    let mut decoder = Vec::new();
    for l in 0..config.dec_depth {
        let p = format!("model.decoder.layers.{l}");
        decoder.push(DecoderLayer {
            self_block: SelfBlock::Attention {
                qkv: fused(s, &format!("{p}.self_attn"), &["q", "k", "v"], d)?,
                out: take_linear(s, &format!("{p}.self_attn.out_proj"), d, d)?.build()?,
            },
            self_norm: take_norm(s, &format!("{p}.self_attn_layer_norm"), d)?,
            query: take_linear(s, &format!("{p}.encoder_attn.q_proj"), d, d)?.build()?,
            cross_kv: fused(s, &format!("{p}.encoder_attn"), &["k", "v"], d)?,
            ctx_out: take_linear(s, &format!("{p}.encoder_attn.out_proj"), d, d)?.build()?,
            ctx_norm: take_norm(s, &format!("{p}.encoder_attn_layer_norm"), d)?,
            ffn_in: take_linear(s, &format!("{p}.fc1"), f, d)?.build()?,
            ffn_out: take_linear(s, &format!("{p}.fc2"), d, f)?.build()?,
            ffn_norm: take_norm(s, &format!("{p}.final_layer_norm"), d)?,
        });
    }
    // A vocabulary map (`quantserve vmap`) turns the shortlist on, as Bergamot's does.
    let vmap = dir.join(super::vmap::VMAP_FILE);
    let shortlist = if vmap.is_file() {
        Some(super::vmap::read(&vmap, &tokenizer, config.vocab)?)
    } else {
        None
    };
    let defaults = SearchOptions {
        shortlist: shortlist.is_some(),
        ..defaults
    };
    Ok(MarianTranslator::assemble(Parts {
        config,
        tokenizer,
        defaults,
        embeddings,
        target_embeddings,
        output,
        encoder,
        decoder,
        shortlist,
        rules,
    }))
}
