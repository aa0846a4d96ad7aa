//! Mixed precision: a recipe file gives each block type its own scheme (the Samsung paper's
//! per-block bit allocation), e.g.
//!
//! ```toml
//! default = "int8"                      # pooler, classifier, anything not listed below
//! embeddings = "int8"                   # word embeddings (Marian: tied with the output layer)
//! encoder_self_attention = "int4-g64"
//! decoder_self_attention = "int4-g64"   # Marian SSRU
//! decoder_cross_attention = "int4-g64"
//! ffn = "int4-g64"
//!
//! # Optional: bits per embedding row by token frequency (Samsung: frequent tokens more bits).
//! # Rows are ranked by their count on `quantserve quantize --freq-corpus FILE`; the most
//! # frequent rows that make up `coverage` of the corpus tokens get `scheme`, the next tier up
//! # to its coverage the next scheme, and every other row `embeddings`.
//! [[embedding_tiers]]
//! coverage = 0.95
//! scheme = "int8"
//! ```
//!
//! Every tensor of a variant file says how it is stored, so a mixed variant loads like any other.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::schemes::SchemeRef;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    default: String,
    embeddings: Option<String>,
    encoder_self_attention: Option<String>,
    decoder_self_attention: Option<String>,
    decoder_cross_attention: Option<String>,
    ffn: Option<String>,
    #[serde(default)]
    embedding_tiers: Vec<TierFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierFile {
    coverage: f64,
    scheme: String,
}

/// One frequency tier of the embedding rows: the most frequent rows, after those of the tiers
/// before, until `coverage` of the corpus tokens is reached, are stored in `scheme`.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingTier {
    pub coverage: f64,
    pub scheme: SchemeRef,
}

/// The block types a recipe distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    Embeddings,
    EncoderSelfAttention,
    DecoderSelfAttention,
    DecoderCrossAttention,
    Ffn,
    Other,
}

impl Block {
    /// The block of a weight tensor, by its HF BERT or Marian name.
    pub fn of(name: &str) -> Self {
        // Names of BERT, Bergamot Marian and Hugging Face Marian (`model.shared`, `fc1`/`fc2`,
        // `self_attn`, `encoder_attn`) checkpoints.
        let hf_embedding = name == "model.shared.weight" || name.ends_with("embed_tokens.weight");
        if name == "Wemb" || name.contains("word_embeddings") || hf_embedding {
            Self::Embeddings
        } else if name.contains("_ffn_")
            || name.contains(".intermediate.")
            || (name.contains(".output.dense") && !name.contains(".attention."))
            || name.contains(".fc1.")
            || name.contains(".fc2.")
        {
            Self::Ffn
        } else if name.contains(".attention.")
            || (name.starts_with("encoder_") && name.contains("_self_"))
            || (name.starts_with("model.encoder.") && name.contains(".self_attn."))
        {
            Self::EncoderSelfAttention
        } else if (name.starts_with("decoder_") && name.contains("_rnn_"))
            || (name.starts_with("model.decoder.") && name.contains(".self_attn."))
        {
            Self::DecoderSelfAttention
        } else if name.contains("_context_") || name.contains(".encoder_attn.") {
            Self::DecoderCrossAttention
        } else {
            Self::Other
        }
    }
}

/// A parsed recipe: one scheme per block type.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub text: String,
    default: SchemeRef,
    blocks: Vec<(Block, SchemeRef)>,
    /// Frequency tiers of the embedding rows, by increasing coverage (empty: one scheme).
    pub embedding_tiers: Vec<EmbeddingTier>,
}

impl Recipe {
    pub fn parse(text: &str) -> Result<Self> {
        let f: RecipeFile = toml::from_str(text).context("bad recipe")?;
        let parse = |s: &str| SchemeRef::parse(s).with_context(|| format!("recipe scheme `{s}`"));
        let mut blocks = Vec::new();
        for (block, s) in [
            (Block::Embeddings, &f.embeddings),
            (Block::EncoderSelfAttention, &f.encoder_self_attention),
            (Block::DecoderSelfAttention, &f.decoder_self_attention),
            (Block::DecoderCrossAttention, &f.decoder_cross_attention),
            (Block::Ffn, &f.ffn),
        ] {
            if let Some(s) = s {
                blocks.push((block, parse(s)?));
            }
        }
        let mut embedding_tiers = Vec::new();
        for t in &f.embedding_tiers {
            let scheme = parse(&t.scheme)?;
            anyhow::ensure!(
                !scheme.is_fp32(),
                "an embedding tier must be a quantized scheme, not fp32"
            );
            let previous = embedding_tiers
                .last()
                .map_or(0.0, |p: &EmbeddingTier| p.coverage);
            anyhow::ensure!(
                t.coverage > previous && t.coverage <= 1.0,
                "embedding tier coverages must increase within (0, 1]: {} after {previous}",
                t.coverage
            );
            embedding_tiers.push(EmbeddingTier {
                coverage: t.coverage,
                scheme,
            });
        }
        Ok(Self {
            text: text.to_string(),
            default: parse(&f.default)?,
            blocks,
            embedding_tiers,
        })
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// The scheme for the tensor `name`.
    pub fn scheme_for(&self, name: &str) -> SchemeRef {
        let block = Block::of(name);
        self.blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map_or(&self.default, |(_, s)| s)
            .clone()
    }

    /// The most bits any block uses (the variant metadata's `bits`).
    pub fn max_bits(&self) -> u32 {
        self.blocks
            .iter()
            .map(|(_, s)| s.bits())
            .chain(self.embedding_tiers.iter().map(|t| t.scheme.bits()))
            .chain([self.default.bits()])
            .max()
            .unwrap_or(32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_map_to_their_blocks_and_schemes() {
        let r = Recipe::parse(
            "default = \"int8\"\nembeddings = \"bcq3\"\nffn = \"int4-g64\"\n\
             decoder_cross_attention = \"ternary\"\n",
        )
        .unwrap();
        let cases = [
            ("bert.embeddings.word_embeddings.weight", "bcq3"),
            ("bert.encoder.layer.0.attention.self.query.weight", "int8"),
            ("bert.encoder.layer.0.attention.output.dense.weight", "int8"),
            ("bert.encoder.layer.0.intermediate.dense.weight", "int4-g64"),
            ("bert.encoder.layer.0.output.dense.weight", "int4-g64"),
            ("classifier.weight", "int8"),
            ("Wemb", "bcq3"),
            ("encoder_l1_self_Wq", "int8"),
            ("encoder_l1_ffn_W1", "int4-g64"),
            ("decoder_l1_rnn_W", "int8"),
            ("decoder_l2_context_Wk", "ternary"),
        ];
        for (name, want) in cases {
            assert_eq!(r.scheme_for(name).name(), want, "{name}");
        }
        assert_eq!(r.max_bits(), 8);
        assert!(Recipe::parse("default = \"int3\"").is_err());
        let tiers = Recipe::parse(
            "default = \"int4\"\nembeddings = \"bcq2\"\n\
             [[embedding_tiers]]\ncoverage = 0.9\nscheme = \"int8\"\n\
             [[embedding_tiers]]\ncoverage = 0.99\nscheme = \"int6\"\n",
        )
        .unwrap();
        assert_eq!(tiers.embedding_tiers.len(), 2);
        assert_eq!(tiers.embedding_tiers[1].scheme.name(), "int6");
        assert_eq!(tiers.max_bits(), 8);
        for bad in [
            "[[embedding_tiers]]\ncoverage = 0.9\nscheme = \"fp32\"",
            "[[embedding_tiers]]\ncoverage = 1.5\nscheme = \"int8\"",
            "[[embedding_tiers]]\ncoverage = 0.9\nscheme = \"int8\"\n\
             [[embedding_tiers]]\ncoverage = 0.8\nscheme = \"int6\"",
        ] {
            assert!(
                Recipe::parse(&format!("default = \"int8\"\n{bad}")).is_err(),
                "{bad}"
            );
        }
        assert!(Recipe::parse("default = \"int8\"\nattention = \"int4\"").is_err());
    }
}
