//! What a variant file says about itself: the safetensors header metadata.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::FORMAT_VERSION;

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

    /// Reads and checks the metadata of a variant file meant for a `model_kind` model (whether
    /// this build knows its scheme is `schemes::ensure_supported`'s question).
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
        Ok(info)
    }
}

/// The metadata of a safetensors file, reading only its header.
pub fn read_header_metadata(path: &Path) -> Option<std::collections::HashMap<String, String>> {
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
