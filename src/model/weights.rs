//! Named fp32 tensors loaded from disk (safetensors in f32/f16/bf16), with shape checks.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use safetensors::{Dtype, SafeTensors};

use crate::quant::lowbit::{LowBitFormat, LowBitMatrix};

/// A dense row-major fp32 tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A matrix stored as int8 codes with one scale per row: `w[r][c] ≈ codes[r][c] · scales[r]`.
#[derive(Clone, Debug)]
pub struct QuantTensor {
    pub shape: Vec<usize>,
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
}

/// A weight matrix `[rows][cols]` in whichever form the file holds it.
#[derive(Clone, Debug)]
pub enum Weight {
    F32(Vec<f32>),
    Int8 {
        codes: Vec<i8>,
        scales: Vec<f32>,
    },
    /// Sub-8-bit codes (int4/int6, ternary, binary-coding planes) with their scales.
    LowBit(LowBitMatrix),
    /// Rows split into tiers (embeddings by token frequency), each tier in its own form.
    Tiered(TieredWeight),
}

/// A matrix whose rows are stored in several parts: `tiers[t] = (row ids, their rows)`. Every
/// row of the matrix is in exactly one tier.
#[derive(Clone, Debug)]
pub struct TieredWeight {
    pub rows: usize,
    pub cols: usize,
    pub tiers: Vec<(Vec<u32>, Weight)>,
}

impl TieredWeight {
    /// Checks that the tiers' ids cover `0..rows` exactly once.
    pub fn new(rows: usize, cols: usize, tiers: Vec<(Vec<u32>, Weight)>) -> Result<Self> {
        ensure!(tiers.len() <= 255, "more than 255 tiers");
        ensure!(
            tiers.iter().all(|(_, w)| !matches!(w, Weight::Tiered(_))),
            "a tier cannot itself be tiered"
        );
        let mut seen = vec![false; rows];
        for (ids, _) in &tiers {
            for &id in ids {
                let slot = seen
                    .get_mut(id as usize)
                    .with_context(|| format!("tier row {id} is outside the {rows} rows"))?;
                ensure!(!*slot, "row {id} is in two tiers");
                *slot = true;
            }
        }
        ensure!(
            seen.iter().all(|&s| s),
            "the tiers do not cover every row of the matrix"
        );
        Ok(Self { rows, cols, tiers })
    }
}

impl Weight {
    /// Stacks matrices with the same column count on top of each other (e.g. Q, K and V).
    pub fn concat_rows(parts: Vec<Weight>) -> Result<Weight> {
        if parts.iter().all(|p| matches!(p, Weight::F32(_))) {
            return Ok(Weight::F32(
                parts
                    .into_iter()
                    .flat_map(|p| match p {
                        Weight::F32(v) => v,
                        _ => unreachable!(),
                    })
                    .collect(),
            ));
        }
        if parts.iter().all(|p| matches!(p, Weight::LowBit(_))) {
            let parts = parts
                .into_iter()
                .map(|p| match p {
                    Weight::LowBit(m) => m,
                    _ => unreachable!(),
                })
                .collect();
            return Ok(Weight::LowBit(LowBitMatrix::concat_rows(parts)?));
        }
        let (mut codes, mut scales) = (Vec::new(), Vec::new());
        for p in parts {
            match p {
                Weight::Int8 {
                    codes: c,
                    scales: s,
                } => {
                    codes.extend(c);
                    scales.extend(s);
                }
                _ => bail!("cannot fuse matrices stored in different schemes"),
            }
        }
        Ok(Weight::Int8 { codes, scales })
    }
}

/// The scale tensor that accompanies the int8 codes of `name` in a variant file.
pub fn scale_name(name: &str) -> String {
    format!("{name}:scale")
}

/// The metadata key describing the low-bit tensor `name` (`<format descriptor>/<columns>`).
pub fn lowbit_key(name: &str) -> String {
    format!("quantserve.lowbit.{name}")
}

const TIERS_PREFIX: &str = "quantserve.tiers.";

/// The metadata key of a matrix `name` stored in frequency tiers (`<tiers>/<rows>/<cols>`).
pub fn tiers_key(name: &str) -> String {
    format!("{TIERS_PREFIX}{name}")
}

/// The tensor holding tier `t` of the tiered matrix `name` (any stored form).
pub fn tier_name(name: &str, t: usize) -> String {
    format!("{name}#tier{t}")
}

/// The `I32` tensor of the row ids in tier `t` of `name`.
pub fn tier_rows_name(name: &str, t: usize) -> String {
    format!("{name}#tier{t}:rows")
}

/// Tensors by name. Models `take` what they need, so a missing or misshapen tensor is reported
/// with its name instead of surfacing as a panic deep in a matmul.
#[derive(Default, Debug)]
pub struct TensorStore {
    tensors: HashMap<String, Tensor>,
    quantized: HashMap<String, QuantTensor>,
    /// Low-bit matrices with their `[rows, cols]` shape.
    lowbit: HashMap<String, (Vec<usize>, LowBitMatrix)>,
    tiered: HashMap<String, (Vec<usize>, TieredWeight)>,
    /// The safetensors header's metadata (variant files record their scheme here).
    pub metadata: HashMap<String, String>,
    /// Where the tensors came from, for error messages.
    origin: String,
}

impl TensorStore {
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            tensors: HashMap::new(),
            quantized: HashMap::new(),
            lowbit: HashMap::new(),
            tiered: HashMap::new(),
            metadata: HashMap::new(),
            origin: origin.into(),
        }
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
            || self.quantized.contains_key(name)
            || self.lowbit.contains_key(name)
            || self.tiered.contains_key(name)
    }

    pub fn insert_quantized(&mut self, name: impl Into<String>, tensor: QuantTensor) {
        self.quantized.insert(name.into(), tensor);
    }

    /// All fp32 tensors, for writers.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Removes a `[rows][cols]` matrix, fp32 or int8, checking its shape.
    pub fn take_weight(&mut self, name: &str, shape: &[usize]) -> Result<Weight> {
        if let Some((_, t)) = self.tiered.remove(name) {
            ensure!(
                [t.rows, t.cols] == shape,
                "{}: tiered tensor `{name}` has shape {:?}, expected {:?}",
                self.origin,
                [t.rows, t.cols],
                shape
            );
            return Ok(Weight::Tiered(t));
        }
        if let Some((_, m)) = self.lowbit.remove(name) {
            ensure!(
                [m.rows, m.cols] == shape,
                "{}: low-bit tensor `{name}` has shape {:?}, expected {:?}",
                self.origin,
                [m.rows, m.cols],
                shape
            );
            return Ok(Weight::LowBit(m));
        }
        if let Some(q) = self.quantized.remove(name) {
            ensure!(
                q.shape == shape
                    && q.codes.len() == shape.iter().product::<usize>()
                    && q.scales.len() == shape[0],
                "{}: int8 tensor `{name}` has shape {:?}, expected {:?}",
                self.origin,
                q.shape,
                shape
            );
            return Ok(Weight::Int8 {
                codes: q.codes,
                scales: q.scales,
            });
        }
        Ok(Weight::F32(self.take(name, shape)?))
    }

    /// Removes a tensor and checks its shape. Leading 1-sized dimensions are ignored on both
    /// sides, because Marian stores vectors as [1, n] where HF stores [n].
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .remove(name)
            .with_context(|| format!("{}: tensor `{name}` is missing", self.origin))?;
        let squeeze = |s: &[usize]| -> Vec<usize> {
            let first = s.iter().position(|&d| d != 1).unwrap_or(s.len());
            s[first..].to_vec()
        };
        if squeeze(&t.shape) != squeeze(shape) {
            bail!(
                "{}: tensor `{name}` has shape {:?}, expected {:?}",
                self.origin,
                t.shape,
                shape
            );
        }
        Ok(t.data)
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors
            .get(name)
            .map(|t| t.shape.as_slice())
            .or_else(|| self.quantized.get(name).map(|q| q.shape.as_slice()))
            .or_else(|| self.lowbit.get(name).map(|(s, _)| s.as_slice()))
            .or_else(|| self.tiered.get(name).map(|(s, _)| s.as_slice()))
    }

    /// Whether `name` is stored in frequency tiers.
    pub fn is_tiered(&self, name: &str) -> bool {
        self.tiered.contains_key(name)
    }

    /// Loads every tensor of a safetensors file, converting f16/bf16 to f32.
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        let mut store = Self::new(path.display().to_string());
        let (_, header) = SafeTensors::read_metadata(&bytes)?;
        store.metadata = header.metadata().clone().unwrap_or_default();
        let mut codes = HashMap::new();
        let mut packed = HashMap::new();
        let mut tier_rows = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() == Dtype::I32 && name.ends_with(":rows") {
                let ids = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .map(|i| u32::try_from(i).context("negative tier row id"))
                    .collect::<Result<Vec<u32>>>()
                    .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
                tier_rows.insert(name, ids);
                continue;
            }
            if view.dtype() == Dtype::U8 && store.metadata.contains_key(&lowbit_key(&name)) {
                packed.insert(name, (view.shape().to_vec(), view.data().to_vec()));
                continue;
            }
            if view.dtype() == Dtype::I8 {
                let c: Vec<i8> = view.data().iter().map(|&b| b as i8).collect();
                codes.insert(name, (view.shape().to_vec(), c));
                continue;
            }
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                // Integer buffers (e.g. HF's `position_ids`) are not weights: skip them.
                Dtype::I64 | Dtype::I32 | Dtype::U8 | Dtype::BOOL => continue,
                other => bail!(
                    "{}: tensor `{name}` has unsupported dtype {other:?}",
                    path.display()
                ),
            };
            store.insert(
                name,
                Tensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        // int8 codes come with a per-row scale tensor.
        for (name, (shape, codes)) in codes {
            ensure!(
                shape.len() == 2,
                "{}: int8 tensor `{name}` is not a matrix",
                path.display()
            );
            let scales = store.take(&scale_name(&name), &shape[..1])?;
            store.insert_quantized(
                name,
                QuantTensor {
                    shape,
                    codes,
                    scales,
                },
            );
        }
        // Low-bit codes: packed rows, a descriptor in the metadata, scales beside them.
        for (name, (shape, bytes)) in packed {
            let desc = &store.metadata[&lowbit_key(&name)];
            let (format, cols) = desc
                .rsplit_once('/')
                .with_context(|| format!("{}: bad low-bit descriptor `{desc}`", path.display()))?;
            let format = LowBitFormat::from_descriptor(format)?;
            let cols: usize = cols.parse().context("bad low-bit column count")?;
            let rows = shape.first().copied().unwrap_or(0);
            let pp = format.params_per_row(cols);
            let params = store.take(&scale_name(&name), &[rows, pp])?;
            let m = LowBitMatrix::unpack_rows(format, rows, cols, &bytes, params)
                .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
            store.lowbit.insert(name, (vec![rows, cols], m));
        }
        // Tiered matrices: each tier is a matrix of its own plus its row ids.
        let tiered: Vec<(String, String)> = store
            .metadata
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(TIERS_PREFIX)?.to_string(), v.clone())))
            .collect();
        for (name, desc) in tiered {
            let bad = || {
                format!(
                    "{}: bad tier descriptor `{desc}` of `{name}`",
                    path.display()
                )
            };
            let parts: Vec<usize> = desc
                .split('/')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(bad)?;
            let [count, rows, cols] = parts[..] else {
                bail!(bad());
            };
            let mut tiers = Vec::with_capacity(count);
            for t in 0..count {
                let ids = tier_rows
                    .remove(&tier_rows_name(&name, t))
                    .with_context(|| {
                        format!("{}: tier {t} of `{name}` has no row ids", path.display())
                    })?;
                let w = store.take_weight(&tier_name(&name, t), &[ids.len(), cols])?;
                tiers.push((ids, w));
            }
            let t = TieredWeight::new(rows, cols, tiers)
                .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
            store.tiered.insert(name, (vec![rows, cols], t));
        }
        Ok(store)
    }
}
