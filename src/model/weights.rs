//! Named fp32 tensors loaded from disk (safetensors in f32/f16/bf16), with shape checks.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors};

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
    /// Where the tensors came from, for error messages.
    origin: String,
}

impl TensorStore {
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            tensors: HashMap::new(),
            origin: origin.into(),
        }
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
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
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// Loads every tensor of a safetensors file, converting f16/bf16 to f32.
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        let mut store = Self::new(path.display().to_string());
        for (name, view) in st.tensors() {
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
                Dtype::I64 | Dtype::I32 | Dtype::U8 | Dtype::I8 | Dtype::BOOL => continue,
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
        Ok(store)
    }
}
