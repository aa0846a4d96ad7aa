//! Crafted model files for the hostile-file tests (issue 17, item 9) and the fuzz harnesses:
//! real files from `models/` taken apart and put back together with one field changed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// A safetensors file as (header JSON, tensor bytes).
pub struct Safetensors {
    pub header: serde_json::Map<String, Value>,
    pub data: Vec<u8>,
}

impl Safetensors {
    pub fn read(path: &Path) -> Self {
        Self::parse(&std::fs::read(path).unwrap())
    }

    pub fn parse(bytes: &[u8]) -> Self {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        Self {
            header: header.as_object().unwrap().clone(),
            data: bytes[8 + n..].to_vec(),
        }
    }

    pub fn metadata_mut(&mut self) -> &mut serde_json::Map<String, Value> {
        self.header
            .entry("__metadata__")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
            .unwrap()
    }

    pub fn set_metadata(&mut self, key: &str, value: &str) {
        self.metadata_mut().insert(key.into(), value.into());
    }

    /// `[start, end)` of a tensor's bytes in `data`.
    pub fn range(&self, name: &str) -> (usize, usize) {
        let o = &self.header[name]["data_offsets"];
        (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        )
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut h = serde_json::to_vec(&Value::Object(self.header.clone())).unwrap();
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(&self.data);
        out
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_bytes()).unwrap();
    }
}

/// Copies every file of `src` into `dst` (flat folders only), without its `SHA256SUMS`: the
/// copy is going to be altered on purpose.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != "SHA256SUMS" {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// A fresh temporary folder for one test.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("qs-crafted-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// --- protobuf, just enough to replace one field of a SentencePiece model ---------------------

fn varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*pos];
        *pos += 1;
        v |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    v
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `(field, wire type, raw value bytes)` of each top-level field of a protobuf message.
fn fields(b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        let key = varint(b, &mut pos);
        let (field, wire) = (key >> 3, key & 7);
        let start = pos;
        let value = match wire {
            0 => {
                varint(b, &mut pos);
                b[start..pos].to_vec()
            }
            1 => {
                pos += 8;
                b[start..pos].to_vec()
            }
            2 => {
                let n = varint(b, &mut pos) as usize;
                pos += n;
                b[pos - n..pos].to_vec()
            }
            5 => {
                pos += 4;
                b[start..pos].to_vec()
            }
            w => panic!("wire type {w}"),
        };
        out.push((field, wire, value));
    }
    out
}

fn encode(fields: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, wire, value) in fields {
        put_varint(&mut out, (field << 3) | wire);
        if *wire == 2 {
            put_varint(&mut out, value.len() as u64);
        }
        out.extend(value);
    }
    out
}

/// A SentencePiece model with its `normalizer_spec.precompiled_charsmap` (fields 3 and 2)
/// replaced by `charsmap`.
pub fn spm_with_charsmap(spm: &[u8], charsmap: &[u8]) -> Vec<u8> {
    let mut top = fields(spm);
    let spec = top.iter_mut().find(|f| f.0 == 3).expect("normalizer_spec");
    let mut inner = fields(&spec.2);
    inner.retain(|f| f.0 != 2);
    inner.push((2, 2, charsmap.to_vec()));
    spec.2 = encode(&inner);
    encode(&top)
}

/// The `precompiled_charsmap` of a SentencePiece model.
pub fn spm_charsmap(spm: &[u8]) -> Vec<u8> {
    let top = fields(spm);
    let spec = top.iter().find(|f| f.0 == 3).expect("normalizer_spec");
    fields(&spec.2)
        .into_iter()
        .find(|f| f.0 == 2)
        .map(|f| f.2)
        .unwrap_or_default()
}

// --- Marian .bin -------------------------------------------------------------------------------

/// One tensor of a Marian `.bin`: `(name, type, shape, data)`.
pub type BinTensor = (Vec<u8>, u64, Vec<i32>, Vec<u8>);

/// A Marian `.bin` taken apart.
pub struct MarianBinParts {
    pub tensors: Vec<BinTensor>,
}

impl MarianBinParts {
    pub fn parse(b: &[u8]) -> Self {
        let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap());
        let n = u64_at(8) as usize;
        let mut pos = 16;
        let mut headers = Vec::new();
        for _ in 0..n {
            headers.push((
                u64_at(pos) as usize,
                u64_at(pos + 8),
                u64_at(pos + 16) as usize,
                u64_at(pos + 24) as usize,
            ));
            pos += 32;
        }
        let mut names = Vec::new();
        for h in &headers {
            names.push(b[pos..pos + h.0].to_vec());
            pos += h.0;
        }
        let mut shapes = Vec::new();
        for h in &headers {
            shapes.push(
                b[pos..pos + 4 * h.2]
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>(),
            );
            pos += 4 * h.2;
        }
        let pad = u64_at(pos) as usize;
        pos += 8 + pad;
        let mut tensors = Vec::new();
        for ((h, name), shape) in headers.iter().zip(names).zip(shapes) {
            tensors.push((name, h.1, shape, b[pos..pos + h.3].to_vec()));
            pos += h.3;
        }
        Self { tensors }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(1u64.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        for (name, ty, shape, data) in &self.tensors {
            for v in [
                name.len() as u64,
                *ty,
                shape.len() as u64,
                data.len() as u64,
            ] {
                out.extend(v.to_le_bytes());
            }
        }
        for t in &self.tensors {
            out.extend(&t.0);
        }
        for t in &self.tensors {
            for d in &t.2 {
                out.extend(d.to_le_bytes());
            }
        }
        out.extend(0u64.to_le_bytes());
        for t in &self.tensors {
            out.extend(&t.3);
        }
        out
    }
}

/// Tensor names of a safetensors header, sorted (for picking one deterministically).
pub fn tensor_names(st: &Safetensors) -> BTreeMap<String, Value> {
    st.header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
