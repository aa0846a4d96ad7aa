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
//! ```
//!
//! Every tensor of a variant file says how it is stored, so a mixed variant loads like any other.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::model::variant::Scheme;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    default: String,
    embeddings: Option<String>,
    encoder_self_attention: Option<String>,
    decoder_self_attention: Option<String>,
    decoder_cross_attention: Option<String>,
    ffn: Option<String>,
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
        if name == "Wemb" || name.contains("word_embeddings") {
            Self::Embeddings
        } else if name.contains("_ffn_")
            || name.contains(".intermediate.")
            || (name.contains(".output.dense") && !name.contains(".attention."))
        {
            Self::Ffn
        } else if name.contains(".attention.")
            || (name.starts_with("encoder_") && name.contains("_self_"))
        {
            Self::EncoderSelfAttention
        } else if name.starts_with("decoder_") && name.contains("_rnn_") {
            Self::DecoderSelfAttention
        } else if name.contains("_context_") {
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
    default: Scheme,
    blocks: Vec<(Block, Scheme)>,
}

impl Recipe {
    pub fn parse(text: &str) -> Result<Self> {
        let f: RecipeFile = toml::from_str(text).context("bad recipe")?;
        let parse = |s: &str| Scheme::parse(s).with_context(|| format!("recipe scheme `{s}`"));
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
        Ok(Self {
            text: text.to_string(),
            default: parse(&f.default)?,
            blocks,
        })
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// The scheme for the tensor `name`.
    pub fn scheme_for(&self, name: &str) -> Scheme {
        let block = Block::of(name);
        self.blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map_or(self.default, |(_, s)| *s)
    }

    /// The most bits any block uses (the variant metadata's `bits`).
    pub fn max_bits(&self) -> u32 {
        self.blocks
            .iter()
            .map(|(_, s)| s.bits())
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
        assert!(Recipe::parse("default = \"int8\"\nattention = \"int4\"").is_err());
    }
}
