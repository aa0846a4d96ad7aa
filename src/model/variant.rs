//! Variants: the same model at another bit-width, in the model repository as
//! `<root>/<model>/<variant>/`. A variant folder written by `quantserve quantize` is loaded as it
//! is; a variant named after a scheme (`int8`, `int4-g64`, `ternary`, `bcq3`, ...) that has no
//! folder is derived at load time from the model's fp32 reference folder.
//!
//! Scheme names: `fp32`, `int8`, `int4`/`int6` (uniform symmetric, per output channel),
//! `int4-g<G>`/`int6-g<G>` (one scale per G columns, G a multiple of 64), `ternary` (TWN, one α per
//! matrix), `ternary-row` (one α per row), `bcq<q>` (q = 1..=4 binary planes, α per plane per
//! row). Token embeddings take the same scheme per row (ternary: always per row, as TernaryBERT).
//! At load time a fused layer (Q·K·V, K·V) counts as one matrix for `ternary`'s per-matrix α;
//! `quantserve quantize` computes it per source matrix.

use std::path::Path;

use anyhow::{Result, bail};

use super::bert::BertClassifier;
use super::embedding::Embedding;
use super::fetch;
use super::linear::Linear;
use super::marian::MarianTranslator;
use crate::quant::format::{QuantMatrix, quantize_int8};
use crate::quant::lowbit::{LowBitFormat, LowBitMatrix};
use crate::quant::{bcq, ternary, uniform};

/// A weight storage scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Fp32,
    /// Symmetric int8 weights, one scale per output channel; dynamic per-token int8 activations.
    Int8,
    /// Symmetric `bits`-bit weights, one scale per output channel or per `group` columns.
    Uniform {
        bits: u32,
        group: Option<usize>,
    },
    /// TWN ternary weights, α per matrix or per row.
    Ternary {
        per_row: bool,
    },
    /// Binary-coding quantization with `planes` sign planes.
    Bcq {
        planes: usize,
    },
}

impl Scheme {
    pub fn parse(variant: &str) -> Result<Self> {
        let scheme = match variant {
            "fp32" => Self::Fp32,
            "int8" => Self::Int8,
            "ternary" => Self::Ternary { per_row: false },
            "ternary-row" => Self::Ternary { per_row: true },
            s => {
                if let Some(q) = s.strip_prefix("bcq") {
                    Self::Bcq {
                        planes: q.parse().unwrap_or(0),
                    }
                } else if let Some(rest) = s.strip_prefix("int") {
                    let (bits, group) = match rest.split_once("-g") {
                        Some((b, g)) => (b, Some(g.parse().unwrap_or(0))),
                        None => (rest, None),
                    };
                    Self::Uniform {
                        bits: bits.parse().unwrap_or(0),
                        group,
                    }
                } else {
                    bail!(
                        "unknown variant `{s}` (available: fp32, int8, int4, int6[-g<G>], \
                         ternary, ternary-row, bcq<1-4>)"
                    )
                }
            }
        };
        if let Some(f) = scheme.lowbit_format()
            && (f.validate().is_err()
                || matches!(f, LowBitFormat::Uniform { bits, .. } if bits != 4 && bits != 6))
        {
            bail!(
                "unknown variant `{variant}` (uniform bits must be 4 or 6, groups a multiple of \
                 64, bcq planes 1..=4)"
            );
        }
        Ok(scheme)
    }

    pub fn name(self) -> String {
        match self {
            Self::Fp32 => "fp32".into(),
            Self::Int8 => "int8".into(),
            Self::Uniform { bits, group: None } => format!("int{bits}"),
            Self::Uniform {
                bits,
                group: Some(g),
            } => format!("int{bits}-g{g}"),
            Self::Ternary { per_row: false } => "ternary".into(),
            Self::Ternary { per_row: true } => "ternary-row".into(),
            Self::Bcq { planes } => format!("bcq{planes}"),
        }
    }

    /// Nominal bits per weight code (bcq: planes); scales come on top.
    pub fn bits(self) -> u32 {
        match self {
            Self::Fp32 => 32,
            Self::Int8 => 8,
            Self::Uniform { bits, .. } => bits,
            Self::Ternary { .. } => 2,
            Self::Bcq { planes } => planes as u32,
        }
    }

    /// What the scales cover, for the variant metadata.
    pub fn granularity(self) -> String {
        match self {
            Self::Fp32 => "none".into(),
            Self::Int8 | Self::Uniform { group: None, .. } => "per_channel".into(),
            Self::Uniform { group: Some(g), .. } => format!("group_{g}"),
            Self::Ternary { per_row: false } => "per_matrix".into(),
            Self::Ternary { per_row: true } => "per_row".into(),
            Self::Bcq { .. } => "per_row_per_plane".into(),
        }
    }

    /// The low-bit storage format of the scheme's matrices (none for fp32 and int8).
    pub fn lowbit_format(self) -> Option<LowBitFormat> {
        match self {
            Self::Fp32 | Self::Int8 => None,
            Self::Uniform { bits, group } => Some(LowBitFormat::Uniform { bits, group }),
            Self::Ternary { .. } => Some(LowBitFormat::Ternary),
            Self::Bcq { planes } => Some(LowBitFormat::Bcq { planes }),
        }
    }

    /// Quantizes a row-major `rows × cols` low-bit matrix; `embedding` forces per-row α for
    /// ternary. Panics for fp32 and int8.
    pub fn quantize_lowbit(
        self,
        w: &[f32],
        rows: usize,
        cols: usize,
        embedding: bool,
    ) -> LowBitMatrix {
        match self {
            Self::Uniform { bits, group } => uniform::quantize(w, rows, cols, bits, group),
            Self::Ternary { per_row } => ternary::quantize(w, rows, cols, per_row || embedding),
            Self::Bcq { planes } => bcq::quantize(w, rows, cols, planes, bcq::ALS_ROUNDS),
            Self::Fp32 | Self::Int8 => panic!("{} is not a low-bit scheme", self.name()),
        }
    }

    /// A weight matrix in this scheme's file form (`None` for fp32).
    pub fn quantize_matrix(
        self,
        shape: &[usize],
        data: &[f32],
        embedding: bool,
    ) -> Option<QuantMatrix> {
        match self {
            Self::Fp32 => None,
            Self::Int8 => Some(QuantMatrix::Int8(quantize_int8(shape, data))),
            _ => Some(QuantMatrix::LowBit(
                self.quantize_lowbit(data, shape[0], shape[1], embedding),
            )),
        }
    }

    /// Converts an fp32 classifier to this scheme in place.
    pub fn apply_to_classifier(self, m: &mut BertClassifier) -> Result<()> {
        if self != Self::Fp32 {
            m.map_linears(|l| self.convert(l))?;
            m.map_embeddings(|e| self.convert_embedding(e))?;
        }
        Ok(())
    }

    /// Converts an fp32 translator to this scheme in place.
    pub fn apply_to_translator(self, m: &mut MarianTranslator) -> Result<()> {
        if self != Self::Fp32 {
            m.map_linears(|l| self.convert(l))?;
            m.map_embeddings(|e| self.convert_embedding(e))?;
        }
        Ok(())
    }

    fn convert(self, l: &Linear) -> Result<Linear> {
        match self {
            Self::Fp32 => Ok(l.clone()),
            Self::Int8 => l.to_int8(),
            _ => l.to_lowbit(|w, rows, cols| self.quantize_lowbit(w, rows, cols, false)),
        }
    }

    fn convert_embedding(self, e: &Embedding) -> Result<Embedding> {
        match self {
            Self::Fp32 => Ok(e.clone()),
            Self::Int8 => Ok(e.to_int8()),
            _ => e.to_lowbit(|w, rows, cols| self.quantize_lowbit(w, rows, cols, true)),
        }
    }
}

/// Loads the classifier `model` in `variant` from the repository at `root`.
/// What a variant is made of, as `/v1/models` and the metrics label it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantKind {
    /// `fp32`, `int8`, `int4-g64`, `mixed`, ... (the writer's scheme for a variant folder).
    pub scheme: String,
    /// The widest block's bits; `None` when unknown.
    pub bits: Option<u32>,
}

/// The kind of `root/model/variant` without loading it: a variant folder says so in its file's
/// header (whatever the folder is called, e.g. `int8-pruned`); any other folder is a source
/// model (fp32); otherwise the name is a scheme derived at load. Unknown names give `None` bits
/// and the name as the scheme.
pub fn variant_kind(root: &Path, model: &str, variant: &str) -> VariantKind {
    let dir = root.join(model).join(variant);
    let file = dir.join(crate::quant::format::VARIANT_FILE);
    if variant != "fp32" && dir.is_dir() {
        if let Some(meta) = read_header_metadata(&file) {
            return VariantKind {
                scheme: meta
                    .get("quantserve.scheme")
                    .cloned()
                    .unwrap_or_else(|| variant.to_string()),
                bits: meta.get("quantserve.bits").and_then(|b| b.parse().ok()),
            };
        }
        if !file.exists() {
            return VariantKind {
                scheme: "fp32".into(),
                bits: Some(32),
            };
        }
    }
    VariantKind::from_name(variant)
}

impl VariantKind {
    /// The kind a variant name alone implies (a scheme derived at load), before it is loaded.
    pub fn from_name(variant: &str) -> Self {
        match Scheme::parse(variant) {
            Ok(s) => Self {
                scheme: s.name(),
                bits: Some(s.bits()),
            },
            Err(_) => Self {
                scheme: variant.to_string(),
                bits: None,
            },
        }
    }
}

/// The metadata of a safetensors file, reading only its header.
fn read_header_metadata(path: &Path) -> Option<std::collections::HashMap<String, String>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    // A header is JSON of tensor names and offsets; refuse absurd sizes from a corrupt file.
    if n > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    serde_json::from_value(json.get("__metadata__")?.clone()).ok()
}

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
