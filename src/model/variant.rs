//! Variants: the same model at another bit-width, in the model repository as
//! `<root>/<model>/<variant>/`. A variant folder written by `quantserve quantize` is loaded as it
//! is; a variant named after a scheme (`int8`) that has no folder is derived at load time from the
//! model's fp32 reference folder.

use std::path::Path;

use anyhow::{Result, bail};

use super::bert::BertClassifier;
use super::fetch;
use super::linear::Linear;
use super::marian::MarianTranslator;

/// A weight storage scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Fp32,
    /// Symmetric int8 weights, one scale per output channel; dynamic per-token int8 activations.
    Int8,
}

impl Scheme {
    pub fn parse(variant: &str) -> Result<Self> {
        Ok(match variant {
            "fp32" => Self::Fp32,
            "int8" => Self::Int8,
            other => bail!("unknown variant `{other}` (available: fp32, int8)"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Int8 => "int8",
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            Self::Fp32 => 32,
            Self::Int8 => 8,
        }
    }

    /// Converts an fp32 classifier to this scheme in place.
    pub fn apply_to_classifier(self, m: &mut BertClassifier) -> Result<()> {
        if self != Self::Fp32 {
            m.map_linears(|l| self.convert(l))?;
            m.quantize_embeddings_int8();
        }
        Ok(())
    }

    /// Converts an fp32 translator to this scheme in place.
    pub fn apply_to_translator(self, m: &mut MarianTranslator) -> Result<()> {
        if self != Self::Fp32 {
            m.map_linears(|l| self.convert(l))?;
            m.quantize_embeddings_int8();
        }
        Ok(())
    }

    fn convert(self, l: &Linear) -> Result<Linear> {
        match self {
            Self::Fp32 => Ok(l.clone()),
            Self::Int8 => l.to_int8(),
        }
    }
}

/// Loads the classifier `model` in `variant` from the repository at `root`.
pub fn load_classifier(root: &Path, model: &str, variant: &str) -> Result<BertClassifier> {
    let dir = root.join(model).join(variant);
    if variant != "fp32" && dir.is_dir() {
        return BertClassifier::load(&dir);
    }
    let scheme = Scheme::parse(variant)?;
    let mut m = BertClassifier::load(&fetch::ensure_model(root, model)?)?;
    scheme.apply_to_classifier(&mut m)?;
    Ok(m)
}

/// Loads the translator `model` (e.g. `en-pt`) in `variant`, fetching it on first use.
pub fn load_translator(root: &Path, model: &str, variant: &str) -> Result<MarianTranslator> {
    let dir = root.join(model).join(variant);
    if variant != "fp32" && dir.is_dir() {
        return MarianTranslator::load(&dir);
    }
    let scheme = Scheme::parse(variant)?;
    let mut m = MarianTranslator::load(&fetch::ensure_model(root, model)?)?;
    scheme.apply_to_translator(&mut m)?;
    Ok(m)
}
