//! A Marian model's architecture: from the embedded `model.yml` of a Bergamot `.bin`, or from a
//! Hugging Face `config.json` (`hf.rs`).

use anyhow::{Context, Result, bail, ensure};

use crate::kernels::epilogue::Activation;

/// Architecture read from the model's embedded `special:model.yml`.
#[derive(Clone, Debug)]
pub struct MarianConfig {
    pub dim: usize,
    pub heads: usize,
    pub ffn_dim: usize,
    pub ffn_activation: Activation,
    pub enc_depth: usize,
    pub dec_depth: usize,
    pub vocab: usize,
    pub layer_norm_eps: f32,
    /// Token embeddings are multiplied by this (√dim in Marian and with HF `scale_embedding`).
    pub embed_scale: f32,
    pub positions: Positions,
    pub decoder: DecoderKind,
}

/// The decoder layer's first block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderKind {
    /// Bergamot's simpler simple recurrent unit: one state vector per layer and row.
    Ssru,
    /// Causal multi-head self-attention over the cached keys and values of earlier positions.
    SelfAttention,
}

/// How sinusoidal positions are computed (sin in the first half of the row, cos in the second).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// Marian: frequency `10000^(−i/(half−1))`.
    Marian,
    /// transformers' `MarianSinusoidalPositionalEmbedding`: `10000^(−2i/dim)`, in f64.
    HuggingFace,
}

fn yml_usize(doc: &serde_yaml::Value, key: &str) -> Result<usize> {
    doc.get(key)
        .and_then(serde_yaml::Value::as_u64)
        .map(|v| v as usize)
        .with_context(|| format!("model.yml has no integer `{key}`"))
}

fn yml_str<'a>(doc: &'a serde_yaml::Value, key: &str) -> Option<&'a str> {
    doc.get(key).and_then(serde_yaml::Value::as_str)
}

impl MarianConfig {
    pub fn from_yml(text: &str) -> Result<Self> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text).context("parsing model.yml")?;
        let expect = |key: &str, want: &str| -> Result<()> {
            match yml_str(&doc, key) {
                Some(v) if v == want => Ok(()),
                other => bail!("model.yml `{key}` is {other:?}; only `{want}` is supported"),
            }
        };
        expect("type", "transformer")?;
        expect("transformer-postprocess", "dan")?;
        expect("dec-cell", "ssru")?;
        expect("transformer-decoder-autoreg", "rnn")?;
        ensure!(
            doc.get("tied-embeddings-all")
                .and_then(serde_yaml::Value::as_bool)
                == Some(true),
            "only models with tied-embeddings-all are supported"
        );
        let act = yml_str(&doc, "transformer-ffn-activation").unwrap_or("relu");
        let vocabs = doc
            .get("dim-vocabs")
            .and_then(serde_yaml::Value::as_sequence)
            .context("model.yml has no `dim-vocabs`")?;
        let vocab = vocabs
            .first()
            .and_then(serde_yaml::Value::as_u64)
            .context("bad `dim-vocabs`")? as usize;
        ensure!(
            vocabs.iter().all(|v| v.as_u64() == Some(vocab as u64)),
            "source and target vocabularies differ"
        );
        let cfg = Self {
            dim: yml_usize(&doc, "dim-emb")?,
            heads: yml_usize(&doc, "transformer-heads")?,
            ffn_dim: yml_usize(&doc, "transformer-dim-ffn")?,
            ffn_activation: Activation::from_name(act)
                .with_context(|| format!("activation `{act}` is not supported"))?,
            enc_depth: yml_usize(&doc, "enc-depth")?,
            dec_depth: yml_usize(&doc, "dec-depth")?,
            vocab,
            // Marian's layer normalisation epsilon.
            layer_norm_eps: 1e-9,
            embed_scale: (yml_usize(&doc, "dim-emb")? as f32).sqrt(),
            positions: Positions::Marian,
            decoder: DecoderKind::Ssru,
        };
        ensure!(
            cfg.heads > 0 && cfg.dim.is_multiple_of(cfg.heads) && cfg.dim.is_multiple_of(2),
            "bad dims in model.yml"
        );
        Ok(cfg)
    }
}
