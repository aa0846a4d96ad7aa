//! Named tensors from disk (safetensors in f32/f16/bf16, and every quantized form a variant file
//! holds), with shape checks: models `take` what they need.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use safetensors::{Dtype, SafeTensors};

use super::naming::{TIERS_PREFIX, lowbit_key, scale_name, tier_name, tier_rows_name};
use crate::layers::weight::{Int8Matrix, LowBitFormat, LowBitMatrix, TieredWeight, Weight};

/// A dense row-major fp32 tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Tensors by name. Models `take` what they need, so a missing or misshapen tensor is reported
/// with its name instead of surfacing as a panic deep in a matmul.
#[derive(Default, Debug)]
pub struct TensorStore {
    tensors: HashMap<String, Tensor>,
    /// Matrices in a quantized form, with their `[rows, cols]` shape.
    weights: HashMap<String, ([usize; 2], Weight)>,
    /// The safetensors header's metadata (variant files record their scheme here).
    pub metadata: HashMap<String, String>,
    /// Where the tensors came from, for error messages.
    origin: String,
}

impl TensorStore {
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            tensors: HashMap::new(),
            weights: HashMap::new(),
            metadata: HashMap::new(),
            origin: origin.into(),
        }
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.weights.contains_key(name)
    }

    /// Adds a `rows × cols` matrix in a stored form (an fp32 one becomes a plain tensor).
    pub fn insert_weight(&mut self, name: impl Into<String>, shape: [usize; 2], weight: Weight) {
        match weight {
            Weight::F32(data) => self.insert(
                name,
                Tensor {
                    shape: shape.to_vec(),
                    data,
                },
            ),
            w => {
                self.weights.insert(name.into(), (shape, w));
            }
        }
    }

    /// All fp32 tensors.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// All matrices in a quantized form, with their `[rows, cols]`.
    pub fn weights(&self) -> impl Iterator<Item = (&str, [usize; 2], &Weight)> {
        self.weights.iter().map(|(k, (s, w))| (k.as_str(), *s, w))
    }

    /// Replaces each fp32 tensor for which `f` returns a stored form by that form (e.g. a
    /// scheme's quantization of the matrices a model names). `f` sees every fp32 tensor once.
    pub fn convert(
        &mut self,
        mut f: impl FnMut(&str, &Tensor) -> Result<Option<Weight>>,
    ) -> Result<()> {
        let names: Vec<String> = self.tensors.keys().cloned().collect();
        for name in names {
            let t = &self.tensors[&name];
            if let Some(w) = f(&name, t).with_context(|| format!("`{name}`"))? {
                let t = self.tensors.remove(&name).expect("listed above");
                ensure!(
                    t.shape.len() == 2 && w.has_shape(t.shape[0], t.shape[1]),
                    "`{name}`: only matrices can be stored quantized, in their own shape"
                );
                self.insert_weight(name, [t.shape[0], t.shape[1]], w);
            }
        }
        Ok(())
    }

    /// Removes a `[rows][cols]` matrix in whichever form it is stored, checking its shape.
    pub fn take_weight(&mut self, name: &str, shape: &[usize]) -> Result<Weight> {
        if let Some((s, w)) = self.weights.remove(name) {
            ensure!(
                s[..] == *shape,
                "{}: quantized tensor `{name}` has shape {s:?}, expected {shape:?}",
                self.origin,
            );
            return Ok(w);
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
            .or_else(|| self.weights.get(name).map(|(s, _)| s.as_slice()))
    }

    /// Whether `name` is stored in frequency tiers.
    pub fn is_tiered(&self, name: &str) -> bool {
        matches!(self.weights.get(name), Some((_, Weight::Tiered(_))))
    }

    /// Loads every tensor of a safetensors file, converting f16/bf16 to f32.
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        super::integrity::check(path, &bytes)?;
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
            if let Err(e) = super::ensure_finite(&data) {
                bail!("{}: tensor `{name}`: {e}", path.display());
            }
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
            ensure!(
                shape[0].checked_mul(shape[1]) == Some(codes.len()),
                "{}: int8 tensor `{name}` does not hold {shape:?} codes",
                path.display()
            );
            store.insert_weight(
                name,
                [shape[0], shape[1]],
                Weight::Int8(Int8Matrix { codes, scales }),
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
            // The packed tensor is `[rows, bytes per row]`; `unpack_rows` checks the descriptor's
            // sizes (with overflow checks) against the bytes really there before allocating.
            ensure!(
                shape.len() == 2,
                "{}: low-bit tensor `{name}` is not a matrix",
                path.display()
            );
            let rows = shape[0];
            let pp = format.params_per_row(cols);
            let params = store.take(&scale_name(&name), &[rows, pp])?;
            let m = LowBitMatrix::unpack_rows(format, rows, cols, &bytes, params)
                .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
            store.insert_weight(name, [rows, cols], Weight::LowBit(m));
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
            // Sizes from the header are only trusted once the tensors they describe are there.
            ensure!(
                count <= crate::layers::weight::MAX_TIERS,
                "{}: more than {} tiers",
                bad(),
                crate::layers::weight::MAX_TIERS
            );
            let mut tiers = Vec::new();
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
            store.insert_weight(name, [rows, cols], Weight::Tiered(t));
        }
        Ok(store)
    }
}
