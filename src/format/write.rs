//! Writes a variant file: every tensor of a store in its stored form.
//!
//! Tensors keep their source names. An int8 matrix `name` is stored as `I8` codes under `name`
//! plus one f32 scale per row under `name:scale` (`w[r][c] ≈ codes[r][c] · scale[r]`); a low-bit
//! one as bit-packed rows (`U8`, `[rows, packed bytes]`), its parameters under `name:scale` and
//! the metadata entry `quantserve.lowbit.<name>` = `<format>/<columns>`; a tiered one as one
//! matrix `name#tier<t>` per tier (in its own form), the tier's row ids as `name#tier<t>:rows`
//! (`I32`) and `quantserve.tiers.<name>` = `<tiers>/<rows>/<columns>`. Every other tensor stays
//! f32. The header metadata says which scheme wrote the file, so a loader can refuse what it does
//! not understand.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::info::VariantInfo;
use super::naming::{lowbit_key, scale_name, tier_name, tier_rows_name, tiers_key};
use super::store::TensorStore;
use crate::layers::weight::{LowBitMatrix, Weight};

/// Named byte buffers of a variant file being written, and its metadata.
struct Buffers {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    metadata: HashMap<String, String>,
}

impl Buffers {
    fn f32(&mut self, name: String, shape: Vec<usize>, data: &[f32]) {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push((name, Dtype::F32, shape, bytes));
    }

    /// Adds the `[rows, cols]` matrix `m` under `name` (and its companions).
    fn matrix(&mut self, name: &str, rows: usize, cols: usize, m: &Weight) -> Result<()> {
        ensure!(
            m.has_shape(rows, cols),
            "`{name}`: stored matrix is not {rows}×{cols}"
        );
        match m {
            Weight::F32(data) => self.f32(name.to_string(), vec![rows, cols], data),
            Weight::LowBit(m) => {
                let row_bytes = LowBitMatrix::packed_row_bytes(m.format, m.cols);
                self.tensors.push((
                    name.to_string(),
                    Dtype::U8,
                    vec![m.rows, row_bytes],
                    m.pack_rows(),
                ));
                self.f32(
                    scale_name(name),
                    vec![m.rows, m.params_per_row()],
                    &m.params,
                );
                self.metadata.insert(
                    lowbit_key(name),
                    format!("{}/{}", m.format.descriptor(), m.cols),
                );
            }
            Weight::Int8(m) => {
                self.tensors.push((
                    name.to_string(),
                    Dtype::I8,
                    vec![rows, cols],
                    m.codes.iter().map(|&c| c as u8).collect(),
                ));
                self.f32(scale_name(name), vec![rows], &m.scales);
            }
            Weight::Tiered(t) => {
                for (i, (ids, part)) in t.tiers.iter().enumerate() {
                    self.matrix(&tier_name(name, i), ids.len(), cols, part)?;
                    let bytes = ids
                        .iter()
                        .map(|&i| i32::try_from(i).expect("row id fits i32"))
                        .flat_map(i32::to_le_bytes)
                        .collect();
                    self.tensors.push((
                        tier_rows_name(name, i),
                        Dtype::I32,
                        vec![ids.len()],
                        bytes,
                    ));
                }
                self.metadata
                    .insert(tiers_key(name), format!("{}/{rows}/{cols}", t.tiers.len()));
            }
        }
        Ok(())
    }
}

/// Writes every tensor of `store` in its stored form to `path`, with `info` and `extra_metadata`
/// in the header.
pub fn write_store(
    path: &Path,
    store: &TensorStore,
    info: &VariantInfo,
    extra_metadata: HashMap<String, String>,
) -> Result<()> {
    // Owned byte buffers first; the views borrow them.
    let mut buffers = Buffers {
        tensors: Vec::new(),
        metadata: info.to_metadata(),
    };
    for (name, t) in store.tensors() {
        buffers.f32(name.to_string(), t.shape.clone(), &t.data);
    }
    for (name, [rows, cols], w) in store.weights() {
        buffers.matrix(name, rows, cols, w)?;
    }
    let Buffers {
        tensors: buffers,
        mut metadata,
    } = buffers;
    let views: Vec<(String, TensorView)> = buffers
        .iter()
        .map(|(n, dt, shape, bytes)| Ok((n.clone(), TensorView::new(*dt, shape.clone(), bytes)?)))
        .collect::<Result<_>>()?;
    metadata.extend(extra_metadata);
    // Write beside and rename, so a reader never sees a half-written variant.
    let tmp = path.with_extension("partial");
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
