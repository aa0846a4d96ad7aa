//! Reader for Marian's binary model format (`*.bin`), as shipped with the Bergamot students.
//!
//! Layout: `u64 version, u64 n`, n headers `{u64 name_len, u64 type, u64 shape_len, u64 data_len}`,
//! the NUL-terminated names, the i32 shapes, `u64 pad` + pad bytes, then the data blobs in order.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use super::store::{Tensor, TensorStore};

const TYPE_F32: u64 = 0x404;
const TYPE_INT8: u64 = 0x4101;
const TYPE_BYTES: u64 = 0x101;

/// A weight matrix as shipped: per-tensor symmetric int8 codes, `w = q / multiplier`.
#[derive(Clone, Debug)]
pub struct ShippedInt8 {
    /// Row-major [out][in] codes (already in the PyTorch-style layout).
    pub codes: Vec<i8>,
    pub multiplier: f32,
}

/// The decoded file: dequantized fp32 tensors, the original int8 codes, and `special:model.yml`.
pub struct MarianBin {
    pub tensors: TensorStore,
    pub shipped_int8: HashMap<String, ShippedInt8>,
    pub model_yml: String,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).context("size overflow")?;
        ensure!(
            end <= self.buf.len(),
            "file is truncated (needs {end} bytes, has {})",
            self.buf.len()
        );
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().unwrap()))
    }
    fn usize(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).context("size does not fit in memory")
    }
}

impl MarianBin {
    pub fn read(path: &Path) -> Result<Self> {
        let buf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        super::integrity::check(path, &buf)?;
        Self::parse(&buf).with_context(|| format!("{} is not a valid Marian model", path.display()))
    }

    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut c = Cursor { buf, pos: 0 };
        let version = c.u64()?;
        ensure!(version == 1, "unsupported binary version {version}");
        let n = c.usize()?;
        ensure!(n < 1_000_000, "implausible tensor count {n}");
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            headers.push((c.usize()?, c.u64()?, c.usize()?, c.usize()?));
        }
        let mut names = Vec::with_capacity(n);
        for &(name_len, ..) in &headers {
            let raw = c.bytes(name_len)?;
            let raw = raw.split(|&b| b == 0).next().unwrap_or(raw);
            names.push(String::from_utf8(raw.to_vec()).context("tensor name is not UTF-8")?);
        }
        let mut shapes = Vec::with_capacity(n);
        for &(_, _, shape_len, _) in &headers {
            let raw = c.bytes(shape_len.checked_mul(4).context("size overflow")?)?;
            let dims: Result<Vec<usize>> = raw
                .chunks_exact(4)
                .map(|d| {
                    let v = i32::from_le_bytes(d.try_into().unwrap());
                    usize::try_from(v).context("negative dimension")
                })
                .collect();
            shapes.push(dims?);
        }
        let pad = c.usize()?;
        c.bytes(pad)?;

        let mut tensors = TensorStore::new("marian model");
        let mut shipped_int8 = HashMap::new();
        let mut model_yml = None;
        for ((&(_, ty, _, data_len), name), shape) in headers.iter().zip(names).zip(shapes) {
            let blob = c.bytes(data_len)?;
            // The shape is checked against the blob's real length before anything is sized by it.
            let elems = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .with_context(|| format!("`{name}`: shape {shape:?} overflows"))?;
            match ty {
                TYPE_F32 => {
                    let bytes = elems
                        .checked_mul(4)
                        .filter(|&b| b <= blob.len())
                        .with_context(|| format!("`{name}`: blob shorter than its shape"))?;
                    let data: Vec<f32> = blob[..bytes]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect();
                    super::ensure_finite(&data).with_context(|| format!("`{name}`"))?;
                    tensors.insert(name, Tensor { shape, data });
                }
                TYPE_INT8 => {
                    ensure!(
                        elems.checked_add(4).is_some_and(|n| blob.len() >= n),
                        "`{name}`: int8 blob shorter than its shape"
                    );
                    let multiplier = f32::from_le_bytes(blob[elems..elems + 4].try_into().unwrap());
                    ensure!(
                        multiplier.is_finite() && multiplier > 0.0,
                        "`{name}`: bad multiplier"
                    );
                    let codes: Vec<i8> = blob[..elems].iter().map(|&b| b as i8).collect();
                    // Matrices are stored transposed relative to their [in, out] header shape: the
                    // bytes are row-major [out, in]. Wemb is the exception, stored as-is [vocab, dim].
                    let out_shape = if name.contains("_W") && shape.len() == 2 {
                        vec![shape[1], shape[0]]
                    } else {
                        shape.clone()
                    };
                    let data = codes.iter().map(|&q| q as f32 / multiplier).collect();
                    if !name.ends_with("_QuantMultA") {
                        shipped_int8.insert(name.clone(), ShippedInt8 { codes, multiplier });
                    }
                    tensors.insert(
                        name,
                        Tensor {
                            shape: out_shape,
                            data,
                        },
                    );
                }
                TYPE_BYTES => {
                    if name == "special:model.yml" {
                        let text = blob.split(|&b| b == 0).next().unwrap_or(blob);
                        model_yml = Some(String::from_utf8_lossy(text).into_owned());
                    }
                }
                other => bail!("`{name}`: unsupported tensor type {other:#x}"),
            }
        }
        Ok(Self {
            tensors,
            shipped_int8,
            model_yml: model_yml.context("no special:model.yml in the model")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_garbage_inputs_are_errors_not_panics() {
        assert!(MarianBin::parse(&[]).is_err());
        assert!(MarianBin::parse(&[1, 0, 0, 0, 0, 0, 0, 0]).is_err());
        let mut evil = vec![1u8, 0, 0, 0, 0, 0, 0, 0];
        evil.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(MarianBin::parse(&evil).is_err());
        let mut one = vec![1u8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        for v in [u64::MAX, 0x404, 1, 4] {
            one.extend_from_slice(&v.to_le_bytes());
        }
        assert!(MarianBin::parse(&one).is_err());
    }
}
