//! The on-disk variant format: one `variant.safetensors` per variant folder.
//!
//! Tensors keep their source names. A quantized matrix `name` is stored as int8 codes under `name`
//! plus one f32 scale per row under `name:scale` (`w[r][c] ≈ codes[r][c] · scale[r]`); every other
//! tensor stays f32. Lower bit-widths add their own dtypes and companion tensors under the same
//! rule (codes + per-row or per-group parameters), and the header metadata says which scheme
//! wrote the file, so a loader can refuse what it does not understand.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::lowbit::LowBitMatrix;
use crate::kernels::int8::quantize::quantize_per_output_channel;
use crate::model::variant::Scheme;
use crate::model::weights::{
    TensorStore, lowbit_key, scale_name, tier_name, tier_rows_name, tiers_key,
};

pub const VARIANT_FILE: &str = "variant.safetensors";
pub const FORMAT_VERSION: &str = "1";

/// What a variant file says about itself (the safetensors header metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantInfo {
    /// `int8`, `int8-shipped`, ...
    pub scheme: String,
    pub bits: u32,
    /// `per_channel` (one scale per output row) or `per_tensor`.
    pub granularity: String,
    /// `bert` or `marian`.
    pub model_kind: String,
    /// sha256 of the weights file the variant was made from.
    pub source_sha256: String,
    pub quantserve_version: String,
}

impl VariantInfo {
    pub fn to_metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            ("quantserve.format".into(), FORMAT_VERSION.into()),
            ("quantserve.scheme".into(), self.scheme.clone()),
            ("quantserve.bits".into(), self.bits.to_string()),
            ("quantserve.granularity".into(), self.granularity.clone()),
            ("quantserve.model_kind".into(), self.model_kind.clone()),
            (
                "quantserve.source_sha256".into(),
                self.source_sha256.clone(),
            ),
            ("quantserve.version".into(), self.quantserve_version.clone()),
        ])
    }

    /// Reads and checks the metadata of a variant file meant for a `model_kind` model.
    pub fn from_metadata(meta: &HashMap<String, String>, model_kind: &str) -> Result<Self> {
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .with_context(|| format!("variant metadata has no `{k}`"))
        };
        let format = get("quantserve.format")?;
        ensure!(
            format == FORMAT_VERSION,
            "variant format {format} is not supported (this build reads {FORMAT_VERSION})"
        );
        let info = Self {
            scheme: get("quantserve.scheme")?,
            bits: get("quantserve.bits")?
                .parse()
                .context("bad `quantserve.bits`")?,
            granularity: get("quantserve.granularity")?,
            model_kind: get("quantserve.model_kind")?,
            source_sha256: get("quantserve.source_sha256")?,
            quantserve_version: get("quantserve.version")?,
        };
        ensure!(
            info.model_kind == model_kind,
            "variant is for a {} model, not {model_kind}",
            info.model_kind
        );
        let known = match info.scheme.as_str() {
            "int8-shipped" => info.bits == 8,
            // Each tensor carries its own format; `bits` is the widest block's.
            "mixed" => info.granularity == "recipe",
            s => Scheme::parse(s).is_ok_and(|s| s.bits() == info.bits),
        };
        if !known {
            bail!(
                "variant scheme `{}` with {} bits is not supported by this build",
                info.scheme,
                info.bits
            );
        }
        Ok(info)
    }
}

/// int8 codes and per-row scales for one matrix.
pub struct Int8Matrix {
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
}

/// A matrix in a quantized form the variant file can hold.
pub enum QuantMatrix {
    Int8(Int8Matrix),
    /// Written as bit-packed rows (`U8`, `[rows, packed bytes]`), `name:scale` (`[rows, params]`)
    /// and the metadata entry `quantserve.lowbit.<name>` = `<format>/<columns>`.
    LowBit(LowBitMatrix),
    /// Rows split into frequency tiers: `(row ids, those rows quantized)` per tier. Written as
    /// one matrix `name#tier<t>` per tier (in its own form), its ids as `name#tier<t>:rows`
    /// (`I32`), and the metadata entry `quantserve.tiers.<name>` = `<tiers>/<rows>/<columns>`.
    Tiered(Vec<(Vec<u32>, QuantMatrix)>),
}

impl QuantMatrix {
    /// (bits of codes and scales, number of weights).
    pub fn bits_and_weights(&self) -> (f64, usize) {
        match self {
            Self::Int8(m) => (
                (m.codes.len() * 8 + m.scales.len() * 32) as f64,
                m.codes.len(),
            ),
            Self::LowBit(m) => {
                let n = m.rows * m.cols;
                (m.format.bits_per_weight(m.cols) * n as f64, n)
            }
            // The row ids (32 bits each) are part of the cost.
            Self::Tiered(tiers) => tiers.iter().fold((0.0, 0), |(b, n), (ids, m)| {
                let (mb, mn) = m.bits_and_weights();
                (b + mb + 32.0 * ids.len() as f64, n + mn)
            }),
        }
    }
}

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

    /// Adds the quantized `[rows, cols]` matrix `m` under `name` (and its companions).
    fn matrix(&mut self, name: &str, rows: usize, cols: usize, m: &QuantMatrix) -> Result<()> {
        match m {
            QuantMatrix::LowBit(m) => {
                ensure!(
                    [rows, cols] == [m.rows, m.cols],
                    "`{name}`: bad low-bit matrix"
                );
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
            QuantMatrix::Int8(m) => {
                ensure!(
                    m.scales.len() == rows && m.codes.len() == rows * cols,
                    "`{name}`: bad int8 matrix"
                );
                self.tensors.push((
                    name.to_string(),
                    Dtype::I8,
                    vec![rows, cols],
                    m.codes.iter().map(|&c| c as u8).collect(),
                ));
                self.f32(scale_name(name), vec![rows], &m.scales);
            }
            QuantMatrix::Tiered(tiers) => {
                ensure!(
                    tiers.iter().map(|(ids, _)| ids.len()).sum::<usize>() == rows,
                    "`{name}`: the tiers do not hold every row"
                );
                for (t, (ids, part)) in tiers.iter().enumerate() {
                    ensure!(
                        !matches!(part, QuantMatrix::Tiered(_)),
                        "`{name}`: nested tiers"
                    );
                    self.matrix(&tier_name(name, t), ids.len(), cols, part)?;
                    let bytes = ids
                        .iter()
                        .map(|&i| i32::try_from(i).expect("row id fits i32"))
                        .flat_map(i32::to_le_bytes)
                        .collect();
                    self.tensors.push((
                        tier_rows_name(name, t),
                        Dtype::I32,
                        vec![ids.len()],
                        bytes,
                    ));
                }
                self.metadata
                    .insert(tiers_key(name), format!("{}/{rows}/{cols}", tiers.len()));
            }
        }
        Ok(())
    }
}

/// Writes `store`'s fp32 tensors to `path`, replacing each matrix that `quantize` returns codes
/// for.
pub fn write_variant(
    path: &Path,
    store: &TensorStore,
    mut quantize: impl FnMut(&str, &[usize], &[f32]) -> Option<QuantMatrix>,
    info: &VariantInfo,
    extra_metadata: HashMap<String, String>,
) -> Result<()> {
    // Owned byte buffers first; the views borrow them.
    let mut buffers = Buffers {
        tensors: Vec::new(),
        metadata: info.to_metadata(),
    };
    for (name, t) in store.tensors() {
        match quantize(name, &t.shape, &t.data) {
            Some(m) => {
                ensure!(t.shape.len() == 2, "`{name}`: only matrices are quantized");
                buffers.matrix(name, t.shape[0], t.shape[1], &m)?;
            }
            None => buffers.f32(name.to_string(), t.shape.clone(), &t.data),
        }
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

/// Per-output-channel symmetric int8 of a row-major matrix.
pub fn quantize_int8(shape: &[usize], data: &[f32]) -> Int8Matrix {
    let q = quantize_per_output_channel(data, shape[0], shape[1]);
    Int8Matrix {
        codes: q.values,
        scales: q.scales,
    }
}
